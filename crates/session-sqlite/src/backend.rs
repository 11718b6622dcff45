//! `SqliteBackend`: the schema of [`session_sql`] in a SQLite file, driven by `rusqlite` on
//! blocking threads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{params_from_iter, Connection, ErrorCode, OpenFlags, TransactionBehavior};
use session_core::fs::{private_options, sync_dir, OwnerLock};
use session_core::{
    codec, BoxError, Change, DcFlags, DcKey, Keyring, PeerKey, SessionBackend, SessionData, SessionError, UpdateState,
};

use tracing::field::Empty;
use tracing::Span;

use crate::trace::{micros, timed, timed_sync};
use crate::values::{value_ref, Param};
use session_sql::lease::DEFAULT_SESSION;
use session_sql::{Known, SealRecord, Sealer, SessionId, SessionInfo, SessionRows, SqlValueRef, Statement, Table};

const NAME: &str = "sqlite";

/// Prepared statements kept per connection: every distinct statement of the schema fits.
const STATEMENT_CACHE: usize = 64;

/// How far a write that returned `Ok` is guaranteed to survive (the database is in WAL mode
/// either way, and a crash never leaves a transaction half-applied).
///
/// The default is [`Durability::PowerLoss`], because the promise on the first page of the book
/// ("every write is fsync'ed before it is acknowledged") is made of the default. The cost is one
/// fsync of the WAL per commit; a [`session_core::SessionStore`] commits once per flush, not once
/// per change (see the crate docs for measured numbers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Durability {
    /// `synchronous = NORMAL` for ordinary writes (cached peers, update state),
    /// `synchronous = FULL` for a transaction that holds a critical change
    /// ([`session_core::Change::is_critical`]: a new auth key, the home DC, the user, log out),
    /// a full save or a delete.
    ///
    /// Every acknowledged write survives a crash of the process. After an OS crash or a power
    /// loss every acknowledged critical change is there (its commit fsyncs the WAL, and with it
    /// every earlier frame); ordinary writes acknowledged since the last critical commit or
    /// checkpoint may be missing, which costs a refetch of some access hashes or updates,
    /// never a login. The database stays consistent either way. No fsync on ordinary writes.
    Balanced,
    /// The default. `synchronous = FULL`: every commit fsyncs the WAL before returning. An
    /// acknowledged write survives a crash of the process and a crash of the OS or a power
    /// loss. One fsync per write.
    #[default]
    PowerLoss,
    /// `synchronous = NORMAL`: a commit is in the operating system's hands (written to the WAL
    /// file) before returning, and fsynced at checkpoints. An acknowledged write survives a crash
    /// of the process (kill -9, panic); an OS crash or power loss may lose the last acknowledged
    /// writes (the database stays consistent). No fsync on most writes.
    ProcessCrash,
}

/// A session stored in a SQLite database (see the crate docs for the schema, durability and
/// ownership rules).
///
/// Every call runs on tokio's blocking pool (`spawn_blocking`), never on the runtime's threads.
/// The connection is closed when the last clone of the backend is dropped (synchronously, so
/// that the owner lock is free as soon as the drop returns); [`SqliteBackend::close`] closes it
/// on the blocking pool instead.
#[derive(Clone)]
pub struct SqliteBackend {
    db: Arc<Mutex<Db>>,
    resource: Arc<str>,
    path: Option<Arc<Path>>,
    session: Arc<str>,
    /// The key the rows are sealed with (`None`: a plain database).
    sealed_with: Option<session_core::KeyId>,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend").field("resource", &self.resource).finish_non_exhaustive()
    }
}

impl SqliteBackend {
    /// Opens (or creates) the session database at `path` and becomes its only owner.
    ///
    /// - A new database is created private to the owner (0600), complete with its schema, and
    ///   renamed into place: a crash never leaves an empty file. An existing database (and any
    ///   `-wal`, `-shm` or `-journal` beside it) readable by others is made 0600 before SQLite
    ///   opens it, so the side files SQLite creates, which take the database's mode, are private
    ///   too.
    /// - A path that names a FIFO, a device, a directory or an empty file is refused at once
    ///   with [`SessionError::Invalid`], without opening it.
    /// - Every row carries a checksum, and the session row the sums of the other tables' (see
    ///   [`session_sql`]): a load that meets a changed, missing or extra row, or rows without
    ///   their session row, gives [`SessionError::Corrupt`] with a copy of the database kept.
    /// - Another owner (another process, or another backend in this process) makes this fail at
    ///   once with [`SessionError::Locked`] naming its pid.
    /// - A database written by a newer build is refused with [`SessionError::UnsupportedVersion`];
    ///   an older one is migrated, one step per transaction.
    /// - A file that is not a SQLite database, or is damaged, gives [`SessionError::Corrupt`] with
    ///   a copy of the file kept beside it; a SQLite file of another program (a Telethon or
    ///   Pyrogram session) gives [`SessionError::Invalid`]: import it with [`crate::foreign`].
    ///
    /// Durability is [`Durability::PowerLoss`]: every write is fsynced before it is acknowledged,
    /// so it survives a crash of the process, of the OS and a power loss; see
    /// [`SqliteBackend::open_with`] for the other levels.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, SessionError> {
        Self::open_with(path, Durability::default()).await
    }

    /// [`SqliteBackend::open`] with a chosen durability level.
    pub async fn open_with(path: impl AsRef<Path>, durability: Durability) -> Result<Self, SessionError> {
        Self::open_named_with(path, DEFAULT_SESSION, durability).await
    }

    /// Opens (or creates) the database at `path` and becomes the only owner of its session
    /// called `name` (created on first use). A database holds any number of named sessions,
    /// each with its own rows and its own owner: two processes may own two sessions of one
    /// file at once, and write at the same time (SQLite serializes their transactions, each
    /// waits up to 5 s for the other's). Everything [`SqliteBackend::open`] says holds per
    /// session; `open(path)` is `open_named(path, "default")`.
    ///
    /// One owner per session: a second backend (in this process or another) opening the same
    /// name of the same file fails at once with [`SessionError::Locked`] naming the holder's pid.
    /// The `default` session's owner lock is the one [`SqliteBackend::open`] always took
    /// (`<db>.lock` and the database file's inode); another name's is `<db>.session-<hash>.lock`
    /// beside the real file (symlinks resolved), where `<hash>` is a stable 64-bit hash of the
    /// name. Both are `flock`s, released by the kernel when the owner exits however it exits.
    /// The locks hold on one machine (a local file system); see `SqliteLeases` for a database
    /// that several machines reach.
    ///
    /// A name is 1 to 255 bytes without control characters ([`SessionError::Invalid`]
    /// otherwise). List a database's sessions with [`SqliteBackend::list_sessions`].
    pub async fn open_named(path: impl AsRef<Path>, name: &str) -> Result<Self, SessionError> {
        Self::open_named_with(path, name, Durability::default()).await
    }

    /// [`SqliteBackend::open_named`] with a chosen durability level.
    pub async fn open_named_with(
        path: impl AsRef<Path>,
        name: &str,
        durability: Durability,
    ) -> Result<Self, SessionError> {
        Self::open_inner(path.as_ref(), name, durability, None).await
    }

    /// [`SqliteBackend::open`] for a session sealed (encrypted at rest) with `keys`: every value
    /// but the ids its rows are keyed by is sealed with AES-256-GCM-SIV under the keyring's
    /// key, bound to the session's name, its table and its row (see
    /// [`session_sql::seal`] and the book's encryption page).
    ///
    /// - A new database, or one that holds nothing yet, becomes sealed: a record of the key id
    ///   (and, for a passphrase, its Argon2id salt and costs) is stored in its `seal` table.
    /// - A plain database whose only stored session is this one is sealed at open, in one
    ///   transaction (its rows rewritten sealed; the plain bytes may remain in free pages and
    ///   in the WAL until they are overwritten or checkpointed). A plain database holding other
    ///   sessions is refused with [`SessionError::Invalid`] (a database is sealed whole, and
    ///   their owners would keep writing them in clear).
    /// - A database sealed with a key the keyring lacks is [`SessionError::WrongKey`]; nothing
    ///   is written. A sealed database opened without a key ([`SqliteBackend::open`]) is
    ///   [`SessionError::Sealed`]. Neither is ever `Corrupt` or an empty session.
    /// - Rotation: `Keyring::new(new).with_old_key(old)` opens what the old key sealed, and
    ///   the open re-seals this session with the new key (one transaction) and records it.
    pub async fn open_with_key(path: impl AsRef<Path>, keys: Keyring) -> Result<Self, SessionError> {
        Self::open_inner(path.as_ref(), DEFAULT_SESSION, Durability::default(), Some(keys)).await
    }

    /// [`SqliteBackend::open_named_with`] sealed with `keys` (see
    /// [`SqliteBackend::open_with_key`]).
    pub async fn open_named_with_key(
        path: impl AsRef<Path>,
        name: &str,
        durability: Durability,
        keys: Keyring,
    ) -> Result<Self, SessionError> {
        Self::open_inner(path.as_ref(), name, durability, Some(keys)).await
    }

    async fn open_inner(
        path: &Path,
        name: &str,
        durability: Durability,
        keys: Option<Keyring>,
    ) -> Result<Self, SessionError> {
        session_sql::check_name(name)?;
        let path: Arc<Path> = Arc::from(path);
        let session: Arc<str> = Arc::from(name);
        let resource: Arc<str> = Arc::from(resource_of(&path, name));
        let p = Arc::clone(&path);
        let n = Arc::clone(&session);
        let span =
            tracing::info_span!("open", backend = NAME, path = %resource, durability = ?durability, elapsed_us = Empty);
        let entered = span.clone();
        let db = timed(span, blocking(move || entered.in_scope(|| Db::open_file(&p, durability, &n, keys.as_ref()))))
            .await?;
        let sealed_with = db.seal.as_ref().map(|s| s.db().key_id());
        Ok(Self { db: Arc::new(Mutex::new(db)), resource, path: Some(path), session, sealed_with })
    }

    /// The sessions of the database at `path`, by name, with who holds each one's lease where
    /// one was taken (see [`SessionInfo`]; a local owner lock is not a lease and shows no
    /// holder). Reads only: takes no lock, migrates nothing, creates nothing.
    pub async fn list_sessions(path: impl AsRef<Path>) -> Result<Vec<SessionInfo>, SessionError> {
        let path = path.as_ref().to_path_buf();
        blocking(move || crate::read_only::ReadOnly::open(&path)?.sessions()).await
    }

    /// The id of the key this session's rows are sealed with, `None` for a plain database.
    pub fn sealed_with(&self) -> Option<session_core::KeyId> {
        self.sealed_with
    }

    /// The name of the session this backend owns (`default` for [`SqliteBackend::open`]).
    pub fn session_name(&self) -> &str {
        &self.session
    }

    /// A database in memory: same schema and rules, nothing survives the backend.
    pub async fn in_memory() -> Result<Self, SessionError> {
        let span = tracing::info_span!("open", backend = NAME, path = ":memory:", elapsed_us = Empty);
        let entered = span.clone();
        let db = timed(span, blocking(move || entered.in_scope(Db::open_memory))).await?;
        Ok(Self {
            db: Arc::new(Mutex::new(db)),
            resource: Arc::from(":memory:"),
            path: None,
            session: Arc::from(DEFAULT_SESSION),
            sealed_with: None,
        })
    }

    /// The database file (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs SQLite's `PRAGMA quick_check` over the whole file: `Ok` when every page is sound,
    /// [`SessionError::Corrupt`] (with a preserved copy) otherwise. Takes time in proportion to
    /// the file; `open` does not run it (see the crate docs).
    pub async fn check(&self) -> Result<(), SessionError> {
        self.run(self.span("check"), Db::quick_check).await
    }

    /// Closes the connection on the blocking pool (a final WAL checkpoint may write), and
    /// releases ownership. Other clones of this backend keep it open until they are dropped.
    pub async fn close(self) -> Result<(), SessionError> {
        let span = self.span("close");
        let entered = span.clone();
        let db = self.db;
        timed(
            span,
            blocking(move || {
                let _entered = entered.enter();
                drop(db);
                Ok(())
            }),
        )
        .await
    }

    /// A debug span of one call, with the fields every call has.
    fn span(&self, name: &'static str) -> Span {
        // One callsite per name: `tracing` span names are static.
        match name {
            "check" => tracing::debug_span!("check", backend = NAME, path = %self.resource, elapsed_us = Empty),
            _ => tracing::debug_span!("close", backend = NAME, path = %self.resource, elapsed_us = Empty),
        }
    }

    /// Runs `f` on the blocking pool inside `span` (entered on the blocking thread too, so that
    /// what happens there is inside it), recording its duration.
    async fn run<T, F>(&self, span: Span, f: F) -> Result<T, SessionError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> Result<T, DbError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        let entered = span.clone();
        timed(
            span,
            blocking(move || {
                let _entered = entered.enter();
                // A panic inside a call cannot leave a transaction open (the transaction rolls
                // back as it unwinds), so a poisoned lock still guards a usable connection.
                let mut db = db.lock().unwrap_or_else(PoisonError::into_inner);
                f(&mut db).map_err(|e| db.fail(e))
            }),
        )
        .await
    }
}

async fn blocking<T, F>(f: F) -> Result<T, SessionError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, SessionError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(SessionError::Backend { backend: NAME.to_owned(), source: Box::new(e) }),
    }
}

fn boxed(e: SessionError) -> BoxError {
    Box::new(e)
}

#[async_trait]
impl SessionBackend for SqliteBackend {
    async fn load(&self) -> Result<Option<Vec<u8>>, BoxError> {
        let span = load_span(&self.resource);
        let fields = span.clone();
        // Encoded on the blocking thread too: it is O(session).
        self.run(span, move |db| {
            let Some(data) = db.load()? else { return Ok(None) };
            let bytes = codec::encode(&data)?;
            fields.record("peers", data.peers.len());
            fields.record("bytes", bytes.len());
            Ok(Some(bytes))
        })
        .await
        .map_err(boxed)
    }

    async fn save(&self, data: &[u8]) -> Result<(), BoxError> {
        if data.is_empty() {
            return self.delete().await;
        }
        let span = tracing::debug_span!(
            "save",
            backend = NAME,
            path = %self.resource,
            bytes = data.len(),
            peers = Empty,
            elapsed_us = Empty
        );
        let fields = span.clone();
        let bytes = data.to_vec();
        self.run(span, move |db| {
            let data = codec::decode(&bytes)?;
            fields.record("peers", data.peers.len());
            db.save(&data)
        })
        .await
        .map_err(boxed)
    }

    async fn delete(&self) -> Result<(), BoxError> {
        let span = tracing::debug_span!("delete", backend = NAME, path = %self.resource, elapsed_us = Empty);
        self.run(span, Db::delete).await.map_err(boxed)
    }

    fn name(&self) -> &str {
        NAME
    }

    async fn load_session(&self) -> Result<Option<SessionData>, BoxError> {
        let span = load_span(&self.resource);
        let fields = span.clone();
        self.run(span, move |db| {
            let data = db.load()?;
            if let Some(data) = &data {
                fields.record("peers", data.peers.len());
            }
            Ok(data)
        })
        .await
        .map_err(boxed)
    }

    async fn save_session(&self, data: &SessionData) -> Result<(), BoxError> {
        let span = tracing::debug_span!(
            "save",
            backend = NAME,
            path = %self.resource,
            peers = data.peers.len(),
            elapsed_us = Empty
        );
        let data = data.clone();
        self.run(span, move |db| db.save(&data)).await.map_err(boxed)
    }

    async fn persist(&self, changes: &[Change], full: &SessionData) -> Result<(), BoxError> {
        // Refuse unknown changes here, before the blocking hop.
        drop(session_sql::persist_plan(0, changes, full)?);
        let critical = changes.iter().any(Change::is_critical);
        let span = tracing::debug_span!(
            "persist",
            backend = NAME,
            path = %self.resource,
            changes = changes.len(),
            critical,
            elapsed_us = Empty
        );
        let view = plan_view(changes, full);
        let changes = changes.to_vec();
        self.run(span, move |db| db.persist(&changes, &view, critical)).await.map_err(boxed)
    }
}

/// The span of a load; `peers` (and `bytes` for [`SessionBackend::load`]) are recorded once
/// the session is read.
fn load_span(resource: &str) -> Span {
    tracing::debug_span!("load", backend = NAME, path = %resource, peers = Empty, bytes = Empty, elapsed_us = Empty)
}

/// The part of `full` a persist plan of `changes` reads (the session row's values, and the DC
/// options a key change touched), copied for the blocking thread: O(changes), where a clone of
/// `full` would be O(session).
fn plan_view(changes: &[Change], full: &SessionData) -> SessionData {
    let mut view = SessionData::default();
    view.home_dc = full.home_dc;
    view.user = full.user;
    view.test_mode = full.test_mode;
    view.api_id = full.api_id;
    view.future_auth_token.clone_from(&full.future_auth_token);
    view.updates = UpdateState::new(full.updates.pts, full.updates.qts, full.updates.date, full.updates.seq);
    for change in changes {
        if let Change::SetAuthKey { dc_id, .. } = change {
            for key in [DcKey::main(*dc_id), DcKey { id: *dc_id, flags: DcFlags::IPV6 }] {
                if let Some(dc) = full.dcs.get(&key) {
                    view.dcs.insert(key, dc.clone());
                }
            }
        }
    }
    view
}

/// An error inside a call, before it is mapped (and a damaged file preserved).
#[derive(Debug)]
enum DbError {
    Sql(rusqlite::Error),
    Session(SessionError),
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sql(e)
    }
}

impl From<SessionError> for DbError {
    fn from(e: SessionError) -> Self {
        DbError::Session(e)
    }
}

struct Db {
    // Declared first: dropped (closed) before the owner lock below is released.
    conn: Connection,
    /// The id of the session this backend owns (`sid` of its rows).
    sid: SessionId,
    resource: String,
    path: Option<PathBuf>,
    preserved: Option<PathBuf>,
    /// `None` in memory.
    durability: Option<Durability>,
    /// What the rows hold, as far as this owner knows (it is the only writer).
    rows: RowCounts,
    /// The key range of each chunk, in order.
    ranges: Vec<(PeerKey, PeerKey)>,
    /// How this session's rows are sealed (`None`: a plain database).
    seal: Option<Sealer>,
    _lock: Option<OwnerLock>,
}

/// Rows of the peer overlay at which a persist folds them into chunks, at the least.
const COMPACT_MIN_ROWS: u64 = 4096;

/// The shape of the stored rows that decides which statements a persist needs and when the peer
/// overlay is folded into chunks. `overlay` and `removals` may overcount (an upsert of a peer
/// that already has a row counts again); the count is made exact before folding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RowCounts {
    session_row: bool,
    /// Peers in `peer_chunks`.
    chunked: u64,
    /// Rows in `peers`.
    overlay: u64,
    /// Rows in `peer_removals`.
    removals: u64,
}

impl RowCounts {
    /// The counts after `changes` are persisted over chunks with key `ranges`.
    fn after(mut self, changes: &[Change], ranges: &[(PeerKey, PeerKey)]) -> RowCounts {
        self.session_row = true;
        let mut chunked = Some(ranges);
        for c in changes {
            match c {
                Change::UpsertPeer(_) => self.overlay += 1,
                // The plan records a removal only where this says so.
                Change::RemovePeer(key) if session_sql::may_be_chunked(chunked, *key) => self.removals += 1,
                Change::LogOut => {
                    (self.chunked, self.overlay, self.removals) = (0, 0, 0);
                    chunked = Some(&[]);
                }
                _ => {}
            }
        }
        self
    }

    /// Whether the overlay has outgrown the chunks under it.
    fn fold_due(self) -> bool {
        self.overlay + self.removals > COMPACT_MIN_ROWS.max(self.chunked / 8)
    }

    fn saved(peers: usize) -> RowCounts {
        RowCounts { session_row: true, chunked: peers as u64, overlay: 0, removals: 0 }
    }
}

/// The `synchronous` level of one write transaction.
fn sync_level(durability: Durability, critical: bool) -> &'static str {
    match (durability, critical) {
        (Durability::PowerLoss, _) | (Durability::Balanced, true) => "FULL",
        (Durability::ProcessCrash, _) | (Durability::Balanced, false) => "NORMAL",
    }
}

impl Db {
    fn open_file(path: &Path, durability: Durability, name: &str, keys: Option<&Keyring>) -> Result<Db, SessionError> {
        // The lock follows the file, whatever name reaches it (a symlink, a hard link, a `..`
        // path): it is taken on the real path's lock file and, once the database exists, on the
        // database file's inode. Everything below works on the real path, so SQLite's `-wal`
        // and `-shm` are the same files for every name.
        let resource = resource_of(path, name);
        let span = tracing::debug_span!("lock", backend = NAME, path = %resource, elapsed_us = Empty);
        let (mut lock, real) = timed_sync(&span, || session_lock(path, name, &resource))?;
        drop(span);
        match existing(&real, &resource)? {
            Existing::Missing => {
                if create_once(&real, &resource)? {
                    tracing::debug!(path = %resource, "created a new session database");
                }
            }
            Existing::Database => make_private(&real, &resource)?,
        }
        if session_sql::is_default(name) {
            // A database created just now has its inode only now; no SQLite connection is open
            // on it yet, so the lock's own descriptor disturbs none of SQLite's POSIX locks.
            lock.lock_session_file()?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&real, flags).map_err(|e| map_sql(e, &resource))?;
        let mut db = Db {
            conn,
            sid: session_sql::DEFAULT_SESSION_ID,
            resource,
            path: Some(real),
            preserved: None,
            durability: Some(durability),
            rows: RowCounts::default(),
            ranges: Vec::new(),
            seal: None,
            _lock: Some(lock),
        };
        db.setup(Some(durability)).map_err(|e| db.fail(e))?;
        // Decided before anything is written: a sealed database opened without its key gets
        // not even the new session's name.
        let record = read_seal(&db.conn, &db.resource).map_err(|e| db.fail(e))?;
        let seal = session_sql::open_seal(&db.resource, record, keys).map_err(|e| db.fail(e.into()))?;
        if !session_sql::is_default(name) {
            db.sid = db.register(name).map_err(|e| db.fail(e))?;
            db.rows = count_rows(&db.conn, db.sid).map_err(|e| db.fail(e))?;
            db.ranges = read_ranges(&db.conn, db.sid, &db.resource).map_err(|e| db.fail(e))?;
        }
        if let Some(seal) = seal {
            db.seal_with(seal, record, name).map_err(|e| db.fail(e))?;
        }
        Ok(db)
    }

    /// Seals this session with `seal` (what [`session_sql::open_seal`] made of the stored
    /// `record`): when the record is missing or names an older key, this session's rows are
    /// sealed with the keyring's key and the record stored, in one transaction.
    fn seal_with(
        &mut self,
        seal: Arc<session_sql::DbSeal>,
        record: Option<SealRecord>,
        name: &str,
    ) -> Result<(), DbError> {
        let sealer = seal.session(name);
        if seal.needs_record() {
            let (resource, sid, with) = (self.resource.clone(), self.sid, sealer.clone());
            self.write(std::iter::empty(), true, move |tx| {
                // Another owner may have sealed the database since it was read.
                if read_seal(tx, &resource)? != record {
                    return Err(SessionError::Backend {
                        backend: NAME.to_owned(),
                        source: format!(
                            "{resource}: the database was sealed by another owner while it opened; open it again"
                        )
                        .into(),
                    }
                    .into());
                }
                if seal.is_new() {
                    let others: i64 = tx.query_row(session_sql::OTHER_STORED_SESSIONS, [sid], |r| r.get(0))?;
                    if others > 0 {
                        return Err(SessionError::invalid(
                            format!("session database {resource}"),
                            format!(
                                "it holds {others} other session(s) in clear; a database is sealed whole, so seal it \
                                 when no other session is stored in it (or convert each session into a sealed database)"
                            ),
                        )
                        .into());
                    }
                }
                // What is stored, read as it was sealed (or in clear), written back sealed.
                let opened = (!seal.is_new()).then(|| with.clone());
                let mut rows = SessionRows::new(resource.clone()).with_seal(opened);
                read_rows(tx, sid, session_sql::LOAD_QUERIES, &mut rows, &resource)?;
                if let Some(data) = rows.finish()? {
                    execute(tx, session_sql::save_plan_sealed(sid, &data, Some(&with))?.into_iter())?;
                }
                execute(tx, std::iter::once(seal.record_statement()))
            })?;
            self.rows = count_rows(&self.conn, self.sid)?;
            self.ranges = read_ranges(&self.conn, self.sid, &self.resource)?;
            tracing::info!(path = %self.resource, key_id = %sealer.db().key_id(), "sealed the session with a new key");
        }
        self.seal = Some(sealer);
        Ok(())
    }

    /// The id of session `name`, registered when it is new.
    fn register(&mut self, name: &str) -> Result<SessionId, DbError> {
        if session_sql::is_default(name) {
            return Ok(session_sql::DEFAULT_SESSION_ID);
        }
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let [register, id] = session_sql::register_session(name)?;
        execute(&tx, std::iter::once(register))?;
        let sid: i64 = tx.query_row(id.sql, params_from_iter(id.params.iter().map(Param)), |r| r.get(0))?;
        tx.commit()?;
        Ok(sid)
    }

    fn open_memory() -> Result<Db, SessionError> {
        let resource = ":memory:".to_owned();
        let conn = Connection::open_in_memory().map_err(|e| map_sql(e, &resource))?;
        let mut db = Db {
            conn,
            sid: session_sql::DEFAULT_SESSION_ID,
            resource,
            path: None,
            preserved: None,
            durability: None,
            rows: RowCounts::default(),
            ranges: Vec::new(),
            seal: None,
            _lock: None,
        };
        db.setup(None).map_err(|e| db.fail(e))?;
        Ok(db)
    }

    /// `file`: the durability of a file database (`None` in memory).
    fn setup(&mut self, file: Option<Durability>) -> Result<(), DbError> {
        let conn = &mut self.conn;
        // The owner lock makes us the only writer of our session's rows, not of the file: the
        // owners of the file's other sessions write too, and SQLite serializes the transactions,
        // so a write waits (a bounded time) for theirs.
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Reading the header first turns "not a database" into an error here, not later.
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let version = u32::try_from(version).unwrap_or(u32::MAX);
        let app_id: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        if version == 0 {
            let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
            let mut tables = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
            drop(stmt);
            // A lease taken before the schema was made is ours too.
            tables.retain(|t| !session_sql::lease::TABLES.contains(&t.as_str()));
            if !tables.is_empty() {
                return Err(foreign_database(&self.resource, &tables).into());
            }
        } else if app_id != i64::from(session_sql::APPLICATION_ID) {
            return Err(SessionError::invalid(
                format!("session database {}", self.resource),
                format!("its application_id is {app_id:#x}, not layer-client's; it belongs to another program"),
            )
            .into());
        }
        // Refuse a newer schema before anything below changes the file.
        let steps: Vec<(u32, &str)> = session_sql::migrations_from(version)?.collect();
        if file.is_some() {
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(SessionError::Backend {
                    backend: NAME.to_owned(),
                    source: format!("{}: journal mode is {mode}, WAL could not be enabled", self.resource).into(),
                }
                .into());
            }
        }
        // In memory nothing is synced; a file without WAL is only the new database `create`
        // writes, and it wants each migration in the file when its commit returns.
        let synchronous = sync_level(file.unwrap_or(Durability::PowerLoss), false);
        // A checkpoint (which fsyncs under `synchronous = NORMAL`) every 4,000 WAL pages instead
        // of SQLite's 1,000: a quarter of the fsyncs for a stream of small writes. The WAL file
        // is cut back to 16 MiB after a checkpoint, so it never keeps more disk than that.
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {synchronous}; PRAGMA cell_size_check = ON; PRAGMA trusted_schema = OFF; PRAGMA cache_size = -32768; \
             PRAGMA foreign_keys = OFF; PRAGMA wal_autocheckpoint = 4000; PRAGMA journal_size_limit = 16777216;"
        ))?;
        let migrate = match steps.last() {
            Some((to, _)) => tracing::info_span!(
                "migrate",
                backend = NAME,
                path = %self.resource,
                from = version,
                to = *to,
                elapsed_us = Empty
            ),
            None => Span::none(),
        };
        let start = (!migrate.is_disabled()).then(std::time::Instant::now);
        let mut from = version;
        for (target, sql) in steps {
            let _entered = migrate.enter();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // The owner of another session of this file may have migrated it since the version
            // was read: read again under the write lock.
            let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if u32::try_from(now).unwrap_or(u32::MAX) >= target {
                from = target;
                continue;
            }
            tx.execute_batch(sql)?;
            backfill(&tx, target, &self.resource)?;
            tx.execute_batch(&session_sql::set_version_sql(target))?;
            tx.commit()?;
            tracing::info!(path = %self.resource, from, to = target, "migrated the session schema one version up");
            from = target;
        }
        if let Some(start) = start {
            migrate.record("elapsed_us", micros(start));
        }
        check_tables(&self.conn, &self.resource)?;
        self.rows = count_rows(&self.conn, self.sid)?;
        self.ranges = read_ranges(&self.conn, self.sid, &self.resource)?;
        tracing::debug!(
            path = %self.resource,
            schema_version = from,
            peers = self.rows.chunked,
            chunks = self.ranges.len(),
            overlay_rows = self.rows.overlay,
            removals = self.rows.removals,
            "opened the session database"
        );
        Ok(())
    }

    fn save(&mut self, data: &SessionData) -> Result<(), DbError> {
        let (resource, sid) = (self.resource.clone(), self.sid);
        let mut ranges = Vec::new();
        let plan = session_sql::save_plan_sealed(sid, data, self.seal.as_ref())?;
        self.write(plan.into_iter(), true, |tx| {
            ranges = read_ranges(tx, sid, &resource)?;
            Ok(())
        })?;
        self.rows = RowCounts::saved(data.peers.len());
        self.ranges = ranges;
        Ok(())
    }

    fn delete(&mut self) -> Result<(), DbError> {
        self.write(session_sql::delete_plan(self.sid), true, |_| Ok(()))?;
        self.rows = RowCounts::default();
        self.ranges.clear();
        Ok(())
    }

    /// Persists `changes` in one transaction; when the peer overlay has outgrown the chunks, the
    /// same transaction folds it into new chunks (read back from the rows themselves, so the
    /// chunks hold exactly what a load would have returned).
    fn persist(&mut self, changes: &[Change], full: &SessionData, critical: bool) -> Result<(), DbError> {
        let known = Known {
            session_row: self.rows.session_row,
            no_removals: self.rows.removals == 0,
            chunk_ranges: Some(&self.ranges),
        };
        // The plan borrows the ranges: built into statements before the write borrows `self`.
        let sid = self.sid;
        let plan: Vec<Statement> = session_sql::persist_plan_sealed(sid, changes, full, known, self.seal.as_ref())?;
        let mut after = self.rows.after(changes, &self.ranges);
        let fold = after.fold_due();
        let logout = changes.iter().any(|c| matches!(c, Change::LogOut));
        let resource = self.resource.clone();
        let seal = self.seal.clone();
        let mut ranges = None;
        self.write(plan.into_iter(), critical, |tx| {
            if fold {
                after = fold_overlay(tx, sid, &resource, seal.as_ref())?;
            }
            if fold || logout {
                ranges = Some(read_ranges(tx, sid, &resource)?);
            }
            Ok(())
        })?;
        self.rows = after;
        if let Some(ranges) = ranges {
            self.ranges = ranges;
        }
        Ok(())
    }

    /// Runs `plan`, then `more`, in one transaction; `critical` commits it with the critical
    /// sync level.
    fn write(
        &mut self,
        plan: impl Iterator<Item = Statement>,
        critical: bool,
        more: impl FnOnce(&Connection) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        let level = self.durability.map(|d| (sync_level(d, false), sync_level(d, critical)));
        match level {
            Some((ordinary, this)) if ordinary != this => {
                // The level applies to the commit; switched outside the transaction and back
                // whatever the outcome.
                self.conn.pragma_update(None, "synchronous", this)?;
                let result = self.write_tx(plan, more);
                let restored = self.conn.pragma_update(None, "synchronous", ordinary);
                result?;
                restored?;
                Ok(())
            }
            _ => self.write_tx(plan, more),
        }
    }

    fn write_tx(
        &mut self,
        plan: impl Iterator<Item = Statement>,
        more: impl FnOnce(&Connection) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        // `BEGIN IMMEDIATE` / `COMMIT` through the statement cache: no SQL parsing per write.
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let result = execute(&self.conn, plan).and_then(|()| more(&self.conn));
        match result {
            Ok(()) => {
                self.conn.prepare_cached("COMMIT")?.execute([])?;
                Ok(())
            }
            Err(e) => {
                // Nothing of a failed write stays; `fail` retries the rollback if this one fails.
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn load(&mut self) -> Result<Option<SessionData>, DbError> {
        // One read transaction: every table is read from the same snapshot.
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let mut rows = SessionRows::new(self.resource.clone()).with_seal(self.seal.clone());
        read_rows(&tx, self.sid, session_sql::LOAD_QUERIES, &mut rows, &self.resource)?;
        tx.commit()?;
        Ok(rows.finish()?)
    }

    fn quick_check(&mut self) -> Result<(), DbError> {
        let mut stmt = self.conn.prepare("PRAGMA quick_check")?;
        let problems = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
        if problems.len() == 1 && problems[0] == "ok" {
            return Ok(());
        }
        Err(SessionError::corrupt(&self.resource, format!("quick_check: {}", problems.join("; "))).into())
    }

    /// Maps an error, makes sure no transaction is left open, and keeps a copy of a damaged file.
    fn fail(&mut self, e: DbError) -> SessionError {
        if !self.conn.is_autocommit() {
            // A failed statement inside a transaction we did not get to drop yet; `ROLLBACK`
            // cannot make things worse, and its own failure is reported by the next call.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        let error = match e {
            DbError::Sql(e) => map_sql(e, &self.resource),
            DbError::Session(e) => e,
        };
        match error {
            SessionError::Corrupt { resource, reason, preserved_at: None } => {
                let preserved_at = self.preserve();
                SessionError::Corrupt { resource, reason, preserved_at }
            }
            other => other,
        }
    }

    /// Copies the damaged database (and its WAL) beside it, once per backend.
    fn preserve(&mut self) -> Option<PathBuf> {
        if self.preserved.is_some() {
            return self.preserved.clone();
        }
        let copy = preserve_copy(self.path.as_ref()?)?;
        self.preserved = Some(copy.clone());
        Some(copy)
    }
}

/// Copies a damaged database (and its `-wal`) beside it as `<name>.corrupt-<crc>`, named by
/// the CRC-32 of its bytes: opening the same damaged file again finds its copy there and makes
/// no other, so failed opens in a loop never pile up copies. Returns the copy's path.
fn preserve_copy(path: &Path) -> Option<PathBuf> {
    let span = tracing::info_span!(
        "preserve_corrupt",
        backend = NAME,
        path = %path.display(),
        bytes = Empty,
        copy = Empty,
        elapsed_us = Empty
    );
    let start = (!span.is_disabled()).then(std::time::Instant::now);
    let _entered = span.enter();
    let copy = preserve_copy_inner(path, &span);
    if let Some(start) = start {
        span.record("elapsed_us", micros(start));
        match &copy {
            Some(copy) => {
                span.record("copy", tracing::field::display(copy.display()));
                tracing::debug!(copy = %copy.display(), "a copy of the damaged database is kept");
            }
            None => tracing::debug!("no copy of the damaged database could be kept"),
        }
    }
    copy
}

fn preserve_copy_inner(path: &Path, span: &Span) -> Option<PathBuf> {
    let bytes = std::fs::read(path).ok()?;
    span.record("bytes", bytes.len());
    let wal = std::fs::read(side_file(path, "-wal")).ok();
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes);
    if let Some(wal) = &wal {
        h.update(wal);
    }
    let mut name = path.file_name()?.to_os_string();
    name.push(format!(".corrupt-{:08x}", h.finalize()));
    let copy = path.with_file_name(name);
    let same = |p: &Path, b: &[u8]| std::fs::read(p).is_ok_and(|c| c == b);
    if same(&copy, &bytes) && wal.as_deref().is_none_or(|w| same(&side_file(&copy, "-wal"), w)) {
        return Some(copy);
    }
    // A leftover of another damage with the same checksum (or half a copy): made again.
    let _ = std::fs::remove_file(&copy);
    let _ = std::fs::remove_file(side_file(&copy, "-wal"));
    write_private(&copy, &bytes).ok()?;
    if let Some(wal) = &wal {
        let _ = write_private(&side_file(&copy, "-wal"), wal);
    }
    Some(copy)
}

fn write_private(to: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut dst = private_options().write(true).create_new(true).open(to)?;
    dst.write_all(bytes)?;
    dst.sync_all()
}

/// The columns of every table of the current schema, as the migrations make them.
fn schema_columns() -> Result<&'static [(&'static str, Vec<String>)], DbError> {
    static COLUMNS: std::sync::OnceLock<Vec<(&'static str, Vec<String>)>> = std::sync::OnceLock::new();
    if let Some(columns) = COLUMNS.get() {
        return Ok(columns);
    }
    let conn = Connection::open_in_memory()?;
    for (_, sql) in session_sql::migrations_from(0)? {
        conn.execute_batch(sql)?;
    }
    let columns =
        session_sql::TABLES.iter().map(|t| Ok((*t, table_columns(&conn, t)?))).collect::<Result<Vec<_>, DbError>>()?;
    Ok(COLUMNS.get_or_init(|| columns))
}

fn table_columns(conn: &Connection, table: &str) -> Result<Vec<String>, DbError> {
    let mut stmt = conn.prepare_cached("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?;
    // Bytes, not `String`: a damaged name that is not UTF-8 is a mismatch, not a driver error.
    let names = stmt
        .query_map([table], |r| {
            Ok(match r.get_ref(0)? {
                ValueRef::Text(b) | ValueRef::Blob(b) => String::from_utf8_lossy(b).into_owned(),
                _ => String::new(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(names)
}

/// Every table of the schema is there with its columns. A damaged schema page (a table or a
/// column renamed by a flipped bit) is `Corrupt` here, rather than an SQL error at the first
/// load or write.
fn check_tables(conn: &Connection, resource: &str) -> Result<(), DbError> {
    for (table, expected) in schema_columns()? {
        let found = table_columns(conn, table)?;
        if &found != expected {
            let reason = if found.is_empty() {
                format!("schema: table {table} is missing")
            } else {
                format!("schema: table {table} has columns ({}), not ({})", found.join(", "), expected.join(", "))
            };
            return Err(SessionError::corrupt(resource, reason).into());
        }
    }
    Ok(())
}

/// How long a write waits for another session's owner's transaction on the same file.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How a session is named in messages: the path, and `#name` for a session other than the
/// default one.
fn resource_of(path: &Path, name: &str) -> String {
    if session_sql::is_default(name) {
        path.display().to_string()
    } else {
        format!("{}#{name}", path.display())
    }
}

/// A stable 64-bit hash of a session name (two CRC-32s), for its lock file's name: stable
/// across builds and platforms, so that every build agrees on which file locks which session.
fn name_hash(name: &str) -> u64 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[0xA5]);
    h.update(name.as_bytes());
    (u64::from(crc32fast::hash(name.as_bytes())) << 32) | u64::from(h.finalize())
}

/// The owner lock of session `name` of the database at `path`, and the database's real path.
///
/// `default` keeps the lock every build took (`<db>.lock` and the database file's inode), so
/// older builds and the CLI exclude it as before. Another name is locked through
/// `<real db>.session-<hash>.lock`: its own file, so owners of different sessions of one file
/// never exclude each other, and the owners of one session always do.
fn session_lock(path: &Path, name: &str, resource: &str) -> Result<(OwnerLock, PathBuf), SessionError> {
    if session_sql::is_default(name) {
        let lock = OwnerLock::acquire(path)?;
        let real = lock.session_path().to_path_buf();
        return Ok((lock, real));
    }
    let real = session_core::fs::resolve(path).map_err(|e| SessionError::io(resource, e))?;
    session_core::fs::check_regular(&real)?;
    let mut pseudo = real.as_os_str().to_os_string();
    pseudo.push(format!(".session-{:016x}", name_hash(name)));
    match OwnerLock::acquire(Path::new(&pseudo)) {
        Ok(lock) => Ok((lock, real)),
        Err(SessionError::Locked { pid, holder, expires_in, .. }) => {
            Err(SessionError::Locked { resource: resource.to_owned(), pid, holder, expires_in })
        }
        Err(e) => Err(e),
    }
}

/// Creates the database at `path` unless someone else did first: the owners of different
/// sessions of one new file may open it at once, so the creation runs under an exclusive
/// `flock` of the directory (held for the few milliseconds it takes) and looks again under it.
/// Returns whether this call created it.
fn create_once(path: &Path, resource: &str) -> Result<bool, SessionError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| Path::new("."));
    // A directory this process may not read (no `r` bit) cannot be opened to lock; the owner
    // lock alone then guards the creation, as it did before named sessions.
    let dir_lock = std::fs::File::open(dir).ok().filter(|d| d.lock().is_ok());
    let result = match existing(path, resource)? {
        Existing::Missing => create(path, &resource_of(path, DEFAULT_SESSION)).map(|()| true),
        Existing::Database => make_private(path, resource).map(|()| false),
    };
    drop(dir_lock);
    result
}

/// What is at a database path before it is opened.
enum Existing {
    Missing,
    Database,
}

/// `path` with `suffix` appended to its name (SQLite's side files: `-wal`, `-shm`, `-journal`).
fn side_file(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Looks at `path` before SQLite opens it: a FIFO, a device or a directory is refused at once,
/// without opening it (opening a FIFO, or reading a device, could block or never end), and so
/// is an empty file (a database we create is never empty: see [`create`]), unless a `-wal`
/// beside it holds the database's first pages. A file without a SQLite header is `Corrupt`.
fn existing(path: &Path, resource: &str) -> Result<Existing, SessionError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Missing),
        Err(e) => return Err(SessionError::io(resource, e)),
    };
    if !meta.is_file() {
        let what = if meta.is_dir() { "a directory" } else { "not a regular file (a FIFO, a device or a socket)" };
        return Err(SessionError::invalid(
            format!("session database {resource}"),
            format!("the path names {what}, not a database file"),
        ));
    }
    let wal = std::fs::metadata(side_file(path, "-wal")).map(|m| m.len()).unwrap_or(0);
    if meta.len() == 0 && wal == 0 {
        return Err(SessionError::invalid(
            format!("session database {resource}"),
            "the file is empty: it is not a session database (a new one is created where no file exists)",
        ));
    }
    if meta.len() > 0 {
        // SQLite takes a file shorter than its header for an empty database and would write a
        // new schema over what is left of a damaged one: it is damage, and said so here.
        let mut head = [0u8; 16];
        let read = std::fs::File::open(path).and_then(|mut f| {
            use std::io::Read as _;
            f.read_exact(&mut head)
        });
        if meta.len() < 512 || read.is_err() || &head != b"SQLite format 3\0" {
            return Err(SessionError::Corrupt {
                resource: resource.to_owned(),
                reason: "the file does not start with a SQLite database header".to_owned(),
                preserved_at: preserve_copy(path),
            });
        }
    }
    Ok(Existing::Database)
}

/// Makes the database and the side files that exist private (0600) before SQLite opens them:
/// SQLite gives the `-wal` and `-shm` files it creates the database file's mode, so a database
/// left world-readable (by another tool, a copy, an older build) would otherwise spread its
/// keys into world-readable files.
fn make_private(path: &Path, resource: &str) -> Result<(), SessionError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in [path.to_path_buf(), side_file(path, "-wal"), side_file(path, "-shm"), side_file(path, "-journal")]
        {
            let mode = match std::fs::metadata(&file) {
                Ok(meta) => meta.permissions().mode(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(SessionError::io(file.display(), e)),
            };
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700))
                    .map_err(|e| SessionError::io(file.display(), e))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, resource);
    #[cfg(unix)]
    let _ = resource;
    Ok(())
}

/// Creates a new database at `path`, whole or not at all: the schema is written into a private
/// file beside it (`<name>.new`, under the owner lock, so no one else writes it), fsynced, and
/// renamed into place, and the directory fsynced. A crash leaves either no database (and maybe a
/// stale `.new`, replaced by the next open) or a complete one, never an empty file.
fn create(path: &Path, resource: &str) -> Result<(), SessionError> {
    let temp = side_file(path, ".new");
    match std::fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(SessionError::io(temp.display(), e)),
    }
    for suffix in ["-journal", "-wal", "-shm"] {
        let _ = std::fs::remove_file(side_file(&temp, suffix));
    }
    let file =
        private_options().write(true).create_new(true).open(&temp).map_err(|e| SessionError::io(temp.display(), e))?;
    drop(file);
    let temp_resource = temp.display().to_string();
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(&temp, flags).map_err(|e| map_sql(e, &temp_resource))?;
    let mut db = Db {
        conn,
        sid: session_sql::DEFAULT_SESSION_ID,
        resource: temp_resource,
        path: None,
        preserved: None,
        durability: None,
        rows: RowCounts::default(),
        ranges: Vec::new(),
        seal: None,
        _lock: None,
    };
    // Rollback-journal mode with `synchronous = FULL`: every migration is in the file itself
    // when its commit returns (WAL mode is switched on by the open that follows).
    db.setup(None).map_err(|e| db.fail(e))?;
    drop(db);
    std::fs::File::open(&temp).and_then(|f| f.sync_all()).map_err(|e| SessionError::io(temp.display(), e))?;
    std::fs::rename(&temp, path).map_err(|e| SessionError::io(resource, e))?;
    sync_dir(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| Path::new(".")))
}

/// Runs the statements of a plan. Consecutive statements of one kind (a bulk save) reuse the
/// prepared statement without a cache lookup each.
fn execute(conn: &Connection, plan: impl Iterator<Item = Statement>) -> Result<(), DbError> {
    let mut current: Option<(&'static str, rusqlite::CachedStatement<'_>)> = None;
    for st in plan {
        let reuse = matches!(&current, Some((sql, _)) if std::ptr::eq(*sql, st.sql) || *sql == st.sql);
        if !reuse {
            // Return the previous statement to the cache before taking the next.
            drop(current.take());
            current = Some((st.sql, conn.prepare_cached(st.sql)?));
        }
        if let Some((_, stmt)) = current.as_mut() {
            stmt.execute(params_from_iter(st.params.iter().map(Param)))?;
        }
    }
    Ok(())
}

/// The exact counts of the stored rows of session `sid`.
fn count_rows(conn: &Connection, sid: SessionId) -> Result<RowCounts, DbError> {
    let (session, chunked, overlay, removals): (i64, i64, i64, i64) = conn.query_row(
        "SELECT (SELECT count(*) FROM session WHERE sid = ?1), \
         (SELECT coalesce(sum(peers), 0) FROM peer_chunks WHERE sid = ?1), \
         (SELECT count(*) FROM peers WHERE sid = ?1), (SELECT count(*) FROM peer_removals WHERE sid = ?1)",
        [sid],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(RowCounts { session_row: session > 0, chunked: n(chunked), overlay: n(overlay), removals: n(removals) })
}

/// The key range of every chunk of session `sid`, in order.
fn read_ranges(conn: &Connection, sid: SessionId, resource: &str) -> Result<Vec<(PeerKey, PeerKey)>, DbError> {
    let mut stmt = conn.prepare_cached(session_sql::LOAD_CHUNK_RANGES)?;
    let mut query = stmt.query([sid])?;
    let mut out = Vec::new();
    while let Some(row) = query.next()? {
        let mut values = [SqlValueRef::Null; 4];
        for (i, slot) in values.iter_mut().enumerate() {
            *slot = value_ref(row.get_ref(i)?, resource)?;
        }
        out.push(session_sql::chunk_range(resource, &values)?);
    }
    Ok(out)
}

/// The database's seal record (`None`: a plain database).
fn read_seal(conn: &Connection, resource: &str) -> Result<Option<SealRecord>, DbError> {
    let mut stmt = conn.prepare_cached(session_sql::LOAD_SEAL)?;
    let mut query = stmt.query([])?;
    let Some(row) = query.next()? else { return Ok(None) };
    let values = [value_ref(row.get_ref(0)?, resource)?, value_ref(row.get_ref(1)?, resource)?];
    Ok(Some(SealRecord::from_row(resource, &values)?))
}

/// Hands every row of `queries` (of session `sid`) to `rows`.
fn read_rows(
    conn: &Connection,
    sid: SessionId,
    queries: impl IntoIterator<Item = (Table, &'static str)>,
    rows: &mut SessionRows,
    resource: &str,
) -> Result<(), DbError> {
    for (table, sql) in queries {
        let mut stmt = conn.prepare_cached(sql)?;
        let n = stmt.column_count();
        let mut query = stmt.query([sid])?;
        while let Some(row) = query.next()? {
            let mut values = [SqlValueRef::Null; 20];
            for (i, slot) in values.iter_mut().enumerate().take(n) {
                *slot = value_ref(row.get_ref(i)?, resource)?;
            }
            rows.row(table, values.get(..n).unwrap_or(&values))?;
        }
    }
    Ok(())
}

/// Inside the migration to `target`: the statements of [`session_sql::backfill_statement`] for every
/// row its [`session_sql::backfill_queries`] read (all read before any is written), then
/// [`session_sql::backfill_sums`].
fn backfill(conn: &Connection, target: u32, resource: &str) -> Result<(), DbError> {
    for (table, sql) in session_sql::backfill_queries(target) {
        let mut plan = Vec::new();
        let mut stmt = conn.prepare(sql)?;
        let n = stmt.column_count();
        let mut query = stmt.query([])?;
        while let Some(row) = query.next()? {
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                values.push(value_ref(row.get_ref(i)?, resource)?);
            }
            plan.push(session_sql::backfill_statement(*table, &values)?);
        }
        drop(query);
        drop(stmt);
        execute(conn, plan.into_iter())?;
    }
    if let Some(sql) = session_sql::backfill_sums(target) {
        conn.execute_batch(sql)?;
    }
    Ok(())
}

/// Inside a write transaction: when the overlay really is past its limit (the counts may
/// overcount), reads the peer cache and writes it back as chunks. Returns the exact counts after.
fn fold_overlay(
    conn: &Connection,
    sid: SessionId,
    resource: &str,
    seal: Option<&Sealer>,
) -> Result<RowCounts, DbError> {
    let exact = count_rows(conn, sid)?;
    if !exact.fold_due() {
        return Ok(exact);
    }
    let span = tracing::debug_span!(
        "compact",
        backend = NAME,
        path = %resource,
        chunked = exact.chunked,
        overlay_rows = exact.overlay,
        removals = exact.removals,
        peers = Empty,
        elapsed_us = Empty
    );
    let start = (!span.is_disabled()).then(std::time::Instant::now);
    let _entered = span.enter();
    let mut rows = SessionRows::new(resource).with_seal(seal.cloned());
    read_rows(conn, sid, session_sql::LOAD_PEER_QUERIES, &mut rows, resource)?;
    let peers = rows.finish_peers()?;
    execute(conn, session_sql::compact_plan_sealed(sid, &peers, seal)?.into_iter())?;
    if let Some(start) = start {
        span.record("peers", peers.len());
        span.record("elapsed_us", micros(start));
        tracing::debug!(
            overlay_rows = exact.overlay,
            removals = exact.removals,
            peers = peers.len(),
            "folded the peer overlay into chunks"
        );
    }
    Ok(RowCounts::saved(peers.len()))
}

fn foreign_database(resource: &str, tables: &[String]) -> SessionError {
    let has = |t: &str| tables.iter().any(|n| n == t);
    let owner = if has("mtcute_migrations") {
        "an mtcute storage"
    } else if has("entities") && has("sessions") {
        "a Telethon session"
    } else if has("peers") && has("sessions") {
        "a Pyrogram-family session"
    } else {
        "another program's database"
    };
    SessionError::invalid(
        format!("session database {resource}"),
        format!(
            "it is {owner} (tables: {}); import it with session_sqlite::foreign::import instead of opening it",
            tables.join(", ")
        ),
    )
}

/// Maps a `rusqlite` error to the kind a caller can act on.
pub(crate) fn map_sql(e: rusqlite::Error, resource: &str) -> SessionError {
    let code = match &e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
        _ => None,
    };
    // A header field flipped to a format SQLite does not know (the read/write versions, the
    // schema format) comes back as a plain error: damage all the same.
    let unknown_format =
        matches!(&e, rusqlite::Error::SqliteFailure(_, Some(m)) if m.contains("unsupported file format"));
    match code {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => SessionError::corrupt(resource, e.to_string()),
        _ if unknown_format => SessionError::corrupt(resource, e.to_string()),
        // Not `Locked`: that says another owner holds the session, and this owner holds its
        // lock. The database's write lock stayed with another connection for the whole busy
        // timeout: the owner of another session of the file (many accounts in one database
        // queue for one writer) or a program such as the sqlite3 shell. Transient: the store
        // keeps the changes and tries again.
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => SessionError::Unavailable {
            resource: resource.to_owned(),
            source: format!(
                "the database stayed busy for {} s (another connection held its write lock): {e}",
                BUSY_TIMEOUT.as_secs()
            )
            .into(),
        },
        Some(ErrorCode::DiskFull) => {
            SessionError::io(resource, std::io::Error::new(std::io::ErrorKind::StorageFull, e))
        }
        Some(ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            SessionError::io(resource, std::io::Error::new(std::io::ErrorKind::PermissionDenied, e))
        }
        Some(ErrorCode::SystemIoFailure | ErrorCode::CannotOpen) => {
            SessionError::io(resource, std::io::Error::other(e))
        }
        _ => SessionError::Backend { backend: NAME.to_owned(), source: Box::new(e) },
    }
}

#[cfg(test)]
mod sync_tests {
    use super::*;

    #[test]
    fn balanced_fsyncs_exactly_the_critical_writes() {
        assert_eq!(sync_level(Durability::Balanced, true), "FULL");
        assert_eq!(sync_level(Durability::Balanced, false), "NORMAL");
        assert_eq!(sync_level(Durability::PowerLoss, false), "FULL");
        assert_eq!(sync_level(Durability::ProcessCrash, true), "NORMAL");
        assert_eq!(Durability::default(), Durability::PowerLoss, "the default keeps the book's promise");
    }
}
