//! One owner per session on a real `redis-server`: racing opens, the fence that stops a
//! superseded owner, handover on close and drop, suspension while the server is frozen.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::time::{Duration, Instant};

use session_core::{
    Change, LeaseStatus, LeaseStore, Peer, PeerKind, SessionBackend, SessionData, SessionError, UpdateStateChange,
};
use session_redis::{RedisBackend, RedisLeases, RedisOptions};
use support::Redis;

fn kind(e: session_core::BoxError) -> SessionError {
    SessionError::from_boxed(e, "redis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backends_racing_for_one_session_get_one_owner() {
    let redis = Redis::durable();
    let url = redis.url();
    for round in 0..20 {
        let name = format!("race{round}");
        let (a, b) = tokio::join!(RedisBackend::open_named(&url, &name), RedisBackend::open_named(&url, &name));
        let (owner, refused) = match (a, b) {
            (Ok(o), Err(e)) | (Err(e), Ok(o)) => (o, e),
            (Ok(_), Ok(_)) => panic!("round {round}: both backends own the session"),
            (Err(a), Err(b)) => panic!("round {round}: nobody owns the session: {a} / {b}"),
        };
        match &refused {
            SessionError::Locked { holder: Some(h), expires_in: Some(left), .. } => {
                assert_eq!(h, owner.lease_handle().holder(), "Locked names another holder");
                assert!(*left <= Duration::from_secs(30), "{left:?}");
            }
            other => panic!("round {round}: the loser got {other:?}"),
        }
        assert!(refused.to_string().contains(&owner.lease_handle().holder().instance), "{refused}");
        owner.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_owner_writes_nothing_and_gets_lease_lost() {
    let redis = Redis::durable();
    let url = redis.url();
    let old = RedisBackend::open_named(&url, "acct").await.unwrap();
    let mut data = SessionData::default();
    data.apply(&Change::SetHomeDc(2));
    data.apply(&Change::UpsertPeer(Peer::new(1, PeerKind::User, 11)));
    old.save_session(&data).await.unwrap();

    // The old owner pauses (its keeper does not run); its lease ends and a new owner takes over.
    // The takeover is made on the lease itself, as an expiry would: the old owner still believes
    // it holds the lease, so only the server-side fence can stop it.
    let token = old.lease_handle().token();
    RedisLeases::new(&url, "acct", &RedisOptions::new()).unwrap().release(token).await.unwrap();
    let new = RedisBackend::open_named(&url, "acct").await.unwrap();
    assert!(new.lease_handle().token() > token);
    let mut current = new.load_session().await.unwrap().unwrap();
    current.apply(&Change::UpsertPeer(Peer::new(2, PeerKind::Bot, 22)));
    new.save_session(&current).await.unwrap();
    assert!(old.lease_handle().fence().is_ok(), "the old owner should not know yet");

    // Every kind of write of the old owner is refused by the script and changes nothing.
    let mut stale = data.clone();
    let change = Change::UpsertPeer(Peer::new(3, PeerKind::User, 33));
    stale.apply(&change);
    let e = kind(old.persist(std::slice::from_ref(&change), &stale).await.unwrap_err());
    assert!(matches!(e, SessionError::LeaseLost { .. }), "{e:?}");
    assert!(matches!(old.lease_handle().status(), LeaseStatus::Lost { .. }));
    assert!(matches!(kind(old.save_session(&stale).await.unwrap_err()), SessionError::LeaseLost { .. }));
    assert!(matches!(kind(old.delete().await.unwrap_err()), SessionError::LeaseLost { .. }));
    let persisted = [Change::UpdateState(UpdateStateChange::Channel { id: 9, pts: 9 })];
    assert!(matches!(kind(old.persist(&persisted, &stale).await.unwrap_err()), SessionError::LeaseLost { .. }));
    assert_eq!(new.load_session().await.unwrap().as_ref(), Some(&current), "the superseded owner changed the session");
    assert!(new.lease_handle().fence().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_and_drop_hand_over_at_once() {
    let redis = Redis::durable();
    let url = redis.url();
    for graceful in [true, false] {
        let name = format!("handover-{graceful}");
        let first = RedisBackend::open_named(&url, &name).await.unwrap();
        let waiting = {
            let (url, name) = (url.clone(), name.clone());
            tokio::spawn(async move {
                let opts = RedisOptions::new().session(name).wait_for_owner(Duration::from_secs(20));
                let b = opts.open(&url).await;
                (b, Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let released = Instant::now();
        if graceful {
            first.close().await.unwrap();
            assert!(matches!(kind(first.delete().await.unwrap_err()), SessionError::LeaseLost { .. }));
        } else {
            drop(first);
        }
        let (second, owned_at) = waiting.await.unwrap();
        let second = second.unwrap();
        let waited = owned_at - released;
        eprintln!("handover ({}) in {waited:?}", if graceful { "close" } else { "drop" });
        assert!(waited < Duration::from_secs(1), "the next owner waited {waited:?}");
        second.close().await.unwrap();
    }
}

/// `SessionStore::close` (and any caller holding a `dyn SessionBackend`) releases through the
/// trait's `close`: the lease is free at once, so the next owner opens without waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trait_close_of_a_store_hands_over_at_once() {
    let redis = Redis::durable();
    let url = redis.url();
    let first = RedisBackend::open_named(&url, "store-close").await.unwrap();
    let store = session_core::SessionStore::open_default(first).await.unwrap();
    store.apply(Change::SetHomeDc(2)).await.unwrap();
    store.close().await.unwrap();
    let second = RedisBackend::open_named(&url, "store-close").await.unwrap();
    assert_eq!(second.load_session().await.unwrap().map(|d| d.home_dc), Some(2));
    let dyn_backend: Box<dyn SessionBackend> = Box::new(second);
    dyn_backend.close().await.unwrap();
    RedisBackend::open_named(&url, "store-close").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_suspends_the_lease_before_it_could_expire() {
    let redis = Redis::durable();
    let ttl = Duration::from_millis(1500);
    let b =
        RedisOptions::new().lease_ttl(ttl).call_timeout(Duration::from_millis(200)).open(&redis.url()).await.unwrap();
    let mut watch = b.lease().unwrap();
    let valid_until = match b.lease_handle().status() {
        LeaseStatus::Held { valid_until, .. } => valid_until,
        s => panic!("{s:?}"),
    };
    redis.signal("STOP");
    tokio::time::timeout(ttl * 2, watch.wait_for(|s| matches!(s, LeaseStatus::Suspended { .. })))
        .await
        .expect("suspended in time")
        .unwrap();
    let suspended_at = Instant::now();
    assert!(suspended_at < valid_until + ttl, "suspended too late");
    let e = kind(b.save_session(&SessionData::default()).await.unwrap_err());
    assert!(matches!(e, SessionError::LeaseLost { .. }), "a write while suspended: {e:?}");
    redis.signal("CONT");
    tokio::time::timeout(ttl * 4, watch.wait_for(|s| matches!(s, LeaseStatus::Held { .. })))
        .await
        .expect("held again")
        .unwrap();
    b.save_session(&SessionData::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_sessions_are_independent() {
    let redis = Redis::durable();
    let url = redis.url();
    let mut backends = Vec::new();
    for i in 0..5i64 {
        let b = RedisBackend::open_named(&url, &format!("acct-{i}")).await.unwrap();
        let mut data = SessionData::default();
        data.apply(&Change::SetHomeDc(i32::try_from(i).unwrap() + 1));
        data.apply(&Change::UpsertPeer(Peer::new(i, PeerKind::User, i * 10)));
        b.save_session(&data).await.unwrap();
        backends.push((b, data));
    }
    let default = RedisBackend::open(&url).await.unwrap();
    assert!(default.load_session().await.unwrap().is_none(), "the default session sees another's data");
    for (b, data) in &backends {
        assert_eq!(b.load_session().await.unwrap().as_ref(), Some(data));
    }
    // The lease of one session is not the lease of another.
    let other = RedisLeases::new(&url, "acct-0", &RedisOptions::new()).unwrap();
    assert!(matches!(
        other.acquire(&session_core::LeaseHolder::current(), Duration::from_secs(5)).await,
        Err(SessionError::Locked { .. })
    ));
}
