//! Reading a session without owning it ([`PostgresOptions::read_session`]): for tools
//! (`layer-session inspect`, `verify`) that look at a session while its owner runs.
//!
//! Reading never uses the session's auth keys against Telegram, so it needs no lease; and
//! because it takes none, it never writes: no lease row, no schema or table created, no
//! migration, no registration of the name, no sealing of a plain schema. Everything runs in
//! read-only transactions (PostgreSQL itself refuses a write in one); the rows in one
//! `REPEATABLE READ` snapshot, so a concurrent persist is seen whole or not at all. Every call is
//! bounded by the options' call timeout.

use session_core::{Keyring, SessionError, SessionSnapshot};
use session_sql::{SealRecord, SqlValue, Statement, SCHEMA_VERSION};
use tokio_postgres::tls::TlsConnect;
use tokio_postgres::Socket;

use crate::db::{cells, connect, load_rows, query, Access, Db, Tls};
use crate::PostgresOptions;
use crate::{schema, seal};

impl PostgresOptions {
    /// Reads session [`PostgresOptions::session`] from the database at `url` without TLS (see
    /// [`read_session_with_tls`](Self::read_session_with_tls)).
    pub async fn read_session(
        &self,
        url: &str,
        keys: Option<&Keyring>,
    ) -> Result<Option<SessionSnapshot>, SessionError> {
        self.read_session_with_tls(url, tokio_postgres::NoTls, keys).await
    }

    /// Reads session [`PostgresOptions::session`] from these options' schema of the database at
    /// `url`, connecting through `tls`, without taking its lease and without writing anything:
    /// its owner keeps running undisturbed. `Ok(None)` when no such session is stored (a
    /// missing or empty schema included).
    ///
    /// With `keys`, a sealed schema is opened with them ([`SessionError::WrongKey`] when they
    /// lack its key); without, a sealed one is [`SessionError::Sealed`]. A plain schema is read
    /// as it is, keys or not. A schema of an older layout is [`SessionError::Invalid`] saying so
    /// (a reader does not migrate), a newer one [`SessionError::UnsupportedVersion`]. The lease
    /// and pool options are not used (one connection).
    pub async fn read_session_with_tls<T>(
        &self,
        url: &str,
        tls: T,
        keys: Option<&Keyring>,
    ) -> Result<Option<SessionSnapshot>, SessionError>
    where
        T: Tls,
        T::Stream: Sync + Send,
        T::TlsConnect: Sync + Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let db = connect(url, &self.session, &self.schema, self.timeout, tls, 1)?;
        let Some((sid, record)) = locate(&db, &self.schema, &self.session).await? else {
            return Ok(None);
        };
        let sealer = match record {
            None => None,
            Some(record) => {
                seal::open_seal(&db, Some(record), keys.cloned()).await?.map(|seal| seal.session(&self.session))
            }
        };
        let sealed_with = record.map(|r| r.key_id);
        let data = load_rows(&db, sid, sealer).await?;
        Ok(data.map(|data| SessionSnapshot::new(data, sealed_with)))
    }
}

/// The session's id and the schema's seal record, from one read-only transaction; `None` when
/// the schema holds no session of that name.
async fn locate(db: &Db, schema: &str, name: &str) -> Result<Option<(i64, Option<SealRecord>)>, SessionError> {
    db.transaction(Access::Read, async |tx| {
        let (version, tables) = schema::inspect(tx, db, schema).await?;
        if version == 0 {
            let foreign: Vec<&str> =
                tables.iter().map(String::as_str).filter(|t| !session_sql::lease::TABLES.contains(t)).collect();
            if !foreign.is_empty() {
                return Err(SessionError::invalid(
                    format!("session database {}", db.resource),
                    format!("the schema holds other tables ({}) and no layer-client schema", foreign.join(", ")),
                ));
            }
            return Ok(None);
        }
        // A newer schema: UnsupportedVersion.
        session_sql::migrations_from(version).map(drop)?;
        if version < SCHEMA_VERSION {
            return Err(SessionError::invalid(
                format!("session database {}", db.resource),
                format!(
                    "its schema is version {version}, older than this build's {SCHEMA_VERSION}; a read-only \
                     look does not migrate it: open it once with a writer (its owner does this) to bring it up \
                     to date"
                ),
            ));
        }
        let id = Statement { sql: session_sql::SESSION_ID, params: vec![SqlValue::Text(name.to_owned())] };
        let Some(row) = query(tx, db, &id).await?.into_iter().next() else {
            return Ok(None);
        };
        let sid = session_sql::session_id(&db.resource, &cells(&row, &db.resource)?)?;
        let seal = Statement { sql: session_sql::LOAD_SEAL, params: Vec::new() };
        let record = match query(tx, db, &seal).await?.first() {
            Some(row) => Some(SealRecord::from_row(&db.resource, &cells(row, &db.resource)?)?),
            None => None,
        };
        Ok(Some((sid, record)))
    })
    .await
}
