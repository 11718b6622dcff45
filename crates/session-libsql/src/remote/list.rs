//! The sessions of a server's database, by name, with their leases (reads only).

use session_core::SessionError;
use session_sql::{SessionInfo, SqlValueRef};

use super::transport::{collect, value_ref};
use super::Remote;

impl Remote {
    /// Every named session of the database with its lease ([`SessionInfo`]); an empty list for
    /// an empty database. A database of an older schema holds `default` alone.
    pub(crate) async fn sessions(&self) -> Result<Vec<SessionInfo>, SessionError> {
        let (version, tables) = self.inspect().await?;
        session_sql::migrations_from(version).map(drop)?;
        let has = |t: &str| tables.iter().any(|n| n == t);
        let query = if version < 4 {
            // One unnamed session (or none): listed as `default` when its row is there.
            if !has("session") {
                return Ok(Vec::new());
            }
            "SELECT 'default', 1, NULL, NULL FROM session LIMIT 1"
        } else if has(session_sql::lease::TABLES[0]) {
            session_sql::LIST_SESSIONS_WITH_LEASES
        } else {
            session_sql::LIST_SESSIONS
        };
        let conn = self.lock().await?;
        self.timed(&conn, async {
            let rows = conn.query(query, ()).await.map_err(|e| self.map(e))?;
            let mut out = Vec::new();
            for row in collect(rows).await.map_err(|e| self.map(e))? {
                let refs: Vec<SqlValueRef<'_>> = row.iter().map(value_ref).collect();
                out.push(SessionInfo::from_row(&self.resource, &refs)?);
            }
            Ok(out)
        })
        .await
    }
}
