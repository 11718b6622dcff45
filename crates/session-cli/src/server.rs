//! PostgreSQL and Redis locations: the backend of a `postgres://` or `redis://` session opened
//! for one write (its lease taken, as every owner takes it, and handed back when the command is
//! done) or read without its lease (reading never uses the session's keys against Telegram, so
//! a running owner is left alone), in bounded time, and what the server answered phrased without
//! a password. The URL's own parameters (`schema=`, `prefix=`, `sslmode=`, `sslrootcert=`) become
//! the backends' options and TLS connector here.

use std::time::Duration;

use session_core::{KeyId, Keyring, SessionBackend, SessionData, SessionError};
use session_postgres::{PostgresBackend, PostgresOptions, SessionInfo};
use session_redis::{RedisBackend, RedisOptions, RedisSessionInfo};

use crate::error::{CliError, CliResult};
use crate::location::{ServerKind, ServerSession};

/// The environment variable that bounds each call to a PostgreSQL or Redis server, in seconds
/// (default [`DEFAULT_TIMEOUT`]).
pub const TIMEOUT_ENV: &str = "LAYER_SESSION_TIMEOUT";

/// The bound on each call to a server when [`TIMEOUT_ENV`] is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound on each call: [`TIMEOUT_ENV`] or [`DEFAULT_TIMEOUT`].
pub fn call_timeout() -> CliResult<Duration> {
    match std::env::var(TIMEOUT_ENV) {
        Err(_) => Ok(DEFAULT_TIMEOUT),
        Ok(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| CliError::usage(format!("{TIMEOUT_ENV}: `{text}` is not a number of seconds (0 to 3600)"))),
    }
}

/// What the session is opened for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A read: a Redis server that keeps nothing on disk is accepted (nothing is risked).
    Read,
    /// A write: such a server is refused (it would forget the session when it restarts).
    Write,
}

/// An opened session: it holds the session's lease until [`Opened::close`].
pub(crate) enum Opened {
    Postgres(PostgresBackend),
    Redis(RedisBackend),
}

impl Opened {
    pub(crate) fn backend(&self) -> &dyn SessionBackend {
        match self {
            Opened::Postgres(b) => b,
            Opened::Redis(b) => b,
        }
    }

    /// Hands the lease back, so that the session's next owner need not wait for it to expire.
    pub(crate) async fn close(self) -> Result<(), SessionError> {
        match self {
            Opened::Postgres(b) => b.close().await.map_err(|e| SessionError::from_boxed(e, "postgres")),
            Opened::Redis(b) => b.close().await,
        }
    }
}

/// The TLS connector a PostgreSQL location asks for (`None`: plain).
#[cfg(feature = "tls")]
type Connector = tokio_postgres_rustls::MakeRustlsConnect;
/// Without the `tls` feature there is no connector: a location that asks for TLS is refused.
#[cfg(not(feature = "tls"))]
type Connector = std::convert::Infallible;

fn postgres_tls(server: &ServerSession) -> Result<Option<Connector>, SessionError> {
    #[cfg(feature = "tls")]
    {
        crate::tls::postgres(server.ssl_mode(), server.root_cert())
            .map_err(|reason| SessionError::invalid("PostgreSQL TLS", reason))
    }
    #[cfg(not(feature = "tls"))]
    {
        match server.ssl_mode() {
            crate::location::SslMode::Disable => Ok(None),
            _ => Err(SessionError::invalid(
                "PostgreSQL TLS",
                "this layer-session is built without its `tls` feature: sslmode other than disable is not available",
            )),
        }
    }
}

/// `rediss://` is refused by a build without TLS (the driver would call it "not a Redis URL",
/// which sends the user looking for a typo); with TLS, the redis crate gets its provider.
fn redis_tls(server: &ServerSession) -> Result<(), SessionError> {
    let tls = server.connect_url().get(..9).is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"));
    #[cfg(feature = "tls")]
    if tls {
        crate::tls::install_provider();
    }
    #[cfg(not(feature = "tls"))]
    if tls {
        return Err(SessionError::invalid(
            "Redis URL",
            "rediss:// (Redis over TLS) is not built into this layer-session (built without its `tls` \
             feature); reach the server through a TLS tunnel and a redis:// URL",
        ));
    }
    Ok(())
}

fn postgres_options(server: &ServerSession, timeout: Duration) -> PostgresOptions {
    let options = PostgresOptions::new().session(server.session()).call_timeout(timeout).pool_size(1);
    match server.schema() {
        Some(schema) => options.schema(schema),
        None => options,
    }
}

fn redis_options(server: &ServerSession, timeout: Duration) -> RedisOptions {
    let options = RedisOptions::new().session(server.session()).call_timeout(timeout);
    match server.key_prefix() {
        Some(prefix) => options.key_prefix(prefix),
        None => options,
    }
}

/// `call` bounded by three call timeouts (a connection, the checks, the work), as an
/// `Unavailable` naming `server` when it runs out.
async fn bounded<T>(
    server: &ServerSession,
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, SessionError>>,
) -> Result<T, SessionError> {
    match tokio::time::timeout(timeout.saturating_mul(3), call).await {
        Ok(r) => r,
        Err(_) => Err(SessionError::Unavailable {
            resource: server.to_string(),
            source: format!("no answer within {:.1} s", timeout.saturating_mul(3).as_secs_f64()).into(),
        }),
    }
}

/// Opens `server`'s session, taking its lease. Every call of the backends is bounded by
/// [`call_timeout`]; the whole opening (connection, checks, lease) by three of them.
///
/// With `keys`, the session is sealed (encryption at rest): a sealed one is opened with them,
/// and a plain one is sealed (PostgreSQL at open, Redis by the first write).
pub(crate) async fn open(
    server: &ServerSession,
    purpose: Purpose,
    keys: Option<Keyring>,
) -> CliResult<Result<Opened, SessionError>> {
    let timeout = call_timeout()?;
    let url = server.connect_url();
    let open = async {
        match server.kind {
            ServerKind::Postgres => {
                let options = postgres_options(server, timeout);
                match (postgres_tls(server)?, keys) {
                    (None, None) => options.open(url).await,
                    (None, Some(keys)) => options.open_with_key(url, keys).await,
                    #[cfg(feature = "tls")]
                    (Some(tls), None) => options.open_with_tls(url, tls).await,
                    #[cfg(feature = "tls")]
                    (Some(tls), Some(keys)) => options.open_with_tls_and_key(url, tls, keys).await,
                    #[cfg(not(feature = "tls"))]
                    (Some(never), _) => match never {},
                }
                .map(Opened::Postgres)
            }
            ServerKind::Redis => {
                redis_tls(server)?;
                let mut options = redis_options(server, timeout).allow_volatile(purpose == Purpose::Read);
                if let Some(keys) = keys {
                    options = options.key(keys);
                }
                options.open(url).await.map(Opened::Redis)
            }
        }
    };
    Ok(bounded(server, timeout, open).await)
}

/// A session read without its lease: the session (`None`: none stored under the name) and the
/// id of the key it is sealed with.
pub(crate) type Snapshot = Option<(SessionData, Option<KeyId>)>;

/// Reads `server`'s session without taking its lease and without writing anything (the
/// backends' read-only opens): its owner, if one runs, is not disturbed. A sealed session is
/// opened with `keys`. Bounded as [`open`] is.
pub(crate) async fn read(server: &ServerSession, keys: Option<&Keyring>) -> CliResult<Result<Snapshot, SessionError>> {
    let timeout = call_timeout()?;
    let url = server.connect_url();
    let read = async {
        match server.kind {
            ServerKind::Postgres => {
                let options = postgres_options(server, timeout);
                match postgres_tls(server)? {
                    None => options.read_session(url, keys).await,
                    #[cfg(feature = "tls")]
                    Some(tls) => options.read_session_with_tls(url, tls, keys).await,
                    #[cfg(not(feature = "tls"))]
                    Some(never) => match never {},
                }
                .map(|s| s.map(|s| (s.data, s.sealed_with)))
            }
            ServerKind::Redis => {
                redis_tls(server)?;
                let mut options = redis_options(server, timeout);
                if let Some(keys) = keys {
                    options = options.key(keys.clone());
                }
                options.read_session(url).await.map(|s| s.map(|s| (s.data, s.sealed_with)))
            }
        }
    };
    Ok(bounded(server, timeout, read).await)
}

/// The sessions of a PostgreSQL schema (reads only, no lease).
pub(crate) async fn list_postgres(server: &ServerSession) -> CliResult<Result<Vec<SessionInfo>, SessionError>> {
    let timeout = call_timeout()?;
    let options = postgres_options(server, timeout);
    let url = server.connect_url();
    let list = async {
        match postgres_tls(server)? {
            None => options.list_sessions(url).await,
            #[cfg(feature = "tls")]
            Some(tls) => options.list_sessions_with_tls(url, tls).await,
            #[cfg(not(feature = "tls"))]
            Some(never) => match never {},
        }
    };
    Ok(bounded(server, timeout, list).await)
}

/// The sessions under a Redis key prefix (reads only, no lease).
pub(crate) async fn list_redis(server: &ServerSession) -> CliResult<Result<Vec<RedisSessionInfo>, SessionError>> {
    let timeout = call_timeout()?;
    let options = redis_options(server, timeout);
    let list = async {
        redis_tls(server)?;
        options.list_sessions(server.connect_url()).await
    };
    Ok(bounded(server, timeout, list).await)
}

/// What went wrong with `server`, for a message after its name: the kind first (unreachable,
/// credentials refused, held by an owner), without any password the URL carries.
pub(crate) fn describe(server: &ServerSession, e: &SessionError, purpose: Purpose) -> String {
    let text = match e {
        SessionError::Locked { holder, pid, expires_in, .. } => {
            let who = match (holder, pid) {
                (Some(h), _) => h.to_string(),
                (None, Some(pid)) => format!("pid {pid}"),
                (None, None) => "another owner".to_owned(),
            };
            let expiry = expires_in
                .map(|d| format!(" (its lease expires in {:.1} s unless renewed)", d.as_secs_f64()))
                .unwrap_or_default();
            match purpose {
                Purpose::Write => {
                    format!("is held by a running program, {who}{expiry}; stop it before replacing this session")
                }
                Purpose::Read => format!("is held by a running program, {who}{expiry}"),
            }
        }
        SessionError::Unavailable { source, .. } if is_tls_refusal(&chain(source.as_ref())) => format!(
            "the TLS connection was refused: the server's certificate is not trusted{} ({})",
            match server.root_cert() {
                Some(path) => format!(" by sslrootcert {}", crate::location::shown_path(path)),
                None =>
                    " by the system's roots (give its CA with sslrootcert=PATH, or SSL_CERT_FILE for Redis)".to_owned(),
            },
            chain(source.as_ref())
        ),
        SessionError::Unavailable { source, .. } => {
            let kind = match server.kind {
                ServerKind::Postgres => "PostgreSQL",
                ServerKind::Redis => "Redis",
            };
            format!(
                "the server cannot be reached, closed the connection or did not answer in time \
                 (is a {kind} server listening there?): {source}"
            )
        }
        SessionError::Unauthorized { source, .. } => {
            format!("the server refused the credentials (wrong user or password?): {source}")
        }
        other => crate::keys::describe(other),
    };
    scrub(&text, server.secrets())
}

/// An error and every error under it, as one text (a driver's top error often says only "error
/// performing TLS handshake"; the reason is underneath).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(inner) = next {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        next = inner.source();
    }
    text
}

/// A failure of the TLS handshake over the certificate (a wrong or missing CA, a name that does
/// not match): retrying cannot help, so it is said plainly, not as "cannot be reached".
fn is_tls_refusal(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("invalid peer certificate")
        || text.contains("certificate verify failed")
        || text.contains("unknownissuer")
}

/// `text` with every one of `secrets` replaced by `***`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        if !s.is_empty() {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}
