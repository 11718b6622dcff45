//! Sealing on a libSQL server (encryption at rest, session-sql's `seal`): the database's seal
//! record read at open and checked against the application's keys; a database without one
//! sealed (with this session's rows, if any, rewritten sealed) when a keyring is given.
//!
//! The server only ever sees ciphertext, placeholders and the ids rows are keyed by.

use std::sync::Arc;

use session_core::{Keyring, SessionError};
use session_sql::{DbSeal, SealRecord, SqlValue, SqlValueRef, Statement};

use super::inline::inline;
use super::transport::{collect, value_ref};
use super::Remote;

/// What [`Remote::check_seal`] decided: the database's sealing, and the record it was read with.
#[derive(Debug)]
pub(crate) struct Opened {
    seal: Arc<session_sql::DbSeal>,
    record: Option<SealRecord>,
}

impl Remote {
    /// Reads the seal record and decides how the database opens ([`session_sql::open_seal`]),
    /// before anything is written: a sealed database without `keys` is `Sealed`, with a keyring
    /// lacking its key `WrongKey`. Returns the sealing and the record it was decided from.
    ///
    /// `known`: the record [`Remote::check`] read before the lease, when setup migrated nothing
    /// (`None`: read it now). Decisions that only read go by it: a database sealed since then
    /// has sealed rows, which the load refuses as `Sealed` or `WrongKey` just as this check
    /// would have. One that rewrites rows (sealing, or a new key) reads it again under the
    /// lease first, and decides again if it changed.
    pub(crate) async fn check_seal(
        &self,
        keys: Option<Keyring>,
        known: Option<Option<SealRecord>>,
    ) -> Result<Option<Opened>, SessionError> {
        let record = match known {
            Some(record) => record,
            None => self.seal_record().await?,
        };
        let again = known.is_some().then(|| keys.clone());
        let seal = self.open_seal(record, keys).await?;
        if let (Some(keys), Some(s)) = (again, &seal) {
            if s.needs_record() {
                let fresh = self.seal_record().await?;
                if fresh != record {
                    let seal = self.open_seal(fresh, keys).await?;
                    return Ok(seal.map(|seal| Opened { seal, record: fresh }));
                }
            }
        }
        Ok(seal.map(|seal| Opened { seal, record }))
    }

    /// The database's seal record (`None`: a plain database).
    pub(crate) async fn seal_record(&self) -> Result<Option<SealRecord>, SessionError> {
        match self.query_one(session_sql::LOAD_SEAL, Vec::new()).await? {
            None => Ok(None),
            Some(row) => {
                let refs: Vec<SqlValueRef<'_>> = row.iter().map(value_ref).collect();
                SealRecord::from_row(&self.resource, &refs).map(Some)
            }
        }
    }

    /// How the database opens with `keys` given its seal `record` ([`session_sql::open_seal`]).
    pub(crate) async fn open_seal(
        &self,
        record: Option<SealRecord>,
        keys: Option<Keyring>,
    ) -> Result<Option<Arc<DbSeal>>, SessionError> {
        match keys {
            // Without keys nothing is derived: the answer (plain, or `Sealed`) is at once, with
            // no trip through the blocking pool.
            None => session_sql::open_seal(&self.resource, record, None),
            Some(keys) => {
                let resource = self.resource.clone();
                // A passphrase's key is derived here (Argon2id): off the runtime.
                tokio::task::spawn_blocking(move || session_sql::open_seal(&resource, record, Some(&keys)))
                    .await
                    .map_err(|e| SessionError::Backend { backend: "libsql".to_owned(), source: Box::new(e) })?
            }
        }
    }

    /// Seals this session (registered as `name`) with what [`Remote::check_seal`] decided. With
    /// no record (or a record of an older key), this session's rows are rewritten sealed and
    /// the record stored, in one fenced transaction; a database that holds other sessions in
    /// clear is refused (a database is sealed whole).
    pub(crate) async fn seal_with(
        &mut self,
        opened: Opened,
        name: &str,
        fence: Option<(&str, u64)>,
    ) -> Result<(), SessionError> {
        let Opened { seal, record } = opened;
        let sealer = seal.session(name);
        if seal.needs_record() {
            if record.is_none() {
                let others = match self
                    .query_one(session_sql::OTHER_STORED_SESSIONS, vec![SqlValue::Integer(self.sid)])
                    .await?
                    .as_deref()
                {
                    Some([libsql::Value::Integer(n)]) => *n,
                    _ => return Err(SessionError::corrupt(&self.resource, "session: no count")),
                };
                if others > 0 {
                    return Err(SessionError::invalid(
                        format!("session database {}", self.resource),
                        format!(
                            "it holds {others} other session(s) in clear; a database is sealed whole, so seal it when \
                             no other session is stored in it"
                        ),
                    ));
                }
            } else {
                // A rotation: the rows open with the keyring's older keys.
                self.seal = Some(sealer.clone());
            }
            let (data, _) = self.load().await?;
            let mut plan = match &data {
                Some(data) => session_sql::save_plan_sealed(self.sid, data, Some(&sealer))?,
                None => Vec::new(),
            };
            plan.push(seal.record_statement());
            self.write(fence, plan.into_iter()).await?;
            tracing::info!(key_id = %seal.key_id(), "sealed the session with a new key");
        }
        self.seal = Some(sealer);
        Ok(())
    }

    /// The first row of `sql` with `params` (inlined), if any.
    async fn query_one(
        &self,
        sql: &'static str,
        params: Vec<SqlValue>,
    ) -> Result<Option<Vec<libsql::Value>>, SessionError> {
        let mut text = String::new();
        inline(&mut text, &Statement { sql, params })?;
        let conn = self.lock().await?;
        self.timed(&conn, async {
            let rows = conn.query(&text, ()).await.map_err(|e| self.map(e))?;
            Ok(collect(rows).await.map_err(|e| self.map(e))?.into_iter().next())
        })
        .await
    }
}
