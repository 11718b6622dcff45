//! The plans that replace whole tables: a full save, the compaction of the peer cache into
//! chunks, and a delete.

use session_core::{PeerCache, SessionData, SessionError};

use super::persist::min_context_statements;
use super::*;
use crate::checksum::sum_of;
use crate::chunks;

/// The statements that replace whatever `session` holds with `data`. Run them in one
/// transaction.
pub fn save_plan(session: SessionId, data: &SessionData) -> impl Iterator<Item = Statement> + '_ {
    // Without a seal no statement can fail to build.
    save_plan_sealed(session, data, None).unwrap_or_default().into_iter()
}

/// [`save_plan`] for a database that may be sealed: with `seal`, every row is sealed for that
/// session (see [`crate::seal`]).
pub fn save_plan_sealed(
    session: SessionId,
    data: &SessionData,
    seal: Option<&Sealer>,
) -> Result<Vec<Statement>, SessionError> {
    let insert_dc = pick(seal, INSERT_DC, INSERT_DC_SEALED);
    let dcs = data
        .dcs
        .values()
        .map(|dc| Ok(Statement::new(insert_dc, dc_params(dc, seal)?)))
        .collect::<Result<Vec<Statement>, SessionError>>()?;
    let insert_channel = pick(seal, INSERT_CHANNEL, INSERT_CHANNEL_SEALED);
    let channels = data
        .updates
        .channels
        .iter()
        .map(|(id, pts)| Ok(Statement::new(insert_channel, channel_params(*id, *pts, seal)?)))
        .collect::<Result<Vec<Statement>, SessionError>>()?;
    let chunks = chunk_statements(&data.peers, seal)?;
    let contexts = min_context_statements(&data.min_contexts, seal)?;
    let mut params = session_params(data, seal)?;
    params.extend([sum_of(&dcs), sum_of(&channels), sum_of(&chunks), int(0), int(0), sum_of(&contexts)]);
    let insert = Statement::new(pick(seal, INSERT_SESSION, INSERT_SESSION_SEALED), params);
    Ok(clear_all()
        .chain(std::iter::once(insert))
        .chain(dcs)
        .chain(channels)
        .chain(chunks)
        .chain(contexts)
        .map(move |st| st.in_session(session))
        .collect())
}

/// The statements that write `peers` as `peer_chunks` rows from position 0.
fn chunk_statements(peers: &PeerCache, seal: Seal<'_>) -> Result<Vec<Statement>, SessionError> {
    let sql = pick(seal, INSERT_CHUNK, INSERT_CHUNK_SEALED);
    chunks::encode(peers)
        .enumerate()
        .map(|(pos, chunk)| {
            let pos = i64::try_from(pos).unwrap_or(i64::MAX);
            let count = i64::try_from(chunk.count).unwrap_or(i64::MAX);
            let (lo, hi) = (chunk.first, chunk.last);
            let values = vec![
                int(pos),
                int(count),
                int(class_code(lo.class)),
                int(lo.id),
                int(class_code(hi.class)),
                int(hi.id),
                SqlValue::Blob(chunk.bytes),
            ];
            Ok(Statement::new(sql, stored(Table::PeerChunks, values, seal)?))
        })
        .collect()
}

/// The statements that fold the peer cache into chunks: every `peers` and `peer_removals` row
/// is deleted and `peers` (the cache as [`SessionRows::finish_peers`](crate::SessionRows::finish_peers) read it, inside the same
/// transaction) is written as chunks. Only a driver that is the database's one writer may run
/// it (another client's row written between the read and this would be lost).
pub fn compact_plan(session: SessionId, peers: &PeerCache) -> impl Iterator<Item = Statement> + '_ {
    // Without a seal no statement can fail to build.
    compact_plan_sealed(session, peers, None).unwrap_or_default().into_iter()
}

/// [`compact_plan`] for a database that may be sealed (the chunks sealed for that session).
pub fn compact_plan_sealed(
    session: SessionId,
    peers: &PeerCache,
    seal: Option<&Sealer>,
) -> Result<Vec<Statement>, SessionError> {
    let chunks = chunk_statements(peers, seal)?;
    let sums = Statement::new(SET_PEER_SUMS, vec![sum_of(&chunks)]);
    Ok([CLEAR_PEER_CHUNKS, CLEAR_PEERS, CLEAR_PEER_REMOVALS]
        .into_iter()
        .map(|sql| Statement::new(sql, Vec::new()))
        .chain(std::iter::once(sums))
        .chain(chunks)
        .map(move |st| st.in_session(session))
        .collect())
}

/// The statements that forget `session` (a later load finds none; other sessions keep theirs).
pub fn delete_plan(session: SessionId) -> impl Iterator<Item = Statement> {
    clear_all().map(move |st| st.in_session(session))
}
