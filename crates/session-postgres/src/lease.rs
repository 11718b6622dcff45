//! The lease of a session on the server: session-sql's lease statements in PostgreSQL's dialect
//! (the server's `clock_timestamp()`), on a pool of its own so that a renewal never waits behind a
//! large write of this process.

use std::time::Duration;

use session_core::async_trait;
use session_core::{LeaseGrant, LeaseHolder, LeaseStore, SessionError};
use session_sql::lease;

use crate::db::{cells, connect, execute, query, Db, Tls};
use crate::schema;

/// One session's lease on a PostgreSQL server: the [`LeaseStore`] a
/// `PostgresBackend` holds through a [`session_core::Lease`]. Public
/// for tools that look at or manage leases (and for conformance runs); a backend takes its own.
#[derive(Debug)]
pub struct PostgresLeases {
    db: Db,
    name: String,
    schema: String,
}

impl PostgresLeases {
    /// Connects (a pool of one connection of its own) to the lease of session `name` in the
    /// database at `url`, in the default schema (`layer_session`), as a backend would; every
    /// call fails with [`SessionError::Unavailable`] after `timeout`.
    pub fn connect(url: &str, name: &str, timeout: Duration) -> Result<Self, SessionError> {
        Self::with(url, name, schema::DEFAULT_SCHEMA, timeout, tokio_postgres::NoTls)
    }

    pub(crate) fn with<T>(url: &str, name: &str, schema: &str, timeout: Duration, tls: T) -> Result<Self, SessionError>
    where
        T: Tls,
        T::Stream: Sync + Send,
        T::TlsConnect: Sync + Send,
        <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio_postgres::Socket>>::Future: Send,
    {
        Ok(PostgresLeases {
            db: connect(url, name, schema, timeout, tls, 1)?,
            name: name.to_owned(),
            schema: schema.to_owned(),
        })
    }
}

#[async_trait]
impl LeaseStore for PostgresLeases {
    fn resource(&self) -> String {
        self.db.resource.clone()
    }

    async fn acquire(&self, holder: &LeaseHolder, ttl: Duration) -> Result<LeaseGrant, SessionError> {
        let db = &self.db;
        db.bounded(async {
            let mut conn = db.conn().await?;
            let result = async {
                let client = conn.client()?;
                let tx = client.transaction().await.map_err(|e| db.map(e))?;
                // Creating the schema and the lease tables is serialized with every other
                // setup of this database: two racing `CREATE ... IF NOT EXISTS` may both try.
                schema::lock(&tx, db).await?;
                tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", schema::quoted(&self.schema)))
                    .await
                    .map_err(|e| db.map(e))?;
                let mut statements = lease::acquire(&self.name, holder, ttl);
                let take = statements.pop().ok_or_else(|| db.unavailable("no acquire statement"))?;
                for st in &statements {
                    execute(&tx, db, st).await?;
                }
                let rows = query(&tx, db, &take).await?;
                let outcome = match rows.first() {
                    Some(row) => lease::grant(&db.resource, &cells(row, &db.resource)?),
                    None => {
                        let rows = query(&tx, db, &lease::holder_query(&self.name)).await?;
                        match rows.first() {
                            Some(row) => Err(lease::locked(&db.resource, Some(&cells(row, &db.resource)?))),
                            None => Err(lease::locked(&db.resource, None)),
                        }
                    }
                };
                tx.commit().await.map_err(|e| db.map(e))?;
                outcome
            }
            .await;
            conn.finish(result)
        })
        .await
    }

    async fn renew(&self, token: u64, ttl: Duration) -> Result<LeaseGrant, SessionError> {
        let db = &self.db;
        db.bounded(async {
            let mut conn = db.conn().await?;
            let result = async {
                let client = conn.client()?;
                let tx = client.transaction().await.map_err(|e| db.map(e))?;
                let rows = query(&tx, db, &lease::renew(&self.name, token, ttl)).await?;
                let grant = match rows.first() {
                    Some(row) => lease::grant(&db.resource, &cells(row, &db.resource)?),
                    None => Err(lease::lost(&db.resource, token)),
                };
                tx.commit().await.map_err(|e| db.map(e))?;
                grant
            }
            .await;
            conn.finish(result)
        })
        .await
    }

    async fn release(&self, token: u64) -> Result<(), SessionError> {
        let db = &self.db;
        db.bounded(async {
            let mut conn = db.conn().await?;
            let result = async {
                let client = conn.client()?;
                let tx = client.transaction().await.map_err(|e| db.map(e))?;
                execute(&tx, db, &lease::release(&self.name, token)).await?;
                tx.commit().await.map_err(|e| db.map(e))
            }
            .await;
            conn.finish(result)
        })
        .await
    }
}
