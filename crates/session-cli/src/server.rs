//! PostgreSQL and Redis locations: the backend of a `postgres://` or `redis://` session opened
//! for one read or one write (its lease taken, as every owner takes it, and handed back when the
//! command is done), in bounded time, and what the server answered phrased without a password.

use std::time::Duration;

use session_core::{Keyring, SessionBackend, SessionError};
use session_postgres::{PostgresBackend, PostgresOptions};
use session_redis::{RedisBackend, RedisOptions};

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
    if url.get(..9).is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://")) {
        // The driver would call it "not a Redis URL", which sends the user looking for a typo.
        return Ok(Err(SessionError::invalid(
            "Redis URL",
            "rediss:// (Redis over TLS) is not built into this layer-session (the redis crate's TLS \
             support is not compiled in); reach the server through a TLS tunnel and a redis:// URL",
        )));
    }
    let open = async {
        match server.kind {
            ServerKind::Postgres => {
                let options = PostgresOptions::new().session(server.session()).call_timeout(timeout).pool_size(1);
                match keys {
                    None => options.open(url).await,
                    Some(keys) => options.open_with_key(url, keys).await,
                }
                .map(Opened::Postgres)
            }
            ServerKind::Redis => {
                let mut options = RedisOptions::new()
                    .session(server.session())
                    .call_timeout(timeout)
                    .allow_volatile(purpose == Purpose::Read);
                if let Some(keys) = keys {
                    options = options.key(keys);
                }
                options.open(url).await.map(Opened::Redis)
            }
        }
    };
    Ok(match tokio::time::timeout(timeout.saturating_mul(3), open).await {
        Ok(r) => r,
        Err(_) => Err(SessionError::Unavailable {
            resource: server.to_string(),
            source: format!("no answer within {:.1} s", timeout.saturating_mul(3).as_secs_f64()).into(),
        }),
    })
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
                Purpose::Read => format!(
                    "is held by a running program, {who}{expiry}; reading it takes its lease, so stop the program first"
                ),
            }
        }
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
