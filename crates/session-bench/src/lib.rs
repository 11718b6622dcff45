#![doc = include_str!("../README.md")]

pub mod report;
pub mod servers;

use std::path::PathBuf;
use std::time::Duration;

use session_core::{Peer, PeerKind, SessionData};

/// The peer kinds the benches cycle through: the mix a bot's cache holds (users, bots,
/// supergroups, channels), all with an access hash and nothing else, which is also everything
/// layer-client 0.5 can store, so every backend stores the same information.
pub const KINDS: [PeerKind; 4] = [PeerKind::User, PeerKind::Bot, PeerKind::Megagroup, PeerKind::Broadcast];

/// The `i`-th cached peer of a bench session.
pub fn plain_peer(i: u64) -> Peer {
    let kind = KINDS[usize::try_from(i % 4).unwrap_or(0)];
    let id = i64::try_from(i).unwrap_or(i64::MAX / 8) * 7 + 1_000_000;
    Peer::new(id, kind, hash(i))
}

/// A peer that no bench session holds yet (ids above every [`plain_peer`] id up to 10^9 peers).
pub fn new_peer(i: u64) -> Peer {
    let mut p = plain_peer(i);
    p.id += 10_000_000_000;
    p
}

/// A deterministic access hash.
pub fn hash(i: u64) -> i64 {
    let x = i.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    i64::from_ne_bytes((x ^ (x >> 31)).to_ne_bytes())
}

/// A logged-in session (home DC with its key, user, update state, DCs: the testkit's sample)
/// holding `n` plain peers.
pub fn session(n: usize) -> SessionData {
    let mut s = session_testkit::sample_session(0);
    s.peers = (0..u64::try_from(n).unwrap_or(u64::MAX)).map(plain_peer).collect();
    s
}

/// How long and at which sizes the benches run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `--quick`: short measurements, fewer sizes.
    pub quick: bool,
    /// Numbers of cached peers.
    pub sizes: Vec<usize>,
    /// Criterion's warm-up time.
    pub warm_up: Duration,
    /// Criterion's measurement time.
    pub measurement: Duration,
    /// Criterion's sample count.
    pub samples: usize,
}

impl Settings {
    /// From the environment: `SESSION_BENCH_QUICK=1` selects the quick run.
    pub fn from_env() -> Self {
        let quick = std::env::var("SESSION_BENCH_QUICK").is_ok_and(|v| v == "1");
        if quick {
            Self {
                quick,
                sizes: vec![1_000, 100_000],
                warm_up: Duration::from_millis(200),
                measurement: Duration::from_millis(700),
                samples: 10,
            }
        } else {
            Self {
                quick,
                sizes: vec![1_000, 10_000, 100_000],
                warm_up: Duration::from_secs(1),
                measurement: Duration::from_secs(3),
                samples: 30,
            }
        }
    }
}

/// Where the report and the benches' side facts go: `$SESSION_BENCH_OUT`, else
/// `<workspace>/target/bench-report`.
pub fn out_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SESSION_BENCH_OUT") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")));
    target.join("bench-report")
}

/// Records a fact measured beside the timings (peers kept by a round trip, memory per peer...)
/// as `<out_dir>/facts/<name>.json`, for the report.
pub fn write_fact(name: &str, value: &serde_json::Value) -> std::io::Result<()> {
    let dir = out_dir().join("facts");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("{name}.json")), serde_json::to_vec_pretty(value)?)
}

/// Resident memory of this process in bytes (`VmRSS` of `/proc/self/status`).
pub fn rss_bytes() -> Option<u64> {
    proc_status_kib("VmRSS:").map(|k| k * 1024)
}

/// Peak resident memory of this process in bytes (`VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kib("VmHWM:").map(|k| k * 1024)
}

fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.trim_start_matches(field).trim().trim_end_matches("kB").trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_hold_distinct_peers_and_new_peers_are_new() {
        let s = session(1000);
        assert_eq!(s.peers.len(), 1000);
        for i in 0..1000 {
            assert!(s.peers.get(new_peer(i).key()).is_none());
        }
        assert!(s.has_home_key());
    }

    #[test]
    fn rss_is_readable() {
        assert!(rss_bytes().is_some_and(|b| b > 0));
    }
}
