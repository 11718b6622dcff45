//! [`SessionHealth`]: whether the session store is keeping up, watched by the application.
//!
//! grammers writes peers and update state through the session trait and only logs an error it
//! gets back, so a failing store would otherwise go unnoticed: the peer a `resolve_username`
//! returned is not stored, and a later flush (whose error was already taken) reports success.
//! Every store error seen on grammers' behalf is kept here: it is published on a
//! [`tokio::sync::watch`] channel and returned by the next call of ours, while the changes stay
//! pending in the store and are retried until the backend takes them.

use std::sync::{Mutex, PoisonError};

use session_core::SessionError;
use tokio::sync::watch;

/// What the application sees of the session store (see [`Client::session_health`](crate::Client::session_health)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionHealth {
    /// Every change made so far has been taken by the backend, or is waiting for its flush.
    Healthy,
    /// The backend refused a write; the changes are kept in memory and retried.
    Failing {
        /// The last error, as text (the error itself goes to the next call of ours).
        error: String,
        /// Changes waiting to be written.
        pending: usize,
    },
    /// The session's lease is not held any more (another owner took it over, or it could not be
    /// renewed in time): the network was stopped and every call returns
    /// [`SessionError::LeaseLost`]. Final for this client.
    LeaseLost {
        /// What happened.
        reason: String,
    },
}

pub(crate) struct Health {
    tx: watch::Sender<SessionHealth>,
    unreported: Mutex<Option<SessionError>>,
    /// Set once the lease is gone: (resource, reason), returned by every later call.
    lease_lost: Mutex<Option<(String, String)>>,
}

impl Health {
    pub(crate) fn new() -> Self {
        Self {
            tx: watch::Sender::new(SessionHealth::Healthy),
            unreported: Mutex::new(None),
            lease_lost: Mutex::new(None),
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<SessionHealth> {
        self.tx.subscribe()
    }

    /// Records a store error that nobody of ours has returned yet.
    pub(crate) fn failed(&self, error: SessionError, pending: usize) {
        tracing::warn!(error = %error, pending, "session store failed; changes stay pending and are retried");
        self.publish(SessionHealth::Failing { error: error.to_string(), pending });
        *self.unreported.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
    }

    /// Publishes an error that is being returned to the application right now.
    pub(crate) fn failed_reported(&self, error: &SessionError, pending: usize) {
        self.publish(SessionHealth::Failing { error: error.to_string(), pending });
    }

    /// Publishes `health` unless the lease is lost, which is final: a store error after the loss
    /// (the stopped network's, or the fence's) must not hide it from a watcher that has not
    /// looked yet.
    fn publish(&self, health: SessionHealth) {
        self.tx.send_if_modified(|h| {
            if matches!(h, SessionHealth::LeaseLost { .. }) || *h == health {
                return false;
            }
            *h = health;
            true
        });
    }

    /// The lease is gone: final. `error` is a [`SessionError::LeaseLost`].
    pub(crate) fn lease_lost(&self, error: &SessionError) {
        let (resource, reason) = match error {
            SessionError::LeaseLost { resource, reason } => (resource.clone(), reason.clone()),
            other => (String::new(), other.to_string()),
        };
        // Recorded before it is published: whoever sees the status gets the error from a call.
        *self.lease_lost.lock().unwrap_or_else(PoisonError::into_inner) = Some((resource, reason.clone()));
        self.tx.send_replace(SessionHealth::LeaseLost { reason });
    }

    /// The backend took every pending change.
    pub(crate) fn recovered(&self) {
        self.publish(SessionHealth::Healthy);
    }

    pub(crate) fn is_failing(&self) -> bool {
        *self.tx.borrow() != SessionHealth::Healthy
    }

    /// The error recorded since the last call, if any (reported once), or the lost lease (every
    /// time).
    pub(crate) fn take(&self) -> Result<(), SessionError> {
        if let Some((resource, reason)) = self.lease_lost.lock().unwrap_or_else(PoisonError::into_inner).clone() {
            return Err(SessionError::LeaseLost { resource, reason });
        }
        match self.unreported.lock().unwrap_or_else(PoisonError::into_inner).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_lease_stays_the_published_health() {
        let health = Health::new();
        let rx = health.subscribe();
        health.failed(SessionError::locked("s", None), 1);
        assert!(matches!(&*rx.borrow(), SessionHealth::Failing { pending: 1, .. }));
        health.lease_lost(&SessionError::LeaseLost { resource: "s".into(), reason: "taken over".into() });
        // What the stopped network and the fence answer afterwards must not replace it.
        health.failed(SessionError::locked("s", None), 2);
        health.failed_reported(&SessionError::locked("s", None), 3);
        health.recovered();
        assert_eq!(*rx.borrow(), SessionHealth::LeaseLost { reason: "taken over".into() });
        assert!(matches!(health.take(), Err(SessionError::LeaseLost { .. })));
    }
}
