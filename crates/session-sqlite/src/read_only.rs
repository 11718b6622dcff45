//! Reading a session database without owning it: no owner lock, nothing written, nothing
//! created beside the database. The SQLite counterpart of `session_file::read_snapshot`, for tools
//! (`layer-session inspect` / `verify`) that look at a session a running program holds.
//!
//! Everything here is blocking (it is SQLite file I/O): call it from `spawn_blocking` in async
//! code.
//!
//! ```
//! # fn main() -> Result<(), session_sqlite::SessionError> {
//! # let dir = tempfile::tempdir().map_err(|e| session_sqlite::SessionError::io("tmp", e))?;
//! use session_sqlite::read_only::{read_snapshot, Kind, ReadOnly};
//!
//! let path = dir.path().join("bot.db");
//! // No file: no session (as `session_file::read_snapshot` says of a missing file).
//! assert!(read_snapshot(&path)?.is_none());
//!
//! // A tool that also wants to know what else the file may be:
//! # rusqlite::Connection::open(&path).and_then(|c| c.execute_batch("CREATE TABLE sessions (x)"))
//! #     .map_err(|e| session_sqlite::SessionError::invalid("test", e.to_string()))?;
//! let db = ReadOnly::open(&path)?;
//! assert_eq!(db.kind()?, Kind::Foreign); // another program's database: import it instead
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use session_core::{KeyId, Keyring, SessionData, SessionError};
use session_sql::lease::DEFAULT_SESSION;
use session_sql::{load_queries, SealRecord, SessionInfo, SessionRows, APPLICATION_ID, SCHEMA_VERSION};

use crate::values::value_ref;

/// The first bytes of every SQLite database file (how a tool tells one from other files).
pub const SQLITE_HEADER: &[u8] = b"SQLite format 3\0";

/// What kind of SQLite database a file is ([`ReadOnly::kind`]). Every database is one of the
/// three (our `application_id`, else no table, else someone else's), so the enum is exhaustive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Ours (our `application_id`).
    Ours,
    /// An empty database (no tables).
    Empty,
    /// Someone else's (a Telethon or Pyrogram session, an app's database): see
    /// [`crate::foreign`].
    Foreign,
}

/// What [`ReadOnly::load`] and [`read_snapshot`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The session as the last committed transaction left it.
    pub data: SessionData,
    /// The database's schema version (older ones are read as they are, not migrated).
    pub version: u32,
    /// The id of the key the database is sealed with, when it was read with a key
    /// ([`ReadOnly::load_named_with_key`]); `None` for a plain database.
    pub sealed_with: Option<KeyId>,
}

/// A read-only connection to a session database, and the private copy it reads when it has to
/// read one (see [`ReadOnly::open`]).
pub struct ReadOnly {
    // Declared first: closed before the copy is removed.
    conn: Connection,
    copy: Option<tempfile::TempDir>,
    resource: String,
}

// By hand: the connection's `Debug` shows nothing useful, and the copy's folder is an
// implementation detail.
impl std::fmt::Debug for ReadOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnly")
            .field("resource", &self.resource)
            .field("copied", &self.copy.is_some())
            .finish_non_exhaustive()
    }
}

/// Reads the session of our database at `path` without taking the owner lock and without
/// writing anything (blocking). `Ok(None)` when there is no file, when the database is empty
/// (no tables), or when it holds no session.
///
/// A database of another program is [`SessionError::Invalid`] (import it with
/// [`crate::foreign`]); damage is [`SessionError::Corrupt`] naming the file (nothing is kept or
/// repaired: the file is not ours to touch); a newer schema is
/// [`SessionError::UnsupportedVersion`].
pub fn read_snapshot(path: &Path) -> Result<Option<Snapshot>, SessionError> {
    match std::fs::metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SessionError::io(path.display().to_string(), e)),
    }
    let mut db = ReadOnly::open(path)?;
    match db.kind()? {
        Kind::Ours => db.load(),
        Kind::Empty => Ok(None),
        Kind::Foreign => Err(SessionError::invalid(
            format!("session database {}", db.resource),
            "it is another program's database; import it with session_sqlite::foreign::import",
        )),
    }
}

impl ReadOnly {
    /// Opens `path` read-only: the owner lock is not taken and nothing is written or created
    /// beside the database.
    ///
    /// - No `-wal` file: nobody has the database open in WAL mode, and it is opened `immutable`,
    ///   so that SQLite creates no `-wal` and `-shm` files beside a database we only read.
    /// - `-wal` and `-shm`: a program has it open (or was killed with it open); the connection
    ///   reads through them as any WAL reader does (a consistent snapshot, no blocking of the
    ///   writer), and both files exist already.
    /// - `-wal` without `-shm` (a checkpointed database whose owner is gone, or a copied one): a
    ///   reader would create `-shm`, so the database and its `-wal` are copied into a private
    ///   temporary folder and read there ([`copied`](Self::copied)); the copy goes with `self`.
    pub fn open(path: &Path) -> Result<Self, SessionError> {
        let resource = path.display().to_string();
        let wal = sibling(path, "-wal");
        let shm = sibling(path, "-shm");
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        if !wal.exists() {
            let target = format!("file:{}?immutable=1", uri_path(path)?);
            let conn = Connection::open_with_flags(target, flags).map_err(|e| sql(&resource, e))?;
            return Ok(Self { conn, copy: None, resource });
        }
        if shm.exists() {
            let target = format!("file:{}", uri_path(path)?);
            let conn = Connection::open_with_flags(target, flags).map_err(|e| sql(&resource, e))?;
            return Ok(Self { conn, copy: None, resource });
        }
        let io = |e: std::io::Error| SessionError::io(&resource, e);
        let dir = private_temp_dir().map_err(io)?;
        let copy = dir.path().join("copy.db");
        copy_private(path, &copy).map_err(io)?;
        copy_private(&wal, &sibling(&copy, "-wal")).map_err(io)?;
        let conn =
            Connection::open_with_flags(&copy, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| sql(&resource, e))?;
        Ok(Self { conn, copy: Some(dir), resource })
    }

    /// The name errors give the database from now on (default: the path as displayed), for a
    /// tool that shows paths its own way.
    pub fn with_name(mut self, resource: impl Into<String>) -> Self {
        self.resource = resource.into();
        self
    }

    /// Whether a private copy is read (the database had a `-wal` but no `-shm`).
    pub fn copied(&self) -> bool {
        self.copy.is_some()
    }

    /// Tells our databases from empty ones and other programs'.
    pub fn kind(&self) -> Result<Kind, SessionError> {
        let resource = &self.resource;
        let app_id: i64 =
            self.conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(|e| sql(resource, e))?;
        if app_id == i64::from(APPLICATION_ID) {
            return Ok(Kind::Ours);
        }
        let tables: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))
            .map_err(|e| sql(resource, e))?;
        Ok(if tables == 0 { Kind::Empty } else { Kind::Foreign })
    }

    /// Loads the session of one of our databases in one read transaction (`None`: no session),
    /// with the database's schema version. An older schema is read as it is, without the tables
    /// later versions added; a newer one is [`SessionError::UnsupportedVersion`]. Every value,
    /// row checksum and table sum is checked as by the backend's own load.
    ///
    /// The session is the database's `default` one (the only one before schema version 4); see
    /// [`ReadOnly::load_named`] for the others.
    pub fn load(&mut self) -> Result<Option<Snapshot>, SessionError> {
        self.load_named(DEFAULT_SESSION)
    }

    /// [`ReadOnly::load`] of the session called `name` (`None`: no such session, or nothing
    /// stored under it).
    pub fn load_named(&mut self, name: &str) -> Result<Option<Snapshot>, SessionError> {
        self.load_inner(name, None)
    }

    /// [`ReadOnly::load`] of a database that may be sealed: see
    /// [`ReadOnly::load_named_with_key`].
    pub fn load_with_key(&mut self, keys: &Keyring) -> Result<Option<Snapshot>, SessionError> {
        self.load_inner(DEFAULT_SESSION, Some(keys))
    }

    /// [`ReadOnly::load_named`] of a database that may be sealed (encrypted at rest): a sealed
    /// one is opened with `keys` ([`SessionError::WrongKey`] when they lack its key), a plain one
    /// is read as it is. Nothing is written either way (a backend opened with a key would seal a
    /// plain database; a reader does not). Blocking: a passphrase's key is derived here.
    pub fn load_named_with_key(&mut self, name: &str, keys: &Keyring) -> Result<Option<Snapshot>, SessionError> {
        self.load_inner(name, Some(keys))
    }

    fn load_inner(&mut self, name: &str, keys: Option<&Keyring>) -> Result<Option<Snapshot>, SessionError> {
        let resource = self.resource.as_str();
        let version = self.version()?;
        let tx = self.conn.transaction().map_err(|e| sql(resource, e))?;
        // Before version 4 a database holds the default session only.
        let sid = if version >= 4 {
            match tx.query_row(session_sql::SESSION_ID, [name], |r| r.get::<_, i64>(0)) {
                Ok(sid) => Some(sid),
                Err(rusqlite::Error::QueryReturnedNoRows) => return Ok(None),
                Err(e) => return Err(sql(resource, e)),
            }
        } else if session_sql::is_default(name) {
            None
        } else {
            return Ok(None);
        };
        // The seal record is read in the same transaction as the rows it opens. Without keys it
        // is not read: a sealed row is then `Sealed`, as before.
        let record = match keys {
            Some(_) if version >= 5 => match tx.query_row(session_sql::LOAD_SEAL, [], |r| {
                Ok((r.get::<_, Option<String>>(0)?, r.get::<_, Option<String>>(1)?))
            }) {
                Ok((key_id, kdf)) => {
                    Some(SealRecord::from_row(resource, &[text(key_id.as_deref()), text(kdf.as_deref())])?)
                }
                Err(rusqlite::Error::QueryReturnedNoRows) => None,
                Err(e) => return Err(sql(resource, e)),
            },
            _ => None,
        };
        let seal = match (record, keys) {
            (Some(record), Some(keys)) => {
                session_sql::open_seal(resource, Some(record), Some(keys))?.map(|seal| seal.session(name))
            }
            _ => None,
        };
        let mut rows = SessionRows::at_version(resource, version).with_seal(seal);
        for (table, query) in load_queries(version) {
            let mut stmt = tx.prepare(query).map_err(|e| sql(resource, e))?;
            let n = stmt.column_count();
            let mut result = match sid {
                Some(sid) => stmt.query([sid]),
                None => stmt.query([]),
            }
            .map_err(|e| sql(resource, e))?;
            while let Some(row) = result.next().map_err(|e| sql(resource, e))? {
                let mut values = Vec::with_capacity(n);
                for i in 0..n {
                    values.push(value_ref(row.get_ref(i).map_err(|e| sql(resource, e))?, resource)?);
                }
                rows.row(table, &values)?;
            }
        }
        drop(tx);
        let sealed_with = record.map(|r| r.key_id);
        Ok(rows.finish()?.map(|data| Snapshot { data, version, sealed_with }))
    }

    /// The schema version, refused when newer than this build's.
    fn version(&self) -> Result<u32, SessionError> {
        let resource = self.resource.as_str();
        let version: i64 =
            self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| sql(resource, e))?;
        let version = u32::try_from(version).unwrap_or(u32::MAX);
        if version > SCHEMA_VERSION {
            return Err(SessionError::UnsupportedVersion {
                what: "session database schema",
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(version)
    }

    /// The sessions of one of our databases, by name, with who holds each one's lease (see
    /// [`SessionInfo`]). A database older than schema version 4 holds one session, `default`
    /// (listed when it is stored). The owner lock of a local file is not a lease: a session
    /// opened by a local [`SqliteBackend`](crate::SqliteBackend) shows no holder here.
    pub fn sessions(&self) -> Result<Vec<SessionInfo>, SessionError> {
        let resource = self.resource.as_str();
        let version = self.version()?;
        let has = |table: &str| -> Result<bool, SessionError> {
            self.conn
                .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n > 0)
                .map_err(|e| sql(resource, e))
        };
        if version < 4 {
            let stored = has("session")? && {
                let n: i64 = self
                    .conn
                    .query_row("SELECT count(*) FROM session", [], |r| r.get(0))
                    .map_err(|e| sql(resource, e))?;
                n > 0
            };
            let row = [
                session_sql::SqlValueRef::Text(DEFAULT_SESSION),
                session_sql::SqlValueRef::Integer(i64::from(stored)),
                session_sql::SqlValueRef::Null,
                session_sql::SqlValueRef::Null,
            ];
            return Ok(if stored { vec![SessionInfo::from_row(resource, &row)?] } else { Vec::new() });
        }
        let query = if has(session_sql::lease::TABLES[0])? {
            session_sql::LIST_SESSIONS_WITH_LEASES
        } else {
            session_sql::LIST_SESSIONS
        };
        let mut stmt = self.conn.prepare(query).map_err(|e| sql(resource, e))?;
        let mut result = stmt.query([]).map_err(|e| sql(resource, e))?;
        let mut out = Vec::new();
        while let Some(row) = result.next().map_err(|e| sql(resource, e))? {
            let mut values = Vec::with_capacity(4);
            for i in 0..4 {
                values.push(value_ref(row.get_ref(i).map_err(|e| sql(resource, e))?, resource)?);
            }
            out.push(SessionInfo::from_row(resource, &values)?);
        }
        Ok(out)
    }

    /// SQLite's `PRAGMA integrity_check` over the whole file: the problems it lists (empty:
    /// sound). It reads every page, so it costs a full read of the database.
    pub fn integrity_check(&self) -> Result<Vec<String>, SessionError> {
        let resource = &self.resource;
        let mut stmt = self.conn.prepare("PRAGMA integrity_check").map_err(|e| sql(resource, e))?;
        let lines = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| sql(resource, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| sql(resource, e))?;
        Ok(lines.into_iter().filter(|l| l != "ok").collect())
    }
}

/// A reader's errors: damage is `Corrupt`, anything else the driver's error as it came.
fn sql(resource: &str, e: rusqlite::Error) -> SessionError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) =>
        {
            SessionError::corrupt(resource, e.to_string())
        }
        _ => SessionError::Backend { backend: format!("sqlite {resource}"), source: Box::new(e) },
    }
}

/// A nullable text column as session-sql reads it.
fn text(v: Option<&str>) -> session_sql::SqlValueRef<'_> {
    v.map_or(session_sql::SqlValueRef::Null, session_sql::SqlValueRef::Text)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

fn private_temp_dir() -> std::io::Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("layer-session-read.");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o700));
    }
    builder.tempdir()
}

fn copy_private(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut src = std::fs::File::open(from)?;
    let mut dst = session_core::fs::private_options().write(true).create_new(true).open(to)?;
    std::io::copy(&mut src, &mut dst)?;
    Ok(())
}

/// `path` escaped for a SQLite `file:` URI.
fn uri_path(path: &Path) -> Result<String, SessionError> {
    let text = path
        .to_str()
        .ok_or_else(|| SessionError::invalid(path.display().to_string(), "the path is not valid UTF-8"))?;
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}
