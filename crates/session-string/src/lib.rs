#![doc = include_str!("../README.md")]

mod backend;
pub mod foreign;
mod ours;

pub use backend::StringSessionBackend;
pub use foreign::StringFormat;
pub use ours::{
    decode, decode_sealed, encode_compact, encode_full, encode_sealed, is_sealed, COMPACT_PREFIX, FULL_PREFIX,
    SEALED_PREFIX, STRING_VERSION,
};

/// The model, trait and store this crate plugs into, re-exported so that depending on this crate
/// alone is enough (`session_core` is the same crate the other backends use).
pub use session_core;
pub use session_core::{
    AuthKey, Change, KdfParams, KeyId, Keyring, Passphrase, SealingKey, SessionBackend, SessionData, SessionError,
    SessionStore,
};
