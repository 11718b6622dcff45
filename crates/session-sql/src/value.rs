//! The values a driver binds and reads, and the statements the plans hand it: the only types a
//! driver converts to and from its own.

use session_core::AuthKey;

/// A value bound to a statement parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A float (unused by this schema; here for drivers' completeness).
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl SqlValue {
    /// The borrowed form.
    pub fn as_ref(&self) -> SqlValueRef<'_> {
        match self {
            SqlValue::Null => SqlValueRef::Null,
            SqlValue::Integer(v) => SqlValueRef::Integer(*v),
            SqlValue::Real(v) => SqlValueRef::Real(*v),
            SqlValue::Text(v) => SqlValueRef::Text(v),
            SqlValue::Blob(v) => SqlValueRef::Blob(v),
        }
    }
}

/// A value read from a row, borrowed from the driver's buffers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SqlValueRef<'a> {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A float.
    Real(f64),
    /// UTF-8 text (drivers reject text that is not UTF-8 as corrupt).
    Text(&'a str),
    /// Bytes.
    Blob(&'a [u8]),
}

/// One statement with its parameters (`?1`, `?2`, ... in order).
///
/// Statements come from a fixed set of SQL texts, so a driver can cache the prepared form by the
/// `sql` pointer or text.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    /// The SQL text.
    pub sql: &'static str,
    /// The parameters, in order.
    pub params: Vec<SqlValue>,
}

impl Statement {
    pub(crate) fn new(sql: &'static str, params: Vec<SqlValue>) -> Self {
        Self { sql, params }
    }

    /// The statement with the session's id put first among its parameters (`?1` of every
    /// statement a plan makes).
    pub(crate) fn in_session(mut self, session: i64) -> Self {
        self.params.insert(0, SqlValue::Integer(session));
        self
    }
}

pub(crate) fn int(v: impl Into<i64>) -> SqlValue {
    SqlValue::Integer(v.into())
}

pub(crate) fn opt_int<T: Into<i64>>(v: Option<T>) -> SqlValue {
    v.map_or(SqlValue::Null, int)
}

pub(crate) fn opt_blob(v: Option<&[u8]>) -> SqlValue {
    v.map_or(SqlValue::Null, |b| SqlValue::Blob(b.to_vec()))
}

pub(crate) fn key_blob(key: Option<&AuthKey>) -> SqlValue {
    opt_blob(key.map(|k| k.as_bytes().as_slice()))
}
