//! The steps of the SQLite writers: taken by the writer child (`tests/bin/writer.rs`, modes
//! `powerloss` and `balanced`) and checked after each cut by `tests/sqlite.rs`.
// Each side uses part of it.
#![allow(dead_code)]

use session_core::{Change, Peer, PeerKind, SelfUser, UpdateStateChange};
use session_sqlite::Durability;

/// Basic groups 1..=FILLER, upserted at steps 10, 110, 210, ...: more rows than the overlay
/// holds, so that the persist folds the overlay into chunks in its transaction.
pub const FILLER: i64 = 5_000;

/// A critical step (the user changes with it) every this many steps.
pub const CRITICAL_EVERY: u64 = 9;
/// A full save every this many steps.
pub const SAVE_EVERY: u64 = 25;

/// Peer `i` of step `i`.
pub fn peer(i: u64) -> Peer {
    let i = i64::try_from(i).expect("id");
    let kind = if i % 3 == 0 { PeerKind::Megagroup } else { PeerKind::User };
    let mut p = Peer::new(i, kind, i.wrapping_mul(-7_046_029_254_386_353_131));
    if i % 4 == 0 {
        p = p.with_usernames(vec![format!("peer{i}")]);
    }
    p
}

/// A step whose transaction is committed with `synchronous = FULL` under `Balanced`.
pub fn full_commit(i: u64) -> bool {
    i.is_multiple_of(CRITICAL_EVERY) || i.is_multiple_of(SAVE_EVERY)
}

/// Step `i`: peer `i` and pts `i` in one transaction (so the stored pts says which steps are
/// there); every 9th also sets the user to `i` (critical); steps 10, 110, ... carry the filler.
pub fn step(i: u64) -> Vec<Change> {
    let pts = i32::try_from(i).expect("pts");
    let mut changes =
        vec![Change::UpsertPeer(peer(i)), Change::UpdateState(UpdateStateChange::Primary { pts, date: pts, seq: pts })];
    if i.is_multiple_of(CRITICAL_EVERY) {
        changes.push(Change::SetUser(Some(SelfUser::new(i64::try_from(i).expect("id"), false))));
    }
    if i % 100 == 10 {
        changes.extend((1..=FILLER).map(|id| Change::UpsertPeer(Peer::new(id, PeerKind::BasicGroup, id))));
    }
    changes
}

/// The durability level of a writer mode.
pub fn durability(mode: &str) -> Durability {
    match mode {
        "powerloss" => Durability::PowerLoss,
        "balanced" => Durability::Balanced,
        other => panic!("unknown writer {other}"),
    }
}
