//! The SQL dialects the plans run in: SQLite's (the texts as written, byte for byte) and
//! PostgreSQL's, translated from them.
//!
//! Every statement of this crate is written once, in SQLite's dialect with `?N` parameters.
//! [`Dialect::translate`] gives the text a PostgreSQL driver runs, so one plan (same tables, same
//! checksums, same statements in the same order) runs on both engines. The translation is
//! textual, by rules that know the few SQLite constructs this crate uses:
//!
//! | SQLite | PostgreSQL |
//! | --- | --- |
//! | `?N` | `$N` |
//! | `INTEGER` (64-bit in SQLite) | `BIGINT` |
//! | `BLOB` | `BYTEA` |
//! | `WITHOUT ROWID` | (nothing: every PostgreSQL table is a heap with its key's index) |
//! | `PRAGMA application_id = N;` | the table `layer_session_schema` ([`SCHEMA_TABLE`]), created with the id |
//! | `PRAGMA user_version = N` | an update of that table ([`Dialect::set_version_sql`]) |
//! | `CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)` ([`lease::NOW_MS`](crate::lease::NOW_MS)) | `CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)` |
//! | `json_each(?N) AS j` | `jsonb_array_elements(CAST($N AS text)::jsonb) AS j(value)` |
//! | `json_extract(v, '$[k]')` | `CAST(v ->> k AS BIGINT)`, or `(v ->> k)` where it fills a `TEXT` column |
//! | `CROSS JOIN t ON ...` (SQLite: a join the planner may not reorder) | `JOIN t ON ...` |
//! | `sum(x)` (SQLite: an integer) | `CAST(sum(x) AS BIGINT)` (PostgreSQL's is `numeric`) |
//!
//! One statement gets a PostgreSQL variant instead of a rule: the lease's fence
//! ([`lease::FENCE`](crate::lease::FENCE)) also locks the lease row (`FOR SHARE`). In SQLite a
//! write transaction excludes every other writer, so no takeover can commit between the fence
//! and the write's commit; in PostgreSQL it can, unless the fence's read of the row holds a lock
//! that a takeover's update must wait for until the write commits or rolls back.
//!
//! The statements that read or delete the stored rows of a run of peers by the keys of a JSON
//! parameter get PostgreSQL variants too ([`Dialect::translate`] gives them for the texts of the
//! batch plans): a join of the keys to the table (SQLite's `CROSS JOIN`, which SQLite runs
//! in the order written) is the planner's choice in PostgreSQL, and with the row estimates of a
//! table that grew since it was last analyzed (the overlay of a session does, fast) it hashes
//! every row of the session instead of looking the keys up: one flush then costs
//! O(rows stored), not O(change). The variants look each key up by the primary key whatever
//! the statistics say: a sum adds a scalar subquery per key, a delete takes the rows the
//! keys name by their `ctid` (a TID scan).
//!
//! Integers that a JSON parameter carries are exact on both engines: PostgreSQL's `jsonb` keeps
//! numbers as `numeric`, and `->>` gives their decimal text back.

use std::borrow::Cow;

use crate::lease;

/// An SQL engine the statements of this crate run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// SQLite and libSQL: the statements as written.
    Sqlite,
    /// PostgreSQL (12 and newer).
    Postgres,
}

/// In PostgreSQL, the table that holds what SQLite keeps in `PRAGMA user_version` and
/// `PRAGMA application_id`: one row (`id` = 0) with `application_id` and `version`.
pub const SCHEMA_TABLE: &str = "layer_session_schema";

/// The columns of the schema declared `TEXT`: a JSON value written into one of them is text,
/// every other JSON value an integer. (A test checks this list against the schema.)
pub const TEXT_COLUMNS: &[&str] = &["ip", "usernames", "phone", "name", "holder", "sealed", "key_id", "kdf"];

const PG_NOW_MS: &str = "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)";

/// The fence, in PostgreSQL: [`lease::FENCE`] with the lease row locked until the write
/// transaction ends (see the module docs).
pub const PG_FENCE: &str = "INSERT INTO layer_session_fence (ok) SELECT 0 WHERE NOT EXISTS \
    (SELECT 1 FROM layer_session_leases WHERE name = $1 AND token = $2 AND holder IS NOT NULL FOR SHARE)";

impl Dialect {
    /// `sql` in this dialect. For [`Dialect::Sqlite`] it is `sql` itself, borrowed.
    pub fn translate(self, sql: &str) -> Cow<'_, str> {
        match self {
            Dialect::Sqlite => Cow::Borrowed(sql),
            Dialect::Postgres => Cow::Owned(to_postgres(sql)),
        }
    }

    /// The query that reads the schema version (one row, one integer). For PostgreSQL, run it
    /// only when [`SCHEMA_TABLE`] exists (`to_regclass('layer_session_schema')` is not NULL):
    /// a database without it is at version 0.
    pub fn user_version_query(self) -> &'static str {
        match self {
            Dialect::Sqlite => "PRAGMA user_version",
            Dialect::Postgres => "SELECT version FROM layer_session_schema WHERE id = 0",
        }
    }

    /// The statement that records `version` as the schema version (run in the migration's
    /// transaction); for SQLite, [`set_version_sql`](crate::set_version_sql).
    pub fn set_version_sql(self, version: u32) -> String {
        match self {
            Dialect::Sqlite => crate::set_version_sql(version),
            Dialect::Postgres => format!("UPDATE {SCHEMA_TABLE} SET version = {version} WHERE id = 0"),
        }
    }
}

// The stored `crc` of the rows of `table` keyed by the `[class, id, ...]` arrays of the JSON
// parameter `param`, summed and reduced as the SQLite text's `old_sum!` does, each key looked up
// by the primary key.
macro_rules! pg_old_sum {
    ($table:literal, $param:literal) => {
        concat!(
            "(coalesce((SELECT CAST(sum((SELECT t.crc FROM ",
            $table,
            " AS t WHERE t.sid = $1 AND t.class = CAST(j.value ->> 0 AS BIGINT) \
             AND t.id = CAST(j.value ->> 1 AS BIGINT))) AS BIGINT) FROM jsonb_array_elements(CAST(",
            $param,
            " AS text)::jsonb) AS j(value)), 0) % 4294967296)"
        )
    };
}

// Deletes the rows of `table` keyed by the JSON parameter $2: their `ctid`, each found by the
// primary key, then a TID scan (the `sid` filter keeps it to the session whatever happens).
macro_rules! pg_delete_keyed {
    ($table:literal) => {
        concat!(
            "DELETE FROM ",
            $table,
            " WHERE sid = $1 AND ctid = ANY (ARRAY(SELECT (SELECT t.ctid FROM ",
            $table,
            " AS t WHERE t.sid = $1 AND t.class = CAST(j.value ->> 0 AS BIGINT) \
             AND t.id = CAST(j.value ->> 1 AS BIGINT)) FROM jsonb_array_elements(CAST($2 AS text)::jsonb) AS j(value)))"
        )
    };
}

// Upserts the peers of the JSON parameter $2 (rows of `$cols` in the order `$values` reads them)
// without `ON CONFLICT`: PostgreSQL inserts each row of an `INSERT ... ON CONFLICT` speculatively
// (a second index pass per row), which makes it the dearest statement of a flush. The rows are
// read from the JSON once; each key is looked up by the primary key (its `ctid`, NULL when new);
// the stored rows are updated through a TID scan and the new ones inserted, both against the
// statement's one snapshot, so no key is written twice. A concurrent insert of the same key
// (impossible under the lease) would fail the statement, never be overwritten.
macro_rules! pg_upsert_peers {
    ($values:literal, $cols:literal, $set:literal) => {
        concat!(
            "WITH k AS MATERIALIZED (SELECT ",
            $values,
            " FROM jsonb_array_elements(CAST($2 AS text)::jsonb) AS elements(value)), \
             o AS MATERIALIZED (SELECT k.*, (SELECT t.ctid FROM peers AS t WHERE t.sid = $1 AND t.class = k.class \
             AND t.id = k.id) AS at FROM k), \
             u AS (UPDATE peers AS t SET ",
            $set,
            " FROM o WHERE t.ctid = ANY (ARRAY(SELECT at FROM o WHERE at IS NOT NULL)) AND t.ctid = o.at \
             AND t.sid = $1) \
             INSERT INTO peers (sid, ",
            $cols,
            ") SELECT $1, ",
            $cols,
            " FROM o WHERE at IS NULL"
        )
    };
}

/// The PostgreSQL variants of the batch statements that read or delete rows by a JSON list of
/// keys (see the module docs), by their SQLite text.
fn batch_variant(sql: &str) -> Option<&'static str> {
    use crate::plan::batch;
    Some(match sql {
        s if s == batch::SUM_PEERS_BATCH => concat!(
            "UPDATE session SET peers_sum = (peers_sum - ",
            pg_old_sum!("peers", "$2"),
            " + $3 + 4294967296) % 4294967296 WHERE sid = $1"
        ),
        s if s == batch::SUM_PEERS_UNREMOVE_BATCH => concat!(
            "UPDATE session SET peers_sum = (peers_sum - ",
            pg_old_sum!("peers", "$2"),
            " + $3 + 4294967296) % 4294967296, removals_sum = (removals_sum - ",
            pg_old_sum!("peer_removals", "$2"),
            " + 4294967296) % 4294967296 WHERE sid = $1"
        ),
        s if s == batch::SUM_REMOVE_BATCH => concat!(
            "UPDATE session SET peers_sum = (peers_sum - ",
            pg_old_sum!("peers", "$2"),
            " + 4294967296) % 4294967296, removals_sum = (removals_sum - ",
            pg_old_sum!("peer_removals", "$3"),
            " + $4 + 4294967296) % 4294967296 WHERE sid = $1"
        ),
        s if s == batch::UPSERT_PEERS_BATCH => pg_upsert_peers!(
            "CAST(value ->> 0 AS BIGINT) AS class, CAST(value ->> 1 AS BIGINT) AS id, \
             CAST(value ->> 2 AS BIGINT) AS kind, CAST(value ->> 3 AS BIGINT) AS access_hash, \
             CAST(value ->> 4 AS BIGINT) AS min, (value ->> 5) AS usernames, (value ->> 6) AS phone, \
             CAST(value ->> 7 AS BIGINT) AS crc",
            "class, id, kind, access_hash, min, usernames, phone, crc",
            "kind = o.kind, access_hash = o.access_hash, min = o.min, usernames = o.usernames, phone = o.phone, \
             crc = o.crc"
        ),
        s if s == batch::UPSERT_PEERS_BATCH_SEALED => pg_upsert_peers!(
            "CAST(value ->> 0 AS BIGINT) AS class, CAST(value ->> 1 AS BIGINT) AS id, \
             CAST(value ->> 2 AS BIGINT) AS kind, CAST(value ->> 3 AS BIGINT) AS access_hash, \
             CAST(value ->> 4 AS BIGINT) AS min, (value ->> 5) AS usernames, (value ->> 6) AS phone, \
             (value ->> 7) AS sealed, CAST(value ->> 8 AS BIGINT) AS crc",
            "class, id, kind, access_hash, min, usernames, phone, sealed, crc",
            "kind = o.kind, access_hash = o.access_hash, min = o.min, usernames = o.usernames, phone = o.phone, \
             sealed = o.sealed, crc = o.crc"
        ),
        s if s == batch::DELETE_REMOVALS_BATCH => pg_delete_keyed!("peer_removals"),
        s if s == batch::REMOVE_PEERS_BATCH => pg_delete_keyed!("peers"),
        _ => return None,
    })
}

/// A statement of the plan of a run of peer upserts, for a PostgreSQL driver that runs a run's
/// statements as one statement of its own (see [`peer_batch`]). Every one takes the session's
/// id as `?1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerBatch {
    /// Moves `peers_sum` from the stored rows of the keys `?2` (a JSON array of `[class, id]`)
    /// to `?3`, the sum of the new rows' `crc`.
    SumPeers,
    /// [`SumPeers`](PeerBatch::SumPeers), and takes the removals of the same keys out of
    /// `removals_sum`.
    SumPeersUnremove,
    /// Deletes the removals of the keys `?2`.
    DeleteRemovals,
    /// Upserts the peer rows `?2`, a JSON array of `[class, id, kind, access_hash, min,
    /// usernames, phone, crc]`.
    Upsert,
    /// [`Upsert`](PeerBatch::Upsert) of sealed rows: `sealed` before `crc`.
    UpsertSealed,
}

/// Which statement of a run of peer upserts `sql` (a text of this crate's plans) is, `None` for
/// any other. A run of upserts is planned as `SumPeers` then `Upsert` (or `UpsertSealed`), or,
/// when removals may be stored, `SumPeersUnremove`, `DeleteRemovals`, then the upsert; the keys
/// of the sum and the delete are exactly those of the upsert's rows, and the sum's `?3` is the
/// sum of their `crc`. (A sealed run is split into several such groups, over disjoint keys.)
pub fn peer_batch(sql: &str) -> Option<PeerBatch> {
    use crate::plan::batch;
    Some(match sql {
        s if s == batch::SUM_PEERS_BATCH => PeerBatch::SumPeers,
        s if s == batch::SUM_PEERS_UNREMOVE_BATCH => PeerBatch::SumPeersUnremove,
        s if s == batch::DELETE_REMOVALS_BATCH => PeerBatch::DeleteRemovals,
        s if s == batch::UPSERT_PEERS_BATCH => PeerBatch::Upsert,
        s if s == batch::UPSERT_PEERS_BATCH_SEALED => PeerBatch::UpsertSealed,
        _ => return None,
    })
}

fn to_postgres(sql: &str) -> String {
    if sql == lease::FENCE {
        return PG_FENCE.to_owned();
    }
    if let Some(variant) = batch_variant(sql) {
        return variant.to_owned();
    }
    let mut s = sql.replace(lease::NOW_MS, PG_NOW_MS);
    s = pragmas(&s);
    s = replace_word(&s, "INTEGER", "BIGINT");
    s = replace_word(&s, "BLOB", "BYTEA");
    s = s.replace(" WITHOUT ROWID", "");
    s = s.replace("CROSS JOIN", "JOIN");
    s = sums(&s);
    s = json_each(&s);
    s = json_extract(&s);
    s = select_params(&s);
    placeholders(&s)
}

/// `PRAGMA application_id = N;` and `PRAGMA user_version = N`.
fn pragmas(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find("PRAGMA ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "PRAGMA ".len()..];
        let end = after.find(';').map_or(after.len(), |e| e + 1);
        let (pragma, tail) = after.split_at(end);
        let body = pragma.trim_end_matches(';');
        let (name, value) = body.split_once('=').map_or((body.trim(), ""), |(n, v)| (n.trim(), v.trim()));
        match name {
            "application_id" => out.push_str(&format!(
                "CREATE TABLE {SCHEMA_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 0), \
                 application_id INTEGER NOT NULL, version INTEGER NOT NULL);\n\
                 INSERT INTO {SCHEMA_TABLE} (id, application_id, version) VALUES (0, {value}, 0);"
            )),
            "user_version" if !value.is_empty() => {
                out.push_str(&format!("UPDATE {SCHEMA_TABLE} SET version = {value} WHERE id = 0"));
                if pragma.ends_with(';') {
                    out.push(';');
                }
            }
            _ => {
                out.push_str("PRAGMA ");
                out.push_str(pragma);
            }
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Replaces `word` where it stands alone (not inside a longer identifier).
fn replace_word(sql: &str, word: &str, by: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    let mut prev: Option<char> = None;
    while let Some(at) = rest.find(word) {
        let before = if at == 0 { prev } else { rest[..at].chars().last() };
        let after = rest[at + word.len()..].chars().next();
        out.push_str(&rest[..at]);
        if before.is_some_and(is_word) || after.is_some_and(is_word) {
            out.push_str(word);
        } else {
            out.push_str(by);
        }
        prev = word.chars().last();
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

/// The index of the `)` that closes the `(` just before `from`.
fn closing(s: &str, from: usize) -> Option<usize> {
    let mut depth = 1usize;
    let mut quoted = false;
    for (i, c) in s[from..].char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    return Some(from + i);
                }
            }
            _ => {}
        }
    }
    None
}

/// `sum(x)` → `CAST(sum(x) AS BIGINT)`.
fn sums(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find("sum(") {
        let standalone = at == 0 || !rest[..at].chars().last().is_some_and(is_word);
        let open = at + "sum(".len();
        match (standalone, closing(rest, open)) {
            (true, Some(close)) => {
                out.push_str(&rest[..at]);
                out.push_str("CAST(");
                out.push_str(&rest[at..=close]);
                out.push_str(" AS BIGINT)");
                rest = &rest[close + 1..];
            }
            _ => {
                out.push_str(&rest[..open]);
                rest = &rest[open..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `json_each(p) AS j` → `jsonb_array_elements(CAST(p AS text)::jsonb) AS j(value)`; without an
/// alias, `AS elements(value)`.
fn json_each(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find("json_each(") {
        let open = at + "json_each(".len();
        let Some(close) = closing(rest, open) else { break };
        out.push_str(&rest[..at]);
        out.push_str("jsonb_array_elements(CAST(");
        out.push_str(&rest[open..close]);
        out.push_str(" AS text)::jsonb)");
        rest = &rest[close + 1..];
        if let Some(alias) = rest.strip_prefix(" AS ") {
            let len = alias.find(|c: char| !is_word(c)).unwrap_or(alias.len());
            out.push_str(" AS ");
            out.push_str(&alias[..len]);
            out.push_str("(value)");
            rest = &alias[len..];
        } else {
            out.push_str(" AS elements(value)");
        }
    }
    out.push_str(rest);
    out
}

/// The select-list expressions of an `INSERT INTO t (cols) SELECT ...`: byte range and the
/// column each fills.
fn select_columns(sql: &str) -> Vec<(usize, usize, String)> {
    let Some(rest) = sql.strip_prefix("INSERT INTO ") else { return Vec::new() };
    let Some(open) = rest.find('(') else { return Vec::new() };
    let base = "INSERT INTO ".len();
    let Some(close) = closing(rest, open + 1) else { return Vec::new() };
    let columns: Vec<&str> = rest[open + 1..close].split(',').map(str::trim).collect();
    let after = &rest[close + 1..];
    let Some(select) = after.strip_prefix(" SELECT ") else { return Vec::new() };
    let origin = base + close + 1 + " SELECT ".len();
    let mut start = origin;
    let mut ranges = Vec::new();
    let (mut depth, mut column, mut quoted) = (0usize, 0usize, false);
    let mut push = |start: usize, end: usize, column: usize| {
        if let Some(c) = columns.get(column) {
            ranges.push((start, end, (*c).to_owned()));
        }
    };
    for (i, c) in select.char_indices() {
        let at = origin + i;
        if depth == 0 && !quoted && select[i..].starts_with(" FROM ") {
            push(start, at, column);
            break;
        }
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            ',' if !quoted && depth == 0 => {
                push(start, at, column);
                column += 1;
                start = at + 1;
            }
            _ => {}
        }
    }
    ranges
}

/// In an `INSERT ... SELECT`, a parameter that is a whole select expression gets its column's
/// type (PostgreSQL infers no type for a parameter in a select list: it would be text).
fn select_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut done = 0;
    for (start, end, column) in select_columns(sql) {
        let expr = sql[start..end].trim();
        let is_param = expr.strip_prefix('?').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !is_param {
            continue;
        }
        let ty = if TEXT_COLUMNS.contains(&column.as_str()) { "text" } else { "BIGINT" };
        let lead = &sql[start..end];
        let at = start + lead.find('?').unwrap_or(0);
        out.push_str(&sql[done..at]);
        out.push_str(&format!("CAST({expr} AS {ty})"));
        done = at + expr.len();
    }
    out.push_str(&sql[done..]);
    out
}

/// `json_extract(v, '$[k]')` → `CAST(v ->> k AS BIGINT)`, or `(v ->> k)` for a `TEXT` column.
fn json_extract(sql: &str) -> String {
    let text: Vec<(usize, usize)> = select_columns(sql)
        .into_iter()
        .filter(|(_, _, c)| TEXT_COLUMNS.contains(&c.as_str()))
        .map(|(s, e, _)| (s, e))
        .collect();
    let mut out = String::with_capacity(sql.len());
    let mut done = 0;
    let mut from = 0;
    while let Some(found) = sql[from..].find("json_extract(") {
        let at = from + found;
        let open = at + "json_extract(".len();
        let Some(close) = closing(sql, open) else { break };
        let args = &sql[open..close];
        let parsed = args.rsplit_once(", '$[").and_then(|(value, index)| {
            let index = index.strip_suffix("]'")?;
            index.parse::<u32>().ok().map(|k| (value, k))
        });
        let Some((value, k)) = parsed else {
            from = open;
            continue;
        };
        out.push_str(&sql[done..at]);
        if text.iter().any(|(s, e)| *s <= at && at < *e) {
            out.push_str(&format!("({value} ->> {k})"));
        } else {
            out.push_str(&format!("CAST({value} ->> {k} AS BIGINT)"));
        }
        done = close + 1;
        from = done;
    }
    out.push_str(&sql[done..]);
    out
}

/// `?N` → `$N`, outside string literals.
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::*;
    use crate::{backfill_queries, backfill_sums, LOAD_QUERIES, MIGRATIONS};
    use session_core::{Change, DcKey, DcOption, Peer, PeerKey, PeerKind, SessionData, UpdateStateChange};

    /// Every statement text a plan of this crate can hold (and the lease's, the loads').
    fn every_statement() -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        let changes = |n: i64| -> Vec<Change> {
            let mut c = vec![
                Change::SetDc(DcOption::new(2, "1.2.3.4:443".parse().expect("addr"))),
                Change::SetAuthKey { dc_id: 2, key: None },
                Change::RemoveDc(DcKey::main(4)),
                Change::UpdateState(UpdateStateChange::Channel { id: 5, pts: 6 }),
                Change::UpdateState(UpdateStateChange::RemoveChannel { id: 7 }),
                Change::SetHomeDc(2),
            ];
            c.extend((0..n).map(|i| Change::UpsertPeer(Peer::new(i, PeerKind::User, i))));
            c.extend((0..n).map(|i| Change::RemovePeer(PeerKey::user(i))));
            c.extend((0..n).map(|i| Change::UpsertPeer(Peer::new(i, PeerKind::User, i))));
            c.push(Change::LogOut);
            c
        };
        for n in [1, 3] {
            let mut full = SessionData::default();
            let c = changes(n);
            full.apply_all(&c);
            for known in [Known::default(), Known { session_row: true, no_removals: true, chunk_ranges: None }] {
                all.extend(persist_plan_known(1, &c, &full, known).expect("plan").map(|st| st.sql.to_owned()));
            }
            all.extend(save_plan(1, &full).map(|st| st.sql.to_owned()));
            all.extend(compact_plan(1, &full.peers).map(|st| st.sql.to_owned()));
            // The same plans in a sealed database, with the changes that rewrite whole tables.
            let keys = session_core::Keyring::new(session_core::SealingKey::from_bytes([1; 32]));
            let sealer = crate::open_seal("t", None, Some(&keys)).expect("seal").expect("sealed").session("s");
            let mut c = c.clone();
            c.push(Change::UpdateState(UpdateStateChange::All(session_core::UpdateState::new(1, 2, 3, 4))));
            c.push(Change::SetMinContexts(vec![session_core::MinPeerContext::new(1, 2, 3)]));
            full.apply_all(&c);
            full.updates.channels.insert(5, 6);
            for known in [Known::default(), Known { session_row: true, no_removals: true, chunk_ranges: None }] {
                let plan = crate::persist_plan_sealed(1, &c, &full, known, Some(&sealer)).expect("plan");
                all.extend(plan.into_iter().map(|st| st.sql.to_owned()));
            }
            let saved = crate::save_plan_sealed(1, &full, Some(&sealer)).expect("save");
            all.extend(saved.into_iter().map(|st| st.sql.to_owned()));
            let compacted = crate::compact_plan_sealed(1, &full.peers, Some(&sealer)).expect("compact");
            all.extend(compacted.into_iter().map(|st| st.sql.to_owned()));
        }
        all.extend(delete_plan(1).map(|st| st.sql.to_owned()));
        all.extend(MIGRATIONS.iter().map(|s| (*s).to_owned()));
        for v in 1..=crate::SCHEMA_VERSION {
            all.extend(backfill_queries(v).iter().map(|(_, s)| (*s).to_owned()));
            all.extend(backfill_sums(v).map(str::to_owned));
        }
        for v in 0..=crate::SCHEMA_VERSION {
            all.extend(crate::load_queries(v).map(|(_, s)| s.to_owned()));
        }
        all.extend(
            [
                crate::REGISTER_SESSION,
                crate::SESSION_ID,
                crate::LIST_SESSIONS,
                crate::LIST_SESSIONS_WITH_LEASES,
                crate::LOAD_PEER_CHUNKS_AFTER,
                crate::LOAD_CHUNK_RANGES,
                crate::LOAD_SEAL,
                crate::WRITE_SEAL,
                crate::OTHER_STORED_SESSIONS,
            ]
            .map(str::to_owned),
        );
        all.extend(LOAD_QUERIES.iter().map(|(_, s)| (*s).to_owned()));
        all.extend(
            [lease::CREATE_LEASES, lease::CREATE_FENCE, lease::ACQUIRE, lease::HOLDER, lease::RENEW, lease::RELEASE]
                .map(str::to_owned),
        );
        all.sort();
        all.dedup();
        all
    }

    #[test]
    fn sqlite_texts_are_unchanged() {
        for sql in every_statement() {
            assert!(matches!(Dialect::Sqlite.translate(&sql), Cow::Borrowed(s) if s == sql));
        }
        assert_eq!(Dialect::Sqlite.set_version_sql(4), crate::set_version_sql(4));
        assert_eq!(Dialect::Sqlite.user_version_query(), "PRAGMA user_version");
    }

    #[test]
    fn postgres_texts_keep_no_sqlite_construct() {
        for sql in every_statement() {
            let pg = Dialect::Postgres.translate(&sql);
            for sqlite in
                ["?1", "PRAGMA", "BLOB", "INTEGER", "WITHOUT ROWID", "julianday", "json_each", "json_extract", "CROSS"]
            {
                assert!(!pg.contains(sqlite), "{sqlite} left in {pg}\n(from {sql})");
            }
            // Every parameter is still there, renumbered in place.
            for n in 1..=20 {
                assert_eq!(sql.contains(&format!("?{n}")), pg.contains(&format!("${n}")), "{pg}");
            }
            assert_eq!(pg.matches('(').count(), pg.matches(')').count(), "{pg}");
        }
    }

    #[test]
    fn a_parameter_in_a_select_list_gets_its_columns_type() {
        assert_eq!(
            to_postgres("INSERT INTO sessions (id, name) SELECT coalesce(max(id), 0) + 1, ?1 FROM sessions WHERE true"),
            "INSERT INTO sessions (id, name) SELECT coalesce(max(id), 0) + 1, CAST($1 AS text) FROM sessions WHERE true"
        );
        assert_eq!(
            to_postgres("INSERT INTO peers (sid, class) SELECT ?1, json_extract(value, '$[0]') FROM json_each(?2)"),
            "INSERT INTO peers (sid, class) SELECT CAST($1 AS BIGINT), CAST(value ->> 0 AS BIGINT) \
             FROM jsonb_array_elements(CAST($2 AS text)::jsonb) AS elements(value)"
        );
    }

    #[test]
    fn batched_rows_read_integers_as_bigint_and_text_columns_as_text() {
        let pg = to_postgres(
            "INSERT INTO peers (class, id, usernames, phone, crc) SELECT json_extract(value, '$[0]'), \
             json_extract(value, '$[1]'), json_extract(value, '$[5]'), json_extract(value, '$[6]'), \
             json_extract(value, '$[7]') FROM json_each(?1) WHERE true ON CONFLICT (class, id) DO NOTHING",
        );
        assert_eq!(
            pg,
            "INSERT INTO peers (class, id, usernames, phone, crc) SELECT CAST(value ->> 0 AS BIGINT), \
             CAST(value ->> 1 AS BIGINT), (value ->> 5), (value ->> 6), CAST(value ->> 7 AS BIGINT) \
             FROM jsonb_array_elements(CAST($1 AS text)::jsonb) AS elements(value) WHERE true \
             ON CONFLICT (class, id) DO NOTHING"
        );
        let pg = to_postgres(
            "SELECT sum(t.crc) FROM json_each(?2) AS j CROSS JOIN peers AS t ON t.id = json_extract(j.value, '$[1]')",
        );
        assert_eq!(
            pg,
            "SELECT CAST(sum(t.crc) AS BIGINT) FROM jsonb_array_elements(CAST($2 AS text)::jsonb) AS j(value) \
             JOIN peers AS t ON t.id = CAST(j.value ->> 1 AS BIGINT)"
        );
    }

    #[test]
    fn batch_statements_look_their_keys_up_by_the_primary_key() {
        use crate::plan::batch::*;
        let keyed =
            [SUM_PEERS_BATCH, SUM_PEERS_UNREMOVE_BATCH, SUM_REMOVE_BATCH, DELETE_REMOVALS_BATCH, REMOVE_PEERS_BATCH];
        for sql in keyed {
            let pg = to_postgres(sql);
            // No join of the keys to a table the planner could hash, no `IN` it could too.
            assert!(!pg.contains(" JOIN ") && !pg.contains(" IN ("), "{pg}");
            assert!(pg.contains("t.sid = $1 AND t.class = CAST(j.value ->> 0 AS BIGINT)"), "{pg}");
        }
        for (sql, kind) in [
            (SUM_PEERS_BATCH, PeerBatch::SumPeers),
            (SUM_PEERS_UNREMOVE_BATCH, PeerBatch::SumPeersUnremove),
            (DELETE_REMOVALS_BATCH, PeerBatch::DeleteRemovals),
            (UPSERT_PEERS_BATCH, PeerBatch::Upsert),
            (UPSERT_PEERS_BATCH_SEALED, PeerBatch::UpsertSealed),
        ] {
            assert_eq!(peer_batch(sql), Some(kind));
        }
        assert_eq!(peer_batch(SUM_REMOVE_BATCH), None);
        assert_eq!(peer_batch(&format!("{SUM_PEERS_BATCH} ")), None);
    }

    #[test]
    fn text_columns_are_the_schemas() {
        let mut declared: Vec<String> = Vec::new();
        for sql in MIGRATIONS.iter().copied().chain([lease::CREATE_LEASES, lease::CREATE_FENCE]) {
            let words: Vec<&str> =
                sql.split(|c: char| c.is_whitespace() || c == '(' || c == ',').filter(|w| !w.is_empty()).collect();
            for pair in words.windows(2) {
                if pair[1] == "TEXT" {
                    declared.push(pair[0].to_owned());
                }
            }
        }
        declared.sort();
        declared.dedup();
        let mut known: Vec<String> = TEXT_COLUMNS.iter().map(|s| (*s).to_owned()).collect();
        known.sort();
        assert_eq!(declared, known);
    }

    #[test]
    fn pragmas_and_the_clock() {
        let first = to_postgres(MIGRATIONS[0]);
        assert!(first.contains("CREATE TABLE layer_session_schema"), "{first}");
        assert!(first.contains(&format!("VALUES (0, {}, 0)", crate::APPLICATION_ID)), "{first}");
        assert_eq!(
            Dialect::Postgres.translate(&crate::set_version_sql(3)),
            "UPDATE layer_session_schema SET version = 3 WHERE id = 0"
        );
        assert!(to_postgres(lease::ACQUIRE).contains("clock_timestamp()"));
        assert_eq!(to_postgres(lease::FENCE), PG_FENCE);
        assert_eq!(replace_word("a INTEGER, b_INTEGER INTEGERS", "INTEGER", "BIGINT"), "a BIGINT, b_INTEGER INTEGERS");
        assert_eq!(placeholders("x = ?12 AND y = '?1'"), "x = $12 AND y = '?1'");
    }
}
