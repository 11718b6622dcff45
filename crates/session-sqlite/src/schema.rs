//! The one SQL schema of layer-client sessions, and everything about it that does not depend on
//! a driver: migrations, the statements that persist changes or replace a session, and the
//! decoders that rebuild a [`SessionData`] from rows.
//!
//! The SQLite backend of this crate runs these statements through `rusqlite`; the libSQL backend
//! runs the same statements over its own client (Hrana over HTTP), so both store a session in
//! the same tables and a database written by one is read by the other.
//!
//! # Tables (schema version 3)
//!
//! | table | key | holds |
//! | --- | --- | --- |
//! | `session` | `id` = 0 (one row) | home DC, user, test mode, api_id, common update state, future auth token; the row's `crc`, and one checksum sum per other table (`dcs_sum`, `channels_sum`, `chunks_sum`, `peers_sum`, `removals_sum`, `contexts_sum`, since version 3). No row: no session. |
//! | `dcs` | (`id`, `key_flags`) | one row per DC option: flags, `ip` text, `port`, `auth_key` (256 bytes or NULL), salt, time offset |
//! | `channels` | bare channel `id` | per-channel pts |
//! | `peer_chunks` | `pos` | the bulk of the peer cache: up to 4,096 peers per row in key order, packed in a checksummed blob (`data`), with their count (`peers`) and the keys of the first and last (`lo_class`, `lo_id`, `hi_class`, `hi_id`) (since version 2) |
//! | `peers` | (`class`, `id`) | peers written since the chunks were: bare id in its id space (0 user, 1 basic group, 2 channel), `kind`, `access_hash`, `min`, `usernames` (JSON array or NULL), `phone` |
//! | `peer_removals` | (`class`, `id`) | peers removed since the chunks were written (since version 2) |
//! | `min_contexts` | `pos` | the ordered "min" peer contexts |
//!
//! # Checksums (since version 3)
//!
//! SQLite checks no checksum of its own on page contents: a flipped bit inside a value reads
//! back as another value, and a damaged page header can hide a row without any error. So every
//! row carries `crc`, the CRC-32 of its table's tag and its values in the order the load query
//! reads them ([`row_crc`]), and the `session` row holds, for every other table, the sum
//! (mod 2^32) of the `crc` of all its rows. Every statement of a plan that writes or deletes a
//! row comes with one that moves its table's sum by the row's old and new `crc` (the old one
//! read by key inside the statement), so one change still costs O(1) keyed statements. The sums
//! are kept by the plans, not by triggers, on purpose: a row deleted or changed behind the
//! schema's back (an `sqlite3` shell, a damaged page) leaves its sum as it was, and the next
//! load sees it. A load checks every row's `crc` and every sum: a changed value, a row missing
//! or a row too many is [`SessionError::Corrupt`], never another session. A `session` row that
//! is missing while any other table holds a row is `Corrupt` too, never "no session".
//!
//! The `session` row's `crc` covers its values, not the sums (a sum that is off shows itself:
//! it disagrees with the rows). Because a change may rewrite only some of its columns, the
//! persist plan writes the whole row from the session the changes were applied to.
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
//! Version 3 added the checksums: its migration ([`MIGRATIONS`] entry 2, then
//! [`backfill_queries`] and [`backfill_statement`] for every existing row, then
//! [`backfill_sums`], in the same transaction) computes them for the rows already there.
//!
//! `PRAGMA user_version` holds the schema version and `PRAGMA application_id` is [`APPLICATION_ID`].
//!
//! # Driving it
//!
//! - Open: read `PRAGMA user_version`, then [`migrations_from`] gives the steps to run, each in
//!   its own transaction together with [`set_version_sql`] and, for every query of
//!   [`backfill_queries`] of the version it reaches, the [`backfill_statement`] of each row,
//!   then [`backfill_sums`].
//! - Persist: run [`persist_plan`] in one transaction; save: [`save_plan`]; delete: [`delete_plan`].
//! - Load: run each query of [`LOAD_QUERIES`] and hand every row to a [`SessionRows`], then
//!   [`SessionRows::finish`] checks the sums.

use std::net::{IpAddr, SocketAddr};

use session_core::{
    AuthKey, Change, DcFlags, DcKey, DcOption, MinPeerContext, Peer, PeerCache, PeerClass, PeerKey, PeerKind, SelfUser,
    SessionData, SessionError, SortedPeers, UpdateState, UpdateStateChange,
};

use crate::chunks;

/// The schema version this build writes, and the newest it reads.
pub const SCHEMA_VERSION: u32 = 3;

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
    r#"
ALTER TABLE session ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
ALTER TABLE session ADD COLUMN dcs_sum INTEGER NOT NULL DEFAULT 0;
ALTER TABLE session ADD COLUMN channels_sum INTEGER NOT NULL DEFAULT 0;
ALTER TABLE session ADD COLUMN chunks_sum INTEGER NOT NULL DEFAULT 0;
ALTER TABLE session ADD COLUMN peers_sum INTEGER NOT NULL DEFAULT 0;
ALTER TABLE session ADD COLUMN removals_sum INTEGER NOT NULL DEFAULT 0;
ALTER TABLE session ADD COLUMN contexts_sum INTEGER NOT NULL DEFAULT 0;
ALTER TABLE dcs ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
ALTER TABLE channels ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
ALTER TABLE peer_chunks ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
ALTER TABLE peers ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
ALTER TABLE peer_removals ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
ALTER TABLE min_contexts ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
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

// The row a persist makes when there is none: the columns' defaults, with their checksum.
const ENSURE_SESSION: &str = "INSERT INTO session (id, crc) VALUES (0, ?1) ON CONFLICT (id) DO NOTHING";
// The whole row (but the sums, which the triggers keep), as the changes left it.
const WRITE_SESSION: &str = "UPDATE session SET home_dc = ?1, user_id = ?2, user_bot = ?3, test_mode = ?4, \
     api_id = ?5, pts = ?6, qts = ?7, date = ?8, seq = ?9, future_auth_token = ?10, crc = ?11 WHERE id = 0";
const UPSERT_DC: &str = "INSERT INTO dcs (id, key_flags, flags, ip, port, auth_key, server_salt, time_offset, crc) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
     ON CONFLICT (id, key_flags) DO UPDATE SET flags = excluded.flags, ip = excluded.ip, port = excluded.port, \
     auth_key = excluded.auth_key, server_salt = excluded.server_salt, time_offset = excluded.time_offset, \
     crc = excluded.crc";
const INSERT_DC: &str = "INSERT INTO dcs (id, key_flags, flags, ip, port, auth_key, server_salt, time_offset, crc) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const REMOVE_DC: &str = "DELETE FROM dcs WHERE id = ?1 AND key_flags = ?2";
// Each moves a table's sum from the stored row's `crc` (none: 0) to the new one (?last; 0 for a
// delete). Run before the statement that writes the row.
const SUM_DC: &str = "UPDATE session SET dcs_sum = (dcs_sum - coalesce((SELECT crc FROM dcs \
     WHERE id = ?1 AND key_flags = ?2), 0) + ?3 + 4294967296) % 4294967296 WHERE id = 0";
const SUM_CHANNEL: &str = "UPDATE session SET channels_sum = (channels_sum - coalesce((SELECT crc FROM channels \
     WHERE id = ?1), 0) + ?2 + 4294967296) % 4294967296 WHERE id = 0";
const SUM_PEER: &str = "UPDATE session SET peers_sum = (peers_sum - coalesce((SELECT crc FROM peers \
     WHERE class = ?1 AND id = ?2), 0) + ?3 + 4294967296) % 4294967296 WHERE id = 0";
const SUM_REMOVAL: &str = "UPDATE session SET removals_sum = (removals_sum - coalesce((SELECT crc FROM peer_removals \
     WHERE class = ?1 AND id = ?2), 0) + ?3 + 4294967296) % 4294967296 WHERE id = 0";
// After a table is cleared and written whole: its sum, computed from the rows written.
const SET_CHANNELS_SUM: &str = "UPDATE session SET channels_sum = ?1 WHERE id = 0";
const SET_CONTEXTS_SUM: &str = "UPDATE session SET contexts_sum = ?1 WHERE id = 0";
const SET_PEER_SUMS: &str = "UPDATE session SET chunks_sum = ?1, peers_sum = 0, removals_sum = 0 WHERE id = 0";
const UPSERT_CHANNEL: &str = "INSERT INTO channels (id, pts, crc) VALUES (?1, ?2, ?3) \
     ON CONFLICT (id) DO UPDATE SET pts = excluded.pts, crc = excluded.crc";
const INSERT_CHANNEL: &str = "INSERT INTO channels (id, pts, crc) VALUES (?1, ?2, ?3)";
const REMOVE_CHANNEL: &str = "DELETE FROM channels WHERE id = ?1";
const UPSERT_PEER: &str = "INSERT INTO peers (class, id, kind, access_hash, min, usernames, phone, crc) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
     ON CONFLICT (class, id) DO UPDATE SET kind = excluded.kind, access_hash = excluded.access_hash, \
     min = excluded.min, usernames = excluded.usernames, phone = excluded.phone, crc = excluded.crc";
const REMOVE_PEER: &str = "DELETE FROM peers WHERE class = ?1 AND id = ?2";
const INSERT_REMOVAL: &str = "INSERT INTO peer_removals (class, id, crc) VALUES (?1, ?2, ?3) \
     ON CONFLICT (class, id) DO UPDATE SET crc = excluded.crc";
const DELETE_REMOVAL: &str = "DELETE FROM peer_removals WHERE class = ?1 AND id = ?2";
const INSERT_CHUNK: &str = "INSERT INTO peer_chunks (pos, peers, lo_class, lo_id, hi_class, hi_id, data, crc) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
const INSERT_MIN_CONTEXT: &str =
    "INSERT INTO min_contexts (pos, user_id, peer_id, msg_id, crc) VALUES (?1, ?2, ?3, ?4, ?5)";
const INSERT_SESSION: &str = "INSERT INTO session \
     (id, home_dc, user_id, user_bot, test_mode, api_id, pts, qts, date, seq, future_auth_token, crc, \
     dcs_sum, channels_sum, chunks_sum, peers_sum, removals_sum, contexts_sum) \
     VALUES (0, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)";
const CLEAR_SESSION: &str = "DELETE FROM session";
const CLEAR_DCS: &str = "DELETE FROM dcs";
const CLEAR_CHANNELS: &str = "DELETE FROM channels";
const CLEAR_PEERS: &str = "DELETE FROM peers";
const CLEAR_PEER_CHUNKS: &str = "DELETE FROM peer_chunks";
const CLEAR_PEER_REMOVALS: &str = "DELETE FROM peer_removals";
const CLEAR_MIN_CONTEXTS: &str = "DELETE FROM min_contexts";

/// The session row: its values, its `crc`, then the sums of the other tables.
pub const LOAD_SESSION: &str = "SELECT home_dc, user_id, user_bot, test_mode, api_id, pts, qts, date, seq, \
     future_auth_token, crc, dcs_sum, channels_sum, chunks_sum, peers_sum, removals_sum, contexts_sum \
     FROM session WHERE id = 0";
/// Every DC option.
pub const LOAD_DCS: &str = "SELECT id, key_flags, flags, ip, port, auth_key, server_salt, time_offset, crc FROM dcs";
/// Every channel's pts.
pub const LOAD_CHANNELS: &str = "SELECT id, pts, crc FROM channels";
/// The peer chunks, in order.
pub const LOAD_PEER_CHUNKS: &str =
    "SELECT pos, peers, lo_class, lo_id, hi_class, hi_id, data, crc FROM peer_chunks ORDER BY pos";
/// The peer chunks after position `?1`, at most `?2` of them, in order (a driver that reads
/// them in pages).
pub const LOAD_PEER_CHUNKS_AFTER: &str = "SELECT pos, peers, lo_class, lo_id, hi_class, hi_id, data, crc \
     FROM peer_chunks WHERE pos > ?1 ORDER BY pos LIMIT ?2";
/// The key range of every chunk (first and last key), in order: a driver that keeps them knows
/// which removed keys need a `peer_removals` row ([`Known::chunk_ranges`]).
pub const LOAD_CHUNK_RANGES: &str = "SELECT lo_class, lo_id, hi_class, hi_id FROM peer_chunks ORDER BY pos";
/// Every peer written since the chunks, in key order.
pub const LOAD_PEERS: &str =
    "SELECT class, id, kind, access_hash, min, usernames, phone, crc FROM peers ORDER BY class, id";
/// Every peer removed since the chunks, in key order.
pub const LOAD_PEER_REMOVALS: &str = "SELECT class, id, crc FROM peer_removals ORDER BY class, id";
/// The "min" contexts, in order.
pub const LOAD_MIN_CONTEXTS: &str = "SELECT pos, user_id, peer_id, msg_id, crc FROM min_contexts ORDER BY pos";

// The same reads for databases of versions 1 and 2, which have no checksums (a reader that
// does not migrate, such as a read-only inspection, may meet one).
const LOAD_SESSION_V2: &str = "SELECT home_dc, user_id, user_bot, test_mode, api_id, pts, qts, date, seq, \
     future_auth_token FROM session WHERE id = 0";
const LOAD_DCS_V2: &str = "SELECT id, key_flags, flags, ip, port, auth_key, server_salt, time_offset FROM dcs";
const LOAD_CHANNELS_V2: &str = "SELECT id, pts FROM channels";
const LOAD_PEER_CHUNKS_V2: &str = "SELECT pos, peers, data FROM peer_chunks ORDER BY pos";
const LOAD_PEERS_V2: &str = "SELECT class, id, kind, access_hash, min, usernames, phone FROM peers ORDER BY class, id";
const LOAD_PEER_REMOVALS_V2: &str = "SELECT class, id FROM peer_removals ORDER BY class, id";
const LOAD_MIN_CONTEXTS_V2: &str = "SELECT user_id, peer_id, msg_id FROM min_contexts ORDER BY pos";

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

    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Session => "session",
            Table::Dcs => "dcs",
            Table::Channels => "channels",
            Table::PeerChunks => "peer_chunks",
            Table::Peers => "peers",
            Table::PeerRemovals => "peer_removals",
            Table::MinContexts => "min_contexts",
        }
    }

    /// The byte that starts every checksum of the table's rows, so that a row read from another
    /// table (a damaged page pointer) never passes as one of this table's.
    fn tag(self) -> u8 {
        match self {
            Table::Session => 1,
            Table::Dcs => 2,
            Table::Channels => 3,
            Table::PeerChunks => 4,
            Table::Peers => 5,
            Table::PeerRemovals => 6,
            Table::MinContexts => 7,
        }
    }

    /// Values a row of the table's load query holds (before its `crc`), at schema `version`.
    fn values(self, version: u32) -> usize {
        match (self, version >= 3) {
            (Table::Session, _) => 10,
            (Table::Dcs, _) => 8,
            (Table::Channels | Table::PeerRemovals, _) => 2,
            (Table::PeerChunks, true) => 7,
            (Table::PeerChunks, false) => 3,
            (Table::Peers, _) => 7,
            (Table::MinContexts, true) => 4,
            (Table::MinContexts, false) => 3,
        }
    }

    /// The index of the table's sum among the sums of the session row (`None`: the session).
    fn sum_index(self) -> Option<usize> {
        match self {
            Table::Session => None,
            Table::Dcs => Some(0),
            Table::Channels => Some(1),
            Table::PeerChunks => Some(2),
            Table::Peers => Some(3),
            Table::PeerRemovals => Some(4),
            Table::MinContexts => Some(5),
        }
    }
}

/// The tables whose rows the session row's sums cover, in the order of its sum columns.
const SUMMED: [Table; 6] =
    [Table::Dcs, Table::Channels, Table::PeerChunks, Table::Peers, Table::PeerRemovals, Table::MinContexts];

/// The queries that load a session from a database at schema `version`, in the order of
/// [`LOAD_QUERIES`] (a reader that does not migrate, such as a read-only inspection, may meet an
/// older database: it gets the queries of that version, without the tables it lacks). Hand the
/// rows to a [`SessionRows::at_version`] of the same version.
pub fn load_queries(version: u32) -> impl Iterator<Item = (Table, &'static str)> {
    let old = [
        (Table::Session, LOAD_SESSION_V2),
        (Table::Dcs, LOAD_DCS_V2),
        (Table::Channels, LOAD_CHANNELS_V2),
        (Table::PeerChunks, LOAD_PEER_CHUNKS_V2),
        (Table::Peers, LOAD_PEERS_V2),
        (Table::PeerRemovals, LOAD_PEER_REMOVALS_V2),
        (Table::MinContexts, LOAD_MIN_CONTEXTS_V2),
    ];
    let queries = if version >= 3 { LOAD_QUERIES } else { old };
    queries.into_iter().filter(move |(t, _)| t.since() <= version)
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

/// The queries that read the peer cache (and the session row, whose sums check it), for
/// [`SessionRows::finish_peers`].
pub const LOAD_PEER_QUERIES: [(Table, &str); 4] = [
    (Table::Session, LOAD_SESSION),
    (Table::PeerChunks, LOAD_PEER_CHUNKS),
    (Table::Peers, LOAD_PEERS),
    (Table::PeerRemovals, LOAD_PEER_REMOVALS),
];

/// The checksum of a row of `table`: the CRC-32 of the table's tag and `values` (the row's
/// values in the order its load query reads them, without the `crc` itself), each with its
/// type and, for text and blobs, its length. Stored in the row's `crc` column.
pub fn row_crc(table: Table, values: &[SqlValueRef<'_>]) -> i64 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[table.tag()]);
    for v in values {
        match v {
            SqlValueRef::Null => h.update(&[0]),
            SqlValueRef::Integer(i) => {
                h.update(&[1]);
                h.update(&i.to_le_bytes());
            }
            SqlValueRef::Real(f) => {
                h.update(&[2]);
                h.update(&f.to_bits().to_le_bytes());
            }
            SqlValueRef::Text(t) => {
                h.update(&[3]);
                h.update(&(t.len() as u64).to_le_bytes());
                h.update(t.as_bytes());
            }
            SqlValueRef::Blob(b) => {
                h.update(&[4]);
                h.update(&(b.len() as u64).to_le_bytes());
                h.update(b);
            }
        }
    }
    i64::from(h.finalize())
}

/// `values` with their checksum appended (the parameters of an insert of a `table` row).
fn with_crc(table: Table, mut values: Vec<SqlValue>) -> Vec<SqlValue> {
    let crc = row_crc(table, &values.iter().map(SqlValue::as_ref).collect::<Vec<_>>());
    values.push(SqlValue::Integer(crc));
    values
}

/// The checksum at the end of a row's parameters (made by [`with_crc`]).
fn crc_param(params: &[SqlValue]) -> SqlValue {
    params.last().cloned().unwrap_or(SqlValue::Integer(0))
}

/// The sum (mod 2^32) of the checksums of the rows `statements` insert.
fn sum_of<'a>(statements: impl IntoIterator<Item = &'a Statement>) -> SqlValue {
    let sum = statements.into_iter().fold(0u32, |acc, st| match st.params.last() {
        Some(SqlValue::Integer(crc)) => acc.wrapping_add(u32::try_from(*crc).unwrap_or(0)),
        _ => acc,
    });
    SqlValue::Integer(i64::from(sum))
}

/// The statements that make `sql` (with `params`, crc last) write a row, preceded by the one
/// that moves its table's sum (`sum_sql`, keyed by the first `keys` parameters).
fn summed(sum_sql: &'static str, keys: usize, sql: &'static str, params: Vec<SqlValue>) -> [Statement; 2] {
    let mut sum = params.get(..keys).unwrap_or_default().to_vec();
    sum.push(crc_param(&params));
    [Statement::new(sum_sql, sum), Statement::new(sql, params)]
}

/// The statements that delete a row keyed by `key`, preceded by the one that takes its
/// checksum out of its table's sum.
fn unsummed(sum_sql: &'static str, sql: &'static str, key: Vec<SqlValue>) -> [Statement; 2] {
    let mut sum = key.clone();
    sum.push(SqlValue::Integer(0));
    [Statement::new(sum_sql, sum), Statement::new(sql, key)]
}

/// The queries that read, at the migration to `version`, the rows whose checksums it computes
/// (each row's values in the order of [`row_crc`]). Empty for a version without such work.
pub fn backfill_queries(version: u32) -> &'static [(Table, &'static str)] {
    const V3: [(Table, &str); 7] = [
        (Table::Session, LOAD_SESSION_V2),
        (Table::Dcs, LOAD_DCS_V2),
        (Table::Channels, LOAD_CHANNELS_V2),
        (Table::PeerChunks, "SELECT pos, peers, lo_class, lo_id, hi_class, hi_id, data FROM peer_chunks"),
        (Table::Peers, LOAD_PEERS_V2),
        (Table::PeerRemovals, LOAD_PEER_REMOVALS_V2),
        (Table::MinContexts, "SELECT pos, user_id, peer_id, msg_id FROM min_contexts"),
    ];
    if version == 3 {
        &V3
    } else {
        &[]
    }
}

/// The statement that records the sums of the checksums in the session row, run in the
/// migration to `version` after every [`backfill_statement`] (`None`: nothing to run).
pub fn backfill_sums(version: u32) -> Option<&'static str> {
    (version == 3).then_some(
        "UPDATE session SET \
         dcs_sum = (SELECT coalesce(sum(crc), 0) FROM dcs) % 4294967296, \
         channels_sum = (SELECT coalesce(sum(crc), 0) FROM channels) % 4294967296, \
         chunks_sum = (SELECT coalesce(sum(crc), 0) FROM peer_chunks) % 4294967296, \
         peers_sum = (SELECT coalesce(sum(crc), 0) FROM peers) % 4294967296, \
         removals_sum = (SELECT coalesce(sum(crc), 0) FROM peer_removals) % 4294967296, \
         contexts_sum = (SELECT coalesce(sum(crc), 0) FROM min_contexts) % 4294967296 \
         WHERE id = 0",
    )
}

/// The statement that stores the checksum of a row read by a query of [`backfill_queries`]
/// (run in the migration's transaction, after its SQL).
pub fn backfill_statement(table: Table, row: &[SqlValueRef<'_>]) -> Result<Statement, SessionError> {
    const SET_CRC: [&str; 7] = [
        "UPDATE session SET crc = ?1 WHERE id = 0",
        "UPDATE dcs SET crc = ?1 WHERE id = ?2 AND key_flags = ?3",
        "UPDATE channels SET crc = ?1 WHERE id = ?2",
        "UPDATE peer_chunks SET crc = ?1 WHERE pos = ?2",
        "UPDATE peers SET crc = ?1 WHERE class = ?2 AND id = ?3",
        "UPDATE peer_removals SET crc = ?1 WHERE class = ?2 AND id = ?3",
        "UPDATE min_contexts SET crc = ?1 WHERE pos = ?2",
    ];
    let keys = match table {
        Table::Session => 0,
        Table::Dcs | Table::Peers | Table::PeerRemovals => 2,
        Table::Channels | Table::PeerChunks | Table::MinContexts => 1,
    };
    if row.len() != table.values(3) {
        return Err(SessionError::corrupt(table.name(), format!("{} columns to checksum", row.len())));
    }
    let mut params = vec![SqlValue::Integer(row_crc(table, row))];
    params.extend(row.iter().take(keys).map(|v| match v {
        SqlValueRef::Null => SqlValue::Null,
        SqlValueRef::Integer(i) => SqlValue::Integer(*i),
        SqlValueRef::Real(f) => SqlValue::Real(*f),
        SqlValueRef::Text(t) => SqlValue::Text((*t).to_owned()),
        SqlValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
    }));
    let sql = SET_CRC[usize::from(table.tag() - 1)];
    Ok(Statement::new(sql, params))
}

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
    i64::from(class.code())
}

/// The stored code of a peer kind: [`PeerKind::code`] (the one table, kept in `session-core`).
pub fn kind_code(kind: PeerKind) -> i64 {
    i64::from(kind.code())
}

pub(crate) fn kind_from_code(code: i64) -> Option<PeerKind> {
    u8::try_from(code).ok().and_then(PeerKind::from_code)
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
    with_crc(
        Table::Peers,
        vec![
            int(class_code(peer.kind.class())),
            int(peer.id),
            int(kind_code(peer.kind)),
            int(peer.access_hash),
            int(peer.min),
            usernames_value(&peer.usernames),
            peer.phone.clone().map_or(SqlValue::Null, SqlValue::Text),
        ],
    )
}

fn removal_params(key: PeerKey) -> Vec<SqlValue> {
    with_crc(Table::PeerRemovals, vec![int(class_code(key.class)), int(key.id)])
}

fn channel_params(id: i64, pts: i32) -> Vec<SqlValue> {
    with_crc(Table::Channels, vec![int(id), int(pts)])
}

/// The session row's values (without the sums), with their checksum.
fn session_params(data: &SessionData) -> Vec<SqlValue> {
    with_crc(
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
    )
}

/// The checksum of the row [`ENSURE_SESSION`] makes: every column at its default.
fn empty_session_crc() -> SqlValue {
    session_params(&SessionData::default()).pop().unwrap_or(SqlValue::Null)
}

fn ensure_session() -> Statement {
    Statement::new(ENSURE_SESSION, vec![empty_session_crc()])
}

fn dc_params(dc: &DcOption) -> Vec<SqlValue> {
    let key = dc.key();
    with_crc(
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
    )
}

fn clear_all() -> impl Iterator<Item = Statement> {
    [CLEAR_SESSION, CLEAR_DCS, CLEAR_CHANNELS, CLEAR_PEER_CHUNKS, CLEAR_PEERS, CLEAR_PEER_REMOVALS, CLEAR_MIN_CONTEXTS]
        .into_iter()
        .map(|sql| Statement::new(sql, Vec::new()))
}

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

fn min_context_statements(contexts: &[MinPeerContext]) -> impl Iterator<Item = Statement> + '_ {
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
            format!("this build of session-sqlite cannot store {unknown:?}; upgrade it to match session-core"),
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

/// The statements that replace whatever is stored with `data`. Run them in one transaction.
pub fn save_plan(data: &SessionData) -> impl Iterator<Item = Statement> + '_ {
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
    u8::try_from(code).ok().and_then(PeerClass::from_code)
}

/// The statements that fold the peer cache into chunks: every `peers` and `peer_removals` row
/// is deleted and `peers` (the cache as [`SessionRows::finish_peers`] read it, inside the same
/// transaction) is written as chunks. Only a driver that is the database's one writer may run
/// it (another client's row written between the read and this would be lost).
pub fn compact_plan(peers: &PeerCache) -> impl Iterator<Item = Statement> + '_ {
    let chunks: Vec<Statement> = chunk_statements(peers).collect();
    let sums = Statement::new(SET_PEER_SUMS, vec![sum_of(&chunks)]);
    [CLEAR_PEER_CHUNKS, CLEAR_PEERS, CLEAR_PEER_REMOVALS]
        .into_iter()
        .map(|sql| Statement::new(sql, Vec::new()))
        .chain(std::iter::once(sums))
        .chain(chunks)
}

/// The statements that forget the session (a later load finds none).
pub fn delete_plan() -> impl Iterator<Item = Statement> {
    clear_all()
}

/// Rebuilds a session from the rows of [`LOAD_QUERIES`].
///
/// Every value is checked: a wrong type, an out-of-range number, a key that is not 256 bytes or
/// an unknown code is a [`SessionError::Corrupt`] naming the table and column, never a silently
/// altered session. From schema version 3 on, every row's checksum is checked as it is added,
/// and [`finish`](SessionRows::finish) checks the sums of the session row against the rows
/// (see the [module docs](self)).
pub struct SessionRows {
    resource: String,
    version: u32,
    present: bool,
    /// A row of any table but `session` was added.
    other_rows: bool,
    data: SessionData,
    /// The peers of `peer_chunks`.
    chunked: SortedPeers,
    /// The rows of `peers`.
    overlay: Vec<Peer>,
    removals: Vec<PeerKey>,
    /// The sums of the rows' checksums, per table of [`SUMMED`].
    sums: [u32; 6],
    /// The sums the session row holds.
    stored_sums: Option<[i64; 6]>,
}

// By hand: the rows read so far hold auth keys and the future auth token, which `Debug` of the
// builder must never print.
impl std::fmt::Debug for SessionRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRows")
            .field("resource", &self.resource)
            .field("version", &self.version)
            .field("present", &self.present)
            .finish_non_exhaustive()
    }
}

impl SessionRows {
    /// An empty builder for rows of the current schema ([`LOAD_QUERIES`]); `resource` names the
    /// database in errors.
    pub fn new(resource: impl Into<String>) -> Self {
        Self::at_version(resource, SCHEMA_VERSION)
    }

    /// An empty builder for rows read by the [`load_queries`] of a database at schema `version`
    /// (before version 3 rows carry no checksums, and none is checked).
    pub fn at_version(resource: impl Into<String>, version: u32) -> Self {
        Self {
            resource: resource.into(),
            version,
            present: false,
            other_rows: false,
            data: SessionData::default(),
            chunked: SortedPeers::default(),
            overlay: Vec::new(),
            removals: Vec::new(),
            sums: [0; 6],
            stored_sums: None,
        }
    }

    /// Adds one row of `table`.
    pub fn row(&mut self, table: Table, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        let values = self.verify(table, row)?;
        match table {
            Table::Session => self.session_row(values),
            Table::Dcs => self.dc_row(values),
            Table::Channels => self.channel_row(values),
            Table::PeerChunks => self.chunk_row(values),
            Table::Peers => self.peer_row(values),
            Table::PeerRemovals => self.removal_row(values),
            Table::MinContexts => self.min_context_row(values),
        }
    }

    /// Checks the row's shape and (from version 3 on) its checksum, and counts it in its
    /// table's sum. Returns its values.
    fn verify<'r, 'v>(
        &mut self,
        table: Table,
        row: &'r [SqlValueRef<'v>],
    ) -> Result<&'r [SqlValueRef<'v>], SessionError> {
        let n = table.values(self.version);
        let bad = |reason: String| SessionError::corrupt(&self.resource, format!("{}: {reason}", table.name()));
        if table != Table::Session {
            self.other_rows = true;
        }
        if self.version < 3 {
            return if row.len() == n { Ok(row) } else { Err(bad(format!("{} columns instead of {n}", row.len()))) };
        }
        let extra = if table == Table::Session { 1 + SUMMED.len() } else { 1 };
        if row.len() != n + extra {
            return Err(bad(format!("{} columns instead of {}", row.len(), n + extra)));
        }
        let (values, rest) = row.split_at(n);
        let crc = match rest.first() {
            Some(SqlValueRef::Integer(c)) => u32::try_from(*c).map_err(|_| bad("crc out of range".into()))?,
            _ => return Err(bad("crc is not an integer".into())),
        };
        if i64::from(crc) != row_crc(table, values) {
            return Err(bad("a row does not match its checksum".into()));
        }
        match table.sum_index() {
            Some(i) => self.sums[i] = self.sums[i].wrapping_add(crc),
            None => {
                if self.stored_sums.is_some() {
                    return Err(bad("two session rows".into()));
                }
                let mut sums = [0i64; 6];
                for (slot, v) in sums.iter_mut().zip(rest.iter().skip(1)) {
                    *slot = match v {
                        SqlValueRef::Integer(v) => *v,
                        _ => return Err(bad("a checksum sum is not an integer".into())),
                    };
                }
                self.stored_sums = Some(sums);
            }
        }
        Ok(values)
    }

    /// Checks the session row's sums of `tables` against the rows added.
    fn check_sums(&self, tables: &[Table]) -> Result<(), SessionError> {
        let Some(stored) = self.stored_sums else {
            return Ok(());
        };
        for table in tables {
            let Some(i) = table.sum_index() else { continue };
            if stored[i] != i64::from(self.sums[i]) {
                return Err(SessionError::corrupt(
                    &self.resource,
                    format!("{}: rows are missing or were added (their checksums do not add up)", table.name()),
                ));
            }
        }
        Ok(())
    }

    /// Adds a row of `peer_chunks` (rows must come before those of `peers`).
    fn chunk_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        let data_at = if self.version >= 3 { 6 } else { 2 };
        let (count, data) = {
            let c = Cols::new(self, "peer_chunks", row, row.len())?;
            let count = usize::try_from(c.i64(1, "peers")?).map_err(|_| c.bad("peers", "negative"))?;
            (count, c.opt_blob(data_at, "data")?.ok_or_else(|| c.bad("data", "NULL"))?)
        };
        chunks::decode(data, count, &mut self.chunked)
            .map_err(|reason| SessionError::corrupt(&self.resource, format!("peer_chunks.data: {reason}")))
    }

    /// Adds a row of [`LOAD_PEER_REMOVALS`].
    fn removal_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        let c = Cols::new(self, "peer_removals", row, 2)?;
        let class = class_from_code(c.i64(0, "class")?).ok_or_else(|| c.bad("class", "unknown id space"))?;
        let id = c.i64(1, "id")?;
        self.removals.push(PeerKey::new(class, id));
        Ok(())
    }

    /// Adds the row of [`LOAD_SESSION`].
    fn session_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
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
    fn dc_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
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
    fn channel_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        let c = Cols::new(self, "channels", row, 2)?;
        let (id, pts) = (c.i64(0, "id")?, c.i32(1, "pts")?);
        self.data.updates.channels.insert(id, pts);
        Ok(())
    }

    /// Adds a row of [`LOAD_PEERS`].
    fn peer_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
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
    fn min_context_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        // From version 3 on the row starts with its position (under the checksum).
        let at = usize::from(self.version >= 3);
        let c = Cols::new(self, "min_contexts", row, 3 + at)?;
        let context = MinPeerContext::new(c.i64(at, "user_id")?, c.i64(at + 1, "peer_id")?, c.i32(at + 2, "msg_id")?);
        self.data.min_contexts.push(context);
        Ok(())
    }

    /// The session, or `None` when nothing is stored (no `session` row and no other row).
    ///
    /// [`SessionError::Corrupt`] when rows are stored without the session row, or (version 3
    /// on) when a table's rows do not add up to the sum the session row holds: a row went
    /// missing, or one was added, behind the schema's back.
    pub fn finish(mut self) -> Result<Option<SessionData>, SessionError> {
        if !self.present {
            if self.other_rows {
                return Err(SessionError::corrupt(
                    &self.resource,
                    "session: the row is missing while other tables hold rows (DC options, keys, peers)",
                ));
            }
            return Ok(None);
        }
        self.check_sums(&SUMMED)?;
        let chunked = std::mem::take(&mut self.chunked);
        self.data.peers = Self::build_peers(chunked, std::mem::take(&mut self.overlay), &self.removals);
        Ok(Some(self.data))
    }

    /// The peer cache alone, from the rows of [`LOAD_PEER_QUERIES`]; when the session row was
    /// among them, its sums of the peer tables are checked.
    pub fn finish_peers(self) -> Result<PeerCache, SessionError> {
        self.check_sums(&[Table::PeerChunks, Table::Peers, Table::PeerRemovals])?;
        Ok(Self::build_peers(self.chunked, self.overlay, &self.removals))
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
        assert_eq!(migrations_from(0).map(|m| m.map(|(v, _)| v).collect::<Vec<_>>()).ok(), Some(vec![1, 2, 3]));
        assert_eq!(migrations_from(1).map(|m| m.map(|(v, _)| v).collect::<Vec<_>>()).ok(), Some(vec![2, 3]));
        assert_eq!(migrations_from(SCHEMA_VERSION).map(|m| m.count()).ok(), Some(0));
    }

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

    /// The row [`LOAD_PEER_CHUNKS`] reads back for a chunk insert: every column, crc last.
    fn chunk_row_of(st: &Statement) -> Vec<SqlValueRef<'_>> {
        st.params.iter().map(SqlValue::as_ref).collect()
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
        let removal = removal_params(PeerKey::user(9_999));
        rows.row(Table::PeerRemovals, &removal.iter().map(SqlValue::as_ref).collect::<Vec<_>>()).expect("removal");
        let peers = rows.finish_peers().expect("no session row: no sums to check");
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
        let err = SessionRows::new("t").row(Table::PeerChunks, &chunk_row_of(&st)).expect_err("damaged");
        assert!(matches!(err, SessionError::Corrupt { .. }) && err.to_string().contains("peer_chunks"), "{err}");
        // With the row's checksum made to match, the blob's own checksum still catches it.
        let values: Vec<SqlValueRef<'_>> = st.params[..7].iter().map(SqlValue::as_ref).collect();
        let crc = row_crc(Table::PeerChunks, &values);
        let mut row = values.clone();
        row.push(SqlValueRef::Integer(crc));
        let err = SessionRows::new("t").row(Table::PeerChunks, &row).expect_err("damaged blob");
        assert!(err.to_string().contains("peer_chunks.data"), "{err}");
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
        assert!(matches!(rows.finish(), Ok(None)));
    }
}
