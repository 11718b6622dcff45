//! The one SQL schema of layer-client sessions, and everything about it that does not depend on
//! a driver: migrations, the statements that persist changes or replace a session, and the
//! decoders that rebuild a [`SessionData`] from rows.
//!
//! The SQLite backend of this crate runs these statements through `rusqlite`; the libSQL backend
//! runs the same statements over its own client (Hrana over HTTP), so both store a session in
//! the same tables and a database written by one is read by the other.
//!
//! # Tables (schema version 2)
//!
//! | table | key | holds |
//! | --- | --- | --- |
//! | `session` | `id` = 0 (one row) | home DC, user, test mode, api_id, common update state, future auth token. No row: no session. |
//! | `dcs` | (`id`, `key_flags`) | one row per DC option: flags, `ip` text, `port`, `auth_key` (256 bytes or NULL), salt, time offset |
//! | `channels` | bare channel `id` | per-channel pts |
//! | `peer_chunks` | `pos` | the bulk of the peer cache: up to 4,096 peers per row in key order, packed in a checksummed blob (`data`), with their count (`peers`) and the keys of the first and last (`lo_class`, `lo_id`, `hi_class`, `hi_id`) (since version 2) |
//! | `peers` | (`class`, `id`) | peers written since the chunks were: bare id in its id space (0 user, 1 basic group, 2 channel), `kind`, `access_hash`, `min`, `usernames` (JSON array or NULL), `phone` |
//! | `peer_removals` | (`class`, `id`) | peers removed since the chunks were written (since version 2) |
//! | `min_contexts` | `pos` | the ordered "min" peer contexts |
//!
//! The peer cache is the chunks, with each `peers` row put over them (it replaces a chunked peer
//! with the same key) and each `peer_removals` key taken out. A key is never in both `peers` and
//! `peer_removals`: upserting a peer deletes its removal, removing one deletes its row (and
//! records a removal unless the driver knows the key lies outside every chunk's key range). A full
//! save writes chunks only, which makes it and a load cost a few dozen rows instead of one per
//! peer; a single cached peer costs one keyed upsert. The SQLite backend folds the `peers` and
//! `peer_removals` rows back into chunks when they grow past an eighth of the chunked peers
//! ([`compact_plan`]); the libSQL backend, where several clients may write, never does.
//!
//! Version 1 had only `peers`; its rows are read as they are (an overlay over no chunks).
//!
//! `PRAGMA user_version` holds the schema version and `PRAGMA application_id` is [`APPLICATION_ID`].
//!
//! # Driving it
//!
//! - Open: read `PRAGMA user_version`, then [`migrations_from`] gives the steps to run, each in
//!   its own transaction together with [`set_version_sql`].
//! - Persist: run [`persist_plan`] in one transaction; save: [`save_plan`]; delete: [`delete_plan`].
//! - Load: run each query of [`LOAD_QUERIES`] and hand every row to a [`SessionRows`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use session_core::{
    dc_table, AuthKey, Change, DcFlags, DcKey, DcOption, MinPeerContext, Peer, PeerCache, PeerClass, PeerKey, PeerKind,
    SelfUser, SessionData, SessionError, SortedPeers, UpdateState, UpdateStateChange,
};

use crate::chunks;

/// The schema version this build writes, and the newest it reads.
pub const SCHEMA_VERSION: u32 = 2;

/// `PRAGMA application_id` of our databases ("LYSS"), so that tools such as `file(1)` and our
/// own importer tell them from other SQLite files.
pub const APPLICATION_ID: i32 = 0x4C59_5353;

/// The migrations: entry `i` brings a database from version `i` to version `i + 1`. Each runs in
/// its own transaction, which also sets `PRAGMA user_version` to `i + 1` ([`set_version_sql`]).
pub const MIGRATIONS: &[&str] = &[
    r#"
PRAGMA application_id = 1280922451;
CREATE TABLE session (
    id                INTEGER PRIMARY KEY CHECK (id = 0),
    home_dc           INTEGER NOT NULL DEFAULT 0,
    user_id           INTEGER,
    user_bot          INTEGER,
    test_mode         INTEGER NOT NULL DEFAULT 0,
    api_id            INTEGER,
    pts               INTEGER NOT NULL DEFAULT 0,
    qts               INTEGER NOT NULL DEFAULT 0,
    date              INTEGER NOT NULL DEFAULT 0,
    seq               INTEGER NOT NULL DEFAULT 0,
    future_auth_token BLOB
);
CREATE TABLE dcs (
    id          INTEGER NOT NULL,
    key_flags   INTEGER NOT NULL,
    flags       INTEGER NOT NULL,
    ip          TEXT NOT NULL,
    port        INTEGER NOT NULL,
    auth_key    BLOB,
    server_salt INTEGER NOT NULL,
    time_offset INTEGER NOT NULL,
    PRIMARY KEY (id, key_flags)
) WITHOUT ROWID;
CREATE TABLE channels (
    id  INTEGER PRIMARY KEY,
    pts INTEGER NOT NULL
);
CREATE TABLE peers (
    class       INTEGER NOT NULL,
    id          INTEGER NOT NULL,
    kind        INTEGER NOT NULL,
    access_hash INTEGER NOT NULL,
    min         INTEGER NOT NULL,
    usernames   TEXT,
    phone       TEXT,
    PRIMARY KEY (class, id)
) WITHOUT ROWID;
CREATE TABLE min_contexts (
    pos     INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    peer_id INTEGER NOT NULL,
    msg_id  INTEGER NOT NULL
);
"#,
    r#"
CREATE TABLE peer_chunks (
    pos      INTEGER PRIMARY KEY,
    peers    INTEGER NOT NULL,
    lo_class INTEGER NOT NULL,
    lo_id    INTEGER NOT NULL,
    hi_class INTEGER NOT NULL,
    hi_id    INTEGER NOT NULL,
    data     BLOB NOT NULL
);
CREATE TABLE peer_removals (
    class INTEGER NOT NULL,
    id    INTEGER NOT NULL,
    PRIMARY KEY (class, id)
) WITHOUT ROWID;
"#,
];

/// The tables of the current schema, for telling our database from someone else's.
pub const TABLES: &[&str] = &["session", "dcs", "channels", "peer_chunks", "peers", "peer_removals", "min_contexts"];

/// The statement that records `version` as the schema version (run inside the migration's
/// transaction).
pub fn set_version_sql(version: u32) -> String {
    format!("PRAGMA user_version = {version}")
}

/// The migrations to run on a database at `current` version, with the version each one reaches.
/// A database newer than this build is refused with [`SessionError::UnsupportedVersion`].
pub fn migrations_from(current: u32) -> Result<impl Iterator<Item = (u32, &'static str)>, SessionError> {
    if current > SCHEMA_VERSION {
        return Err(SessionError::UnsupportedVersion {
            what: "session database schema",
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    let start = usize::try_from(current).unwrap_or(usize::MAX);
    Ok(MIGRATIONS.iter().enumerate().skip(start).map(|(i, sql)| (u32::try_from(i + 1).unwrap_or(u32::MAX), *sql)))
}

/// A value bound to a statement parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A float (unused by this schema; here for drivers' completeness).
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl SqlValue {
    /// The borrowed form.
    pub fn as_ref(&self) -> SqlValueRef<'_> {
        match self {
            SqlValue::Null => SqlValueRef::Null,
            SqlValue::Integer(v) => SqlValueRef::Integer(*v),
            SqlValue::Real(v) => SqlValueRef::Real(*v),
            SqlValue::Text(v) => SqlValueRef::Text(v),
            SqlValue::Blob(v) => SqlValueRef::Blob(v),
        }
    }
}

/// A value read from a row, borrowed from the driver's buffers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SqlValueRef<'a> {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A float.
    Real(f64),
    /// UTF-8 text (drivers reject text that is not UTF-8 as corrupt).
    Text(&'a str),
    /// Bytes.
    Blob(&'a [u8]),
}

/// One statement with its parameters (`?1`, `?2`, ... in order).
///
/// Statements come from a fixed set of SQL texts, so a driver can cache the prepared form by the
/// `sql` pointer or text.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    /// The SQL text.
    pub sql: &'static str,
    /// The parameters, in order.
    pub params: Vec<SqlValue>,
}

impl Statement {
    fn new(sql: &'static str, params: Vec<SqlValue>) -> Self {
        Self { sql, params }
    }
}

const ENSURE_SESSION: &str = "INSERT INTO session (id) VALUES (0) ON CONFLICT (id) DO NOTHING";
const SET_HOME_DC: &str = "UPDATE session SET home_dc = ?1 WHERE id = 0";
const SET_USER: &str = "UPDATE session SET user_id = ?1, user_bot = ?2 WHERE id = 0";
const SET_TEST_MODE: &str = "UPDATE session SET test_mode = ?1 WHERE id = 0";
const SET_API_ID: &str = "UPDATE session SET api_id = ?1 WHERE id = 0";
const SET_FUTURE_AUTH_TOKEN: &str = "UPDATE session SET future_auth_token = ?1 WHERE id = 0";
const SET_STATE: &str = "UPDATE session SET pts = ?1, qts = ?2, date = ?3, seq = ?4 WHERE id = 0";
const SET_PRIMARY: &str = "UPDATE session SET pts = ?1, date = ?2, seq = ?3 WHERE id = 0";
const SET_SECONDARY: &str = "UPDATE session SET qts = ?1 WHERE id = 0";
const UPSERT_DC: &str = "INSERT INTO dcs (id, key_flags, flags, ip, port, auth_key, server_salt, time_offset) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
     ON CONFLICT (id, key_flags) DO UPDATE SET flags = excluded.flags, ip = excluded.ip, port = excluded.port, \
     auth_key = excluded.auth_key, server_salt = excluded.server_salt, time_offset = excluded.time_offset";
const INSERT_DC: &str = "INSERT INTO dcs (id, key_flags, flags, ip, port, auth_key, server_salt, time_offset) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
const REMOVE_DC: &str = "DELETE FROM dcs WHERE id = ?1 AND key_flags = ?2";
// `SessionData::apply(SetAuthKey)`: the key goes to the DC's main option (IPv4, else IPv6); with
// neither, a new option is created at the published address, chosen by the stored test mode.
const SET_AUTH_KEY_NEW_DC: &str =
    "INSERT INTO dcs (id, key_flags, flags, ip, port, auth_key, server_salt, time_offset) \
     SELECT ?1, 0, 0, \
       CASE WHEN (SELECT test_mode FROM session WHERE id = 0) THEN ?5 ELSE ?3 END, \
       CASE WHEN (SELECT test_mode FROM session WHERE id = 0) THEN ?6 ELSE ?4 END, \
       ?2, 0, 0 \
     WHERE NOT EXISTS (SELECT 1 FROM dcs WHERE id = ?1 AND key_flags IN (0, 1))";
const SET_AUTH_KEY: &str = "UPDATE dcs SET auth_key = ?2 WHERE id = ?1 AND key_flags = \
     (SELECT MIN(key_flags) FROM dcs WHERE id = ?1 AND key_flags IN (0, 1))";
const UPSERT_CHANNEL: &str =
    "INSERT INTO channels (id, pts) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET pts = excluded.pts";
const INSERT_CHANNEL: &str = "INSERT INTO channels (id, pts) VALUES (?1, ?2)";
const REMOVE_CHANNEL: &str = "DELETE FROM channels WHERE id = ?1";
const UPSERT_PEER: &str = "INSERT INTO peers (class, id, kind, access_hash, min, usernames, phone) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
     ON CONFLICT (class, id) DO UPDATE SET kind = excluded.kind, access_hash = excluded.access_hash, \
     min = excluded.min, usernames = excluded.usernames, phone = excluded.phone";
const REMOVE_PEER: &str = "DELETE FROM peers WHERE class = ?1 AND id = ?2";
const INSERT_REMOVAL: &str = "INSERT INTO peer_removals (class, id) VALUES (?1, ?2) ON CONFLICT (class, id) DO NOTHING";
const DELETE_REMOVAL: &str = "DELETE FROM peer_removals WHERE class = ?1 AND id = ?2";
const INSERT_CHUNK: &str =
    "INSERT INTO peer_chunks (pos, peers, lo_class, lo_id, hi_class, hi_id, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const INSERT_MIN_CONTEXT: &str = "INSERT INTO min_contexts (pos, user_id, peer_id, msg_id) VALUES (?1, ?2, ?3, ?4)";
const INSERT_SESSION: &str = "INSERT INTO session \
     (id, home_dc, user_id, user_bot, test_mode, api_id, pts, qts, date, seq, future_auth_token) \
     VALUES (0, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
const CLEAR_SESSION: &str = "DELETE FROM session";
const CLEAR_DCS: &str = "DELETE FROM dcs";
const CLEAR_CHANNELS: &str = "DELETE FROM channels";
const CLEAR_PEERS: &str = "DELETE FROM peers";
const CLEAR_PEER_CHUNKS: &str = "DELETE FROM peer_chunks";
const CLEAR_PEER_REMOVALS: &str = "DELETE FROM peer_removals";
const CLEAR_MIN_CONTEXTS: &str = "DELETE FROM min_contexts";

/// The session row.
pub const LOAD_SESSION: &str = "SELECT home_dc, user_id, user_bot, test_mode, api_id, pts, qts, date, seq, \
     future_auth_token FROM session WHERE id = 0";
/// Every DC option.
pub const LOAD_DCS: &str = "SELECT id, key_flags, flags, ip, port, auth_key, server_salt, time_offset FROM dcs";
/// Every channel's pts.
pub const LOAD_CHANNELS: &str = "SELECT id, pts FROM channels";
/// The peer chunks, in order.
pub const LOAD_PEER_CHUNKS: &str = "SELECT pos, peers, data FROM peer_chunks ORDER BY pos";
/// The key range of every chunk (first and last key), in order: a driver that keeps them knows
/// which removed keys need a `peer_removals` row ([`Known::chunk_ranges`]).
pub const LOAD_CHUNK_RANGES: &str = "SELECT lo_class, lo_id, hi_class, hi_id FROM peer_chunks ORDER BY pos";
/// Every peer written since the chunks, in key order.
pub const LOAD_PEERS: &str = "SELECT class, id, kind, access_hash, min, usernames, phone FROM peers ORDER BY class, id";
/// Every peer removed since the chunks, in key order.
pub const LOAD_PEER_REMOVALS: &str = "SELECT class, id FROM peer_removals ORDER BY class, id";
/// The "min" contexts, in order.
pub const LOAD_MIN_CONTEXTS: &str = "SELECT user_id, peer_id, msg_id FROM min_contexts ORDER BY pos";

/// Which table a loaded row comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// `session`.
    Session,
    /// `dcs`.
    Dcs,
    /// `channels`.
    Channels,
    /// `peer_chunks` (since version 2).
    PeerChunks,
    /// `peers`.
    Peers,
    /// `peer_removals` (since version 2).
    PeerRemovals,
    /// `min_contexts`.
    MinContexts,
}

impl Table {
    /// The schema version that created the table.
    pub fn since(self) -> u32 {
        match self {
            Table::PeerChunks | Table::PeerRemovals => 2,
            _ => 1,
        }
    }
}

/// The queries of [`LOAD_QUERIES`] whose tables exist in a database at schema `version` (a
/// reader that does not migrate, such as a read-only inspection, may meet an older database).
pub fn load_queries(version: u32) -> impl Iterator<Item = (Table, &'static str)> {
    LOAD_QUERIES.into_iter().filter(move |(t, _)| t.since() <= version)
}

/// The queries that load a session, in the order to run them (all in one read transaction),
/// with the table each row belongs to. The peer tables come in the order [`SessionRows`] needs:
/// chunks, then the rows over them, then the removals.
pub const LOAD_QUERIES: [(Table, &str); 7] = [
    (Table::Session, LOAD_SESSION),
    (Table::Dcs, LOAD_DCS),
    (Table::Channels, LOAD_CHANNELS),
    (Table::PeerChunks, LOAD_PEER_CHUNKS),
    (Table::Peers, LOAD_PEERS),
    (Table::PeerRemovals, LOAD_PEER_REMOVALS),
    (Table::MinContexts, LOAD_MIN_CONTEXTS),
];

/// The queries that read only the peer cache, for [`SessionRows::finish_peers`].
pub const LOAD_PEER_QUERIES: [(Table, &str); 3] =
    [(Table::PeerChunks, LOAD_PEER_CHUNKS), (Table::Peers, LOAD_PEERS), (Table::PeerRemovals, LOAD_PEER_REMOVALS)];

fn int(v: impl Into<i64>) -> SqlValue {
    SqlValue::Integer(v.into())
}

fn opt_int<T: Into<i64>>(v: Option<T>) -> SqlValue {
    v.map_or(SqlValue::Null, int)
}

fn opt_blob(v: Option<&[u8]>) -> SqlValue {
    v.map_or(SqlValue::Null, |b| SqlValue::Blob(b.to_vec()))
}

fn key_blob(key: Option<&AuthKey>) -> SqlValue {
    opt_blob(key.map(|k| k.as_bytes().as_slice()))
}

/// The stored code of a peer's id space.
pub fn class_code(class: PeerClass) -> i64 {
    match class {
        PeerClass::User => 0,
        PeerClass::Chat => 1,
        PeerClass::Channel => 2,
    }
}

/// The stored code of a peer kind (stable: part of the schema).
pub fn kind_code(kind: PeerKind) -> i64 {
    match kind {
        PeerKind::User => 0,
        PeerKind::Bot => 1,
        PeerKind::BasicGroup => 2,
        PeerKind::Channel => 3,
        PeerKind::Broadcast => 4,
        PeerKind::Megagroup => 5,
        PeerKind::Gigagroup => 6,
        PeerKind::Community => 7,
        // `PeerKind` is non-exhaustive: a kind added later gets its own code with a migration;
        // until then it is stored as what its id space holds.
        _ => match kind.class() {
            PeerClass::User => 0,
            PeerClass::Chat => 2,
            PeerClass::Channel => 3,
        },
    }
}

pub(crate) fn kind_from_code(code: i64) -> Option<PeerKind> {
    Some(match code {
        0 => PeerKind::User,
        1 => PeerKind::Bot,
        2 => PeerKind::BasicGroup,
        3 => PeerKind::Channel,
        4 => PeerKind::Broadcast,
        5 => PeerKind::Megagroup,
        6 => PeerKind::Gigagroup,
        7 => PeerKind::Community,
        _ => return None,
    })
}

fn usernames_value(names: &[String]) -> SqlValue {
    if names.is_empty() {
        SqlValue::Null
    } else {
        // Serializing a list of strings cannot fail.
        SqlValue::Text(serde_json::to_string(names).unwrap_or_default())
    }
}

fn peer_params(peer: &Peer) -> Vec<SqlValue> {
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

fn dc_params(dc: &DcOption) -> Vec<SqlValue> {
    let key = dc.key();
    vec![
        int(key.id),
        int(key.flags.0),
        int(dc.flags.0),
        SqlValue::Text(dc.addr.ip().to_string()),
        int(dc.addr.port()),
        key_blob(dc.auth_key.as_ref()),
        int(dc.server_salt),
        int(dc.time_offset),
    ]
}

fn addr_or_unspecified(addr: Option<SocketAddr>) -> SocketAddr {
    addr.unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, dc_table::DEFAULT_PORT)))
}

fn clear_all() -> impl Iterator<Item = Statement> {
    [CLEAR_SESSION, CLEAR_DCS, CLEAR_CHANNELS, CLEAR_PEER_CHUNKS, CLEAR_PEERS, CLEAR_PEER_REMOVALS, CLEAR_MIN_CONTEXTS]
        .into_iter()
        .map(|sql| Statement::new(sql, Vec::new()))
}

fn change_statements(change: &Change, known: Known<'_>) -> Vec<Statement> {
    let one = |sql, params| vec![Statement::new(sql, params)];
    match change {
        Change::SetHomeDc(dc) => one(SET_HOME_DC, vec![int(*dc)]),
        Change::SetDc(dc) => one(UPSERT_DC, dc_params(dc)),
        Change::SetAuthKey { dc_id, key } => {
            let production = addr_or_unspecified(dc_table::address(*dc_id, false));
            let test = addr_or_unspecified(dc_table::address(*dc_id, true));
            let key = key_blob(key.as_ref());
            vec![
                Statement::new(
                    SET_AUTH_KEY_NEW_DC,
                    vec![
                        int(*dc_id),
                        key.clone(),
                        SqlValue::Text(production.ip().to_string()),
                        int(production.port()),
                        SqlValue::Text(test.ip().to_string()),
                        int(test.port()),
                    ],
                ),
                Statement::new(SET_AUTH_KEY, vec![int(*dc_id), key]),
            ]
        }
        // The exact key, as `apply` removes it: a key with non-identity bits names no stored option.
        Change::RemoveDc(key) => one(REMOVE_DC, vec![int(key.id), int(key.flags.0)]),
        Change::UpdateState(u) => match u {
            UpdateStateChange::All(state) => {
                let mut out = vec![
                    Statement::new(SET_STATE, vec![int(state.pts), int(state.qts), int(state.date), int(state.seq)]),
                    Statement::new(CLEAR_CHANNELS, Vec::new()),
                ];
                out.extend(
                    state.channels.iter().map(|(id, pts)| Statement::new(INSERT_CHANNEL, vec![int(*id), int(*pts)])),
                );
                out
            }
            UpdateStateChange::Primary { pts, date, seq } => one(SET_PRIMARY, vec![int(*pts), int(*date), int(*seq)]),
            UpdateStateChange::Secondary { qts } => one(SET_SECONDARY, vec![int(*qts)]),
            UpdateStateChange::Channel { id, pts } => one(UPSERT_CHANNEL, vec![int(*id), int(*pts)]),
            UpdateStateChange::RemoveChannel { id } => one(REMOVE_CHANNEL, vec![int(*id)]),
            // Refused by `persist_plan` before any statement is made.
            _ => Vec::new(),
        },
        Change::UpsertPeer(peer) if known.no_removals => one(UPSERT_PEER, peer_params(peer)),
        Change::UpsertPeer(peer) => vec![
            Statement::new(DELETE_REMOVAL, vec![int(class_code(peer.kind.class())), int(peer.id)]),
            Statement::new(UPSERT_PEER, peer_params(peer)),
        ],
        Change::RemovePeer(key) if may_be_chunked(known.chunk_ranges, *key) => {
            let k = vec![int(class_code(key.class)), int(key.id)];
            vec![Statement::new(REMOVE_PEER, k.clone()), Statement::new(INSERT_REMOVAL, k)]
        }
        Change::RemovePeer(key) => one(REMOVE_PEER, vec![int(class_code(key.class)), int(key.id)]),
        Change::SetUser(user) => {
            one(SET_USER, vec![opt_int(user.map(|u| u.id)), opt_int(user.map(|u| i64::from(u.bot)))])
        }
        Change::SetTestMode(test) => one(SET_TEST_MODE, vec![int(*test)]),
        Change::SetApiId(api_id) => one(SET_API_ID, vec![opt_int(*api_id)]),
        Change::SetMinContexts(contexts) => {
            let mut out = vec![Statement::new(CLEAR_MIN_CONTEXTS, Vec::new())];
            out.extend(min_context_statements(contexts));
            out
        }
        Change::SetFutureAuthToken(token) => one(SET_FUTURE_AUTH_TOKEN, vec![opt_blob(token.as_deref())]),
        Change::LogOut => clear_all().chain(std::iter::once(Statement::new(ENSURE_SESSION, Vec::new()))).collect(),
        _ => Vec::new(),
    }
}

fn min_context_statements(contexts: &[MinPeerContext]) -> impl Iterator<Item = Statement> + '_ {
    contexts.iter().enumerate().map(|(pos, c)| {
        Statement::new(
            INSERT_MIN_CONTEXT,
            vec![int(i64::try_from(pos).unwrap_or(i64::MAX)), int(c.user_id), int(c.peer_id), int(c.msg_id)],
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
    /// The key ranges of the chunks ([`LOAD_CHUNK_RANGES`], in order), when the driver has them:
    /// removing a key outside all of them needs no `peer_removals` row. `None`: unknown, every
    /// removal is recorded.
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
/// changes), every write an upsert or a keyed delete. Run them in one transaction.
///
/// The first statement makes sure a session row exists, so after a persist `load` returns a
/// session (as with [`session_core::InMemoryBackend`]). A [`Change::LogOut`] deletes every row
/// and leaves an empty session.
///
/// A change this build does not know (the core's `Change` is non-exhaustive) is refused with
/// [`SessionError::Invalid`] before anything is written, rather than silently dropped.
pub fn persist_plan(changes: &[Change]) -> Result<impl Iterator<Item = Statement> + '_, SessionError> {
    persist_plan_known(changes, Known::default())
}

/// [`persist_plan`] for a driver that knows more of the stored rows (see [`Known`]); with
/// `Known::default()` it is [`persist_plan`].
pub fn persist_plan_known<'a>(
    changes: &'a [Change],
    known: Known<'a>,
) -> Result<impl Iterator<Item = Statement> + 'a, SessionError> {
    if let Some(unknown) = changes.iter().find(|c| !is_known(c)) {
        return Err(SessionError::invalid(
            "change",
            format!("this build of session-sqlite cannot store {unknown:?}; upgrade it to match session-core"),
        ));
    }
    // A log out deletes the session row and makes it again; the removals it clears stay clear
    // for the changes after it.
    let ensure = (!known.session_row).then(|| Statement::new(ENSURE_SESSION, Vec::new()));
    let mut known = known;
    Ok(ensure.into_iter().chain(changes.iter().flat_map(move |c| {
        let out = change_statements(c, known);
        match c {
            // Nothing is chunked after a log out.
            Change::LogOut => (known.no_removals, known.chunk_ranges) = (true, Some(&[][..])),
            Change::RemovePeer(key) if may_be_chunked(known.chunk_ranges, *key) => known.no_removals = false,
            _ => {}
        }
        out
    })))
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

/// The statements that replace whatever is stored with `data`. Run them in one transaction.
pub fn save_plan(data: &SessionData) -> impl Iterator<Item = Statement> + '_ {
    let session = Statement::new(
        INSERT_SESSION,
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
    );
    clear_all()
        .chain(std::iter::once(session))
        .chain(data.dcs.values().map(|dc| Statement::new(INSERT_DC, dc_params(dc))))
        .chain(data.updates.channels.iter().map(|(id, pts)| Statement::new(INSERT_CHANNEL, vec![int(*id), int(*pts)])))
        .chain(chunk_statements(&data.peers))
        .chain(min_context_statements(&data.min_contexts))
}

/// The statements that write `peers` as `peer_chunks` rows from position 0.
fn chunk_statements(peers: &PeerCache) -> impl Iterator<Item = Statement> {
    chunks::encode(peers).enumerate().map(|(pos, chunk)| {
        let pos = i64::try_from(pos).unwrap_or(i64::MAX);
        let count = i64::try_from(chunk.count).unwrap_or(i64::MAX);
        let (lo, hi) = (chunk.first, chunk.last);
        Statement::new(
            INSERT_CHUNK,
            vec![
                int(pos),
                int(count),
                int(class_code(lo.class)),
                int(lo.id),
                int(class_code(hi.class)),
                int(hi.id),
                SqlValue::Blob(chunk.bytes),
            ],
        )
    })
}

/// Decodes a row of [`LOAD_CHUNK_RANGES`]: the first and last key of a chunk.
pub fn chunk_range(resource: &str, row: &[SqlValueRef<'_>]) -> Result<(PeerKey, PeerKey), SessionError> {
    let bad = || SessionError::corrupt(resource, "peer_chunks: a key range that is not two keys");
    let key = |class: SqlValueRef<'_>, id: SqlValueRef<'_>| match (class, id) {
        (SqlValueRef::Integer(c), SqlValueRef::Integer(id)) => class_from_code(c).map(|c| PeerKey::new(c, id)),
        _ => None,
    };
    match row {
        [lc, li, hc, hi] => match (key(*lc, *li), key(*hc, *hi)) {
            (Some(lo), Some(hi)) if lo <= hi => Ok((lo, hi)),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

fn class_from_code(code: i64) -> Option<PeerClass> {
    Some(match code {
        0 => PeerClass::User,
        1 => PeerClass::Chat,
        2 => PeerClass::Channel,
        _ => return None,
    })
}

/// The statements that fold the peer cache into chunks: every `peers` and `peer_removals` row
/// is deleted and `peers` (the cache as [`SessionRows::finish_peers`] read it, inside the same
/// transaction) is written as chunks. Only a driver that is the database's one writer may run
/// it (another client's row written between the read and this would be lost).
pub fn compact_plan(peers: &PeerCache) -> impl Iterator<Item = Statement> + '_ {
    [CLEAR_PEER_CHUNKS, CLEAR_PEERS, CLEAR_PEER_REMOVALS]
        .into_iter()
        .map(|sql| Statement::new(sql, Vec::new()))
        .chain(chunk_statements(peers))
}

/// The statements that forget the session (a later load finds none).
pub fn delete_plan() -> impl Iterator<Item = Statement> {
    clear_all()
}

/// Rebuilds a session from the rows of [`LOAD_QUERIES`].
///
/// Every value is checked: a wrong type, an out-of-range number, a key that is not 256 bytes or
/// an unknown code is a [`SessionError::Corrupt`] naming the table and column, never a silently
/// altered session.
#[derive(Debug)]
pub struct SessionRows {
    resource: String,
    present: bool,
    data: SessionData,
    /// The peers of `peer_chunks`.
    chunked: SortedPeers,
    /// The rows of `peers`.
    overlay: Vec<Peer>,
    removals: Vec<PeerKey>,
}

impl SessionRows {
    /// An empty builder; `resource` names the database in errors.
    pub fn new(resource: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            present: false,
            data: SessionData::default(),
            chunked: SortedPeers::default(),
            overlay: Vec::new(),
            removals: Vec::new(),
        }
    }

    /// Adds one row of `table`.
    pub fn row(&mut self, table: Table, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        match table {
            Table::Session => self.session_row(row),
            Table::Dcs => self.dc_row(row),
            Table::Channels => self.channel_row(row),
            Table::PeerChunks => self.chunk_row(row),
            Table::Peers => self.peer_row(row),
            Table::PeerRemovals => self.removal_row(row),
            Table::MinContexts => self.min_context_row(row),
        }
    }

    /// Adds a row of [`LOAD_PEER_CHUNKS`] (rows must come before those of [`LOAD_PEERS`]).
    pub fn chunk_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        let (count, data) = {
            let c = Cols::new(self, "peer_chunks", row, 3)?;
            let count = usize::try_from(c.i64(1, "peers")?).map_err(|_| c.bad("peers", "negative"))?;
            (count, c.opt_blob(2, "data")?.ok_or_else(|| c.bad("data", "NULL"))?)
        };
        chunks::decode(data, count, &mut self.chunked)
            .map_err(|reason| SessionError::corrupt(&self.resource, format!("peer_chunks.data: {reason}")))
    }

    /// Adds a row of [`LOAD_PEER_REMOVALS`].
    pub fn removal_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        let c = Cols::new(self, "peer_removals", row, 2)?;
        let class = class_from_code(c.i64(0, "class")?).ok_or_else(|| c.bad("class", "unknown id space"))?;
        let id = c.i64(1, "id")?;
        self.removals.push(PeerKey::new(class, id));
        Ok(())
    }

    /// Adds the row of [`LOAD_SESSION`].
    pub fn session_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        let c = Cols::new(self, "session", row, 10)?;
        let home_dc = c.i32(0, "home_dc")?;
        let user_id = c.opt_i64(1, "user_id")?;
        let user_bot = c.opt_bool(2, "user_bot")?;
        let test_mode = c.bool(3, "test_mode")?;
        let api_id = c.opt_i32(4, "api_id")?;
        let (pts, qts, date, seq) = (c.i32(5, "pts")?, c.i32(6, "qts")?, c.i32(7, "date")?, c.i32(8, "seq")?);
        let token = c.opt_blob(9, "future_auth_token")?.map(<[u8]>::to_vec);
        self.present = true;
        let d = &mut self.data;
        d.home_dc = home_dc;
        d.user = user_id.map(|id| SelfUser::new(id, user_bot.unwrap_or(false)));
        d.test_mode = test_mode;
        d.api_id = api_id;
        let channels = std::mem::take(&mut d.updates.channels);
        d.updates = UpdateState::new(pts, qts, date, seq);
        d.updates.channels = channels;
        d.future_auth_token = token;
        Ok(())
    }

    /// Adds a row of [`LOAD_DCS`].
    pub fn dc_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        let c = Cols::new(self, "dcs", row, 8)?;
        let id = c.i32(0, "id")?;
        let key_flags = c.u32(1, "key_flags")?;
        let flags = DcFlags(c.u32(2, "flags")?);
        let ip: IpAddr = c.text(3, "ip")?.parse().map_err(|_| c.bad("ip", "not an IP address"))?;
        let port = c.u16(4, "port")?;
        let key = match c.opt_blob(5, "auth_key")? {
            None => None,
            Some(bytes) => Some(AuthKey::from_slice(bytes).ok_or_else(|| c.bad("auth_key", "not 256 bytes"))?),
        };
        let salt = c.i64(6, "server_salt")?;
        let offset = c.i32(7, "time_offset")?;
        let option =
            DcOption::new(id, SocketAddr::new(ip, port)).with_flags(flags).with_auth_key(key).with_salt(salt, offset);
        if option.key() != (DcKey { id, flags: DcFlags(key_flags) }) {
            return Err(c.bad("key_flags", "does not match the flags and address"));
        }
        self.data.dcs.insert(option.key(), option);
        Ok(())
    }

    /// Adds a row of [`LOAD_CHANNELS`].
    pub fn channel_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        let c = Cols::new(self, "channels", row, 2)?;
        let (id, pts) = (c.i64(0, "id")?, c.i32(1, "pts")?);
        self.data.updates.channels.insert(id, pts);
        Ok(())
    }

    /// Adds a row of [`LOAD_PEERS`].
    pub fn peer_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        let c = Cols::new(self, "peers", row, 7)?;
        let class = c.i64(0, "class")?;
        let id = c.i64(1, "id")?;
        let kind = kind_from_code(c.i64(2, "kind")?).ok_or_else(|| c.bad("kind", "unknown peer kind"))?;
        if class_code(kind.class()) != class {
            return Err(c.bad("class", "does not match the peer kind"));
        }
        let access_hash = c.i64(3, "access_hash")?;
        let min = c.bool(4, "min")?;
        let usernames = match c.opt_text(5, "usernames")? {
            None => Vec::new(),
            Some(json) => serde_json::from_str::<Vec<String>>(json)
                .map_err(|e| c.bad("usernames", &format!("not a JSON list of strings: {e}")))?,
        };
        let phone = c.opt_text(6, "phone")?.map(str::to_owned);
        self.overlay.push(Peer::new(id, kind, access_hash).with_min(min).with_usernames(usernames).with_phone(phone));
        Ok(())
    }

    /// Adds a row of [`LOAD_MIN_CONTEXTS`].
    pub fn min_context_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        let c = Cols::new(self, "min_contexts", row, 3)?;
        let context = MinPeerContext::new(c.i64(0, "user_id")?, c.i64(1, "peer_id")?, c.i32(2, "msg_id")?);
        self.data.min_contexts.push(context);
        Ok(())
    }

    /// The session, or `None` when the `session` row is absent (nothing stored).
    pub fn finish(mut self) -> Option<SessionData> {
        if !self.present {
            return None;
        }
        let chunked = std::mem::take(&mut self.chunked);
        self.data.peers = Self::build_peers(chunked, std::mem::take(&mut self.overlay), &self.removals);
        Some(self.data)
    }

    /// The peer cache alone, from the rows of [`LOAD_PEER_QUERIES`] (whether or not a session row
    /// was read).
    pub fn finish_peers(self) -> PeerCache {
        Self::build_peers(self.chunked, self.overlay, &self.removals)
    }

    fn build_peers(chunked: SortedPeers, overlay: Vec<Peer>, removals: &[PeerKey]) -> PeerCache {
        let mut cache = if chunked.is_empty() {
            // No chunks (a version 1 database, or rows only): build from the rows in bulk.
            overlay.into_iter().collect()
        } else {
            // Rows replace the chunked peer of the same key.
            let mut cache = chunked.finish();
            for peer in overlay {
                cache.insert(peer);
            }
            cache
        };
        for key in removals {
            cache.remove(*key);
        }
        cache
    }
}

struct Cols<'r, 'v> {
    resource: &'r str,
    table: &'static str,
    row: &'r [SqlValueRef<'v>],
}

impl<'r, 'v> Cols<'r, 'v> {
    fn new(
        rows: &'r SessionRows,
        table: &'static str,
        row: &'r [SqlValueRef<'v>],
        n: usize,
    ) -> Result<Self, SessionError> {
        let cols = Self { resource: &rows.resource, table, row };
        if row.len() != n {
            return Err(cols.bad("*", &format!("{} columns instead of {n}", row.len())));
        }
        Ok(cols)
    }

    fn bad(&self, column: &str, reason: &str) -> SessionError {
        SessionError::corrupt(self.resource, format!("{}.{column}: {reason}", self.table))
    }

    fn get(&self, i: usize) -> SqlValueRef<'v> {
        self.row.get(i).copied().unwrap_or(SqlValueRef::Null)
    }

    fn opt_i64(&self, i: usize, column: &str) -> Result<Option<i64>, SessionError> {
        match self.get(i) {
            SqlValueRef::Null => Ok(None),
            SqlValueRef::Integer(v) => Ok(Some(v)),
            _ => Err(self.bad(column, "not an integer")),
        }
    }

    fn i64(&self, i: usize, column: &str) -> Result<i64, SessionError> {
        self.opt_i64(i, column)?.ok_or_else(|| self.bad(column, "NULL"))
    }

    fn opt_i32(&self, i: usize, column: &str) -> Result<Option<i32>, SessionError> {
        self.opt_i64(i, column)?.map(|v| i32::try_from(v).map_err(|_| self.bad(column, "out of range"))).transpose()
    }

    fn i32(&self, i: usize, column: &str) -> Result<i32, SessionError> {
        i32::try_from(self.i64(i, column)?).map_err(|_| self.bad(column, "out of range"))
    }

    fn u32(&self, i: usize, column: &str) -> Result<u32, SessionError> {
        u32::try_from(self.i64(i, column)?).map_err(|_| self.bad(column, "out of range"))
    }

    fn u16(&self, i: usize, column: &str) -> Result<u16, SessionError> {
        u16::try_from(self.i64(i, column)?).map_err(|_| self.bad(column, "out of range"))
    }

    fn opt_bool(&self, i: usize, column: &str) -> Result<Option<bool>, SessionError> {
        match self.opt_i64(i, column)? {
            None => Ok(None),
            Some(0) => Ok(Some(false)),
            Some(1) => Ok(Some(true)),
            Some(_) => Err(self.bad(column, "not 0 or 1")),
        }
    }

    fn bool(&self, i: usize, column: &str) -> Result<bool, SessionError> {
        self.opt_bool(i, column)?.ok_or_else(|| self.bad(column, "NULL"))
    }

    fn opt_text(&self, i: usize, column: &str) -> Result<Option<&'v str>, SessionError> {
        match self.get(i) {
            SqlValueRef::Null => Ok(None),
            SqlValueRef::Text(v) => Ok(Some(v)),
            _ => Err(self.bad(column, "not text")),
        }
    }

    fn text(&self, i: usize, column: &str) -> Result<&'v str, SessionError> {
        self.opt_text(i, column)?.ok_or_else(|| self.bad(column, "NULL"))
    }

    fn opt_blob(&self, i: usize, column: &str) -> Result<Option<&'v [u8]>, SessionError> {
        match self.get(i) {
            SqlValueRef::Null => Ok(None),
            SqlValueRef::Blob(v) => Ok(Some(v)),
            _ => Err(self.bad(column, "not a blob")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::PeerKey;

    #[test]
    fn newer_schema_is_refused() {
        assert!(matches!(
            migrations_from(SCHEMA_VERSION + 1).map(|m| m.count()),
            Err(SessionError::UnsupportedVersion { found, supported: SCHEMA_VERSION, .. }) if found == SCHEMA_VERSION + 1
        ));
        assert_eq!(migrations_from(0).map(|m| m.map(|(v, _)| v).collect::<Vec<_>>()).ok(), Some(vec![1, 2]));
        assert_eq!(migrations_from(1).map(|m| m.map(|(v, _)| v).collect::<Vec<_>>()).ok(), Some(vec![2]));
        assert_eq!(migrations_from(SCHEMA_VERSION).map(|m| m.count()).ok(), Some(0));
    }

    #[test]
    fn persisting_one_change_is_a_constant_number_of_keyed_statements() {
        let sqls = |changes: &[Change], known| -> Vec<&'static str> {
            persist_plan_known(changes, known).map(|p| p.map(|st| st.sql).collect()).unwrap_or_default()
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

    /// The row [`LOAD_PEER_CHUNKS`] reads back for a chunk insert: pos, peers, data.
    fn chunk_row_of(st: &Statement) -> Vec<SqlValueRef<'_>> {
        [0, 1, 6].iter().map(|&i| st.params[i].as_ref()).collect()
    }

    #[test]
    fn peers_are_chunks_then_rows_over_them_minus_removals() {
        let chunked: PeerCache = (0..10_000).map(|i| Peer::new(i, PeerKind::User, i * 3)).collect();
        let mut rows = SessionRows::new("test");
        let mut chunks = 0;
        for st in compact_plan(&chunked).filter(|st| st.sql == INSERT_CHUNK) {
            rows.row(Table::PeerChunks, &chunk_row_of(&st)).expect("chunk");
            let range: Vec<SqlValueRef<'_>> = st.params[2..6].iter().map(SqlValue::as_ref).collect();
            let (lo, hi) = chunk_range("test", &range).expect("range");
            assert_eq!(hi.id - lo.id + 1, i64::try_from(chunks::CHUNK_PEERS).unwrap_or(0).min(10_000 - lo.id));
            chunks += 1;
        }
        assert_eq!(chunks, 10_000usize.div_ceil(chunks::CHUNK_PEERS));
        let over = Peer::new(5, PeerKind::Bot, -5).with_usernames(vec!["x".into()]);
        let refs: Vec<SqlValue> = peer_params(&over);
        rows.row(Table::Peers, &refs.iter().map(SqlValue::as_ref).collect::<Vec<_>>()).expect("row");
        rows.row(Table::PeerRemovals, &[SqlValueRef::Integer(0), SqlValueRef::Integer(9_999)]).expect("removal");
        let peers = rows.finish_peers();
        assert_eq!(peers.len(), 9_999);
        assert_eq!(peers.get(PeerKey::user(5)), Some(over));
        assert_eq!(peers.access_hash(PeerKey::user(9_998)), Some(9_998 * 3));
        assert_eq!(peers.get(PeerKey::user(9_999)), None);
    }

    #[test]
    fn a_damaged_chunk_is_corrupt() {
        let chunked: PeerCache = (0..100).map(|i| Peer::new(i, PeerKind::User, i)).collect();
        let mut st = compact_plan(&chunked).find(|st| st.sql == INSERT_CHUNK).expect("a chunk");
        if let Some(SqlValue::Blob(b)) = st.params.get_mut(6) {
            b[20] ^= 4;
        }
        let err = SessionRows::new("t").chunk_row(&chunk_row_of(&st)).expect_err("damaged");
        assert!(matches!(err, SessionError::Corrupt { .. }) && err.to_string().contains("peer_chunks.data"), "{err}");
    }

    #[test]
    fn application_id_in_migration_matches_constant() {
        assert!(MIGRATIONS[0].contains(&format!("application_id = {APPLICATION_ID};")));
    }

    #[test]
    fn bad_values_are_corrupt_not_defaults() {
        let mut rows = SessionRows::new("test");
        let key = [0u8; 10];
        let row = [
            SqlValueRef::Integer(2),
            SqlValueRef::Integer(0),
            SqlValueRef::Integer(0),
            SqlValueRef::Text("149.154.167.51"),
            SqlValueRef::Integer(443),
            SqlValueRef::Blob(&key),
            SqlValueRef::Integer(0),
            SqlValueRef::Integer(0),
        ];
        let err = rows.dc_row(&row).expect_err("short key");
        assert!(matches!(err, SessionError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("dcs.auth_key"), "{err}");
        let peer = [
            SqlValueRef::Integer(0),
            SqlValueRef::Integer(5),
            SqlValueRef::Integer(99),
            SqlValueRef::Integer(0),
            SqlValueRef::Integer(0),
            SqlValueRef::Null,
            SqlValueRef::Null,
        ];
        assert!(matches!(rows.peer_row(&peer), Err(SessionError::Corrupt { .. })));
        assert!(rows.finish().is_none());
    }
}
