//! Runs of peer changes as a constant number of statements: the rows of a run travel as one JSON
//! text parameter (`json_each(?)`), so 1,000 cached peers cost the same four statements as ten,
//! where one statement pair per peer (a sum and a write) made a flush thousands of statements
//! long, each parsed, prepared (and, over a network, inlined and sent) on its own.
//!
//! Every statement is keyed: the old checksums are read by joining the run's keys to the table's
//! primary key (`json_each` first, by `CROSS JOIN`, so the planner cannot turn it into a scan),
//! and deletes look the keys up the same way. SQLite's JSON keeps 64-bit integers exact (an
//! access hash of `i64::MIN` reads back as itself), and strings are JSON strings, so the values
//! written are the values of the single-row statements, checksums included.

use std::collections::{BTreeMap, BTreeSet};

use session_core::{Peer, PeerKey, SessionError};

use super::*;
use crate::checksum::row_crc_of;
use crate::seal::{append_sealed_text, SealScratch};
use crate::value::SqlValueRef;

// The sum of the stored `crc` of the rows of `table` of the session ?1 keyed by the
// `[class, id, ...]` arrays of the JSON parameter `param`, reduced mod 2^32 (a plain sum of
// thousands of checksums would not be, and SQLite's `%` keeps the sign of a negative left side).
macro_rules! old_sum {
    ($table:literal, $param:literal) => {
        concat!(
            "(coalesce((SELECT sum(t.crc) FROM json_each(",
            $param,
            ") AS j CROSS JOIN ",
            $table,
            " AS t ON t.sid = ?1 AND t.class = json_extract(j.value, '$[0]') \
             AND t.id = json_extract(j.value, '$[1]')), 0) % 4294967296)"
        )
    };
}

// The keys of the JSON parameter `param`, as a subquery for `(class, id) IN`.
macro_rules! keys_of {
    ($param:literal) => {
        concat!("(SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(", $param, "))")
    };
}

/// Moves `peers_sum` from the stored rows of the keys ?2 to the new rows' sum ?3.
pub(crate) const SUM_PEERS_BATCH: &str = concat!(
    "UPDATE session SET peers_sum = (peers_sum - ",
    old_sum!("peers", "?2"),
    " + ?3 + 4294967296) % 4294967296 WHERE sid = ?1"
);
/// [`SUM_PEERS_BATCH`], and takes the removals of the same keys out of `removals_sum`.
pub(crate) const SUM_PEERS_UNREMOVE_BATCH: &str = concat!(
    "UPDATE session SET peers_sum = (peers_sum - ",
    old_sum!("peers", "?2"),
    " + ?3 + 4294967296) % 4294967296, removals_sum = (removals_sum - ",
    old_sum!("peer_removals", "?2"),
    " + 4294967296) % 4294967296 WHERE sid = ?1"
);
/// Takes the rows of the keys ?2 out of `peers_sum`, and moves `removals_sum` from the stored
/// removals of the keys ?3 to their new sum ?4.
pub(crate) const SUM_REMOVE_BATCH: &str = concat!(
    "UPDATE session SET peers_sum = (peers_sum - ",
    old_sum!("peers", "?2"),
    " + 4294967296) % 4294967296, removals_sum = (removals_sum - ",
    old_sum!("peer_removals", "?3"),
    " + ?4 + 4294967296) % 4294967296 WHERE sid = ?1"
);
pub(crate) const DELETE_REMOVALS_BATCH: &str =
    concat!("DELETE FROM peer_removals WHERE sid = ?1 AND (class, id) IN ", keys_of!("?2"));
pub(crate) const REMOVE_PEERS_BATCH: &str =
    concat!("DELETE FROM peers WHERE sid = ?1 AND (class, id) IN ", keys_of!("?2"));
// `WHERE true`: an `INSERT ... SELECT` needs a clause before `ON CONFLICT` to parse it as the
// upsert's and not as a join constraint.
pub(crate) const UPSERT_PEERS_BATCH: &str =
    "INSERT INTO peers (sid, class, id, kind, access_hash, min, usernames, phone, crc) \
     SELECT ?1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), \
     json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'), \
     json_extract(value, '$[6]'), json_extract(value, '$[7]') FROM json_each(?2) WHERE true \
     ON CONFLICT (sid, class, id) DO UPDATE SET kind = excluded.kind, access_hash = excluded.access_hash, \
     min = excluded.min, usernames = excluded.usernames, phone = excluded.phone, crc = excluded.crc";
/// [`UPSERT_PEERS_BATCH`] with the `sealed` column (rows of a sealed database). The rows keep
/// the plain statement's shape (a PostgreSQL driver reads them by column), but the values a
/// sealed row holds in place of what it seals are the same for every row
/// ([`Table::placeholders`], checked by a test), so they are written as literals: each
/// `json_extract` looks its row's JSON up again, and six of ten per row were a third of a
/// 1,000-peer flush's time in SQLite.
pub(crate) const UPSERT_PEERS_BATCH_SEALED: &str =
    "INSERT INTO peers (sid, class, id, kind, access_hash, min, usernames, phone, sealed, crc) \
     SELECT ?1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), 0, 0, 0, NULL, NULL, \
     json_extract(value, '$[7]'), json_extract(value, '$[8]') FROM json_each(?2) \
     WHERE true ON CONFLICT (sid, class, id) DO UPDATE SET kind = excluded.kind, \
     access_hash = excluded.access_hash, min = excluded.min, usernames = excluded.usernames, \
     phone = excluded.phone, sealed = excluded.sealed, crc = excluded.crc";
pub(crate) const INSERT_REMOVALS_BATCH: &str = "INSERT INTO peer_removals (sid, class, id, crc) \
     SELECT ?1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]') \
     FROM json_each(?2) WHERE true ON CONFLICT (sid, class, id) DO UPDATE SET crc = excluded.crc";

/// Runs at least this long are batched. A single change keeps its one-row statements, which a
/// driver has prepared already and which need no JSON.
pub(crate) const BATCH_MIN: usize = 2;

/// Most rows one sealed batch carries: a sealed row is about twice as long as a plain one (its
/// envelope in base64), and a libSQL server refuses a statement's text past a few megabytes
/// (`string or blob too big`), where 70,000 plain rows still fit. 8,192 sealed rows are about
/// 1 MB of JSON.
pub(crate) const SEALED_BATCH_ROWS: usize = 8192;

/// The statements of a run of upserts (the last upsert of a key wins, as applying them in order
/// would leave it). `no_removals`: no removal is stored, so none is deleted. A sealed run is
/// split every [`SEALED_BATCH_ROWS`] rows (each part a few statements, over disjoint keys).
pub(crate) fn upsert_run<'a>(
    peers: impl IntoIterator<Item = &'a Peer>,
    no_removals: bool,
    seal: Seal<'_>,
) -> Result<Vec<Statement>, SessionError> {
    let last: BTreeMap<PeerKey, &Peer> = peers.into_iter().map(|p| (p.key(), p)).collect();
    let last: Vec<&Peer> = last.into_values().collect();
    let part = if seal.is_some() { SEALED_BATCH_ROWS } else { last.len().max(1) };
    let mut out = Vec::new();
    let mut scratch = SealScratch::default();
    for peers in last.chunks(part) {
        // Sized for the usual row (a sealed one carries its envelope in base64), so that the
        // texts are not copied again and again as they grow.
        let row_len = if seal.is_some() { 150 } else { 64 };
        let (mut keys, mut rows, mut sum) =
            (String::with_capacity(2 + 24 * peers.len()), String::with_capacity(2 + row_len * peers.len()), 0u32);
        keys.push('[');
        rows.push('[');
        for peer in peers {
            let values = peer_values(peer);
            let crc = match seal {
                Some(seal) => push_sealed_peer(&mut rows, &values, seal, &mut scratch)?,
                None => {
                    let crc = row_crc_of(Table::Peers, values.iter().map(SqlValue::as_ref));
                    push_json_row(&mut rows, values.iter().map(SqlValue::as_ref).chain([SqlValueRef::Integer(crc)]));
                    crc
                }
            };
            sum = sum.wrapping_add(u32::try_from(crc).unwrap_or(0));
            push_json_row(&mut keys, values.iter().take(2).map(SqlValue::as_ref));
        }
        keys.push(']');
        rows.push(']');
        let keys = SqlValue::Text(keys);
        let sum = int(sum);
        let upsert =
            Statement::new(pick(seal, UPSERT_PEERS_BATCH, UPSERT_PEERS_BATCH_SEALED), vec![SqlValue::Text(rows)]);
        if no_removals {
            out.extend([Statement::new(SUM_PEERS_BATCH, vec![keys, sum]), upsert]);
        } else {
            out.extend([
                Statement::new(SUM_PEERS_UNREMOVE_BATCH, vec![keys.clone(), sum]),
                Statement::new(DELETE_REMOVALS_BATCH, vec![keys]),
                upsert,
            ]);
        }
    }
    Ok(out)
}

/// Appends the stored form of the sealed peer row whose values are `values` ([`peer_values`])
/// to `rows`, as [`push_json_row`] appends [`stored`]'s parameters, without building them: the
/// `sealed` text is encoded into `rows` in place, and the checksum is taken over it there (a
/// sealed row's parameters were a vector, a string and a copy of that string per row).
/// Returns the row's checksum.
fn push_sealed_peer(
    rows: &mut String,
    values: &[SqlValue],
    seal: &Sealer,
    scratch: &mut SealScratch,
) -> Result<i64, SessionError> {
    let (clear, secret) = values.split_at(Table::Peers.sealed_from().min(values.len()));
    let envelope = seal.seal_values(
        Table::Peers,
        clear.iter().map(SqlValue::as_ref),
        secret.iter().map(SqlValue::as_ref),
        scratch,
    )?;
    let placeholders = Table::Peers.placeholders();
    push_json_row(rows, clear.iter().chain(placeholders).map(SqlValue::as_ref));
    // The row goes on: its `sealed` text (base64, nothing to escape in JSON), then its checksum.
    rows.pop();
    rows.push_str(",\"");
    let start = rows.len();
    append_sealed_text(&envelope, rows);
    let text = rows.get(start..).unwrap_or_default();
    let crc = row_crc_of(
        Table::Peers,
        clear.iter().chain(placeholders).map(SqlValue::as_ref).chain([SqlValueRef::Text(text)]),
    );
    rows.push_str("\",");
    rows.push_str(itoa::Buffer::new().format(crc));
    rows.push(']');
    Ok(crc)
}

/// The statements of a run of removals; `recorded` says which keys get a removal row (see
/// [`may_be_chunked`](super::may_be_chunked)). Returns whether any was recorded.
pub(crate) fn remove_run(
    keys: impl IntoIterator<Item = PeerKey>,
    recorded: impl Fn(PeerKey) -> bool,
    out: &mut Vec<Statement>,
) -> bool {
    let keys: BTreeSet<PeerKey> = keys.into_iter().collect();
    let (mut all, mut removals, mut sum, mut any) = (String::from("["), String::from("["), 0u32, false);
    for key in keys {
        let params = removal_params(key);
        push_json_row(&mut all, params.iter().take(2).map(SqlValue::as_ref));
        if recorded(key) {
            if let Some(SqlValue::Integer(crc)) = params.last() {
                sum = sum.wrapping_add(u32::try_from(*crc).unwrap_or(0));
            }
            push_json_row(&mut removals, params.iter().map(SqlValue::as_ref));
            any = true;
        }
    }
    all.push(']');
    removals.push(']');
    let all = SqlValue::Text(all);
    let removals = SqlValue::Text(removals);
    out.push(Statement::new(SUM_REMOVE_BATCH, vec![all.clone(), removals.clone(), int(sum)]));
    out.push(Statement::new(REMOVE_PEERS_BATCH, vec![all]));
    if any {
        out.push(Statement::new(INSERT_REMOVALS_BATCH, vec![removals]));
    }
    any
}

/// Appends `params` as a JSON array (after a `,` unless it is the first in `out`'s array):
/// integers in decimal (exact, whatever their size), text as JSON strings, anything else null
/// (a peer or removal row holds no other value).
fn push_json_row<'v>(out: &mut String, params: impl IntoIterator<Item = SqlValueRef<'v>>) {
    if !out.ends_with('[') {
        out.push(',');
    }
    out.push('[');
    for (i, v) in params.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match v {
            SqlValueRef::Integer(n) => out.push_str(itoa::Buffer::new().format(n)),
            // Most texts (every sealed envelope, in base64) need no escape: copied as they are,
            // where serializing each into a string of its own was a tenth of a sealed plan.
            SqlValueRef::Text(t) if t.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') => {
                out.push('"');
                out.push_str(t);
                out.push('"');
            }
            // Serializing a string cannot fail.
            SqlValueRef::Text(t) => out.push_str(&serde_json::to_string(t).unwrap_or_default()),
            SqlValueRef::Null | SqlValueRef::Real(_) | SqlValueRef::Blob(_) => out.push_str("null"),
        }
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_json_whatever_their_integers_and_texts() {
        let texts = ["", "plain", "q\"uote", "back\\slash", "line\nfeed", "\u{1}", "ünï", "\u{7f}"];
        let mut values: Vec<SqlValue> =
            [0, 7, -7, 10, -10, i64::MAX, i64::MIN, 1_000_000_007].into_iter().map(SqlValue::Integer).collect();
        values.extend(texts.iter().map(|t| SqlValue::Text((*t).to_owned())));
        values.push(SqlValue::Null);
        let mut out = String::from("[");
        push_json_row(&mut out, values.iter().map(SqlValue::as_ref));
        push_json_row(&mut out, values[..1].iter().map(SqlValue::as_ref));
        out.push(']');
        let rows: Vec<Vec<serde_json::Value>> = serde_json::from_str(&out).expect("JSON");
        let expected: Vec<serde_json::Value> = values
            .iter()
            .map(|v| match v {
                SqlValue::Integer(n) => (*n).into(),
                SqlValue::Text(t) => t.clone().into(),
                _ => serde_json::Value::Null,
            })
            .collect();
        assert_eq!(rows, [expected, vec![0.into()]]);
    }

    #[test]
    fn a_sealed_run_stores_each_row_as_its_single_row_statement_would() {
        // The run writes its rows' JSON without building their parameters: each row must still
        // be the clear key, the placeholders, an envelope of the row's values bound to its key,
        // and the checksum of exactly that; the sum parameter must add those checksums up.
        let keys = session_core::Keyring::new(session_core::SealingKey::from_bytes([7; 32]));
        let seal = crate::open_seal("t", None, Some(&keys)).expect("seal").expect("sealed").session("s");
        let mut odd = Peer::new(-5, session_core::PeerKind::Broadcast, i64::MIN);
        odd.usernames = vec!["a\"b".into(), "ünï".into()];
        odd.phone = Some("+1 555\\0100".into());
        let peers =
            [Peer::new(5, session_core::PeerKind::User, 9), odd, Peer::new(i64::MAX, session_core::PeerKind::Bot, -1)];
        let plan = upsert_run(&peers, true, Some(&seal)).expect("plan");
        let [sum, upsert] = &plan[..] else { panic!("{plan:?}") };
        assert_eq!(upsert.sql, UPSERT_PEERS_BATCH_SEALED);
        let Some(SqlValue::Text(json)) = upsert.params.first() else { panic!("{upsert:?}") };
        let rows: Vec<Vec<serde_json::Value>> = serde_json::from_str(json).expect("JSON");
        assert_eq!(rows.len(), 3);
        let mut total = 0u32;
        for row in &rows {
            let (class, id) = (row[0].as_i64().expect("class"), row[1].as_i64().expect("id"));
            let peer = peers.iter().find(|p| p.id == id).expect("a peer of the run");
            let values = peer_values(peer);
            assert_eq!(values[..2], [int(class), int(id)]);
            let text = row[7].as_str().expect("sealed text");
            let clear = [SqlValueRef::Integer(class), SqlValueRef::Integer(id)];
            let mut stored: Vec<SqlValueRef<'_>> = clear.to_vec();
            stored.extend(Table::Peers.placeholders().iter().map(SqlValue::as_ref));
            stored.push(SqlValueRef::Text(text));
            let crc = row[8].as_i64().expect("crc");
            assert_eq!(crc, crate::checksum::row_crc(Table::Peers, &stored), "{row:?}");
            total = total.wrapping_add(u32::try_from(crc).expect("u32"));
            let opened = seal.open_row("t", Table::Peers, &clear, text).expect("opens");
            let opened = crate::seal::decode_values(&opened, 5).expect("values");
            assert_eq!(opened, values[2..].iter().map(SqlValue::as_ref).collect::<Vec<_>>());
            // Bound to its key: under another row's key it does not open.
            let other = [SqlValueRef::Integer(class), SqlValueRef::Integer(id ^ 1)];
            assert!(seal.open_row("t", Table::Peers, &other, text).is_err());
        }
        assert_eq!(sum.params.get(1), Some(&int(total)), "{sum:?}");
    }

    #[test]
    fn the_sealed_upsert_writes_the_placeholders_a_sealed_peer_row_is_stored_with() {
        // The statement writes them as literals, and the rows' checksum covers them: were the
        // two to drift apart, every sealed peer would load as damaged.
        assert_eq!(
            Table::Peers.placeholders(),
            [SqlValue::Integer(0), SqlValue::Integer(0), SqlValue::Integer(0), SqlValue::Null, SqlValue::Null]
        );
        assert!(UPSERT_PEERS_BATCH_SEALED.contains("json_extract(value, '$[1]'), 0, 0, 0, NULL, NULL, json_extract"));
        // The columns the literals stand for sit, in the rows, where the placeholders are.
        let keys = session_core::Keyring::new(session_core::SealingKey::from_bytes([7; 32]));
        let seal = crate::open_seal("t", None, Some(&keys)).expect("seal").expect("sealed").session("s");
        let peer = Peer::new(5, session_core::PeerKind::User, 9);
        let rows = upsert_run([&peer], true, Some(&seal)).expect("plan");
        let Some(SqlValue::Text(json)) = rows.last().and_then(|st| st.params.first()) else { panic!("{rows:?}") };
        let rows: Vec<Vec<serde_json::Value>> = serde_json::from_str(json).expect("JSON");
        assert_eq!(rows[0][2..7], [0.into(), 0.into(), 0.into(), serde_json::Value::Null, serde_json::Value::Null]);
        assert!(rows[0][7].is_string() && rows[0][8].is_i64(), "{:?}", rows[0]);
    }
}
