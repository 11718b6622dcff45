//! The lease SQL of `session_sql::lease`, run by the real SQLite engine through `SqliteLeases`,
//! passes the lease conformance checks, including racing acquires over separate connections.

use std::sync::Arc;

use session_sqlite::{SqliteBackend, SqliteLeases};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_leases_conform() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("leases.db");
    // A database of ours, written and closed (the owner lock is the file's; the lease is per
    // session name inside it).
    drop(SqliteBackend::open(&path).await.expect("create"));
    session_testkit::lease::run_lease_checks("s-", |name| {
        let handle = Arc::new(SqliteLeases::new(&path, name));
        async move { handle }
    })
    .await;
}

/// The fence stops a write transaction of an owner whose token was superseded, and lets the
/// current owner's through: checked on the engine, with the rows each one tried to write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fence_stops_a_superseded_writer() {
    use session_core::{LeaseHolder, LeaseStore};
    use session_sql::lease;
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fence.db");
    drop(SqliteBackend::open(&path).await.expect("create"));
    let store = SqliteLeases::new(&path, "default");
    let old = store.acquire(&LeaseHolder::current(), Duration::from_millis(200)).await.expect("old");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let new = store.acquire(&LeaseHolder::current(), Duration::from_secs(60)).await.expect("takeover");
    assert!(new.token > old.token);

    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.execute_batch("CREATE TABLE probe (who TEXT)").expect("probe table");
    let write = |token: u64, who: &str| -> Result<(), String> {
        conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| e.to_string())?;
        let fence = lease::fence("default", token);
        let bound: Vec<rusqlite::types::Value> = fence
            .params
            .iter()
            .map(|v| match v {
                session_sql::SqlValue::Integer(i) => rusqlite::types::Value::Integer(*i),
                session_sql::SqlValue::Text(t) => rusqlite::types::Value::Text(t.clone()),
                other => panic!("unexpected parameter {other:?}"),
            })
            .collect();
        let result = conn
            .execute(fence.sql, rusqlite::params_from_iter(bound))
            .map_err(|e| e.to_string())
            .and_then(|_| conn.execute("INSERT INTO probe VALUES (?1)", [who]).map(|_| ()).map_err(|e| e.to_string()));
        match &result {
            Ok(()) => conn.execute_batch("COMMIT").map_err(|e| e.to_string())?,
            Err(_) => conn.execute_batch("ROLLBACK").map_err(|e| e.to_string())?,
        }
        result
    };
    let refused = write(old.token, "old").expect_err("the superseded owner wrote");
    assert!(lease::is_fence_violation(&refused), "{refused}");
    write(new.token, "new").expect("the current owner was fenced out");
    let rows: Vec<String> =
        conn.prepare("SELECT who FROM probe").and_then(|mut s| s.query_map([], |r| r.get(0))?.collect()).expect("rows");
    assert_eq!(rows, ["new"]);
    let fence_rows: i64 = conn.query_row("SELECT count(*) FROM layer_session_fence", [], |r| r.get(0)).expect("count");
    assert_eq!(fence_rows, 0, "the fence table holds a row");
}
