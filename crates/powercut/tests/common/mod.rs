//! What the crash loops share: the mount, the writer child processes, the cut of one round, and
//! the figures each loop prints.
//!
//! A writer is `powercut-writer` (`tests/bin/writer.rs`), a program of this package: it prints
//! `ack N` once step N was acknowledged.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use session_powercut::{Disk, LossMode};
use session_testkit::Rng;

/// The writer program.
pub const WRITER: &str = env!("CARGO_BIN_EXE_powercut-writer");

/// Cuts of one loop: `LAYER_SOAK_CUTS` (set by `cargo xtask soak`) or the CI default.
pub fn cuts(default: u64) -> u64 {
    std::env::var("LAYER_SOAK_CUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A seed printed by every loop, so that a failure can be replayed (`POWERCUT_SEED`).
pub fn seed() -> u64 {
    std::env::var("POWERCUT_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() ^ u64::from(d.subsec_nanos()))
    })
}

/// A mounted disk in a folder of its own (`backing/` behind `mnt/`).
pub struct Rig {
    pub disk: Disk,
    pub dir: tempfile::TempDir,
    /// Rounds whose writer saw SQLite's `-wal` and `-shm` beside its database on the mount.
    pub wal_seen: u64,
}

impl Rig {
    /// Mounts; a failure to mount fails the test with the reason.
    pub fn new(mode: LossMode) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        let (backing, mnt) = (dir.path().join("backing"), dir.path().join("mnt"));
        std::fs::create_dir(&backing).expect("backing dir");
        std::fs::create_dir(&mnt).expect("mount point");
        let disk = match Disk::mount(&backing, &mnt, mode) {
            Ok(d) => d,
            Err(e) => panic!("FUSE could not be mounted, so nothing was tested: {e}"),
        };
        Rig { disk, dir, wal_seen: 0 }
    }

    /// A path on the mount.
    pub fn path(&self, name: &str) -> PathBuf {
        self.disk.path().join(name)
    }
}

/// A runtime for the parent's checks (the filesystem serves from its own thread, so the
/// runtime may use the mount).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// Starts a writer child in `mode` on `path`, from step `start` on.
pub fn spawn(mode: &str, path: &Path, start: u64) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(WRITER)
        .arg(mode)
        .arg(path)
        .arg(start.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn writer");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// How one round's power cut was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutBy {
    /// At the n-th changing operation.
    Ops(u64),
    /// After this many microseconds.
    Time(u64),
}

/// One round: a writer runs until the power is cut (at a random operation count or instant),
/// is killed, and the disk restarts with only what was durable. Returns the acknowledged steps.
pub fn round(
    rig: &mut Rig,
    rng: &mut Rng,
    mode: &str,
    path: &Path,
    start: u64,
    max_ops: u64,
    max_us: u64,
) -> (Vec<u64>, CutBy) {
    let by = if rng.below(2) == 0 { CutBy::Ops(1 + rng.below(max_ops)) } else { CutBy::Time(rng.below(max_us)) };
    if let CutBy::Ops(n) = by {
        rig.disk.cut_after_ops(n);
    }
    let (mut child, rx) = spawn(mode, path, start);
    let begun = Instant::now();
    match by {
        CutBy::Ops(_) => {
            // The writer never stops by itself: it reaches the count, or it failed.
            while !rig.disk.wait_for_cut(Duration::from_millis(50)) {
                if let Ok(Some(status)) = child.try_wait() {
                    let said: Vec<String> = rx.try_iter().collect();
                    panic!("the writer exited ({status}) before the cut: {said:?}");
                }
                assert!(begun.elapsed() < Duration::from_secs(120), "no cut after 120 s ({by:?})");
            }
        }
        CutBy::Time(us) => {
            std::thread::sleep(Duration::from_micros(us));
            rig.disk.cut_now();
        }
    }
    let _ = child.kill();
    child.wait().expect("wait for the writer");
    // The writer is gone: its pipe ends, and every line it wrote is read.
    let mut acked = Vec::new();
    for line in rx.iter() {
        if let Some(n) = line.strip_prefix("ack ") {
            acked.push(n.parse().expect("ack number"));
        } else if line == "wal" {
            rig.wal_seen += 1;
        }
    }
    if let Err(e) = rig.disk.power_cycle() {
        panic!("the power cycle failed: {e}");
    }
    (acked, by)
}

/// What one loop found, printed beside the others'.
#[derive(Debug, Default)]
pub struct Figures {
    pub name: String,
    pub cuts: u64,
    pub by_ops: u64,
    pub by_time: u64,
    pub acknowledged: u64,
    /// Distinct acknowledged steps found missing after a cut.
    pub lost: BTreeSet<u64>,
    /// Restarts after which the session did not load.
    pub unloadable: u64,
    /// Acknowledged steps missing but inside a documented window (Balanced).
    pub in_window: BTreeSet<u64>,
}

impl Figures {
    pub fn new(name: &str) -> Self {
        Figures { name: name.to_owned(), ..Figures::default() }
    }

    pub fn count(&mut self, by: CutBy, acked: usize) {
        self.cuts += 1;
        self.acknowledged += acked as u64;
        match by {
            CutBy::Ops(_) => self.by_ops += 1,
            CutBy::Time(_) => self.by_time += 1,
        }
    }

    /// The line the book's table quotes.
    pub fn print(&self, seed: u64) {
        eprintln!(
            "powercut | {} | cuts {} ({} by operation count, {} by time) | acknowledged {} | lost {} | lost inside the documented window {} | unloadable {} | seed {seed}",
            self.name,
            self.cuts,
            self.by_ops,
            self.by_time,
            self.acknowledged,
            self.lost.len(),
            self.in_window.len(),
            self.unloadable
        );
    }
}
