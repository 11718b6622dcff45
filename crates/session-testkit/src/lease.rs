//! Lease conformance: checks a [`LeaseStore`] against the contract of `session_core::lease`.
//!
//! Give [`run_lease_checks`] a function that opens a new handle (a new connection, as another
//! process would) on one fresh session each time it is called with the same `session` name, and
//! on a different session for a different name. Times are short (a few hundred milliseconds), so
//! the store's clock must have millisecond resolution.
//!
//! Batch renewal ([`LeaseStore::renew_many`]) is checked for every store: one that keeps the
//! default (one `renew` per lease, no [`LeaseStore::batch`] group) and one that renews a whole
//! group in one request must both renew every current lease and report exactly the ones taken
//! over as lost, also through [`Lease`]'s background renewal.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::{Lease, LeaseHolder, LeaseOptions, LeaseStatus, LeaseStore, Renewal, SessionError};

/// The time to live the checks give leases that must expire.
pub const SHORT_TTL: Duration = Duration::from_millis(400);
/// The time to live the checks give leases that must not expire during a check.
pub const LONG_TTL: Duration = Duration::from_secs(60);

fn holder(n: u32) -> LeaseHolder {
    let mut h = LeaseHolder::current();
    h.instance = format!("testkit-{n}-{}", h.instance);
    h
}

/// Runs every lease check. `open(session)` returns a new handle on the lease of `session`; each
/// check uses session names of its own (prefixed with `prefix`, so a suite can run twice on one
/// store).
pub async fn run_lease_checks<F, Fut, S>(prefix: &str, open: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Arc<S>>,
    S: LeaseStore + ?Sized,
{
    let name = |n: &str| format!("{prefix}{n}");
    exclusive_and_named(open(name("exclusive")).await, open(name("exclusive")).await).await;
    release_hands_over(open(name("release")).await, open(name("release")).await).await;
    expiry_allows_takeover(open(name("expiry")).await, open(name("expiry")).await).await;
    renew_extends(open(name("renew")).await, open(name("renew")).await).await;
    let mut racers = Vec::new();
    for _ in 0..8 {
        racers.push(open(name("race")).await);
    }
    racing_acquires_have_one_winner(racers).await;
    sessions_are_independent(open(name("one")).await, open(name("two")).await).await;
    let mut batch = Vec::new();
    for i in 0..BATCH {
        batch.push(open(name(&format!("batch-{i}"))).await);
    }
    renew_many_renews_each_and_loses_only_the_taken(&batch).await;
    let mut kept = Vec::new();
    for i in 0..BATCH {
        kept.push(open(name(&format!("kept-{i}"))).await);
    }
    background_renewal_loses_only_the_taken(&kept).await;
}

/// How many sessions the batch checks use.
pub const BATCH: usize = 5;

/// The renewal of `store`'s own lease in a [`LeaseStore::renew_many`] call.
fn renewal<S: LeaseStore + ?Sized>(store: &S, token: u64) -> Renewal {
    Renewal { session: store.batch().map(|b| b.session).unwrap_or_default(), token }
}

/// Renews the leases of `handles` (one session each) as `Lease`'s renewer would: all in one
/// `renew_many` when they form one batch group, else one `renew_many` each (the default loop).
async fn renew_all<S: LeaseStore + ?Sized>(
    handles: &[Arc<S>],
    tokens: &[u64],
    ttl: Duration,
) -> Vec<Result<session_core::LeaseGrant, SessionError>> {
    let groups: Vec<_> = handles.iter().map(|h| h.batch()).collect();
    let one_group = groups[0].is_some()
        && groups.iter().all(|g| g.as_ref().map(|g| &g.group) == groups[0].as_ref().map(|g| &g.group));
    if one_group {
        let renewals: Vec<Renewal> = handles.iter().zip(tokens).map(|(h, t)| renewal(&**h, *t)).collect();
        let out = handles[0].renew_many(&renewals, ttl).await.expect("renew_many: the request failed");
        assert_eq!(out.len(), renewals.len(), "renew_many answered {} of {} renewals", out.len(), renewals.len());
        out
    } else {
        let mut out = Vec::new();
        for (h, t) in handles.iter().zip(tokens) {
            let mut one = h.renew_many(&[renewal(&**h, *t)], ttl).await.expect("renew_many: the request failed");
            assert_eq!(one.len(), 1, "renew_many answered {} results for one renewal", one.len());
            out.push(one.remove(0));
        }
        out
    }
}

/// `renew_many` renews every current lease with its own token; after one session is taken over,
/// exactly that one is `LeaseLost` and the others are still renewed.
pub async fn renew_many_renews_each_and_loses_only_the_taken<S: LeaseStore + ?Sized>(handles: &[Arc<S>]) {
    let mut tokens = Vec::new();
    for (i, h) in handles.iter().enumerate() {
        tokens.push(h.acquire(&holder(u32::try_from(i).unwrap_or(0)), LONG_TTL).await.expect("acquire").token);
    }
    for (i, r) in renew_all(handles, &tokens, LONG_TTL).await.into_iter().enumerate() {
        let g = r.unwrap_or_else(|e| panic!("batch renewal of a current lease (session {i}) failed: {e:?}"));
        assert_eq!(g.token, tokens[i], "batch renewal changed session {i}'s token");
    }
    // Session 1 changes hands (released behind its owner's back, taken by another).
    let taken = 1;
    handles[taken].release(tokens[taken]).await.expect("release");
    let thief = handles[taken].acquire(&holder(99), LONG_TTL).await.expect("takeover");
    for (i, r) in renew_all(handles, &tokens, LONG_TTL).await.into_iter().enumerate() {
        if i == taken {
            assert!(matches!(r, Err(SessionError::LeaseLost { .. })), "a batch renewed a lease taken over: {r:?}");
        } else {
            assert!(r.is_ok(), "session {i} was not renewed in a batch beside a lost lease: {r:?}");
        }
    }
    // The stale renewal did not extend the new owner's lease past its own, nor end it.
    assert!(matches!(handles[taken].acquire(&holder(100), LONG_TTL).await, Err(SessionError::Locked { .. })));
    handles[taken].release(thief.token).await.expect("release");
    for (i, h) in handles.iter().enumerate() {
        if i != taken {
            h.release(tokens[i]).await.expect("release");
        }
    }
}

/// Leases kept by [`Lease`] (the shared renewer when the store batches) outlive their time to
/// live; one taken over is `Lost` and the others stay held.
pub async fn background_renewal_loses_only_the_taken<S: LeaseStore + ?Sized>(handles: &[Arc<S>]) {
    let ttl = Duration::from_millis(1200);
    let options = LeaseOptions::default().with_ttl(ttl);
    let mut leases = Vec::new();
    for h in handles {
        let store: Arc<dyn LeaseStore> = Arc::new(Handle(h.clone()));
        leases.push(Lease::acquire(store, options).await.expect("acquire"));
    }
    tokio::time::sleep(ttl * 2).await;
    for (i, l) in leases.iter().enumerate() {
        assert!(l.fence().is_ok(), "session {i} was not renewed past its time to live: {:?}", l.status());
    }
    let taken = 2;
    handles[taken].release(leases[taken].token()).await.expect("release");
    let thief = handles[taken].acquire(&holder(99), LONG_TTL).await.expect("takeover");
    let mut watch = leases[taken].watch();
    tokio::time::timeout(ttl * 2, watch.wait_for(|s| matches!(s, LeaseStatus::Lost { .. })))
        .await
        .expect("the lease taken over was not reported Lost within two times to live")
        .expect("watch");
    tokio::time::sleep(ttl).await;
    for (i, l) in leases.iter().enumerate() {
        if i != taken {
            assert!(l.fence().is_ok(), "session {i} lost its lease with another one of its batch: {:?}", l.status());
        }
    }
    handles[taken].release(thief.token).await.expect("release");
    for l in &leases {
        l.release().await.expect("release");
    }
}

/// A handle as a `dyn LeaseStore` (the checks take `?Sized` stores).
struct Handle<S: ?Sized>(Arc<S>);

#[session_core::async_trait]
impl<S: LeaseStore + ?Sized> LeaseStore for Handle<S> {
    fn resource(&self) -> String {
        self.0.resource()
    }
    async fn acquire(&self, holder: &LeaseHolder, ttl: Duration) -> Result<session_core::LeaseGrant, SessionError> {
        self.0.acquire(holder, ttl).await
    }
    async fn renew(&self, token: u64, ttl: Duration) -> Result<session_core::LeaseGrant, SessionError> {
        self.0.renew(token, ttl).await
    }
    async fn release(&self, token: u64) -> Result<(), SessionError> {
        self.0.release(token).await
    }
    fn batch(&self) -> Option<session_core::LeaseBatch> {
        self.0.batch()
    }
    async fn renew_many(
        &self,
        renewals: &[Renewal],
        ttl: Duration,
    ) -> Result<Vec<Result<session_core::LeaseGrant, SessionError>>, SessionError> {
        self.0.renew_many(renewals, ttl).await
    }
}

/// A held lease refuses a second owner with `Locked`, naming the holder and the time left.
pub async fn exclusive_and_named<S: LeaseStore + ?Sized>(a: Arc<S>, b: Arc<S>) {
    let (ha, hb) = (holder(1), holder(2));
    let grant = a.acquire(&ha, LONG_TTL).await.expect("first acquire");
    assert!(grant.token >= 1, "tokens start at 1: {}", grant.token);
    match b.acquire(&hb, LONG_TTL).await {
        Err(SessionError::Locked { holder: Some(h), expires_in: Some(left), .. }) => {
            assert_eq!(h, ha, "Locked names the holder");
            assert!(left <= LONG_TTL && left > LONG_TTL / 2, "time left {left:?}");
        }
        other => panic!("a held lease was not refused with Locked naming the holder: {other:?}"),
    }
    // The holder itself is refused too: one owner means one ownership, not one machine.
    assert!(matches!(a.acquire(&ha, LONG_TTL).await, Err(SessionError::Locked { .. })));
    a.release(grant.token).await.expect("release");
}

/// Release ends the lease at once; the next owner's token is larger; the old token can neither
/// renew nor release the new lease.
pub async fn release_hands_over<S: LeaseStore + ?Sized>(a: Arc<S>, b: Arc<S>) {
    let first = a.acquire(&holder(1), LONG_TTL).await.expect("acquire");
    a.release(first.token).await.expect("release");
    let second = b.acquire(&holder(2), LONG_TTL).await.expect("acquire after release");
    assert!(second.token > first.token, "token {} after {}", second.token, first.token);
    assert!(matches!(a.renew(first.token, LONG_TTL).await, Err(SessionError::LeaseLost { .. })));
    a.release(first.token).await.expect("a stale release is a no-op");
    assert!(
        matches!(a.acquire(&holder(3), LONG_TTL).await, Err(SessionError::Locked { .. })),
        "a stale release ended the new owner's lease"
    );
    b.release(second.token).await.expect("release");
}

/// An expired lease is taken over with a larger token, by the store's clock; the old owner's
/// renewal is then `LeaseLost`.
pub async fn expiry_allows_takeover<S: LeaseStore + ?Sized>(a: Arc<S>, b: Arc<S>) {
    let first = a.acquire(&holder(1), SHORT_TTL).await.expect("acquire");
    assert!(matches!(b.acquire(&holder(2), LONG_TTL).await, Err(SessionError::Locked { .. })));
    tokio::time::sleep(SHORT_TTL + Duration::from_millis(300)).await;
    let second = b.acquire(&holder(2), LONG_TTL).await.expect("takeover after expiry");
    assert!(second.token > first.token);
    match a.renew(first.token, LONG_TTL).await {
        Err(SessionError::LeaseLost { .. }) => {}
        other => panic!("the old owner renewed a lease taken over: {other:?}"),
    }
    b.release(second.token).await.expect("release");
}

/// Renewal keeps a lease past its first time to live, and an expired lease nobody took is
/// renewed with the same token.
pub async fn renew_extends<S: LeaseStore + ?Sized>(a: Arc<S>, b: Arc<S>) {
    let grant = a.acquire(&holder(1), SHORT_TTL).await.expect("acquire");
    let until = Instant::now() + SHORT_TTL * 3;
    while Instant::now() < until {
        tokio::time::sleep(SHORT_TTL / 4).await;
        let renewed = a.renew(grant.token, SHORT_TTL).await.expect("renew");
        assert_eq!(renewed.token, grant.token, "renewal changed the token");
        assert!(
            matches!(b.acquire(&holder(2), SHORT_TTL).await, Err(SessionError::Locked { .. })),
            "a renewed lease was taken"
        );
    }
    tokio::time::sleep(SHORT_TTL + Duration::from_millis(200)).await;
    let late = a.renew(grant.token, LONG_TTL).await.expect("renewing an expired lease nobody took");
    assert_eq!(late.token, grant.token);
    assert!(matches!(b.acquire(&holder(2), LONG_TTL).await, Err(SessionError::Locked { .. })));
    a.release(grant.token).await.expect("release");
}

/// Handles racing to acquire one free lease: exactly one wins.
pub async fn racing_acquires_have_one_winner<S: LeaseStore + ?Sized>(handles: Vec<Arc<S>>) {
    let mut set = Vec::new();
    for (i, h) in handles.iter().enumerate() {
        let holder = holder(u32::try_from(i).unwrap_or(u32::MAX));
        set.push(async move { h.acquire(&holder, LONG_TTL).await });
    }
    let results = futures_join_all(set).await;
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "racing acquires: {results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(matches!(e, SessionError::Locked { .. }), "a loser got {e:?}");
        }
    }
    handles[0].release(winners[0].token).await.expect("release");
}

/// Two sessions of one store have their own leases.
pub async fn sessions_are_independent<S: LeaseStore + ?Sized>(one: Arc<S>, two: Arc<S>) {
    let a = one.acquire(&holder(1), LONG_TTL).await.expect("one");
    let b = two.acquire(&holder(2), LONG_TTL).await.expect("two: another session's lease blocked it");
    one.release(a.token).await.expect("release");
    two.release(b.token).await.expect("release");
}

/// Polls every future concurrently (they start together), in order of the input.
async fn futures_join_all<T, F: Future<Output = T>>(futs: Vec<F>) -> Vec<T> {
    let mut pinned: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<T>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, fut) in out.iter_mut().zip(pinned.iter_mut()) {
            if slot.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
