//! Leases: one owner per session wherever it is stored, with fencing.
//!
//! A lock on a file works on one machine. A session kept in a server (libSQL, PostgreSQL, Redis)
//! is reachable from many: a pod and a laptop, the old and the new container of a rolling
//! deploy. Two of them using one auth key at once make Telegram revoke it
//! (`AUTH_KEY_DUPLICATED`). A lease gives the session one owner at a time:
//!
//! - **Acquire** with a time to live. The store keeps, per session, the holder, the time the
//!   lease expires (by the *store's* clock, never a client's) and a **fencing token** that
//!   increases every time a new owner takes the lease. A held lease is refused with
//!   [`SessionError::Locked`] naming the holder and when its lease expires.
//! - **Renew** before it expires (the [`Lease`] keeper does it in the background at a third of
//!   the time to live). A renewal whose token is no longer current (someone took over after the
//!   lease expired) is [`SessionError::LeaseLost`].
//! - **Fence every write**: a backend passes [`Lease::fence`]'s token into the write
//!   transaction itself, which checks it against the store's current token and writes nothing if
//!   it changed. A paused or partitioned owner that lost its lease cannot change one row after
//!   the takeover, whatever its local clock says.
//! - **Stop before expiry**: when renewals cannot reach the store, the keeper marks the lease
//!   [`LeaseStatus::Suspended`] before the store could consider it expired; writes are refused
//!   and a client stops using the key until a renewal succeeds again (same token: nothing
//!   happened) or fails for good ([`LeaseStatus::Lost`]).
//! - **Release** on close, so a waiting owner takes over at once instead of after the time to
//!   live.
//!
//! A backend implements [`LeaseStore`] (three small operations, usually one statement each) and
//! gets the keeper, the fence and the status watch from [`Lease`]. `session-testkit` checks a
//! `LeaseStore` against this contract.
//!
//! # Many sessions, one request per renewal
//!
//! A process may own many sessions of one database (a bot fleet: 1,000 accounts). Renewing each
//! lease on its own would send one request per session every renewal interval. A store that can
//! renew several leases at once says so with [`LeaseStore::batch`] (which database it reaches,
//! and which session it is in there) and implements [`LeaseStore::renew_many`] (one statement for
//! all of them); the leases of one group then share one renewer in this process, and each
//! renewal interval costs one request for the whole group. A lease that the store refuses in the
//! batch (taken over after it expired) is lost alone; the others stay held. A store without
//! `batch` keeps one keeper per lease, as before.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::SessionError;
pub use crate::holder::LeaseHolder;

/// The default time to live of a lease: after a crash, the next owner waits at most this long.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// What a store answered to an acquire or a renewal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseGrant {
    /// The fencing token of this ownership: larger than every token before it for this session.
    pub token: u64,
    /// How long the lease holds from the store's point of view, counted from when the store
    /// executed the request (by its own clock).
    pub ttl: Duration,
}

/// The three operations a store offers for leases. One lease per session; the implementation
/// knows which session it addresses.
///
/// Rules (the `session-testkit` lease checks test each):
/// - `acquire` succeeds when no lease is held or the held one has expired by the store's clock
///   or was released; the new token is larger than every earlier token of this session. It is
///   one conditional operation (a transaction, a script): two racing acquires never both win.
///   When the lease is held it fails with [`SessionError::Locked`] carrying the holder and the
///   time left.
/// - `renew(token)` extends the lease when `token` is still the current one (even if it expired
///   meanwhile, as long as nobody took over), else [`SessionError::LeaseLost`].
/// - `release(token)` ends the lease at once when `token` is current; otherwise it does nothing.
/// - An unreachable store is [`SessionError::Unavailable`], never a success.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// The session, for messages (a URL without credentials, a path, a key).
    fn resource(&self) -> String;

    /// Takes the lease for `holder` for `ttl`.
    async fn acquire(&self, holder: &LeaseHolder, ttl: Duration) -> Result<LeaseGrant, SessionError>;

    /// Extends the lease of `token` to `ttl` from now (the store's now).
    async fn renew(&self, token: u64, ttl: Duration) -> Result<LeaseGrant, SessionError>;

    /// Gives the lease of `token` up.
    async fn release(&self, token: u64) -> Result<(), SessionError>;

    /// Where this store's lease can be renewed together with others: stores that return the
    /// same [`LeaseBatch::group`] reach one database with the same rights, and any of them can
    /// renew the leases of all of them with [`renew_many`](LeaseStore::renew_many). Default
    /// `None`: the lease is renewed on its own.
    fn batch(&self) -> Option<LeaseBatch> {
        None
    }

    /// Renews several leases of this store's [`batch`](LeaseStore::batch) group with as few
    /// requests as the store can (the SQL stores: one statement). Returns one result per
    /// renewal, in order, each as [`renew`](LeaseStore::renew) would: a grant, or
    /// [`SessionError::LeaseLost`] for a token that is no longer current. `Err` is for the
    /// request as a whole (the store unreachable): nothing is known of any lease.
    ///
    /// The default renews one by one with [`renew`](LeaseStore::renew), which addresses this
    /// store's own session only: a store that returns a group from `batch` must implement this.
    /// A renewal naming another session is refused as a backend error by the default.
    async fn renew_many(
        &self,
        renewals: &[Renewal],
        ttl: Duration,
    ) -> Result<Vec<Result<LeaseGrant, SessionError>>, SessionError> {
        let own = self.batch().map(|b| b.session);
        let mut out = Vec::with_capacity(renewals.len());
        for r in renewals {
            match &own {
                Some(own) if *own != r.session => out.push(Err(SessionError::Backend {
                    backend: self.resource(),
                    source: format!(
                        "this lease store renews only its own session, not {:?} (it must implement renew_many)",
                        r.session
                    )
                    .into(),
                })),
                _ => out.push(self.renew(r.token, ttl).await),
            }
        }
        Ok(out)
    }
}

/// Which leases a store can renew in one request (see [`LeaseStore::batch`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeaseBatch {
    /// The database and the rights used to reach it (a URL and a digest of the credentials, for
    /// instance; never shown to anyone, so it may hold what a message may not). Leases whose
    /// stores return the same group share one renewer.
    pub group: String,
    /// This store's session inside the group, as [`Renewal::session`] names it.
    pub session: String,
}

/// One lease of a [`LeaseStore::renew_many`] call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renewal {
    /// The session, as its store's [`LeaseBatch::session`] names it.
    pub session: String,
    /// The token to renew.
    pub token: u64,
}

#[async_trait]
impl<T: LeaseStore + ?Sized> LeaseStore for Arc<T> {
    fn resource(&self) -> String {
        (**self).resource()
    }
    async fn acquire(&self, holder: &LeaseHolder, ttl: Duration) -> Result<LeaseGrant, SessionError> {
        (**self).acquire(holder, ttl).await
    }
    async fn renew(&self, token: u64, ttl: Duration) -> Result<LeaseGrant, SessionError> {
        (**self).renew(token, ttl).await
    }
    async fn release(&self, token: u64) -> Result<(), SessionError> {
        (**self).release(token).await
    }
    fn batch(&self) -> Option<LeaseBatch> {
        (**self).batch()
    }
    async fn renew_many(
        &self,
        renewals: &[Renewal],
        ttl: Duration,
    ) -> Result<Vec<Result<LeaseGrant, SessionError>>, SessionError> {
        (**self).renew_many(renewals, ttl).await
    }
}

/// Where a lease stands, as its owner sees it. Watch it with [`Lease::watch`] (a client stops
/// using the session's keys whenever it is not [`Held`](LeaseStatus::Held)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseStatus {
    /// Owned: writes are allowed until `valid_until` (local monotonic time, conservative: counted
    /// from before the renewal was sent).
    Held {
        /// The fencing token.
        token: u64,
        /// When the lease would expire if no renewal succeeded before.
        valid_until: Instant,
    },
    /// Renewals could not reach the store and the lease may be about to expire: nothing may be
    /// written or sent with the session's keys. Renewals keep trying; a success returns to
    /// `Held` with the same token.
    Suspended {
        /// Why (the last renewal error).
        reason: String,
    },
    /// Another owner took the session over (or the store refused the token): final.
    Lost {
        /// Why.
        reason: String,
    },
    /// Given up by its owner: final.
    Released,
}

/// How a [`Lease`] is taken and kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseOptions {
    /// The time to live. After a crash, the next owner waits at most this long. Default
    /// [`DEFAULT_LEASE_TTL`] (30 s).
    pub ttl: Duration,
    /// How long [`Lease::acquire`] waits for a held lease to be released or to expire (a rolling
    /// deploy). `None` (default): fail at once with [`SessionError::Locked`].
    pub wait: Option<Duration>,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        LeaseOptions { ttl: DEFAULT_LEASE_TTL, wait: None }
    }
}

impl LeaseOptions {
    /// Options with this time to live (at least 1 s: below that, ordinary network jitter would
    /// suspend the lease).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_millis(1000));
        self
    }

    /// Options that wait up to `wait` for a previous owner.
    pub fn waiting(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    /// How often the keeper renews: a third of the time to live.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// The bound on one lease call to the store: a sixth of the time to live, so a renewal that
    /// hangs is given up (and retried) long before the lease could expire.
    pub fn call_timeout(&self) -> Duration {
        self.ttl / 6
    }

    /// The part of the lease a write may not start in: writes are refused once less than this is
    /// left (a sixth of the time to live), so none is in flight when the lease expires.
    pub fn margin(&self) -> Duration {
        self.ttl / 6
    }
}

struct Shared {
    status: watch::Sender<LeaseStatus>,
    token: u64,
    margin: Duration,
    resource: String,
}

impl Shared {
    fn set(&self, status: LeaseStatus) {
        self.status.send_if_modified(|old| {
            // Lost and Released are final.
            if matches!(old, LeaseStatus::Lost { .. } | LeaseStatus::Released) || *old == status {
                return false;
            }
            *old = status;
            true
        });
    }
}

/// An owned lease: the token, a background keeper that renews it, and the fence writes check.
///
/// Dropping it stops the keeper without releasing (the lease then expires after its time to
/// live); call [`release`](Lease::release) on a graceful close so the next owner takes over at
/// once.
pub struct Lease {
    shared: Arc<Shared>,
    store: Arc<dyn LeaseStore>,
    keeper: Mutex<Option<JoinHandle<()>>>,
    holder: LeaseHolder,
    /// The shared renewer of the store's batch group, kept alive by its members.
    _group: Option<Arc<Group>>,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("resource", &self.shared.resource)
            .field("token", &self.shared.token)
            .field("holder", &self.holder)
            .field("status", &*self.shared.status.borrow())
            .finish()
    }
}

impl Lease {
    /// Takes the lease of `store` (waiting up to `options.wait` for a holder to go), and starts
    /// the keeper that renews it. Must be called inside a tokio runtime.
    pub async fn acquire(store: Arc<dyn LeaseStore>, options: LeaseOptions) -> Result<Lease, SessionError> {
        let holder = LeaseHolder::current();
        let deadline = options.wait.map(|w| Instant::now() + w);
        let (grant, sent) = loop {
            let sent = Instant::now();
            match bounded(options.call_timeout(), &store.resource(), store.acquire(&holder, options.ttl)).await {
                Ok(grant) => break (grant, sent),
                Err(SessionError::Locked { resource, pid, holder: other, expires_in }) => {
                    let now = Instant::now();
                    match deadline {
                        Some(d) if now < d => {
                            // Poll often enough that a released lease is taken within ~100 ms.
                            let pause =
                                expires_in.unwrap_or(Duration::from_millis(100)).min(Duration::from_millis(100));
                            tokio::time::sleep(pause.min(d - now)).await;
                        }
                        _ => return Err(SessionError::Locked { resource, pid, holder: other, expires_in }),
                    }
                }
                Err(e) => return Err(e),
            }
        };
        let valid_until = sent + grant.ttl.min(options.ttl);
        let (tx, _) = watch::channel(LeaseStatus::Held { token: grant.token, valid_until });
        let shared =
            Arc::new(Shared { status: tx, token: grant.token, margin: options.margin(), resource: store.resource() });
        let (keeper, group) = match store.batch() {
            Some(batch) => (None, Some(Group::join(batch, &shared, &store, options))),
            None => (Some(tokio::spawn(keep(Arc::downgrade(&shared), store.clone(), options))), None),
        };
        tracing::debug!(resource = %shared.resource, token = grant.token, holder = %holder, "lease acquired");
        Ok(Lease { shared, store, keeper: Mutex::new(keeper), holder, _group: group })
    }

    /// The fencing token of this ownership.
    pub fn token(&self) -> u64 {
        self.shared.token
    }

    /// Who this owner is, as the store records it.
    pub fn holder(&self) -> &LeaseHolder {
        &self.holder
    }

    /// The current status.
    pub fn status(&self) -> LeaseStatus {
        self.shared.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch(&self) -> watch::Receiver<LeaseStatus> {
        self.shared.status.subscribe()
    }

    /// The token a write passes to its transaction, when a write may start now:
    /// [`SessionError::LeaseLost`] when the lease is lost, released, suspended or too close to
    /// its expiry for a write to finish inside it.
    pub fn fence(&self) -> Result<u64, SessionError> {
        let lost = |reason: String| SessionError::LeaseLost { resource: self.shared.resource.clone(), reason };
        match &*self.shared.status.borrow() {
            LeaseStatus::Held { token, valid_until } => {
                if Instant::now() + self.shared.margin < *valid_until {
                    Ok(*token)
                } else {
                    Err(lost("the lease is about to expire and could not be renewed".to_owned()))
                }
            }
            LeaseStatus::Suspended { reason } => Err(lost(format!("the lease could not be renewed: {reason}"))),
            LeaseStatus::Lost { reason } => Err(lost(reason.clone())),
            LeaseStatus::Released => Err(lost("the lease was released".to_owned())),
        }
    }

    /// Records that the store refused this token in a write (another owner took over): the
    /// lease is lost for good. Returns the error to hand to the writer.
    pub fn lost(&self, reason: impl Into<String>) -> SessionError {
        let reason = reason.into();
        tracing::warn!(resource = %self.shared.resource, token = self.shared.token, reason = %reason, "lease lost");
        self.stop_keeper();
        self.shared.set(LeaseStatus::Lost { reason: reason.clone() });
        SessionError::LeaseLost { resource: self.shared.resource.clone(), reason }
    }

    /// Passes a write's result on, except that a [`SessionError::LeaseLost`] from the store
    /// (its fence refused this token) ends the lease for good, as [`lost`](Lease::lost) does.
    pub fn fenced<T>(&self, result: Result<T, SessionError>) -> Result<T, SessionError> {
        match result {
            Err(SessionError::LeaseLost { reason, .. }) => Err(self.lost(reason)),
            other => other,
        }
    }

    /// Releases a lease taken by an open that failed after taking it (so that a retry is not
    /// locked out for the time to live) and returns the open's `error`; a failed release is
    /// logged, never returned in its place (the lease then expires on its own).
    pub async fn give_back(&self, error: SessionError) -> SessionError {
        if let Err(e) = self.release().await {
            tracing::warn!(error = %e, "could not release the lease of a failed open; it expires on its own");
        }
        error
    }

    fn stop_keeper(&self) {
        if let Some(task) = self.keeper.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }

    /// Gives the lease up so that the next owner takes over at once. Writes are refused from
    /// the moment this is called.
    pub async fn release(&self) -> Result<(), SessionError> {
        self.stop_keeper();
        let was_held =
            matches!(&*self.shared.status.borrow(), LeaseStatus::Held { .. } | LeaseStatus::Suspended { .. });
        self.shared.set(LeaseStatus::Released);
        if !was_held {
            return Ok(());
        }
        let timeout = Duration::from_secs(5);
        bounded(timeout, &self.shared.resource, self.store.release(self.shared.token)).await?;
        tracing::debug!(resource = %self.shared.resource, token = self.shared.token, "lease released");
        Ok(())
    }
}

impl Drop for Lease {
    /// Stops the keeper and, when the lease is still held and a tokio runtime is running,
    /// releases it in the background so that the next owner does not wait for it to expire
    /// (best effort: [`release`](Lease::release) is the way to be sure it happened).
    fn drop(&mut self) {
        self.stop_keeper();
        let held = matches!(&*self.shared.status.borrow(), LeaseStatus::Held { .. } | LeaseStatus::Suspended { .. });
        if !held {
            return;
        }
        self.shared.set(LeaseStatus::Released);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, token, resource) = (self.store.clone(), self.shared.token, self.shared.resource.clone());
            runtime.spawn(async move {
                match bounded(Duration::from_secs(5), &resource, store.release(token)).await {
                    Ok(()) => tracing::debug!(resource = %resource, token, "lease released on drop"),
                    Err(e) => {
                        tracing::debug!(resource = %resource, error = %e, "lease not released on drop; it expires")
                    }
                }
            });
        }
    }
}

/// Runs `call`, or fails with `Unavailable` once `timeout` has passed.
async fn bounded<T>(
    timeout: Duration,
    resource: &str,
    call: impl std::future::Future<Output = Result<T, SessionError>>,
) -> Result<T, SessionError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(SessionError::Unavailable {
            resource: resource.to_owned(),
            source: format!("no answer within {} ms", timeout.as_millis()).into(),
        }),
    }
}

/// What one renewal's answer means for the lease.
enum Renewed {
    /// Renewed: the next renewal comes after the usual interval.
    Held,
    /// Not renewed this time (unreachable): retry soon.
    Retry,
    /// Lost or given up: no more renewals.
    Done,
}

/// Applies the answer to a renewal sent at `sent`: held again, suspended once the margin before
/// expiry is reached without a success, lost for a refused token.
fn settle(
    shared: &Shared,
    answer: Result<LeaseGrant, SessionError>,
    sent: Instant,
    options: &LeaseOptions,
    valid_until: Option<Instant>,
) -> Renewed {
    let retry = options.ttl / 10;
    match answer {
        Ok(grant) => {
            shared.set(LeaseStatus::Held { token: shared.token, valid_until: sent + grant.ttl.min(options.ttl) });
            Renewed::Held
        }
        Err(SessionError::LeaseLost { reason, .. }) => {
            tracing::warn!(resource = %shared.resource, token = shared.token, reason = %reason, "lease lost");
            shared.set(LeaseStatus::Lost { reason });
            Renewed::Done
        }
        Err(e) => {
            let reason = e.to_string();
            let now = Instant::now();
            let expiring = valid_until.is_none_or(|v| now + options.margin() + retry >= v);
            if expiring {
                tracing::warn!(resource = %shared.resource, reason = %reason, "lease suspended: renewals fail");
                shared.set(LeaseStatus::Suspended { reason });
            } else {
                tracing::debug!(resource = %shared.resource, reason = %reason, "lease renewal failed, retrying");
            }
            Renewed::Retry
        }
    }
}

/// When the lease would expire (`None`: suspended, unknown), or `Err` when it is final.
fn renewable(shared: &Shared) -> Result<Option<Instant>, ()> {
    match &*shared.status.borrow() {
        LeaseStatus::Held { valid_until, .. } => Ok(Some(*valid_until)),
        LeaseStatus::Suspended { .. } => Ok(None),
        LeaseStatus::Lost { .. } | LeaseStatus::Released => Err(()),
    }
}

/// The keeper of a lease renewed on its own: renews every `renew_every`; when a renewal fails,
/// retries every tenth of the time to live.
async fn keep(shared: Weak<Shared>, store: Arc<dyn LeaseStore>, options: LeaseOptions) {
    let mut pause = options.renew_every();
    loop {
        tokio::time::sleep(pause).await;
        let Some(shared) = shared.upgrade() else { return };
        let Ok(valid_until) = renewable(&shared) else { return };
        let sent = Instant::now();
        let answer = bounded(options.call_timeout(), &shared.resource, store.renew(shared.token, options.ttl)).await;
        pause = match settle(&shared, answer, sent, &options, valid_until) {
            Renewed::Held => options.renew_every(),
            Renewed::Retry => options.ttl / 10,
            Renewed::Done => return,
        };
    }
}

/// What identifies one shared renewer: the store's group, the lease options (one interval per
/// renewer) and the runtime its task runs on (a runtime that shut down took its task along).
type GroupKey = (String, Duration, tokio::runtime::Id);

/// The renewers of this process, by group.
fn groups() -> &'static Mutex<HashMap<GroupKey, Weak<Group>>> {
    static GROUPS: OnceLock<Mutex<HashMap<GroupKey, Weak<Group>>>> = OnceLock::new();
    GROUPS.get_or_init(Default::default)
}

/// The leases of one batch group in this process, and the task that renews them all with one
/// [`LeaseStore::renew_many`] per interval. Its members keep it alive; the task ends with it.
struct Group {
    members: Mutex<Vec<Member>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

struct Member {
    shared: Weak<Shared>,
    store: Arc<dyn LeaseStore>,
    session: String,
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

impl Group {
    /// Adds a lease to the renewer of its group, starting the renewer when there is none.
    fn join(batch: LeaseBatch, shared: &Arc<Shared>, store: &Arc<dyn LeaseStore>, options: LeaseOptions) -> Arc<Group> {
        let member = Member { shared: Arc::downgrade(shared), store: store.clone(), session: batch.session };
        let key = (batch.group, options.ttl, tokio::runtime::Handle::current().id());
        let mut all = groups().lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|_, g| g.strong_count() > 0);
        if let Some(group) = all.get(&key).and_then(Weak::upgrade) {
            let alive = group.task.lock().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|t| !t.is_finished());
            if alive {
                group.members.lock().unwrap_or_else(|p| p.into_inner()).push(member);
                return group;
            }
        }
        let group = Arc::new(Group { members: Mutex::new(vec![member]), task: Mutex::new(None) });
        let task = tokio::spawn(renew_group(Arc::downgrade(&group), options));
        *group.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        all.insert(key, Arc::downgrade(&group));
        group
    }
}

/// The shared renewer: every interval, one `renew_many` for every lease of the group still held
/// (through the store of one of them), each answer applied to its own lease.
async fn renew_group(group: Weak<Group>, options: LeaseOptions) {
    let mut pause = options.renew_every();
    // Requests that failed whole in a row: the next one goes through another lease's store, so
    // one broken connection does not hold every lease of the group.
    let mut failed = 0usize;
    loop {
        tokio::time::sleep(pause).await;
        let Some(group) = group.upgrade() else { return };
        let mut batch = Vec::new();
        group.members.lock().unwrap_or_else(|p| p.into_inner()).retain(|m| {
            let Some(shared) = m.shared.upgrade() else { return false };
            match renewable(&shared) {
                Ok(valid_until) => {
                    batch.push((shared, valid_until, m.store.clone(), m.session.clone()));
                    true
                }
                Err(()) => false,
            }
        });
        drop(group);
        let Some((first, _, store, _)) = batch.get(failed % batch.len().max(1)) else {
            pause = options.renew_every();
            continue;
        };
        let resource = first.resource.clone();
        let store = store.clone();
        let renewals: Vec<Renewal> = batch
            .iter()
            .map(|(shared, _, _, session)| Renewal { session: session.clone(), token: shared.token })
            .collect();
        let sent = Instant::now();
        tracing::trace!(leases = renewals.len(), "renewing a batch of leases");
        let answers = bounded(options.call_timeout(), &resource, store.renew_many(&renewals, options.ttl)).await;
        let mut answers: Vec<Result<LeaseGrant, SessionError>> = match answers {
            Ok(answers) if answers.len() == renewals.len() => {
                failed = 0;
                answers
            }
            Ok(answers) => {
                let why = format!("the store answered {} of {} renewals", answers.len(), renewals.len());
                renewals
                    .iter()
                    .map(|_| Err(SessionError::Backend { backend: resource.clone(), source: why.clone().into() }))
                    .collect()
            }
            Err(e) => {
                failed = failed.wrapping_add(1);
                let why = e.to_string();
                renewals
                    .iter()
                    .map(|_| Err(SessionError::Unavailable { resource: resource.clone(), source: why.clone().into() }))
                    .collect()
            }
        };
        let mut retry = false;
        for ((shared, valid_until, _, _), answer) in batch.iter().zip(answers.drain(..)) {
            if let Renewed::Retry = settle(shared, answer, sent, &options, *valid_until) {
                retry = true;
            }
        }
        pause = if retry { options.ttl / 10 } else { options.renew_every() };
    }
}

/// A [`LeaseStore`] in memory: the reference implementation of the contract (`session-testkit`
/// checks it like any other), for tests and for sessions shared between tasks of one process.
/// Clones share the same leases; each [`session`](MemoryLeases::session) addresses one session.
#[derive(Clone, Debug, Default)]
pub struct MemoryLeases {
    inner: Arc<Mutex<std::collections::HashMap<String, MemoryLease>>>,
    session: String,
}

#[derive(Clone, Debug)]
struct MemoryLease {
    token: u64,
    holder: Option<LeaseHolder>,
    expires: Instant,
}

impl MemoryLeases {
    /// A new, empty set of leases, addressing the session named `""`.
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle on the same leases that addresses the session `name`.
    pub fn session(&self, name: &str) -> Self {
        MemoryLeases { inner: self.inner.clone(), session: name.to_owned() }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Option<&mut MemoryLease>, Instant) -> T) -> T {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut entry = map.get_mut(&self.session);
        f(&mut entry, Instant::now())
    }
}

#[async_trait]
impl LeaseStore for MemoryLeases {
    fn resource(&self) -> String {
        format!("memory:{}", self.session)
    }

    async fn acquire(&self, holder: &LeaseHolder, ttl: Duration) -> Result<LeaseGrant, SessionError> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let lease = map.entry(self.session.clone()).or_insert(MemoryLease { token: 0, holder: None, expires: now });
        if let Some(other) = &lease.holder {
            if lease.expires > now {
                return Err(SessionError::Locked {
                    resource: format!("memory:{}", self.session),
                    pid: None,
                    holder: Some(other.clone()),
                    expires_in: Some(lease.expires - now),
                });
            }
        }
        lease.token += 1;
        lease.holder = Some(holder.clone());
        lease.expires = now + ttl;
        Ok(LeaseGrant { token: lease.token, ttl })
    }

    async fn renew(&self, token: u64, ttl: Duration) -> Result<LeaseGrant, SessionError> {
        let resource = self.resource();
        self.with(|lease, now| match lease {
            Some(l) if l.token == token && l.holder.is_some() => {
                l.expires = now + ttl;
                Ok(LeaseGrant { token, ttl })
            }
            _ => Err(SessionError::LeaseLost { resource, reason: format!("token {token} is no longer current") }),
        })
    }

    async fn release(&self, token: u64) -> Result<(), SessionError> {
        self.with(|lease, now| {
            if let Some(l) = lease {
                if l.token == token {
                    l.holder = None;
                    l.expires = now;
                }
            }
        });
        Ok(())
    }

    fn batch(&self) -> Option<LeaseBatch> {
        Some(LeaseBatch { group: format!("memory:{:p}", Arc::as_ptr(&self.inner)), session: self.session.clone() })
    }

    /// All the renewals under one lock: the "one request" of this store.
    async fn renew_many(
        &self,
        renewals: &[Renewal],
        ttl: Duration,
    ) -> Result<Vec<Result<LeaseGrant, SessionError>>, SessionError> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        Ok(renewals
            .iter()
            .map(|r| match map.get_mut(&r.session) {
                Some(l) if l.token == r.token && l.holder.is_some() => {
                    l.expires = now + ttl;
                    Ok(LeaseGrant { token: r.token, ttl })
                }
                _ => Err(SessionError::LeaseLost {
                    resource: format!("memory:{}", r.session),
                    reason: format!("token {} is no longer current", r.token),
                }),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn holder_round_trips_and_displays() {
        let h = LeaseHolder::current();
        assert_eq!(LeaseHolder::decode(&h.encode()), Some(h.clone()));
        assert_eq!(h.pid, std::process::id());
        assert_eq!(h.instance.len(), 16);
        assert_ne!(LeaseHolder::current().instance, h.instance);
        assert!(h.to_string().contains(&format!("pid {}", h.pid)));
        assert_eq!(LeaseHolder::decode("a\tnot-a-pid\tb"), None);
        assert_eq!(LeaseHolder::decode("a\t1"), None);
        assert_eq!(LeaseHolder::decode("a\t1\tb\tc"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_owner_is_locked_out_and_named() {
        let leases = MemoryLeases::new();
        let first = Lease::acquire(Arc::new(leases.clone()), LeaseOptions::default()).await.expect("first");
        let err = Lease::acquire(Arc::new(leases.clone()), LeaseOptions::default()).await.expect_err("second");
        match &err {
            SessionError::Locked { holder: Some(h), expires_in: Some(left), .. } => {
                assert_eq!(h, first.holder());
                assert!(*left <= DEFAULT_LEASE_TTL);
            }
            other => panic!("expected Locked with the holder, got {other:?}"),
        }
        assert!(err.to_string().contains(&first.holder().instance), "{err}");
        assert_eq!(first.fence().expect("fence"), first.token());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn release_hands_over_at_once_with_a_larger_token() {
        let leases = MemoryLeases::new();
        let first = Lease::acquire(Arc::new(leases.clone()), LeaseOptions::default()).await.expect("first");
        let waiting = {
            let leases = leases.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let opts = LeaseOptions::default().waiting(Duration::from_secs(10));
                let lease = Lease::acquire(Arc::new(leases), opts).await;
                (lease, started.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let token = first.token();
        first.release().await.expect("release");
        assert!(matches!(first.fence(), Err(SessionError::LeaseLost { .. })));
        let (second, waited) = waiting.await.expect("join");
        let second = second.expect("second owner");
        assert!(second.token() > token);
        assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fenced_ends_the_lease_only_on_lease_lost_and_give_back_frees_it() {
        let leases = MemoryLeases::new();
        let lease = Lease::acquire(Arc::new(leases.clone()), LeaseOptions::default()).await.expect("first");
        let other = SessionError::Unavailable { resource: "r".into(), source: "down".into() };
        assert!(matches!(lease.fenced::<()>(Err(other)), Err(SessionError::Unavailable { .. })));
        assert_eq!(lease.fenced(Ok(7)).expect("ok"), 7);
        assert!(matches!(lease.status(), LeaseStatus::Held { .. }), "{:?}", lease.status());
        let refused = SessionError::LeaseLost { resource: "r".into(), reason: "token 1 refused".into() };
        assert!(matches!(lease.fenced::<()>(Err(refused)), Err(SessionError::LeaseLost { .. })));
        assert!(matches!(lease.status(), LeaseStatus::Lost { .. }), "{:?}", lease.status());
        assert!(lease.fence().is_err());

        let second = Lease::acquire(Arc::new(leases.clone()), LeaseOptions::default()).await;
        assert!(second.is_err(), "a lost lease is not released by itself before its expiry");
        let held = Lease::acquire(Arc::new(leases.session("b")), LeaseOptions::default()).await.expect("b");
        let err = held.give_back(SessionError::invalid("x", "the open failed")).await;
        assert!(matches!(err, SessionError::Invalid { .. }), "{err:?}");
        let again = Lease::acquire(Arc::new(leases.session("b")), LeaseOptions::default()).await;
        assert!(again.is_ok(), "given back at once: {:?}", again.err());
    }

    /// A store whose renewals can be made to fail (unreachable) at will.
    struct Flaky {
        inner: MemoryLeases,
        down: AtomicBool,
    }

    #[async_trait]
    impl LeaseStore for Flaky {
        fn resource(&self) -> String {
            self.inner.resource()
        }
        async fn acquire(&self, holder: &LeaseHolder, ttl: Duration) -> Result<LeaseGrant, SessionError> {
            self.inner.acquire(holder, ttl).await
        }
        async fn renew(&self, token: u64, ttl: Duration) -> Result<LeaseGrant, SessionError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(SessionError::Unavailable { resource: self.resource(), source: "down".into() });
            }
            self.inner.renew(token, ttl).await
        }
        async fn release(&self, token: u64) -> Result<(), SessionError> {
            self.inner.release(token).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_store_suspends_before_expiry_and_recovers() {
        let ttl = Duration::from_millis(1200);
        let store = Arc::new(Flaky { inner: MemoryLeases::new(), down: AtomicBool::new(false) });
        let lease = Lease::acquire(store.clone(), LeaseOptions::default().with_ttl(ttl)).await.expect("lease");
        // Renewals keep it alive well past its time to live.
        tokio::time::sleep(ttl * 2).await;
        assert!(lease.fence().is_ok(), "{:?}", lease.status());
        store.down.store(true, Ordering::SeqCst);
        let downed = Instant::now();
        let mut watch = lease.watch();
        let valid_until = match lease.status() {
            LeaseStatus::Held { valid_until, .. } => valid_until,
            s => panic!("{s:?}"),
        };
        tokio::time::timeout(ttl * 2, watch.wait_for(|s| matches!(s, LeaseStatus::Suspended { .. })))
            .await
            .expect("suspended in time")
            .expect("watch");
        assert!(Instant::now() < valid_until, "suspended only after the lease could have expired");
        assert!(matches!(lease.fence(), Err(SessionError::LeaseLost { .. })));
        assert!(downed.elapsed() < ttl);
        store.down.store(false, Ordering::SeqCst);
        tokio::time::timeout(ttl * 2, watch.wait_for(|s| matches!(s, LeaseStatus::Held { .. })))
            .await
            .expect("held again")
            .expect("watch");
        assert_eq!(lease.fence().expect("fence"), lease.token());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_takeover_after_expiry_is_lost_for_the_old_owner() {
        let ttl = Duration::from_millis(1200);
        let store = Arc::new(Flaky { inner: MemoryLeases::new(), down: AtomicBool::new(false) });
        let old = Lease::acquire(store.clone(), LeaseOptions::default().with_ttl(ttl)).await.expect("old");
        // The old owner cannot renew (paused, partitioned); the lease expires and is taken.
        store.down.store(true, Ordering::SeqCst);
        tokio::time::sleep(ttl + Duration::from_millis(200)).await;
        let new = Lease::acquire(Arc::new(store.inner.clone()), LeaseOptions::default().with_ttl(ttl))
            .await
            .expect("takeover");
        assert!(new.token() > old.token());
        store.down.store(false, Ordering::SeqCst);
        let mut watch = old.watch();
        tokio::time::timeout(ttl * 2, watch.wait_for(|s| matches!(s, LeaseStatus::Lost { .. })))
            .await
            .expect("lost in time")
            .expect("watch");
        assert!(matches!(old.fence(), Err(SessionError::LeaseLost { .. })));
        // Lost is final, and the old owner's release does not end the new owner's lease.
        old.release().await.expect("release");
        assert!(new.fence().is_ok());
        assert!(matches!(
            Lease::acquire(Arc::new(store.inner.clone()), LeaseOptions::default()).await,
            Err(SessionError::Locked { .. })
        ));
    }

    /// Memory leases that count the renewal requests they are sent.
    struct Counted {
        inner: MemoryLeases,
        requests: Arc<std::sync::atomic::AtomicUsize>,
    }

    #[async_trait]
    impl LeaseStore for Counted {
        fn resource(&self) -> String {
            self.inner.resource()
        }
        async fn acquire(&self, holder: &LeaseHolder, ttl: Duration) -> Result<LeaseGrant, SessionError> {
            self.inner.acquire(holder, ttl).await
        }
        async fn renew(&self, token: u64, ttl: Duration) -> Result<LeaseGrant, SessionError> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            self.inner.renew(token, ttl).await
        }
        async fn release(&self, token: u64) -> Result<(), SessionError> {
            self.inner.release(token).await
        }
        fn batch(&self) -> Option<LeaseBatch> {
            self.inner.batch()
        }
        async fn renew_many(
            &self,
            renewals: &[Renewal],
            ttl: Duration,
        ) -> Result<Vec<Result<LeaseGrant, SessionError>>, SessionError> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            self.inner.renew_many(renewals, ttl).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_leases_of_one_group_renew_with_one_request_and_are_lost_alone() {
        let ttl = Duration::from_millis(1200);
        let leases = MemoryLeases::new();
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut held = Vec::new();
        for i in 0..200 {
            let store = Counted { inner: leases.session(&format!("s{i}")), requests: requests.clone() };
            held.push(Lease::acquire(Arc::new(store), LeaseOptions::default().with_ttl(ttl)).await.expect("acquire"));
        }
        // Three intervals: about three requests for all 200 leases (not 600).
        let start = requests.load(Ordering::SeqCst);
        tokio::time::sleep(ttl).await;
        let sent = requests.load(Ordering::SeqCst) - start;
        assert!((2..=4).contains(&sent), "{sent} renewal requests in three intervals for 200 leases");
        assert!(held.iter().all(|l| l.fence().is_ok()));
        // Another owner takes one session over (its lease released behind its owner's back).
        let victim = &held[17];
        leases.session("s17").release(victim.token()).await.expect("release");
        let thief = Lease::acquire(Arc::new(leases.session("s17")), LeaseOptions::default().with_ttl(ttl))
            .await
            .expect("takeover");
        let mut watch = victim.watch();
        tokio::time::timeout(ttl * 2, watch.wait_for(|s| matches!(s, LeaseStatus::Lost { .. })))
            .await
            .expect("lost in time")
            .expect("watch");
        tokio::time::sleep(ttl / 2).await;
        for (i, lease) in held.iter().enumerate() {
            if i == 17 {
                assert!(matches!(lease.fence(), Err(SessionError::LeaseLost { .. })));
            } else {
                assert!(lease.fence().is_ok(), "session {i}: {:?}", lease.status());
            }
        }
        assert!(thief.fence().is_ok());
    }

    /// Memory leases whose batch requests fail (a broken connection) when `broken`.
    struct BrokenBatch {
        inner: MemoryLeases,
        broken: bool,
    }

    #[async_trait]
    impl LeaseStore for BrokenBatch {
        fn resource(&self) -> String {
            self.inner.resource()
        }
        async fn acquire(&self, holder: &LeaseHolder, ttl: Duration) -> Result<LeaseGrant, SessionError> {
            self.inner.acquire(holder, ttl).await
        }
        async fn renew(&self, token: u64, ttl: Duration) -> Result<LeaseGrant, SessionError> {
            self.inner.renew(token, ttl).await
        }
        async fn release(&self, token: u64) -> Result<(), SessionError> {
            self.inner.release(token).await
        }
        fn batch(&self) -> Option<LeaseBatch> {
            self.inner.batch()
        }
        async fn renew_many(
            &self,
            renewals: &[Renewal],
            ttl: Duration,
        ) -> Result<Vec<Result<LeaseGrant, SessionError>>, SessionError> {
            if self.broken {
                return Err(SessionError::Unavailable { resource: self.resource(), source: "broken".into() });
            }
            self.inner.renew_many(renewals, ttl).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_whose_first_store_fails_is_renewed_through_another() {
        let ttl = Duration::from_millis(1200);
        let leases = MemoryLeases::new();
        let mut held = Vec::new();
        for i in 0..3 {
            let store = BrokenBatch { inner: leases.session(&format!("b{i}")), broken: i == 0 };
            held.push(Lease::acquire(Arc::new(store), LeaseOptions::default().with_ttl(ttl)).await.expect("acquire"));
        }
        let until = Instant::now() + ttl * 3;
        while Instant::now() < until {
            tokio::time::sleep(ttl / 12).await;
            for (i, lease) in held.iter().enumerate() {
                assert!(matches!(lease.status(), LeaseStatus::Held { .. }), "lease {i}: {:?}", lease.status());
            }
        }
    }

    /// A store that says it batches but keeps the default `renew_many`.
    struct NoRenewMany(MemoryLeases);

    #[async_trait]
    impl LeaseStore for NoRenewMany {
        fn resource(&self) -> String {
            self.0.resource()
        }
        async fn acquire(&self, holder: &LeaseHolder, ttl: Duration) -> Result<LeaseGrant, SessionError> {
            self.0.acquire(holder, ttl).await
        }
        async fn renew(&self, token: u64, ttl: Duration) -> Result<LeaseGrant, SessionError> {
            self.0.renew(token, ttl).await
        }
        async fn release(&self, token: u64) -> Result<(), SessionError> {
            self.0.release(token).await
        }
        fn batch(&self) -> Option<LeaseBatch> {
            self.0.batch()
        }
    }

    #[tokio::test]
    async fn the_default_renew_many_refuses_other_sessions() {
        let leases = MemoryLeases::new();
        let holder = LeaseHolder::current();
        let a = NoRenewMany(leases.session("a"));
        let ga = a.acquire(&holder, DEFAULT_LEASE_TTL).await.expect("a");
        let gb = leases.session("b").acquire(&holder, DEFAULT_LEASE_TTL).await.expect("b");
        let renewals =
            [Renewal { session: "a".into(), token: ga.token }, Renewal { session: "b".into(), token: gb.token }];
        let answers = a.renew_many(&renewals, DEFAULT_LEASE_TTL).await.expect("request");
        assert!(answers[0].is_ok());
        assert!(matches!(answers[1], Err(SessionError::Backend { .. })), "{:?}", answers[1]);
    }
}
