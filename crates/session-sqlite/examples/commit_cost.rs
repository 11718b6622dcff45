//! Where the time of one persisted change goes: the `spawn_blocking` round trip, the SQLite
//! commit of a one-row transaction on the calling thread (raw `rusqlite`, what a synchronous
//! backend pays), and `SqliteBackend::persist` of one new peer at 100,000 cached peers.
//!
//! `cargo run --release -p session-sqlite --example commit_cost`

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use session_core::{Change, Peer, PeerKey, PeerKind, SessionBackend, SessionData};
use session_sqlite::SqliteBackend;

const ROUNDS: u32 = 3_000;

fn per_op(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6 / f64::from(ROUNDS))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();

    let t = Instant::now();
    for _ in 0..ROUNDS {
        tokio::task::spawn_blocking(|| ()).await.unwrap();
    }
    println!("spawn_blocking round trip          {}", per_op(t.elapsed()));

    let raw = rusqlite::Connection::open(dir.path().join("raw.db")).unwrap();
    raw.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
         CREATE TABLE peers (class INTEGER NOT NULL, id INTEGER NOT NULL, kind INTEGER NOT NULL, \
         access_hash INTEGER NOT NULL, PRIMARY KEY (class, id)) WITHOUT ROWID;",
    )
    .unwrap();
    let t = Instant::now();
    for k in 0..i64::from(ROUNDS) {
        raw.prepare_cached("INSERT INTO peers VALUES (0, ?1, 0, ?2) ON CONFLICT (class, id) DO UPDATE SET kind = 0")
            .unwrap()
            .execute([k, k])
            .unwrap();
    }
    println!("raw rusqlite one-row commit        {} (on this thread)", per_op(t.elapsed()));
    drop(raw);

    let backend = SqliteBackend::open(dir.path().join("ours.db")).await.unwrap();
    let mut full = SessionData::default();
    full.peers = (0..100_000i64).map(|i| Peer::new(i * 7 + 1, PeerKind::User, i)).collect();
    backend.save_session(&full).await.unwrap();
    let t = Instant::now();
    for k in 0..i64::from(ROUNDS) {
        let change = [Change::UpsertPeer(Peer::new(10_000_000 + k, PeerKind::User, k))];
        full.apply_all(&change);
        backend.persist(&change, &full).await.unwrap();
    }
    println!("SqliteBackend::persist, one peer   {} (100,000 cached)", per_op(t.elapsed()));
    let removes: Vec<Change> =
        (0..i64::from(ROUNDS)).map(|k| Change::RemovePeer(PeerKey::user(10_000_000 + k))).collect();
    full.apply_all(&removes);
    backend.persist(&removes, &full).await.unwrap();
}
