//! The connection layer: a pool of `tokio-postgres` connections, the per-call timeout (which
//! covers waiting for a connection), session-sql's statements translated to PostgreSQL's dialect
//! and bound by the types the server inferred, and the driver's errors mapped to the
//! `SessionError` kind a caller acts on.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use session_core::SessionError;
use session_sql::dialect::Dialect;
use session_sql::{SqlValue, SqlValueRef, Statement};

use crate::batch::{Arg, Exec, Text};
use std::str::FromStr as _;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::{FromSql, ToSql, Type};

use tokio_postgres::config::Host;
use tokio_postgres::{Row, Socket};

/// A TLS connector `tokio-postgres` accepts (`tokio_postgres::NoTls`, or the `MakeTlsConnector`
/// of `postgres-native-tls` or `tokio-postgres-rustls`).
pub trait Tls: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static {}
impl<T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static> Tls for T {}

/// The pool for `url` with the session's schema as `search_path`.
pub(crate) fn connect<T>(
    url: &str,
    session: &str,
    schema: &str,
    timeout: Duration,
    tls: T,
    size: usize,
) -> Result<Db, SessionError>
where
    T: Tls,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    session_sql::check_name(session)?;
    check_schema(schema)?;
    // The parser's message may quote the string, password included: it is not passed on.
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|_| SessionError::invalid("PostgreSQL URL", "not a postgres:// URL or key=value connection string"))?;
    let resource = format!("{}#{session}", shown(&config));
    let mut startup = config.get_options().map(str::to_owned).unwrap_or_default();
    if !startup.is_empty() {
        startup.push(' ');
    }
    startup.push_str(&format!("-c search_path={schema}"));
    config.options(&startup);
    if config.get_application_name().is_none() {
        config.application_name("layer-session");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(timeout);
    }
    Db::new(config, tls, size, resource, timeout)
}

/// `postgres://user@host:port/db`, without the password.
fn shown(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().copied().chain(std::iter::repeat(5432)))
        .map(|(h, port)| match h {
            Host::Tcp(name) => format!("{name}:{port}"),
            Host::Unix(dir) => format!("[{}]:{port}", dir.display()),
        })
        .collect();
    let user = config.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    format!("postgres://{user}{}/{}", hosts.join(","), config.get_dbname().unwrap_or(""))
}

/// Checks a schema name: 1 to 63 ASCII letters, digits or `_`, not starting with a digit (it
/// goes into the connection's `search_path` and into SQL text).
pub(crate) fn check_schema(schema: &str) -> Result<(), SessionError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && !schema.starts_with(|c: char| c.is_ascii_digit())
        && schema.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SessionError::invalid(
            "PostgreSQL schema name",
            format!("{schema:?}: use 1 to 63 ASCII letters, digits or '_'"),
        ))
    }
}

/// One pool of connections to the database, with the session's schema as `search_path`.
pub(crate) struct Db {
    pool: Pool,
    /// `postgres://user@host:port/db#session`: never the password.
    pub(crate) resource: String,
    pub(crate) timeout: Duration,
    /// PostgreSQL texts of session-sql's statements, by their SQLite text.
    texts: Mutex<HashMap<&'static str, Arc<str>>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("resource", &self.resource).finish_non_exhaustive()
    }
}

impl Db {
    /// A pool of at most `size` connections made from `config` (connections are opened on first
    /// use, not here).
    pub(crate) fn new<T>(
        config: tokio_postgres::Config,
        tls: T,
        size: usize,
        resource: String,
        timeout: Duration,
    ) -> Result<Db, SessionError>
    where
        T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
        T::Stream: Sync + Send,
        T::TlsConnect: Sync + Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        // Fast recycling: a connection the server closed is noticed by `is_closed` and replaced;
        // one a call gave up on mid-way is never returned to the pool (see `Checked`).
        let manager = Manager::from_config(config, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| SessionError::Backend { backend: "postgres".to_owned(), source: Box::new(e) })?;
        Ok(Db { pool, resource, timeout, texts: Mutex::new(HashMap::new()) })
    }

    /// The PostgreSQL text of a session-sql statement.
    pub(crate) fn text(&self, sql: &'static str) -> Arc<str> {
        let mut texts = self.texts.lock().unwrap_or_else(|p| p.into_inner());
        texts.entry(sql).or_insert_with(|| Arc::from(Dialect::Postgres.translate(sql).as_ref())).clone()
    }

    /// Runs `call`, bounded by the timeout (waiting for a connection included).
    pub(crate) async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, SessionError>>,
    ) -> Result<T, SessionError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(self.unavailable(&format!("no answer within {} ms", self.timeout.as_millis()))),
        }
    }

    /// Runs `body` in a transaction of its own on a pooled connection, bounded by the timeout
    /// (waiting for the connection included): committed when `body` returns `Ok`, rolled back
    /// when it returns `Err` (or the call is given up, with the connection it held).
    pub(crate) async fn transaction<T>(
        &self,
        access: Access,
        body: impl AsyncFnOnce(&deadpool_postgres::Transaction<'_>) -> Result<T, SessionError>,
    ) -> Result<T, SessionError> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            let result = async {
                let builder = conn.client()?.build_transaction();
                let builder = match access {
                    Access::Write => builder,
                    Access::Read => builder.read_only(true),
                    Access::Snapshot => {
                        builder.read_only(true).isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                    }
                };
                let tx = builder.start().await.map_err(|e| self.map(e))?;
                let out = body(&tx).await?;
                tx.commit().await.map_err(|e| self.map(e))?;
                Ok(out)
            }
            .await;
            conn.finish(result)
        })
        .await
    }

    /// A pooled connection (inside [`bounded`](Db::bounded)).
    pub(crate) async fn conn(&self) -> Result<Checked, SessionError> {
        Ok(Checked { obj: Some(self.pool.get().await.map_err(|e| self.pool_error(e))?), done: false })
    }

    pub(crate) fn unavailable(&self, why: &str) -> SessionError {
        SessionError::Unavailable { resource: self.resource.clone(), source: why.to_owned().into() }
    }

    fn pool_error(&self, e: PoolError) -> SessionError {
        match e {
            PoolError::Backend(e) => self.map(e),
            PoolError::Timeout(_) | PoolError::Closed | PoolError::NoRuntimeSpecified => {
                self.unavailable(&e.to_string())
            }
            PoolError::PostCreateHook(e) => {
                SessionError::Backend { backend: "postgres".to_owned(), source: e.to_string().into() }
            }
        }
    }

    /// Maps a driver error to the kind a caller acts on.
    pub(crate) fn map(&self, e: tokio_postgres::Error) -> SessionError {
        map_error(e, &self.resource)
    }
}

/// What a [`Db::transaction`] may do.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Access {
    /// Read and write (PostgreSQL's default isolation, `READ COMMITTED`).
    Write,
    /// Read only.
    Read,
    /// Read only, every statement seeing the same snapshot (`REPEATABLE READ`): rows whose sums
    /// are checked together.
    Snapshot,
}

/// A pooled connection that is detached from the pool (closed) unless its call finished: one a
/// timeout abandoned mid-transaction, or whose connection broke, is never handed to the next call.
pub(crate) struct Checked {
    obj: Option<Object>,
    done: bool,
}

impl Checked {
    /// The connection.
    pub(crate) fn client(&mut self) -> Result<&mut Object, SessionError> {
        self.obj.as_mut().ok_or_else(|| SessionError::Unavailable {
            resource: String::new(),
            source: "the connection was given up".into(),
        })
    }

    /// Ends the call: the connection goes back to the pool unless the call found it unusable.
    pub(crate) fn finish<T>(mut self, result: Result<T, SessionError>) -> Result<T, SessionError> {
        self.done = !matches!(&result, Err(SessionError::Unavailable { .. }));
        result
    }
}

impl Drop for Checked {
    fn drop(&mut self) {
        if !self.done {
            if let Some(obj) = self.obj.take() {
                drop(Object::take(obj));
            }
        }
    }
}

/// Runs `statement` (translated, prepared once per connection) in `tx`; returns its rows.
pub(crate) async fn query(
    tx: &deadpool_postgres::Transaction<'_>,
    db: &Db,
    statement: &Statement,
) -> Result<Vec<Row>, SessionError> {
    let text = db.text(statement.sql);
    let prepared = tx.prepare_cached(&text).await.map_err(|e| db.map(e))?;
    let params = bind(statement.params.iter(), prepared.params(), &db.resource)?;
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
    tx.query(&prepared, &refs).await.map_err(|e| db.map(e))
}

/// Runs `statement` in `tx`.
pub(crate) async fn execute(
    tx: &deadpool_postgres::Transaction<'_>,
    db: &Db,
    statement: &Statement,
) -> Result<u64, SessionError> {
    let text = db.text(statement.sql);
    let prepared = tx.prepare_cached(&text).await.map_err(|e| db.map(e))?;
    let params = bind(statement.params.iter(), prepared.params(), &db.resource)?;
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
    tx.execute(&prepared, &refs).await.map_err(|e| db.map(e))
}

/// Runs `statements` in `tx`, in order, pipelined: each is sent without waiting for the answer
/// to the one before (`tokio-postgres` sends a request when its future is first polled, and the
/// server answers in order), so a plan costs one round trip instead of one per statement, and
/// the statements a connection has not prepared yet are prepared in one round trip as well.
/// The first statement that fails ends the call with its error; the server has then refused
/// every statement after it (a failed statement aborts the transaction), and the transaction
/// is rolled back when `tx` is dropped, so nothing of the plan is kept.
pub(crate) async fn execute_all(
    tx: &deadpool_postgres::Transaction<'_>,
    db: &Db,
    statements: &[Exec<'_>],
) -> Result<(), SessionError> {
    let texts: Vec<Arc<str>> = statements
        .iter()
        .map(|st| match st.text {
            Text::Plan(sql) => db.text(sql),
            Text::Postgres(text) => Arc::from(text),
        })
        .collect();
    let prepared = in_order(texts.iter().map(|text| tx.prepare_cached(text))).await.map_err(|e| db.map(e))?;
    let params = statements
        .iter()
        .zip(&prepared)
        .map(|(st, p)| bind_args(&st.params, p.params(), &db.resource))
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<Vec<&(dyn ToSql + Sync)>> =
        params.iter().map(|ps| ps.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()).collect();
    in_order(prepared.iter().zip(&refs).map(|(p, r)| tx.execute(p, r))).await.map_err(|e| db.map(e))?;
    Ok(())
}

/// Polls `futures` together (so that the requests they make are pipelined) until all are
/// done; their results in order, or the error of the first (in order) that failed among those
/// done when one fails. The server answers in order, so a failed statement's error is seen
/// before the errors of the statements it aborted.
async fn in_order<T, E, F>(futures: impl IntoIterator<Item = F>) -> Result<Vec<T>, E>
where
    F: Future<Output = Result<T, E>>,
{
    let mut pending: Vec<Option<std::pin::Pin<Box<F>>>> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut done: Vec<Option<T>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (slot, out) in pending.iter_mut().zip(done.iter_mut()) {
            let Some(f) = slot else { continue };
            match f.as_mut().poll(cx) {
                std::task::Poll::Ready(Ok(v)) => {
                    *out = Some(v);
                    *slot = None;
                }
                std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Err(e)),
                std::task::Poll::Pending => all = false,
            }
        }
        if all {
            std::task::Poll::Ready(Ok(()))
        } else {
            std::task::Poll::Pending
        }
    })
    .await?;
    Ok(done.into_iter().flatten().collect())
}

type Param<'a> = Box<dyn ToSql + Sync + Send + 'a>;

/// The parameters as the Rust types of the server's inferred parameter types.
fn bind<'a>(
    values: impl ExactSizeIterator<Item = &'a SqlValue>,
    types: &[Type],
    resource: &str,
) -> Result<Vec<Param<'a>>, SessionError> {
    if values.len() != types.len() {
        return Err(SessionError::Backend {
            backend: "postgres".to_owned(),
            source: format!("{} parameters for a statement of {}", values.len(), types.len()).into(),
        });
    }
    values.zip(types).map(|(v, ty)| one(v, ty, resource)).collect()
}

/// [`bind`] for an [`Exec`]'s parameters: a run's columns as the arrays its text casts them to.
fn bind_args<'a>(args: &'a [Arg<'_>], types: &[Type], resource: &str) -> Result<Vec<Param<'a>>, SessionError> {
    if args.len() != types.len() {
        return Err(SessionError::Backend {
            backend: "postgres".to_owned(),
            source: format!("{} parameters for a statement of {}", args.len(), types.len()).into(),
        });
    }
    args.iter()
        .zip(types)
        .map(|(a, ty)| match a {
            Arg::Value(v) => one(v, ty, resource),
            Arg::Ints(v) => Ok(Box::new(v) as Param<'a>),
            Arg::Texts(v) => Ok(Box::new(v) as Param<'a>),
        })
        .collect()
}

fn one<'a>(value: &'a SqlValue, ty: &Type, resource: &str) -> Result<Param<'a>, SessionError> {
    let out_of_range = || SessionError::invalid(resource, format!("a value out of range for a {ty} parameter"));
    Ok(match (value, ty) {
        (SqlValue::Null, &Type::INT8) => Box::new(None::<i64>),
        (SqlValue::Null, &Type::INT4) => Box::new(None::<i32>),
        (SqlValue::Null, &Type::INT2) => Box::new(None::<i16>),
        (SqlValue::Null, &Type::BOOL) => Box::new(None::<bool>),
        (SqlValue::Null, &Type::FLOAT8) => Box::new(None::<f64>),
        (SqlValue::Null, &Type::BYTEA) => Box::new(None::<&[u8]>),
        (SqlValue::Null, _) => Box::new(None::<&str>),
        (SqlValue::Integer(v), &Type::INT4) => Box::new(i32::try_from(*v).map_err(|_| out_of_range())?),
        (SqlValue::Integer(v), &Type::INT2) => Box::new(i16::try_from(*v).map_err(|_| out_of_range())?),
        (SqlValue::Integer(v), &Type::BOOL) => Box::new(*v != 0),
        (SqlValue::Integer(v), &Type::TEXT | &Type::VARCHAR) => Box::new(v.to_string()),
        (SqlValue::Integer(v), _) => Box::new(*v),
        (SqlValue::Real(v), _) => Box::new(*v),
        (SqlValue::Text(v), _) => Box::new(v.as_str()),
        (SqlValue::Blob(v), _) => Box::new(v.as_slice()),
    })
}

/// A column value, borrowed from the row's buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cell<'a>(pub(crate) SqlValueRef<'a>);

impl<'a> FromSql<'a> for Cell<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Cell(match *ty {
            Type::INT8 => SqlValueRef::Integer(i64::from_sql(ty, raw)?),
            Type::INT4 => SqlValueRef::Integer(i64::from(i32::from_sql(ty, raw)?)),
            Type::INT2 => SqlValueRef::Integer(i64::from(i16::from_sql(ty, raw)?)),
            Type::BOOL => SqlValueRef::Integer(i64::from(bool::from_sql(ty, raw)?)),
            Type::FLOAT8 => SqlValueRef::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => SqlValueRef::Real(f64::from(f32::from_sql(ty, raw)?)),
            Type::BYTEA => SqlValueRef::Blob(raw),
            _ => SqlValueRef::Text(<&str>::from_sql(ty, raw)?),
        }))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Cell(SqlValueRef::Null))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::BOOL
                | Type::FLOAT8
                | Type::FLOAT4
                | Type::BYTEA
                | Type::TEXT
                | Type::VARCHAR
                | Type::NAME
                | Type::BPCHAR
        )
    }
}

/// The values of `row`, borrowed.
pub(crate) fn cells<'r>(row: &'r Row, resource: &str) -> Result<Vec<SqlValueRef<'r>>, SessionError> {
    (0..row.len())
        .map(|i| {
            row.try_get::<_, Cell<'r>>(i)
                .map(|c| c.0)
                .map_err(|e| SessionError::corrupt(resource, format!("column {i}: {e}")))
        })
        .collect()
}

/// Maps a driver error to the kind a caller acts on: refused credentials are `Unauthorized`,
/// anything that a retry may cure (the server down, restarting, out of connections, a broken
/// connection) `Unavailable`, a server that does not speak PostgreSQL's protocol `Invalid`, the
/// fence tripping `LeaseLost`.
pub(crate) fn map_error(e: tokio_postgres::Error, resource: &str) -> SessionError {
    let db_error = e.as_db_error().map(|db| {
        let fence =
            db.constraint() == Some("layer_session_fence") || session_sql::lease::is_fence_violation(db.message());
        (db.code().code().to_owned(), fence)
    });
    if let Some((code, fence)) = db_error {
        if fence {
            return SessionError::LeaseLost {
                resource: resource.to_owned(),
                reason: "the write was refused: another owner took the session over".to_owned(),
            };
        }
        let source: session_core::BoxError = Box::new(e);
        return match code.as_str() {
            c if c.starts_with("28") || c == "42501" => {
                SessionError::Unauthorized { resource: resource.to_owned(), source }
            }
            c if c.starts_with("08")
                || c.starts_with("53")
                || c.starts_with("57P")
                || c == "40001"
                || c == "40P01"
                || c == "55P03" =>
            {
                SessionError::Unavailable { resource: resource.to_owned(), source }
            }
            "3D000" => SessionError::Invalid { what: resource.to_owned(), reason: source.to_string() },
            _ => SessionError::Backend { backend: "postgres".to_owned(), source },
        };
    }
    let text = e.to_string();
    let io = {
        let mut source = std::error::Error::source(&e);
        let mut found = false;
        while let Some(s) = source {
            if s.is::<std::io::Error>() {
                found = true;
                break;
            }
            source = s.source();
        }
        found
    };
    if text.contains("unexpected message") || text.contains("error parsing") || text.contains("invalid message") {
        return SessionError::Invalid {
            what: resource.to_owned(),
            reason: format!("the server does not speak PostgreSQL's protocol ({text})"),
        };
    }
    let source: session_core::BoxError = Box::new(e);
    if io || text.contains("closed") || text.contains("timeout") || text.contains("connect") {
        return SessionError::Unavailable { resource: resource.to_owned(), source };
    }
    SessionError::Backend { backend: "postgres".to_owned(), source }
}

/// Session `sid`'s rows, read in one read-only `REPEATABLE READ` snapshot (so the sums check
/// rows of one moment), opened with `sealer` when the schema is sealed.
pub(crate) async fn load_rows(
    db: &Db,
    sid: i64,
    sealer: Option<session_sql::Sealer>,
) -> Result<Option<session_core::SessionData>, SessionError> {
    let rows = db
        .transaction(Access::Snapshot, async |tx| {
            let mut rows = session_sql::SessionRows::new(&db.resource).with_seal(sealer);
            for (table, sql) in session_sql::LOAD_QUERIES {
                for row in query(tx, db, &Statement { sql, params: vec![SqlValue::Integer(sid)] }).await? {
                    rows.row(table, &cells(&row, &db.resource)?)?;
                }
            }
            Ok(rows)
        })
        .await?;
    rows.finish()
}
