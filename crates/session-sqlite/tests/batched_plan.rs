//! Runs of peer changes persisted as a few batched statements (session-sql's JSON runs) keep
//! every value exact and every checksum sum right, and look their rows up by primary key.

use rusqlite::types::Value;
use rusqlite::Connection;
use session_core::{Change, Peer, PeerKey, PeerKind, SessionBackend, SessionData};
use session_sql::{Known, SqlValue, Statement};
use session_sqlite::SqliteBackend;

fn value(v: &SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(n) => Value::Integer(*n),
        SqlValue::Real(f) => Value::Real(*f),
        SqlValue::Text(t) => Value::Text(t.clone()),
        SqlValue::Blob(b) => Value::Blob(b.clone()),
    }
}

/// Persists `changes`, then checks a fresh open loads exactly `expected` (the load checks every
/// row's checksum and every table's sum).
async fn persist_and_reload(path: &std::path::Path, expected: &mut SessionData, changes: &[Change]) {
    expected.apply_all(changes);
    {
        let backend = SqliteBackend::open(path).await.expect("open");
        backend.persist(changes, expected).await.expect("persist");
        backend.close().await.expect("close");
    }
    let backend = SqliteBackend::open(path).await.expect("reopen");
    let loaded = backend.load_session().await.expect("load: sums and checksums agree").expect("a session");
    assert_eq!(&loaded, expected);
    backend.close().await.expect("close");
}

fn odd_peers(base: i64) -> Vec<Peer> {
    vec![
        Peer::new(base + 1, PeerKind::User, i64::MIN),
        Peer::new(base + 2, PeerKind::Channel, i64::MAX),
        Peer::new(base + 3, PeerKind::BasicGroup, -1)
            .with_usernames(vec!["it's".into(), "\"q\" é \\ \u{1F600}".into()]),
        Peer::new(base + 4, PeerKind::Bot, 0x7FFF_FFFF_FFFF_FFFE).with_phone(Some("+1'2\"3".into())).with_min(true),
        Peer::new(i64::MAX, PeerKind::User, 9_007_199_254_740_993),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_of_peers_round_trip_exactly_with_their_sums_over_overlay_and_chunks() {
    let dir = tempfile::tempdir().expect("dir");
    for chunked in [false, true] {
        let path = dir.path().join(format!("runs-{chunked}.db"));
        let mut expected = SessionData::default();
        if chunked {
            // Chunks under the rows: removals of chunked keys are recorded.
            expected.peers = (0..5_000i64).map(|i| Peer::new(i, PeerKind::User, i * 31)).collect();
            let backend = SqliteBackend::open(&path).await.expect("open");
            backend.save_session(&expected).await.expect("save");
            backend.close().await.expect("close");
        }
        // 64-bit hashes at both ends, quotes, backslashes, non-ASCII: exact after a round trip.
        let upserts: Vec<Change> = odd_peers(10).into_iter().map(Change::UpsertPeer).collect();
        persist_and_reload(&path, &mut expected, &upserts).await;
        // The same keys again (replacing rows: old checksums out), one key twice (last wins),
        // and keys in the chunks.
        let again: Vec<Change> = [
            Peer::new(11, PeerKind::User, 5),
            Peer::new(12, PeerKind::Channel, 6),
            Peer::new(11, PeerKind::User, 7),
            Peer::new(100, PeerKind::User, i64::MIN),
            Peer::new(101, PeerKind::User, 1),
        ]
        .into_iter()
        .map(Change::UpsertPeer)
        .collect();
        persist_and_reload(&path, &mut expected, &again).await;
        // Removals of overlay rows, chunked keys, unknown keys, one twice; then re-adding some
        // of them in the same persist, and removing one of those again.
        let mut mixed: Vec<Change> =
            [11, 13, 100, 102, 4_000, 9_999, 13].into_iter().map(|id| Change::RemovePeer(PeerKey::user(id))).collect();
        mixed.push(Change::RemovePeer(PeerKey::channel(12)));
        mixed.push(Change::SetHomeDc(2));
        mixed.extend([100, 4_000, 102, 4_001].map(|id| Change::UpsertPeer(Peer::new(id, PeerKind::User, -id))));
        mixed.extend([Change::RemovePeer(PeerKey::user(4_001)), Change::RemovePeer(PeerKey::user(102))]);
        persist_and_reload(&path, &mut expected, &mixed).await;
        // And the removed keys back again: their removal rows are deleted with their sum.
        let back: Vec<Change> = [11, 13, 102, 4_001, 9_999]
            .into_iter()
            .map(|id| Change::UpsertPeer(Peer::new(id, PeerKind::User, id)))
            .collect();
        persist_and_reload(&path, &mut expected, &back).await;
        let many: Vec<Change> =
            (20_000..23_000i64).map(|i| Change::UpsertPeer(Peer::new(i, PeerKind::User, i))).collect();
        persist_and_reload(&path, &mut expected, &many).await;
        let gone: Vec<Change> = (19_000..22_000i64).map(|i| Change::RemovePeer(PeerKey::user(i))).collect();
        persist_and_reload(&path, &mut expected, &gone).await;
    }
}

/// The query plan of every batched statement: each table is searched by its primary key, never
/// scanned (only the JSON parameter is walked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_statements_look_rows_up_by_primary_key() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("plan.db");
    let mut data = SessionData::default();
    data.peers = (0..10_000i64).map(|i| Peer::new(i, PeerKind::User, i)).collect();
    let backend = SqliteBackend::open(&path).await.expect("open");
    backend.save_session(&data).await.expect("save");
    backend.close().await.expect("close");
    let conn = Connection::open(&path).expect("open");
    let upserts: Vec<Change> = (0..3).map(|i| Change::UpsertPeer(Peer::new(i, PeerKind::User, i))).collect();
    let removals: Vec<Change> = (0..3).map(|i| Change::RemovePeer(PeerKey::user(i))).collect();
    let mut statements: Vec<Statement> = Vec::new();
    for changes in [&upserts, &removals] {
        let known = Known { session_row: true, no_removals: false, chunk_ranges: None };
        statements.extend(session_sql::persist_plan_known(0, changes, &data, known).expect("plan"));
    }
    let mut checked = 0;
    for st in statements.iter().filter(|st| st.sql.contains("json_each")) {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", st.sql)).expect("prepare");
        let params: Vec<Value> = st.params.iter().map(value).collect();
        let plan: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(params), |r| r.get::<_, String>(3))
            .expect("explain")
            .collect::<Result<_, _>>()
            .expect("rows");
        let tables: Vec<&String> =
            plan.iter().filter(|l| l.contains("peers") || l.contains("peer_removals") || l.contains(" t ")).collect();
        for line in &plan {
            let on_table = line.contains("peers") || line.contains("peer_removals") || line.contains(" t ");
            assert!(!(on_table && line.starts_with("SCAN")), "{}: scans a table: {plan:?}", st.sql);
        }
        // An insert's conflict lookup is the primary key by definition (the plan shows only
        // the walk of the JSON); every other statement reads stored rows by key.
        if !st.sql.starts_with("INSERT") {
            assert!(!tables.is_empty(), "{}: {plan:?}", st.sql);
            assert!(tables.iter().all(|l| l.contains("PRIMARY KEY")), "{}: {plan:?}", st.sql);
        }
        checked += 1;
    }
    // Sum-and-unremove, delete removals, upsert; sums, delete peers, insert removals.
    assert_eq!(checked, 6);
}
