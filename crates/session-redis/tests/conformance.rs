//! The session-testkit conformance suite, the million-peer round trip and the lease checks, on a
//! real `redis-server` (one per test, many named sessions in it).

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::{BoxError, Change, Peer, PeerKind, SessionBackend};
use session_redis::{RedisBackend, RedisLeases, RedisOptions};
use session_testkit::{run_all, Harness};
use support::Redis;

/// Each fresh backend is a new named session of one server; reopening drops the old backend
/// (which releases its lease) and opens the same session again.
struct Sessions {
    redis: Redis,
    next: AtomicUsize,
    timeout: Duration,
}

impl Sessions {
    fn new(timeout: Duration) -> Self {
        Sessions { redis: Redis::durable(), next: AtomicUsize::new(0), timeout }
    }
    fn options(&self, name: &str) -> RedisOptions {
        RedisOptions::new().session(name).call_timeout(self.timeout).wait_for_owner(Duration::from_secs(5))
    }
}

#[session_core::async_trait]
impl Harness for Sessions {
    type Backend = RedisBackend;

    async fn fresh(&self) -> Result<RedisBackend, BoxError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(self.options(&format!("s{n}")).open(&self.redis.url()).await?)
    }

    async fn reopen(&self, old: Arc<RedisBackend>) -> Result<Arc<RedisBackend>, BoxError> {
        let name = old.session().to_owned();
        drop(old);
        Ok(Arc::new(self.options(&name).open(&self.redis.url()).await?))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_passes_the_suite() {
    run_all(&Sessions::new(Duration::from_secs(10))).await;
}

/// One new peer costs the same beside 1,000 peers as beside 100,000: it rewrites one bucket, not
/// the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_change_is_flat_in_the_session_size() {
    let h = Sessions::new(Duration::from_secs(60));
    let mut medians = Vec::new();
    for n in [1_000usize, 100_000] {
        let b = h.fresh().await.unwrap();
        let mut data = session_testkit::sample_session(n);
        b.save_session(&data).await.unwrap();
        let mut times = Vec::new();
        for i in 0..21i64 {
            let change = Change::UpsertPeer(Peer::new(5_000_000_000 + i, PeerKind::User, i));
            data.apply(&change);
            let t = Instant::now();
            b.persist(std::slice::from_ref(&change), &data).await.unwrap();
            times.push(t.elapsed());
        }
        times.sort();
        medians.push(times[10]);
        let t = Instant::now();
        let loaded = b.load_session().await.unwrap();
        eprintln!("load of {n} peers: {:?}", t.elapsed());
        assert!(loaded.as_ref() == Some(&data), "{n} peers and 21 more did not round-trip");
    }
    eprintln!("one new peer: {:?} beside 1,000 peers, {:?} beside 100,000", medians[0], medians[1]);
    assert!(medians[1] < Duration::from_millis(50), "one change beside 100,000 peers took {:?}", medians[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_leases_conform() {
    let redis = Redis::durable();
    let url = redis.url();
    session_testkit::lease::run_lease_checks("r-", |name| {
        let handle = Arc::new(RedisLeases::new(&url, &name, &RedisOptions::new()).unwrap());
        async move { handle }
    })
    .await;
}

/// A batch too large for one `HSET` (staged in the scratch hash, committed by `RENAME`) merges
/// into a stored session: what it removes is gone, what it leaves is kept, and a small batch
/// after it still applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_merges_into_a_stored_session() {
    let h = Sessions::new(Duration::from_secs(30));
    let b = h.fresh().await.unwrap();
    let mut data = session_testkit::sample_session(50);
    b.save_session(&data).await.unwrap();
    let old: Vec<_> = data.peers.iter().map(|p| p.key()).take(3).collect();
    let mut changes: Vec<Change> =
        (0..8_000i64).map(|i| Change::UpsertPeer(Peer::new(7_000_000 + i, PeerKind::Bot, -i))).collect();
    changes.extend(old.iter().map(|k| Change::RemovePeer(*k)));
    changes.push(Change::UpdateState(session_core::UpdateStateChange::RemoveChannel { id: 1 }));
    data.apply_all(&changes);
    b.persist(&changes, &data).await.unwrap();
    let small = [Change::SetHomeDc(5)];
    data.apply_all(&small);
    b.persist(&small, &data).await.unwrap();
    let b = h.reopen(Arc::new(b)).await.unwrap();
    assert!(b.load_session().await.unwrap().as_ref() == Some(&data), "a large batch did not merge exactly");
}
