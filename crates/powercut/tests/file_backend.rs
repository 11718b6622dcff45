//! Power cuts under the file backend (`session_file::BinaryFileBackend`), and under layer-client
//! 0.5's `BinaryFileBackend` as the reference, on the filesystem that forgets what was not
//! synced. Ours must lose no acknowledged change and always load; the reference's losses are
//! printed beside ours, not asserted.
//!
//! `LAYER_SOAK_CUTS` sets the cuts per loop (`cargo xtask soak`); `POWERCUT_SEED` replays one.

mod common;
#[path = "bin/file_steps.rs"]
mod steps;

use std::path::Path;

use common::{Figures, Rig};
use session_core::{PeerKey, SessionBackend};
use session_file::BinaryFileBackend;
use session_powercut::LossMode;
use session_testkit::Rng;
use steps::peer;

/// Opens our session after a restart: `Err` when it does not load; the acknowledged steps
/// missing otherwise, and the stored pts.
fn check_ours(path: &Path, acked: &[u64]) -> Result<(Vec<u64>, u64), String> {
    common::runtime().block_on(async {
        let backend = BinaryFileBackend::open(path).await.map_err(|e| format!("open: {e}"))?;
        let data = backend.load_session().await.map_err(|e| format!("load: {e}"))?.unwrap_or_default();
        let stored = u64::try_from(data.updates.pts).unwrap_or(0);
        let missing = acked
            .iter()
            .copied()
            .filter(|&i| stored < i || data.peers.get(PeerKey::user(peer(i).id)) != Some(peer(i)))
            .collect();
        Ok((missing, stored))
    })
}

fn ours_loop(name: &str, mode: LossMode, default_cuts: u64) -> Figures {
    let seed = common::seed();
    let mut rng = Rng::new(seed);
    let mut rig = Rig::new(mode);
    let path = rig.path("power.session");
    let mut figures = Figures::new(name);
    let mut acked_all: Vec<u64> = Vec::new();
    let mut next = 0;
    for _ in 0..common::cuts(default_cuts) {
        let (acked, by) = common::round(&mut rig, &mut rng, "ours", &path, next, 250, 250_000);
        figures.count(by, acked.len());
        acked_all.extend(&acked);
        match check_ours(&path, &acked_all) {
            Ok((missing, stored)) => {
                figures.lost.extend(missing);
                next = next.max(stored + 1);
            }
            Err(e) => {
                eprintln!("{name}: the session does not load after cut {}: {e}", figures.cuts);
                figures.unloadable += 1;
            }
        }
        next = next.max(acked_all.iter().max().map_or(0, |m| m + 1));
    }
    figures.print(seed);
    figures
}

#[test]
fn file_backend_loses_nothing_acknowledged_when_unsynced_data_vanishes() {
    let f = ours_loop("session-file BinaryFileBackend, strict", LossMode::Strict, 160);
    assert!(f.acknowledged > f.cuts, "too few acknowledged changes to test anything: {f:?}");
    assert!(f.lost.is_empty() && f.unloadable == 0, "acknowledged changes lost: {:?}", f.lost);
}

#[test]
fn file_backend_loses_nothing_acknowledged_when_unsynced_sectors_tear() {
    let f = ours_loop("session-file BinaryFileBackend, torn sectors", LossMode::Torn { seed: common::seed() }, 160);
    assert!(f.acknowledged > f.cuts, "too few acknowledged changes to test anything: {f:?}");
    assert!(f.lost.is_empty() && f.unloadable == 0, "acknowledged changes lost: {:?}", f.lost);
}

/// The reference: layer-client 0.5 writes a temporary file and renames it, with no fsync at all.
/// Its figures are printed beside ours; that it loses data is expected, not a failure.
#[test]
fn layer_client_0_5_reference_figures() {
    use layer_client_05::SessionBackend as _;
    let seed = common::seed();
    let mut rng = Rng::new(seed);
    let mut rig = Rig::new(LossMode::Strict);
    let path = rig.path("layer05.session");
    let mut figures = Figures::new("layer-client 0.5 BinaryFileBackend (reference), strict");
    let mut acked_all: Vec<u64> = Vec::new();
    let mut next = 1;
    for _ in 0..common::cuts(100) {
        let (acked, by) = common::round(&mut rig, &mut rng, "layer05", &path, next, 250, 250_000);
        figures.count(by, acked.len());
        acked_all.extend(&acked);
        next = next.max(acked_all.iter().max().map_or(0, |m| m + 1));
        let existed = path.exists();
        let backend = layer_client_05::BinaryFileBackend::new(&path);
        match backend.load() {
            // Its load renames a file it cannot read to `.bak` and answers "no session".
            Ok(None) if existed => figures.unloadable += 1,
            Ok(loaded) => {
                let stored = loaded.map_or(0, |s| u64::try_from(s.updates_state.pts).unwrap_or(0));
                figures.lost.extend(acked_all.iter().copied().filter(|&i| i > stored));
            }
            Err(_) => figures.unloadable += 1,
        }
    }
    figures.print(seed);
    assert!(figures.cuts > 0);
}
