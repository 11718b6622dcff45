//! The fence's PostgreSQL variant locks the lease row until the write transaction ends: a
//! takeover (an update of the lease row) waits for a write that passed the fence, so no
//! takeover commits between the fence and the write's commit. Without `FOR SHARE` (the plain
//! translation of SQLite's fence, checked here too) the takeover would not wait.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::time::Duration;

use session_postgres::PostgresOptions;
use session_sql::dialect::PG_FENCE;
use support::Postgres;

async fn admin(pg: &Postgres) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute("SET search_path = layer_session").await.unwrap();
    client
}

/// Whether a takeover's update of the lease row waits while a transaction that ran `fence`
/// is open.
async fn takeover_waits(pg: &Postgres, fence: &str, token: i64) -> bool {
    let writer = admin(pg).await;
    let other = admin(pg).await;
    writer.batch_execute("BEGIN").await.unwrap();
    writer.execute(fence, &[&"f", &token]).await.unwrap();
    let takeover = other.execute("UPDATE layer_session_leases SET token = token + 1 WHERE name = 'f'", &[]);
    let waited = tokio::time::timeout(Duration::from_millis(500), takeover).await.is_err();
    writer.batch_execute("COMMIT").await.unwrap();
    waited
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_waits_for_a_write_that_passed_the_fence() {
    let pg = Postgres::start();
    let b = PostgresOptions::new().session("f").open(&pg.url()).await.unwrap();
    let token = i64::try_from(b.lease_token()).unwrap();
    assert!(takeover_waits(&pg, PG_FENCE, token).await, "the fence did not hold the lease row");
    // The unlocked fence lets the takeover through at once: the lock is what the test sees.
    // (The earlier takeover committed once the writer did: the token moved on by one.)
    let unlocked = PG_FENCE.replace(" FOR SHARE", "");
    assert!(!takeover_waits(&pg, &unlocked, token + 1).await, "the takeover waited without the lock");
}
