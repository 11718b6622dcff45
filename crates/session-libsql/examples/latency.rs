//! Latency of flush and load at 100,000 peers against a local sqld (started here, from
//! `cargo xtask setup`'s install), for the remote and embedded-replica modes.
//!
//! `cargo run --release -p session-libsql --example latency [peers]`

#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use session_core::{Change, SessionBackend, SessionData};
use session_libsql::LibSqlBackend;
use session_testkit::{sample_peer, sample_session, Rng};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn flushes(
    b: &LibSqlBackend,
    data: &mut SessionData,
    rng: &mut Rng,
    start: u64,
    per_flush: u64,
    n: u64,
) -> Duration {
    let mut times = Vec::new();
    for i in 0..n {
        let changes: Vec<Change> =
            (0..per_flush).map(|j| Change::UpsertPeer(sample_peer(start + i * per_flush + j, rng))).collect();
        data.apply_all(&changes);
        let t = Instant::now();
        b.persist(&changes, data).await.unwrap();
        times.push(t.elapsed());
    }
    median(times)
}

async fn loads(b: &LibSqlBackend, expected: &SessionData, n: usize) -> Duration {
    let mut times = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let loaded = b.load_session().await.unwrap();
        times.push(t.elapsed());
        assert_eq!(loaded.as_ref(), Some(expected));
    }
    median(times)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let peers: usize = std::env::args().nth(1).map_or(100_000, |n| n.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let sqld = support::Sqld::start(&dir.path().join("server"), None);
    let url = sqld.url();
    let mut rng = Rng::new(42);
    let mut data = sample_session(peers);
    println!("sqld at {url}, {peers} peers");

    let remote = LibSqlBackend::open_remote(&url, "").await.unwrap();
    let t = Instant::now();
    remote.save_session(&data).await.unwrap();
    println!("remote  full save            {}", ms(t.elapsed()));
    println!("remote  load                 {} (median of 5)", ms(loads(&remote, &data, 5).await));
    let one = flushes(&remote, &mut data, &mut rng, 10_000_000, 1, 50).await;
    println!("remote  flush, 1 new peer    {} (median of 50)", ms(one));
    let many = flushes(&remote, &mut data, &mut rng, 20_000_000, 1000, 5).await;
    println!("remote  flush, 1000 peers    {} (median of 5)", ms(many));

    let t = Instant::now();
    let replica = LibSqlBackend::open_replica(dir.path().join("replica.db"), &url, "").await.unwrap();
    println!("replica open (initial pull)  {}", ms(t.elapsed()));
    println!("replica load                 {} (median of 5)", ms(loads(&replica, &data, 5).await));
    let one = flushes(&replica, &mut data, &mut rng, 30_000_000, 1, 50).await;
    println!("replica flush, 1 new peer    {} (median of 50)", ms(one));
    let many = flushes(&replica, &mut data, &mut rng, 40_000_000, 1000, 5).await;
    println!("replica flush, 1000 peers    {} (median of 5)", ms(many));
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        assert!(!replica.sync().await.unwrap());
        times.push(t.elapsed());
    }
    println!("replica sync, no change      {} (median of 20)", ms(median(times)));
    // Another client writes: the replica's next sync pulls everything.
    let changes = vec![Change::SetHomeDc(4)];
    data.apply_all(&changes);
    remote.persist(&changes, &data).await.unwrap();
    let t = Instant::now();
    assert!(replica.sync().await.unwrap());
    println!("replica sync, after another writer (full pull) {}", ms(t.elapsed()));
    assert_eq!(replica.load_session().await.unwrap().as_ref(), Some(&data));
}
