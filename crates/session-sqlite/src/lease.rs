//! Leases on sessions of a SQLite database: [`SqliteLeases`], the SQL of `session_sql::lease` run
//! through rusqlite.
//!
//! A local file already has one owner per session through the owner lock (a `flock`, which
//! works on one machine). The lease is what a database on a shared or network file system, or a
//! copy of this schema on a server, needs as well; it is the same SQL every SQL backend runs, so
//! this store is also where that SQL is tested against the real SQLite engine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params_from_iter, Connection, OpenFlags, TransactionBehavior};
use session_core::{LeaseGrant, LeaseHolder, LeaseStore, SessionError};
use session_sql::{lease, SqlValueRef, Statement};

use crate::backend::map_sql;
use crate::values::{value_ref, Param};

/// The lease of one named session in an existing SQLite database of ours.
#[derive(Clone, Debug)]
pub struct SqliteLeases {
    path: PathBuf,
    name: String,
}

impl SqliteLeases {
    /// The lease of session `name` in the database at `path` (which must exist).
    pub fn new(path: impl AsRef<Path>, name: impl Into<String>) -> Self {
        SqliteLeases { path: path.as_ref().to_owned(), name: name.into() }
    }

    /// Runs `statements` in one immediate transaction and returns the first row of the last one
    /// (converted by `read`), if it returned any.
    async fn run<T: Send + 'static>(
        &self,
        statements: Vec<Statement>,
        read: impl Fn(&[SqlValueRef<'_>]) -> Result<T, SessionError> + Send + 'static,
    ) -> Result<Option<T>, SessionError> {
        let path = self.path.clone();
        let resource = self.resource();
        let task = tokio::task::spawn_blocking(move || -> Result<Option<T>, SessionError> {
            let sql = |e| map_sql(e, &resource);
            let mut conn =
                Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                    .map_err(sql)?;
            conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
            let mut out = None;
            let last = statements.len().saturating_sub(1);
            for (i, st) in statements.into_iter().enumerate() {
                let mut prepared = tx.prepare(st.sql).map_err(sql)?;
                let mut rows = prepared.query(params_from_iter(st.params.iter().map(Param))).map_err(sql)?;
                let first = rows.next().map_err(sql)?;
                if i == last {
                    if let Some(row) = first {
                        let n = row.as_ref().column_count();
                        let mut values = Vec::with_capacity(n);
                        for c in 0..n {
                            values.push(value_ref(row.get_ref(c).map_err(sql)?, &resource)?);
                        }
                        out = Some(read(&values)?);
                    }
                }
                // Drain the rest (RETURNING rows are produced as the statement steps).
                while rows.next().map_err(sql)?.is_some() {}
            }
            tx.commit().map_err(sql)?;
            Ok(out)
        });
        task.await.map_err(|e| SessionError::Backend { backend: "sqlite".into(), source: Box::new(e) })?
    }
}

#[async_trait]
impl LeaseStore for SqliteLeases {
    fn resource(&self) -> String {
        format!("{}#{}", self.path.display(), self.name)
    }

    async fn acquire(&self, holder: &LeaseHolder, ttl: Duration) -> Result<LeaseGrant, SessionError> {
        let resource = self.resource();
        let r = resource.clone();
        match self.run(lease::acquire(&self.name, holder, ttl), move |row| lease::grant(&r, row)).await? {
            Some(grant) => Ok(grant),
            None => {
                let held = self
                    .run(vec![lease::holder_query(&self.name)], {
                        let r = resource.clone();
                        move |row| Ok(lease::locked(&r, Some(row)))
                    })
                    .await?;
                Err(held.unwrap_or_else(|| lease::locked(&resource, None)))
            }
        }
    }

    async fn renew(&self, token: u64, ttl: Duration) -> Result<LeaseGrant, SessionError> {
        let resource = self.resource();
        let r = resource.clone();
        let setup =
            vec![Statement { sql: lease::CREATE_LEASES, params: Vec::new() }, lease::renew(&self.name, token, ttl)];
        self.run(setup, move |row| lease::grant(&r, row)).await?.ok_or_else(|| lease::lost(&resource, token))
    }

    async fn release(&self, token: u64) -> Result<(), SessionError> {
        let setup =
            vec![Statement { sql: lease::CREATE_LEASES, params: Vec::new() }, lease::release(&self.name, token)];
        self.run(setup, |_| Ok(())).await.map(|_| ())
    }
}
