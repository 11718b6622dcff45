//! The persist plan: a change set written over what is stored, O(size of the changes), every
//! write an upsert or a keyed delete with the statement that moves its table's sum. A run of
//! consecutive peer upserts (or removals) is a constant number of statements (`batch`).

use session_core::{Change, DcFlags, DcKey, MinPeerContext, PeerKey, SessionData, SessionError, UpdateStateChange};

use super::batch;
use super::*;
use crate::checksum::sum_of;
use crate::seal::Sealer;

/// Whether a change writes a column of the session row (which is then written whole).
fn touches_session(change: &Change) -> bool {
    matches!(
        change,
        Change::SetHomeDc(_)
            | Change::SetUser(_)
            | Change::SetTestMode(_)
            | Change::SetApiId(_)
            | Change::SetFutureAuthToken(_)
            | Change::LogOut
            | Change::UpdateState(
                UpdateStateChange::All(_) | UpdateStateChange::Primary { .. } | UpdateStateChange::Secondary { .. }
            )
    )
}

/// The statements of one change. `full` is the session after every change of the plan: a
/// statement that cannot know a row from the change alone writes the row as `full` holds it
/// (the rows the plan writes later make the end state `full`'s either way).
fn change_statements(
    change: &Change,
    known: Known<'_>,
    full: &SessionData,
    seal: Seal<'_>,
) -> Result<Vec<Statement>, SessionError> {
    let upsert_dc = pick(seal, UPSERT_DC, UPSERT_DC_SEALED);
    Ok(match change {
        // The session row is written once, whole, at the end of the plan.
        Change::SetHomeDc(_)
        | Change::SetUser(_)
        | Change::SetTestMode(_)
        | Change::SetApiId(_)
        | Change::SetFutureAuthToken(_) => Vec::new(),
        Change::SetDc(dc) => summed(SUM_DC, 2, upsert_dc, dc_params(dc, seal)?).into(),
        // `SessionData::apply(SetAuthKey)` puts the key on the DC's main option (IPv4, else IPv6)
        // or makes one at an address that depends on the test mode: the options as `full`
        // holds them are what it left.
        Change::SetAuthKey { dc_id, .. } => {
            let mut out = Vec::new();
            for dc in
                [DcKey::main(*dc_id), DcKey { id: *dc_id, flags: DcFlags::IPV6 }].iter().filter_map(|k| full.dcs.get(k))
            {
                out.extend(summed(SUM_DC, 2, upsert_dc, dc_params(dc, seal)?));
            }
            out
        }
        // The exact key, as `apply` removes it: a key with non-identity bits names no stored option.
        Change::RemoveDc(key) => unsummed(SUM_DC, REMOVE_DC, vec![int(key.id), int(key.flags.0)]).into(),
        Change::UpdateState(u) => match u {
            UpdateStateChange::All(state) => {
                let insert = pick(seal, INSERT_CHANNEL, INSERT_CHANNEL_SEALED);
                let inserts = state
                    .channels
                    .iter()
                    .map(|(id, pts)| Ok(Statement::new(insert, channel_params(*id, *pts, seal)?)))
                    .collect::<Result<Vec<Statement>, SessionError>>()?;
                let mut out = vec![
                    Statement::new(CLEAR_CHANNELS, Vec::new()),
                    Statement::new(SET_CHANNELS_SUM, vec![sum_of(&inserts)]),
                ];
                out.extend(inserts);
                out
            }
            UpdateStateChange::Primary { .. } | UpdateStateChange::Secondary { .. } => Vec::new(),
            UpdateStateChange::Channel { id, pts } => summed(
                SUM_CHANNEL,
                1,
                pick(seal, UPSERT_CHANNEL, UPSERT_CHANNEL_SEALED),
                channel_params(*id, *pts, seal)?,
            )
            .into(),
            UpdateStateChange::RemoveChannel { id } => unsummed(SUM_CHANNEL, REMOVE_CHANNEL, vec![int(*id)]).into(),
            // Refused by `persist_plan` before any statement is made.
            _ => Vec::new(),
        },
        Change::UpsertPeer(peer) if known.no_removals => summed(
            SUM_PEER,
            2,
            pick(seal, UPSERT_PEER, UPSERT_PEER_SEALED),
            stored(Table::Peers, peer_values(peer), seal)?,
        )
        .into(),
        Change::UpsertPeer(peer) => {
            let key = vec![int(class_code(peer.kind.class())), int(peer.id)];
            let mut out: Vec<Statement> = unsummed(SUM_REMOVAL, DELETE_REMOVAL, key).into();
            out.extend(summed(
                SUM_PEER,
                2,
                pick(seal, UPSERT_PEER, UPSERT_PEER_SEALED),
                stored(Table::Peers, peer_values(peer), seal)?,
            ));
            out
        }
        Change::RemovePeer(key) => {
            let k = vec![int(class_code(key.class)), int(key.id)];
            let mut out: Vec<Statement> = unsummed(SUM_PEER, REMOVE_PEER, k).into();
            if may_be_chunked(known.chunk_ranges, *key) {
                out.extend(summed(SUM_REMOVAL, 2, INSERT_REMOVAL, removal_params(*key)));
            }
            out
        }
        Change::SetMinContexts(contexts) => {
            let inserts = min_context_statements(contexts, seal)?;
            let mut out = vec![
                Statement::new(CLEAR_MIN_CONTEXTS, Vec::new()),
                Statement::new(SET_CONTEXTS_SUM, vec![sum_of(&inserts)]),
            ];
            out.extend(inserts);
            out
        }
        Change::LogOut => clear_all().chain(std::iter::once(ensure_session(seal)?)).collect(),
        _ => Vec::new(),
    })
}

pub(super) fn min_context_statements(
    contexts: &[MinPeerContext],
    seal: Seal<'_>,
) -> Result<Vec<Statement>, SessionError> {
    let sql = pick(seal, INSERT_MIN_CONTEXT, INSERT_MIN_CONTEXT_SEALED);
    contexts
        .iter()
        .enumerate()
        .map(|(pos, c)| {
            let values =
                vec![int(i64::try_from(pos).unwrap_or(i64::MAX)), int(c.user_id), int(c.peer_id), int(c.msg_id)];
            Ok(Statement::new(sql, stored(Table::MinContexts, values, seal)?))
        })
        .collect()
}

/// What a driver knows of the stored rows, which lets [`persist_plan_known`] leave out
/// statements that would change nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Known<'a> {
    /// The `session` row exists.
    pub session_row: bool,
    /// `peer_removals` is empty (so an upsert has no removal to delete).
    pub no_removals: bool,
    /// The key ranges of the chunks ([`LOAD_CHUNK_RANGES`](crate::LOAD_CHUNK_RANGES), in order),
    /// when the driver has them: removing a key outside all of them needs no `peer_removals`
    /// row. `None`: unknown, every removal is recorded.
    pub chunk_ranges: Option<&'a [(PeerKey, PeerKey)]>,
}

/// What is stored of a session, as a driver that is its only writer (under its lease) tracks it
/// between its own writes so that every plan can be given a [`Known`]: what its committed writes
/// left is what is stored. A write that failed may or may not have committed: the driver drops
/// this and reads it again (or plans with [`Known::default`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredRows {
    /// The `session` row exists.
    pub session_row: bool,
    /// `peer_removals` may hold a row of the session.
    pub removals: bool,
    /// A superset of the chunks' key ranges, in key order, not overlapping.
    pub ranges: Vec<(PeerKey, PeerKey)>,
}

impl StoredRows {
    /// What a plan may assume.
    pub fn known(&self) -> Known<'_> {
        Known { session_row: self.session_row, no_removals: !self.removals, chunk_ranges: Some(&self.ranges) }
    }

    /// What is stored after a full save of `data` committed: the session row, no removal, and
    /// as chunk ranges each class's first and last key (a chunk never spans two classes, so
    /// these spans are a superset of the chunks' ranges: a key outside them is in no chunk).
    pub fn saved(data: &SessionData) -> StoredRows {
        let mut ranges: Vec<(PeerKey, PeerKey)> = Vec::new();
        for key in data.peers.iter().map(|p| p.key()) {
            match ranges.last_mut() {
                Some((first, last)) if first.class == key.class => *last = key,
                _ => ranges.push((key, key)),
            }
        }
        StoredRows { session_row: true, removals: false, ranges }
    }

    /// Brings this up to what is stored once a persist of `changes`, planned with
    /// [`StoredRows::known`], has committed: the plan records a removal only for a key that may
    /// be chunked, and a log out clears every row (the chunks too) and makes the session row again.
    pub fn apply(&mut self, changes: &[Change]) {
        self.session_row = true;
        for change in changes {
            match change {
                Change::LogOut => {
                    self.ranges.clear();
                    self.removals = false;
                }
                Change::RemovePeer(key) if may_be_chunked(Some(&self.ranges), *key) => self.removals = true,
                _ => {}
            }
        }
    }
}

/// Whether `key` may be in a chunk whose key range is in `chunk_ranges` (as
/// [`Known::chunk_ranges`]; `None`: unknown, so it may). Removing such a key is recorded in
/// `peer_removals`.
pub fn may_be_chunked(chunk_ranges: Option<&[(PeerKey, PeerKey)]>, key: PeerKey) -> bool {
    match chunk_ranges {
        None => true,
        Some(ranges) => {
            // Ranges are in key order and do not overlap: the first whose end is not before
            // `key` is the only one that can hold it.
            let i = ranges.partition_point(|(_, hi)| *hi < key);
            ranges.get(i).is_some_and(|(lo, _)| *lo <= key)
        }
    }
}

/// The statements that persist `changes` (in order) on top of what is stored: O(size of the
/// changes), every write an upsert or a keyed delete. Run them in one transaction. A run of two
/// or more consecutive [`Change::UpsertPeer`] (or [`Change::RemovePeer`]) is a few statements
/// whatever its length, its rows carried as one JSON text parameter (`json_each`, which SQLite
/// and libSQL have built in); only the last change of a key within a run counts. `full` is
/// the session with the changes applied (as `SessionBackend::persist` receives it): a change
/// that sets some columns of a row makes the plan write the row whole, checksum included, as
/// `full` holds it.
///
/// The first statement makes sure a session row exists, so after a persist `load` returns a
/// session (as with [`session_core::InMemoryBackend`]). A [`Change::LogOut`] deletes every row
/// and leaves an empty session.
///
/// A change this build does not know (the core's `Change` is non-exhaustive) is refused with
/// [`SessionError::Invalid`] before anything is written, rather than silently dropped.
///
/// Every statement writes the rows of `session` only (its id, [`SessionId`], is each
/// statement's `?1`).
pub fn persist_plan<'a>(
    session: SessionId,
    changes: &'a [Change],
    full: &'a SessionData,
) -> Result<impl Iterator<Item = Statement> + 'a, SessionError> {
    persist_plan_known(session, changes, full, Known::default())
}

/// [`persist_plan`] for a driver that knows more of the stored rows (see [`Known`]); with
/// `Known::default()` it is [`persist_plan`].
pub fn persist_plan_known<'a>(
    session: SessionId,
    changes: &'a [Change],
    full: &'a SessionData,
    known: Known<'a>,
) -> Result<impl Iterator<Item = Statement> + 'a, SessionError> {
    // Without a seal no statement can fail to build.
    Ok(plan(session, changes, full, known, None)?.flat_map(|part| part.unwrap_or_default()))
}

/// [`persist_plan_known`] for a database that may be sealed: with `seal`, every row it writes
/// is sealed for that session (see [`crate::seal`]); with `None` it is [`persist_plan_known`].
/// Built whole (sealing is the work a plan does; a seal can fail only for a value too long to
/// seal).
pub fn persist_plan_sealed(
    session: SessionId,
    changes: &[Change],
    full: &SessionData,
    known: Known<'_>,
    seal: Option<&Sealer>,
) -> Result<Vec<Statement>, SessionError> {
    let mut out = Vec::new();
    for part in plan(session, changes, full, known, seal)? {
        out.extend(part?);
    }
    Ok(out)
}

/// The statements of a persist, one part (a run of changes) at a time.
fn plan<'a>(
    session: SessionId,
    changes: &'a [Change],
    full: &'a SessionData,
    known: Known<'a>,
    seal: Seal<'a>,
) -> Result<impl Iterator<Item = Result<Vec<Statement>, SessionError>> + 'a, SessionError> {
    if let Some(unknown) = changes.iter().find(|c| !is_known(c)) {
        return Err(SessionError::invalid(
            "change",
            format!("this build of session-sql cannot store {unknown:?}; upgrade it to match session-core"),
        ));
    }
    // A log out deletes the session row and makes it again; the removals it clears stay clear
    // for the changes after it.
    let ensure = (!known.session_row).then(|| ensure_session(seal).map(|st| vec![st]));
    let write_row = changes.iter().any(touches_session).then(|| write_session(full, seal).map(|st| vec![st]));
    let mut known = known;
    let mut rest = changes;
    // Built one run at a time, as the driver takes the statements: a plan refused above, or
    // dropped unused, costs nothing.
    let runs = std::iter::from_fn(move || {
        let first = rest.first()?;
        // A run of consecutive upserts (or removals) is one batch: its changes touch only peer
        // rows, so the order of the keys within it does not matter, only the last change of
        // each key.
        let len = rest.iter().take_while(|c| same_peer_run(first, c)).count().max(1);
        let (run, after) = rest.split_at(len);
        rest = after;
        let mut out = Vec::new();
        match first {
            Change::UpsertPeer(_) if run.len() >= batch::BATCH_MIN => {
                let peers = run.iter().filter_map(|c| match c {
                    Change::UpsertPeer(p) => Some(p),
                    _ => None,
                });
                match batch::upsert_run(peers, known.no_removals, seal) {
                    Ok(statements) => out = statements,
                    Err(e) => return Some(Err(e)),
                }
            }
            Change::RemovePeer(_) if run.len() >= batch::BATCH_MIN => {
                let keys = run.iter().filter_map(|c| match c {
                    Change::RemovePeer(k) => Some(*k),
                    _ => None,
                });
                let ranges = known.chunk_ranges;
                if batch::remove_run(keys, |k| may_be_chunked(ranges, k), &mut out) {
                    known.no_removals = false;
                }
            }
            _ => {
                for c in run {
                    match change_statements(c, known, full, seal) {
                        Ok(statements) => out.extend(statements),
                        Err(e) => return Some(Err(e)),
                    }
                    match c {
                        // Nothing is chunked after a log out.
                        Change::LogOut => (known.no_removals, known.chunk_ranges) = (true, Some(&[][..])),
                        Change::RemovePeer(key) if may_be_chunked(known.chunk_ranges, *key) => {
                            known.no_removals = false
                        }
                        _ => {}
                    }
                }
            }
        }
        Some(Ok(out))
    });
    Ok(ensure
        .into_iter()
        .chain(runs)
        .chain(write_row)
        .map(move |part| part.map(|sts| sts.into_iter().map(|st| st.in_session(session)).collect())))
}

/// Whether `c` continues a run of peer changes that `first` starts.
fn same_peer_run(first: &Change, c: &Change) -> bool {
    matches!(
        (first, c),
        (Change::UpsertPeer(_), Change::UpsertPeer(_)) | (Change::RemovePeer(_), Change::RemovePeer(_))
    )
}

fn is_known(change: &Change) -> bool {
    match change {
        Change::UpdateState(u) => matches!(
            u,
            UpdateStateChange::All(_)
                | UpdateStateChange::Primary { .. }
                | UpdateStateChange::Secondary { .. }
                | UpdateStateChange::Channel { .. }
                | UpdateStateChange::RemoveChannel { .. }
        ),
        Change::SetHomeDc(_)
        | Change::SetDc(_)
        | Change::SetAuthKey { .. }
        | Change::RemoveDc(_)
        | Change::UpsertPeer(_)
        | Change::RemovePeer(_)
        | Change::SetUser(_)
        | Change::SetTestMode(_)
        | Change::SetApiId(_)
        | Change::SetMinContexts(_)
        | Change::SetFutureAuthToken(_)
        | Change::LogOut => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::row_crc;
    use crate::table::Table;
    use crate::value::SqlValueRef;
    use session_core::{Peer, PeerKind};

    #[test]
    fn persisting_one_change_is_a_constant_number_of_keyed_statements() {
        let sqls = |changes: &[Change], known| -> Vec<&'static str> {
            let mut full = SessionData::default();
            full.apply_all(changes);
            persist_plan_known(7, changes, &full, known)
                .map(|p| p.map(|st| st.sql).filter(|sql| *sql != WRITE_SESSION && !sql.contains("_sum")).collect())
                .unwrap_or_default()
        };
        let peer = Change::UpsertPeer(Peer::new(1, PeerKind::User, 2));
        let remove = Change::RemovePeer(PeerKey::user(1));
        // Knowing nothing: ensure the session row, clear a removal, upsert.
        assert_eq!(sqls(std::slice::from_ref(&peer), Known::default()), [ENSURE_SESSION, DELETE_REMOVAL, UPSERT_PEER]);
        assert_eq!(
            sqls(std::slice::from_ref(&remove), Known::default()),
            [ENSURE_SESSION, REMOVE_PEER, INSERT_REMOVAL]
        );
        // A driver that knows the row exists and no removal is stored: one statement.
        let all = Known { session_row: true, no_removals: true, chunk_ranges: None };
        assert_eq!(sqls(std::slice::from_ref(&peer), all), [UPSERT_PEER]);
        // A removal earlier in the same plan makes the next upsert clear it again.
        assert_eq!(
            sqls(&[remove.clone(), peer.clone()], all),
            [REMOVE_PEER, INSERT_REMOVAL, DELETE_REMOVAL, UPSERT_PEER]
        );
        // After a log out nothing is stored, removals included.
        let after_logout = sqls(
            &[remove.clone(), Change::LogOut, peer.clone()],
            Known { session_row: true, no_removals: false, chunk_ranges: None },
        );
        assert_eq!(after_logout.last(), Some(&UPSERT_PEER));
        assert_ne!(after_logout[after_logout.len() - 2], DELETE_REMOVAL);
        let plan = sqls(&[Change::RemovePeer(PeerKey::user(1))], Known::default());
        assert!(plan.iter().all(|sql| !sql.starts_with("DELETE") || sql.contains("WHERE")));
        // With the chunks' key ranges known, only a key inside one needs a removal row.
        let ranges = [(PeerKey::user(0), PeerKey::user(0)), (PeerKey::user(5), PeerKey::chat(3))];
        let known = Known { session_row: true, no_removals: true, chunk_ranges: Some(&ranges) };
        for (key, recorded) in [
            (PeerKey::user(0), true),
            (PeerKey::user(1), false),
            (PeerKey::user(5), true),
            (PeerKey::user(i64::MAX), true),
            (PeerKey::chat(3), true),
            (PeerKey::chat(4), false),
            (PeerKey::channel(1), false),
        ] {
            let plan = sqls(&[Change::RemovePeer(key), peer.clone()], known);
            let expected: &[&str] = if recorded {
                &[REMOVE_PEER, INSERT_REMOVAL, DELETE_REMOVAL, UPSERT_PEER]
            } else {
                &[REMOVE_PEER, UPSERT_PEER]
            };
            assert_eq!(plan, expected, "{key:?}");
        }
    }

    #[test]
    fn every_keyed_row_write_moves_its_tables_sum_and_session_changes_write_the_row_whole() {
        let mut full = SessionData::default();
        let changes = [
            Change::SetDc(DcOption::new(2, "1.2.3.4:443".parse().expect("addr"))),
            Change::SetAuthKey { dc_id: 2, key: None },
            Change::RemoveDc(DcKey::main(4)),
            Change::UpdateState(UpdateStateChange::Channel { id: 5, pts: 6 }),
            Change::UpdateState(UpdateStateChange::RemoveChannel { id: 7 }),
            Change::UpsertPeer(Peer::new(1, PeerKind::User, 2)),
            Change::RemovePeer(PeerKey::user(3)),
            Change::SetHomeDc(2),
            Change::UpdateState(UpdateStateChange::Secondary { qts: 9 }),
        ];
        full.apply_all(&changes);
        let plan: Vec<Statement> = persist_plan(7, &changes, &full).expect("plan").collect();
        assert!(plan.iter().all(|st| st.params.first() == Some(&SqlValue::Integer(7)) && st.sql.contains("sid = ?1")
            || st.sql.contains("(sid,")));
        let keyed = [
            UPSERT_DC,
            REMOVE_DC,
            UPSERT_CHANNEL,
            REMOVE_CHANNEL,
            UPSERT_PEER,
            REMOVE_PEER,
            INSERT_REMOVAL,
            DELETE_REMOVAL,
        ];
        for (i, st) in plan.iter().enumerate() {
            if keyed.contains(&st.sql) {
                let before = plan.get(i.wrapping_sub(1)).map(|p| p.sql).unwrap_or_default();
                assert!(before.contains("_sum = ("), "{} is not preceded by its sum: {before}", st.sql);
            }
        }
        // Partial session changes become one write of the whole row, last, with its checksum.
        let writes: Vec<&Statement> = plan.iter().filter(|st| st.sql == WRITE_SESSION).collect();
        assert_eq!(writes.len(), 1);
        assert_eq!(plan.last().map(|st| st.sql), Some(WRITE_SESSION));
        let values: Vec<SqlValueRef<'_>> = writes[0].params[1..11].iter().map(SqlValue::as_ref).collect();
        assert_eq!(writes[0].params[11], SqlValue::Integer(row_crc(Table::Session, &values)));
        assert_eq!(values[0], SqlValueRef::Integer(2));
        assert_eq!(values[6], SqlValueRef::Integer(9));
    }

    fn plan_of(changes: &[Change], known: Known<'_>) -> Vec<Statement> {
        let mut full = SessionData::default();
        full.apply_all(changes);
        persist_plan_known(3, changes, &full, known)
            .expect("plan")
            .map(|mut st| {
                assert_eq!(st.params.remove(0), SqlValue::Integer(3), "{}", st.sql);
                st
            })
            .collect()
    }

    #[test]
    fn a_long_sealed_run_is_split_into_parts_a_server_takes() {
        let keys = session_core::Keyring::new(session_core::SealingKey::from_bytes([5; 32]));
        let seal = crate::open_seal("t", None, Some(&keys)).expect("seal").expect("sealed").session("s");
        let all = Known { session_row: true, no_removals: true, chunk_ranges: None };
        let n = 2 * batch::SEALED_BATCH_ROWS + 100;
        let upserts: Vec<Change> =
            (0..i64::try_from(n).unwrap_or(0)).map(|i| Change::UpsertPeer(Peer::new(i, PeerKind::User, i))).collect();
        let mut full = SessionData::default();
        full.apply_all(&upserts);
        let plan = persist_plan_sealed(3, &upserts, &full, all, Some(&seal)).expect("plan");
        let sqls: Vec<&str> = plan.iter().map(|st| st.sql).collect();
        let part = [batch::SUM_PEERS_BATCH, batch::UPSERT_PEERS_BATCH_SEALED];
        assert_eq!(sqls, [part, part, part].concat());
        let mut rows = 0;
        for st in plan.iter().filter(|st| st.sql == batch::UPSERT_PEERS_BATCH_SEALED) {
            let Some(SqlValue::Text(json)) = st.params.get(1) else { panic!("{:?}", st.params.first()) };
            assert!(json.len() < 2 << 20, "a part of {} bytes", json.len());
            rows += serde_json::from_str::<Vec<serde_json::Value>>(json).expect("JSON").len();
        }
        assert_eq!(rows, n);
    }

    #[test]
    fn a_run_of_peer_changes_is_a_constant_number_of_statements_however_long() {
        let all = Known { session_row: true, no_removals: true, chunk_ranges: None };
        let stored = Known { session_row: true, no_removals: false, chunk_ranges: None };
        for n in [2i64, 10, 1_000, 70_000] {
            let upserts: Vec<Change> = (0..n).map(|i| Change::UpsertPeer(Peer::new(i, PeerKind::User, i))).collect();
            let removals: Vec<Change> = (0..n).map(|i| Change::RemovePeer(PeerKey::user(i))).collect();
            let sqls = |plan: Vec<Statement>| plan.into_iter().map(|st| st.sql).collect::<Vec<_>>();
            assert_eq!(sqls(plan_of(&upserts, all)), [batch::SUM_PEERS_BATCH, batch::UPSERT_PEERS_BATCH], "{n}");
            assert_eq!(
                sqls(plan_of(&upserts, stored)),
                [batch::SUM_PEERS_UNREMOVE_BATCH, batch::DELETE_REMOVALS_BATCH, batch::UPSERT_PEERS_BATCH],
                "{n}"
            );
            assert_eq!(
                sqls(plan_of(&removals, all)),
                [batch::SUM_REMOVE_BATCH, batch::REMOVE_PEERS_BATCH, batch::INSERT_REMOVALS_BATCH],
                "{n}"
            );
            // Keys outside every chunk get no removal row: no insert at all.
            let none = Known { chunk_ranges: Some(&[]), ..all };
            assert_eq!(sqls(plan_of(&removals, none)), [batch::SUM_REMOVE_BATCH, batch::REMOVE_PEERS_BATCH], "{n}");
        }
        // One change keeps its one-row statements.
        let one = [Change::UpsertPeer(Peer::new(1, PeerKind::User, 1))];
        assert_eq!(plan_of(&one, all).into_iter().map(|st| st.sql).collect::<Vec<_>>(), [SUM_PEER, UPSERT_PEER]);
        // Runs are consecutive changes only: other changes split them, in order; a removal run
        // makes the next upsert run delete the removals it recorded.
        let mixed = [
            Change::UpsertPeer(Peer::new(1, PeerKind::User, 1)),
            Change::UpsertPeer(Peer::new(2, PeerKind::User, 2)),
            Change::RemovePeer(PeerKey::user(1)),
            Change::RemovePeer(PeerKey::user(2)),
            Change::SetHomeDc(2),
            Change::UpsertPeer(Peer::new(1, PeerKind::User, 3)),
            Change::UpsertPeer(Peer::new(3, PeerKind::User, 3)),
        ];
        let sqls: Vec<&str> = plan_of(&mixed, all).into_iter().map(|st| st.sql).collect();
        assert_eq!(
            sqls,
            [
                batch::SUM_PEERS_BATCH,
                batch::UPSERT_PEERS_BATCH,
                batch::SUM_REMOVE_BATCH,
                batch::REMOVE_PEERS_BATCH,
                batch::INSERT_REMOVALS_BATCH,
                batch::SUM_PEERS_UNREMOVE_BATCH,
                batch::DELETE_REMOVALS_BATCH,
                batch::UPSERT_PEERS_BATCH,
                WRITE_SESSION,
            ]
        );
    }

    #[test]
    fn a_batched_run_keeps_the_last_change_of_each_key_and_the_sum_of_its_rows() {
        let peers = [
            Peer::new(5, PeerKind::User, 1),
            Peer::new(7, PeerKind::Channel, i64::MIN).with_usernames(vec!["it's".into(), "\"q\"\u{e9}\0".into()]),
            Peer::new(5, PeerKind::User, i64::MAX).with_phone(Some("+1'2".into())),
        ];
        let changes: Vec<Change> = peers.iter().cloned().map(Change::UpsertPeer).collect();
        let all = Known { session_row: true, no_removals: true, chunk_ranges: None };
        let plan = plan_of(&changes, all);
        let [SqlValue::Text(keys), SqlValue::Integer(sum)] = plan[0].params.as_slice() else { panic!("{plan:?}") };
        let [SqlValue::Text(rows)] = plan[1].params.as_slice() else { panic!("{plan:?}") };
        let rows: Vec<Vec<serde_json::Value>> = serde_json::from_str(rows).expect("rows are JSON");
        let keys: Vec<Vec<i64>> = serde_json::from_str(keys).expect("keys are JSON");
        // One row per key (the last upsert of 5), in key order, as the one-row statements have them.
        let expected: Vec<Vec<SqlValue>> = [&peers[2], &peers[1]].into_iter().map(peer_params).collect();
        assert_eq!(keys, expected.iter().map(|p| vec![int_of(&p[0]), int_of(&p[1])]).collect::<Vec<_>>());
        assert_eq!(rows.len(), 2);
        for (row, want) in rows.iter().zip(&expected) {
            for (v, w) in row.iter().zip(want) {
                match w {
                    SqlValue::Integer(n) => assert_eq!(v.as_i64(), Some(*n)),
                    SqlValue::Text(t) => assert_eq!(v.as_str(), Some(t.as_str())),
                    SqlValue::Null => assert!(v.is_null()),
                    other => panic!("{other:?}"),
                }
            }
        }
        let crcs = expected.iter().map(|p| int_of(p.last().expect("crc"))).sum::<i64>() % (1 << 32);
        assert_eq!(*sum, crcs);
        // Removals: one row per key too.
        let removals = [Change::RemovePeer(PeerKey::user(5)), Change::RemovePeer(PeerKey::user(5))];
        let plan = plan_of(&removals, all);
        let [SqlValue::Text(keys), SqlValue::Text(recorded), SqlValue::Integer(sum)] = plan[0].params.as_slice() else {
            panic!("{plan:?}")
        };
        assert_eq!(keys, "[[0,5]]");
        let crc = int_of(removal_params(PeerKey::user(5)).last().expect("crc"));
        assert_eq!(recorded, &format!("[[0,5,{crc}]]"));
        assert_eq!(*sum, crc);
    }

    fn int_of(v: &SqlValue) -> i64 {
        match v {
            SqlValue::Integer(n) => *n,
            other => panic!("{other:?}"),
        }
    }
}
