//! Turning a plan's parameterised statements into SQL text: a Hrana batch (one request, one
//! transaction) takes text only, so parameters are written as literals, and runs of the same
//! insert are merged into one statement (multi-row `VALUES`, or one JSON text for long runs).
//! A persist plan's runs of peer changes arrive batched already (session-sql carries their rows
//! as one JSON text parameter): that parameter is inlined as one string literal like any text.

use std::fmt::Write as _;

use session_core::SessionError;
use session_sql::{SqlValue, Statement};

/// Most rows one multi-row `VALUES` statement carries (SQLite's default statement limit is
/// 1,000,000 bytes; 500 DC rows with their keys stay far below it).
const MERGE_ROWS: usize = 500;

/// A statement whose text is `head (tuple) tail` with one `VALUES (...)` tuple of parameters:
/// consecutive statements with the same text become one `head (t1), (t2), ... tail`, which
/// SQLite runs row by row in order (an upsert's `ON CONFLICT` applies to each row as it would
/// to each statement). Fewer statements to parse and prepare, on both sides.
fn split_values(sql: &'static str) -> Option<(&'static str, &'static str, &'static str)> {
    let at = sql.find(" VALUES (")? + " VALUES ".len();
    let close = at + sql.get(at..)?.find(')')?;
    let (head, tuple, tail) = (sql.get(..at)?, sql.get(at..=close)?, sql.get(close + 1..)?);
    if tail.contains(" VALUES ") || tuple.get(1..)?.contains('(') {
        return None;
    }
    Some((head, tuple, tail))
}

/// Appends the statements of `plan`, merging runs of the same `INSERT ... VALUES` statement.
pub(super) fn inline_all(out: &mut String, plan: impl Iterator<Item = Statement>) -> Result<(), SessionError> {
    let mut run: Vec<Statement> = Vec::new();
    for statement in plan {
        if let Some(first) = run.first() {
            if std::ptr::eq(first.sql, statement.sql) {
                run.push(statement);
                continue;
            }
            flush_run(out, &mut run)?;
        }
        if split_values(statement.sql).is_some() {
            run.push(statement);
        } else {
            inline(out, &statement)?;
            out.push_str(";\n");
        }
    }
    flush_run(out, &mut run)
}

/// Runs at least this long whose values JSON carries exactly are sent as one JSON text.
const JSON_MIN_ROWS: usize = 16;
/// The size after which a JSON text is closed and a new statement started.
const JSON_BYTES: usize = 512 * 1024;

/// Writes a run of the same `INSERT ... VALUES` statement (see [`split_values`]).
///
/// Long runs of integers and text become `INSERT ... SELECT json_extract(value, '$[0]'), ...
/// FROM json_each('<rows as JSON>') WHERE true <tail>`: the rows travel as one string literal,
/// which the client's SQL parser and the server read at memory speed, instead of thousands of
/// tokens. `json_each` walks the array in order, so rows are inserted (and upserted) in the
/// order of the plan. Other runs become multi-row `VALUES`.
fn flush_run(out: &mut String, run: &mut Vec<Statement>) -> Result<(), SessionError> {
    let Some(sql) = run.first().map(|s| s.sql) else {
        return Ok(());
    };
    let Some((head, tuple, tail)) = split_values(sql) else {
        for statement in run.drain(..) {
            inline(out, &statement)?;
            out.push_str(";\n");
        }
        return Ok(());
    };
    let positions = tuple_params(tuple);
    let insert = head.strip_suffix("VALUES ");
    if let (true, Some(positions), Some(insert)) = (run.len() >= JSON_MIN_ROWS, positions, insert) {
        if run.iter().all(|s| s.params.iter().all(json_exact)) {
            let select: Vec<String> = positions.iter().map(|i| format!("json_extract(value, '$[{i}]')")).collect();
            let select = select.join(", ");
            let mut rows = run.drain(..).peekable();
            while rows.peek().is_some() {
                out.push_str(insert);
                out.push_str("SELECT ");
                out.push_str(&select);
                out.push_str(" FROM json_each('[");
                let start = out.len();
                let mut first = true;
                while out.len() - start < JSON_BYTES {
                    let Some(row) = rows.next() else { break };
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    json_row(out, &row.params);
                }
                out.push_str("]') WHERE true");
                out.push_str(tail);
                out.push_str(";\n");
            }
            return Ok(());
        }
    }
    for chunk in run.chunks(MERGE_ROWS) {
        out.push_str(head);
        for (i, row) in chunk.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            inline(out, &Statement { sql: tuple, params: row.params.clone() })?;
        }
        out.push_str(tail);
        out.push_str(";\n");
    }
    run.clear();
    Ok(())
}

/// The 0-based parameter index of each element of a `(?1, ?2, ...)` tuple, when every element
/// is a parameter.
fn tuple_params(tuple: &str) -> Option<Vec<usize>> {
    let inner = tuple.strip_prefix('(')?.strip_suffix(')')?;
    inner.split(',').map(|p| p.trim().strip_prefix('?')?.parse::<usize>().ok()?.checked_sub(1)).collect()
}

/// Whether SQLite's JSON functions give this value back exactly, with its type.
fn json_exact(v: &SqlValue) -> bool {
    match v {
        SqlValue::Null | SqlValue::Integer(_) => true,
        SqlValue::Text(t) => !t.contains('\0'),
        SqlValue::Real(_) | SqlValue::Blob(_) => false,
    }
}

/// Appends `[v1, v2, ...]` as JSON, inside a SQL string literal (`'` doubled).
fn json_row(out: &mut String, params: &[SqlValue]) {
    out.push('[');
    for (i, v) in params.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match v {
            SqlValue::Integer(n) => {
                let _ = write!(out, "{n}");
            }
            SqlValue::Text(t) => {
                let json = serde_json::Value::String(t.clone()).to_string();
                out.push_str(&json.replace('\'', "''"));
            }
            _ => out.push_str("null"),
        }
    }
    out.push(']');
}

/// Appends `statement` with its parameters written as SQL literals.
///
/// The libsql client sends a parameterised statement per round trip; a batch (one request, one
/// transaction) only takes SQL text. Parameters are therefore inlined: integers in decimal,
/// blobs as `X'..'`, text quoted with `''` (or as a cast blob when it holds a NUL). The SQL
/// texts of the schema contain no string literals, so every `?N` outside quotes is a parameter.
pub(super) fn inline(out: &mut String, statement: &Statement) -> Result<(), SessionError> {
    let sql = statement.sql;
    let mut chars = sql.char_indices().peekable();
    let mut in_quote = false;
    while let Some((i, c)) = chars.next() {
        if in_quote {
            out.push(c);
            if c == '\'' {
                in_quote = false;
            }
            continue;
        }
        match c {
            '\'' => {
                in_quote = true;
                out.push(c);
            }
            '?' => {
                let start = i + 1;
                let mut end = start;
                while let Some(&(j, d)) = chars.peek() {
                    if !d.is_ascii_digit() {
                        break;
                    }
                    end = j + d.len_utf8();
                    chars.next();
                }
                let index: usize = sql.get(start..end).and_then(|n| n.parse().ok()).ok_or_else(|| {
                    SessionError::invalid("statement", format!("a parameter without a number in {sql:?}"))
                })?;
                let value = index.checked_sub(1).and_then(|i| statement.params.get(i)).ok_or_else(|| {
                    SessionError::invalid("statement", format!("parameter ?{index} is missing in {sql:?}"))
                })?;
                literal(out, value);
            }
            _ => out.push(c),
        }
    }
    Ok(())
}

fn literal(out: &mut String, value: &SqlValue) {
    match value {
        SqlValue::Null => out.push_str("NULL"),
        // `-9223372036854775808` would be read as minus a number that does not fit.
        SqlValue::Integer(i64::MIN) => out.push_str("(-9223372036854775807 - 1)"),
        SqlValue::Integer(v) if *v < 0 => {
            let _ = write!(out, "({v})");
        }
        SqlValue::Integer(v) => {
            let _ = write!(out, "{v}");
        }
        SqlValue::Real(v) if v.is_finite() => {
            let _ = write!(out, "{v:e}");
        }
        SqlValue::Real(_) => out.push_str("NULL"),
        SqlValue::Text(t) if t.contains('\0') => {
            out.push_str("CAST(");
            hex_blob(out, t.as_bytes());
            out.push_str(" AS TEXT)");
        }
        SqlValue::Text(t) => {
            out.push('\'');
            for c in t.chars() {
                if c == '\'' {
                    out.push('\'');
                }
                out.push(c);
            }
            out.push('\'');
        }
        SqlValue::Blob(b) => hex_blob(out, b),
    }
}

fn hex_blob(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2 + 3);
    out.push_str("X'");
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out.push('\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_round_trip_through_sql_text() {
        let st = Statement {
            sql: "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?10, ?1)",
            params: vec![
                SqlValue::Integer(i64::MIN),
                SqlValue::Text("it's".into()),
                SqlValue::Blob(vec![0, 255]),
                SqlValue::Null,
                SqlValue::Text("a\0b".into()),
                SqlValue::Integer(-5),
                SqlValue::Null,
                SqlValue::Null,
                SqlValue::Null,
                SqlValue::Integer(7),
            ],
        };
        let mut out = String::new();
        inline(&mut out, &st).expect("inline");
        assert_eq!(
            out,
            "INSERT INTO t VALUES ((-9223372036854775807 - 1), 'it''s', X'00ff', NULL, 7, (-9223372036854775807 - 1))"
        );
        let missing = Statement { sql: "SELECT ?2", params: vec![SqlValue::Null] };
        assert!(matches!(inline(&mut String::new(), &missing), Err(SessionError::Invalid { .. })));
    }

    #[test]
    fn runs_of_the_same_insert_are_merged_in_order() {
        const UPSERT: &str = "INSERT INTO t (a, b) VALUES (?1, ?2) ON CONFLICT (a) DO UPDATE SET b = excluded.b";
        const DELETE: &str = "DELETE FROM t WHERE a = ?1";
        let st = |sql, a: i64| Statement { sql, params: vec![SqlValue::Integer(a), SqlValue::Integer(a * 10)] };
        let mut out = String::new();
        inline_all(&mut out, [st(UPSERT, 1), st(UPSERT, 2), st(DELETE, 1), st(UPSERT, 3)].into_iter()).expect("inline");
        assert_eq!(
            out,
            "INSERT INTO t (a, b) VALUES (1, 10), (2, 20) ON CONFLICT (a) DO UPDATE SET b = excluded.b;\n\
             DELETE FROM t WHERE a = 1;\n\
             INSERT INTO t (a, b) VALUES (3, 30) ON CONFLICT (a) DO UPDATE SET b = excluded.b;\n"
        );
        let blob = |a: i64| Statement { sql: UPSERT, params: vec![SqlValue::Integer(a), SqlValue::Blob(vec![1])] };
        let mut out = String::new();
        inline_all(&mut out, (0..1200).map(blob)).expect("inline");
        assert_eq!(out.matches("INSERT").count(), 3, "at most {MERGE_ROWS} rows per statement");
        // Long runs of integers and text travel as JSON.
        let text = |a: i64| Statement { sql: UPSERT, params: vec![SqlValue::Integer(a), SqlValue::Text("o'k".into())] };
        let mut out = String::new();
        inline_all(&mut out, (0..20).map(text)).expect("inline");
        assert!(
            out.starts_with(
                "INSERT INTO t (a, b) SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') \
                 FROM json_each('[[0,\"o''k\"],[1,\"o''k\"],"
            ),
            "{out}"
        );
        assert!(out.ends_with("]') WHERE true ON CONFLICT (a) DO UPDATE SET b = excluded.b;\n"), "{out}");
        // Statements that are not one `VALUES` tuple are left alone.
        assert!(split_values("INSERT INTO t SELECT ?1 WHERE NOT EXISTS (SELECT 1)").is_none());
    }

    #[test]
    fn a_batched_run_of_peers_is_a_few_statements_with_its_json_quoted_as_one_literal() {
        use session_core::{Change, Peer, PeerKind, SessionData};
        let changes: Vec<Change> = (0..1_000i64)
            .map(|i| {
                let peer = Peer::new(i, PeerKind::User, i64::MIN + i);
                Change::UpsertPeer(if i == 7 {
                    peer.with_usernames(vec!["it's".into(), "a'';--".into()])
                } else {
                    peer
                })
            })
            .collect();
        let mut full = SessionData::default();
        full.apply_all(&changes);
        let mut out = String::new();
        inline_all(&mut out, session_sql::persist_plan(0, &changes, &full).expect("plan")).expect("inline");
        // Ensure the session row, the sums, delete the removals, upsert: not one per peer.
        assert_eq!(out.lines().count(), 4, "{}", &out[..out.len().min(2000)]);
        // The usernames are a JSON string inside the JSON rows inside one SQL literal: every
        // `'` doubled once, for SQL; `"` escaped once, for the JSON rows.
        assert!(out.contains(r#"[0,7,0,-9223372036854775801,0,"[\"it''s\",\"a'''';--\"]",null,"#), "{out}");
        // Outside the literals no parameter is left, and every quote is balanced.
        assert!(!out.contains('?'));
        for line in out.lines() {
            assert_eq!(line.matches('\'').count() % 2, 0, "{line}");
        }
    }
}
