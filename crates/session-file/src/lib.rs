#![doc = include_str!("../README.md")]

mod backend;
#[doc(hidden)]
pub mod failpoint;
pub mod legacy;
mod log;
mod snapshot;

pub use backend::{BinaryFileBackend, COMPACT_FACTOR, COMPACT_FLOOR};
pub use snapshot::{read_snapshot, Snapshot, StoredFormat};

/// The model, trait and store this crate plugs into, re-exported so that depending on this crate
/// alone is enough (`session_core` is the same crate the other backends use).
pub use session_core;
pub use session_core::{AuthKey, Change, SessionBackend, SessionData, SessionError, SessionStore};
