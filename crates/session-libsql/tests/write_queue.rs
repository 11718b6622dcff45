//! A lease transaction and sqld's queue of writers (issue 16's fleet stall), on a real sqld.
//!
//! sqld 0.24 (its default WAL) admits one writer at a time through a queue, and a writer whose
//! snapshot went stale while it waited (another committed first) fails `SQLITE_BUSY_SNAPSHOT`
//! when its turn comes. A transaction whose first statement writes is retried inside sqld
//! (SQLite's busy handler, same connection); one that read first cannot be, so the client gets
//! `SQLITE_BUSY` ("database is locked") and must send it again. Such a refusal is also one way a
//! connection leaves a stale place in sqld's queue behind, which can later stop every writer of
//! the database (README, "Known problems"). The lease's transactions start with a write, so a
//! lease transaction queued behind another writer runs in one request.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use session_core::{LeaseHolder, LeaseStore};
use session_libsql::LibSqlLeases;
use support::{CountingProxy, Sqld};

async fn raw(url: &str) -> libsql::Connection {
    libsql::Builder::new_remote(url.to_owned(), String::new()).build().await.unwrap().connect().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_transaction_queued_behind_a_writer_is_not_refused_busy() {
    // sqld's default WAL: the one whose queue a refused transaction can stop.
    let dir = tempfile::tempdir().unwrap();
    let sqld = Sqld::start(&dir.path().join("server"), None);
    let proxy = CountingProxy::start(sqld.url().trim_start_matches("http://").to_owned(), b"POST /v3/pipeline").await;
    let url = proxy.url.clone();
    let lease = LibSqlLeases::connect(&url, "", Duration::from_secs(10), "queued").await.unwrap();
    let holder = LeaseHolder::current();
    let ttl = Duration::from_secs(30);
    let token = lease.acquire(&holder, ttl).await.unwrap().token;
    let x = raw(&sqld.url()).await;
    x.execute("CREATE TABLE t (v INTEGER)", ()).await.unwrap();

    for (round, call) in ["renew", "renew", "release"].into_iter().enumerate() {
        // Another writer holds the lock while the lease's transaction arrives and queues; it
        // commits, so the snapshot the lease's transaction took before queueing is stale.
        let tx = x.transaction().await.unwrap();
        tx.execute("INSERT INTO t VALUES (1)", ()).await.unwrap();
        let before = proxy.count();
        let queued = {
            let lease = &lease;
            async move {
                match call {
                    "renew" => lease.renew(token, ttl).await.map(drop),
                    _ => lease.release(token).await,
                }
            }
        };
        let commit = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tx.commit().await.unwrap();
        };
        let (result, ()) = tokio::join!(queued, commit);
        result.unwrap();
        // One request: sqld ran the transaction once it had the lock; a transaction answered
        // `SQLITE_BUSY` is sent again (a second request) and left its place in sqld's queue.
        let sent = proxy.count() - before;
        assert_eq!(sent, 1, "round {round} ({call}): {sent} requests");
    }
}
