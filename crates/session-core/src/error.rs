//! Errors callers can match on.

use std::path::PathBuf;

/// The error type of [`crate::SessionBackend`] methods. Backends return [`SessionError`] boxed in
/// it, so that callers can recover the kind with [`SessionError::from_boxed`]; third-party
/// backends may return anything.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong with a session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Another owner (process or backend) holds the session.
    #[error("session {resource} is locked by {}{}", locker(*.pid, .holder), expiry(.expires_in))]
    Locked {
        /// The file or database.
        resource: String,
        /// The holder's pid, when it could be found (on this machine; see `holder` for others).
        pid: Option<u32>,
        /// The holder of a lease (machine, pid, instance), for sessions kept in a server.
        holder: Option<crate::holder::LeaseHolder>,
        /// How long the holder's lease has left by the store's clock (if it is not renewed).
        expires_in: Option<std::time::Duration>,
    },
    /// This owner's lease on the session was taken over by another owner (after it expired:
    /// this process was paused, partitioned or could not renew), or was released. Nothing was
    /// written by the call that returned it; reopen the session to own it again.
    #[error("the lease on session {resource} is lost: {reason}")]
    LeaseLost {
        /// The session.
        resource: String,
        /// What happened.
        reason: String,
    },
    /// The stored bytes are damaged. They were not replaced by a fresh session.
    #[error("session {resource} is corrupt: {reason}{}", preserved(.preserved_at))]
    Corrupt {
        /// The file, database or input that is damaged.
        resource: String,
        /// What is wrong.
        reason: String,
        /// Where a copy of the damaged data was kept.
        preserved_at: Option<PathBuf>,
    },
    /// The session is sealed (encrypted at rest) with a key the keyring given does not hold: a
    /// wrong key or passphrase, or a key rotated away. Nothing was changed; this is not damage.
    #[error("session {resource} is sealed with key {key_id}, which the keyring given does not hold (wrong key or passphrase?)")]
    WrongKey {
        /// The file, database or input.
        resource: String,
        /// The id of the key it was sealed with (never the key).
        key_id: crate::key_id::KeyId,
    },
    /// The session is sealed (encrypted at rest) and was opened without a key. Nothing was
    /// changed; open it again with its key.
    #[error("session {resource} is sealed{}: open it with its key", sealed_with(.key_id))]
    Sealed {
        /// The file, database or input.
        resource: String,
        /// The id of the key it was sealed with, when it could be read.
        key_id: Option<crate::key_id::KeyId>,
    },
    /// The data was written by a newer version of this format than this build knows.
    #[error("{what} format version {found} is newer than this build supports (up to {supported})")]
    UnsupportedVersion {
        /// Which format.
        what: &'static str,
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The store could not be reached (server down, network error).
    #[error("session store {resource} is unavailable: {source}")]
    Unavailable {
        /// The store.
        resource: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The store refused our credentials.
    #[error("session store {resource} refused the credentials: {source}")]
    Unauthorized {
        /// The store.
        resource: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// An I/O error, with its kind kept.
    #[error("I/O error on {resource}: {source}")]
    Io {
        /// The file or directory.
        resource: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Input that is not a session of the expected form (a string, a foreign file).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was being read.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// A backend-specific error.
    #[error("{backend}: {source}")]
    Backend {
        /// The backend's name.
        backend: String,
        /// The error.
        #[source]
        source: BoxError,
    },
    /// The store was closed.
    #[error("the session store is closed")]
    Closed,
}

fn locker(pid: Option<u32>, holder: &Option<crate::holder::LeaseHolder>) -> String {
    match (holder, pid) {
        (Some(h), _) => h.to_string(),
        (None, Some(pid)) => format!("pid {pid}"),
        (None, None) => "another owner".to_owned(),
    }
}

fn expiry(expires_in: &Option<std::time::Duration>) -> String {
    match expires_in {
        Some(d) => format!(" (its lease expires in {:.1} s unless renewed)", d.as_secs_f64()),
        None => String::new(),
    }
}

fn sealed_with(id: &Option<crate::key_id::KeyId>) -> String {
    match id {
        Some(id) => format!(" with key {id}"),
        None => String::new(),
    }
}

fn preserved(at: &Option<PathBuf>) -> String {
    match at {
        Some(p) => format!(" (the damaged copy is kept at {})", p.display()),
        None => String::new(),
    }
}

impl SessionError {
    /// Recovers a [`SessionError`] from a backend's boxed error, or wraps a foreign one as
    /// [`SessionError::Backend`].
    pub fn from_boxed(error: BoxError, backend: &str) -> SessionError {
        match error.downcast::<SessionError>() {
            Ok(e) => *e,
            Err(source) => match source.downcast::<std::io::Error>() {
                Ok(io) => SessionError::Io { resource: backend.to_owned(), source: *io },
                Err(source) => SessionError::Backend { backend: backend.to_owned(), source },
            },
        }
    }

    /// An I/O error on a path.
    pub fn io(resource: impl std::fmt::Display, source: std::io::Error) -> SessionError {
        SessionError::Io { resource: resource.to_string(), source }
    }

    /// A corrupt-data error with no preserved copy.
    pub fn corrupt(resource: impl Into<String>, reason: impl Into<String>) -> SessionError {
        SessionError::Corrupt { resource: resource.into(), reason: reason.into(), preserved_at: None }
    }

    /// A `Locked` error for a holder known by pid only (a local lock).
    pub fn locked(resource: impl Into<String>, pid: Option<u32>) -> SessionError {
        SessionError::Locked { resource: resource.into(), pid, holder: None, expires_in: None }
    }

    /// An invalid-input error.
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> SessionError {
        SessionError::Invalid { what: what.into(), reason: reason.into() }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = SessionError> = std::result::Result<T, E>;
