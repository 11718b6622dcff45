#![doc = include_str!("../README.md")]

mod batch;
mod db;
mod lease;
mod list;
mod read_only;
mod schema;
mod seal;
mod trace;

use std::sync::Arc;
use std::time::Duration;

use session_core::async_trait;
use session_core::{
    codec, BoxError, Change, Lease, LeaseOptions, LeaseStatus, SessionBackend, SessionData, SessionError,
};
use session_sql::{Known, Sealer, SessionId, Statement, LOAD_CHUNK_RANGES};
use tokio_postgres::tls::TlsConnect;
use tokio_postgres::Socket;
use tracing::field::Empty;
use tracing::Instrument as _;

#[doc(hidden)]
pub use crate::batch::postgres_plan;
pub use crate::db::Tls;
use crate::db::{cells, connect, execute_all, load_rows, Db};
pub use crate::lease::PostgresLeases;
/// What [`PostgresOptions::read_session`] found (the server backends share [`session_core::SessionSnapshot`]).
pub type PostgresSnapshot = session_core::SessionSnapshot;
pub use crate::schema::DEFAULT_SCHEMA;
pub use session_core::{KdfParams, KeyId, Keyring, Passphrase, SealingKey};
pub use session_sql::lease::DEFAULT_SESSION;
pub use session_sql::SessionInfo;

/// How long one call may take before the server counts as unreachable (waiting for a pooled
/// connection included): well inside the lease's default time to live (30 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections a backend keeps for its session's data (its lease has one more of its own).
pub const DEFAULT_POOL_SIZE: usize = 4;

/// How a [`PostgresBackend`] reaches its server and owns its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresOptions {
    /// The session's name (default [`DEFAULT_SESSION`]).
    pub session: String,
    /// The bound on one call, waiting for a connection included (default [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// The lease: its time to live (default 30 s) and how long opening waits for a previous
    /// owner (default: not at all).
    pub lease: LeaseOptions,
    /// Connections for the session's data (default [`DEFAULT_POOL_SIZE`]).
    pub pool_size: usize,
    /// The PostgreSQL schema the tables live in (default [`DEFAULT_SCHEMA`]).
    pub schema: String,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            session: DEFAULT_SESSION.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            lease: LeaseOptions::default(),
            pool_size: DEFAULT_POOL_SIZE,
            schema: DEFAULT_SCHEMA.to_owned(),
        }
    }
}

impl PostgresOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the tables in PostgreSQL schema `schema` (1 to 63 ASCII letters, digits or `_`).
    pub fn schema(mut self, schema: &str) -> Self {
        schema.clone_into(&mut self.schema);
        self
    }

    /// Opens session `name` (1 to 255 bytes without control characters).
    pub fn session(mut self, name: &str) -> Self {
        name.clone_into(&mut self.session);
        self
    }

    /// Sets the bound on one call.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the lease options.
    pub fn lease(mut self, lease: LeaseOptions) -> Self {
        self.lease = lease;
        self
    }

    /// Waits up to `wait` for a previous owner to release or lose the session (a rolling deploy).
    pub fn wait_for_owner(mut self, wait: Duration) -> Self {
        self.lease = self.lease.waiting(wait);
        self
    }

    /// Sets the number of pooled connections (at least 1).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Opens the session in the database at `url` without TLS (a unix socket, or a trusted
    /// network); see [`open_with_tls`](Self::open_with_tls).
    pub async fn open(&self, url: &str) -> Result<PostgresBackend, SessionError> {
        self.open_with_tls(url, tokio_postgres::NoTls).await
    }

    /// [`open`](Self::open) for a session sealed (encrypted at rest) with `keys`: every value but
    /// the ids rows are keyed by is sealed with AES-256-GCM-SIV before it is sent, bound to
    /// the session's name, its table and its row, so the server (and its backups) holds only
    /// ciphertext. The schema's `seal` table records the key id (and a passphrase's salt and
    /// costs). A schema sealed with a key the keyring lacks is [`SessionError::WrongKey`], one
    /// opened without a key [`SessionError::Sealed`], both before anything is written. A new or
    /// empty schema becomes sealed, a plain one whose only stored session is this one is sealed
    /// at open (one fenced transaction); a plain schema holding other sessions is refused with
    /// [`SessionError::Invalid`].
    pub async fn open_with_key(&self, url: &str, keys: Keyring) -> Result<PostgresBackend, SessionError> {
        self.open_inner(url, tokio_postgres::NoTls, Some(keys)).await
    }

    /// [`open_with_key`](Self::open_with_key) connecting through `tls`.
    pub async fn open_with_tls_and_key<T>(
        &self,
        url: &str,
        tls: T,
        keys: Keyring,
    ) -> Result<PostgresBackend, SessionError>
    where
        T: Tls,
        T::Stream: Sync + Send,
        T::TlsConnect: Sync + Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        self.open_inner(url, tls, Some(keys)).await
    }

    /// Opens the session in the database at `url` (a `postgres://` URL or a `key=value`
    /// connection string, as `tokio-postgres` reads them), connecting through `tls`.
    ///
    /// In order, and nothing written before the first step passed: checks that the session's
    /// schema is ours or empty ([`SessionError::Invalid`] otherwise), takes the session's lease
    /// ([`SessionError::Locked`] naming the holder while another backend has it), and brings the
    /// schema up to date.
    pub async fn open_with_tls<T>(&self, url: &str, tls: T) -> Result<PostgresBackend, SessionError>
    where
        T: Tls,
        T::Stream: Sync + Send,
        T::TlsConnect: Sync + Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        self.open_inner(url, tls, None).await
    }

    async fn open_inner<T>(&self, url: &str, tls: T, keys: Option<Keyring>) -> Result<PostgresBackend, SessionError>
    where
        T: Tls,
        T::Stream: Sync + Send,
        T::TlsConnect: Sync + Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let db = connect(url, &self.session, &self.schema, self.timeout, tls.clone(), self.pool_size)?;
        let span = tracing::info_span!("open", backend = "postgres", url = %db.resource, lease_token = Empty, elapsed_us = Empty);
        let open = async {
            schema::check(&db, &self.schema).await?;
            // Sealed or not is decided before anything (the lease included) is written.
            let sealed = seal::check(&db, keys).await?;
            // The lease's calls end by themselves before the keeper's own bound would cancel them.
            let timeout = self.timeout.min(self.lease.call_timeout() * 4 / 5);
            let store = PostgresLeases::with(url, &self.session, &self.schema, timeout, tls)?;
            let lease = Lease::acquire(Arc::new(store), self.lease).await?;
            tracing::Span::current().record("lease_token", lease.token());
            match schema::migrate(&db, &self.schema, &self.session).await {
                Ok((sid, migrated)) => {
                    if let Some((from, to)) = migrated {
                        tracing::info!(url = %db.resource, from, to, "migrated the session schema");
                    }
                    let mut backend = PostgresBackend {
                        db,
                        session: self.session.clone(),
                        sid,
                        lease,
                        seal: None,
                        stored: tokio::sync::Mutex::new(None),
                    };
                    match sealed {
                        None => Ok(backend),
                        Some(opened) => match backend.seal_with(opened).await {
                            Ok(()) => Ok(backend),
                            Err(e) => Err(backend.lease.give_back(e).await),
                        },
                    }
                }
                Err(e) => Err(lease.give_back(e).await),
            }
        };
        trace::timed(span, open).await
    }
}

/// A named session in a PostgreSQL database: session-sql's tables (in the schema
/// [`DEFAULT_SCHEMA`] unless [`PostgresOptions::schema`] says otherwise), written by the same plans as the SQLite and libSQL backends, and
/// owned through a fenced lease on the server's clock.
///
/// One change costs a few keyed statements in one transaction, a run of cached peers a constant
/// number of statements. Every write transaction starts with the lease's fence: a backend whose
/// lease was taken over gets [`SessionError::LeaseLost`] and the server keeps nothing of that
/// write. Every call is bounded by [`PostgresOptions::timeout`]; a server that is down or
/// restarting is [`SessionError::Unavailable`], refused credentials
/// [`SessionError::Unauthorized`], never "no session".
pub struct PostgresBackend {
    db: Db,
    session: String,
    /// The session's id in the database (`sid` of its rows).
    sid: SessionId,
    lease: Lease,
    /// How this session's rows are sealed (`None`: a plain schema).
    seal: Option<Sealer>,
    /// What is stored of the session, as far as this backend knows (`None`: unknown, read
    /// before the next persist). Held across a whole write, which also makes this backend's
    /// writes one at a time.
    stored: tokio::sync::Mutex<Option<Stored>>,
}

/// What a persist plan may leave out knowing ([`session_sql::StoredRows`]): while this backend
/// holds the lease it is the only writer of its session's rows (any other is fenced out). A
/// write that failed leaves it unknown, and the next persist reads it again.
type Stored = session_sql::StoredRows;

/// Whether the session row exists and whether `peer_removals` holds a row of the session.
const READ_STORED: &str = "SELECT EXISTS (SELECT 1 FROM session WHERE sid = $1), \
     EXISTS (SELECT 1 FROM peer_removals WHERE sid = $1)";

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("resource", &self.db.resource)
            .field("lease_token", &self.lease.token())
            .finish_non_exhaustive()
    }
}

fn boxed(e: SessionError) -> BoxError {
    Box::new(e)
}

impl PostgresBackend {
    /// Opens the default session of the database at `url` with the default options (see
    /// [`PostgresOptions::open`]).
    pub async fn open(url: &str) -> Result<Self, SessionError> {
        PostgresOptions::new().open(url).await
    }

    /// The session's name.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// The database and session, for messages (`postgres://user@host:port/db#session`, never the
    /// password).
    pub fn resource(&self) -> &str {
        &self.db.resource
    }

    /// The fencing token of this backend's ownership.
    pub fn lease_token(&self) -> u64 {
        self.lease.token()
    }

    /// The id of the key this session's rows are sealed with, `None` for a plain schema.
    pub fn sealed_with(&self) -> Option<session_core::KeyId> {
        self.seal.as_ref().map(|s| s.db().key_id())
    }

    /// Seals the session with what [`seal::check`] decided: with no record (or a record of an
    /// older key), its rows are rewritten sealed and the record stored, in one fenced
    /// transaction; a schema holding other sessions in clear is refused.
    async fn seal_with(&mut self, opened: seal::Opened) -> Result<(), SessionError> {
        let seal::Opened { seal, record } = opened;
        let sealer = seal.session(&self.session);
        if seal.needs_record() {
            if record.is_none() {
                let others = seal::other_sessions(&self.db, self.sid).await?;
                if others > 0 {
                    return Err(SessionError::invalid(
                        format!("session database {}", self.db.resource),
                        format!(
                            "it holds {others} other session(s) in clear; a database is sealed whole, so seal it when \
                             no other session is stored in it"
                        ),
                    ));
                }
            } else {
                // A rotation: the rows open with the keyring's older keys.
                self.seal = Some(sealer.clone());
            }
            let mut plan = match self.load_data().await? {
                Some(data) => session_sql::save_plan_sealed(self.sid, &data, Some(&sealer))?,
                None => Vec::new(),
            };
            plan.push(seal.record_statement());
            self.write(self.span("save", None), false, |_| Ok((plan, None))).await?;
            tracing::info!(key_id = %seal.key_id(), "sealed the session with a new key");
        }
        self.seal = Some(sealer);
        Ok(())
    }

    fn span(&self, name: &'static str, changes: Option<usize>) -> tracing::Span {
        macro_rules! span {
            ($name:literal) => {
                tracing::debug_span!(
                    $name,
                    backend = "postgres",
                    url = %self.db.resource,
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
        let db = &self.db;
        let load = load_rows(db, self.sid, self.seal.clone());
        let data = trace::timed(span.clone(), load).await?;
        if let Some(data) = &data {
            span.record("peers", data.peers.len());
        }
        Ok(data)
    }

    /// Reads what is stored of the session (see [`Stored`]).
    async fn read_stored(&self, client: &deadpool_postgres::Object) -> Result<Stored, SessionError> {
        let db = &self.db;
        let row = client.query_one(READ_STORED, &[&self.sid]).await.map_err(|e| db.map(e))?;
        let (session_row, removals) = (row.get::<_, bool>(0), row.get::<_, bool>(1));
        let ranges = client
            .query(&*db.text(LOAD_CHUNK_RANGES), &[&self.sid])
            .await
            .map_err(|e| db.map(e))?
            .iter()
            .map(|row| session_sql::chunk_range(&db.resource, &cells(row, &db.resource)?))
            .collect::<Result<Vec<_>, SessionError>>()?;
        Ok(Stored { session_row, removals, ranges })
    }

    /// Runs the plan `plan` builds in one transaction that starts with the lease's fence, its
    /// statements pipelined. `plan` is handed what is stored (read first if unknown) when
    /// `needs_stored`, and returns with the plan what is stored once it committed (`None`:
    /// unknown).
    async fn write<P>(&self, span: tracing::Span, needs_stored: bool, plan: P) -> Result<(), SessionError>
    where
        P: FnOnce(Option<&Stored>) -> Result<(Vec<Statement>, Option<Stored>), SessionError>,
    {
        // Refused here (lease not held, or too close to expiry), the write is not attempted and
        // the lease keeps its status; only the server's fence refusing it ends the lease.
        let token = self.lease.fence()?;
        let db = &self.db;
        let fence = session_sql::lease::fence(&self.session, token);
        let write = db.bounded(async {
            let mut stored = self.stored.lock().await;
            let mut conn = db.conn().await?;
            let result = async {
                let client = conn.client()?;
                if needs_stored && stored.is_none() {
                    *stored = Some(self.read_stored(client).await?);
                }
                let (plan, after) = plan(stored.as_ref())?;
                // Unknown until the commit is acknowledged.
                *stored = None;
                let tx = client.transaction().await.map_err(|e| db.map(e))?;
                let mut plan = plan;
                plan.insert(0, fence.clone());
                execute_all(&tx, db, &batch::fuse(&plan)).await?;
                tx.commit().await.map_err(|e| db.map(e))?;
                *stored = after;
                Ok(())
            }
            .await;
            conn.finish(result)
        });
        self.lease.fenced(trace::timed(span, write.in_current_span()).await)
    }
}

#[async_trait]
impl SessionBackend for PostgresBackend {
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
        self.save_session(&data).await
    }

    async fn delete(&self) -> Result<(), BoxError> {
        let plan = session_sql::delete_plan(self.sid).collect();
        self.write(self.span("delete", None), false, |_| Ok((plan, Some(Stored::default())))).await.map_err(boxed)
    }

    fn name(&self) -> &str {
        "postgres"
    }

    async fn load_session(&self) -> Result<Option<SessionData>, BoxError> {
        self.load_data().await.map_err(boxed)
    }

    async fn save_session(&self, data: &SessionData) -> Result<(), BoxError> {
        let span = self.span("save", None);
        span.record("peers", data.peers.len());
        let plan = session_sql::save_plan_sealed(self.sid, data, self.seal.as_ref()).map_err(boxed)?;
        self.write(span, false, |_| Ok((plan, Some(Stored::saved(data))))).await.map_err(boxed)
    }

    async fn persist(&self, changes: &[Change], full: &SessionData) -> Result<(), BoxError> {
        let span = self.span("persist", Some(changes.len()));
        let seal = self.seal.as_ref();
        self.write(span, true, |stored| {
            // Read before the plan is built; were it still unknown, the plan assumes nothing.
            let known = stored.map_or_else(Known::default, Stored::known);
            let plan = session_sql::persist_plan_sealed(self.sid, changes, full, known, seal)?;
            let after = stored.map(|s| {
                let mut s = s.clone();
                s.apply(changes);
                s
            });
            Ok((plan, after))
        })
        .await
        .map_err(boxed)
    }

    fn lease(&self) -> Option<tokio::sync::watch::Receiver<LeaseStatus>> {
        Some(self.lease.watch())
    }

    async fn close(&self) -> Result<(), BoxError> {
        self.lease.release().await.map_err(boxed)
    }
}
