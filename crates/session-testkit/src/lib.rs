#![doc = include_str!("../README.md")]

pub mod capture;
pub mod lease;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use session_core::{
    AuthKey, BoxError, Change, DcFlags, DcOption, FlushPolicy, MinPeerContext, Peer, PeerKey, PeerKind, SelfUser,
    SessionBackend, SessionData, SessionStore, UpdateState, UpdateStateChange,
};

/// Builds backends for the suite.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The backend under test.
    type Backend: SessionBackend + 'static;

    /// A backend over new, empty storage.
    async fn fresh(&self) -> Result<Self::Backend, BoxError>;

    /// A backend over the same storage as `old`. The suite has dropped every other reference
    /// to `old` (stores included) before calling this, so a lock it held can be released by
    /// dropping it.
    async fn reopen(&self, old: Arc<Self::Backend>) -> Result<Arc<Self::Backend>, BoxError>;
}

/// A [`Harness`] from a closure that makes fresh backends; "reopening" hands the same backend
/// back, which suits backends whose storage is the value itself.
pub struct Fresh<F>(pub F);

#[async_trait]
impl<F, Fut, B> Harness for Fresh<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<B, BoxError>> + Send,
    B: SessionBackend + 'static,
{
    type Backend = B;

    async fn fresh(&self) -> Result<B, BoxError> {
        (self.0)().await
    }

    async fn reopen(&self, old: Arc<B>) -> Result<Arc<B>, BoxError> {
        Ok(old)
    }
}

/// Runs every check of the suite, with 70,000 peers for the large-session check.
pub async fn run_all<H: Harness>(h: &H) {
    empty_store_loads_none(h).await;
    save_load_round_trip(h).await;
    save_replaces_everything(h).await;
    delete_forgets(h).await;
    incremental_matches_full(h).await;
    log_out_resets(h).await;
    reopen_sees_acknowledged_changes(h).await;
    concurrent_flushes(h).await;
    many_peers(h, 70_000).await;
}

async fn fresh<H: Harness>(h: &H) -> Arc<H::Backend> {
    match h.fresh().await {
        Ok(b) => Arc::new(b),
        Err(e) => panic!("harness could not create a fresh backend: {e}"),
    }
}

async fn reopen<H: Harness>(h: &H, b: Arc<H::Backend>) -> Arc<H::Backend> {
    match h.reopen(b).await {
        Ok(b) => b,
        Err(e) => panic!("harness could not reopen the backend: {e}"),
    }
}

async fn load<B: SessionBackend + ?Sized>(b: &B, rule: &str) -> Option<SessionData> {
    match b.load_session().await {
        Ok(s) => s,
        Err(e) => panic!("{rule}: load_session failed: {e}"),
    }
}

fn ok<T>(r: Result<T, BoxError>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what} failed: {e}"),
    }
}

/// A deterministic pseudo-random sequence (splitmix64), so that the suite needs no `rand`.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A sequence from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// An i64 covering the whole range, extremes included.
    pub fn i64(&mut self) -> i64 {
        match self.below(16) {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => 0,
            _ => i64::from_le_bytes(self.next_u64().to_le_bytes()),
        }
    }

    /// `n` bytes of the sequence (key material, tokens: no 8-byte window of them recurs by
    /// chance elsewhere).
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n.div_ceil(8)).flat_map(|_| self.next_u64().to_le_bytes()).take(n).collect()
    }

    /// An i32 from the low bits.
    pub fn i32(&mut self) -> i32 {
        let [a, b, c, d, ..] = self.next_u64().to_le_bytes();
        i32::from_le_bytes([a, b, c, d])
    }
}

/// A deterministic auth key.
pub fn sample_key(seed: u8) -> AuthKey {
    let mut bytes = [0u8; 256];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = seed.wrapping_mul(31).wrapping_add(u8::try_from(i % 251).unwrap_or(0));
    }
    AuthKey::new(bytes)
}

/// The `n`-th sample peer: every kind, extreme hashes, some with usernames and phones.
pub fn sample_peer(n: u64, rng: &mut Rng) -> Peer {
    let kind = PeerKind::ALL[usize::try_from(n % 8).unwrap_or(0)];
    let id = i64::try_from(n % (1 << 40)).unwrap_or(0) * 7 + 1_000_000;
    let mut peer = Peer::new(id, kind, rng.i64()).with_min(n.is_multiple_of(13));
    if n.is_multiple_of(5) {
        peer = peer.with_usernames(vec![format!("user{n}"), format!("alias_{n}")]);
    }
    if n.is_multiple_of(7) {
        peer = peer.with_phone(Some(format!("+1555{n:07}")));
    }
    peer
}

/// A session with every field set and `peers` peers.
pub fn sample_session(peers: usize) -> SessionData {
    let mut rng = Rng::new(0x5EED);
    let mut s = SessionData::default();
    for change in sample_changes(&mut rng, 0) {
        s.apply(&change);
    }
    let n = u64::try_from(peers).unwrap_or(u64::MAX);
    s.peers = (0..n).map(|i| sample_peer(i, &mut rng)).collect();
    s
}

/// A scripted list of changes of every kind; `round` varies the values.
pub fn sample_changes(rng: &mut Rng, round: u64) -> Vec<Change> {
    let r = i32::try_from(round % 1000).unwrap_or(0);
    let base = (round % (1 << 40)) * 3;
    let v4: SocketAddr = SocketAddr::from(([149, 154, 167, 51], 443));
    let v6: SocketAddr = "[2001:67c:4e8:f002::a]:443".parse().unwrap_or(v4);
    let mut channels = std::collections::BTreeMap::new();
    channels.insert(1_234_567_890, 77 + r);
    let mut state = UpdateState::new(100 + r, 5, 1_700_000_000, 9);
    state.channels = channels;
    vec![
        Change::SetTestMode(round % 2 == 1),
        Change::SetApiId(Some(12345 + r)),
        Change::SetDc(DcOption::new(2, v4).with_auth_key(Some(sample_key(2))).with_salt(rng.i64(), -3)),
        Change::SetDc(DcOption::new(2, v6).with_salt(rng.i64(), 4)),
        Change::SetDc(
            DcOption::new(4, SocketAddr::from(([149, 154, 167, 92], 443)))
                .with_flags(DcFlags::MEDIA_ONLY.with(DcFlags::STATIC, true)),
        ),
        Change::SetAuthKey { dc_id: 5, key: Some(sample_key(5)) },
        Change::SetHomeDc(2),
        Change::SetUser(Some(SelfUser::new(111_222_333 + i64::from(r), round.is_multiple_of(3)))),
        Change::UpdateState(UpdateStateChange::All(state)),
        Change::UpdateState(UpdateStateChange::Primary { pts: 200 + r, date: 1_700_000_100, seq: 10 }),
        Change::UpdateState(UpdateStateChange::Secondary { qts: 6 + r }),
        Change::UpdateState(UpdateStateChange::Channel { id: 987_654, pts: 3 }),
        Change::UpsertPeer(sample_peer(base, rng)),
        Change::UpsertPeer(sample_peer(base + 1, rng)),
        Change::UpsertPeer(sample_peer(base + 2, rng)),
        Change::RemovePeer(sample_peer(base + 1, rng).key()),
        Change::SetMinContexts(vec![MinPeerContext::new(5, 6, 7 + r)]),
        Change::SetFutureAuthToken(Some(vec![1, 2, 3, u8::try_from(round % 256).unwrap_or(0)])),
        Change::SetAuthKey { dc_id: 5, key: None },
    ]
}

/// A backend that never saved anything loads `None`.
pub async fn empty_store_loads_none<H: Harness>(h: &H) {
    let b = fresh(h).await;
    assert!(load(&*b, "empty store").await.is_none(), "a fresh store must load None");
    let raw = ok(b.load().await, "load of an empty store");
    assert!(raw.is_none_or(|r| r.is_empty()), "a fresh store's raw load must be None or empty");
}

/// `save_session` then `load_session` (and raw `load`) give back the same session.
pub async fn save_load_round_trip<H: Harness>(h: &H) {
    let b = fresh(h).await;
    let data = sample_session(500);
    ok(b.save_session(&data).await, "save_session");
    assert_eq!(load(&*b, "round trip").await.as_ref(), Some(&data), "load_session after save_session differs");
    let raw = ok(b.load().await, "load").filter(|r| !r.is_empty());
    let raw = raw.unwrap_or_else(|| panic!("raw load returned nothing after a save"));
    let decoded = session_core::codec::decode(&raw).unwrap_or_else(|e| panic!("raw load does not decode: {e}"));
    assert_eq!(decoded, data, "raw bytes decode to a different session");
    let b = reopen(h, b).await;
    assert_eq!(load(&*b, "round trip after reopen").await.as_ref(), Some(&data), "reopened store differs");
}

/// A second save replaces the first completely (nothing of the first survives).
pub async fn save_replaces_everything<H: Harness>(h: &H) {
    let b = fresh(h).await;
    ok(b.save_session(&sample_session(300)).await, "first save");
    let mut second = SessionData::default();
    second.apply(&Change::SetHomeDc(4));
    second.apply(&Change::UpsertPeer(Peer::new(1, PeerKind::User, 42)));
    ok(b.save_session(&second).await, "second save");
    assert_eq!(load(&*b, "save replaces").await.as_ref(), Some(&second), "save must replace everything");
    let bytes = ok(session_core::codec::encode(&sample_session(3)).map_err(Into::into), "encode");
    ok(b.save(&bytes).await, "raw save");
    assert_eq!(load(&*b, "raw save").await, Some(sample_session(3)), "raw save then load_session differs");
}

/// `delete` makes `load` return `None`, also after reopening; deleting nothing is fine.
pub async fn delete_forgets<H: Harness>(h: &H) {
    let b = fresh(h).await;
    ok(b.delete().await, "delete of an empty store");
    ok(b.save_session(&sample_session(10)).await, "save");
    ok(b.delete().await, "delete");
    assert!(load(&*b, "after delete").await.is_none(), "load after delete must be None");
    let b = reopen(h, b).await;
    assert!(load(&*b, "after delete and reopen").await.is_none(), "a deleted session came back after reopen");
    ok(b.save_session(&sample_session(2)).await, "save after delete");
    assert_eq!(load(&*b, "save after delete").await, Some(sample_session(2)));
}

/// Persisting changes batch by batch gives the same session as saving the result in full,
/// before and after reopening, whatever session the backend started from.
pub async fn incremental_matches_full<H: Harness>(h: &H) {
    let b = fresh(h).await;
    let mut rng = Rng::new(7);
    let mut expected = SessionData::default();
    for round in 0..12 {
        let changes = sample_changes(&mut rng, round);
        // Uneven batches, including single changes and empty ones.
        for chunk in changes.chunks(usize::try_from(round % 5).unwrap_or(0) + 1) {
            expected.apply_all(chunk);
            ok(b.persist(chunk, &expected).await, "persist");
        }
        ok(b.persist(&[], &expected).await, "persist of nothing");
        if round == 5 {
            // Start over from a saved session in the middle of a run.
            expected = sample_session(50);
            ok(b.save_session(&expected).await, "save in the middle");
        }
    }
    assert_eq!(load(&*b, "incremental").await.as_ref(), Some(&expected), "incremental persist lost or changed data");
    let other = fresh(h).await;
    ok(other.save_session(&expected).await, "full save");
    assert_eq!(load(&*other, "full").await, load(&*b, "incremental").await, "incremental and full differ");
    let b = reopen(h, b).await;
    assert_eq!(load(&*b, "incremental after reopen").await.as_ref(), Some(&expected), "reopened store differs");
    // Appending after a reopen continues from the stored state.
    let more = sample_changes(&mut rng, 99);
    expected.apply_all(&more);
    ok(b.persist(&more, &expected).await, "persist after reopen");
    let b = reopen(h, b).await;
    assert_eq!(load(&*b, "persist after reopen").await.as_ref(), Some(&expected), "changes after reopen lost");
}

/// A persisted log out leaves an empty session (or none).
pub async fn log_out_resets<H: Harness>(h: &H) {
    let b = fresh(h).await;
    let mut data = sample_session(20);
    ok(b.save_session(&data).await, "save");
    data.apply(&Change::LogOut);
    ok(b.persist(&[Change::LogOut], &data).await, "persist log out");
    let b = reopen(h, b).await;
    let loaded = load(&*b, "log out").await.unwrap_or_default();
    assert!(loaded.is_empty(), "a logged-out session still holds data: home_dc {}", loaded.home_dc);
}

/// Through a [`SessionStore`]: a critical change is durable when `apply` returns, others when
/// `flush` returns, and a new backend over the same storage sees them all.
pub async fn reopen_sees_acknowledged_changes<H: Harness>(h: &H) {
    let b = fresh(h).await;
    let policy = FlushPolicy::new(std::time::Duration::from_secs(3600), usize::MAX);
    let store = open_store(Arc::clone(&b) as Arc<dyn SessionBackend>, policy).await;
    ok_store(store.apply(Change::SetAuthKey { dc_id: 2, key: Some(sample_key(9)) }).await, "critical apply");
    ok_store(store.apply(Change::SetHomeDc(2)).await, "critical apply");
    let critical_only = store.snapshot();
    // Not flushed: may or may not be durable, but the critical ones must be.
    ok_store(store.apply(Change::UpsertPeer(Peer::new(5, PeerKind::Bot, 55))).await, "apply");
    drop(store);
    let b = reopen(h, b).await;
    let loaded = load(&*b, "after critical changes").await.unwrap_or_default();
    assert_eq!(loaded.auth_key(2), critical_only.auth_key(2), "a critical change was not durable on return");
    assert_eq!(loaded.home_dc, 2, "the home DC change was not durable on return");

    let store = open_store(Arc::clone(&b) as Arc<dyn SessionBackend>, policy).await;
    for i in 0..100 {
        ok_store(store.apply(Change::UpsertPeer(Peer::new(i, PeerKind::User, i * 3))).await, "apply");
    }
    ok_store(store.flush().await, "flush");
    let flushed = store.snapshot();
    drop(store);
    let b = reopen(h, b).await;
    assert_eq!(load(&*b, "after flush").await.as_ref(), Some(&*flushed), "flushed changes were lost");
}

/// Many tasks applying and flushing at once through one store lose nothing.
pub async fn concurrent_flushes<H: Harness>(h: &H) {
    let b = fresh(h).await;
    let store = open_store(Arc::clone(&b) as Arc<dyn SessionBackend>, FlushPolicy::default()).await;
    let mut tasks = Vec::new();
    for t in 0..8i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..60i64 {
                let peer = Peer::new(t * 1000 + i, PeerKind::User, t ^ i);
                store.apply(Change::UpsertPeer(peer)).await?;
                if i % 10 == 9 {
                    store.flush().await?;
                }
                if i % 20 == 0 {
                    store
                        .apply(Change::UpdateState(UpdateStateChange::Channel {
                            id: t,
                            pts: i32::try_from(i).unwrap_or(0),
                        }))
                        .await?;
                }
            }
            Ok::<_, session_core::SessionError>(())
        }));
    }
    for t in tasks {
        match t.await {
            Ok(r) => ok_store(r, "concurrent task"),
            Err(e) => panic!("concurrent task panicked: {e}"),
        }
    }
    ok_store(store.close().await, "close");
    let expected = store.snapshot();
    assert_eq!(expected.peers.len(), 480, "store lost a change in memory");
    drop(store);
    let b = reopen(h, b).await;
    assert_eq!(load(&*b, "concurrent").await.as_ref(), Some(&*expected), "concurrent flushes lost changes");
}

/// A session with `n` peers survives a full save, and the same peers persisted as changes in one
/// batch, exactly (no count limit, no truncation).
pub async fn many_peers<H: Harness>(h: &H, n: usize) {
    let b = fresh(h).await;
    let data = sample_session(n);
    assert_eq!(data.peers.len(), n);
    ok(b.save_session(&data).await, "save of many peers");
    let b = reopen(h, b).await;
    let loaded = load(&*b, "many peers").await.unwrap_or_default();
    assert_eq!(loaded.peers.len(), n, "peer count changed in a full save");
    assert!(loaded == data, "a session of {n} peers did not round-trip exactly");

    let b2 = fresh(h).await;
    let mut rng = Rng::new(11);
    let mut expected = SessionData::default();
    let changes: Vec<Change> =
        (0..u64::try_from(n).unwrap_or(0)).map(|i| Change::UpsertPeer(sample_peer(i, &mut rng))).collect();
    expected.apply_all(&changes);
    ok(b2.persist(&changes, &expected).await, "persist of many peers");
    let b2 = reopen(h, b2).await;
    let loaded = load(&*b2, "many peers persisted").await.unwrap_or_default();
    assert_eq!(loaded.peers.len(), n, "peer count changed in an incremental persist");
    assert!(loaded == expected, "{n} peers persisted as changes did not round-trip exactly");
    let key = PeerKey::new(sample_peer(0, &mut Rng::new(0)).kind.class(), 1_000_000);
    assert!(loaded.peers.get(key).is_some(), "the first peer is missing");
}

async fn open_store(b: Arc<dyn SessionBackend>, policy: FlushPolicy) -> SessionStore {
    match SessionStore::open(b, policy).await {
        Ok(s) => s,
        Err(e) => panic!("SessionStore::open failed: {e}"),
    }
}

fn ok_store<T>(r: Result<T, session_core::SessionError>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what} failed: {e}"),
    }
}
