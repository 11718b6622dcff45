//! The store's contract: group commit, critical changes flushed before returning, failures
//! reported and retried, close.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use session_core::{
    async_trait, AuthKey, BoxError, Change, FlushPolicy, InMemoryBackend, Peer, PeerKey, PeerKind, SessionBackend,
    SessionData, SessionError, SessionStore,
};
use tokio::sync::Semaphore;

/// Wraps the in-memory backend: counts persists, can fail them, can hold them at a gate.
#[derive(Default)]
struct Probe {
    inner: InMemoryBackend,
    persists: AtomicUsize,
    fail: AtomicBool,
    gate: Mutex<Option<Arc<Semaphore>>>,
}

#[async_trait]
impl SessionBackend for Probe {
    async fn load(&self) -> Result<Option<Vec<u8>>, BoxError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err("store unreachable".into());
        }
        self.inner.load().await
    }
    async fn save(&self, data: &[u8]) -> Result<(), BoxError> {
        self.inner.save(data).await
    }
    async fn persist(&self, changes: &[Change], full: &SessionData) -> Result<(), BoxError> {
        let gate = self.gate.lock().map_err(|e| e.to_string())?.clone();
        if let Some(gate) = gate {
            let _permit = gate.acquire().await?;
        }
        self.persists.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(Box::new(SessionError::Unavailable { resource: "probe".into(), source: "down".into() }));
        }
        self.inner.persist(changes, full).await
    }
}

fn quiet() -> FlushPolicy {
    FlushPolicy::new(Duration::from_secs(3600), usize::MAX)
}

async fn stored(probe: &Probe) -> SessionData {
    probe.inner.load_session().await.expect("load").unwrap_or_default()
}

fn peer(i: i64) -> Change {
    Change::UpsertPeer(Peer::new(i, PeerKind::User, i * 10))
}

#[tokio::test]
async fn critical_changes_are_durable_when_apply_returns() {
    let probe = Arc::new(Probe::default());
    let store = SessionStore::open(probe.clone(), quiet()).await.expect("open");
    store.apply(peer(1)).await.expect("apply");
    assert_eq!(probe.persists.load(Ordering::SeqCst), 0, "a non-critical change was flushed at once");
    store.apply(Change::SetAuthKey { dc_id: 2, key: Some(AuthKey::new([3; 256])) }).await.expect("key");
    let s = stored(&probe).await;
    assert!(s.auth_key(2).is_some(), "the new auth key was not durable when apply returned");
    assert!(s.peers.get(PeerKey::user(1)).is_some(), "changes before a critical one must be flushed with it");
    for critical in [Change::SetHomeDc(4), Change::LogOut] {
        let before = probe.persists.load(Ordering::SeqCst);
        store.apply(critical).await.expect("critical");
        assert_eq!(probe.persists.load(Ordering::SeqCst), before + 1);
    }
    assert!(stored(&probe).await.is_empty(), "log out was not persisted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_write_covers_every_change_made_before_it() {
    let probe = Arc::new(Probe::default());
    let gate = Arc::new(Semaphore::new(0));
    *probe.gate.lock().expect("gate") = Some(gate.clone());
    let store = SessionStore::open(probe.clone(), quiet()).await.expect("open");

    store.apply(peer(0)).await.expect("apply");
    let first = tokio::spawn({
        let store = store.clone();
        async move { store.flush().await }
    });
    // Wait until the first flush is inside persist (it took the pending change).
    while store.pending() != 0 {
        tokio::task::yield_now().await;
    }
    let mut waiters = Vec::new();
    for i in 1..=10 {
        store.apply(peer(i)).await.expect("apply");
        let store = store.clone();
        waiters.push(tokio::spawn(async move { store.flush().await }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    gate.add_permits(100);
    first.await.expect("join").expect("first flush");
    for w in waiters {
        w.await.expect("join").expect("flush");
    }
    assert_eq!(probe.persists.load(Ordering::SeqCst), 2, "ten flushes waiting behind one write must share one write");
    assert_eq!(stored(&probe).await.peers.len(), 11);
}

#[tokio::test]
async fn failed_background_flush_is_reported_and_retried() {
    let probe = Arc::new(Probe::default());
    let policy = FlushPolicy::new(Duration::from_millis(5), usize::MAX);
    let store = SessionStore::open(probe.clone(), policy).await.expect("open");
    probe.fail.store(true, Ordering::SeqCst);
    store.apply(peer(1)).await.expect("apply");
    // Wait for the background flusher to try and fail.
    for _ in 0..2000 {
        if probe.persists.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(probe.persists.load(Ordering::SeqCst) > 0, "background flusher never ran");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let err = store.apply(peer(2)).await.expect_err("the failure must surface in the next call");
    assert!(matches!(err, SessionError::Unavailable { .. }), "kind lost: {err:?}");
    assert!(store.read(|s| s.peers.get(PeerKey::user(2)).is_none()), "a refused call must not apply its change");
    assert_eq!(store.pending(), 1, "the failed change must stay pending");
    probe.fail.store(false, Ordering::SeqCst);
    // The failure may have been recorded again by a later background attempt: flush until clean.
    let mut flushed = store.flush().await;
    if flushed.is_err() {
        flushed = store.flush().await;
    }
    flushed.expect("flush after recovery");
    assert!(stored(&probe).await.peers.get(PeerKey::user(1)).is_some(), "the pending change was lost");
    store.close().await.expect("close");
}

#[tokio::test]
async fn failed_explicit_flush_keeps_changes_pending() {
    let probe = Arc::new(Probe::default());
    let store = SessionStore::open(probe.clone(), quiet()).await.expect("open");
    store.apply(peer(1)).await.expect("apply");
    probe.fail.store(true, Ordering::SeqCst);
    assert!(store.flush().await.is_err());
    store.apply(peer(2)).await.expect("apply after a reported failure");
    assert_eq!(store.pending(), 2);
    probe.fail.store(false, Ordering::SeqCst);
    store.flush().await.expect("retry");
    assert_eq!(stored(&probe).await.peers.len(), 2);
    assert_eq!(store.pending(), 0);
}

#[tokio::test]
async fn interval_and_size_policy_flush_in_the_background() {
    let probe = Arc::new(Probe::default());
    let store =
        SessionStore::open(probe.clone(), FlushPolicy::new(Duration::from_millis(10), usize::MAX)).await.expect("open");
    store.apply(peer(1)).await.expect("apply");
    let mut waited = 0;
    while stored(&probe).await.peers.is_empty() && waited < 5000 {
        tokio::time::sleep(Duration::from_millis(2)).await;
        waited += 2;
    }
    assert_eq!(stored(&probe).await.peers.len(), 1, "the interval never flushed");

    let probe = Arc::new(Probe::default());
    let store = SessionStore::open(probe.clone(), FlushPolicy::new(Duration::from_secs(3600), 8)).await.expect("open");
    for i in 0..8 {
        store.apply(peer(i)).await.expect("apply");
    }
    let mut waited = 0;
    while stored(&probe).await.peers.len() < 8 && waited < 5000 {
        tokio::time::sleep(Duration::from_millis(2)).await;
        waited += 2;
    }
    assert_eq!(stored(&probe).await.peers.len(), 8, "reaching max_pending did not flush");
    drop(store);
}

#[tokio::test]
async fn close_flushes_then_refuses_changes() {
    let probe = Arc::new(Probe::default());
    let store = SessionStore::open(probe.clone(), quiet()).await.expect("open");
    store.apply(peer(1)).await.expect("apply");
    store.close().await.expect("close");
    assert_eq!(stored(&probe).await.peers.len(), 1, "close did not flush");
    assert!(matches!(store.apply(peer(2)).await, Err(SessionError::Closed)));
    assert_eq!(store.read(|s| s.peers.len()), 1, "reads must keep working after close");
}

#[tokio::test]
async fn unreachable_store_fails_open_instead_of_starting_empty() {
    let probe = Arc::new(Probe::default());
    probe.fail.store(true, Ordering::SeqCst);
    let err = SessionStore::open(probe, quiet()).await.expect_err("must fail");
    assert!(matches!(err, SessionError::Backend { .. }), "{err:?}");
}

#[tokio::test]
async fn replace_and_delete_go_straight_to_the_backend() {
    let probe = Arc::new(Probe::default());
    let store = SessionStore::open(probe.clone(), quiet()).await.expect("open");
    store.apply(peer(9)).await.expect("apply");
    let mut data = SessionData::default();
    data.apply(&Change::SetHomeDc(5));
    store.replace(data.clone()).await.expect("replace");
    assert_eq!(stored(&probe).await, data);
    assert_eq!(store.pending(), 0, "replaced changes must not be persisted on top");
    store.delete().await.expect("delete");
    assert!(probe.inner.load_session().await.expect("load").is_none());
    assert!(store.read(SessionData::is_empty));
}

/// The smallest backend a user can write: `load` and `save` only.
#[derive(Default)]
struct Minimal(Mutex<Option<Vec<u8>>>);

#[async_trait]
impl SessionBackend for Minimal {
    async fn load(&self) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(self.0.lock().map_err(|e| e.to_string())?.clone())
    }
    async fn save(&self, data: &[u8]) -> Result<(), BoxError> {
        *self.0.lock().map_err(|e| e.to_string())? = Some(data.to_vec());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_and_save_only_backend_passes_the_suite() {
    session_testkit::run_all(&session_testkit::Fresh(|| async { Ok(Minimal::default()) })).await;
    // And through every forwarding impl.
    let boxed: Box<dyn SessionBackend> = Box::new(Minimal::default());
    let store = SessionStore::open(Arc::new(boxed), quiet()).await.expect("open boxed");
    store.apply(Change::SetHomeDc(3)).await.expect("apply");
    let by_ref = Minimal::default();
    by_ref.save(&session_core::codec::encode(&store.snapshot()).expect("encode")).await.expect("save");
    assert_eq!(<&Minimal as SessionBackend>::load_session(&&by_ref).await.expect("load").map(|s| s.home_dc), Some(3));
}
