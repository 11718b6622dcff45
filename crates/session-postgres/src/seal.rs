//! Sealing in PostgreSQL (encryption at rest, session-sql's `seal`): the schema's seal record
//! read before anything is written and checked against the application's keys, and a schema
//! without one sealed (with this session's rows, if any, rewritten sealed) when a keyring is
//! given. The server only ever holds ciphertext, placeholders and the ids rows are keyed by.

use std::sync::Arc;

use session_core::{Keyring, SessionError};
use session_sql::{DbSeal, SealRecord, SqlValue, SqlValueRef, Statement};

use crate::db::{cells, query, Access, Db};

/// What [`check`] decided: the schema's sealing, and the record it was read with.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) seal: Arc<DbSeal>,
    pub(crate) record: Option<SealRecord>,
}

/// Reads the seal record (none while the `seal` table does not exist: a schema older than
/// version 5, or none yet) and decides how the session opens ([`session_sql::open_seal`]).
pub(crate) async fn check(db: &Db, keys: Option<Keyring>) -> Result<Option<Opened>, SessionError> {
    let record = db
        .transaction(Access::Read, async |tx| {
            let exists = tx
                .query("SELECT to_regclass('seal') IS NOT NULL", &[])
                .await
                .map_err(|e| db.map(e))?
                .first()
                .and_then(|r| r.try_get::<_, bool>(0).ok())
                .unwrap_or(false);
            let mut record = None;
            if exists {
                let rows = query(tx, db, &Statement { sql: session_sql::LOAD_SEAL, params: Vec::new() }).await?;
                if let Some(row) = rows.first() {
                    record = Some(SealRecord::from_row(&db.resource, &cells(row, &db.resource)?)?);
                }
            }
            Ok(record)
        })
        .await?;
    let seal = open_seal(db, record, keys).await?;
    Ok(seal.map(|seal| Opened { seal, record }))
}

/// How the schema opens with `keys` given its seal `record` ([`session_sql::open_seal`]).
pub(crate) async fn open_seal(
    db: &Db,
    record: Option<SealRecord>,
    keys: Option<Keyring>,
) -> Result<Option<Arc<DbSeal>>, SessionError> {
    let resource = db.resource.clone();
    // A passphrase's key is derived here (Argon2id): off the runtime.
    tokio::task::spawn_blocking(move || session_sql::open_seal(&resource, record, keys.as_ref()))
        .await
        .map_err(|e| SessionError::Backend { backend: "postgres".to_owned(), source: Box::new(e) })?
}

/// How many sessions other than `sid` hold a session row.
pub(crate) async fn other_sessions(db: &Db, sid: i64) -> Result<i64, SessionError> {
    db.transaction(Access::Read, async |tx| {
        let statement = Statement { sql: session_sql::OTHER_STORED_SESSIONS, params: vec![SqlValue::Integer(sid)] };
        let rows = query(tx, db, &statement).await?;
        match rows.first().map(|r| cells(r, &db.resource)).transpose()?.as_deref() {
            Some([SqlValueRef::Integer(n)]) => Ok(*n),
            _ => Err(SessionError::corrupt(&db.resource, "session: no count")),
        }
    })
    .await
}
