//! Session backends: where a [`Client`](crate::Client) keeps its session.
//!
//! Every backend implements [`SessionBackend`] from `session-core`; pass any of them (or your
//! own) to [`ClientBuilder::session`](crate::ClientBuilder::session). Users who need only a
//! backend (to convert or inspect sessions) can depend on its crate alone.
//!
//! | backend | feature | crate | for |
//! | --- | --- | --- | --- |
//! | [`BinaryFileBackend`] | default | `session-file` | the default: one crash-safe file |
//! | [`InMemoryBackend`] | default | `session-core` | tests, throw-away bots |
//! | [`StringSessionBackend`] | default | `session-string` | env vars, CI, serverless |
//! | `SqliteBackend` | `sqlite-session` | `session-sqlite` | production bots, `.db` paths |
//! | `LibSqlBackend` | `libsql-session` | `session-libsql` | sessions on a libSQL server (Turso, sqld) |
//! | `RedisBackend` | `redis-session` | `session-redis` | named sessions on a Redis server, one owner each |
//! | `PostgresBackend` | `postgres-session` | `session-postgres` | named sessions in a PostgreSQL database, one owner each |
//!
//! [`Config::session_path`](crate::Config::session_path) picks a backend by file name: a path
//! ending in `.db` is opened with `SqliteBackend` (an error naming the feature when
//! `sqlite-session` is off), anything else with [`BinaryFileBackend`].

use std::path::PathBuf;
use std::sync::Arc;

pub use session_core::{InMemoryBackend, SessionBackend};
pub use session_file::BinaryFileBackend;
#[cfg(feature = "libsql-session")]
#[cfg_attr(docsrs, doc(cfg(feature = "libsql-session")))]
pub use session_libsql::LibSqlBackend;
#[cfg(feature = "postgres-session")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres-session")))]
pub use session_postgres::{PostgresBackend, PostgresOptions};
#[cfg(feature = "redis-session")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis-session")))]
pub use session_redis::{RedisBackend, RedisOptions};
#[cfg(feature = "sqlite-session")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite-session")))]
pub use session_sqlite::SqliteBackend;
pub use session_string::StringSessionBackend;

use crate::error::ClientError;

/// Opens the backend a session path selects: `.db` is SQLite, anything else the binary file.
pub(crate) async fn open_path(
    path: PathBuf,
    key: Option<session_core::Keyring>,
) -> Result<Arc<dyn SessionBackend>, ClientError> {
    if selects_sqlite(&path) {
        #[cfg(feature = "sqlite-session")]
        return Ok(Arc::new(match key {
            Some(keys) => SqliteBackend::open_with_key(&path, keys).await?,
            None => SqliteBackend::open(&path).await?,
        }));
        #[cfg(not(feature = "sqlite-session"))]
        return Err(ClientError::FeatureDisabled { feature: "sqlite-session", path });
    }
    Ok(Arc::new(match key {
        Some(keys) => BinaryFileBackend::open_with_key(path, keys).await?,
        None => BinaryFileBackend::open(path).await?,
    }))
}

/// Whether a session path selects SQLite (its extension is `db`, in any case).
pub(crate) fn selects_sqlite(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("db"))
}

/// A string-backed session.
///
/// A string that cannot be read is not an error here: the backend reports it from `load`, so
/// the store refuses to open and the client never starts a new login over it.
pub(crate) async fn open_string(
    session: String,
    key: Option<session_core::Keyring>,
) -> Result<Arc<dyn SessionBackend>, ClientError> {
    Ok(match key {
        None => Arc::new(StringSessionBackend::new(&session)),
        // Opening or sealing with a passphrase derives its key (Argon2id): off the runtime.
        Some(keys) => Arc::new(
            tokio::task::spawn_blocking(move || StringSessionBackend::new_sealed(&session, keys))
                .await
                .map_err(|e| ClientError::Config(format!("session string task failed: {e}")))?,
        ),
    })
}

/// Our full string form of a session.
pub(crate) fn encode_string(data: &session_core::SessionData) -> Result<String, ClientError> {
    Ok(session_string::encode_full(data)?)
}
