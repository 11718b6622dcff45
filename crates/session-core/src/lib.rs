#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod auth_key;
mod backend;
mod change;
pub mod codec;
pub mod dc_table;
mod error;
pub mod fs;
mod holder;
mod key;
mod key_id;
pub mod lease;
mod memory;
mod model;
mod peers;
pub mod seal;
mod snapshot;
mod source;
mod store;
mod trace_macro;

pub use auth_key::{AuthKey, AUTH_KEY_LEN};
pub use backend::SessionBackend;
pub use change::{Change, UpdateStateChange};
pub use error::{BoxError, Result, SessionError};
pub use key::{KdfParams, KdfRecord, Keyring, Passphrase, SealingKey, KEY_LEN, SALT_LEN};
pub use key_id::{KeyId, KEY_ID_LEN};
pub use lease::{
    Lease, LeaseBatch, LeaseGrant, LeaseHolder, LeaseOptions, LeaseStatus, LeaseStore, MemoryLeases, Renewal,
    DEFAULT_LEASE_TTL,
};
pub use memory::InMemoryBackend;
pub use model::{DcFlags, DcKey, DcOption, MinPeerContext, SelfUser, SessionData, UpdateState};
pub use peers::{Peer, PeerBlob, PeerCache, PeerClass, PeerKey, PeerKind, SortedPeers};
pub use snapshot::SessionSnapshot;
pub use source::SessionSource;
pub use store::{FlushPolicy, SessionStore};

/// Re-exported so that backends implement the trait with the same macro version.
pub use async_trait::async_trait;
