//! Power cuts under the SQLite backend (`session_sqlite::SqliteBackend`, WAL with its `-shm`
//! mapped through the FUSE filesystem) on the filesystem that forgets what was not synced.
//!
//! - `Durability::PowerLoss`: no acknowledged change lost, the database always loads.
//! - `Durability::Balanced`: what the crate docs say, no more: every acknowledged critical
//!   change (here the user, and full saves, which commit with `synchronous = FULL` too) survives,
//!   and with it everything acknowledged before it ("an fsync of the WAL also makes every earlier
//!   frame durable"); only ordinary writes acknowledged after the last critical commit may be
//!   missing, and a transaction is whole or absent (what survives is a prefix).
//!
//! `LAYER_SOAK_CUTS` sets the cuts per loop (`cargo xtask soak`); `POWERCUT_SEED` replays one.

mod common;
#[path = "bin/sqlite_steps.rs"]
mod steps;

use std::path::Path;

use common::{Figures, Rig};
use session_core::{PeerKind, SessionBackend};
use session_powercut::LossMode;
use session_sqlite::{Durability, SqliteBackend};
use session_testkit::Rng;
use steps::{durability, full_commit, peer, CRITICAL_EVERY, FILLER};

/// What a restart finds: the stored pts, whether every step up to it is whole, and the user.
struct Found {
    pts: u64,
    user: Option<u64>,
    /// Steps at or below pts whose peer is missing or wrong (a torn transaction).
    torn: Vec<u64>,
}

fn check(path: &Path, durability: Durability, acked: &[u64]) -> Result<Found, String> {
    common::runtime().block_on(async {
        let backend = SqliteBackend::open_with(path, durability).await.map_err(|e| format!("open: {e}"))?;
        let s = backend.load_session().await.map_err(|e| format!("load: {e}"))?.unwrap_or_default();
        let pts = u64::try_from(s.updates.pts).unwrap_or(0);
        let groups = s.peers.iter().filter(|p| p.kind == PeerKind::BasicGroup).count();
        let filler = usize::try_from(FILLER).expect("filler");
        if groups != 0 && groups != filler {
            return Err(format!("the filler was torn: {groups} of {FILLER} groups"));
        }
        let torn = acked.iter().copied().filter(|&i| i <= pts && s.peers.get(peer(i).key()) != Some(peer(i))).collect();
        let user = s.user.map(|u| u64::try_from(u.id).unwrap_or(0));
        backend.close().await.map_err(|e| format!("close: {e}"))?;
        Ok(Found { pts, user, torn })
    })
}

fn sqlite_loop(name: &str, writer: &str, mode: LossMode, default_cuts: u64) -> Figures {
    let level = durability(writer);
    let seed = common::seed();
    let mut rng = Rng::new(seed);
    let mut rig = Rig::new(mode);
    let path = rig.path("power.db");
    let mut figures = Figures::new(name);
    let mut acked_all: Vec<u64> = Vec::new();
    let mut next = 1;
    for _ in 0..common::cuts(default_cuts) {
        let (acked, by) = common::round(&mut rig, &mut rng, writer, &path, next, 400, 400_000);
        figures.count(by, acked.len());
        acked_all.extend(&acked);
        next = next.max(acked_all.iter().max().map_or(0, |m| m + 1));
        // Steps lost inside an earlier window stay missing; the others must all be there.
        let expected: Vec<u64> = acked_all.iter().copied().filter(|i| !figures.in_window.contains(i)).collect();
        let found = match check(&path, level, &expected) {
            Ok(found) => found,
            Err(e) => {
                eprintln!("{name}: the database does not load after cut {}: {e}", figures.cuts);
                figures.unloadable += 1;
                continue;
            }
        };
        next = next.max(found.pts + 1);
        assert!(found.torn.is_empty(), "{name}: transactions torn (steps {:?} at pts {})", found.torn, found.pts);
        // The newest acknowledged commit that fsynced the WAL (and every frame before it).
        let durable_upto =
            acked_all.iter().copied().filter(|&i| level == Durability::PowerLoss || full_commit(i)).max();
        let last_critical = acked_all.iter().copied().filter(|&i| i.is_multiple_of(CRITICAL_EVERY)).max();
        if let Some(c) = last_critical {
            assert!(
                found.user.is_some_and(|u| u >= c),
                "{name}: the acknowledged critical change of step {c} was lost (user {:?})",
                found.user
            );
        }
        for &i in expected.iter().filter(|&&i| i > found.pts) {
            if durable_upto.is_some_and(|d| i <= d) {
                figures.lost.insert(i);
            } else {
                figures.in_window.insert(i);
            }
        }
    }
    figures.print(seed);
    assert!(rig.wal_seen > 0, "{name}: no writer ever ran in WAL mode on the mount");
    figures
}

fn assert_nothing_lost(f: &Figures) {
    assert!(f.acknowledged > f.cuts, "too few acknowledged changes to test anything: {f:?}");
    assert!(
        f.lost.is_empty() && f.in_window.is_empty() && f.unloadable == 0,
        "{}: acknowledged changes lost: {:?} {:?}, unloadable {}",
        f.name,
        f.lost,
        f.in_window,
        f.unloadable
    );
}

fn assert_only_the_window(f: &Figures) {
    assert!(f.acknowledged > f.cuts, "too few acknowledged changes to test anything: {f:?}");
    assert!(
        f.lost.is_empty() && f.unloadable == 0,
        "{}: acknowledged changes lost outside the documented window: {:?}, unloadable {}",
        f.name,
        f.lost,
        f.unloadable
    );
}

#[test]
fn power_loss_level_loses_nothing_acknowledged_when_unsynced_data_vanishes() {
    assert_nothing_lost(&sqlite_loop("SQLite PowerLoss, strict", "powerloss", LossMode::Strict, 160));
}

#[test]
fn power_loss_level_loses_nothing_acknowledged_when_unsynced_sectors_tear() {
    let f = sqlite_loop("SQLite PowerLoss, torn sectors", "powerloss", LossMode::Torn { seed: common::seed() }, 160);
    assert_nothing_lost(&f);
}

#[test]
fn balanced_level_loses_only_ordinary_writes_after_the_last_critical_commit() {
    assert_only_the_window(&sqlite_loop("SQLite Balanced, strict", "balanced", LossMode::Strict, 80));
}

#[test]
fn balanced_level_loses_only_the_window_when_unsynced_sectors_tear() {
    let f = sqlite_loop("SQLite Balanced, torn sectors", "balanced", LossMode::Torn { seed: common::seed() }, 80);
    assert_only_the_window(&f);
}
