//! A million cached peers round-trip exactly through a real `redis-server`: saved in full, and
//! persisted as one batch of a million changes (the testkit's `many_peers`).

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::BoxError;
use session_redis::{RedisBackend, RedisOptions};
use session_testkit::Harness;
use support::Redis;

struct Sessions {
    redis: Redis,
    next: AtomicUsize,
}

impl Sessions {
    fn options(name: &str) -> RedisOptions {
        RedisOptions::new().session(name).call_timeout(Duration::from_secs(60)).wait_for_owner(Duration::from_secs(5))
    }
}

#[session_core::async_trait]
impl Harness for Sessions {
    type Backend = RedisBackend;

    async fn fresh(&self) -> Result<RedisBackend, BoxError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(Self::options(&format!("m{n}")).open(&self.redis.url()).await?)
    }

    async fn reopen(&self, old: Arc<RedisBackend>) -> Result<Arc<RedisBackend>, BoxError> {
        let name = old.session().to_owned();
        drop(old);
        Ok(Arc::new(Self::options(&name).open(&self.redis.url()).await?))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_peers_round_trip() {
    let h = Sessions { redis: Redis::durable(), next: AtomicUsize::new(0) };
    let started = Instant::now();
    session_testkit::many_peers(&h, 1_000_000).await;
    eprintln!(
        "1,000,000 peers (full save + load, one batch of a million changes + load) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
