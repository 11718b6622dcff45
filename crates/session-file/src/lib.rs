#![doc = include_str!("../README.md")]

mod backend;
mod copies;
#[doc(hidden)]
pub mod failpoint;
pub mod legacy;
mod log;
mod mark;
mod snapshot;
mod trace;

pub use backend::{BinaryFileBackend, CutTail, COMPACT_FACTOR, COMPACT_FLOOR, MAX_FILE_LEN};
pub use log::TornKind;
pub use snapshot::{read_snapshot, read_snapshot_with_key, Snapshot, StoredFormat};

/// The model, trait and store this crate plugs into, re-exported so that depending on this crate
/// alone is enough (`session_core` is the same crate the other backends use).
pub use session_core;
pub use session_core::{
    AuthKey, Change, KdfParams, KeyId, Keyring, Passphrase, SealingKey, SessionBackend, SessionData, SessionError,
    SessionStore,
};
