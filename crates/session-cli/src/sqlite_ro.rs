//! Reading our SQLite (and local libSQL) databases without owning them: a read-only
//! connection, so a running program keeps its owner lock and nothing is written.

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use session_core::{SessionData, SessionError};
use session_sqlite::schema::{self, SessionRows, SqlValueRef};

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

/// Opens `path` read-only (WAL readers do not block the owner, and the owner lock is not taken).
pub fn open(path: &Path) -> Result<Connection, SessionError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(path, flags).map_err(|e| sql(&path.display().to_string(), e))
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

/// Loads the session of one of our databases in one read transaction (`None`: no session).
pub fn load(conn: &mut Connection, resource: &str) -> Result<Option<SessionData>, SessionError> {
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
    let mut rows = SessionRows::new(resource);
    for (table, query) in schema::LOAD_QUERIES {
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
    Ok(rows.finish())
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
