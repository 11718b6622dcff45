//! The driver-free side of reading a foreign SQLite file: a value and row type of our own, the
//! one thing a driver must provide ([`Query`]: run a read-only statement, return its rows), and
//! the lenient field readers every layout uses.

use session_core::{SessionError, UpdateState};

/// A value read from (or bound into) a foreign file. Read leniently: these files come from
/// dynamically typed code (Telethon stores float timestamps in INTEGER columns, Pyrogram text in
/// one declared INTEGER), so numbers are taken from integers, whole floats or numeric text.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A float.
    Real(f64),
    /// Text (a driver turns invalid UTF-8 into replacement characters).
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// One row of a query's result, columns in the order of the `SELECT`.
pub type Row = Vec<Value>;

impl Value {
    /// The value as an integer: integers, whole seconds of finite floats, numeric text.
    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            // Timestamps written as floats: whole seconds are what the libraries read back.
            #[allow(clippy::cast_possible_truncation)]
            Value::Real(f) if f.is_finite() && f.abs() < 9.0e18 => Some(f.trunc() as i64),
            Value::Text(t) => t.trim().parse().ok(),
            _ => None,
        }
    }

    /// The value as text: text, integers in decimal, UTF-8 blobs.
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Text(t) => Some(t.clone()),
            Value::Integer(i) => Some(i.to_string()),
            Value::Blob(b) => std::str::from_utf8(b).ok().map(str::to_owned),
            _ => None,
        }
    }

    /// The value as bytes: blobs, and text as its UTF-8 bytes.
    pub fn blob(&self) -> Option<&[u8]> {
        match self {
            Value::Blob(b) => Some(b),
            Value::Text(t) => Some(t.as_bytes()),
            _ => None,
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Integer(i64::from(v))
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Integer(i64::from(v))
    }
}

impl From<u16> for Value {
    fn from(v: u16) -> Self {
        Value::Integer(i64::from(v))
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// What a driver provides to read a foreign file: run one read-only statement without
/// parameters and return every row. The statements come from this crate; errors are the
/// driver's, already mapped (with the file's name) into a [`SessionError`].
pub trait Query {
    /// Every row of `sql`.
    fn rows(&self, sql: &str) -> Result<Vec<Row>, SessionError>;
}

/// The lists every layout reads first (table and column names).
pub const TABLES_SQL: &str = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name";

/// A foreign file being read: the driver's [`Query`] and the file's name for messages.
pub struct ForeignFile<'q> {
    query: &'q dyn Query,
    resource: String,
}

impl<'q> ForeignFile<'q> {
    /// Reads through `query`; `resource` names the file in errors (the source path, not the
    /// private copy a driver may have opened instead).
    pub fn new(query: &'q dyn Query, resource: impl Into<String>) -> Self {
        Self { query, resource: resource.into() }
    }

    /// The file's name, as given.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// An `Invalid` error naming the file.
    pub fn invalid(&self, reason: &str) -> SessionError {
        SessionError::invalid(format!("session file {}", self.resource), reason)
    }

    /// The names of the file's tables, sorted.
    pub fn tables(&self) -> Result<Vec<String>, SessionError> {
        self.strings(TABLES_SQL)
    }

    /// The column names of `table`.
    pub fn columns(&self, table: &str) -> Result<Vec<String>, SessionError> {
        self.strings(&format!("SELECT name FROM pragma_table_info('{}')", table.replace('\'', "''")))
    }

    /// Whether the file has `table`.
    pub fn has_table(&self, table: &str) -> Result<bool, SessionError> {
        Ok(self.tables()?.iter().any(|t| t == table))
    }

    /// Every row of `sql`.
    pub fn rows(&self, sql: &str) -> Result<Vec<Row>, SessionError> {
        self.query.rows(sql)
    }

    fn strings(&self, sql: &str) -> Result<Vec<String>, SessionError> {
        let rows = self.rows(sql)?;
        rows.into_iter()
            .map(|row| {
                row.first().and_then(Value::text).ok_or_else(|| self.invalid(&format!("{sql}: a name is not text")))
            })
            .collect()
    }
}

/// Reads an integer field that fits `T`, or a typed error naming it.
pub(crate) fn field<T: TryFrom<i64>>(file: &ForeignFile<'_>, v: &Value, what: &str) -> Result<Option<T>, SessionError> {
    match v {
        Value::Null => Ok(None),
        other => {
            let i = other.int().ok_or_else(|| file.invalid(&format!("{what} is not a number")))?;
            T::try_from(i).map(Some).map_err(|_| file.invalid(&format!("{what} {i} is out of range")))
        }
    }
}

/// The `update_state(id, pts, qts, date, seq)` table Telethon and the Pyrogram family share: row
/// 0 is the common state, every other row a channel's pts under the id `channel` maps to ours
/// (the two libraries key channels differently).
pub(crate) fn update_state(file: &ForeignFile<'_>, channel: impl Fn(i64) -> i64) -> Result<UpdateState, SessionError> {
    let mut state = UpdateState::default();
    for row in file.rows("SELECT id, pts, qts, date, seq FROM update_state")? {
        let id: i64 = field(file, get(&row, 0), "update_state.id")?.unwrap_or(0);
        let pts: i32 = field(file, get(&row, 1), "update_state.pts")?.unwrap_or(0);
        if id == 0 {
            state.pts = pts;
            state.qts = field(file, get(&row, 2), "update_state.qts")?.unwrap_or(0);
            state.date = field(file, get(&row, 3), "update_state.date")?.unwrap_or(0);
            state.seq = field(file, get(&row, 4), "update_state.seq")?.unwrap_or(0);
        } else {
            state.channels.insert(channel(id), pts);
        }
    }
    Ok(state)
}

/// Column `i` of `row`, `NULL` past its end.
pub(crate) fn get(row: &[Value], i: usize) -> &Value {
    row.get(i).unwrap_or(&Value::Null)
}

/// Digits of a phone number as Telethon stores them (an integer), if it is one.
pub(crate) fn phone_digits(phone: &str) -> Option<i64> {
    let digits: String = phone.chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() || phone.chars().any(|c| !(c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')'))) {
        return None;
    }
    digits.parse().ok()
}
