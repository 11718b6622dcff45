//! [`RedisBackend`] and [`RedisOptions`]: opening a session (connection, persistence check,
//! lease, the key of a sealed session) and the `SessionBackend` methods on top of the scripts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::{
    async_trait, codec, BoxError, Change, Keyring, Lease, LeaseOptions, LeaseStatus, SessionBackend, SessionData,
    SessionError,
};
use tokio::sync::watch;
use tracing::Instrument;

use crate::conn::{Conn, Failure, DEFAULT_CALL_TIMEOUT};
use crate::keys::{Keys, DEFAULT_KEY_PREFIX, DEFAULT_SESSION};
use crate::lease::RedisLeases;
use crate::reader::{self, Fields};
use crate::scripts::WRITE;
use crate::seal::{self, blocking, Marker, Sealer};
use crate::writer::Plan;

/// Plans with more fields than this are sealed on the blocking pool; smaller ones (one change
/// seals a few values: microseconds) inline.
const SEAL_INLINE_MAX: usize = 64;

/// How a [`RedisBackend`] is opened. Every setting has a default; `RedisOptions::new().open(url)`
/// is [`RedisBackend::open`].
#[derive(Clone, Debug)]
pub struct RedisOptions {
    pub(crate) session: String,
    pub(crate) key_prefix: Option<String>,
    pub(crate) call_timeout: Duration,
    pub(crate) lease: LeaseOptions,
    pub(crate) allow_volatile: bool,
    pub(crate) keys: Option<Keyring>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            session: DEFAULT_SESSION.to_owned(),
            key_prefix: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            lease: LeaseOptions::default(),
            allow_volatile: false,
            keys: None,
        }
    }
}

impl RedisOptions {
    /// The defaults: session `"default"`, key prefix `layer-session:`, 5 s per call, a 30 s
    /// lease, no waiting for a previous owner, a server without persistence refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// The session to open (1 to 256 bytes, no `{` or `}`). One database holds any number.
    #[must_use]
    pub fn session(mut self, name: impl Into<String>) -> Self {
        self.session = name.into();
        self
    }

    /// The prefix of the session's keys (default `layer-session:`): the keys are
    /// `PREFIX{NAME}:s`, `:lease` and `:tmp`.
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = Some(prefix.into());
        self
    }

    /// The bound on every call to the server, from the moment it is made (waiting for the
    /// connection and for calls queued before it included) to its answer. Default 5 s. A call
    /// that runs out is `Unavailable`; a write that ran out may still have been applied (it is
    /// fenced and idempotent, and is sent again with the next persist).
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The lease's time to live (default 30 s, at least 1 s): after a crash the next owner
    /// waits at most this long.
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease = self.lease.with_ttl(ttl);
        self
    }

    /// Wait up to `wait` for a previous owner to release or lose the lease instead of failing
    /// with `Locked` at once (a rolling deploy).
    #[must_use]
    pub fn wait_for_owner(mut self, wait: Duration) -> Self {
        self.lease = self.lease.waiting(wait);
        self
    }

    /// Accept a server that keeps nothing on disk (`appendonly no` and `save ""`). Refused by
    /// default: such a server forgets every session when it restarts.
    #[must_use]
    pub fn allow_volatile(mut self, allow: bool) -> Self {
        self.allow_volatile = allow;
        self
    }

    /// Seal the session (encryption at rest) with `keys`: a [`Keyring`], or one
    /// [`SealingKey`](session_core::SealingKey). Every value is sealed on its own with
    /// `session_core::seal`, bound to the key prefix, the session name and its field (a peer's
    /// value also to the peer's key), so one change still writes only what it touches and a
    /// value copied to another field or session does not open. The server sees field names,
    /// peer ids and sizes, never a value (see the crate README).
    ///
    /// - A plain session opened with a key still loads; the first write rewrites it sealed.
    ///   A session sealed with an older key of the keyring (a rotation) is rewritten with the
    ///   keyring's sealing key the same way.
    /// - A sealed session opened without a key fails with [`SessionError::Sealed`], and with a
    ///   keyring that lacks its key with [`SessionError::WrongKey`], both at `open` and before
    ///   anything is written; a value that does not authenticate is [`SessionError::Corrupt`].
    /// - A passphrase's key is derived (Argon2id) on the blocking pool; its salt and costs are
    ///   stored in the session's `seal` field.
    #[must_use]
    pub fn key(mut self, keys: impl Into<Keyring>) -> Self {
        self.keys = Some(keys.into());
        self
    }

    /// Opens the session: connects, checks the server's persistence, takes the lease.
    pub async fn open(self, url: &str) -> Result<RedisBackend, SessionError> {
        RedisBackend::open_with(url, self).await
    }
}

/// A session kept in Redis.
///
/// Opening takes the session's lease (one owner at a time, across machines) and keeps it renewed
/// in the background; every write is a Lua script that checks the lease's fencing token before
/// it changes anything. Dropping the backend releases the lease in the background; call
/// [`close`](RedisBackend::close) to release it before returning.
pub struct RedisBackend {
    conn: Arc<Conn>,
    keys: Keys,
    name: String,
    resource: String,
    lease: Arc<Lease>,
    /// Whether the store holds this session's `meta` field (see `Plan::changes`).
    meta_known: AtomicBool,
    /// The keys given with [`RedisOptions::key`], to open what the session holds.
    keyring: Option<Keyring>,
    /// What new values are sealed with (the keyring's sealing key), when keys were given.
    sealer: Option<Sealer>,
    /// The stored session is plain, or sealed with another key than `sealer`'s: the next write
    /// rewrites it whole, so that every value is sealed with the marker's key.
    rewrite: AtomicBool,
    key_prefix: String,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &self.conn.url.shown)
            .field("session", &self.name)
            .field("lease_token", &self.lease.token())
            .field("sealed_with", &self.sealer.as_ref().map(Sealer::key_id))
            .finish()
    }
}

impl RedisBackend {
    /// Opens the default session (`"default"`) at `url` (`redis://[user:password@]host[:port][/db]`
    /// or `redis+unix:///path/to/socket?pass=...`) with the default [`RedisOptions`].
    pub async fn open(url: &str) -> Result<RedisBackend, SessionError> {
        RedisOptions::new().open(url).await
    }

    /// Opens the session `name` at `url`. Sessions are independent: each has its own keys and
    /// its own owner.
    pub async fn open_named(url: &str, name: &str) -> Result<RedisBackend, SessionError> {
        RedisOptions::new().session(name).open(url).await
    }

    /// Opens the default session at `url`, sealed with `keys` (see [`RedisOptions::key`]).
    pub async fn open_with_key(url: &str, keys: impl Into<Keyring>) -> Result<RedisBackend, SessionError> {
        RedisOptions::new().key(keys).open(url).await
    }

    async fn open_with(url: &str, options: RedisOptions) -> Result<RedisBackend, SessionError> {
        let conn = Arc::new(Conn::new(url, options.call_timeout)?);
        let span = tracing::info_span!("open", backend = "redis", url = %conn.url.shown, session = %options.session);
        async move {
            let key_prefix = options.key_prefix.unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_owned());
            let keys = Keys::new(&key_prefix, &options.session)?;
            check_persistence(&conn, options.allow_volatile).await?;
            let store = RedisLeases::on(conn.clone(), &keys, &options.session);
            let lease = Lease::acquire(Arc::new(store), options.lease)
                .instrument(tracing::info_span!("lease", backend = "redis", op = "acquire"))
                .await?;
            let resource = format!("{} session {:?}", conn.url.shown, options.session);
            // Read only after the lease is held: nobody else writes the session from here on.
            let sealing =
                match sealing(&conn, &keys, options.keys.as_ref(), &key_prefix, &options.session, &resource).await {
                    Ok(s) => s,
                    // Nothing was written; hand the session back at once rather than when the
                    // lease expires.
                    Err(e) => return Err(lease.give_back(e).await),
                };
            Ok(RedisBackend {
                conn,
                keys,
                name: options.session,
                resource,
                lease: Arc::new(lease),
                meta_known: AtomicBool::new(false),
                keyring: options.keys,
                sealer: sealing.0,
                rewrite: AtomicBool::new(sealing.1),
                key_prefix,
            })
        }
        .instrument(span)
        .await
    }

    /// The session's name.
    pub fn session(&self) -> &str {
        &self.name
    }

    /// The server's URL with its password hidden.
    pub fn url(&self) -> &str {
        &self.conn.url.shown
    }

    /// The id of the key new values are sealed with; `None` for a backend opened without keys.
    pub fn sealed_with(&self) -> Option<session_core::KeyId> {
        self.sealer.as_ref().map(Sealer::key_id)
    }

    /// The lease this backend holds (its token, holder and status).
    pub fn lease_handle(&self) -> &Lease {
        &self.lease
    }

    /// Releases the lease now, so that the next owner takes over at once. Writes are refused
    /// afterwards.
    pub async fn close(&self) -> Result<(), SessionError> {
        self.lease.release().await
    }

    async fn write(&self, op: &'static str, plan: Plan) -> Result<(), SessionError> {
        let plan = match &self.sealer {
            None => plan,
            Some(s) if plan.size() <= SEAL_INLINE_MAX => plan.seal(s)?,
            Some(s) => {
                let s = s.clone();
                blocking(move || plan.seal(&s)).await?
            }
        };
        let whole = plan.replace;
        let token = self.lease.fence()?;
        let started = Instant::now();
        let size = plan.size();
        let span = tracing::debug_span!("write", backend = "redis", op, session = %self.name, fields = size);
        let keys = self.keys.clone();
        let written: i64 = self
            .conn
            .run(|mut c| {
                let mut inv = WRITE.prepare_invoke();
                inv.key(&keys.lease).key(&keys.session).key(&keys.tmp).arg(token);
                plan.add_args(&mut inv);
                async move { inv.invoke_async(&mut c).await }
            })
            .instrument(span)
            .await?;
        if written != 1 {
            return Err(self.lease.lost(format!(
                "a write with token {token} was refused by the server: another owner took the session over"
            )));
        }
        self.meta_known.store(op != "delete", Ordering::Relaxed);
        if whole {
            self.rewrite.store(false, Ordering::Relaxed);
        }
        tracing::debug!(
            backend = "redis",
            op,
            fields = size,
            elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "written"
        );
        Ok(())
    }

    async fn read(&self) -> Result<Option<SessionData>, SessionError> {
        let key = self.keys.session.clone();
        // One HGETALL of one hash: the session as of one instant.
        let fields: Fields =
            self.conn.run(|mut c| async move { redis::cmd("HGETALL").arg(key).query_async(&mut c).await }).await?;
        let session = match reader::seal_of(&fields, &self.resource)? {
            None => reader::decode(&fields, None, &self.resource)?,
            Some(marker) => {
                let Some(keyring) = self.keyring.clone() else {
                    return Err(SessionError::Sealed { resource: self.resource.clone(), key_id: Some(marker.key_id) });
                };
                let (resource, prefix, name) = (self.resource.clone(), self.key_prefix.clone(), self.name.clone());
                blocking(move || {
                    let key = seal::opening_key(&keyring, &marker, &resource)?;
                    let sealer = Sealer::new(key, &prefix, &name, &resource);
                    reader::decode(&fields, Some(&sealer), &resource)
                })
                .await?
            }
        };
        if session.is_some() {
            self.meta_known.store(true, Ordering::Relaxed);
        }
        Ok(session)
    }
}

/// What a backend opened with `keys` seals with, and whether the stored session must be rewritten
/// whole by the first write (it is plain, or sealed with another key). Without keys, a sealed
/// session is refused (`Sealed`); with keys that lack its key, `WrongKey`.
async fn sealing(
    conn: &Conn,
    keys: &Keys,
    keyring: Option<&Keyring>,
    prefix: &str,
    name: &str,
    resource: &str,
) -> Result<(Option<Sealer>, bool), SessionError> {
    let key = keys.session.clone();
    let (format, marker): (Option<Vec<u8>>, Option<Vec<u8>>) = conn
        .run(|mut c| async move { redis::cmd("HMGET").arg(key).arg("format").arg("seal").query_async(&mut c).await })
        .await?;
    let stored = format.as_deref().filter(|f| !f.is_empty()).is_some();
    let marker: Option<Marker> = reader::seal_of_values(
        format.as_deref().filter(|f| !f.is_empty()),
        marker.as_deref().filter(|m| !m.is_empty()),
        resource,
    )?;
    let Some(keyring) = keyring.cloned() else {
        return match marker {
            Some(m) => Err(SessionError::Sealed { resource: resource.to_owned(), key_id: Some(m.key_id) }),
            None => Ok((None, false)),
        };
    };
    let owned = (resource.to_owned(), prefix.to_owned(), name.to_owned());
    blocking(move || {
        let (resource, prefix, name) = owned;
        if let Some(m) = &marker {
            seal::opening_key(&keyring, m, &resource)?;
        }
        // A passphrase keeps the salt of the stored session, so its key id stays the same.
        let key = keyring.sealing_key(marker.as_ref().and_then(|m| m.kdf.as_ref()))?;
        let rewrite = match &marker {
            Some(m) => m.key_id != key.id(),
            None => stored,
        };
        Ok((Some(Sealer::new(key, &prefix, &name, &resource)), rewrite))
    })
    .await
}

impl Drop for RedisBackend {
    fn drop(&mut self) {
        // Release in the background so a waiting owner takes over at once; without a runtime
        // (or if it is shutting down) the lease simply expires after its time to live.
        if matches!(self.lease.status(), LeaseStatus::Held { .. } | LeaseStatus::Suspended { .. }) {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let lease = self.lease.clone();
                handle.spawn(async move {
                    if let Err(e) = lease.release().await {
                        tracing::debug!(backend = "redis", error = %e, "lease release on drop failed; it expires by itself");
                    }
                });
            }
        }
    }
}

/// Refuses (unless allowed) a server that keeps nothing on disk; warns about weaker settings.
/// A server that will not say (`CONFIG` refused by ACL or renamed, as on managed services) is
/// accepted with a warning: its persistence is the provider's to state.
async fn check_persistence(conn: &Conn, allow_volatile: bool) -> Result<(), SessionError> {
    let answer = conn
        .run_raw(|mut c| async move {
            redis::pipe()
                .cmd("CONFIG")
                .arg("GET")
                .arg("appendonly")
                .cmd("CONFIG")
                .arg("GET")
                .arg("appendfsync")
                .cmd("CONFIG")
                .arg("GET")
                .arg("save")
                .query_async::<(Vec<String>, Vec<String>, Vec<String>)>(&mut c)
                .await
        })
        .await;
    let (aof, fsync, save) = match answer {
        Ok(v) => v,
        Err(Failure::Redis(e)) if e.kind() != redis::ErrorKind::AuthenticationFailed && is_refused_command(&e) => {
            tracing::warn!(
                backend = "redis",
                url = %conn.url.shown,
                "could not read the server's persistence settings (CONFIG GET refused); make sure it persists (appendonly yes)"
            );
            return Ok(());
        }
        Err(e) => return Err(conn.map(e)),
    };
    let value = |v: &[String]| v.get(1).cloned().unwrap_or_default();
    let (aof, fsync, save) = (value(&aof), value(&fsync), value(&save));
    if aof == "yes" {
        if fsync != "always" {
            tracing::warn!(backend = "redis", url = %conn.url.shown, appendfsync = %fsync,
                "appendfsync is not `always`: a power cut or OS crash of the server may lose up to a second of acknowledged writes");
        }
        return Ok(());
    }
    if save.trim().is_empty() {
        if allow_volatile {
            tracing::warn!(backend = "redis", url = %conn.url.shown,
                "the server keeps nothing on disk (appendonly no, save \"\"): a restart forgets every session (allowed by allow_volatile)");
            return Ok(());
        }
        return Err(SessionError::invalid(
            "Redis server configuration",
            format!(
                "{} keeps nothing on disk (appendonly no, save \"\"): a restart would forget every session. \
                 Set `appendonly yes` (with `appendfsync always` no acknowledged write is lost), \
                 or open with RedisOptions::allow_volatile(true)",
                conn.url.shown
            ),
        ));
    }
    tracing::warn!(backend = "redis", url = %conn.url.shown, save = %save,
        "only RDB snapshots (appendonly no): a crash of the server loses the writes since its last snapshot; set appendonly yes");
    Ok(())
}

fn is_refused_command(e: &redis::RedisError) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    e.code() == Some("NOPERM") || text.contains("unknown command") || text.contains("noperm")
}

#[async_trait]
impl SessionBackend for RedisBackend {
    async fn load(&self) -> Result<Option<Vec<u8>>, BoxError> {
        match self.load_session().await? {
            Some(data) => Ok(Some(codec::encode(&data)?)),
            None => Ok(None),
        }
    }

    async fn save(&self, data: &[u8]) -> Result<(), BoxError> {
        if data.is_empty() {
            return self.delete().await;
        }
        let session = codec::decode(data)?;
        self.save_session(&session).await
    }

    async fn delete(&self) -> Result<(), BoxError> {
        let span = tracing::info_span!("delete", backend = "redis", session = %self.name);
        Ok(self.write("delete", Plan::delete()).instrument(span).await?)
    }

    fn name(&self) -> &str {
        "redis"
    }

    async fn load_session(&self) -> Result<Option<SessionData>, BoxError> {
        let span = tracing::info_span!("load", backend = "redis", session = %self.name);
        Ok(self.read().instrument(span).await?)
    }

    async fn save_session(&self, data: &SessionData) -> Result<(), BoxError> {
        let span = tracing::info_span!("save", backend = "redis", session = %self.name, peers = data.peers.len());
        Ok(async { self.write("save", Plan::full(data)?).await }.instrument(span).await?)
    }

    async fn persist(&self, changes: &[Change], full: &SessionData) -> Result<(), BoxError> {
        let span = tracing::info_span!("persist", backend = "redis", session = %self.name, changes = changes.len());
        Ok(async {
            if changes.is_empty() {
                return Ok(());
            }
            let plan = if self.rewrite.load(Ordering::Relaxed) {
                Plan::full(full)?
            } else {
                Plan::changes(changes, full, self.meta_known.load(Ordering::Relaxed))?
            };
            self.write("persist", plan).await
        }
        .instrument(span)
        .await?)
    }

    fn lease(&self) -> Option<watch::Receiver<LeaseStatus>> {
        Some(self.lease.watch())
    }

    async fn close(&self) -> Result<(), BoxError> {
        Ok(RedisBackend::close(self).await?)
    }
}
