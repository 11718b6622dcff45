#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod conn;
mod keys;
mod lease;
mod list;
mod read_only;
mod reader;
mod scripts;
mod seal;
mod url;
mod writer;

pub use backend::{RedisBackend, RedisOptions};
pub use conn::DEFAULT_CALL_TIMEOUT;
pub use keys::{DEFAULT_KEY_PREFIX, DEFAULT_SESSION};
pub use lease::RedisLeases;
pub use list::RedisSessionInfo;
/// What [`RedisOptions::read_session`] found (the server backends share [`session_core::SessionSnapshot`]).
pub type RedisSnapshot = session_core::SessionSnapshot;
/// The core crate, so that users of this backend need no other dependency.
pub use session_core;
pub use session_core::{
    AuthKey, Change, KdfParams, KeyId, Keyring, Passphrase, SealingKey, SessionBackend, SessionData, SessionError,
    SessionStore,
};
