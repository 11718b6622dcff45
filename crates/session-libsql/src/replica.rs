//! The embedded replica: a local SQLite copy (through session-sqlite) that serves reads, kept
//! in step with the primary.

use session_core::{Change, SessionBackend, SessionData, SessionError};
use session_sqlite::SqliteBackend;
use tokio::sync::Mutex;

use crate::remote::{Generation, Remote, Step};

#[derive(Debug)]
pub(crate) struct Replica {
    pub(crate) local: SqliteBackend,
    pub(crate) remote: Remote,
    /// The primary's generation the local copy equals (its write counter and history id: a
    /// server restored from a backup and written to again has the same count and another
    /// history); `None` when the copy is behind in an unknown way (a local write failed after
    /// the primary took it) and must be pulled again.
    /// Held across each whole operation, so this process's writes reach both sides in order.
    synced: Mutex<Option<Generation>>,
}

fn unbox(e: session_core::BoxError) -> SessionError {
    SessionError::from_boxed(e, "libsql-replica")
}

impl Replica {
    pub(crate) async fn open(local: SqliteBackend, remote: Remote) -> Result<Replica, SessionError> {
        let replica = Replica { local, remote, synced: Mutex::new(None) };
        replica.sync().await?;
        Ok(replica)
    }

    /// Pulls the primary's state into the local copy unless it is already there.
    pub(crate) async fn sync(&self) -> Result<bool, SessionError> {
        let mut synced = self.synced.lock().await;
        if let Some(at) = *synced {
            if self.remote.generation().await? == at {
                return Ok(false);
            }
            // Another writer, or a server restored from a backup (the count may even match):
            // either way the server's state replaces the copy.
            tracing::debug!(url = %self.remote.resource, "the server's generation is not the copy's, pulling");
        }
        self.pull(&mut synced).await?;
        Ok(true)
    }

    /// Replaces the copy with the server's state. The copy's replacement is one local
    /// transaction, so on any failure the copy (and what `synced` says of it) is unchanged.
    async fn pull(&self, synced: &mut Option<Generation>) -> Result<(), SessionError> {
        let (data, generation) = self.remote.load().await?;
        match data {
            Some(data) => self.local.save_session(&data).await.map_err(unbox)?,
            None => self.local.delete().await.map_err(unbox)?,
        }
        *synced = Some(generation);
        Ok(())
    }

    /// Reads the copy. A write of this process in progress (waiting on the server) does not
    /// hold the read up: the copy is read as it stands, which is every write acknowledged so far
    /// (the lease makes this process the only writer). Only a copy known to be stale is pulled
    /// first.
    pub(crate) async fn load(&self) -> Result<Option<SessionData>, SessionError> {
        if let Ok(mut synced) = self.synced.try_lock() {
            if synced.is_none() {
                self.pull(&mut synced).await?;
            }
        }
        self.local.load_session().await.map_err(unbox)
    }

    pub(crate) async fn persist(
        &self,
        fence: Option<(&str, u64)>,
        changes: &[Change],
        full: &SessionData,
    ) -> Result<(), SessionError> {
        let mut synced = self.synced.lock().await;
        let (sid, seal) = (self.remote.sid, self.remote.seal.as_ref());
        let plan = session_sql::persist_plan_sealed(sid, changes, full, Default::default(), seal)?;
        let written = self.remote.write(fence, plan.into_iter()).await?;
        self.settle(&mut synced, written, Local::Persist(changes, full)).await
    }

    pub(crate) async fn save_session(
        &self,
        fence: Option<(&str, u64)>,
        data: &SessionData,
    ) -> Result<(), SessionError> {
        let mut synced = self.synced.lock().await;
        let plan = session_sql::save_plan_sealed(self.remote.sid, data, self.remote.seal.as_ref())?;
        let written = self.remote.write(fence, plan.into_iter()).await?;
        self.settle(&mut synced, written, Local::Save(data)).await
    }

    pub(crate) async fn delete(&self, fence: Option<(&str, u64)>) -> Result<(), SessionError> {
        let mut synced = self.synced.lock().await;
        let written = self.remote.write(fence, session_sql::delete_plan(self.remote.sid)).await?;
        self.settle(&mut synced, written, Local::Delete).await
    }

    /// After a write the primary took: when the server held exactly the copy's generation as the
    /// write applied (nobody else wrote, and the server is the one the copy came from, not a
    /// restored backup that reached the same count), the same write brings the copy level;
    /// otherwise the copy is pulled again.
    async fn settle(
        &self,
        synced: &mut Option<Generation>,
        written: Option<Step>,
        write: Local<'_>,
    ) -> Result<(), SessionError> {
        let before = synced.take();
        // On any error below the copy stays marked stale and the next call pulls it.
        match written {
            Some(step) if before == Some(step.before) => {
                match write {
                    Local::Persist(changes, full) => self.local.persist(changes, full).await,
                    Local::Save(data) => self.local.save_session(data).await,
                    Local::Delete => self.local.delete().await,
                }
                .map_err(unbox)?;
                *synced = Some(step.now);
                Ok(())
            }
            // Another writer in between, a server whose history is not the copy's, or a server
            // that did not report the write's generations.
            _ => {
                tracing::debug!(url = %self.remote.resource, "the copy does not precede this write, pulling");
                self.pull(synced).await
            }
        }
    }
}

/// The write to repeat on the local copy.
enum Local<'a> {
    Persist(&'a [Change], &'a SessionData),
    Save(&'a SessionData),
    Delete,
}
