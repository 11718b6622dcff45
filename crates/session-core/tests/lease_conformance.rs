//! The in-memory lease store, the reference implementation, passes the lease conformance checks
//! (which also shows the checks themselves run to the end on a correct store).

use std::sync::Arc;

use session_core::MemoryLeases;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_leases_conform() {
    let leases = MemoryLeases::new();
    session_testkit::lease::run_lease_checks("m-", |name| {
        let handle = Arc::new(leases.session(&name));
        async move { handle }
    })
    .await;
}

/// The same store without its batch (the default `renew_many`, one `renew` per lease, and a
/// keeper per lease) passes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_leases_without_batch_conform() {
    let leases = MemoryLeases::new();
    session_testkit::lease::run_lease_checks("n-", |name| {
        let handle = Arc::new(Faulty { inner: leases.session(&name), fault: Fault::None, last: Default::default() });
        async move { handle }
    })
    .await;
}

/// Stores that break one rule each: the checks must catch every one.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Grants a held lease.
    DoubleGrant,
    /// Lets a stale token renew.
    StaleRenew,
    /// Lets a stale token release the new owner's lease.
    StaleRelease,
    /// Hands the same token to the next owner.
    SameToken,
    /// Batches, and its batch renews every token it is given, current or not.
    BatchRenewsStale,
    /// Batches, and its batch reports every lease lost when one is.
    BatchLosesAll,
    /// None: a correct store without a batch.
    None,
}

struct Faulty {
    inner: MemoryLeases,
    fault: Fault,
    /// The last token granted through any handle of this store.
    last: Arc<std::sync::Mutex<u64>>,
}

#[session_core::async_trait]
impl session_core::LeaseStore for Faulty {
    fn resource(&self) -> String {
        self.inner.resource()
    }
    async fn acquire(
        &self,
        holder: &session_core::LeaseHolder,
        ttl: std::time::Duration,
    ) -> Result<session_core::LeaseGrant, session_core::SessionError> {
        let result = match self.inner.acquire(holder, ttl).await {
            Err(session_core::SessionError::Locked { .. }) if matches!(self.fault, Fault::DoubleGrant) => {
                Ok(session_core::LeaseGrant { token: 1, ttl })
            }
            r => r,
        };
        let mut last = self.last.lock().expect("lock");
        result.map(|mut g| {
            if matches!(self.fault, Fault::SameToken) && *last != 0 {
                g.token = *last;
            }
            *last = g.token;
            g
        })
    }
    async fn renew(
        &self,
        token: u64,
        ttl: std::time::Duration,
    ) -> Result<session_core::LeaseGrant, session_core::SessionError> {
        match self.inner.renew(token, ttl).await {
            Err(_) if matches!(self.fault, Fault::StaleRenew) => Ok(session_core::LeaseGrant { token, ttl }),
            r => r,
        }
    }
    fn batch(&self) -> Option<session_core::LeaseBatch> {
        match self.fault {
            Fault::BatchRenewsStale | Fault::BatchLosesAll => self.inner.batch(),
            _ => None,
        }
    }
    async fn renew_many(
        &self,
        renewals: &[session_core::Renewal],
        ttl: std::time::Duration,
    ) -> Result<Vec<Result<session_core::LeaseGrant, session_core::SessionError>>, session_core::SessionError> {
        if self.batch().is_none() {
            // As the default: this store's own session, one renewal at a time.
            let mut out = Vec::new();
            for r in renewals {
                out.push(self.renew(r.token, ttl).await);
            }
            return Ok(out);
        }
        let answers = self.inner.renew_many(renewals, ttl).await?;
        Ok(match self.fault {
            Fault::BatchRenewsStale => {
                renewals.iter().map(|r| Ok(session_core::LeaseGrant { token: r.token, ttl })).collect()
            }
            Fault::BatchLosesAll if answers.iter().any(Result::is_err) => renewals
                .iter()
                .map(|_| Err(session_core::SessionError::LeaseLost { resource: self.resource(), reason: "all".into() }))
                .collect(),
            _ => answers,
        })
    }
    async fn release(&self, token: u64) -> Result<(), session_core::SessionError> {
        if matches!(self.fault, Fault::StaleRelease) {
            let current = *self.last.lock().expect("lock");
            return self.inner.release(current).await;
        }
        self.inner.release(token).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checks_catch_broken_stores() {
    for fault in [
        Fault::DoubleGrant,
        Fault::StaleRenew,
        Fault::StaleRelease,
        Fault::SameToken,
        Fault::BatchRenewsStale,
        Fault::BatchLosesAll,
    ] {
        let run = tokio::spawn(async move {
            let leases = MemoryLeases::new();
            let last = Arc::new(std::sync::Mutex::new(0u64));
            session_testkit::lease::run_lease_checks("f-", move |name| {
                let handle = Arc::new(Faulty { inner: leases.session(&name), fault, last: last.clone() });
                async move { handle }
            })
            .await;
        });
        let outcome = run.await;
        assert!(outcome.as_ref().is_err_and(|e| e.is_panic()), "the lease checks passed a store with fault {fault:?}");
    }
}
