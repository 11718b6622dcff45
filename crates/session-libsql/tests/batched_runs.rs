//! Runs of peer changes go to the server as a few statements whose rows are one JSON text,
//! inlined as an SQL string literal: values with quotes, backslashes, non-ASCII and 64-bit
//! extremes come back exact, and the checksum sums the load checks stay right.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use session_core::{Change, Peer, PeerKey, PeerKind, SessionBackend, SessionData};
use session_libsql::LibSqlBackend;
use support::Sqld;

async fn persist_and_load(backend: &LibSqlBackend, expected: &mut SessionData, changes: &[Change]) {
    expected.apply_all(changes);
    backend.persist(changes, expected).await.unwrap();
    // A remote load reads the server's rows and checks every checksum and sum.
    let loaded = backend.load_session().await.unwrap().unwrap();
    assert_eq!(&loaded, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_of_peers_round_trip_exactly_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let sqld = Sqld::start(&dir.path().join("server"), None);
    let backend = LibSqlBackend::open_remote(&sqld.url(), "").await.unwrap();
    let mut expected = SessionData::default();
    expected.peers = (0..5_000i64).map(|i| Peer::new(i, PeerKind::User, i * 31)).collect();
    backend.save_session(&expected).await.unwrap();
    let odd = vec![
        Peer::new(10_001, PeerKind::User, i64::MIN),
        Peer::new(10_002, PeerKind::Channel, i64::MAX),
        Peer::new(10_003, PeerKind::BasicGroup, -1).with_usernames(vec![
            "it's".into(),
            "'); DROP TABLE peers; --".into(),
            "\"q\" é \\ \u{1F600}".into(),
        ]),
        Peer::new(10_004, PeerKind::Bot, 0x7FFF_FFFF_FFFF_FFFE).with_phone(Some("+1'2\"3''".into())).with_min(true),
        Peer::new(i64::MAX, PeerKind::User, 9_007_199_254_740_993),
    ];
    persist_and_load(&backend, &mut expected, &odd.into_iter().map(Change::UpsertPeer).collect::<Vec<_>>()).await;
    let mut mixed: Vec<Change> =
        [10_001, 10_003, 4_000, 9_999, 4_000].into_iter().map(|id| Change::RemovePeer(PeerKey::user(id))).collect();
    mixed.push(Change::SetHomeDc(2));
    mixed.extend([4_000, 10_003, 4_001].map(|id| Change::UpsertPeer(Peer::new(id, PeerKind::User, -id))));
    mixed.extend([Change::RemovePeer(PeerKey::user(4_001)), Change::RemovePeer(PeerKey::user(10_003))]);
    persist_and_load(&backend, &mut expected, &mixed).await;
    let many: Vec<Change> = (20_000..25_000i64).map(|i| Change::UpsertPeer(Peer::new(i, PeerKind::User, i))).collect();
    persist_and_load(&backend, &mut expected, &many).await;
    let gone: Vec<Change> = (19_000..23_000i64).map(|i| Change::RemovePeer(PeerKey::user(i))).collect();
    persist_and_load(&backend, &mut expected, &gone).await;
}
