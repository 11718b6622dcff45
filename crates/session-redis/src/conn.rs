//! The connection to the server: one multiplexed connection, replaced after a failure, every
//! call bounded by the per-call timeout, and the driver's errors mapped to the shared kinds.
//!
//! Why a [`MultiplexedConnection`] and not the driver's `ConnectionManager`: one socket carries
//! the concurrent calls of a backend (its writes, loads and lease renewals) without a pool, and
//! reconnecting is done here, at the start of the next call, inside that call's timeout. The
//! manager reconnects in the background with its own retries and backoff, which would either
//! hide a wrong password behind retries or keep a call waiting past our bound.

use std::future::Future;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisError, ServerErrorKind};
use session_core::SessionError;
use tokio::sync::Mutex;

use crate::scripts;
use crate::url::Redacted;

/// The default bound on one call, queueing and reconnecting included.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Conn {
    client: redis::Client,
    current: Mutex<Option<MultiplexedConnection>>,
    timeout: Duration,
    pub(crate) url: Redacted,
}

impl Conn {
    /// A client for `url`; nothing is connected yet.
    pub(crate) fn new(url: &str, timeout: Duration) -> Result<Conn, SessionError> {
        let shown = Redacted::new(url);
        let client = redis::Client::open(url).map_err(|e| {
            // The driver's message may quote the URL: only our redacted form is shown.
            let _ = e;
            SessionError::invalid(
                "Redis URL",
                format!("{} is not a redis://, rediss:// or redis+unix:// URL", shown.shown),
            )
        })?;
        Ok(Conn { client, current: Mutex::new(None), timeout, url: shown })
    }

    async fn connection(&self) -> Result<MultiplexedConnection, RedisError> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref() {
            return Ok(c.clone());
        }
        // The driver's own timeouts are the same bound; ours (around the whole call) is the one
        // that counts, theirs only ends a stuck socket sooner.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let mut c = self.client.get_multiplexed_async_connection_with_config(&config).await?;
        // A PING proves the peer speaks RESP (a web server on the port fails here, typed).
        let pong: String = redis::cmd("PING").query_async(&mut c).await?;
        if pong != "PONG" {
            return Err(RedisError::from((ErrorKind::Parse, "the server did not answer PING with PONG")));
        }
        // Loaded once per connection so that a large write is never sent twice (the driver
        // resends a script's whole call after NOSCRIPT).
        for script in scripts::all() {
            script.load_async(&mut c).await?;
        }
        *current = Some(c.clone());
        Ok(c)
    }

    /// Runs `call` on the connection within the per-call timeout (waiting for the connection
    /// and for calls queued before it included). A failed or timed-out connection is dropped,
    /// so the next call connects afresh.
    pub(crate) async fn run<T, F, Fut>(&self, call: F) -> Result<T, SessionError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        self.run_raw(call).await.map_err(|e| self.map(e))
    }

    /// [`run`](Conn::run) that hands back the driver's error (for callers that look at it).
    pub(crate) async fn run_raw<T, F, Fut>(&self, call: F) -> Result<T, Failure>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let attempt = async {
            let c = self.connection().await?;
            call(c).await
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.kind() == ErrorKind::Parse {
                    self.reset().await;
                }
                Err(Failure::Redis(e))
            }
            Err(_) => {
                self.reset().await;
                Err(Failure::Timeout(self.timeout))
            }
        }
    }

    async fn reset(&self) {
        // A call stuck on a frozen server may hold the lock; dropping a connection is an
        // optimisation, never worth waiting for.
        if let Ok(mut current) = self.current.try_lock() {
            *current = None;
        }
    }

    /// The shared error kind of a failure, with every password scrubbed from its text.
    pub(crate) fn map(&self, failure: Failure) -> SessionError {
        let resource = self.url.shown.clone();
        let e = match failure {
            Failure::Timeout(t) => {
                return SessionError::Unavailable {
                    resource,
                    source: format!("no answer within {} ms", t.as_millis()).into(),
                }
            }
            Failure::Redis(e) => e,
        };
        let text = self.url.scrub(&e.to_string());
        let code = e.code().unwrap_or("");
        match e.kind() {
            ErrorKind::AuthenticationFailed => SessionError::Unauthorized { resource, source: text.into() },
            _ if matches!(code, "WRONGPASS" | "NOAUTH" | "NOPERM") => {
                SessionError::Unauthorized { resource, source: text.into() }
            }
            ErrorKind::Server(ServerErrorKind::NoPerm) => SessionError::Unauthorized { resource, source: text.into() },
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly,
            ) => SessionError::Unavailable { resource, source: text.into() },
            ErrorKind::InvalidClientConfig => SessionError::invalid("Redis configuration", text),
            ErrorKind::Parse => SessionError::Backend {
                backend: "redis".to_owned(),
                source: format!("{resource} does not answer as a Redis server: {text}").into(),
            },
            _ if e.is_io_error() || e.is_timeout() || e.is_connection_refusal() || e.is_connection_dropped() => {
                SessionError::Unavailable { resource, source: text.into() }
            }
            _ => SessionError::Backend { backend: "redis".to_owned(), source: format!("{resource}: {text}").into() },
        }
    }
}

/// A call that did not succeed.
pub(crate) enum Failure {
    Timeout(Duration),
    Redis(RedisError),
}
