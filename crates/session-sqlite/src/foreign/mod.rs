//! Other libraries' SQLite session files: detect, import, export.
//!
//! The layouts, the SQL that reads and writes them and the row codecs are in
//! [`session_interop::sqlite`] (with the table of what each format holds); [`ForeignFormat`] and
//! [`Imported`] are its types, re-exported here and kept for 0.6. This module is the driver
//! side: it opens files, runs interop's statements on rusqlite, and keeps the source untouched.
//!
//! Import never writes to the source: the file (and its `-wal`, if any) is copied into a private
//! temporary directory first and the copy is opened read-only. Export writes a new file
//! (refusing to replace an existing one) with exactly the tables, indexes, triggers and `version`
//! row the library itself creates, in one transaction, so that the library opens it as its own.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::types::ValueRef;
use rusqlite::{params_from_iter, Connection, OpenFlags};
use session_core::fs::private_options;
use session_core::{SessionData, SessionError};
use session_interop::sqlite::{ForeignFile, Query, Row, Value};

pub use session_interop::sqlite::{ForeignFormat, Imported};

use crate::backend::map_sql;

/// Tells which library wrote the SQLite file at `path` (without changing it).
pub async fn detect(path: impl AsRef<Path>) -> Result<ForeignFormat, SessionError> {
    let path = path.as_ref().to_path_buf();
    blocking(move || detect_blocking(&path)).await
}

/// Reads the session in the foreign SQLite file at `path` (without changing it).
pub async fn import(path: impl AsRef<Path>) -> Result<Imported, SessionError> {
    let path = path.as_ref().to_path_buf();
    blocking(move || import_blocking(&path)).await
}

/// Writes `data` as a new `format` file at `path`, which must not exist yet.
///
/// What the format cannot hold is left out: DCs other than the home DC, "min" peers (their
/// hashes are only valid in context), peer subtypes the format lacks; usernames are written in
/// lowercase, as the libraries themselves store them. The session must have a home DC.
pub async fn export(data: &SessionData, format: ForeignFormat, path: impl AsRef<Path>) -> Result<(), SessionError> {
    let path = path.as_ref().to_path_buf();
    let data = data.clone();
    blocking(move || export_blocking(&data, format, &path)).await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SessionError> + Send + 'static,
) -> Result<T, SessionError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(SessionError::Backend { backend: "sqlite import".to_owned(), source: Box::new(e) }),
    }
}

/// The blocking form of [`detect`].
pub fn detect_blocking(path: &Path) -> Result<ForeignFormat, SessionError> {
    let copy = ReadOnlyCopy::new(path)?;
    let source = Source { conn: &copy.conn, resource: path.display().to_string() };
    let file = ForeignFile::new(&source, path.display().to_string());
    session_interop::detect_sqlite(&file).map_err(|e| ours_instead(&file, e))
}

/// The blocking form of [`import`].
pub fn import_blocking(path: &Path) -> Result<Imported, SessionError> {
    let copy = ReadOnlyCopy::new(path)?;
    let source = Source { conn: &copy.conn, resource: path.display().to_string() };
    let file = ForeignFile::new(&source, path.display().to_string());
    session_interop::import_sqlite(&file).map_err(|e| ours_instead(&file, e))
}

/// The blocking form of [`export`].
pub fn export_blocking(data: &SessionData, format: ForeignFormat, path: &Path) -> Result<(), SessionError> {
    let plan = session_interop::export_sqlite(data, format, unix_now())?;
    let resource = path.display().to_string();
    private_options().write(true).create_new(true).open(path).map_err(|e| SessionError::io(&resource, e))?;
    let result = (|| {
        let sql = |e| map_sql(e, &resource);
        let mut conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(sql)?;
        let tx = conn.transaction().map_err(sql)?;
        tx.execute_batch(plan.schema).map_err(sql)?;
        for statement in &plan.statements {
            let mut prepared = tx.prepare_cached(statement.sql).map_err(sql)?;
            prepared.execute(params_from_iter(statement.params.iter().map(to_sql))).map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        conn.close().map_err(|(_, e)| map_sql(e, &resource))?;
        session_core::fs::sync_dir(path.parent().unwrap_or_else(|| Path::new(".")))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(path);
        let mut journal = path.as_os_str().to_os_string();
        journal.push("-journal");
        let _ = std::fs::remove_file(journal);
    }
    result
}

/// A file none of the foreign layouts fit may be one of ours: say so instead.
fn ours_instead(file: &ForeignFile<'_>, not_foreign: SessionError) -> SessionError {
    match file.tables() {
        Ok(tables) if tables.iter().any(|t| crate::schema::TABLES.contains(&t.as_str())) => {
            file.invalid("this is a layer-client session database: open it with SqliteBackend::open")
        }
        _ => not_foreign,
    }
}

fn to_sql(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Integer(i) => rusqlite::types::Value::Integer(*i),
        Value::Real(f) => rusqlite::types::Value::Real(*f),
        Value::Text(t) => rusqlite::types::Value::Text(t.clone()),
        Value::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A read-only connection to a private copy of a file, removed on drop.
struct ReadOnlyCopy {
    // Closed before the directory is removed.
    conn: Connection,
    _dir: TempDir,
}

impl ReadOnlyCopy {
    fn new(source: &Path) -> Result<Self, SessionError> {
        let resource = source.display().to_string();
        let dir = TempDir::new().map_err(|e| SessionError::io("temporary directory", e))?;
        let copy = dir.path.join("copy.db");
        copy_file(source, &copy).map_err(|e| SessionError::io(&resource, e))?;
        let mut wal = source.as_os_str().to_os_string();
        wal.push("-wal");
        if Path::new(&wal).is_file() {
            copy_file(Path::new(&wal), &dir.path.join("copy.db-wal")).map_err(|e| SessionError::io(&resource, e))?;
        }
        let conn =
            Connection::open_with_flags(&copy, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| map_sql(e, &resource))?;
        // Forces the header to be read, so that "not a database" is reported here.
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())).map_err(|e| map_sql(e, &resource))?;
        Ok(Self { conn, _dir: dir })
    }
}

fn copy_file(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut src = std::fs::File::open(from)?;
    let mut dst = private_options().write(true).create_new(true).open(to)?;
    std::io::copy(&mut src, &mut dst)?;
    Ok(())
}

struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> std::io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!("session-sqlite-import-{}-{n}-{nanos}", std::process::id()));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&path)?;
        Ok(Self { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The opened copy, read for interop's layouts; errors name the source, not the copy.
struct Source<'c> {
    conn: &'c Connection,
    resource: String,
}

impl Query for Source<'_> {
    fn rows(&self, sql: &str) -> Result<Vec<Row>, SessionError> {
        let err = |e| map_sql(e, &self.resource);
        let mut stmt = self.conn.prepare(sql).map_err(err)?;
        let n = stmt.column_count();
        let mut query = stmt.query([]).map_err(err)?;
        let mut out = Vec::new();
        while let Some(row) = query.next().map_err(err)? {
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                values.push(value(row.get_ref(i).map_err(err)?));
            }
            out.push(values);
        }
        Ok(out)
    }
}

fn value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}
