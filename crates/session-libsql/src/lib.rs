#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod read_only;
mod remote;
#[cfg(feature = "local")]
mod replica;
mod trace;
#[cfg(feature = "bench-unfenced")]
mod unfenced;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use session_core::{codec, BoxError, Lease};
#[cfg(feature = "local")]
use session_sqlite::SqliteBackend;
use tracing::field::Empty;
use tracing::Span;

#[cfg(feature = "local")]
#[cfg_attr(docsrs, doc(cfg(feature = "local")))]
pub use session_sqlite::Durability;

/// The model, trait and store this crate plugs into, re-exported so that depending on this crate
/// alone is enough (`session_core` is the same crate the other backends use).
pub use session_core;
pub use session_core::{
    AuthKey, Change, KdfParams, KeyId, Keyring, LeaseOptions, LeaseStatus, Passphrase, SealingKey, SessionBackend,
    SessionData, SessionError, SessionStore,
};

/// What [`LibSqlBackend::read_remote`] found (the server backends share [`session_core::SessionSnapshot`]).
pub type RemoteSnapshot = session_core::SessionSnapshot;
pub use crate::remote::LibSqlLeases;
use crate::remote::Remote;
#[cfg(feature = "local")]
use crate::replica::Replica;
pub use session_sql::SessionInfo;

/// Where a [`LibSqlBackend`] keeps the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// A local SQLite file ([`LibSqlBackend::open_local`]).
    Local,
    /// A database in memory ([`LibSqlBackend::in_memory`]).
    Memory,
    /// A libSQL server reached over HTTP ([`LibSqlBackend::open_remote`]).
    Remote,
    /// A local copy of a libSQL server's database ([`LibSqlBackend::open_replica`]).
    Replica,
}

/// A session in the schema of `session_sql`, kept in a local file, on a libSQL
/// server (Turso, sqld), or in both (an embedded replica). See the crate docs for what each
/// mode promises.
///
/// Every method is async and never blocks the runtime: the local SQLite side runs on tokio's
/// blocking pool (through [`SqliteBackend`]), the remote side is HTTP.
#[derive(Debug)]
pub struct LibSqlBackend {
    inner: Inner,
    /// The lease on the session, for the modes that reach a server (remote, replica).
    lease: Option<Lease>,
    /// The name of the session this backend owns.
    session: String,
}

#[derive(Debug)]
enum Inner {
    #[cfg(feature = "local")]
    Local(SqliteBackend, Mode),
    Remote(Remote),
    #[cfg(feature = "local")]
    Replica(Replica),
}

fn boxed(e: SessionError) -> BoxError {
    Box::new(e)
}

impl LibSqlBackend {
    /// Opens (or creates) a local session database at `path`: exactly a
    /// [`SqliteBackend`] file (same engine, schema, durability and single-owner lock).
    #[cfg(feature = "local")]
    #[cfg_attr(docsrs, doc(cfg(feature = "local")))]
    pub async fn open_local(path: impl AsRef<Path>) -> Result<Self, SessionError> {
        Self::open_local_with(path, Durability::default()).await
    }

    /// [`open_local`](Self::open_local) with another durability level than the default
    /// ([`Durability::PowerLoss`]: every write fsynced before it is acknowledged); see
    /// `session-sqlite`.
    #[cfg(feature = "local")]
    #[cfg_attr(docsrs, doc(cfg(feature = "local")))]
    pub async fn open_local_with(path: impl AsRef<Path>, durability: Durability) -> Result<Self, SessionError> {
        Self::open_local_named_with(path, session_sql::lease::DEFAULT_SESSION, durability).await
    }

    /// Opens (or creates) the local database at `path` and owns its session called `name`:
    /// exactly [`SqliteBackend::open_named`] (one database holds any number of named
    /// sessions; each has one owner at a time on this machine, through its own owner lock, and
    /// another process may own another session of the same file at the same time).
    /// [`open_local`](Self::open_local) is `open_local_named(path, "default")`.
    #[cfg(feature = "local")]
    #[cfg_attr(docsrs, doc(cfg(feature = "local")))]
    pub async fn open_local_named(path: impl AsRef<Path>, name: &str) -> Result<Self, SessionError> {
        Self::open_local_named_with(path, name, Durability::default()).await
    }

    /// [`open_local_named`](Self::open_local_named) with another durability level.
    #[cfg(feature = "local")]
    #[cfg_attr(docsrs, doc(cfg(feature = "local")))]
    pub async fn open_local_named_with(
        path: impl AsRef<Path>,
        name: &str,
        durability: Durability,
    ) -> Result<Self, SessionError> {
        Self::open_local_inner(path.as_ref(), name, durability, None).await
    }

    /// [`open_local`](Self::open_local) sealed (encrypted at rest) with `keys`: exactly
    /// [`SqliteBackend::open_with_key`] (a sealed database opened without a key is
    /// [`SessionError::Sealed`], with a keyring lacking its key [`SessionError::WrongKey`]).
    #[cfg(feature = "local")]
    #[cfg_attr(docsrs, doc(cfg(feature = "local")))]
    pub async fn open_local_with_key(path: impl AsRef<Path>, keys: Keyring) -> Result<Self, SessionError> {
        Self::open_local_inner(path.as_ref(), session_sql::lease::DEFAULT_SESSION, Durability::default(), Some(keys))
            .await
    }

    /// [`open_local_named_with`](Self::open_local_named_with) sealed with `keys`.
    #[cfg(feature = "local")]
    #[cfg_attr(docsrs, doc(cfg(feature = "local")))]
    pub async fn open_local_named_with_key(
        path: impl AsRef<Path>,
        name: &str,
        durability: Durability,
        keys: Keyring,
    ) -> Result<Self, SessionError> {
        Self::open_local_inner(path.as_ref(), name, durability, Some(keys)).await
    }

    #[cfg(feature = "local")]
    async fn open_local_inner(
        path: &Path,
        name: &str,
        durability: Durability,
        keys: Option<Keyring>,
    ) -> Result<Self, SessionError> {
        let span = tracing::info_span!(
            "open",
            backend = "libsql-local",
            path = %path.display(),
            durability = ?durability,
            elapsed_us = Empty
        );
        let open = async {
            match keys {
                Some(keys) => SqliteBackend::open_named_with_key(path, name, durability, keys).await,
                None => SqliteBackend::open_named_with(path, name, durability).await,
            }
        };
        let local = trace::timed(span, open).await?;
        Ok(Self { inner: Inner::Local(local, Mode::Local), lease: None, session: name.to_owned() })
    }

    /// A session database in memory: same schema and rules, nothing survives the backend.
    #[cfg(feature = "local")]
    #[cfg_attr(docsrs, doc(cfg(feature = "local")))]
    pub async fn in_memory() -> Result<Self, SessionError> {
        let span = tracing::info_span!("open", backend = "libsql-memory", path = ":memory:", elapsed_us = Empty);
        let local = trace::timed(span, SqliteBackend::in_memory()).await?;
        Ok(Self {
            inner: Inner::Local(local, Mode::Memory),
            lease: None,
            session: session_sql::lease::DEFAULT_SESSION.to_owned(),
        })
    }

    /// Connects to a libSQL server, takes the session's lease and brings the schema up to date.
    ///
    /// `url` is `libsql://host` (HTTPS, as Turso hands them out), `https://host[:port]` or
    /// `http://host:port` (a local sqld). `auth_token` is the JWT the server expects (empty for a
    /// server without authentication). The server must answer: a server that is down gives
    /// [`SessionError::Unavailable`], a refused token [`SessionError::Unauthorized`].
    ///
    /// The session has one owner at a time, wherever the owners run: this call takes its lease
    /// (see [`RemoteOptions`]) and fails with [`SessionError::Locked`], naming the holder's host,
    /// pid and when its lease expires, while another backend holds it. The lease is renewed in
    /// the background, checked inside every write (a writer that lost it gets
    /// [`SessionError::LeaseLost`] and the server keeps nothing of that write), and released by
    /// [`SessionStore::close`] (a client's shutdown) or, after a crash, expires after its time
    /// to live (30 s by default).
    pub async fn open_remote(url: &str, auth_token: &str) -> Result<Self, SessionError> {
        Self::open_remote_with(url, auth_token, RemoteOptions::default()).await
    }

    /// [`open_remote`](Self::open_remote) with a limit on how long one call may take (waiting
    /// behind this process's other calls included) before it fails with
    /// [`SessionError::Unavailable`] (default 10 s).
    pub async fn open_remote_with_timeout(
        url: &str,
        auth_token: &str,
        timeout: Duration,
    ) -> Result<Self, SessionError> {
        Self::open_remote_with(url, auth_token, RemoteOptions::default().timeout(timeout)).await
    }

    /// [`open_remote`](Self::open_remote) with options: the session's name
    /// ([`RemoteOptions::session`]: one database holds any number of named sessions, each with
    /// its own lease), the call timeout, the lease's time to live, waiting for a previous owner.
    pub async fn open_remote_with(url: &str, auth_token: &str, options: RemoteOptions) -> Result<Self, SessionError> {
        Self::open_remote_inner(url, auth_token, options, None).await
    }

    /// [`open_remote_with`](Self::open_remote_with) for a session sealed (encrypted at rest)
    /// with `keys`: the server stores only ciphertext, placeholders and the ids rows are keyed
    /// by (see the book's encryption page). A database sealed by another key is
    /// [`SessionError::WrongKey`], one opened without a key [`SessionError::Sealed`]; a new or
    /// empty database becomes sealed, and a plain one whose only stored session is this one is
    /// sealed at open (its rows rewritten in one fenced transaction). A plain database holding
    /// other sessions is refused with [`SessionError::Invalid`].
    pub async fn open_remote_with_key(
        url: &str,
        auth_token: &str,
        options: RemoteOptions,
        keys: Keyring,
    ) -> Result<Self, SessionError> {
        Self::open_remote_inner(url, auth_token, options, Some(keys)).await
    }

    async fn open_remote_inner(
        url: &str,
        auth_token: &str,
        options: RemoteOptions,
        keys: Option<Keyring>,
    ) -> Result<Self, SessionError> {
        session_sql::check_name(&options.session)?;
        // The URL as shown in errors: no `user:password@`, no query (`authToken=`); the token
        // itself is never a field.
        let span = tracing::info_span!(
            "open",
            backend = "libsql-remote",
            url = %remote::shown_url(url),
            timeout_ms = u64::try_from(options.timeout.as_millis()).unwrap_or(u64::MAX),
            lease_token = Empty,
            elapsed_us = Empty
        );
        let open = async {
            // Nothing is written (the lease included) to a database that is not ours.
            let mut remote = Remote::connect(url, auth_token, options.timeout).await?;
            let checked = remote.check().await?;
            let lease = take_lease(&remote, auth_token, &options).await?;
            Span::current().record("lease_token", lease.token());
            let setup = async {
                let known = remote.setup(checked).await?;
                let sealed = remote.check_seal(keys, known).await?;
                remote.register(&options.session).await?;
                match sealed {
                    Some(s) => remote.seal_with(s, &options.session, Some((&options.session, lease.fence()?))).await,
                    None => Ok(()),
                }
            };
            match setup.await {
                Ok(()) => {
                    Ok(Self { inner: Inner::Remote(remote), lease: Some(lease), session: options.session.clone() })
                }
                Err(e) => Err(lease.give_back(e).await),
            }
        };
        trace::timed(span, open).await
    }

    /// Opens an embedded replica: a local SQLite file at `path` (a [`SqliteBackend`], with its
    /// single-owner lock) holding a copy of the session on the server at `url`, and takes the
    /// session's lease on the server (as [`open_remote`](Self::open_remote) does).
    ///
    /// Reads are served by the copy; writes go to the server first and then to the copy. The
    /// copy is brought up to date now (the server must answer), on every write, and by
    /// [`sync`](Self::sync). See the crate docs.
    #[cfg(feature = "local")]
    #[cfg_attr(docsrs, doc(cfg(feature = "local")))]
    pub async fn open_replica(path: impl AsRef<Path>, url: &str, auth_token: &str) -> Result<Self, SessionError> {
        Self::open_replica_with(path, url, auth_token, RemoteOptions::default()).await
    }

    /// [`open_replica`](Self::open_replica) with options.
    #[cfg(feature = "local")]
    #[cfg_attr(docsrs, doc(cfg(feature = "local")))]
    pub async fn open_replica_with(
        path: impl AsRef<Path>,
        url: &str,
        auth_token: &str,
        options: RemoteOptions,
    ) -> Result<Self, SessionError> {
        Self::open_replica_inner(path.as_ref(), url, auth_token, options, None).await
    }

    /// [`open_replica_with`](Self::open_replica_with) sealed with `keys`: the server's rows as
    /// in [`open_remote_with_key`](Self::open_remote_with_key), and the local copy sealed with
    /// the same keys ([`SqliteBackend::open_with_key`]).
    #[cfg(feature = "local")]
    #[cfg_attr(docsrs, doc(cfg(feature = "local")))]
    pub async fn open_replica_with_key(
        path: impl AsRef<Path>,
        url: &str,
        auth_token: &str,
        options: RemoteOptions,
        keys: Keyring,
    ) -> Result<Self, SessionError> {
        Self::open_replica_inner(path.as_ref(), url, auth_token, options, Some(keys)).await
    }

    #[cfg(feature = "local")]
    async fn open_replica_inner(
        path: &Path,
        url: &str,
        auth_token: &str,
        options: RemoteOptions,
        keys: Option<Keyring>,
    ) -> Result<Self, SessionError> {
        // The copy is pulled whole on every open, so it needs no fsync: a copy cut short by a
        // crash is replaced before anything reads it.
        let span = tracing::info_span!(
            "open",
            backend = "libsql-replica",
            path = %path.display(),
            url = %remote::shown_url(url),
            lease_token = Empty,
            elapsed_us = Empty
        );
        let open = async {
            session_sql::check_name(&options.session)?;
            let local = match keys.clone() {
                Some(keys) => {
                    SqliteBackend::open_named_with_key(path, &options.session, Durability::ProcessCrash, keys).await?
                }
                None => SqliteBackend::open_named_with(path, &options.session, Durability::ProcessCrash).await?,
            };
            let mut remote = Remote::connect(url, auth_token, options.timeout).await?;
            let checked = remote.check().await?;
            let lease = take_lease(&remote, auth_token, &options).await?;
            Span::current().record("lease_token", lease.token());
            let replica = async {
                let known = remote.setup(checked).await?;
                let sealed = remote.check_seal(keys, known).await?;
                remote.register(&options.session).await?;
                if let Some(s) = sealed {
                    remote.seal_with(s, &options.session, Some((&options.session, lease.fence()?))).await?;
                }
                Replica::open(local, remote).await
            };
            match replica.await {
                Ok(replica) => {
                    Ok(Self { inner: Inner::Replica(replica), lease: Some(lease), session: options.session.clone() })
                }
                Err(e) => Err(lease.give_back(e).await),
            }
        };
        trace::timed(span, open).await
    }

    /// The token a write passes to its transaction (`None` without a lease), or `LeaseLost`.
    fn fence(&self) -> Result<Option<(&str, u64)>, SessionError> {
        match &self.lease {
            Some(lease) => Ok(Some((&self.session, lease.fence()?))),
            None => Ok(None),
        }
    }

    /// A write the server's fence refused ends the lease for good (another owner has it).
    fn fenced<T>(&self, result: Result<T, SessionError>) -> Result<T, SessionError> {
        match &self.lease {
            Some(lease) => lease.fenced(result),
            None => result,
        }
    }

    /// The sessions of the database on the server at `url`, by name, with who holds each one's
    /// lease and for how long (see [`SessionInfo`]). Reads only: takes no lease, migrates
    /// nothing. `timeout` bounds the call.
    pub async fn list_remote_sessions(
        url: &str,
        auth_token: &str,
        timeout: Duration,
    ) -> Result<Vec<SessionInfo>, SessionError> {
        Remote::connect(url, auth_token, timeout).await?.sessions().await
    }

    /// The sessions of the local database at `path` ([`SqliteBackend::list_sessions`]).
    #[cfg(feature = "local")]
    #[cfg_attr(docsrs, doc(cfg(feature = "local")))]
    pub async fn list_local_sessions(path: impl AsRef<Path>) -> Result<Vec<SessionInfo>, SessionError> {
        SqliteBackend::list_sessions(path).await
    }

    /// The name of the session this backend owns (`default` for the documented calls).
    pub fn session_name(&self) -> &str {
        &self.session
    }

    /// Which mode this backend runs in.
    pub fn mode(&self) -> Mode {
        match &self.inner {
            #[cfg(feature = "local")]
            Inner::Local(_, mode) => *mode,
            Inner::Remote(_) => Mode::Remote,
            #[cfg(feature = "local")]
            Inner::Replica(_) => Mode::Replica,
        }
    }

    /// The local file (local and replica modes).
    pub fn path(&self) -> Option<&Path> {
        match &self.inner {
            #[cfg(feature = "local")]
            Inner::Local(l, _) => l.path(),
            Inner::Remote(_) => None,
            #[cfg(feature = "local")]
            Inner::Replica(r) => r.local.path(),
        }
    }

    /// The server's URL as used over HTTP (remote and replica modes; `libsql://` shows as
    /// `https://`).
    pub fn url(&self) -> Option<&str> {
        match &self.inner {
            #[cfg(feature = "local")]
            Inner::Local(..) => None,
            Inner::Remote(r) => Some(&r.resource),
            #[cfg(feature = "local")]
            Inner::Replica(r) => Some(&r.remote.resource),
        }
    }

    /// Embedded replica: pulls the server's state into the local copy when the server changed
    /// since the copy was made (one small query when it did not). Returns whether it pulled.
    /// Other modes have nothing to sync and return `Ok(false)`.
    pub async fn sync(&self) -> Result<bool, SessionError> {
        match &self.inner {
            #[cfg(feature = "local")]
            Inner::Replica(r) => {
                let span = tracing::debug_span!(
                    "sync",
                    backend = self.name(),
                    url = %r.remote.resource,
                    pulled = Empty,
                    elapsed_us = Empty
                );
                let pulled = trace::timed(span.clone(), r.sync()).await?;
                span.record("pulled", pulled);
                Ok(pulled)
            }
            _ => Ok(false),
        }
    }

    /// A debug span of one call: the backend's name, where the session is, and what every span
    /// records later (`peers`, `elapsed_us`).
    fn span(&self, name: &'static str, changes: Option<usize>) -> Span {
        let path = match self.mode() {
            Mode::Memory => Some(PathField::Memory),
            _ => self.path().map(PathField::File),
        };
        let url = self.url();
        // `tracing` needs one callsite per span name.
        macro_rules! span {
            ($name:literal) => {
                tracing::debug_span!(
                    $name,
                    backend = self.name(),
                    path = path.as_ref().map(tracing::field::display),
                    url = url,
                    changes,
                    peers = Empty,
                    elapsed_us = Empty
                )
            };
        }
        match name {
            "load" => span!("load"),
            "save" => span!("save"),
            "delete" => span!("delete"),
            _ => span!("persist"),
        }
    }

    async fn load_data(&self) -> Result<Option<SessionData>, SessionError> {
        let span = self.span("load", None);
        let load = async {
            match &self.inner {
                #[cfg(feature = "local")]
                Inner::Local(l, _) => l.load_session().await.map_err(|e| SessionError::from_boxed(e, self.name())),
                Inner::Remote(r) => Ok(r.load().await?.0),
                #[cfg(feature = "local")]
                Inner::Replica(r) => r.load().await,
            }
        };
        let data = trace::timed(span.clone(), load).await?;
        if let Some(data) = &data {
            span.record("peers", data.peers.len());
        }
        Ok(data)
    }

    async fn save_data(&self, data: &SessionData) -> Result<(), SessionError> {
        // Refused here (lease not held, or too close to expiry), the write is not attempted and
        // the lease keeps its status; only the server's fence refusing it ends the lease.
        let fence = self.fence()?;
        let span = self.span("save", None);
        span.record("peers", data.peers.len());
        let save = async {
            match &self.inner {
                #[cfg(feature = "local")]
                Inner::Local(l, _) => l.save_session(data).await.map_err(|e| SessionError::from_boxed(e, self.name())),
                Inner::Remote(r) => r.save(fence, data).await,
                #[cfg(feature = "local")]
                Inner::Replica(r) => r.save_session(fence, data).await,
            }
        };
        self.fenced(trace::timed(span, save).await)
    }
}

/// The `path` field of a span: the local file, or `:memory:`.
/// How a remote or replica backend reaches its server and which session it owns.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteOptions {
    /// The name of the session to open (default `"default"`, the one the documented calls
    /// open). A database holds any number of named sessions; each has its own rows and its own
    /// lease, so one owner per session, wherever the owners run.
    pub session: String,
    /// How long one call may take, waiting behind this process's other calls included, before
    /// it fails with [`SessionError::Unavailable`]. Default 10 s: well inside the lease's time to
    /// live, so a frozen server is noticed before the lease could expire.
    pub timeout: Duration,
    /// The lease: its time to live (default 30 s) and how long opening waits for a previous
    /// owner (default: not at all, `Locked` at once).
    pub lease: LeaseOptions,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            session: session_sql::lease::DEFAULT_SESSION.to_owned(),
            timeout: remote::DEFAULT_TIMEOUT,
            lease: LeaseOptions::default(),
        }
    }
}

impl RemoteOptions {
    /// Opens the session called `name` instead of `default` (1 to 255 bytes without control
    /// characters): its lease, its fence and its rows are its own.
    pub fn session(mut self, name: impl Into<String>) -> Self {
        self.session = name.into();
        self
    }

    /// Sets the per-call timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the lease options.
    pub fn lease(mut self, lease: LeaseOptions) -> Self {
        self.lease = lease;
        self
    }

    /// Waits up to `wait` for a previous owner to release or lose the session (a rolling
    /// deploy: the new process starts while the old one shuts down).
    pub fn wait_for_owner(mut self, wait: Duration) -> Self {
        self.lease = self.lease.waiting(wait);
        self
    }
}

/// Takes the session's lease on a connection of its own beside `remote`'s.
async fn take_lease(remote: &Remote, auth_token: &str, options: &RemoteOptions) -> Result<Lease, SessionError> {
    // The lease's calls end (and reset their connection) by themselves before the keeper's own
    // bound on a lease call would cancel them mid-request.
    let timeout = options.timeout.min(options.lease.call_timeout() * 4 / 5);
    let store = LibSqlLeases::beside(remote, auth_token, timeout, &options.session)?;
    Lease::acquire(Arc::new(store), options.lease).await
}

enum PathField<'a> {
    File(&'a Path),
    Memory,
}

impl std::fmt::Display for PathField<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathField::File(p) => p.display().fmt(f),
            PathField::Memory => f.write_str(":memory:"),
        }
    }
}

#[async_trait]
impl SessionBackend for LibSqlBackend {
    async fn load(&self) -> Result<Option<Vec<u8>>, BoxError> {
        match self.load_data().await.map_err(boxed)? {
            Some(data) => Ok(Some(codec::encode(&data)?)),
            None => Ok(None),
        }
    }

    async fn save(&self, data: &[u8]) -> Result<(), BoxError> {
        if data.is_empty() {
            return self.delete().await;
        }
        let data = codec::decode(data)?;
        self.save_data(&data).await.map_err(boxed)
    }

    async fn delete(&self) -> Result<(), BoxError> {
        let fence = self.fence().map_err(boxed)?;
        let delete = async {
            match &self.inner {
                #[cfg(feature = "local")]
                Inner::Local(l, _) => l.delete().await.map_err(|e| SessionError::from_boxed(e, self.name())),
                Inner::Remote(r) => r.delete(fence).await,
                #[cfg(feature = "local")]
                Inner::Replica(r) => r.delete(fence).await,
            }
        };
        self.fenced(trace::timed(self.span("delete", None), delete).await).map_err(boxed)
    }

    fn name(&self) -> &str {
        match self.mode() {
            Mode::Local => "libsql-local",
            Mode::Memory => "libsql-memory",
            Mode::Remote => "libsql-remote",
            Mode::Replica => "libsql-replica",
        }
    }

    async fn load_session(&self) -> Result<Option<SessionData>, BoxError> {
        self.load_data().await.map_err(boxed)
    }

    async fn save_session(&self, data: &SessionData) -> Result<(), BoxError> {
        self.save_data(data).await.map_err(boxed)
    }

    fn lease(&self) -> Option<tokio::sync::watch::Receiver<LeaseStatus>> {
        self.lease.as_ref().map(Lease::watch)
    }

    async fn close(&self) -> Result<(), BoxError> {
        match &self.lease {
            Some(lease) => lease.release().await.map_err(boxed),
            None => Ok(()),
        }
    }

    async fn persist(&self, changes: &[Change], full: &SessionData) -> Result<(), BoxError> {
        let fence = self.fence().map_err(boxed)?;
        let persist = async {
            match &self.inner {
                #[cfg(feature = "local")]
                Inner::Local(l, _) => {
                    l.persist(changes, full).await.map_err(|e| SessionError::from_boxed(e, self.name()))
                }
                Inner::Remote(r) => r.persist(fence, changes, full).await,
                #[cfg(feature = "local")]
                Inner::Replica(r) => r.persist(fence, changes, full).await,
            }
        };
        self.fenced(trace::timed(self.span("persist", Some(changes.len())), persist).await).map_err(boxed)
    }
}
