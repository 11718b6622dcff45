//! Flushes of 1,000 peers on a real PostgreSQL server, written by PostgreSQL's own forms of the
//! batch statements (session-sql's dialect): a mix of new, changed, re-added and removed peers
//! (chunked, in the overlay, recorded as removed, never stored) round-trips exactly, plain and
//! sealed, also through a fresh owner; a fenced-out owner's flush changes no row; and every
//! statement of a flush reads only the rows of the keys it is given, however many rows the
//! session holds and whatever the planner's statistics say.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::time::Duration;

use session_core::{Change, Keyring, Peer, PeerKey, PeerKind, SealingKey, SessionBackend, SessionData, SessionError};
use session_postgres::{PostgresBackend, PostgresOptions};
use session_sql::dialect::Dialect;
use session_sql::{Known, SqlValue};
use session_testkit::sample_session;
use support::Postgres;
use tokio_postgres::types::ToSql;

const TABLES: [&str; 7] = ["session", "dcs", "channels", "peer_chunks", "peers", "peer_removals", "min_contexts"];

fn peer(id: i64, hash: i64) -> Peer {
    Peer::new(id, PeerKind::User, hash)
}

/// Upserts of `ids`; every third peer with a phone and usernames that JSON must escape.
fn upserts(ids: std::ops::Range<i64>, hash: i64) -> impl Iterator<Item = Change> {
    ids.map(move |i| {
        let mut p = peer(i, hash + i);
        if i % 3 == 0 {
            p = p
                .with_phone(Some(format!("+1 \"{i}\"\\\t\u{1}é😀")))
                .with_usernames(vec![format!("n{i}_\"x\""), "\u{7f}/\n".to_owned()]);
        }
        Change::UpsertPeer(p)
    })
}

fn removals(ids: std::ops::Range<i64>) -> impl Iterator<Item = Change> {
    ids.map(|i| Change::RemovePeer(PeerKey::user(i)))
}

/// Saves 10,000 chunked peers (ids 0..10,000), then persists 2,000 more (the overlay, ids
/// 20,000..22,000) and the removal of 500 chunked ones (recorded, ids 0..500).
async fn setup(b: &PostgresBackend) -> SessionData {
    let mut data = sample_session(0);
    data.peers = (0..10_000).map(|i| peer(i, i * 7)).collect();
    b.save_session(&data).await.unwrap();
    let first: Vec<Change> = upserts(20_000..22_000, 3).chain(removals(0..500)).collect();
    data.apply_all(&first);
    b.persist(&first, &data).await.unwrap();
    data
}

/// One flush of 1,000 changes in four runs: new and changed (chunked) peers; removals of
/// chunked, overlay and never stored peers; changed overlay peers and re-added removed ones;
/// a key changed twice within a run and a key removed then re-added.
fn mixed_flush() -> Vec<Change> {
    let mut c: Vec<Change> = upserts(30_000..30_300, 11).chain(upserts(1_000..1_200, 13)).collect();
    c.push(Change::UpsertPeer(peer(30_000, -1)));
    c.extend(removals(2_000..2_100).chain(removals(20_500..20_600)).chain(removals(50_000..50_050)));
    c.extend(upserts(20_000..20_150, 17).chain(upserts(0..98, 19)));
    c.push(Change::UpsertPeer(peer(2_000, 23)));
    assert_eq!(c.len(), 1_000);
    c
}

fn options() -> PostgresOptions {
    PostgresOptions::new().session("s").call_timeout(Duration::from_secs(60))
}

/// Opens with `options`, past a server still starting up (several start at once in this file).
async fn open(pg: &Postgres, options: PostgresOptions, keys: Option<Keyring>) -> PostgresBackend {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let opened = match keys.clone() {
            Some(k) => options.open_with_key(&pg.url(), k).await,
            None => options.open(&pg.url()).await,
        };
        match opened {
            Err(SessionError::Unavailable { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other.unwrap(),
        }
    }
}

async fn admin(pg: &Postgres) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute("SET search_path = layer_session").await.unwrap();
    client
}

/// Every row of every table, as text, in order.
async fn dump(client: &tokio_postgres::Client) -> Vec<String> {
    let mut out = Vec::new();
    for table in TABLES {
        let rows = client.query(&format!("SELECT t::text FROM {table} AS t ORDER BY 1"), &[]).await.unwrap();
        out.extend(rows.iter().map(|r| format!("{table} {}", r.get::<_, String>(0))));
    }
    out
}

async fn round_trip(pg: &Postgres, keys: Option<Keyring>) {
    let b = open(pg, options(), keys.clone()).await;
    let mut data = setup(&b).await;
    let flush = mixed_flush();
    data.apply_all(&flush);
    b.persist(&flush, &data).await.unwrap();
    assert_eq!(b.load_session().await.unwrap().unwrap(), data);
    // A second flush over the first's rows: the removals it recorded, the keys it added.
    let again: Vec<Change> = removals(30_000..30_100).chain(upserts(2_050..2_100, 29)).collect();
    data.apply_all(&again);
    b.persist(&again, &data).await.unwrap();
    b.close().await.unwrap();
    // A fresh owner reads it back (every row's checksum and every table's sum checked).
    let next = open(pg, options(), keys).await;
    assert_eq!(next.load_session().await.unwrap().unwrap(), data);
    next.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_flush_of_1000_peers_round_trips() {
    let pg = Postgres::start();
    round_trip(&pg, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_flush_of_1000_sealed_peers_round_trips() {
    let pg = Postgres::start();
    round_trip(&pg, Some(Keyring::new(SealingKey::from_bytes([7; 32])))).await;
}

/// An owner whose lease was taken over while it was paused (its own clock still says it holds
/// the lease: a long time to live, so its keeper does not notice first) has its flush refused
/// by the server's fence, and no row changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_out_flush_changes_no_row() {
    let pg = Postgres::start();
    let ttl = session_core::LeaseOptions::default().with_ttl(Duration::from_secs(120));
    let old = open(&pg, options().lease(ttl), None).await;
    let mut data = setup(&old).await;
    let client = admin(&pg).await;
    let flush = mixed_flush();
    data.apply_all(&flush);
    // What a takeover does to the lease row: a new token (and holder).
    client.batch_execute("UPDATE layer_session_leases SET token = token + 1 WHERE name = 's'").await.unwrap();
    let before = dump(&client).await;
    let err = old.persist(&flush, &data).await.unwrap_err();
    let err = SessionError::from_boxed(err, "postgres");
    assert!(matches!(err, SessionError::LeaseLost { .. }), "{err:?}");
    assert_eq!(dump(&client).await, before, "a fenced-out flush changed rows");
}

/// The scans of `peers` or `peer_removals` in an EXPLAIN ANALYZE (text format) and the rows
/// each read (rows times loops).
fn scans(lines: &[String]) -> Vec<(String, u64)> {
    let number = |line: &str, key: &str| -> u64 {
        let at = line.rfind(key).unwrap() + key.len();
        line[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    lines
        .iter()
        .filter(|l| l.contains(" Scan ") && (l.contains(" on peers ") || l.contains(" on peer_removals ")))
        .map(|l| (l.trim().to_owned(), number(l, " rows=") * number(l, " loops=")))
        .collect()
}

/// Each statement of a 1,000-key flush over a session of 8,000 overlay rows and 3,000 recorded
/// removals that the planner has no statistics of (autovacuum off: as a table that grew since
/// it was last analyzed) reads at most a row or two per key: a join the planner may turn into a
/// scan of the whole session (what the generic translation of the batch statements did) would
/// read thousands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_statement_of_a_flush_reads_only_its_keys() {
    let pg = Postgres::start();
    let b = open(&pg, options(), None).await;
    let client = admin(&pg).await;
    for table in ["peers", "peer_removals"] {
        client.batch_execute(&format!("ALTER TABLE {table} SET (autovacuum_enabled = false)")).await.unwrap();
    }
    let mut data = sample_session(0);
    data.peers = (0..10_000).map(|i| peer(i, i)).collect();
    b.save_session(&data).await.unwrap();
    let grow: Vec<Change> = upserts(20_000..28_000, 3).chain(removals(0..3_000)).collect();
    data.apply_all(&grow);
    b.persist(&grow, &data).await.unwrap();
    let sid: i64 = client.query_one("SELECT id FROM sessions WHERE name = 's'", &[]).await.unwrap().get(0);
    // Every batch statement: upserts of stored, removed and new keys that delete removals,
    // removals that record some.
    let flush: Vec<Change> = upserts(20_000..20_200, 5)
        .chain(upserts(0..200, 5))
        .chain(upserts(3_000..3_100, 5))
        .chain(removals(4_000..4_500))
        .collect();
    data.apply_all(&flush);
    let plan: Vec<_> = session_sql::persist_plan_known(sid, &flush, &data, Known::default()).unwrap().collect();
    // Each statement of session-sql's plan in PostgreSQL's dialect, and each this backend runs.
    type Params = Vec<Box<dyn ToSql + Sync + Send>>;
    let mut statements: Vec<(String, Params)> = plan
        .iter()
        .map(|st| {
            let params: Params = st
                .params
                .iter()
                .map(|v| -> Box<dyn ToSql + Sync + Send> {
                    match v {
                        SqlValue::Integer(i) => Box::new(*i),
                        SqlValue::Text(t) => Box::new(t.clone()),
                        SqlValue::Null => Box::new(None::<i64>),
                        other => panic!("a {other:?} parameter in a peer statement"),
                    }
                })
                .collect();
            (Dialect::Postgres.translate(st.sql).into_owned(), params)
        })
        .collect();
    let fused = session_postgres::postgres_plan(&plan);
    assert!(fused.len() < plan.len(), "no run was one statement");
    statements.extend(fused);
    assert!(statements.len() >= 8, "{} statements", statements.len());
    client.batch_execute("BEGIN").await.unwrap();
    for (text, params) in &statements {
        client.batch_execute("SAVEPOINT s").await.unwrap();
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
        let rows = client.query(&format!("EXPLAIN ANALYZE {text}"), &refs).await.unwrap();
        let explained: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        for (node, rows) in scans(&explained) {
            assert!(rows <= 1_000, "{node} read {rows} rows for 1,000 keys in\n{text}\n{}", explained.join("\n"));
        }
        client.batch_execute("ROLLBACK TO SAVEPOINT s").await.unwrap();
    }
    client.batch_execute("ROLLBACK").await.unwrap();
}
