//! A run of peer upserts as one PostgreSQL statement. session-sql plans a run as two or three
//! statements ([`PeerBatch`]): the sum of the stored rows' `crc` (and of their removals'), the
//! delete of their removals, the upsert. Each reads the run's JSON parameter again and looks
//! every key up again; here one statement reads the rows once, looks each key up once (its
//! `ctid` and stored `crc`), updates the stored rows, inserts the new ones, deletes their
//! removals and moves the session's sums by exactly what it replaced. Every part runs against
//! the statement's one snapshot, so the sums are those of the rows as they were before it, as
//! the separate statements read them.
//!
//! The rows are inserted without `ON CONFLICT`: PostgreSQL inserts each row of an
//! `INSERT ... ON CONFLICT` speculatively (a second index pass per row). A key is written once
//! (the plan's rows have distinct keys, the stored ones are updated and only the others
//! inserted); a concurrent insert of the same key, which the lease rules out, would fail the
//! statement rather than be overwritten.

use session_sql::dialect::{peer_batch, PeerBatch};
use session_sql::{SqlValue, Statement};

// Each key is looked up by the primary key, never joined: the planner would hash a join over
// every row of the session's overlay (its statistics of a fast-growing table are stale), and
// `OFFSET 0` keeps it from turning the lateral lookup into such a join.
//
// The run's rows as columns (`$values`: the select list over the JSON element `value`), each
// key's stored row, the update of the stored rows and the insert of the others (columns
// `$cols`, updated by `$set`), the delete of their removals when `$removals` (then
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
            " FROM jsonb_array_elements(CAST($2 AS text)::jsonb) AS elements(value)), \
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
             % 4294967296) + $3 + 4294967296) % 4294967296",
            $removals_sum,
            " WHERE sid = $1"
        )
    };
}

macro_rules! plain {
    ($($removals:ident)?) => {
        upsert_run!(
            "CAST(value ->> 0 AS BIGINT) AS class, CAST(value ->> 1 AS BIGINT) AS id, \
             CAST(value ->> 2 AS BIGINT) AS kind, CAST(value ->> 3 AS BIGINT) AS access_hash, \
             CAST(value ->> 4 AS BIGINT) AS min, (value ->> 5) AS usernames, (value ->> 6) AS phone, \
             CAST(value ->> 7 AS BIGINT) AS crc",
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
            "CAST(value ->> 0 AS BIGINT) AS class, CAST(value ->> 1 AS BIGINT) AS id, \
             CAST(value ->> 2 AS BIGINT) AS kind, CAST(value ->> 3 AS BIGINT) AS access_hash, \
             CAST(value ->> 4 AS BIGINT) AS min, (value ->> 5) AS usernames, (value ->> 6) AS phone, \
             (value ->> 7) AS sealed, CAST(value ->> 8 AS BIGINT) AS crc",
            "class, id, kind, access_hash, min, usernames, phone, sealed, crc",
            "kind = o.kind, access_hash = o.access_hash, min = o.min, usernames = o.usernames, phone = o.phone, \
             sealed = o.sealed, crc = o.crc"
            $(, $removals)?
        )
    };
}

/// A run of plain upserts; `$1` the session, `$2` the rows, `$3` the sum of their `crc`.
pub(crate) const UPSERT_RUN: &str = plain!();
/// [`UPSERT_RUN`] that also deletes the removals of the run's keys.
pub(crate) const UPSERT_RUN_UNREMOVE: &str = plain!(removals);
/// [`UPSERT_RUN`] of sealed rows.
pub(crate) const UPSERT_RUN_SEALED: &str = sealed!();
/// [`UPSERT_RUN_UNREMOVE`] of sealed rows.
pub(crate) const UPSERT_RUN_SEALED_UNREMOVE: &str = sealed!(removals);

/// A statement to run and its parameters.
pub(crate) struct Exec<'a> {
    pub(crate) text: Text,
    pub(crate) params: Vec<&'a SqlValue>,
}

/// The text of an [`Exec`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Text {
    /// A text of session-sql's plans (SQLite's dialect), translated before it runs.
    Plan(&'static str),
    /// A text of this crate, in PostgreSQL's dialect.
    Postgres(&'static str),
}

/// `plan` with each run of peer upserts as one statement (see the module docs); every other
/// statement as it is.
pub(crate) fn fuse(plan: &[Statement]) -> Vec<Exec<'_>> {
    let mut out = Vec::with_capacity(plan.len());
    let mut rest = plan;
    while let Some(first) = rest.first() {
        let kinds: Vec<Option<PeerBatch>> = rest.iter().take(3).map(|st| peer_batch(st.sql)).collect();
        let run = match kinds.as_slice() {
            [Some(PeerBatch::SumPeers), Some(PeerBatch::Upsert), ..] => Some((UPSERT_RUN, 2)),
            [Some(PeerBatch::SumPeers), Some(PeerBatch::UpsertSealed), ..] => Some((UPSERT_RUN_SEALED, 2)),
            [Some(PeerBatch::SumPeersUnremove), Some(PeerBatch::DeleteRemovals), Some(PeerBatch::Upsert)] => {
                Some((UPSERT_RUN_UNREMOVE, 3))
            }
            [Some(PeerBatch::SumPeersUnremove), Some(PeerBatch::DeleteRemovals), Some(PeerBatch::UpsertSealed)] => {
                Some((UPSERT_RUN_SEALED_UNREMOVE, 3))
            }
            _ => None,
        };
        // The sum's parameters are the session, the keys and the new rows' sum; the upsert's
        // the session and the rows.
        let params = run.and_then(|(_, len)| match (&first.params[..], &rest[len - 1].params[..]) {
            ([sid, _, sum], [same, rows]) if sid == same => Some(vec![sid, rows, sum]),
            _ => None,
        });
        match (run, params) {
            (Some((text, len)), Some(params)) => {
                out.push(Exec { text: Text::Postgres(text), params });
                rest = &rest[len..];
            }
            _ => {
                out.push(Exec { text: Text::Plan(first.sql), params: first.params.iter().collect() });
                rest = &rest[1..];
            }
        }
    }
    out
}

/// The statements this backend runs for `plan`, in PostgreSQL's dialect, with their
/// parameters: for tests that look at how the server runs them.
#[doc(hidden)]
pub fn postgres_plan(plan: &[Statement]) -> Vec<(String, Vec<SqlValue>)> {
    fuse(plan)
        .into_iter()
        .map(|e| {
            let text = match e.text {
                Text::Plan(sql) => session_sql::dialect::Dialect::Postgres.translate(sql).into_owned(),
                Text::Postgres(text) => text.to_owned(),
            };
            (text, e.params.into_iter().cloned().collect())
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

    #[test]
    fn a_run_of_upserts_is_one_statement_and_the_rest_is_untouched() {
        let mut changes: Vec<Change> = (0..10).map(|i| Change::UpsertPeer(Peer::new(i, PeerKind::User, i))).collect();
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
            // Both runs, each one statement with the session, the rows and their sum.
            assert_eq!(upserts.len(), 2);
            for e in &upserts {
                assert_eq!(e.params.len(), 3);
                assert_eq!(e.params[0], &SqlValue::Integer(3));
                assert!(matches!(e.params[1], SqlValue::Text(rows) if rows.starts_with("[[")));
                assert!(matches!(e.params[2], SqlValue::Integer(_)));
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
}
