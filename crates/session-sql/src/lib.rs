#![doc = include_str!("../README.md")]
//! ## Tables (schema version 5)
//!
//! A database holds any number of named sessions. `sessions` maps each name to its id, and
//! every other table is keyed by that id first (`sid`): every statement of a plan and every
//! load query takes it as `?1`, so the rows of two sessions never meet (see [`SessionId`]).
//!
//! | table | key | holds |
//! | --- | --- | --- |
//! | `sessions` | `id` | `name` (unique); `default` is id 0 (since version 4) |
//! | `session` | `sid` (one row per session) | home DC, user, test mode, api_id, common update state, future auth token; the row's `crc`, and one checksum sum per other table (`dcs_sum`, `channels_sum`, `chunks_sum`, `peers_sum`, `removals_sum`, `contexts_sum`, since version 3). No row: no session. |
//! | `dcs` | (`sid`, `id`, `key_flags`) | one row per DC option: flags, `ip` text, `port`, `auth_key` (256 bytes or NULL), salt, time offset |
//! | `channels` | (`sid`, bare channel `id`) | per-channel pts |
//! | `peer_chunks` | (`sid`, `pos`) | the bulk of the peer cache: up to 4,096 peers per row in key order, packed in a checksummed blob (`data`), with their count (`peers`) and the keys of the first and last (`lo_class`, `lo_id`, `hi_class`, `hi_id`) (since version 2) |
//! | `peers` | (`sid`, `class`, `id`) | peers written since the chunks were: bare id in its id space (0 user, 1 basic group, 2 channel), `kind`, `access_hash`, `min`, `usernames` (JSON array or NULL), `phone` |
//! | `peer_removals` | (`sid`, `class`, `id`) | peers removed since the chunks were written (since version 2) |
//! | `min_contexts` | (`sid`, `pos`) | the ordered "min" peer contexts |
//! | `seal` | `id` (0; one row or none) | a sealed database's key id and passphrase derivation record (since version 5, see [`seal`]) |
//!
//! Since version 5 every table but `peer_removals` has a `sealed` text column: NULL in a plain
//! database; in a sealed one it holds the row's values sealed, and the columns it replaces hold
//! fixed placeholders ([`seal`]).
//!
//! ## Checksums (since version 3)
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
//! or a row too many is [`SessionError::Corrupt`](session_core::SessionError::Corrupt), never another session. A `session` row that
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
//! A row's `crc` does not cover its `sid`, and each session row holds the sums of its own
//! session's rows: a row that moved to another session (a damaged key) breaks the sums of both.
//!
//! Version 4 keyed every table by the session: its migration makes `sessions` with `default`
//! as id 0, and rebuilds each table with a `sid` column, moving every row of the older database
//! to session 0 as it is (checksums and sums stay valid, so nothing is recomputed).
//!
//! Version 5 added `seal` and the `sealed` columns; its migration changes no row (a NULL
//! `sealed` is outside a row's checksum).
//!
//! Version 1 had only `peers`; its rows are read as they are (an overlay over no chunks).
//! Version 3 added the checksums: its migration ([`MIGRATIONS`] entry 2, then
//! [`backfill_queries`] and [`backfill_statement`] for every existing row, then
//! [`backfill_sums`], in the same transaction) computes them for the rows already there.
//!
//! `PRAGMA user_version` holds the schema version and `PRAGMA application_id` is [`APPLICATION_ID`].
//!
//! ## Driving it
//!
//! - Open: read `PRAGMA user_version`, then [`migrations_from`] gives the steps to run, each in
//!   its own transaction together with [`set_version_sql`] and, for every query of
//!   [`backfill_queries`] of the version it reaches, the [`backfill_statement`] of each row,
//!   then [`backfill_sums`].
//!   Migrations of concurrent openers: read the version again inside the write transaction.
//! - Name: [`register_session`] gives the session's id ([`DEFAULT_SESSION_ID`] for `default`).
//! - Persist: run [`persist_plan`] in one transaction; save: [`save_plan`]; delete: [`delete_plan`].
//! - Load: run each query of [`LOAD_QUERIES`] (the session's id as `?1`) and hand every row to
//!   a [`SessionRows`], then [`SessionRows::finish`] checks the sums.
//! - List: [`LIST_SESSIONS_WITH_LEASES`] (or [`LIST_SESSIONS`] when the lease tables do not
//!   exist), each row read by [`SessionInfo::from_row`].

mod checksum;
mod chunks;
mod codes;
pub mod dialect;
pub mod lease;
mod migrations;
mod plan;
mod rows;
pub mod seal;
mod sessions;
mod table;
mod value;

pub use checksum::row_crc;
pub use codes::{class_code, kind_code};
pub use migrations::{
    backfill_queries, backfill_statement, backfill_sums, migrations_from, set_version_sql, APPLICATION_ID, MIGRATIONS,
    SCHEMA_VERSION, TABLES,
};
pub use plan::{
    compact_plan, compact_plan_sealed, delete_plan, may_be_chunked, persist_plan, persist_plan_known,
    persist_plan_sealed, save_plan, save_plan_sealed, Known, StoredRows,
};
pub use rows::{
    chunk_range, load_queries, SessionRows, LOAD_CHANNELS, LOAD_CHUNK_RANGES, LOAD_DCS, LOAD_MIN_CONTEXTS, LOAD_PEERS,
    LOAD_PEER_CHUNKS, LOAD_PEER_CHUNKS_AFTER, LOAD_PEER_QUERIES, LOAD_PEER_REMOVALS, LOAD_QUERIES, LOAD_SESSION,
};
pub use seal::{open_seal, DbSeal, SealRecord, Sealer, LOAD_SEAL, OTHER_STORED_SESSIONS, WRITE_SEAL};
pub use sessions::{
    check_name, is_default, register_session, session_id, SessionId, SessionInfo, DEFAULT_SESSION_ID, LIST_SESSIONS,
    LIST_SESSIONS_WITH_LEASES, REGISTER_SESSION, SESSION_ID,
};
pub use table::Table;
pub use value::{SqlValue, SqlValueRef, Statement};
