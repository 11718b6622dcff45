#![doc = include_str!("../README.md")]

mod remote;
mod replica;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use session_core::{codec, BoxError};
use session_sqlite::{schema, SqliteBackend};

pub use session_sqlite::Durability;

/// The model, trait and store this crate plugs into, re-exported so that depending on this crate
/// alone is enough (`session_core` is the same crate the other backends use).
pub use session_core;
pub use session_core::{AuthKey, Change, SessionBackend, SessionData, SessionError, SessionStore};

use crate::remote::Remote;
use crate::replica::Replica;

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

/// A session in the schema of `session_sqlite::schema`, kept in a local file, on a libSQL
/// server (Turso, sqld), or in both (an embedded replica). See the crate docs for what each
/// mode promises.
///
/// Every method is async and never blocks the runtime: the local SQLite side runs on tokio's
/// blocking pool (through [`SqliteBackend`]), the remote side is HTTP.
#[derive(Debug)]
pub struct LibSqlBackend {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Local(SqliteBackend, Mode),
    Remote(Remote),
    Replica(Replica),
}

fn boxed(e: SessionError) -> BoxError {
    Box::new(e)
}

impl LibSqlBackend {
    /// Opens (or creates) a local session database at `path`: exactly a
    /// [`SqliteBackend`] file (same engine, schema, durability and single-owner lock).
    pub async fn open_local(path: impl AsRef<Path>) -> Result<Self, SessionError> {
        let local = SqliteBackend::open(path).await?;
        Ok(Self { inner: Inner::Local(local, Mode::Local) })
    }

    /// [`open_local`](Self::open_local) with another durability level than the default
    /// ([`Durability::PowerLoss`]: every write fsynced before it is acknowledged); see
    /// `session-sqlite`.
    pub async fn open_local_with(path: impl AsRef<Path>, durability: Durability) -> Result<Self, SessionError> {
        let local = SqliteBackend::open_with(path, durability).await?;
        Ok(Self { inner: Inner::Local(local, Mode::Local) })
    }

    /// A session database in memory: same schema and rules, nothing survives the backend.
    pub async fn in_memory() -> Result<Self, SessionError> {
        let local = SqliteBackend::in_memory().await?;
        Ok(Self { inner: Inner::Local(local, Mode::Memory) })
    }

    /// Connects to a libSQL server and brings its schema up to date.
    ///
    /// `url` is `libsql://host` (HTTPS, as Turso hands them out), `https://host[:port]` or
    /// `http://host:port` (a local sqld). `auth_token` is the JWT the server expects (empty for a
    /// server without authentication). The server must answer: a server that is down gives
    /// [`SessionError::Unavailable`], a refused token [`SessionError::Unauthorized`].
    pub async fn open_remote(url: &str, auth_token: &str) -> Result<Self, SessionError> {
        Self::open_remote_with_timeout(url, auth_token, remote::DEFAULT_TIMEOUT).await
    }

    /// [`open_remote`](Self::open_remote) with a limit on how long one call may wait for the
    /// server before it fails with [`SessionError::Unavailable`] (default 60 s).
    pub async fn open_remote_with_timeout(
        url: &str,
        auth_token: &str,
        timeout: Duration,
    ) -> Result<Self, SessionError> {
        let remote = Remote::open(url, auth_token, timeout).await?;
        Ok(Self { inner: Inner::Remote(remote) })
    }

    /// Opens an embedded replica: a local SQLite file at `path` (a [`SqliteBackend`], with its
    /// single-owner lock) holding a copy of the session on the server at `url`.
    ///
    /// Reads are served by the copy; writes go to the server first and then to the copy. The
    /// copy is brought up to date now (the server must answer), on every write, and by
    /// [`sync`](Self::sync). See the crate docs.
    pub async fn open_replica(path: impl AsRef<Path>, url: &str, auth_token: &str) -> Result<Self, SessionError> {
        // The copy is pulled whole on every open, so it needs no fsync: a copy cut short by a
        // crash is replaced before anything reads it.
        let local = SqliteBackend::open_with(path, Durability::ProcessCrash).await?;
        let remote = Remote::open(url, auth_token, remote::DEFAULT_TIMEOUT).await?;
        Ok(Self { inner: Inner::Replica(Replica::open(local, remote).await?) })
    }

    /// Which mode this backend runs in.
    pub fn mode(&self) -> Mode {
        match &self.inner {
            Inner::Local(_, mode) => *mode,
            Inner::Remote(_) => Mode::Remote,
            Inner::Replica(_) => Mode::Replica,
        }
    }

    /// The local file (local and replica modes).
    pub fn path(&self) -> Option<&Path> {
        match &self.inner {
            Inner::Local(l, _) => l.path(),
            Inner::Remote(_) => None,
            Inner::Replica(r) => r.local.path(),
        }
    }

    /// The server's URL as used over HTTP (remote and replica modes; `libsql://` shows as
    /// `https://`).
    pub fn url(&self) -> Option<&str> {
        match &self.inner {
            Inner::Local(..) => None,
            Inner::Remote(r) => Some(&r.resource),
            Inner::Replica(r) => Some(&r.remote.resource),
        }
    }

    /// Embedded replica: pulls the server's state into the local copy when the server changed
    /// since the copy was made (one small query when it did not). Returns whether it pulled.
    /// Other modes have nothing to sync and return `Ok(false)`.
    pub async fn sync(&self) -> Result<bool, SessionError> {
        match &self.inner {
            Inner::Replica(r) => r.sync().await,
            _ => Ok(false),
        }
    }

    async fn load_data(&self) -> Result<Option<SessionData>, SessionError> {
        match &self.inner {
            Inner::Local(l, _) => l.load_session().await.map_err(|e| SessionError::from_boxed(e, self.name())),
            Inner::Remote(r) => Ok(r.load().await?.0),
            Inner::Replica(r) => r.load().await,
        }
    }

    async fn save_data(&self, data: &SessionData) -> Result<(), SessionError> {
        match &self.inner {
            Inner::Local(l, _) => l.save_session(data).await.map_err(|e| SessionError::from_boxed(e, self.name())),
            Inner::Remote(r) => r.write(schema::save_plan(data)).await.map(drop),
            Inner::Replica(r) => r.save_session(data).await,
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
        match &self.inner {
            Inner::Local(l, _) => l.delete().await,
            Inner::Remote(r) => r.write(schema::delete_plan()).await.map(drop).map_err(boxed),
            Inner::Replica(r) => r.delete().await.map_err(boxed),
        }
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

    async fn persist(&self, changes: &[Change], full: &SessionData) -> Result<(), BoxError> {
        match &self.inner {
            Inner::Local(l, _) => l.persist(changes, full).await,
            Inner::Remote(r) => r.write(schema::persist_plan(changes, full)?).await.map(drop).map_err(boxed),
            Inner::Replica(r) => r.persist(changes, full).await.map_err(boxed),
        }
    }
}
