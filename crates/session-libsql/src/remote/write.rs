//! The write path: a plan of session-sql (persist, save, delete) sent as one transaction in one
//! HTTP request, with the bump of the generation and the generations it went from and to.

use session_core::{Change, SessionData, SessionError};
use session_sql::{Known, Statement};
use tokio::time::Instant;

use super::inline::inline_all;
use super::known::KnownRows;
#[cfg(feature = "local")]
use super::GENERATION_TABLE;
use super::{Generation, Remote, BUMP_GENERATION, READ_GENERATION};

/// The generations a write moved the server from and to, read in the write's own transaction:
/// `before` is exactly what the server held when the write applied, so a replica whose copy is
/// `before` may apply the same write to its copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    /// The generation the write started from.
    pub(crate) before: Generation,
    /// The generation it made.
    pub(crate) now: Generation,
}

impl Remote {
    /// Runs `plan` in one transaction (one HTTP request), bumping the generation with it.
    /// Returns the generations the write moved the server from and to, when the server reported
    /// them.
    ///
    /// With a `fence` (session name, lease token), the transaction's first statement checks that
    /// the token is still the session's current one; when it is not, the server applies nothing
    /// and the call fails with [`SessionError::LeaseLost`].
    pub(crate) async fn write(
        &self,
        fence: Option<(&str, u64)>,
        plan: impl Iterator<Item = Statement>,
    ) -> Result<Option<Step>, SessionError> {
        self.write_until(Instant::now() + self.timeout, fence, plan).await
    }

    /// A persist of `changes` (the remote mode's), planned with what this owner knows of the
    /// stored rows ([`super::known`]), which the answer then updates.
    pub(crate) async fn persist(
        &self,
        fence: Option<(&str, u64)>,
        changes: &[Change],
        full: &SessionData,
    ) -> Result<(), SessionError> {
        self.write_known(
            fence,
            |known| session_sql::persist_plan_sealed(self.sid, changes, full, known, self.seal.as_ref()),
            |known| known.persisted(changes),
        )
        .await
    }

    /// A full save of `data` (the remote mode's).
    pub(crate) async fn save(&self, fence: Option<(&str, u64)>, data: &SessionData) -> Result<(), SessionError> {
        self.write_known(
            fence,
            |_| session_sql::save_plan_sealed(self.sid, data, self.seal.as_ref()),
            |known| known.saved(data),
        )
        .await
    }

    /// A delete of every row of the session (the remote mode's).
    pub(crate) async fn delete(&self, fence: Option<(&str, u64)>) -> Result<(), SessionError> {
        self.write_known(fence, |_| Ok(session_sql::delete_plan(self.sid).collect()), KnownRows::deleted).await
    }

    /// Writes the plan `plan` makes from what this owner knows of its stored rows, then updates
    /// what it knows: `wrote` when the write committed, forgotten when its outcome is unknown.
    /// The call's waiting, for an earlier write included, ends within the timeout; the plan's
    /// own CPU time (sealing every row of a long run) is not waiting.
    async fn write_known(
        &self,
        fence: Option<(&str, u64)>,
        plan: impl FnOnce(Known<'_>) -> Result<Vec<Statement>, SessionError>,
        wrote: impl FnOnce(&mut KnownRows),
    ) -> Result<(), SessionError> {
        let start = Instant::now();
        let mut known =
            tokio::time::timeout_at(start + self.timeout, self.known.lock()).await.map_err(|_| self.no_answer())?;
        let built = Instant::now();
        let plan = plan(known.known())?;
        let deadline = start + self.timeout + built.elapsed();
        let result = self.write_until(deadline, fence, plan.into_iter()).await;
        match &result {
            Ok(_) => wrote(&mut known),
            Err(_) => known.forget(),
        }
        result.map(drop)
    }

    /// [`Remote::write`] for a call that ends at `deadline`.
    async fn write_until(
        &self,
        deadline: Instant,
        fence: Option<(&str, u64)>,
        plan: impl Iterator<Item = Statement>,
    ) -> Result<Option<Step>, SessionError> {
        let mut sql = String::new();
        let fence = fence.map(|(name, token)| session_sql::lease::fence(name, token));
        inline_all(&mut sql, fence.into_iter().chain(plan))?;
        sql.push_str(BUMP_GENERATION);
        sql.push_str(READ_GENERATION);
        // The SQL text carries the rows' values (keys included): its size is logged, never it.
        tracing::debug!(bytes = sql.len(), "sending one write transaction");
        let rows = self.batch_until(deadline, &sql).await?;
        // Batches ask for no rows; sqld sends them anyway. A server that does not gives `None`,
        // and the caller reads the counter separately.
        Ok(rows.and_then(|rows| match rows.first().map(Vec::as_slice) {
            Some([libsql::Value::Integer(now), libsql::Value::Integer(before)]) => {
                Some(Step { before: *before, now: *now })
            }
            _ => None,
        }))
    }

    /// Registers session `name` (after the migrations) and makes it the one this connection
    /// reads and writes. The default session needs no registration (the migration made it).
    pub(crate) async fn register(&mut self, name: &str) -> Result<(), SessionError> {
        if session_sql::is_default(name) {
            return Ok(());
        }
        let mut sql = String::new();
        inline_all(&mut sql, session_sql::register_session(name)?.into_iter())?;
        let rows = self.batch(&sql).await?;
        let row = rows.and_then(|rows| rows.into_iter().next());
        self.sid = match row.as_deref() {
            Some([libsql::Value::Integer(sid)]) => *sid,
            _ => return Err(SessionError::corrupt(&self.resource, format!("sessions: no id for {name:?}"))),
        };
        Ok(())
    }

    /// The server's generation counter now (the embedded replica's check for other writers).
    #[cfg(feature = "local")]
    pub(crate) async fn generation(&self) -> Result<Generation, SessionError> {
        let conn = self.lock().await?;
        self.timed(&conn, async {
            let mut rows = conn.query(READ_GENERATION, ()).await.map_err(|e| self.map(e))?;
            let row = rows.next().await.map_err(|e| self.map(e))?;
            match row.map(|r| r.get_value(0)).transpose().map_err(|e| self.map(e))? {
                Some(libsql::Value::Integer(v)) => Ok(v),
                _ => Err(SessionError::corrupt(&self.resource, format!("{GENERATION_TABLE}: no counter row"))),
            }
        })
        .await
    }
}
