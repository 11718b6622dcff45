//! Reading a session on a libSQL server without owning it ([`LibSqlBackend::read_remote`]): for
//! tools (`layer-session inspect`, `verify`) that look at a session while its owner runs.
//!
//! Reading never uses the session's auth keys against Telegram, so it needs no lease; and
//! because it takes none, it must never write either: no lease row, no migration, no
//! registration of the name, no sealing of a plain database. A database that is empty, of an
//! older schema or of another program is reported as it is, never changed. Every call is bounded
//! by [`RemoteOptions::timeout`]; the rows are read in one read transaction (the backend's own
//! load path), so a concurrent write is seen whole or not at all.

use session_core::{Keyring, SessionError, SessionSnapshot};

use crate::remote::Remote;
use crate::{LibSqlBackend, RemoteOptions};

impl LibSqlBackend {
    /// Reads session [`RemoteOptions::session`] of the database on the server at `url` without
    /// taking its lease and without writing anything: its owner keeps running undisturbed.
    /// `Ok(None)` when the database holds no such session (an empty database included).
    ///
    /// With `keys`, a sealed database is opened with them ([`SessionError::WrongKey`] when they
    /// lack its key); without, a sealed one is [`SessionError::Sealed`]. A database of an older
    /// schema is [`SessionError::Invalid`] saying so (a reader does not migrate: the owner, or
    /// any writer, brings it up to date), a newer one [`SessionError::UnsupportedVersion`], one
    /// of another program [`SessionError::Invalid`]. The lease options are not used.
    pub async fn read_remote(
        url: &str,
        auth_token: &str,
        options: &RemoteOptions,
        keys: Option<&Keyring>,
    ) -> Result<Option<SessionSnapshot>, SessionError> {
        session_sql::check_name(&options.session)?;
        let mut remote = Remote::connect(url, auth_token, options.timeout).await?;
        // Refuses another program's database and a newer schema before anything else is read.
        let checked = remote.check().await?;
        let (version, tables) = (checked.version, &checked.tables);
        if version == 0 {
            // Empty (or only the tables a lease or a replica adds): no session stored.
            return Ok(None);
        }
        if version < session_sql::SCHEMA_VERSION {
            return Err(SessionError::invalid(
                format!("session database {}", remote.resource),
                format!(
                    "its schema is version {version}, older than this build's {}; a read-only look does not \
                     migrate it: open it once with a writer (its owner does this) to bring it up to date",
                    session_sql::SCHEMA_VERSION
                ),
            ));
        }
        // The load reads the write generation beside the rows; a database last opened by an
        // older build (or only locally) lacks its tables, which a writer's open adds.
        let has = |t: &str| tables.iter().any(|have| have == t);
        if !has(crate::remote::GENERATION_TABLE) || !has(crate::remote::HISTORY_TABLE) {
            return Err(SessionError::invalid(
                format!("session database {}", remote.resource),
                "it lacks the write generation tables of this build's remote clients: open it once with a writer (its \
                 owner does this) to add them",
            ));
        }
        let Some(sid) = session_id(&remote, &options.session).await? else {
            return Ok(None);
        };
        remote.sid = sid;
        // Read by the check, from its snapshot (a database of the current schema has the table).
        let record = match checked.seal {
            Some(record) => record,
            None => remote.seal_record().await?,
        };
        // A plain database opens as it is, keys or not (a writer with keys would seal it; a
        // reader writes nothing).
        if let Some(record) = record {
            let seal = remote.open_seal(Some(record), keys.cloned()).await?;
            remote.seal = seal.map(|seal| seal.session(&options.session));
        }
        let sealed_with = record.map(|r| r.key_id);
        let (data, _) = remote.load().await?;
        Ok(data.map(|data| SessionSnapshot::new(data, sealed_with)))
    }
}

/// The id of the session called `name`, read (never registered); `None` when the name is not
/// in the database.
async fn session_id(remote: &Remote, name: &str) -> Result<Option<session_sql::SessionId>, SessionError> {
    // The schema registers the default session (as the writer's open assumes): not asked. Its
    // load is `None` when nothing is stored.
    if session_sql::is_default(name) {
        return Ok(Some(session_sql::DEFAULT_SESSION_ID));
    }
    // Checked names hold no control character; a quote is doubled, as SQL text escapes it.
    let sql = format!("SELECT id FROM sessions WHERE name = '{}'", name.replace('\'', "''"));
    let rows = remote.batch(&sql).await?;
    match rows.as_deref().and_then(<[_]>::first).map(Vec::as_slice) {
        None => Ok(None),
        Some([libsql::Value::Integer(sid)]) => Ok(Some(*sid)),
        Some(_) => {
            Err(SessionError::corrupt(&remote.resource, format!("sessions: the id of {name:?} is not an integer")))
        }
    }
}
