//! One owner per session, enforced on the network: the client never uses a session's keys
//! past its lease.
//!
//! A backend that keeps a session where several machines can reach it (libSQL remote or replica,
//! Redis, PostgreSQL) holds a lease on it ([`session_core::lease`]) and publishes its status
//! through [`SessionBackend::lease`](session_core::SessionBackend::lease). The client checks it is
//! held before it starts, and a guard task watches it: the moment it is anything but `Held`
//! (taken over by another owner, or not renewed in time because the store is unreachable), the
//! guard stops the network at once (the connection runner is aborted, so no request already
//! queued is sent either) and every later call of ours returns [`SessionError::LeaseLost`].
//! Sending with a key another process may be using is what makes Telegram revoke it
//! (`AUTH_KEY_DUPLICATED`), so a suspended lease is treated like a lost one: the application
//! builds a new client once the store is back.

use std::sync::Weak;

use session_core::{LeaseStatus, SessionError};
use tokio::sync::watch;

/// The error for a client whose session is not (or no longer) owned.
pub(crate) fn not_owned(resource: &str, status: &LeaseStatus) -> SessionError {
    let reason = match status {
        LeaseStatus::Held { .. } => "the lease is held".to_owned(),
        LeaseStatus::Suspended { reason } => {
            format!("the lease could not be renewed in time ({reason}); the network was stopped")
        }
        LeaseStatus::Lost { reason } => format!("{reason}; the network was stopped"),
        LeaseStatus::Released => "the lease was released; the network was stopped".to_owned(),
    };
    SessionError::LeaseLost { resource: resource.to_owned(), reason }
}

/// Checks the lease before the client uses the session's keys.
pub(crate) fn check_held(resource: &str, lease: Option<&watch::Receiver<LeaseStatus>>) -> Result<(), SessionError> {
    match lease.map(|rx| rx.borrow().clone()) {
        None | Some(LeaseStatus::Held { .. }) => Ok(()),
        Some(other) => Err(not_owned(resource, &other)),
    }
}

/// What the guard stops when the lease goes.
pub(crate) trait Stop: Send + Sync + 'static {
    /// Stops every connection at once and records `error` for the application.
    fn stop(&self, error: SessionError);
}

/// Watches the lease until it is not held, then stops `target` (if it still exists).
pub(crate) async fn guard<T: Stop>(mut lease: watch::Receiver<LeaseStatus>, resource: String, target: Weak<T>) {
    loop {
        let status = lease.borrow_and_update().clone();
        if !matches!(status, LeaseStatus::Held { .. }) {
            tracing::warn!(resource = %resource, status = ?status, "session lease not held: stopping the network");
            if let Some(target) = target.upgrade() {
                target.stop(not_owned(&resource, &status));
            }
            return;
        }
        if lease.changed().await.is_err() {
            // The backend is gone (the client is shutting down).
            return;
        }
    }
}
