//! The peer cache: access hashes keyed by the peer's id space and id.
//!
//! A session may cache millions of peers, so each peer is packed (24 bytes for a loaded one: a
//! sorted vector, no tree node) and the rare extras (usernames, phone) live in a side map. There
//! is no count limit anywhere.
//!
//! One file per concern, each depending only on the ones listed before it:
//!
//! - `model`: what a peer is ([`PeerClass`], [`PeerKind`], [`PeerKey`], [`Peer`]) and the
//!   stored one-byte codes of kinds and id spaces ([`PeerKind::code`], [`PeerClass::code`]),
//!   which are **stable**: every format we write stores them.
//! - `cache`: [`PeerCache`], the packed map itself.
//! - `blob`: the cache's stored byte form and its pieces ([`PeerBlob`]), the `serde` impls.
//! - `builder`: [`SortedPeers`], which builds a cache from peers (or blobs) in key order.

mod blob;
mod builder;
mod cache;
mod model;

pub use blob::PeerBlob;
pub use builder::SortedPeers;
pub use cache::PeerCache;
pub use model::{Peer, PeerClass, PeerKey, PeerKind};
