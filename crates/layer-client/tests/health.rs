//! A failing store never vanishes: an error met while grammers caches peers (which grammers only
//! logs) reaches the application through `session_health()` and the next call of ours, and the
//! peer is stored once the backend recovers.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use grammers_tl_types::{self as tl, Identifiable};
use layer_client::core::{BoxError, Change, PeerKey, SelfUser, SessionBackend, SessionData};
use layer_client::session_backend::InMemoryBackend;
use layer_client::{Client, ClientError, FlushPolicy, SessionHealth};
use support::{routes, session_for, Dc, Reply};

const API_ID: i32 = 424242;

/// An in-memory backend whose writes fail while `down` is set.
struct Flaky {
    inner: InMemoryBackend,
    down: AtomicBool,
    refused: AtomicUsize,
}

impl Flaky {
    fn check(&self) -> Result<(), BoxError> {
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(Box::new(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "store down")));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl SessionBackend for Flaky {
    async fn load(&self) -> Result<Option<Vec<u8>>, BoxError> {
        self.inner.load().await
    }
    async fn save(&self, data: &[u8]) -> Result<(), BoxError> {
        self.check()?;
        self.inner.save(data).await
    }
    async fn persist(&self, changes: &[Change], full: &SessionData) -> Result<(), BoxError> {
        self.check()?;
        self.inner.persist(changes, full).await
    }
}

fn user(id: i64) -> tl::enums::User {
    let mut u = support::blank::blank_user();
    u.id = id;
    u.access_hash = Some(id * 3);
    u.username = Some(format!("user{id}"));
    tl::enums::User::User(u)
}

async fn wait_for(rx: &mut tokio::sync::watch::Receiver<SessionHealth>, healthy: bool) -> SessionHealth {
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|h| (*h == SessionHealth::Healthy) == healthy))
        .await
        .expect("health changes in time")
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_during_peer_caching_reaches_the_app_and_the_peer_is_stored_later() {
    let dc = Dc::start(
        2,
        2,
        routes(HashMap::from([(
            tl::functions::contacts::ResolveUsername::CONSTRUCTOR_ID,
            Arc::new(|call: &support::Call| {
                let req: tl::functions::contacts::ResolveUsername = call.parse();
                let id: i64 = req.username.trim_start_matches("user").parse().unwrap();
                Reply::ok(&tl::enums::contacts::ResolvedPeer::Peer(tl::types::contacts::ResolvedPeer {
                    peer: tl::enums::Peer::User(tl::types::PeerUser { user_id: id }),
                    chats: vec![],
                    users: vec![user(id)],
                }))
            }) as support::Handler,
        )])),
    )
    .await;
    let backend = Arc::new(Flaky {
        inner: InMemoryBackend::with_session(session_for(&[&dc], 2, Some(SelfUser::new(77, false)))),
        down: AtomicBool::new(false),
        refused: AtomicUsize::new(0),
    });
    let (client, shutdown) = Client::builder()
        .session(Arc::clone(&backend))
        .api_id(API_ID)
        .api_hash("hash")
        // Every change wakes the background flush at once; the interval (and with it our
        // retry tick) is long, so that grammers is surely the next caller after it fails.
        .flush_policy(FlushPolicy::new(Duration::from_secs(3600), 1))
        .connect()
        .await
        .unwrap();
    let mut health = client.session_health();
    assert_eq!(*health.borrow(), SessionHealth::Healthy);

    backend.down.store(true, Ordering::SeqCst);
    // The first peer's background flush fails; grammers caching the second peer is the next
    // store caller, and grammers would only log what it gets.
    assert!(client.raw().resolve_username("user900").await.unwrap().is_some());
    while backend.refused.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(client.raw().resolve_username("user901").await.unwrap().is_some());

    let seen = wait_for(&mut health, false).await;
    assert!(matches!(&seen, SessionHealth::Failing { error, .. } if error.contains("store down")), "{seen:?}");
    let err = client.flush().await.expect_err("the next call of ours reports the failure");
    assert!(matches!(err, ClientError::Session(_)), "{err:?}");
    assert!(client.session().snapshot().peers.get(PeerKey::user(901)).is_some(), "kept in memory");

    backend.down.store(false, Ordering::SeqCst);
    client.flush().await.expect("the pending changes are retried and taken");
    wait_for(&mut health, true).await;
    let stored = backend.inner.load_session().await.unwrap().unwrap();
    for id in [900, 901] {
        let peer = stored.peers.get(PeerKey::user(id)).unwrap_or_else(|| panic!("peer {id} stored after recovery"));
        assert_eq!(peer.access_hash, id * 3);
    }
    shutdown.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_telegram_accepted_is_reported_as_signed_in_but_not_saved() {
    let dc = Dc::start(
        2,
        2,
        routes(HashMap::from([
            (
                tl::functions::auth::ImportBotAuthorization::CONSTRUCTOR_ID,
                Arc::new(|_: &support::Call| support::authorization(support::self_user(1001, 0x5eed, true)))
                    as support::Handler,
            ),
            (
                tl::functions::updates::GetState::CONSTRUCTOR_ID,
                Arc::new(|_: &support::Call| support::state(5, 0, 1_700_000_000, 1)) as support::Handler,
            ),
        ])),
    )
    .await;
    let backend = Arc::new(Flaky {
        inner: InMemoryBackend::with_session(session_for(&[&dc], 2, None)),
        down: AtomicBool::new(false),
        refused: AtomicUsize::new(0),
    });
    let (client, shutdown) =
        Client::builder().session(Arc::clone(&backend)).api_id(API_ID).api_hash("hash").connect().await.unwrap();
    let mut health = client.session_health();
    backend.down.store(true, Ordering::SeqCst);
    match client.bot_sign_in("1001:token").await {
        Err(ClientError::SignedInNotSaved { user, .. }) => assert_eq!(user.id().bare_id(), Some(1001)),
        other => panic!("expected SignedInNotSaved, got {other:?}"),
    }
    assert!(matches!(wait_for(&mut health, false).await, SessionHealth::Failing { .. }));
    assert_eq!(client.session().snapshot().user, Some(SelfUser::new(1001, true)), "kept, pending");

    backend.down.store(false, Ordering::SeqCst);
    client.flush().await.unwrap();
    let stored = backend.inner.load_session().await.unwrap().unwrap();
    assert_eq!(stored.user, Some(SelfUser::new(1001, true)), "the login is stored once the store is back");
    shutdown.shutdown().await.unwrap();
}
