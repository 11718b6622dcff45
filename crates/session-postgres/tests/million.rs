//! A million cached peers round-trip exactly through a real PostgreSQL server: saved in full,
//! then loaded; and 1,000 new peers persisted as one flush.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::time::{Duration, Instant};

use session_core::{Change, Peer, PeerKind, SessionBackend, SessionData};
use session_postgres::PostgresOptions;
use support::Postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_peers_round_trip() {
    let pg = Postgres::start();
    let b = PostgresOptions::new().call_timeout(Duration::from_secs(120)).open(&pg.url()).await.unwrap();
    let mut data = SessionData::default();
    let peers: Vec<Change> = (0..1_000_000i64)
        .map(|i| {
            Change::UpsertPeer(Peer::new(
                i * 3 - 1_500_000,
                PeerKind::ALL[(i % 8) as usize],
                i.wrapping_mul(0x9E37_79B9),
            ))
        })
        .collect();
    data.apply_all(&peers);
    let t = Instant::now();
    b.save_session(&data).await.unwrap();
    let save = t.elapsed();
    let t = Instant::now();
    let loaded = b.load_session().await.unwrap().unwrap();
    let load = t.elapsed();
    assert_eq!(loaded, data);
    // A flush of 1,000 new peers: one transaction of a constant number of statements.
    let flush: Vec<Change> =
        (0..1_000i64).map(|i| Change::UpsertPeer(Peer::new(10_000_000 + i, PeerKind::User, i))).collect();
    data.apply_all(&flush);
    let t = Instant::now();
    b.persist(&flush, &data).await.unwrap();
    let persist = t.elapsed();
    assert_eq!(b.load_session().await.unwrap().unwrap(), data);
    eprintln!("1,000,000 peers: save {save:?}, load {load:?}; 1,000-peer flush {persist:?}");
}
