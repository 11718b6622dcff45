//! The steps of the file writers: taken by the writer child (`tests/bin/writer.rs`, modes `ours`
//! and `layer05`) and looked for after each cut by `tests/file_backend.rs`.
// Each side uses part of it.
#![allow(dead_code)]

use session_core::{Change, Peer, PeerKind, UpdateStateChange};

/// Peer `i` of step `i`.
pub fn peer(i: u64) -> Peer {
    let id = i64::try_from(i).expect("id") + 1;
    Peer::new(id, PeerKind::User, id * 7).with_usernames(vec![format!("user_{i}")])
}

/// The pts of step `i`.
pub fn pts(i: u64) -> i32 {
    i32::try_from(i).expect("pts")
}

/// Step `i`: peer `i` and pts `i` in one flush; every 7th also rewrites the 300 peers before it
/// (a record of several sectors, for torn writes to tear).
pub fn changes(i: u64) -> Vec<Change> {
    let mut batch = vec![
        Change::UpsertPeer(peer(i)),
        Change::UpdateState(UpdateStateChange::Primary { pts: pts(i), date: 1, seq: 2 }),
    ];
    if i.is_multiple_of(7) {
        batch.extend((i.saturating_sub(300)..i).map(|j| Change::UpsertPeer(peer(j))));
    }
    batch
}
