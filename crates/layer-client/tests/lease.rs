//! One owner per session, on the network: a client whose backend holds a lease uses the
//! session's keys only while the lease is held. Taken over, or not renewed in time (the store
//! unreachable), the client stops its network at once (the loopback Telegram peer receives
//! nothing more), every call of ours returns `LeaseLost`, and `session_health()` says so.
//! Shutdown releases the lease so the next owner takes over at once.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grammers_tl_types::{self as tl, Identifiable};
use layer_client::core::{
    BoxError, Change, Lease, LeaseGrant, LeaseHolder, LeaseOptions, LeaseStatus, LeaseStore, MemoryLeases, SelfUser,
    SessionBackend, SessionData, SessionError,
};
use layer_client::session_backend::InMemoryBackend;
use layer_client::{Client, ClientError, SessionHealth};
use support::{routes, session_for, Dc, Reply};

const API_ID: i32 = 424242;

/// A lease store whose renewals fail while `down` is set (the store unreachable).
struct Reachable {
    inner: MemoryLeases,
    down: AtomicBool,
}

#[async_trait::async_trait]
impl LeaseStore for Reachable {
    fn resource(&self) -> String {
        self.inner.resource()
    }
    async fn acquire(&self, holder: &LeaseHolder, ttl: Duration) -> Result<LeaseGrant, SessionError> {
        self.inner.acquire(holder, ttl).await
    }
    async fn renew(&self, token: u64, ttl: Duration) -> Result<LeaseGrant, SessionError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(SessionError::Unavailable { resource: self.resource(), source: "store down".into() });
        }
        self.inner.renew(token, ttl).await
    }
    async fn release(&self, token: u64) -> Result<(), SessionError> {
        self.inner.release(token).await
    }
}

/// An in-memory session guarded by a lease, as a server-backed backend would be: writes are
/// fenced, close releases.
struct Leased {
    inner: InMemoryBackend,
    lease: Lease,
}

#[async_trait::async_trait]
impl SessionBackend for Leased {
    async fn load(&self) -> Result<Option<Vec<u8>>, BoxError> {
        self.inner.load().await
    }
    async fn save(&self, data: &[u8]) -> Result<(), BoxError> {
        self.lease.fence()?;
        self.inner.save(data).await
    }
    async fn persist(&self, changes: &[Change], full: &SessionData) -> Result<(), BoxError> {
        self.lease.fence()?;
        self.inner.persist(changes, full).await
    }
    fn lease(&self) -> Option<tokio::sync::watch::Receiver<LeaseStatus>> {
        Some(self.lease.watch())
    }
    async fn close(&self) -> Result<(), BoxError> {
        Ok(self.lease.release().await?)
    }
}

fn user(id: i64) -> tl::enums::User {
    let mut u = support::blank::blank_user();
    u.id = id;
    u.access_hash = Some(id * 3);
    tl::enums::User::User(u)
}

async fn resolving_dc() -> Dc {
    Dc::start(
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
    .await
}

async fn leased(dc: &Dc, store: Arc<Reachable>, ttl: Duration) -> Arc<Leased> {
    let lease = Lease::acquire(store, LeaseOptions::default().with_ttl(ttl)).await.unwrap();
    Arc::new(Leased {
        inner: InMemoryBackend::with_session(session_for(&[dc], 2, Some(SelfUser::new(77, false)))),
        lease,
    })
}

async fn connect(backend: Arc<Leased>) -> Result<(Client, layer_client::ShutdownHandle), ClientError> {
    Client::builder().session(backend).api_id(API_ID).api_hash("hash").connect().await
}

async fn wait_lost(client: &Client) -> SessionHealth {
    let mut health = client.session_health();
    let seen = tokio::time::timeout(
        Duration::from_secs(10),
        health.wait_for(|h| matches!(h, SessionHealth::LeaseLost { .. })),
    )
    .await
    .expect("the client notices in time")
    .unwrap()
    .clone();
    seen
}

fn lease_lost(e: &ClientError) -> bool {
    matches!(e, ClientError::Session(SessionError::LeaseLost { .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_over_stops_the_network_at_once() {
    let dc = resolving_dc().await;
    let store = Arc::new(Reachable { inner: MemoryLeases::new(), down: AtomicBool::new(false) });
    let backend = leased(&dc, Arc::clone(&store), Duration::from_secs(30)).await;
    let (client, shutdown) = connect(Arc::clone(&backend)).await.unwrap();
    assert!(client.lease_status().is_some());
    assert!(client.raw().resolve_username("user900").await.unwrap().is_some());
    let before = dc.count::<tl::functions::contacts::ResolveUsername>();
    assert_eq!(before, 1);

    // A fenced write found its token superseded: the backend declares the lease lost.
    let _ = backend.lease.lost("another owner took the session over");
    let health = wait_lost(&client).await;
    assert!(matches!(&health, SessionHealth::LeaseLost { reason } if reason.contains("took the session over")));
    // Nothing more reaches Telegram, through our calls or through grammers directly.
    assert!(lease_lost(&client.is_authorized().await.expect_err("a call of ours after the loss")));
    assert!(lease_lost(&client.flush().await.expect_err("every call, not only the first")));
    assert!(client.raw().resolve_username("user901").await.is_err(), "grammers sent after the lease was lost");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(dc.count::<tl::functions::contacts::ResolveUsername>(), before, "a request reached the peer");
    drop(client);
    let _ = shutdown.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_cannot_be_renewed_stops_the_network_before_it_expires() {
    let dc = resolving_dc().await;
    let ttl = Duration::from_millis(1500);
    let store = Arc::new(Reachable { inner: MemoryLeases::new(), down: AtomicBool::new(false) });
    let backend = leased(&dc, Arc::clone(&store), ttl).await;
    let (client, shutdown) = connect(Arc::clone(&backend)).await.unwrap();
    assert!(client.raw().resolve_username("user900").await.unwrap().is_some());

    store.down.store(true, Ordering::SeqCst);
    let cut = Instant::now();
    let health = wait_lost(&client).await;
    // Stopped before the store could consider the lease expired (the last renewal was at most
    // `ttl` before `cut`; it is renewed every ttl/3, so it was at most ttl/3 before).
    assert!(cut.elapsed() < ttl, "stopped only after {:?}", cut.elapsed());
    assert!(matches!(&health, SessionHealth::LeaseLost { reason } if reason.contains("renewed")), "{health:?}");
    assert!(lease_lost(&client.is_authorized().await.expect_err("call after suspension")));
    assert!(client.raw().resolve_username("user901").await.is_err());
    assert_eq!(dc.count::<tl::functions::contacts::ResolveUsername>(), 1);
    drop(client);
    let _ = shutdown.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_does_not_start_without_the_lease() {
    let dc = resolving_dc().await;
    let store = Arc::new(Reachable { inner: MemoryLeases::new(), down: AtomicBool::new(false) });
    let backend = leased(&dc, store, Duration::from_secs(30)).await;
    backend.lease.release().await.unwrap();
    let err = connect(backend).await.expect_err("started on a released lease");
    assert!(lease_lost(&err), "{err:?}");
    assert_eq!(dc.calls.lock().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_the_session_over_at_once() {
    let dc = resolving_dc().await;
    let store = Arc::new(Reachable { inner: MemoryLeases::new(), down: AtomicBool::new(false) });
    let backend = leased(&dc, Arc::clone(&store), Duration::from_secs(30)).await;
    let (client, shutdown) = connect(backend).await.unwrap();
    let waiting = {
        let leases = store.inner.clone();
        tokio::spawn(async move {
            Lease::acquire(Arc::new(leases), LeaseOptions::default().waiting(Duration::from_secs(20))).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the next owner got in while the client ran");
    drop(client);
    let stopped = Instant::now();
    shutdown.shutdown().await.unwrap();
    let next = waiting.await.unwrap().expect("the next owner takes over");
    assert!(stopped.elapsed() < Duration::from_secs(1), "handover took {:?}", stopped.elapsed());
    assert!(next.fence().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builder_waiting_for_the_owner_gets_a_file_session_at_shutdown() {
    let dc = resolving_dc().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bot.session");
    {
        let file = layer_client::session_backend::BinaryFileBackend::open(&path).await.unwrap();
        file.save_session(&session_for(&[&dc], 2, Some(SelfUser::new(77, false)))).await.unwrap();
    }
    let builder = || Client::builder().session_path(&path).api_id(API_ID).api_hash("hash");
    let (first, shutdown) = builder().connect().await.unwrap();
    // Without waiting, a second owner is refused at once.
    let refused = builder().connect().await.expect_err("two owners of one file");
    assert!(matches!(refused, ClientError::Session(SessionError::Locked { .. })), "{refused:?}");
    let waiting = tokio::spawn(builder().wait_for_owner(Duration::from_secs(20)).connect());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the second client got in while the first ran");
    drop(first);
    let stopped = Instant::now();
    shutdown.shutdown().await.unwrap();
    let (second, second_shutdown) = waiting.await.unwrap().expect("the waiting client");
    assert!(stopped.elapsed() < Duration::from_secs(1), "handover took {:?}", stopped.elapsed());
    assert!(second.raw().resolve_username("user5").await.unwrap().is_some());
    drop(second);
    second_shutdown.shutdown().await.unwrap();
}
