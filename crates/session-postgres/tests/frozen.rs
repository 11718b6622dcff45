//! A frozen server (SIGSTOP): every call fails with `Unavailable` within its timeout, queued
//! calls included (the timeout covers the wait for a pooled connection: five persists queued on
//! one connection fail together, not one timeout after another), and the backend works again
//! once the server is resumed.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::{Change, Peer, PeerKind, SessionBackend, SessionData, SessionError};
use session_postgres::PostgresOptions;
use support::Postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_fails_every_queued_call_within_one_timeout() {
    let pg = Postgres::start();
    let timeout = Duration::from_secs(1);
    let b = Arc::new(
        PostgresOptions::new()
            .call_timeout(timeout)
            .pool_size(1)
            .lease(session_core::LeaseOptions::default().with_ttl(Duration::from_secs(60)))
            .open(&pg.url())
            .await
            .unwrap(),
    );
    let mut data = SessionData::default();
    let first = Change::UpsertPeer(Peer::new(1, PeerKind::User, 1));
    data.apply_all(std::slice::from_ref(&first));
    b.persist(std::slice::from_ref(&first), &data).await.unwrap();
    pg.signal("STOP");
    let start = Instant::now();
    let mut calls = Vec::new();
    for i in 0..5i64 {
        let b = b.clone();
        let mut data = data.clone();
        calls.push(tokio::spawn(async move {
            let change = Change::UpsertPeer(Peer::new(10 + i, PeerKind::User, i));
            data.apply_all(std::slice::from_ref(&change));
            let result = b.persist(std::slice::from_ref(&change), &data).await;
            (result.map_err(|e| SessionError::from_boxed(e, "postgres")), start.elapsed())
        }));
    }
    let load = b.load_session().await;
    for call in calls {
        let (result, took) = call.await.unwrap();
        assert!(matches!(result, Err(SessionError::Unavailable { .. })), "{result:?}");
        assert!(took < timeout + Duration::from_millis(800), "a queued call took {took:?}");
    }
    assert!(matches!(load.map_err(|e| SessionError::from_boxed(e, "postgres")), Err(SessionError::Unavailable { .. })));
    pg.signal("CONT");
    // The connections the timeouts abandoned are not reused: the next call gets a new one.
    let mut ok = false;
    for _ in 0..20 {
        if b.persist(std::slice::from_ref(&first), &data).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the backend did not recover after the server was resumed");
    let stored = b.load_session().await.unwrap().unwrap();
    assert!(stored.peers.access_hash(session_core::PeerKey::user(1)).is_some());
}
