//! A persist without the lease's fence, for the bench that measures what the fence costs
//! (issue 16: a fenced persist at most 1.2x an unfenced one). Behind the internal
//! `bench-unfenced` feature, which only `session-bench` turns on: a write that skips the fence
//! is exactly what the fence exists to forbid, so no user build has it.

use session_core::{Change, SessionData, SessionError};

use crate::{Inner, LibSqlBackend};

impl LibSqlBackend {
    /// [`SessionBackend::persist`](session_core::SessionBackend::persist) of the remote mode
    /// without the fence statement: the same plan, SQL text, request and generation bump, so
    /// that the bench's fenced / unfenced ratio is the fence's cost alone. Other modes: an
    /// `Invalid` error.
    #[doc(hidden)]
    pub async fn persist_unfenced(&self, changes: &[Change], full: &SessionData) -> Result<(), SessionError> {
        let persist = async {
            match &self.inner {
                Inner::Remote(r) => {
                    let plan =
                        session_sql::persist_plan_sealed(r.sid, changes, full, Default::default(), r.seal.as_ref())?;
                    r.write(None, plan.into_iter()).await.map(drop)
                }
                #[cfg(feature = "local")]
                _ => Err(SessionError::invalid("persist_unfenced", "only the remote mode has a fence to leave out")),
            }
        };
        crate::trace::timed(self.span("persist", Some(changes.len())), persist).await
    }
}
