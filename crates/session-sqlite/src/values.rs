//! Converting between session-sql's values and rusqlite's: the glue every part of this crate
//! that runs statements shares (the backend, the read-only reader, the lease).

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::ToSql;
use session_core::SessionError;
use session_sql::{SqlValue, SqlValueRef};

pub(crate) fn value_ref<'a>(v: ValueRef<'a>, resource: &str) -> Result<SqlValueRef<'a>, SessionError> {
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

/// A plan's parameter bound through rusqlite (a wrapper: `SqlValue` is `session-sql`'s type and
/// `ToSql` rusqlite's, so neither crate's impl may be written here on the bare type).
pub(crate) struct Param<'a>(pub(crate) &'a SqlValue);

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Integer(v) => ValueRef::Integer(*v),
            SqlValue::Real(v) => ValueRef::Real(*v),
            SqlValue::Text(v) => ValueRef::Text(v.as_bytes()),
            SqlValue::Blob(v) => ValueRef::Blob(v),
        }))
    }
}
