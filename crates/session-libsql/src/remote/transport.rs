//! The one connection to the server: connecting, the per-call timeout (with the client's own
//! logging silenced, since a write's SQL text carries keys), and the batch call every write and
//! migration goes through.

use std::time::Duration;

use session_core::SessionError;
use session_sql::SqlValueRef;
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;
use tracing::instrument::WithSubscriber as _;
use tracing::Dispatch;

use super::errors::{map_error, too_large};
use super::url::http_url;
use super::Remote;

impl Remote {
    /// Connects without touching the schema (the lease's own connection).
    pub(crate) async fn connect(url: &str, auth_token: &str, timeout: Duration) -> Result<Remote, SessionError> {
        let http = http_url(url)?;
        let resource = http.split(['?', '#']).next().unwrap_or_default().to_owned();
        let plain = http.starts_with("http://");
        let pipeline = super::pipeline::Pipeline::new(&http, auth_token).map(std::sync::Arc::new);
        let mut builder = libsql::Builder::new_remote(http, auth_token.to_owned());
        if plain {
            // libsql's own connector loads and parses the system's TLS roots on every build
            // (2-4 ms of each open, measured on a local sqld), which a plain `http://` URL never
            // uses: it gets a TCP connector, with Nagle off as libsql's own sets it.
            let mut tcp = hyper::client::HttpConnector::new();
            tcp.set_nodelay(true);
            builder = builder.connector(tcp);
        }
        let db = builder.build().with_subscriber(Dispatch::none()).await.map_err(|e| map_error(e, &resource))?;
        let conn = tracing::dispatcher::with_default(&Dispatch::none(), || db.connect())
            .map_err(|e| map_error(e, &resource))?;
        Ok(Remote {
            conn: Mutex::new(conn),
            db: std::sync::Arc::new(db),
            resource,
            timeout,
            sid: session_sql::DEFAULT_SESSION_ID,
            seal: None,
            known: Default::default(),
            pipeline,
        })
    }

    /// Another connection (a Hrana stream and HTTP connection of its own) to the same server
    /// through the same client, whose calls fail after `timeout`: the lease's, made without
    /// building a second client.
    pub(crate) fn sibling(&self, timeout: Duration) -> Result<Remote, SessionError> {
        let conn = tracing::dispatcher::with_default(&Dispatch::none(), || self.db.connect())
            .map_err(|e| map_error(e, &self.resource))?;
        Ok(Remote {
            conn: Mutex::new(conn),
            db: self.db.clone(),
            resource: self.resource.clone(),
            timeout,
            sid: session_sql::DEFAULT_SESSION_ID,
            seal: None,
            known: Default::default(),
            pipeline: self.pipeline.clone(),
        })
    }

    /// The connection, for one call whose time starts now: waiting for the connection (behind
    /// other calls of this process) counts against the call's timeout, so five calls queued
    /// behind a frozen server all fail after one timeout, not after one, two, ... five.
    pub(super) async fn lock(&self) -> Result<Held<'_>, SessionError> {
        self.lock_until(Instant::now() + self.timeout).await
    }

    /// [`Remote::lock`] for a call whose time started earlier (it ends at `deadline`).
    pub(super) async fn lock_until(&self, deadline: Instant) -> Result<Held<'_>, SessionError> {
        match tokio::time::timeout_at(deadline, self.conn.lock()).await {
            Ok(conn) => Ok(Held { conn, deadline }),
            Err(_) => Err(self.no_answer()),
        }
    }

    pub(super) fn no_answer(&self) -> SessionError {
        SessionError::Unavailable {
            resource: self.resource.clone(),
            source: format!("no answer within {:?}", self.timeout).into(),
        }
    }

    pub(super) async fn timed<T>(
        &self,
        conn: &Held<'_>,
        f: impl std::future::Future<Output = Result<T, SessionError>>,
    ) -> Result<T, SessionError> {
        // The libsql client logs every SQL text it sends at TRACE, and a write's text carries the
        // auth keys as literals (see `inline`): its own events are silenced for our calls, so
        // that no subscriber, at any level, ever sees a key. Ours are emitted outside.
        let guarded = CatchPanic(Box::pin(f.with_subscriber(Dispatch::none())));
        let result = match tokio::time::timeout_at(conn.deadline, guarded).await {
            Ok(Ok(r)) => r,
            // libsql 0.9 and 0.10 unwrap the body of a non-200 answer as UTF-8, and panic when it
            // is not (a proxy's error page, a server that is not sqld): the answer was an error,
            // so it is reported as one instead of taking the caller's task down.
            Ok(Err(())) => Err(SessionError::Unavailable {
                resource: self.resource.clone(),
                source: "the server answered with an error whose body is not UTF-8 (not a libSQL server, or a proxy \
                         in front of it); the libsql client could not read it"
                    .into(),
            }),
            Err(_) => Err(self.no_answer()),
        };
        if result.is_err() {
            // Forget any half-open Hrana stream, so the next call starts clean.
            conn.reset().with_subscriber(Dispatch::none()).await;
        }
        result
    }

    /// Runs `sql` (several statements) as one transaction: all or nothing. Returns the rows of
    /// the last statement, when the server sent them.
    pub(crate) async fn batch(&self, sql: &str) -> Result<Option<Vec<Vec<libsql::Value>>>, SessionError> {
        self.batch_until(Instant::now() + self.timeout, sql).await
    }

    /// [`Remote::batch`] for a call that ends at `deadline`.
    pub(super) async fn batch_until(
        &self,
        deadline: Instant,
        sql: &str,
    ) -> Result<Option<Vec<Vec<libsql::Value>>>, SessionError> {
        let conn = self.lock_until(deadline).await?;
        self.timed(&conn, async {
            // Another connection's write transaction (our own lease renewal, another process's
            // acquire) makes the server answer "database is locked" at once instead of waiting:
            // the batch was rolled back whole, so it is tried again until the call's deadline.
            let mut pause = Duration::from_millis(2);
            let mut restarted = false;
            loop {
                match Self::attempt(&conn, sql).await {
                    Err(e) if is_busy(&e) => {
                        tracing::trace!(
                            pause_ms = u64::try_from(pause.as_millis()).unwrap_or(0),
                            "server busy, retrying"
                        );
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(50));
                    }
                    // sqld expires a stream left idle for a few seconds (an owner that wrote
                    // nothing for a while; a lease connection whose renewals go out through
                    // another session's in one batch), and refuses the next request on it without
                    // running it: the batch is sent again on a fresh stream.
                    Err(e) if is_expired(&e) && !restarted => {
                        tracing::debug!("the server expired the idle stream, retrying on a new one");
                        restarted = true;
                        conn.reset().await;
                    }
                    result => return result.map_err(|e| self.map(e)),
                }
            }
        })
        .await
    }

    /// Runs the reads of `sql` as one transactional batch (one request, one snapshot) and
    /// returns every statement's rows (`None` for a statement whose rows the server withheld),
    /// or `Ok(None)` when the answer exceeds the server's response limit.
    ///
    /// A read changes nothing, so it is sent again once, on a fresh stream, when the first
    /// attempt met a stream the server had expired or a connection it had closed (an owner's
    /// connection may sit idle for a while between its open and its first load).
    pub(super) async fn read_batch(
        &self,
        sql: &str,
    ) -> Result<Option<Vec<Option<Vec<Vec<libsql::Value>>>>>, SessionError> {
        self.read_batch_until(Instant::now() + self.timeout, sql).await
    }

    /// [`Remote::read_batch`] for a call that ends at `deadline`.
    pub(super) async fn read_batch_until(
        &self,
        deadline: Instant,
        sql: &str,
    ) -> Result<Option<Vec<Option<Vec<Vec<libsql::Value>>>>>, SessionError> {
        let conn = self.lock_until(deadline).await?;
        self.timed(&conn, async {
            let mut retried = false;
            loop {
                let e = match Self::read_attempt(&conn, sql).await {
                    Ok(sets) => return Ok(Some(sets)),
                    Err(e) if too_large(&e) => return Ok(None),
                    Err(e) => e,
                };
                let expired = is_expired(&e);
                let e = self.map(e);
                if retried || !(expired || matches!(e, SessionError::Unavailable { .. })) {
                    return Err(e);
                }
                tracing::debug!("a read met an expired stream or a closed connection, retrying on a new one");
                retried = true;
                conn.reset().await;
            }
        })
        .await
    }

    async fn read_attempt(
        conn: &libsql::Connection,
        sql: &str,
    ) -> Result<Vec<Option<Vec<Vec<libsql::Value>>>>, libsql::Error> {
        let mut results = conn.execute_transactional_batch(sql).await?;
        let mut sets = Vec::new();
        while let Some(rows) = results.next_stmt_row() {
            sets.push(match rows {
                Some(rows) => Some(collect(rows).await?),
                None => None,
            });
        }
        Ok(sets)
    }

    async fn attempt(conn: &libsql::Connection, sql: &str) -> Result<Option<Vec<Vec<libsql::Value>>>, libsql::Error> {
        let mut results = conn.execute_transactional_batch(sql).await?;
        let mut last = None;
        while let Some(rows) = results.next_stmt_row() {
            last = rows;
        }
        match last {
            Some(rows) => Ok(Some(collect(rows).await?)),
            None => Ok(None),
        }
    }

    pub(super) fn map(&self, e: libsql::Error) -> SessionError {
        map_error(e, &self.resource)
    }
}

/// A future whose panics become `Err(())`: the guard around the libsql client's calls.
struct CatchPanic<F>(std::pin::Pin<Box<F>>);

impl<F: std::future::Future> std::future::Future for CatchPanic<F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(_) => std::task::Poll::Ready(Err(())),
        }
    }
}

/// The connection, held for one call until `deadline`.
pub(super) struct Held<'a> {
    conn: MutexGuard<'a, libsql::Connection>,
    deadline: Instant,
}

impl std::ops::Deref for Held<'_> {
    type Target = libsql::Connection;

    fn deref(&self) -> &libsql::Connection {
        &self.conn
    }
}

/// The server's answer to a request on a stream it expired (nothing of the request ran).
fn is_expired(e: &libsql::Error) -> bool {
    e.to_string().contains("STREAM_EXPIRED")
}

/// SQLITE_BUSY, as the server reports it, and sqld's answer for a transaction it rolled back
/// because another one kept the write lock past sqld's limit: either way nothing of the batch
/// was applied, so it may be sent again within the call's deadline.
fn is_busy(e: &libsql::Error) -> bool {
    let text = e.to_string();
    text.contains("database is locked") || text.contains("Transaction timed out")
}

pub(super) async fn collect(mut rows: libsql::Rows) -> Result<Vec<Vec<libsql::Value>>, libsql::Error> {
    let mut out = Vec::new();
    while let Some(row) = rows.next().await? {
        let mut values = Vec::with_capacity(usize::try_from(row.column_count()).unwrap_or(0));
        for i in 0..row.column_count() {
            values.push(row.get_value(i)?);
        }
        out.push(values);
    }
    Ok(out)
}

pub(super) fn value_ref(v: &libsql::Value) -> SqlValueRef<'_> {
    match v {
        libsql::Value::Null => SqlValueRef::Null,
        libsql::Value::Integer(i) => SqlValueRef::Integer(*i),
        libsql::Value::Real(f) => SqlValueRef::Real(*f),
        libsql::Value::Text(t) => SqlValueRef::Text(t),
        libsql::Value::Blob(b) => SqlValueRef::Blob(b),
    }
}
