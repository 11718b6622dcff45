//! The peer of step `i` of the kill -9 writer: written by the child
//! (`tests/bin/processes_child.rs`) and looked for by the parent (`tests/processes.rs`).

use session_core::{Peer, PeerKind};

/// Peer `i`, with a long username so that records are large.
pub fn peer(i: u64) -> Peer {
    let id = i64::try_from(i).expect("id") + 1;
    Peer::new(id, PeerKind::User, id * 7).with_usernames(vec![format!("user_{i}_{}", "x".repeat(120))])
}
