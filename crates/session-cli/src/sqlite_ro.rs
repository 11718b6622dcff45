//! Reading our SQLite (and local libSQL) databases without owning them: a read-only
//! connection, so a running program keeps its owner lock and nothing is written.

use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use session_core::{SessionData, SessionError};
use session_sql::{self as schema, SessionRows, SqlValueRef};

/// The first bytes of every SQLite database file.
pub const SQLITE_HEADER: &[u8] = b"SQLite format 3\0";

/// What kind of SQLite database a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Ours (our `application_id`).
    Ours,
    /// An empty database (no tables).
    Empty,
    /// Someone else's.
    Foreign,
}

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

/// A read-only connection, and the private copy it reads when it reads one.
#[derive(Debug)]
pub struct Opened {
    /// The connection (declared first: closed before the copy is removed).
    pub conn: Connection,
    /// The private folder holding the copy, if the database was copied.
    pub copy: Option<tempfile::TempDir>,
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Opens `path` read-only: the owner lock is not taken and nothing is written or created beside
/// the database.
///
/// - No `-wal` file: nobody has the database open in WAL mode, and it is opened `immutable`,
///   so that SQLite creates no `-wal` and `-shm` files beside a database we only read.
/// - `-wal` and `-shm`: a program has it open (or was killed with it open); the connection
///   reads through them as any WAL reader does (a consistent snapshot, no blocking of the
///   writer), and both files exist already.
/// - `-wal` without `-shm` (a checkpointed database whose owner is gone, or a copied one): a
///   reader would create `-shm`, so the database and its `-wal` are copied into a private
///   temporary folder and read there.
pub fn open(path: &Path) -> Result<Opened, SessionError> {
    let resource = path.display().to_string();
    let wal = sibling(path, "-wal");
    let shm = sibling(path, "-shm");
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    if !wal.exists() {
        let target = format!("file:{}?immutable=1", uri_path(path)?);
        let conn = Connection::open_with_flags(target, flags).map_err(|e| sql(&resource, e))?;
        return Ok(Opened { conn, copy: None });
    }
    if shm.exists() {
        let target = format!("file:{}", uri_path(path)?);
        let conn = Connection::open_with_flags(target, flags).map_err(|e| sql(&resource, e))?;
        return Ok(Opened { conn, copy: None });
    }
    let io = |e: std::io::Error| SessionError::io(&resource, e);
    let dir = private_temp_dir().map_err(io)?;
    let copy = dir.path().join("copy.db");
    copy_private(path, &copy).map_err(io)?;
    copy_private(&wal, &sibling(&copy, "-wal")).map_err(io)?;
    let conn = Connection::open_with_flags(&copy, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| sql(&resource, e))?;
    Ok(Opened { conn, copy: Some(dir) })
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

/// Tells our databases from others.
pub fn kind(conn: &Connection, resource: &str) -> Result<Kind, SessionError> {
    let app_id: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(|e| sql(resource, e))?;
    if app_id == i64::from(schema::APPLICATION_ID) {
        return Ok(Kind::Ours);
    }
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))
        .map_err(|e| sql(resource, e))?;
    Ok(if tables == 0 { Kind::Empty } else { Kind::Foreign })
}

/// Loads the session of one of our databases in one read transaction (`None`: no session),
/// with the database's schema version.
pub fn load(conn: &mut Connection, resource: &str) -> Result<(Option<SessionData>, u32), SessionError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| sql(resource, e))?;
    let version = u32::try_from(version).unwrap_or(u32::MAX);
    if version > schema::SCHEMA_VERSION {
        return Err(SessionError::UnsupportedVersion {
            what: "session database schema",
            found: version,
            supported: schema::SCHEMA_VERSION,
        });
    }
    let tx = conn.transaction().map_err(|e| sql(resource, e))?;
    let mut rows = SessionRows::at_version(resource, version);
    // Read-only: an older database is read as it is, without the tables later versions added.
    for (table, query) in schema::load_queries(version) {
        let mut stmt = tx.prepare(query).map_err(|e| sql(resource, e))?;
        let n = stmt.column_count();
        let mut result = stmt.query([]).map_err(|e| sql(resource, e))?;
        while let Some(row) = result.next().map_err(|e| sql(resource, e))? {
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                values.push(value(row.get_ref(i).map_err(|e| sql(resource, e))?, resource)?);
            }
            rows.row(table, &values)?;
        }
    }
    drop(tx);
    Ok((rows.finish()?, version))
}

fn value<'a>(v: ValueRef<'a>, resource: &str) -> Result<SqlValueRef<'a>, SessionError> {
    Ok(match v {
        ValueRef::Null => SqlValueRef::Null,
        ValueRef::Integer(i) => SqlValueRef::Integer(i),
        ValueRef::Real(f) => SqlValueRef::Real(f),
        ValueRef::Text(t) => SqlValueRef::Text(
            std::str::from_utf8(t).map_err(|_| SessionError::corrupt(resource, "text that is not UTF-8"))?,
        ),
        ValueRef::Blob(b) => SqlValueRef::Blob(b),
    })
}

/// SQLite's `PRAGMA integrity_check` over the whole file: the problems it lists (empty: sound).
pub fn integrity_check(conn: &Connection, resource: &str) -> Result<Vec<String>, SessionError> {
    let mut stmt = conn.prepare("PRAGMA integrity_check").map_err(|e| sql(resource, e))?;
    let lines = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(|e| sql(resource, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| sql(resource, e))?;
    Ok(lines.into_iter().filter(|l| l != "ok").collect())
}
