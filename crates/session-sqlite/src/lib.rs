#![doc = include_str!("../README.md")]

mod backend;
pub mod foreign;
mod lease;
pub mod read_only;
pub mod schema;
mod trace;
mod values;

pub use backend::{Durability, SqliteBackend};
pub use lease::SqliteLeases;

/// The model, trait and store this crate plugs into, re-exported so that depending on this crate
/// alone is enough (`session_core` is the same crate the other backends use).
pub use session_core;
pub use session_core::{
    AuthKey, Change, KdfParams, KeyId, Keyring, Passphrase, SealingKey, SessionBackend, SessionData, SessionError,
    SessionStore,
};
