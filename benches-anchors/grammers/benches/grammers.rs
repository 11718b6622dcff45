//! grammers-session 0.11 (MemorySession and its libSQL-backed SqliteSession) with the same
//! scenarios, ids and peers as `crates/session-bench/benches/sessions.rs`, so that the report
//! puts them in the same tables (`<scenario>/grammers_*/<cached peers>`).
//!
//! What grammers' API cannot do is not measured: it has no full save and no string export, and
//! `SqliteSession::open` reads the DC table but no peer (peers are read one by one on use), so
//! its "load" is an open.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode};
use grammers_session::storages::{MemorySession, SqliteSession};
use grammers_session::types::{ChannelKind, PeerAuth, PeerInfo, UpdateState};
use grammers_session::Session;
use tokio::runtime::Runtime;

const BATCH: u64 = 100;

fn settings() -> (Vec<u64>, Duration, Duration, usize) {
    if std::env::var("SESSION_BENCH_QUICK").is_ok_and(|v| v == "1") {
        (vec![1_000, 100_000], Duration::from_millis(200), Duration::from_millis(700), 10)
    } else {
        (vec![1_000, 10_000, 100_000], Duration::from_secs(1), Duration::from_secs(3), 30)
    }
}

/// The same peers as session-bench's `plain_peer` (user, bot, megagroup, broadcast; same ids and
/// hashes), as grammers' `PeerInfo`.
fn peer(i: u64, new: bool) -> PeerInfo {
    let id = i as i64 * 7 + 1_000_000 + if new { 10_000_000_000 } else { 0 };
    let x = i.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let auth = Some(PeerAuth::from_hash(i64::from_ne_bytes((x ^ (x >> 31)).to_ne_bytes())));
    match i % 4 {
        0 => PeerInfo::User { id, auth, bot: Some(false), is_self: Some(false) },
        1 => PeerInfo::User { id, auth, bot: Some(true), is_self: Some(false) },
        2 => PeerInfo::Channel { id, auth, kind: Some(ChannelKind::Megagroup) },
        _ => PeerInfo::Channel { id, auth, kind: Some(ChannelKind::Broadcast) },
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sqlite,
    Memory,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "grammers_sqlite",
            Kind::Memory => "grammers_memory",
        }
    }
}

enum Any {
    Sqlite(SqliteSession),
    Memory(MemorySession),
}

impl Any {
    async fn cache_peer(&self, p: PeerInfo) {
        match self {
            Any::Sqlite(s) => s.cache_peer(p).await.map_err(|_| "cache_peer").unwrap(),
            Any::Memory(s) => s.cache_peer(p).await.map_err(|_| "cache_peer").unwrap(),
        }
    }
    async fn cache_peers(&self, p: Vec<PeerInfo>) {
        match self {
            Any::Sqlite(s) => s.cache_peers(p).await.map_err(|_| "cache_peers").unwrap(),
            Any::Memory(s) => s.cache_peers(p).await.map_err(|_| "cache_peers").unwrap(),
        }
    }
    async fn set_update_state(&self, u: UpdateState) {
        match self {
            Any::Sqlite(s) => s.set_update_state(u).await.map_err(|_| "update").unwrap(),
            Any::Memory(s) => s.set_update_state(u).await.map_err(|_| "update").unwrap(),
        }
    }
}

/// A session holding `n` peers (cached in one transaction per 10,000 for the SQLite one).
async fn create(kind: Kind, dir: &std::path::Path, n: u64) -> Any {
    let s = match kind {
        Kind::Sqlite => Any::Sqlite(SqliteSession::open(dir.join("grammers.session")).await.expect("open")),
        Kind::Memory => Any::Memory(MemorySession::default()),
    };
    let mut i = 0;
    while i < n {
        let end = (i + 10_000).min(n);
        s.cache_peers((i..end).map(|k| peer(k, false)).collect()).await;
        i = end;
    }
    s
}

fn main() {
    let (sizes, warm, measure, samples) = settings();
    let rt = Runtime::new().expect("runtime");
    let mut c = Criterion::default()
        .warm_up_time(warm)
        .measurement_time(measure)
        .sample_size(samples)
        .without_plots()
        .configure_from_args();
    cache_one_peer(&mut c, &rt, &sizes);
    flush_1000_peers(&mut c, &rt, &sizes);
    update_state(&mut c, &rt, &sizes);
    load(&mut c, &rt, &sizes);
    c.final_summary();
}

fn cache_one_peer(c: &mut Criterion, rt: &Runtime, sizes: &[u64]) {
    let mut g = c.benchmark_group("cache_one_peer");
    for &n in sizes {
        for kind in [Kind::Sqlite, Kind::Memory] {
            // grammers cannot forget a peer, so the session is rebuilt (untimed) after every
            // `batch` new peers: N stays within N..1.1N.
            let batch = (n / 10).max(BATCH);
            let mut dir = tempfile::tempdir().expect("tempdir");
            let mut s = rt.block_on(create(kind, dir.path(), n));
            let mut added = 0u64;
            let mut counter = 0u64;
            g.bench_function(BenchmarkId::new(kind.name(), n), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        if added == batch {
                            drop(std::mem::replace(&mut s, Any::Memory(MemorySession::default())));
                            dir = tempfile::tempdir().expect("tempdir");
                            s = rt.block_on(create(kind, dir.path(), n));
                            added = 0;
                        }
                        let p = peer(counter, true);
                        let start = Instant::now();
                        rt.block_on(s.cache_peer(p));
                        total += start.elapsed();
                        counter += 1;
                        added += 1;
                    }
                    total
                })
            });
        }
    }
    g.finish();
}

fn flush_1000_peers(c: &mut Criterion, rt: &Runtime, sizes: &[u64]) {
    let mut g = c.benchmark_group("flush_1000_peers");
    g.sampling_mode(SamplingMode::Flat);
    for &n in sizes {
        for kind in [Kind::Sqlite, Kind::Memory] {
            // Rebuilt (untimed) once N grew by 10% (at least after every flush of 1,000).
            let limit = (n / 10).max(1000);
            let mut dir = tempfile::tempdir().expect("tempdir");
            let mut s = rt.block_on(create(kind, dir.path(), n));
            let mut added = 0u64;
            let mut counter = 0u64;
            g.bench_function(BenchmarkId::new(kind.name(), n), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        if added >= limit {
                            drop(std::mem::replace(&mut s, Any::Memory(MemorySession::default())));
                            dir = tempfile::tempdir().expect("tempdir");
                            s = rt.block_on(create(kind, dir.path(), n));
                            added = 0;
                        }
                        let peers: Vec<PeerInfo> = (counter..counter + 1000).map(|k| peer(k, true)).collect();
                        let start = Instant::now();
                        rt.block_on(s.cache_peers(peers));
                        total += start.elapsed();
                        counter += 1000;
                        added += 1000;
                    }
                    total
                })
            });
        }
    }
    g.finish();
}

fn update_state(c: &mut Criterion, rt: &Runtime, sizes: &[u64]) {
    let mut g = c.benchmark_group("update_state");
    for &n in sizes {
        for kind in [Kind::Sqlite, Kind::Memory] {
            let dir = tempfile::tempdir().expect("tempdir");
            let s = rt.block_on(create(kind, dir.path(), n));
            let mut pts = 0i32;
            g.bench_function(BenchmarkId::new(kind.name(), n), |b| {
                b.iter(|| {
                    pts = pts.wrapping_add(1);
                    rt.block_on(s.set_update_state(UpdateState::Primary { pts, date: 1_700_000_000, seq: pts }))
                })
            });
        }
    }
    g.finish();
}

fn load(c: &mut Criterion, rt: &Runtime, sizes: &[u64]) {
    let mut g = c.benchmark_group("load");
    g.sampling_mode(SamplingMode::Flat);
    for &n in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(rt.block_on(create(Kind::Sqlite, dir.path(), n)));
        let path = dir.path().join("grammers.session");
        g.bench_function(BenchmarkId::new(Kind::Sqlite.name(), n), |b| {
            b.iter(|| drop(rt.block_on(SqliteSession::open(&path)).map_err(|_| "open").unwrap()))
        });
    }
    g.finish();
}
