//! Lease conformance: checks a [`LeaseStore`] against the contract of `session_core::lease`.
//!
//! Give [`run_lease_checks`] a function that opens a new handle (a new connection, as another
//! process would) on one fresh session each time it is called with the same `session` name, and
//! on a different session for a different name. Times are short (a few hundred milliseconds), so
//! the store's clock must have millisecond resolution.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::{LeaseHolder, LeaseStore, SessionError};

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
