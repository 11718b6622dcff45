//! [`PostgresOptions::list_sessions`]: the named sessions of a database's schema with who holds
//! each one's lease and for how long by the server's clock. Reads only, in one read-only
//! transaction: takes no lease, creates and migrates nothing.

use session_sql::{SessionInfo, Statement, LIST_SESSIONS, LIST_SESSIONS_WITH_LEASES};

use crate::db::{cells, connect, query, Access, Tls};
use crate::schema;
use crate::{PostgresOptions, DEFAULT_SESSION};
use session_core::SessionError;

impl PostgresOptions {
    /// The sessions in these options' schema of the database at `url`, by name (none when the
    /// schema does not exist yet), with their lease. Bounded by the call timeout.
    pub async fn list_sessions(&self, url: &str) -> Result<Vec<SessionInfo>, SessionError> {
        self.list_sessions_with_tls(url, tokio_postgres::NoTls).await
    }

    /// [`list_sessions`](Self::list_sessions) connecting through `tls`.
    pub async fn list_sessions_with_tls<T>(&self, url: &str, tls: T) -> Result<Vec<SessionInfo>, SessionError>
    where
        T: Tls,
        T::Stream: Sync + Send,
        T::TlsConnect: Sync + Send,
        <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio_postgres::Socket>>::Future: Send,
    {
        let db = connect(url, DEFAULT_SESSION, &self.schema, self.timeout, tls, 1)?;
        let db = &db;
        db.transaction(Access::Read, async |tx| {
            let (version, tables) = schema::inspect(tx, db, &self.schema).await?;
            if version == 0 {
                return Ok(Vec::new());
            }
            if !tables.iter().any(|t| t == "sessions") {
                return Err(SessionError::invalid(
                    format!("session database {}", db.resource),
                    format!("schema version {version} predates named sessions: open it once to bring it up to date"),
                ));
            }
            let leases = session_sql::lease::TABLES.iter().all(|t| tables.iter().any(|have| have == t));
            let sql = if leases { LIST_SESSIONS_WITH_LEASES } else { LIST_SESSIONS };
            let rows = query(tx, db, &Statement { sql, params: Vec::new() }).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(SessionInfo::from_row(&db.resource, &cells(row, &db.resource)?)?);
            }
            Ok(out)
        })
        .await
    }
}
