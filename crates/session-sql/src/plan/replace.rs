//! The plans that replace whole tables: a full save, the compaction of the peer cache into
//! chunks, and a delete.

use session_core::{PeerCache, SessionData};

use super::persist::min_context_statements;
use super::*;
use crate::checksum::sum_of;
use crate::chunks;

/// The statements that replace whatever `session` holds with `data`. Run them in one
/// transaction.
pub fn save_plan(session: SessionId, data: &SessionData) -> impl Iterator<Item = Statement> + '_ {
    let dcs: Vec<Statement> = data.dcs.values().map(|dc| Statement::new(INSERT_DC, dc_params(dc))).collect();
    let channels: Vec<Statement> = data
        .updates
        .channels
        .iter()
        .map(|(id, pts)| Statement::new(INSERT_CHANNEL, channel_params(*id, *pts)))
        .collect();
    let chunks: Vec<Statement> = chunk_statements(&data.peers).collect();
    let contexts: Vec<Statement> = min_context_statements(&data.min_contexts).collect();
    let mut params = session_params(data);
    params.extend([sum_of(&dcs), sum_of(&channels), sum_of(&chunks), int(0), int(0), sum_of(&contexts)]);
    clear_all()
        .chain(std::iter::once(Statement::new(INSERT_SESSION, params)))
        .chain(dcs)
        .chain(channels)
        .chain(chunks)
        .chain(contexts)
        .map(move |st| st.in_session(session))
}

/// The statements that write `peers` as `peer_chunks` rows from position 0.
fn chunk_statements(peers: &PeerCache) -> impl Iterator<Item = Statement> {
    chunks::encode(peers).enumerate().map(|(pos, chunk)| {
        let pos = i64::try_from(pos).unwrap_or(i64::MAX);
        let count = i64::try_from(chunk.count).unwrap_or(i64::MAX);
        let (lo, hi) = (chunk.first, chunk.last);
        Statement::new(
            INSERT_CHUNK,
            with_crc(
                Table::PeerChunks,
                vec![
                    int(pos),
                    int(count),
                    int(class_code(lo.class)),
                    int(lo.id),
                    int(class_code(hi.class)),
                    int(hi.id),
                    SqlValue::Blob(chunk.bytes),
                ],
            ),
        )
    })
}

/// The statements that fold the peer cache into chunks: every `peers` and `peer_removals` row
/// is deleted and `peers` (the cache as [`SessionRows::finish_peers`](crate::SessionRows::finish_peers) read it, inside the same
/// transaction) is written as chunks. Only a driver that is the database's one writer may run
/// it (another client's row written between the read and this would be lost).
pub fn compact_plan(session: SessionId, peers: &PeerCache) -> impl Iterator<Item = Statement> + '_ {
    let chunks: Vec<Statement> = chunk_statements(peers).collect();
    let sums = Statement::new(SET_PEER_SUMS, vec![sum_of(&chunks)]);
    [CLEAR_PEER_CHUNKS, CLEAR_PEERS, CLEAR_PEER_REMOVALS]
        .into_iter()
        .map(|sql| Statement::new(sql, Vec::new()))
        .chain(std::iter::once(sums))
        .chain(chunks)
        .map(move |st| st.in_session(session))
}

/// The statements that forget `session` (a later load finds none; other sessions keep theirs).
pub fn delete_plan(session: SessionId) -> impl Iterator<Item = Statement> {
    clear_all().map(move |st| st.in_session(session))
}
