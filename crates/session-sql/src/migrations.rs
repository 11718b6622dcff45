//! The schema's versions and how a database reaches the newest: the migrations, the version and
//! application id pragmas, the backfill that computes the checksums of rows written before
//! version 3, and the queries that read an older database as it is (for that backfill, and for a
//! reader that does not migrate).

use session_core::SessionError;

use crate::checksum::row_crc;
use crate::table::Table;
use crate::value::{SqlValue, SqlValueRef, Statement};

/// The schema version this build writes, and the newest it reads.
pub const SCHEMA_VERSION: u32 = 5;

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
    r#"
CREATE TABLE sessions (
    id   INTEGER PRIMARY KEY,
    name TEXT UNIQUE NOT NULL
);
INSERT INTO sessions (id, name) VALUES (0, 'default');
CREATE TABLE session_v4 (
    sid               INTEGER PRIMARY KEY,
    home_dc           INTEGER NOT NULL DEFAULT 0,
    user_id           INTEGER,
    user_bot          INTEGER,
    test_mode         INTEGER NOT NULL DEFAULT 0,
    api_id            INTEGER,
    pts               INTEGER NOT NULL DEFAULT 0,
    qts               INTEGER NOT NULL DEFAULT 0,
    date              INTEGER NOT NULL DEFAULT 0,
    seq               INTEGER NOT NULL DEFAULT 0,
    future_auth_token BLOB,
    crc               INTEGER NOT NULL DEFAULT 0,
    dcs_sum           INTEGER NOT NULL DEFAULT 0,
    channels_sum      INTEGER NOT NULL DEFAULT 0,
    chunks_sum        INTEGER NOT NULL DEFAULT 0,
    peers_sum         INTEGER NOT NULL DEFAULT 0,
    removals_sum      INTEGER NOT NULL DEFAULT 0,
    contexts_sum      INTEGER NOT NULL DEFAULT 0
);
INSERT INTO session_v4 (sid, home_dc, user_id, user_bot, test_mode, api_id, pts, qts, date, seq, future_auth_token,
    crc, dcs_sum, channels_sum, chunks_sum, peers_sum, removals_sum, contexts_sum)
    SELECT 0, home_dc, user_id, user_bot, test_mode, api_id, pts, qts, date, seq, future_auth_token,
    crc, dcs_sum, channels_sum, chunks_sum, peers_sum, removals_sum, contexts_sum FROM session;
DROP TABLE session;
ALTER TABLE session_v4 RENAME TO session;
CREATE TABLE dcs_v4 (
    sid         INTEGER NOT NULL,
    id          INTEGER NOT NULL,
    key_flags   INTEGER NOT NULL,
    flags       INTEGER NOT NULL,
    ip          TEXT NOT NULL,
    port        INTEGER NOT NULL,
    auth_key    BLOB,
    server_salt INTEGER NOT NULL,
    time_offset INTEGER NOT NULL,
    crc         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sid, id, key_flags)
) WITHOUT ROWID;
INSERT INTO dcs_v4 (sid, id, key_flags, flags, ip, port, auth_key, server_salt, time_offset, crc)
    SELECT 0, id, key_flags, flags, ip, port, auth_key, server_salt, time_offset, crc FROM dcs;
DROP TABLE dcs;
ALTER TABLE dcs_v4 RENAME TO dcs;
CREATE TABLE channels_v4 (
    sid INTEGER NOT NULL,
    id  INTEGER NOT NULL,
    pts INTEGER NOT NULL,
    crc INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sid, id)
) WITHOUT ROWID;
INSERT INTO channels_v4 (sid, id, pts, crc) SELECT 0, id, pts, crc FROM channels;
DROP TABLE channels;
ALTER TABLE channels_v4 RENAME TO channels;
CREATE TABLE peer_chunks_v4 (
    sid      INTEGER NOT NULL,
    pos      INTEGER NOT NULL,
    peers    INTEGER NOT NULL,
    lo_class INTEGER NOT NULL,
    lo_id    INTEGER NOT NULL,
    hi_class INTEGER NOT NULL,
    hi_id    INTEGER NOT NULL,
    data     BLOB NOT NULL,
    crc      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sid, pos)
);
INSERT INTO peer_chunks_v4 (sid, pos, peers, lo_class, lo_id, hi_class, hi_id, data, crc)
    SELECT 0, pos, peers, lo_class, lo_id, hi_class, hi_id, data, crc FROM peer_chunks;
DROP TABLE peer_chunks;
ALTER TABLE peer_chunks_v4 RENAME TO peer_chunks;
CREATE TABLE peers_v4 (
    sid         INTEGER NOT NULL,
    class       INTEGER NOT NULL,
    id          INTEGER NOT NULL,
    kind        INTEGER NOT NULL,
    access_hash INTEGER NOT NULL,
    min         INTEGER NOT NULL,
    usernames   TEXT,
    phone       TEXT,
    crc         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sid, class, id)
) WITHOUT ROWID;
INSERT INTO peers_v4 (sid, class, id, kind, access_hash, min, usernames, phone, crc)
    SELECT 0, class, id, kind, access_hash, min, usernames, phone, crc FROM peers;
DROP TABLE peers;
ALTER TABLE peers_v4 RENAME TO peers;
CREATE TABLE peer_removals_v4 (
    sid   INTEGER NOT NULL,
    class INTEGER NOT NULL,
    id    INTEGER NOT NULL,
    crc   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sid, class, id)
) WITHOUT ROWID;
INSERT INTO peer_removals_v4 (sid, class, id, crc) SELECT 0, class, id, crc FROM peer_removals;
DROP TABLE peer_removals;
ALTER TABLE peer_removals_v4 RENAME TO peer_removals;
CREATE TABLE min_contexts_v4 (
    sid     INTEGER NOT NULL,
    pos     INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    peer_id INTEGER NOT NULL,
    msg_id  INTEGER NOT NULL,
    crc     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sid, pos)
) WITHOUT ROWID;
INSERT INTO min_contexts_v4 (sid, pos, user_id, peer_id, msg_id, crc)
    SELECT 0, pos, user_id, peer_id, msg_id, crc FROM min_contexts;
DROP TABLE min_contexts;
ALTER TABLE min_contexts_v4 RENAME TO min_contexts
"#,
    r#"
CREATE TABLE seal (
    id     INTEGER PRIMARY KEY CHECK (id = 0),
    key_id TEXT NOT NULL,
    kdf    TEXT
);
ALTER TABLE session ADD COLUMN sealed TEXT;
ALTER TABLE dcs ADD COLUMN sealed TEXT;
ALTER TABLE channels ADD COLUMN sealed TEXT;
ALTER TABLE peer_chunks ADD COLUMN sealed TEXT;
ALTER TABLE peers ADD COLUMN sealed TEXT;
ALTER TABLE min_contexts ADD COLUMN sealed TEXT
"#,
];

/// The tables of the current schema, for telling our database from someone else's.
pub const TABLES: &[&str] =
    &["sessions", "session", "dcs", "channels", "peer_chunks", "peers", "peer_removals", "min_contexts", "seal"];

// The same reads for databases of versions 1 and 2, which have no checksums (a reader that
// does not migrate, such as a read-only inspection, may meet one).
pub(crate) const LOAD_SESSION_V2: &str = "SELECT home_dc, user_id, user_bot, test_mode, api_id, pts, qts, date, seq, \
     future_auth_token FROM session WHERE id = 0";
pub(crate) const LOAD_DCS_V2: &str =
    "SELECT id, key_flags, flags, ip, port, auth_key, server_salt, time_offset FROM dcs";
pub(crate) const LOAD_CHANNELS_V2: &str = "SELECT id, pts FROM channels";
pub(crate) const LOAD_PEER_CHUNKS_V2: &str = "SELECT pos, peers, data FROM peer_chunks ORDER BY pos";
pub(crate) const LOAD_PEERS_V2: &str =
    "SELECT class, id, kind, access_hash, min, usernames, phone FROM peers ORDER BY class, id";
pub(crate) const LOAD_PEER_REMOVALS_V2: &str = "SELECT class, id FROM peer_removals ORDER BY class, id";
pub(crate) const LOAD_MIN_CONTEXTS_V2: &str = "SELECT user_id, peer_id, msg_id FROM min_contexts ORDER BY pos";

// The reads of a version 4 database (no `sealed` column).
pub(crate) const LOAD_QUERIES_V4: [(Table, &str); 7] = [
    (
        Table::Session,
        "SELECT home_dc, user_id, user_bot, test_mode, api_id, pts, qts, date, seq, future_auth_token, crc, \
         dcs_sum, channels_sum, chunks_sum, peers_sum, removals_sum, contexts_sum FROM session WHERE sid = ?1",
    ),
    (
        Table::Dcs,
        "SELECT id, key_flags, flags, ip, port, auth_key, server_salt, time_offset, crc FROM dcs WHERE sid = ?1",
    ),
    (Table::Channels, "SELECT id, pts, crc FROM channels WHERE sid = ?1"),
    (
        Table::PeerChunks,
        "SELECT pos, peers, lo_class, lo_id, hi_class, hi_id, data, crc FROM peer_chunks WHERE sid = ?1 ORDER BY pos",
    ),
    (
        Table::Peers,
        "SELECT class, id, kind, access_hash, min, usernames, phone, crc FROM peers WHERE sid = ?1 ORDER BY class, id",
    ),
    (Table::PeerRemovals, "SELECT class, id, crc FROM peer_removals WHERE sid = ?1 ORDER BY class, id"),
    (Table::MinContexts, "SELECT pos, user_id, peer_id, msg_id, crc FROM min_contexts WHERE sid = ?1 ORDER BY pos"),
];

// The reads of a version 3 database, which holds one session (no `sid` column).
pub(crate) const LOAD_QUERIES_V3: [(Table, &str); 7] = [
    (
        Table::Session,
        "SELECT home_dc, user_id, user_bot, test_mode, api_id, pts, qts, date, seq, future_auth_token, crc, \
         dcs_sum, channels_sum, chunks_sum, peers_sum, removals_sum, contexts_sum FROM session WHERE id = 0",
    ),
    (Table::Dcs, "SELECT id, key_flags, flags, ip, port, auth_key, server_salt, time_offset, crc FROM dcs"),
    (Table::Channels, "SELECT id, pts, crc FROM channels"),
    (Table::PeerChunks, "SELECT pos, peers, lo_class, lo_id, hi_class, hi_id, data, crc FROM peer_chunks ORDER BY pos"),
    (Table::Peers, "SELECT class, id, kind, access_hash, min, usernames, phone, crc FROM peers ORDER BY class, id"),
    (Table::PeerRemovals, "SELECT class, id, crc FROM peer_removals ORDER BY class, id"),
    (Table::MinContexts, "SELECT pos, user_id, peer_id, msg_id, crc FROM min_contexts ORDER BY pos"),
];

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_schema_is_refused() {
        assert!(matches!(
            migrations_from(SCHEMA_VERSION + 1).map(|m| m.count()),
            Err(SessionError::UnsupportedVersion { found, supported: SCHEMA_VERSION, .. }) if found == SCHEMA_VERSION + 1
        ));
        assert_eq!(migrations_from(0).map(|m| m.map(|(v, _)| v).collect::<Vec<_>>()).ok(), Some(vec![1, 2, 3, 4, 5]));
        assert_eq!(migrations_from(1).map(|m| m.map(|(v, _)| v).collect::<Vec<_>>()).ok(), Some(vec![2, 3, 4, 5]));
        assert_eq!(migrations_from(SCHEMA_VERSION).map(|m| m.count()).ok(), Some(0));
    }

    #[test]
    fn application_id_in_migration_matches_constant() {
        assert!(MIGRATIONS[0].contains(&format!("application_id = {APPLICATION_ID};")));
    }
}
