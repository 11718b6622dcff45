//! A run of peer upserts as one PostgreSQL statement. session-sql plans a run as two or three
//! statements ([`PeerBatch`]): the sum of the stored rows' `crc` (and of their removals'), the
//! delete of their removals, the upsert. Each has the server parse the run's JSON parameter
//! again and look every key up again; here one statement takes the rows as arrays (one per
//! column, sent in binary: nothing for the server to parse), looks each key up once (its `ctid`
//! and stored `crc`), updates the stored rows, inserts the new ones, deletes their removals and
//! moves the session's sums by exactly what it replaced. Every part runs against the
//! statement's one snapshot, so the sums are those of the rows as they were before it, as the
//! separate statements read them. The arrays are read back from session-sql's JSON rows (a
//! format of integers, `null` and JSON strings); anything else there leaves the run to the
//! plan's own statements.
//!
//! The rows are inserted without `ON CONFLICT`: PostgreSQL inserts each row of an
//! `INSERT ... ON CONFLICT` speculatively (a second index pass per row). A key is written once
//! (the plan's rows have distinct keys, the stored ones are updated and only the others
//! inserted); a concurrent insert of the same key, which the lease rules out, would fail the
//! statement rather than be overwritten.

use session_sql::dialect::{peer_batch, PeerBatch};
use session_sql::{SqlValue, Statement};
use tokio_postgres::types::ToSql;

// Each key is looked up by the primary key, never joined: the planner would hash a join over
// every row of the session's overlay (its statistics of a fast-growing table are stale), and
// `OFFSET 0` keeps it from turning the lateral lookup into such a join.
//
// The run's rows as columns (`$values`: `unnest` of the arrays from `$3` on; `$2` is the new
// rows' sum), each key's stored row, the update of the stored rows and the insert of the others
// (columns `$cols`, updated by `$set`), the delete of their removals when `removals` (then
// `removals_sum` moves too), and the sums.
macro_rules! upsert_run {
    ($values:literal, $cols:literal, $set:literal, removals) => {
        upsert_run!(@ $values, $cols, $set,
            ", r AS (DELETE FROM peer_removals WHERE sid = $1 AND ctid = ANY (ARRAY(SELECT (SELECT t.ctid \
             FROM peer_removals AS t WHERE t.sid = $1 AND t.class = k.class AND t.id = k.id) FROM k)) \
             RETURNING crc)",
            ", removals_sum = (removals_sum - (CAST(coalesce((SELECT sum(crc) FROM r), 0) AS BIGINT) \
             % 4294967296) + 4294967296) % 4294967296")
    };
    ($values:literal, $cols:literal, $set:literal) => {
        upsert_run!(@ $values, $cols, $set, "", "")
    };
    (@ $values:literal, $cols:literal, $set:literal, $delete:literal, $removals_sum:literal) => {
        concat!(
            "WITH k AS MATERIALIZED (SELECT ",
            $values,
            "), \
             o AS MATERIALIZED (SELECT k.*, p.at, p.old FROM k LEFT JOIN LATERAL (SELECT t.ctid AS at, \
             t.crc AS old FROM peers AS t WHERE t.sid = $1 AND t.class = k.class AND t.id = k.id OFFSET 0) AS p ON true), \
             u AS (UPDATE peers AS t SET ",
            $set,
            " FROM o WHERE t.ctid = ANY (ARRAY(SELECT at FROM o WHERE at IS NOT NULL)) AND t.ctid = o.at \
             AND t.sid = $1), \
             i AS (INSERT INTO peers (sid, ",
            $cols,
            ") SELECT $1, ",
            $cols,
            " FROM o WHERE at IS NULL)",
            $delete,
            " UPDATE session SET peers_sum = (peers_sum - (CAST(coalesce((SELECT sum(old) FROM o), 0) AS BIGINT) \
             % 4294967296) + $2 + 4294967296) % 4294967296",
            $removals_sum,
            " WHERE sid = $1"
        )
    };
}

macro_rules! plain {
    ($($removals:ident)?) => {
        upsert_run!(
            "* FROM unnest($3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[], \
             $9::text[], $10::bigint[]) AS k(class, id, kind, access_hash, min, usernames, phone, crc)",
            "class, id, kind, access_hash, min, usernames, phone, crc",
            "kind = o.kind, access_hash = o.access_hash, min = o.min, usernames = o.usernames, phone = o.phone, \
             crc = o.crc"
            $(, $removals)?
        )
    };
}

macro_rules! sealed {
    ($($removals:ident)?) => {
        upsert_run!(
            "* FROM unnest($3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[], \
             $9::text[], $10::text[], $11::bigint[]) AS k(class, id, kind, access_hash, min, usernames, phone, \
             sealed, crc)",
            "class, id, kind, access_hash, min, usernames, phone, sealed, crc",
            "kind = o.kind, access_hash = o.access_hash, min = o.min, usernames = o.usernames, phone = o.phone, \
             sealed = o.sealed, crc = o.crc"
            $(, $removals)?
        )
    };
}

/// A run of plain upserts; `$1` the session, `$2` the sum of the rows' `crc`, then the rows'
/// columns (`class`, `id`, `kind`, `access_hash`, `min`, `usernames`, `phone`, `crc`).
pub(crate) const UPSERT_RUN: &str = plain!();
/// [`UPSERT_RUN`] that also deletes the removals of the run's keys.
pub(crate) const UPSERT_RUN_UNREMOVE: &str = plain!(removals);
/// [`UPSERT_RUN`] of sealed rows (`sealed` before `crc`).
pub(crate) const UPSERT_RUN_SEALED: &str = sealed!();
/// [`UPSERT_RUN_UNREMOVE`] of sealed rows.
pub(crate) const UPSERT_RUN_SEALED_UNREMOVE: &str = sealed!(removals);

/// A statement to run and its parameters.
pub(crate) struct Exec<'a> {
    pub(crate) text: Text,
    pub(crate) params: Vec<Arg<'a>>,
}

/// The text of an [`Exec`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Text {
    /// A text of session-sql's plans (SQLite's dialect), translated before it runs.
    Plan(&'static str),
    /// A text of this crate, in PostgreSQL's dialect.
    Postgres(&'static str),
}

/// A parameter of an [`Exec`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Arg<'a> {
    /// A value of the plan, bound by the type the server infers.
    Value(&'a SqlValue),
    /// A `bigint[]` column of a run's rows.
    Ints(Vec<i64>),
    /// A `text[]` column of a run's rows.
    Texts(Vec<Option<String>>),
}

/// A column of a run's JSON rows.
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Text,
}

const PLAIN_ROW: [Kind; 8] = [Kind::Int, Kind::Int, Kind::Int, Kind::Int, Kind::Int, Kind::Text, Kind::Text, Kind::Int];
const SEALED_ROW: [Kind; 9] =
    [Kind::Int, Kind::Int, Kind::Int, Kind::Int, Kind::Int, Kind::Text, Kind::Text, Kind::Text, Kind::Int];

/// `plan` with each run of peer upserts as one statement (see the module docs); every other
/// statement as it is.
pub(crate) fn fuse(plan: &[Statement]) -> Vec<Exec<'_>> {
    let mut out = Vec::with_capacity(plan.len());
    let mut rest = plan;
    while let Some(first) = rest.first() {
        let kinds: Vec<Option<PeerBatch>> = rest.iter().take(3).map(|st| peer_batch(st.sql)).collect();
        let run = match kinds.as_slice() {
            [Some(PeerBatch::SumPeers), Some(PeerBatch::Upsert), ..] => Some((UPSERT_RUN, 2, &PLAIN_ROW[..])),
            [Some(PeerBatch::SumPeers), Some(PeerBatch::UpsertSealed), ..] => {
                Some((UPSERT_RUN_SEALED, 2, &SEALED_ROW[..]))
            }
            [Some(PeerBatch::SumPeersUnremove), Some(PeerBatch::DeleteRemovals), Some(PeerBatch::Upsert)] => {
                Some((UPSERT_RUN_UNREMOVE, 3, &PLAIN_ROW[..]))
            }
            [Some(PeerBatch::SumPeersUnremove), Some(PeerBatch::DeleteRemovals), Some(PeerBatch::UpsertSealed)] => {
                Some((UPSERT_RUN_SEALED_UNREMOVE, 3, &SEALED_ROW[..]))
            }
            _ => None,
        };
        // The sum's parameters are the session, the keys and the new rows' sum; the upsert's
        // the session and the rows.
        let fused = run.and_then(|(text, len, row)| match (&first.params[..], &rest[len - 1].params[..]) {
            ([sid, _, sum], [same, SqlValue::Text(rows)]) if sid == same => {
                let mut params = vec![Arg::Value(sid), Arg::Value(sum)];
                params.extend(columns(rows, row)?);
                Some((Exec { text: Text::Postgres(text), params }, len))
            }
            _ => None,
        });
        match fused {
            Some((exec, len)) => {
                out.push(exec);
                rest = &rest[len..];
            }
            None => {
                out.push(Exec { text: Text::Plan(first.sql), params: first.params.iter().map(Arg::Value).collect() });
                rest = &rest[1..];
            }
        }
    }
    out
}

/// The columns of the JSON rows `json` (an array of arrays of the values of `row`, keyed by the
/// first two): `None` unless it is exactly that, with no key twice (the statement writes each
/// key once).
fn columns(json: &str, row: &[Kind]) -> Option<Vec<Arg<'static>>> {
    let mut cols: Vec<Arg<'static>> = row
        .iter()
        .map(|k| match k {
            Kind::Int => Arg::Ints(Vec::new()),
            Kind::Text => Arg::Texts(Vec::new()),
        })
        .collect();
    let mut p = Json { rest: json.as_bytes(), text: json };
    p.eat(b'[')?;
    if !p.try_eat(b']') {
        loop {
            p.eat(b'[')?;
            for (i, col) in cols.iter_mut().enumerate() {
                if i > 0 {
                    p.eat(b',')?;
                }
                match col {
                    Arg::Ints(v) => v.push(p.int()?),
                    Arg::Texts(v) => v.push(p.text()?),
                    Arg::Value(_) => return None,
                }
            }
            p.eat(b']')?;
            if p.try_eat(b']') {
                break;
            }
            p.eat(b',')?;
        }
    }
    if !p.rest.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let (Some(Arg::Ints(classes)), Some(Arg::Ints(ids))) = (cols.first(), cols.get(1)) else { return None };
    let keys: std::collections::HashSet<(i64, i64)> = classes.iter().copied().zip(ids.iter().copied()).collect();
    (keys.len() == ids.len()).then_some(cols)
}

/// A reader of the JSON session-sql writes for a run's rows: integers, `null` and strings.
struct Json<'a> {
    rest: &'a [u8],
    /// The same bytes as `rest`, as text (its string pieces are copied out as they are).
    text: &'a str,
}

impl Json<'_> {
    fn skip(&mut self, n: usize) {
        self.rest = &self.rest[n..];
        self.text = &self.text[n..];
    }

    fn try_eat(&mut self, b: u8) -> bool {
        let ws = self.rest.iter().take_while(|c| c.is_ascii_whitespace()).count();
        self.skip(ws);
        if self.rest.first() == Some(&b) {
            self.skip(1);
            true
        } else {
            false
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        self.try_eat(b).then_some(())
    }

    fn int(&mut self) -> Option<i64> {
        let ws = self.rest.iter().take_while(|c| c.is_ascii_whitespace()).count();
        self.skip(ws);
        let len =
            self.rest.iter().enumerate().take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && **c == b'-')).count();
        let n = self.text[..len].parse().ok()?;
        self.skip(len);
        Some(n)
    }

    fn text(&mut self) -> Option<Option<String>> {
        let ws = self.rest.iter().take_while(|c| c.is_ascii_whitespace()).count();
        self.skip(ws);
        if self.rest.starts_with(b"null") {
            self.skip(4);
            return Some(None);
        }
        self.eat(b'"')?;
        let mut out = String::new();
        loop {
            let plain = self.rest.iter().take_while(|c| **c != b'"' && **c != b'\\').count();
            out.push_str(&self.text[..plain]);
            self.skip(plain);
            match *self.rest.first()? {
                b'"' => {
                    self.skip(1);
                    return Some(Some(out));
                }
                _ => {
                    let escaped = *self.rest.get(1)?;
                    self.skip(2);
                    out.push(match escaped {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if !self.rest.starts_with(b"\\u") {
                                    return None;
                                }
                                self.skip(2);
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return None;
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(code)?
                        }
                        _ => return None,
                    });
                }
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.get(..4)?;
        let n = u32::from_str_radix(digits, 16).ok()?;
        self.skip(4);
        Some(n)
    }
}

/// The statements this backend runs for `plan`, in PostgreSQL's dialect, with their
/// parameters: for tests that look at how the server runs them.
#[doc(hidden)]
pub fn postgres_plan(plan: &[Statement]) -> Vec<(String, Vec<Box<dyn ToSql + Sync + Send>>)> {
    fuse(plan)
        .into_iter()
        .map(|e| {
            let text = match e.text {
                Text::Plan(sql) => session_sql::dialect::Dialect::Postgres.translate(sql).into_owned(),
                Text::Postgres(text) => text.to_owned(),
            };
            let params = e
                .params
                .into_iter()
                .map(|a| -> Box<dyn ToSql + Sync + Send> {
                    match a {
                        Arg::Value(SqlValue::Integer(i)) => Box::new(*i),
                        Arg::Value(SqlValue::Real(r)) => Box::new(*r),
                        Arg::Value(SqlValue::Text(t)) => Box::new(t.clone()),
                        Arg::Value(SqlValue::Blob(b)) => Box::new(b.clone()),
                        Arg::Value(SqlValue::Null) => Box::new(None::<i64>),
                        Arg::Ints(v) => Box::new(v),
                        Arg::Texts(v) => Box::new(v),
                    }
                })
                .collect();
            (text, params)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::{Change, Peer, PeerKey, PeerKind, SessionData};
    use session_sql::Known;

    fn plan(changes: &[Change], known: Known<'_>) -> Vec<Statement> {
        let mut full = SessionData::default();
        full.apply_all(changes);
        session_sql::persist_plan_known(3, changes, &full, known).expect("plan").collect()
    }

    fn ints<'a>(arg: &'a Arg<'_>) -> &'a [i64] {
        match arg {
            Arg::Ints(v) => v,
            other => panic!("not integers: {other:?}"),
        }
    }

    fn texts<'a>(arg: &'a Arg<'_>) -> &'a [Option<String>] {
        match arg {
            Arg::Texts(v) => v,
            other => panic!("not texts: {other:?}"),
        }
    }

    #[test]
    fn a_run_of_upserts_is_one_statement_and_the_rest_is_untouched() {
        let mut changes: Vec<Change> =
            (0..10).map(|i| Change::UpsertPeer(Peer::new(i, PeerKind::User, i * 1000))).collect();
        changes.extend((0..4).map(|i| Change::RemovePeer(PeerKey::user(i))));
        changes.extend((20..25).map(|i| Change::UpsertPeer(Peer::new(i, PeerKind::User, i))));
        for (known, text) in [
            (Known::default(), UPSERT_RUN_UNREMOVE),
            (Known { session_row: true, no_removals: true, chunk_ranges: Some(&[]) }, UPSERT_RUN),
        ] {
            let plan = plan(&changes, known);
            let fused = fuse(&plan);
            let upserts: Vec<&Exec<'_>> =
                fused.iter().filter(|e| matches!(e.text, Text::Postgres(t) if t == text)).collect();
            // Both runs, each one statement: the session, the rows' sum, their eight columns.
            assert_eq!(upserts.len(), 2);
            for (e, ids) in upserts.iter().zip([(0..10).collect::<Vec<i64>>(), (20..25).collect()]) {
                assert_eq!(e.params.len(), 10);
                assert_eq!(e.params[0], Arg::Value(&SqlValue::Integer(3)));
                assert!(matches!(e.params[1], Arg::Value(SqlValue::Integer(_))));
                assert_eq!(ints(&e.params[3]), &ids[..]);
                if ids[0] == 0 {
                    assert_eq!(ints(&e.params[5]), &ids.iter().map(|i| i * 1000).collect::<Vec<_>>()[..]);
                }
                assert!(texts(&e.params[7]).iter().all(Option::is_none));
            }
            // Nothing of a run is left over, everything else is as planned.
            let untouched: Vec<&'static str> = fused
                .iter()
                .filter_map(|e| match e.text {
                    Text::Plan(sql) => Some(sql),
                    Text::Postgres(_) => None,
                })
                .collect();
            let others: Vec<&'static str> =
                plan.iter().filter(|st| peer_batch(st.sql).is_none()).map(|st| st.sql).collect();
            assert_eq!(untouched, others);
        }
    }

    #[test]
    fn the_rows_strings_come_back_exactly() {
        let odd = ["q\"uote\\back/slash", "tab\tnew\nline\r\u{1}\u{1f}\u{7f}", "é ✓ 😀 \u{10ffff}", ""];
        let changes: Vec<Change> = odd
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let p = Peer::new(i as i64 + 1, PeerKind::User, -1 - i as i64)
                    .with_phone(Some((*s).to_owned()))
                    .with_usernames(vec![(*s).to_owned(), "b".to_owned()]);
                Change::UpsertPeer(p)
            })
            .collect();
        let plan = plan(&changes, Known { session_row: true, no_removals: true, chunk_ranges: Some(&[]) });
        let fused = fuse(&plan);
        let run = fused.iter().find(|e| matches!(e.text, Text::Postgres(_))).expect("one statement");
        let phones: Vec<Option<String>> = odd.iter().map(|s| Some((*s).to_owned())).collect();
        assert_eq!(texts(&run.params[8]), &phones[..]);
        // The usernames column holds the list's JSON text, as the plan's own statements store it.
        let names = texts(&run.params[7]);
        assert_eq!(names[0].as_deref(), Some(r#"["q\"uote\\back/slash","b"]"#));
        assert_eq!(names[3].as_deref(), Some(r#"["","b"]"#));
        assert_eq!(ints(&run.params[5]), &[-1, -2, -3, -4]);
    }

    #[test]
    fn anything_but_the_plans_json_is_refused() {
        let row = &PLAIN_ROW[..];
        assert!(columns("[]", row).is_some_and(|c| ints(&c[0]).is_empty()));
        let ok = r#"[[0,1,2,-9223372036854775808,4,"\ud83d\ude00\u00e9",null,7]]"#;
        let cols = columns(ok, row).expect("valid");
        assert_eq!(ints(&cols[3]), &[i64::MIN]);
        assert_eq!(texts(&cols[5]), &[Some("😀é".to_owned())]);
        for bad in [
            "",
            "[",
            "[[0,1,2,3,4,null,null]]",
            "[[0,1,2,3,4,null,null,7,8]]",
            "[[0,1,2,3,4,null,null,7.5]]",
            "[[0,1,2,3,null,null,null,7]]",
            "[[0,1,2,3,4,5,null,7]]",
            r#"[[0,1,2,3,4,"\x",null,7]]"#,
            r#"[[0,1,2,3,4,"\ud83d",null,7]]"#,
            r#"[[0,1,2,3,4,"open,null,7]]"#,
            "[[0,1,2,3,4,null,null,99999999999999999999]]",
            "[[0,1,2,3,4,null,null,7]] x",
            "[[0,1,2,3,4,null,null,7],]",
            "[[0,1,2,3,4,null,null,7],[0,1,5,6,7,null,null,8]]",
        ] {
            assert!(columns(bad, row).is_none(), "{bad}");
        }
    }
}
