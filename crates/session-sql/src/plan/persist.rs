//! The persist plan: a change set written over what is stored, O(size of the changes), every
//! write an upsert or a keyed delete with the statement that moves its table's sum.

use session_core::{Change, DcFlags, DcKey, MinPeerContext, PeerKey, SessionData, SessionError, UpdateStateChange};

use super::*;
use crate::checksum::sum_of;

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
fn change_statements(change: &Change, known: Known<'_>, full: &SessionData) -> Vec<Statement> {
    match change {
        // The session row is written once, whole, at the end of the plan.
        Change::SetHomeDc(_)
        | Change::SetUser(_)
        | Change::SetTestMode(_)
        | Change::SetApiId(_)
        | Change::SetFutureAuthToken(_) => Vec::new(),
        Change::SetDc(dc) => summed(SUM_DC, 2, UPSERT_DC, dc_params(dc)).into(),
        // `SessionData::apply(SetAuthKey)` puts the key on the DC's main option (IPv4, else IPv6)
        // or makes one at an address that depends on the test mode: the options as `full`
        // holds them are what it left.
        Change::SetAuthKey { dc_id, .. } => [DcKey::main(*dc_id), DcKey { id: *dc_id, flags: DcFlags::IPV6 }]
            .iter()
            .filter_map(|k| full.dcs.get(k))
            .flat_map(|dc| summed(SUM_DC, 2, UPSERT_DC, dc_params(dc)))
            .collect(),
        // The exact key, as `apply` removes it: a key with non-identity bits names no stored option.
        Change::RemoveDc(key) => unsummed(SUM_DC, REMOVE_DC, vec![int(key.id), int(key.flags.0)]).into(),
        Change::UpdateState(u) => match u {
            UpdateStateChange::All(state) => {
                let inserts: Vec<Statement> = state
                    .channels
                    .iter()
                    .map(|(id, pts)| Statement::new(INSERT_CHANNEL, channel_params(*id, *pts)))
                    .collect();
                let mut out = vec![
                    Statement::new(CLEAR_CHANNELS, Vec::new()),
                    Statement::new(SET_CHANNELS_SUM, vec![sum_of(&inserts)]),
                ];
                out.extend(inserts);
                out
            }
            UpdateStateChange::Primary { .. } | UpdateStateChange::Secondary { .. } => Vec::new(),
            UpdateStateChange::Channel { id, pts } => {
                summed(SUM_CHANNEL, 1, UPSERT_CHANNEL, channel_params(*id, *pts)).into()
            }
            UpdateStateChange::RemoveChannel { id } => unsummed(SUM_CHANNEL, REMOVE_CHANNEL, vec![int(*id)]).into(),
            // Refused by `persist_plan` before any statement is made.
            _ => Vec::new(),
        },
        Change::UpsertPeer(peer) if known.no_removals => summed(SUM_PEER, 2, UPSERT_PEER, peer_params(peer)).into(),
        Change::UpsertPeer(peer) => {
            let key = vec![int(class_code(peer.kind.class())), int(peer.id)];
            let mut out: Vec<Statement> = unsummed(SUM_REMOVAL, DELETE_REMOVAL, key).into();
            out.extend(summed(SUM_PEER, 2, UPSERT_PEER, peer_params(peer)));
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
            let inserts: Vec<Statement> = min_context_statements(contexts).collect();
            let mut out = vec![
                Statement::new(CLEAR_MIN_CONTEXTS, Vec::new()),
                Statement::new(SET_CONTEXTS_SUM, vec![sum_of(&inserts)]),
            ];
            out.extend(inserts);
            out
        }
        Change::LogOut => clear_all().chain(std::iter::once(ensure_session())).collect(),
        _ => Vec::new(),
    }
}

pub(super) fn min_context_statements(contexts: &[MinPeerContext]) -> impl Iterator<Item = Statement> + '_ {
    contexts.iter().enumerate().map(|(pos, c)| {
        Statement::new(
            INSERT_MIN_CONTEXT,
            with_crc(
                Table::MinContexts,
                vec![int(i64::try_from(pos).unwrap_or(i64::MAX)), int(c.user_id), int(c.peer_id), int(c.msg_id)],
            ),
        )
    })
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
/// changes), every write an upsert or a keyed delete. Run them in one transaction. `full` is
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
pub fn persist_plan<'a>(
    changes: &'a [Change],
    full: &'a SessionData,
) -> Result<impl Iterator<Item = Statement> + 'a, SessionError> {
    persist_plan_known(changes, full, Known::default())
}

/// [`persist_plan`] for a driver that knows more of the stored rows (see [`Known`]); with
/// `Known::default()` it is [`persist_plan`].
pub fn persist_plan_known<'a>(
    changes: &'a [Change],
    full: &'a SessionData,
    known: Known<'a>,
) -> Result<impl Iterator<Item = Statement> + 'a, SessionError> {
    if let Some(unknown) = changes.iter().find(|c| !is_known(c)) {
        return Err(SessionError::invalid(
            "change",
            format!("this build of session-sql cannot store {unknown:?}; upgrade it to match session-core"),
        ));
    }
    // A log out deletes the session row and makes it again; the removals it clears stay clear
    // for the changes after it.
    let ensure = (!known.session_row).then(ensure_session);
    let session = changes.iter().any(touches_session).then(|| Statement::new(WRITE_SESSION, session_params(full)));
    let mut known = known;
    Ok(ensure
        .into_iter()
        .chain(changes.iter().flat_map(move |c| {
            let out = change_statements(c, known, full);
            match c {
                // Nothing is chunked after a log out.
                Change::LogOut => (known.no_removals, known.chunk_ranges) = (true, Some(&[][..])),
                Change::RemovePeer(key) if may_be_chunked(known.chunk_ranges, *key) => known.no_removals = false,
                _ => {}
            }
            out
        }))
        .chain(session))
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
            persist_plan_known(changes, &full, known)
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
        let plan: Vec<Statement> = persist_plan(&changes, &full).expect("plan").collect();
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
        let values: Vec<SqlValueRef<'_>> = writes[0].params[..10].iter().map(SqlValue::as_ref).collect();
        assert_eq!(writes[0].params[10], SqlValue::Integer(row_crc(Table::Session, &values)));
        assert_eq!(values[0], SqlValueRef::Integer(2));
        assert_eq!(values[6], SqlValueRef::Integer(9));
    }
}
