//! Other libraries' SQLite session files: detect, import, export.
//!
//! | format | import | export | what the file holds |
//! | --- | --- | --- | --- |
//! | [`ForeignFormat::Telethon`] (`version` 8) | yes | yes | one DC with address, port and key; entities; update state. No bot flag, no test mode, no api_id. |
//! | [`ForeignFormat::Pyrogram`] (`version` 3) | yes | yes | DC id, api_id, test mode, key, user, bot flag; peers. No address (taken from [`session_core::dc_table`]). |
//! | [`ForeignFormat::Pyrofork`] (`version` 4) | yes | yes | as Pyrogram, plus update state and extra usernames. |
//! | [`ForeignFormat::Kurigram`] (`version` 4-7) | yes | yes (7) | as Pyrogram, plus server address and port, update state, usernames. |
//! | [`ForeignFormat::Mtcute`] | yes | no | main and media DC, keys of every DC, user, update state, peers. |
//!
//! Import never writes to the source: the file (and its `-wal`, if any) is copied into a private
//! temporary directory first and the copy is opened read-only. Export writes a new file
//! (refusing to replace an existing one) with exactly the tables, indexes, triggers and `version`
//! row the library itself creates, so that the library opens it as its own.
//!
//! Peer ids in these files are "marked" (Bot API) ids; see [`session_core::PeerKey::marked`].

mod mtcute;
mod pyrogram;
mod telethon;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use session_core::fs::private_options;
use session_core::{SessionData, SessionError};

use crate::backend::map_sql;

/// A foreign SQLite session format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ForeignFormat {
    /// Telethon's `SQLiteSession` (schema `version` 8).
    Telethon,
    /// Pyrogram's `FileStorage` (`version` 3).
    Pyrogram,
    /// pyrofork's `FileStorage` (`version` 4).
    Pyrofork,
    /// kurigram's `SQLiteStorage` (`version` 7 when exported; 4 to 7 are read).
    Kurigram,
    /// mtcute's `SqliteStorage` (`@mtcute/node`).
    Mtcute,
}

impl ForeignFormat {
    /// The library's name.
    pub fn name(self) -> &'static str {
        match self {
            ForeignFormat::Telethon => "Telethon",
            ForeignFormat::Pyrogram => "Pyrogram",
            ForeignFormat::Pyrofork => "pyrofork",
            ForeignFormat::Kurigram => "kurigram",
            ForeignFormat::Mtcute => "mtcute",
        }
    }

    /// The schema version an export in this format writes (`None`: not exported).
    pub fn export_version(self) -> Option<u32> {
        match self {
            ForeignFormat::Telethon => Some(telethon::VERSION),
            ForeignFormat::Pyrogram => Some(pyrogram::PYROGRAM_VERSION),
            ForeignFormat::Pyrofork => Some(pyrogram::PYROFORK_VERSION),
            ForeignFormat::Kurigram => Some(pyrogram::KURIGRAM_VERSION),
            ForeignFormat::Mtcute => None,
        }
    }
}

impl std::fmt::Display for ForeignFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A session read from a foreign file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Imported {
    /// The format the file was in.
    pub format: ForeignFormat,
    /// What it held.
    pub session: SessionData,
    /// Values the file held that the session does not keep, one sentence each (today: a
    /// Pyrogram-family `api_id` outside `i32`). The import did not fail over them; show them.
    pub warnings: Vec<String>,
}

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
    let file = File::new(&copy.conn, path);
    detect_in(&file)
}

/// The blocking form of [`import`].
pub fn import_blocking(path: &Path) -> Result<Imported, SessionError> {
    let copy = ReadOnlyCopy::new(path)?;
    let file = File::new(&copy.conn, path);
    let format = detect_in(&file)?;
    let (session, warnings) = match format {
        ForeignFormat::Telethon => (telethon::read(&file)?, Vec::new()),
        ForeignFormat::Mtcute => (mtcute::read(&file)?, Vec::new()),
        _ => pyrogram::read(&file)?,
    };
    Ok(Imported { format, session, warnings })
}

/// The blocking form of [`export`].
pub fn export_blocking(data: &SessionData, format: ForeignFormat, path: &Path) -> Result<(), SessionError> {
    if format == ForeignFormat::Mtcute {
        return Err(SessionError::invalid("export format", "mtcute storage is read, not written"));
    }
    let resource = path.display().to_string();
    private_options().write(true).create_new(true).open(path).map_err(|e| SessionError::io(&resource, e))?;
    let result = (|| {
        let mut conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(|e| map_sql(e, &resource))?;
        match format {
            ForeignFormat::Telethon => telethon::write(&mut conn, data, &resource)?,
            _ => pyrogram::write(&mut conn, data, format, &resource)?,
        }
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

fn detect_in(file: &File<'_>) -> Result<ForeignFormat, SessionError> {
    let tables = file.tables()?;
    let has = |t: &str| tables.iter().any(|n| n == t);
    if has("mtcute_migrations") && has("key_value") {
        return Ok(ForeignFormat::Mtcute);
    }
    if has("version") && has("sessions") {
        let columns = file.columns("version")?;
        if columns.iter().any(|c| c == "version") && has("entities") {
            return Ok(ForeignFormat::Telethon);
        }
        if columns.iter().any(|c| c == "number") && has("peers") {
            return pyrogram::detect(file);
        }
    }
    if tables.iter().any(|t| crate::schema::TABLES.contains(&t.as_str())) {
        return Err(file.invalid("this is a layer-client session database: open it with SqliteBackend::open"));
    }
    Err(file.invalid(&format!(
        "not a Telethon, Pyrogram-family or mtcute session (tables: {})",
        if tables.is_empty() { "none".to_owned() } else { tables.join(", ") }
    )))
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

/// The opened copy, with the source's name for messages.
struct File<'c> {
    conn: &'c Connection,
    resource: String,
}

impl<'c> File<'c> {
    fn new(conn: &'c Connection, source: &Path) -> Self {
        Self { conn, resource: source.display().to_string() }
    }

    fn sql(&self, e: rusqlite::Error) -> SessionError {
        map_sql(e, &self.resource)
    }

    fn invalid(&self, reason: &str) -> SessionError {
        SessionError::invalid(format!("session file {}", self.resource), reason)
    }

    fn tables(&self) -> Result<Vec<String>, SessionError> {
        self.strings("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    }

    fn columns(&self, table: &str) -> Result<Vec<String>, SessionError> {
        self.strings(&format!("SELECT name FROM pragma_table_info('{}')", table.replace('\'', "''")))
    }

    fn has_table(&self, table: &str) -> Result<bool, SessionError> {
        Ok(self.tables()?.iter().any(|t| t == table))
    }

    fn strings(&self, sql: &str) -> Result<Vec<String>, SessionError> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.sql(e))?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }

    /// Every row of `sql`, each as owned values.
    fn rows(&self, sql: &str) -> Result<Vec<Vec<Value>>, SessionError> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.sql(e))?;
        let n = stmt.column_count();
        let mut query = stmt.query([]).map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        while let Some(row) = query.next().map_err(|e| self.sql(e))? {
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                values.push(Value::from(row.get_ref(i).map_err(|e| self.sql(e))?));
            }
            out.push(values);
        }
        Ok(out)
    }
}

/// A value read from a foreign file, read leniently: these files come from dynamically typed
/// code (Telethon stores float timestamps in INTEGER columns, Pyrogram text in one declared
/// INTEGER), so numbers are taken from integers, whole floats or numeric text.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<ValueRef<'_>> for Value {
    fn from(v: ValueRef<'_>) -> Self {
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

impl Value {
    fn int(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            // Timestamps written as floats: whole seconds are what the libraries read back.
            #[allow(clippy::cast_possible_truncation)]
            Value::Real(f) if f.is_finite() && f.abs() < 9.0e18 => Some(f.trunc() as i64),
            Value::Text(t) => t.trim().parse().ok(),
            _ => None,
        }
    }

    fn text(&self) -> Option<String> {
        match self {
            Value::Text(t) => Some(t.clone()),
            Value::Integer(i) => Some(i.to_string()),
            Value::Blob(b) => std::str::from_utf8(b).ok().map(str::to_owned),
            _ => None,
        }
    }

    fn blob(&self) -> Option<&[u8]> {
        match self {
            Value::Blob(b) => Some(b),
            Value::Text(t) => Some(t.as_bytes()),
            _ => None,
        }
    }
}

/// Reads an integer field that fits `T`, or a typed error naming it.
fn field<T: TryFrom<i64>>(file: &File<'_>, v: &Value, what: &str) -> Result<Option<T>, SessionError> {
    match v {
        Value::Null => Ok(None),
        other => {
            let i = other.int().ok_or_else(|| file.invalid(&format!("{what} is not a number")))?;
            T::try_from(i).map(Some).map_err(|_| file.invalid(&format!("{what} {i} is out of range")))
        }
    }
}

fn get(row: &[Value], i: usize) -> &Value {
    row.get(i).unwrap_or(&Value::Null)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Digits of a phone number as Telethon stores them (an integer), if it is one.
fn phone_digits(phone: &str) -> Option<i64> {
    let digits: String = phone.chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() || phone.chars().any(|c| !(c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')'))) {
        return None;
    }
    digits.parse().ok()
}
