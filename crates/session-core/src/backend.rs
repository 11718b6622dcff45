//! The storage trait every backend implements.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::change::Change;
use crate::codec;
use crate::error::BoxError;
use crate::lease::LeaseStatus;
use crate::model::SessionData;

/// Where a session is stored.
///
/// Only [`load`](SessionBackend::load) and [`save`](SessionBackend::save) are required; they move
/// the bytes of [`crate::codec`] and a backend never needs to understand them. Every other
/// method has a default body built on those two, so a backend that implements only `load` and
/// `save` works everywhere the built-in ones do (and `session-testkit` checks that it does).
///
/// Built-in backends override [`persist`](SessionBackend::persist) so that one change costs
/// O(size of the change) instead of a rewrite of the whole session.
///
/// Rules every implementation follows (the conformance suite checks each):
/// - `load` on a store where nothing was saved (or after `delete`) returns `Ok(None)`. When the
///   store cannot be reached it returns an error, never `Ok(None)`: a client would otherwise
///   start a fresh login and overwrite the real session.
/// - When `save`, `persist` or `delete` return `Ok`, the data is durable as far as the backend
///   promises (the built-in file and SQLite backends: fsync'ed). When they fail, what was stored
///   before is still loadable.
/// - Methods never block the async runtime: blocking drivers run on `spawn_blocking`.
/// - Errors are returned boxed; built-in backends box a [`crate::SessionError`] so that callers
///   can match the kind (see [`crate::SessionError::from_boxed`]).
#[async_trait]
pub trait SessionBackend: Send + Sync {
    /// The stored bytes, or `None` when there is no session yet. An empty byte string also
    /// counts as "no session" (it is what the default [`delete`](SessionBackend::delete) saves).
    async fn load(&self) -> Result<Option<Vec<u8>>, BoxError>;

    /// Atomically replaces the stored session with `data`.
    async fn save(&self, data: &[u8]) -> Result<(), BoxError>;

    /// Forgets the session: a later `load` returns `Ok(None)`. The default saves empty bytes.
    async fn delete(&self) -> Result<(), BoxError> {
        self.save(&[]).await
    }

    /// A short name for messages and logs.
    fn name(&self) -> &str {
        "custom"
    }

    /// Loads and decodes the session. The default decodes [`load`](SessionBackend::load);
    /// backends that store a session in another shape (SQL rows) build it directly.
    async fn load_session(&self) -> Result<Option<SessionData>, BoxError> {
        match self.load().await? {
            None => Ok(None),
            Some(bytes) if bytes.is_empty() => Ok(None),
            Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
        }
    }

    /// Replaces the stored session with `data`. The default encodes it and calls
    /// [`save`](SessionBackend::save).
    async fn save_session(&self, data: &SessionData) -> Result<(), BoxError> {
        self.save(&codec::encode(data)?).await
    }

    /// Persists `changes`, which have already been applied to `full`, in order.
    ///
    /// The default writes `full` through [`save_session`](SessionBackend::save_session).
    /// Overrides store the changes alone. Changes are idempotent, and after a failed call the
    /// same changes (possibly with more after them) are passed again.
    async fn persist(&self, changes: &[Change], full: &SessionData) -> Result<(), BoxError> {
        let _ = changes;
        self.save_session(full).await
    }

    /// The status of the lease this backend holds on its session, for backends that keep a
    /// session where several machines can reach it (see [`crate::lease`]). A client watches it
    /// and stops using the session's keys whenever it is not [`LeaseStatus::Held`]. The default
    /// is `None`: the backend holds no lease (a local lock, or no owner control at all).
    fn lease(&self) -> Option<watch::Receiver<LeaseStatus>> {
        None
    }

    /// Gives up what the backend holds on the session (a lease: released at once, so a waiting
    /// owner takes over without waiting for it to expire). Called by
    /// [`SessionStore::close`](crate::SessionStore::close) after the last flush; writes after it
    /// fail. The default does nothing (a local lock goes when the backend is dropped).
    async fn close(&self) -> Result<(), BoxError> {
        Ok(())
    }
}

macro_rules! forward {
    ($($ty:ty),*) => {$(
        #[async_trait]
        impl<B: SessionBackend + ?Sized> SessionBackend for $ty {
            async fn load(&self) -> Result<Option<Vec<u8>>, BoxError> {
                (**self).load().await
            }
            async fn save(&self, data: &[u8]) -> Result<(), BoxError> {
                (**self).save(data).await
            }
            async fn delete(&self) -> Result<(), BoxError> {
                (**self).delete().await
            }
            fn name(&self) -> &str {
                (**self).name()
            }
            async fn load_session(&self) -> Result<Option<SessionData>, BoxError> {
                (**self).load_session().await
            }
            async fn save_session(&self, data: &SessionData) -> Result<(), BoxError> {
                (**self).save_session(data).await
            }
            async fn persist(&self, changes: &[Change], full: &SessionData) -> Result<(), BoxError> {
                (**self).persist(changes, full).await
            }
            fn lease(&self) -> Option<watch::Receiver<LeaseStatus>> {
                (**self).lease()
            }
            async fn close(&self) -> Result<(), BoxError> {
                (**self).close().await
            }
        }
    )*};
}

forward!(Box<B>, Arc<B>, &B);
