#![doc = include_str!("../README.md")]

mod backend;
pub mod foreign;
mod ours;

pub use backend::StringSessionBackend;
pub use foreign::StringFormat;
pub use ours::{decode, encode_compact, encode_full, COMPACT_PREFIX, FULL_PREFIX, STRING_VERSION};

/// The model, trait and store this crate plugs into, re-exported so that depending on this crate
/// alone is enough (`session_core` is the same crate the other backends use).
pub use session_core;
pub use session_core::{AuthKey, Change, SessionBackend, SessionData, SessionError, SessionStore};
