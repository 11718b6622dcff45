//! The one connection to the server: connecting, the per-call timeout (with the client's own
//! logging silenced, since a write's SQL text carries keys), and the batch call every write and
//! migration goes through.

use std::time::Duration;

use session_core::SessionError;
use session_sql::SqlValueRef;
use tokio::sync::Mutex;
use tracing::instrument::WithSubscriber as _;
use tracing::Dispatch;

use super::errors::map_error;
use super::url::http_url;
use super::Remote;

impl Remote {
    /// Connects and brings the schema up to date (one round trip when it already is).
    pub(crate) async fn open(url: &str, auth_token: &str, timeout: Duration) -> Result<Remote, SessionError> {
        let http = http_url(url)?;
        let resource = http.split(['?', '#']).next().unwrap_or_default().to_owned();
        let db = libsql::Builder::new_remote(http, auth_token.to_owned())
            .build()
            .with_subscriber(Dispatch::none())
            .await
            .map_err(|e| map_error(e, &resource))?;
        let conn = tracing::dispatcher::with_default(&Dispatch::none(), || db.connect())
            .map_err(|e| map_error(e, &resource))?;
        let remote = Remote { conn: Mutex::new(conn), _db: db, resource, timeout };
        remote.setup().await?;
        Ok(remote)
    }

    pub(super) async fn timed<T>(
        &self,
        conn: &libsql::Connection,
        f: impl std::future::Future<Output = Result<T, SessionError>>,
    ) -> Result<T, SessionError> {
        // The libsql client logs every SQL text it sends at TRACE, and a write's text carries the
        // auth keys as literals (see `inline`): its own events are silenced for our calls, so
        // that no subscriber, at any level, ever sees a key. Ours are emitted outside.
        let result = match tokio::time::timeout(self.timeout, f.with_subscriber(Dispatch::none())).await {
            Ok(r) => r,
            Err(_) => Err(SessionError::Unavailable {
                resource: self.resource.clone(),
                source: format!("no answer within {:?}", self.timeout).into(),
            }),
        };
        if result.is_err() {
            // Forget any half-open Hrana stream, so the next call starts clean.
            conn.reset().with_subscriber(Dispatch::none()).await;
        }
        result
    }

    /// Runs `sql` (several statements) as one transaction: all or nothing. Returns the rows of
    /// the last statement, when the server sent them.
    pub(super) async fn batch(&self, sql: &str) -> Result<Option<Vec<Vec<libsql::Value>>>, SessionError> {
        let conn = self.conn.lock().await;
        self.timed(&conn, async {
            let mut results = conn.execute_transactional_batch(sql).await.map_err(|e| self.map(e))?;
            let mut last = None;
            while let Some(rows) = results.next_stmt_row() {
                last = rows;
            }
            match last {
                Some(rows) => Ok(Some(collect(rows).await.map_err(|e| self.map(e))?)),
                None => Ok(None),
            }
        })
        .await
    }

    pub(super) fn map(&self, e: libsql::Error) -> SessionError {
        map_error(e, &self.resource)
    }
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
