//! Row checksums (`crc`) and the per-table sums the `session` row keeps of them (see the crate
//! docs, "Checksums").

use crate::table::Table;
use crate::value::{SqlValue, SqlValueRef, Statement};

/// The checksum of a row of `table`: the CRC-32 of the table's tag and `values` (the row's
/// values in the order its load query reads them, without the `crc` itself), each with its
/// type and, for text and blobs, its length. Stored in the row's `crc` column.
pub fn row_crc(table: Table, values: &[SqlValueRef<'_>]) -> i64 {
    row_crc_of(table, values.iter().copied())
}

/// [`row_crc`] of values given one by one (no slice of them needs to be built).
pub(crate) fn row_crc_of<'v>(table: Table, values: impl IntoIterator<Item = SqlValueRef<'v>>) -> i64 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[table.tag()]);
    for v in values {
        match v {
            SqlValueRef::Null => h.update(&[0]),
            SqlValueRef::Integer(i) => {
                h.update(&[1]);
                h.update(&i.to_le_bytes());
            }
            SqlValueRef::Real(f) => {
                h.update(&[2]);
                h.update(&f.to_bits().to_le_bytes());
            }
            SqlValueRef::Text(t) => {
                h.update(&[3]);
                h.update(&(t.len() as u64).to_le_bytes());
                h.update(t.as_bytes());
            }
            SqlValueRef::Blob(b) => {
                h.update(&[4]);
                h.update(&(b.len() as u64).to_le_bytes());
                h.update(b);
            }
        }
    }
    i64::from(h.finalize())
}

/// `values` with their checksum appended (the parameters of an insert of a `table` row).
pub(crate) fn with_crc(table: Table, mut values: Vec<SqlValue>) -> Vec<SqlValue> {
    let crc = row_crc_of(table, values.iter().map(SqlValue::as_ref));
    values.push(SqlValue::Integer(crc));
    values
}

/// The checksum at the end of a row's parameters (made by [`with_crc`]).
pub(crate) fn crc_param(params: &[SqlValue]) -> SqlValue {
    params.last().cloned().unwrap_or(SqlValue::Integer(0))
}

/// The sum (mod 2^32) of the checksums of the rows `statements` insert.
pub(crate) fn sum_of<'a>(statements: impl IntoIterator<Item = &'a Statement>) -> SqlValue {
    let sum = statements.into_iter().fold(0u32, |acc, st| match st.params.last() {
        Some(SqlValue::Integer(crc)) => acc.wrapping_add(u32::try_from(*crc).unwrap_or(0)),
        _ => acc,
    });
    SqlValue::Integer(i64::from(sum))
}
