//! What the owner of a remote session knows of its stored rows between its own writes, so that
//! a persist sends only the statements it needs ([`session_sql::Known`]): whether the session
//! row exists, whether any removal is recorded, and the key ranges of the chunks (a removed key
//! outside all of them needs no removal row). Without it every upsert run also looks up and
//! deletes removals of its keys and every removal is recorded: a 1,000-peer flush ran three
//! statements over its keys where two do (measured on sqld: 6.5 ms of server time against
//! about 4).
//!
//! The lease makes this exact: while it is held, only this backend's writes change the
//! session's rows (any other writer is fenced out). What a write did is known when it succeeds;
//! a write that failed may or may not have committed, so the knowledge is dropped, and plans
//! fall back to [`Known::default`] (which is right whatever is stored) until the next load or
//! save.

use session_core::{Change, PeerKey, SessionData};
#[cfg(test)]
use session_sql::may_be_chunked;
use session_sql::{Known, StoredRows as Rows};

/// The stored rows as this owner left them (`None`: not known).
#[derive(Debug, Default)]
pub(crate) struct KnownRows(Option<Rows>);

impl KnownRows {
    /// What a plan may assume.
    pub(crate) fn known(&self) -> Known<'_> {
        self.0.as_ref().map_or_else(Known::default, Rows::known)
    }

    pub(crate) fn forget(&mut self) {
        self.0 = None;
    }

    /// After a load that read the whole session in one snapshot.
    pub(crate) fn loaded(&mut self, session_row: bool, removals: bool, ranges: Vec<(PeerKey, PeerKey)>) {
        self.0 = Some(Rows { session_row, removals, ranges });
    }

    /// After a full save of `data` ([`Rows::saved`]).
    pub(crate) fn saved(&mut self, data: &SessionData) {
        self.0 = Some(Rows::saved(data));
    }

    /// After a delete: nothing stored.
    pub(crate) fn deleted(&mut self) {
        self.0 = Some(Rows::default());
    }

    /// After a persist of `changes` planned with [`KnownRows::known`] succeeded: the same
    /// bookkeeping the plan made (see `session_sql::persist_plan_known`).
    pub(crate) fn persisted(&mut self, changes: &[Change]) {
        if let Some(r) = &mut self.0 {
            r.apply(changes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::{Peer, PeerKind};

    #[test]
    fn spans_cover_every_stored_key_and_nothing_past_each_class() {
        let mut data = SessionData::default();
        data.peers = [
            Peer::new(5, PeerKind::User, 1),
            Peer::new(9, PeerKind::Bot, 1),
            Peer::new(3, PeerKind::BasicGroup, 1),
            Peer::new(7, PeerKind::Broadcast, 1),
            Peer::new(8, PeerKind::Megagroup, 1),
        ]
        .into_iter()
        .collect();
        let mut known = KnownRows::default();
        known.saved(&data);
        let ranges = known.known().chunk_ranges.map(<[_]>::to_vec).unwrap_or_default();
        for key in data.peers.iter().map(|p| p.key()) {
            assert!(may_be_chunked(Some(&ranges), key), "{key:?}");
        }
        for key in [PeerKey::user(4), PeerKey::user(10), PeerKey::chat(2), PeerKey::chat(4), PeerKey::channel(9)] {
            assert!(!may_be_chunked(Some(&ranges), key), "{key:?}");
        }
        // A removal inside a span is recorded; one outside is not; a log out clears both.
        known.persisted(&[Change::RemovePeer(PeerKey::user(20))]);
        assert!(known.known().no_removals);
        known.persisted(&[Change::RemovePeer(PeerKey::user(6))]);
        assert!(!known.known().no_removals);
        known.persisted(&[Change::LogOut]);
        assert!(known.known().no_removals && known.known().chunk_ranges == Some(&[][..]));
        known.forget();
        assert!(known.known().chunk_ranges.is_none() && !known.known().no_removals && !known.known().session_row);
    }
}
