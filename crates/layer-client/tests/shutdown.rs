//! Shutdown writes what is pending; dropping everything without it still flushes (best effort).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use layer_client::core::{Change, Peer, PeerKey, PeerKind, SessionBackend};
use layer_client::session_backend::InMemoryBackend;
use layer_client::{Client, FlushPolicy};

/// A policy that never flushes by itself within a test.
fn lazy() -> FlushPolicy {
    FlushPolicy::new(Duration::from_secs(3600), 1_000_000)
}

async fn stored_peer(backend: &InMemoryBackend, id: i64) -> bool {
    backend.load_session().await.unwrap().is_some_and(|d| d.peers.get(PeerKey::user(id)).is_some())
}

#[tokio::test]
async fn shutdown_flushes_pending_changes() {
    let backend = Arc::new(InMemoryBackend::new());
    let (client, shutdown) = Client::builder()
        .session(Arc::clone(&backend))
        .api_id(1)
        .api_hash("x")
        .flush_policy(lazy())
        .connect()
        .await
        .unwrap();
    client.session().apply(Change::UpsertPeer(Peer::new(42, PeerKind::User, 7))).await.unwrap();
    assert!(!stored_peer(&backend, 42).await, "a peer is not a critical change: still pending");
    assert_eq!(client.session().pending(), 2, "api_id and the peer");
    shutdown.shutdown().await.unwrap();
    assert!(stored_peer(&backend, 42).await);
    assert!(client.session().apply(Change::SetTestMode(true)).await.is_err(), "closed after shutdown");
}

#[tokio::test]
async fn dropping_everything_still_flushes() {
    let backend = Arc::new(InMemoryBackend::new());
    let (client, shutdown) = Client::builder()
        .session(Arc::clone(&backend))
        .api_id(1)
        .api_hash("x")
        .flush_policy(lazy())
        .connect()
        .await
        .unwrap();
    client.session().apply(Change::UpsertPeer(Peer::new(43, PeerKind::User, 7))).await.unwrap();
    drop(shutdown);
    assert!(!stored_peer(&backend, 43).await);
    drop(client);
    for _ in 0..200 {
        if stored_peer(&backend, 43).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the final flush did not happen");
}
