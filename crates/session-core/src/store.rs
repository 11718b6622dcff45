//! The store a client uses: the session in memory, changes persisted with group commit.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::field::Empty;
use tracing::Instrument as _;

use crate::backend::SessionBackend;
use crate::change::Change;
use crate::error::{Result, SessionError};
use crate::model::SessionData;

/// When the store persists changes that are not critical.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushPolicy {
    /// Pending changes are flushed at least this often.
    pub interval: Duration,
    /// A flush starts as soon as this many changes are pending.
    pub max_pending: usize,
}

impl FlushPolicy {
    /// A policy.
    pub fn new(interval: Duration, max_pending: usize) -> Self {
        Self { interval, max_pending: max_pending.max(1) }
    }
}

impl Default for FlushPolicy {
    /// 100 ms or 512 pending changes, whichever comes first: a peer cached while handling an
    /// update is durable a tenth of a second later, and a burst costs one write per 512 changes.
    fn default() -> Self {
        Self { interval: Duration::from_millis(100), max_pending: 512 }
    }
}

struct State {
    data: Arc<SessionData>,
    pending: Vec<Change>,
    /// Number of changes applied since open (a sequence number for group commit).
    applied: u64,
    /// Every change numbered up to this one has been acknowledged by the backend.
    durable: u64,
    /// A background flush failure not yet reported to a caller.
    failure: Option<SessionError>,
    closed: bool,
}

struct Inner {
    backend: Arc<dyn SessionBackend>,
    state: Mutex<State>,
    /// One `persist` at a time; whoever holds it writes every change pending at that moment.
    flush_lock: tokio::sync::Mutex<()>,
    wake: Arc<Notify>,
    policy: FlushPolicy,
    flusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // Critical sections never panic half-way through a change (see `apply_many`), so the
        // state behind a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if !state.pending.is_empty() {
            tracing::warn!(
                backend = self.backend.name(),
                pending = state.pending.len(),
                "session store dropped with unflushed changes; call close() or flush() first"
            );
        }
        self.wake.notify_one();
    }
}

/// The session in memory, backed by a [`SessionBackend`].
///
/// Reads are synchronous and cheap. A change is applied in memory at once and persisted through
/// [`SessionBackend::persist`] with group commit: one write covers every change made before it.
/// Changes are flushed by a background task every [`FlushPolicy::interval`] or when
/// [`FlushPolicy::max_pending`] are waiting; critical changes (a new auth key, home DC, user,
/// log out) are flushed before the call that made them returns.
///
/// A failed background flush is logged with `tracing`, its changes stay pending, and the error
/// is returned by the next call to [`apply`](Self::apply) or [`flush`](Self::flush).
///
/// Clones share the same session. Call [`close`](Self::close) before dropping the last clone, or
/// changes made since the last flush are lost.
#[derive(Clone)]
pub struct SessionStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.inner.state();
        f.debug_struct("SessionStore")
            .field("backend", &self.inner.backend.name())
            .field("pending", &s.pending.len())
            .field("peers", &s.data.peers.len())
            .field("closed", &s.closed)
            .finish()
    }
}

impl SessionStore {
    /// Loads the session from `backend` (an empty session when it holds none) and starts the
    /// background flusher on the current tokio runtime.
    ///
    /// A backend that cannot be read makes this fail: an unreachable store is never mistaken
    /// for an empty one.
    pub async fn open(backend: Arc<dyn SessionBackend>, policy: FlushPolicy) -> Result<Self> {
        let span = tracing::debug_span!("open_store", backend = backend.name(), peers = Empty, elapsed_us = Empty);
        let start = (!span.is_disabled()).then(std::time::Instant::now);
        let loaded = backend.load_session().instrument(span.clone()).await;
        if let Some(start) = start {
            span.record("elapsed_us", micros(start));
            match &loaded {
                Ok(data) => {
                    span.record("peers", data.as_ref().map_or(0, |d| d.peers.len()));
                }
                Err(e) => span.in_scope(|| tracing::debug!(error = %e, "the session could not be loaded")),
            }
        }
        let loaded = loaded.map_err(|e| SessionError::from_boxed(e, backend.name()))?;
        let state = State {
            data: Arc::new(loaded.unwrap_or_default()),
            pending: Vec::new(),
            applied: 0,
            durable: 0,
            failure: None,
            closed: false,
        };
        let inner = Arc::new(Inner {
            backend,
            state: Mutex::new(state),
            flush_lock: tokio::sync::Mutex::new(()),
            wake: Arc::new(Notify::new()),
            policy,
            flusher: Mutex::new(None),
        });
        let task = tokio::spawn(background_flusher(Arc::downgrade(&inner), Arc::clone(&inner.wake), policy.interval));
        *inner.flusher.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        Ok(Self { inner })
    }

    /// [`open`](Self::open) with the default policy, for any backend value.
    pub async fn open_default(backend: impl SessionBackend + 'static) -> Result<Self> {
        Self::open(Arc::new(backend), FlushPolicy::default()).await
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn SessionBackend> {
        &self.inner.backend
    }

    /// A consistent snapshot of the session (cheap: shares memory until the next change).
    pub fn snapshot(&self) -> Arc<SessionData> {
        Arc::clone(&self.inner.state().data)
    }

    /// Reads the session under the lock, without copying.
    pub fn read<R>(&self, f: impl FnOnce(&SessionData) -> R) -> R {
        f(&self.inner.state().data)
    }

    /// Number of changes applied in memory but not yet acknowledged by the backend.
    pub fn pending(&self) -> usize {
        self.inner.state().pending.len()
    }

    /// Applies one change; see [`apply_many`](Self::apply_many).
    pub async fn apply(&self, change: Change) -> Result<()> {
        self.apply_many(vec![change]).await
    }

    /// Applies changes in memory at once and queues them for persistence. When any of them is
    /// critical ([`Change::is_critical`]) this returns only after the backend acknowledged them.
    ///
    /// If an earlier background flush failed, its error is returned instead and `changes` are
    /// not applied; the earlier changes stay pending and the next flush retries them.
    pub async fn apply_many(&self, changes: Vec<Change>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let critical = changes.iter().any(Change::is_critical);
        let target = {
            let mut s = self.inner.state();
            if s.closed {
                return Err(SessionError::Closed);
            }
            if let Some(e) = s.failure.take() {
                return Err(e);
            }
            Arc::make_mut(&mut s.data).apply_all(&changes);
            s.applied += changes.len() as u64;
            s.pending.extend(changes);
            if !critical && s.pending.len() >= self.inner.policy.max_pending {
                self.inner.wake.notify_one();
            }
            s.applied
        };
        if critical {
            self.flush_to(target).await
        } else {
            Ok(())
        }
    }

    /// Returns once every change applied before this call is acknowledged by the backend.
    ///
    /// A background flush failure not yet reported is returned first (the next call retries).
    pub async fn flush(&self) -> Result<()> {
        let target = {
            let mut s = self.inner.state();
            if let Some(e) = s.failure.take() {
                return Err(e);
            }
            s.applied
        };
        self.flush_to(target).await
    }

    async fn flush_to(&self, target: u64) -> Result<()> {
        flush_to(&self.inner, target).await
    }

    /// Replaces the whole session (an import, say) and saves it in full before returning.
    pub async fn replace(&self, data: SessionData) -> Result<()> {
        let _guard = self.inner.flush_lock.lock().await;
        let backend = &self.inner.backend;
        backend.save_session(&data).await.map_err(|e| SessionError::from_boxed(e, backend.name()))?;
        let mut s = self.inner.state();
        s.data = Arc::new(data);
        s.pending.clear();
        s.durable = s.applied;
        s.failure = None;
        Ok(())
    }

    /// Deletes the stored session and empties the one in memory.
    pub async fn delete(&self) -> Result<()> {
        let _guard = self.inner.flush_lock.lock().await;
        let backend = &self.inner.backend;
        backend.delete().await.map_err(|e| SessionError::from_boxed(e, backend.name()))?;
        let mut s = self.inner.state();
        s.data = Arc::new(SessionData::default());
        s.pending.clear();
        s.durable = s.applied;
        s.failure = None;
        Ok(())
    }

    /// Flushes, then refuses further changes and stops the background flusher. Reads keep
    /// working. When the flush fails the store stays open, so that the caller can retry.
    pub async fn close(&self) -> Result<()> {
        self.flush().await?;
        self.inner.state().closed = true;
        self.inner.wake.notify_one();
        let task = self.inner.flusher.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(task) = task {
            // The flusher exits at its next wake-up; waiting for it means that once `close`
            // returns, nothing but the caller's clones keeps the backend alive.
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "session flusher task ended abnormally");
            }
        }
        // Everything is written: let the next owner in (a lease is released, not left to expire).
        self.inner.backend.close().await.map_err(|e| SessionError::from_boxed(e, self.inner.backend.name()))
    }
}

async fn flush_to(inner: &Inner, target: u64) -> Result<()> {
    let _guard = inner.flush_lock.lock().await;
    let (changes, snapshot, upto) = {
        let mut s = inner.state();
        if s.durable >= target {
            return Ok(());
        }
        (std::mem::take(&mut s.pending), Arc::clone(&s.data), s.applied)
    };
    let span = tracing::debug_span!(
        "flush",
        backend = inner.backend.name(),
        changes = changes.len(),
        peers = snapshot.peers.len(),
        elapsed_us = Empty
    );
    let start = (!span.is_disabled()).then(std::time::Instant::now);
    let result = inner.backend.persist(&changes, &snapshot).instrument(span.clone()).await;
    if let Some(start) = start {
        span.record("elapsed_us", micros(start));
        if let Err(e) = &result {
            span.in_scope(|| tracing::debug!(error = %e, "the backend did not take the changes; they stay pending"));
        }
    }
    // Release the snapshot before taking the lock again, so that the next change does not have
    // to copy the session.
    drop(snapshot);
    let mut s = inner.state();
    match result {
        Ok(()) => {
            s.durable = s.durable.max(upto);
            Ok(())
        }
        Err(e) => {
            let mut retry = changes;
            retry.append(&mut s.pending);
            s.pending = retry;
            Err(SessionError::from_boxed(e, inner.backend.name()))
        }
    }
}

async fn background_flusher(weak: Weak<Inner>, wake: Arc<Notify>, interval: Duration) {
    loop {
        // Holds only the Notify while waiting, so that dropping the last store ends this task.
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = wake.notified() => {}
        }
        let Some(inner) = weak.upgrade() else { return };
        let (target, durable, closed) = {
            let s = inner.state();
            (s.applied, s.durable, s.closed)
        };
        if closed {
            return;
        }
        if target == durable {
            continue;
        }
        if let Err(e) = flush_to(&inner, target).await {
            tracing::warn!(backend = inner.backend.name(), error = %e, "background session flush failed; changes stay pending");
            inner.state().failure = Some(e);
        }
    }
}

/// Microseconds since `start`, for the spans' `elapsed_us`.
fn micros(start: std::time::Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}
