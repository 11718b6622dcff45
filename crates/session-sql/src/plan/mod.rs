//! The statements that write a session: the SQL texts of every write, the parameters of each
//! table's rows, and the plans built from them ([`persist`]: a change set over what is stored;
//! [`replace`]: a full save, a compaction of the peer cache, a delete).

pub(crate) mod batch;
mod persist;
mod replace;

use session_core::{DcOption, Peer, PeerKey, SessionData, SessionError};

use crate::checksum::{crc_param, with_crc};
use crate::codes::{class_code, kind_code};
use crate::seal::Sealer;
use crate::sessions::SessionId;
use crate::table::Table;
use crate::value::{int, key_blob, opt_blob, opt_int, SqlValue, Statement};

pub use persist::{may_be_chunked, persist_plan, persist_plan_known, persist_plan_sealed, Known, StoredRows};
pub use replace::{compact_plan, compact_plan_sealed, delete_plan, save_plan, save_plan_sealed};

/// How a plan writes its rows: `None` in clear, `Some` sealed (see [`crate::seal`]).
pub(crate) type Seal<'a> = Option<&'a Sealer>;

/// The SQL text of a write: `plain`, or `sealed` (the same with the `sealed` column before `crc`).
pub(crate) fn pick(seal: Seal<'_>, plain: &'static str, sealed: &'static str) -> &'static str {
    if seal.is_some() {
        sealed
    } else {
        plain
    }
}

/// The parameters of a row of `table` with `values` as stored: sealed when `seal` says so,
/// with the checksum of what is stored last.
pub(crate) fn stored(table: Table, values: Vec<SqlValue>, seal: Seal<'_>) -> Result<Vec<SqlValue>, SessionError> {
    Ok(with_crc(
        table,
        match seal {
            Some(s) => s.seal_row(table, values)?,
            None => values,
        },
    ))
}

// The writes of a sealed database: each plain write with `sealed` before `crc`.
pub(crate) const ENSURE_SESSION_SEALED: &str =
    "INSERT INTO session (sid, sealed, crc) VALUES (?1, ?2, ?3) ON CONFLICT (sid) DO NOTHING";
pub(crate) const WRITE_SESSION_SEALED: &str = "UPDATE session SET home_dc = ?2, user_id = ?3, user_bot = ?4, \
     test_mode = ?5, api_id = ?6, pts = ?7, qts = ?8, date = ?9, seq = ?10, future_auth_token = ?11, sealed = ?12, \
     crc = ?13 WHERE sid = ?1";
pub(crate) const UPSERT_DC_SEALED: &str =
    "INSERT INTO dcs (sid, id, key_flags, flags, ip, port, auth_key, server_salt, time_offset, sealed, crc) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
     ON CONFLICT (sid, id, key_flags) DO UPDATE SET flags = excluded.flags, ip = excluded.ip, \
     port = excluded.port, auth_key = excluded.auth_key, server_salt = excluded.server_salt, \
     time_offset = excluded.time_offset, sealed = excluded.sealed, crc = excluded.crc";
pub(crate) const INSERT_DC_SEALED: &str =
    "INSERT INTO dcs (sid, id, key_flags, flags, ip, port, auth_key, server_salt, time_offset, sealed, crc) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
pub(crate) const UPSERT_CHANNEL_SEALED: &str = "INSERT INTO channels (sid, id, pts, sealed, crc) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (sid, id) DO UPDATE SET pts = excluded.pts, sealed = excluded.sealed, \
     crc = excluded.crc";
pub(crate) const INSERT_CHANNEL_SEALED: &str =
    "INSERT INTO channels (sid, id, pts, sealed, crc) VALUES (?1, ?2, ?3, ?4, ?5)";
pub(crate) const UPSERT_PEER_SEALED: &str =
    "INSERT INTO peers (sid, class, id, kind, access_hash, min, usernames, phone, sealed, crc) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
     ON CONFLICT (sid, class, id) DO UPDATE SET kind = excluded.kind, access_hash = excluded.access_hash, \
     min = excluded.min, usernames = excluded.usernames, phone = excluded.phone, sealed = excluded.sealed, \
     crc = excluded.crc";
pub(crate) const INSERT_CHUNK_SEALED: &str =
    "INSERT INTO peer_chunks (sid, pos, peers, lo_class, lo_id, hi_class, hi_id, data, sealed, crc) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
pub(crate) const INSERT_MIN_CONTEXT_SEALED: &str =
    "INSERT INTO min_contexts (sid, pos, user_id, peer_id, msg_id, sealed, crc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
pub(crate) const INSERT_SESSION_SEALED: &str = "INSERT INTO session \
     (sid, home_dc, user_id, user_bot, test_mode, api_id, pts, qts, date, seq, future_auth_token, sealed, crc, \
     dcs_sum, channels_sum, chunks_sum, peers_sum, removals_sum, contexts_sum) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)";

// Every statement of a plan takes the session's id as `?1` (prepended to its parameters by
// `in_session` once the plan is built); the row's own parameters follow from `?2`.
// The row a persist makes when there is none: the columns' defaults, with their checksum.
pub(crate) const ENSURE_SESSION: &str = "INSERT INTO session (sid, crc) VALUES (?1, ?2) ON CONFLICT (sid) DO NOTHING";
// The whole row (but the sums, which the plans keep), as the changes left it.
pub(crate) const WRITE_SESSION: &str = "UPDATE session SET home_dc = ?2, user_id = ?3, user_bot = ?4, test_mode = ?5, \
     api_id = ?6, pts = ?7, qts = ?8, date = ?9, seq = ?10, future_auth_token = ?11, crc = ?12 WHERE sid = ?1";
pub(crate) const UPSERT_DC: &str =
    "INSERT INTO dcs (sid, id, key_flags, flags, ip, port, auth_key, server_salt, time_offset, crc) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
     ON CONFLICT (sid, id, key_flags) DO UPDATE SET flags = excluded.flags, ip = excluded.ip, \
     port = excluded.port, auth_key = excluded.auth_key, server_salt = excluded.server_salt, \
     time_offset = excluded.time_offset, crc = excluded.crc";
pub(crate) const INSERT_DC: &str =
    "INSERT INTO dcs (sid, id, key_flags, flags, ip, port, auth_key, server_salt, time_offset, crc) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
pub(crate) const REMOVE_DC: &str = "DELETE FROM dcs WHERE sid = ?1 AND id = ?2 AND key_flags = ?3";
// Each moves a table's sum from the stored row's `crc` (none: 0) to the new one (?last; 0 for a
// delete). Run before the statement that writes the row.
pub(crate) const SUM_DC: &str = "UPDATE session SET dcs_sum = (dcs_sum - coalesce((SELECT crc FROM dcs \
     WHERE sid = ?1 AND id = ?2 AND key_flags = ?3), 0) + ?4 + 4294967296) % 4294967296 WHERE sid = ?1";
pub(crate) const SUM_CHANNEL: &str =
    "UPDATE session SET channels_sum = (channels_sum - coalesce((SELECT crc FROM channels \
     WHERE sid = ?1 AND id = ?2), 0) + ?3 + 4294967296) % 4294967296 WHERE sid = ?1";
pub(crate) const SUM_PEER: &str = "UPDATE session SET peers_sum = (peers_sum - coalesce((SELECT crc FROM peers \
     WHERE sid = ?1 AND class = ?2 AND id = ?3), 0) + ?4 + 4294967296) % 4294967296 WHERE sid = ?1";
pub(crate) const SUM_REMOVAL: &str =
    "UPDATE session SET removals_sum = (removals_sum - coalesce((SELECT crc FROM peer_removals \
     WHERE sid = ?1 AND class = ?2 AND id = ?3), 0) + ?4 + 4294967296) % 4294967296 WHERE sid = ?1";
// After a table is cleared and written whole: its sum, computed from the rows written.
pub(crate) const SET_CHANNELS_SUM: &str = "UPDATE session SET channels_sum = ?2 WHERE sid = ?1";
pub(crate) const SET_CONTEXTS_SUM: &str = "UPDATE session SET contexts_sum = ?2 WHERE sid = ?1";
pub(crate) const SET_PEER_SUMS: &str =
    "UPDATE session SET chunks_sum = ?2, peers_sum = 0, removals_sum = 0 WHERE sid = ?1";
pub(crate) const UPSERT_CHANNEL: &str = "INSERT INTO channels (sid, id, pts, crc) VALUES (?1, ?2, ?3, ?4) \
     ON CONFLICT (sid, id) DO UPDATE SET pts = excluded.pts, crc = excluded.crc";
pub(crate) const INSERT_CHANNEL: &str = "INSERT INTO channels (sid, id, pts, crc) VALUES (?1, ?2, ?3, ?4)";
pub(crate) const REMOVE_CHANNEL: &str = "DELETE FROM channels WHERE sid = ?1 AND id = ?2";
pub(crate) const UPSERT_PEER: &str =
    "INSERT INTO peers (sid, class, id, kind, access_hash, min, usernames, phone, crc) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
     ON CONFLICT (sid, class, id) DO UPDATE SET kind = excluded.kind, access_hash = excluded.access_hash, \
     min = excluded.min, usernames = excluded.usernames, phone = excluded.phone, crc = excluded.crc";
pub(crate) const REMOVE_PEER: &str = "DELETE FROM peers WHERE sid = ?1 AND class = ?2 AND id = ?3";
pub(crate) const INSERT_REMOVAL: &str = "INSERT INTO peer_removals (sid, class, id, crc) VALUES (?1, ?2, ?3, ?4) \
     ON CONFLICT (sid, class, id) DO UPDATE SET crc = excluded.crc";
pub(crate) const DELETE_REMOVAL: &str = "DELETE FROM peer_removals WHERE sid = ?1 AND class = ?2 AND id = ?3";
pub(crate) const INSERT_CHUNK: &str =
    "INSERT INTO peer_chunks (sid, pos, peers, lo_class, lo_id, hi_class, hi_id, data, crc) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
pub(crate) const INSERT_MIN_CONTEXT: &str =
    "INSERT INTO min_contexts (sid, pos, user_id, peer_id, msg_id, crc) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
pub(crate) const INSERT_SESSION: &str = "INSERT INTO session \
     (sid, home_dc, user_id, user_bot, test_mode, api_id, pts, qts, date, seq, future_auth_token, crc, \
     dcs_sum, channels_sum, chunks_sum, peers_sum, removals_sum, contexts_sum) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";
pub(crate) const CLEAR_SESSION: &str = "DELETE FROM session WHERE sid = ?1";
pub(crate) const CLEAR_DCS: &str = "DELETE FROM dcs WHERE sid = ?1";
pub(crate) const CLEAR_CHANNELS: &str = "DELETE FROM channels WHERE sid = ?1";
pub(crate) const CLEAR_PEERS: &str = "DELETE FROM peers WHERE sid = ?1";
pub(crate) const CLEAR_PEER_CHUNKS: &str = "DELETE FROM peer_chunks WHERE sid = ?1";
pub(crate) const CLEAR_PEER_REMOVALS: &str = "DELETE FROM peer_removals WHERE sid = ?1";
pub(crate) const CLEAR_MIN_CONTEXTS: &str = "DELETE FROM min_contexts WHERE sid = ?1";

/// The statements that make `sql` (with `params`, crc last) write a row, preceded by the one
/// that moves its table's sum (`sum_sql`, keyed by the first `keys` parameters).
pub(crate) fn summed(sum_sql: &'static str, keys: usize, sql: &'static str, params: Vec<SqlValue>) -> [Statement; 2] {
    let mut sum = params.get(..keys).unwrap_or_default().to_vec();
    sum.push(crc_param(&params));
    [Statement::new(sum_sql, sum), Statement::new(sql, params)]
}

/// The statements that delete a row keyed by `key`, preceded by the one that takes its
/// checksum out of its table's sum.
pub(crate) fn unsummed(sum_sql: &'static str, sql: &'static str, key: Vec<SqlValue>) -> [Statement; 2] {
    let mut sum = key.clone();
    sum.push(SqlValue::Integer(0));
    [Statement::new(sum_sql, sum), Statement::new(sql, key)]
}

pub(crate) fn usernames_value(names: &[String]) -> SqlValue {
    if names.is_empty() {
        SqlValue::Null
    } else {
        // Serializing a list of strings cannot fail.
        SqlValue::Text(serde_json::to_string(names).unwrap_or_default())
    }
}

#[cfg(test)]
pub(crate) fn peer_params(peer: &Peer) -> Vec<SqlValue> {
    with_crc(Table::Peers, peer_values(peer))
}

pub(crate) fn peer_values(peer: &Peer) -> Vec<SqlValue> {
    vec![
        int(class_code(peer.kind.class())),
        int(peer.id),
        int(kind_code(peer.kind)),
        int(peer.access_hash),
        int(peer.min),
        usernames_value(&peer.usernames),
        peer.phone.clone().map_or(SqlValue::Null, SqlValue::Text),
    ]
}

pub(crate) fn removal_params(key: PeerKey) -> Vec<SqlValue> {
    with_crc(Table::PeerRemovals, vec![int(class_code(key.class)), int(key.id)])
}

pub(crate) fn channel_params(id: i64, pts: i32, seal: Seal<'_>) -> Result<Vec<SqlValue>, SessionError> {
    stored(Table::Channels, vec![int(id), int(pts)], seal)
}

/// The session row's values (without the sums), as stored, with their checksum.
pub(crate) fn session_params(data: &SessionData, seal: Seal<'_>) -> Result<Vec<SqlValue>, SessionError> {
    stored(
        Table::Session,
        vec![
            int(data.home_dc),
            opt_int(data.user.map(|u| u.id)),
            opt_int(data.user.map(|u| i64::from(u.bot))),
            int(data.test_mode),
            opt_int(data.api_id),
            int(data.updates.pts),
            int(data.updates.qts),
            int(data.updates.date),
            int(data.updates.seq),
            opt_blob(data.future_auth_token.as_deref()),
        ],
        seal,
    )
}

/// The statement that makes the session row (every column at its default) unless it exists.
pub(crate) fn ensure_session(seal: Seal<'_>) -> Result<Statement, SessionError> {
    let mut params = session_params(&SessionData::default(), seal)?;
    Ok(match seal {
        // The placeholders are the columns' defaults: only `sealed` and the checksum are bound.
        Some(_) => Statement::new(ENSURE_SESSION_SEALED, params.split_off(params.len().saturating_sub(2))),
        None => Statement::new(ENSURE_SESSION, params.split_off(params.len().saturating_sub(1))),
    })
}

/// The statement that writes the session row whole, as `data` holds it.
pub(crate) fn write_session(data: &SessionData, seal: Seal<'_>) -> Result<Statement, SessionError> {
    Ok(Statement::new(pick(seal, WRITE_SESSION, WRITE_SESSION_SEALED), session_params(data, seal)?))
}

pub(crate) fn dc_params(dc: &DcOption, seal: Seal<'_>) -> Result<Vec<SqlValue>, SessionError> {
    let key = dc.key();
    stored(
        Table::Dcs,
        vec![
            int(key.id),
            int(key.flags.0),
            int(dc.flags.0),
            SqlValue::Text(dc.addr.ip().to_string()),
            int(dc.addr.port()),
            key_blob(dc.auth_key.as_ref()),
            int(dc.server_salt),
            int(dc.time_offset),
        ],
        seal,
    )
}

pub(crate) fn clear_all() -> impl Iterator<Item = Statement> {
    [CLEAR_SESSION, CLEAR_DCS, CLEAR_CHANNELS, CLEAR_PEER_CHUNKS, CLEAR_PEERS, CLEAR_PEER_REMOVALS, CLEAR_MIN_CONTEXTS]
        .into_iter()
        .map(|sql| Statement::new(sql, Vec::new()))
}
