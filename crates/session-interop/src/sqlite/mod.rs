//! Other libraries' SQLite session files, without a driver: the table layouts, the SQL text that
//! reads and writes them, and row decoders/encoders over [`Value`] rows. A driver (the
//! `session-sqlite` crate's `foreign` module, over rusqlite) runs the statements.
//!
//! | format | import | export | what the file holds |
//! | --- | --- | --- | --- |
//! | [`ForeignFormat::Telethon`] (`version` 8) | yes | yes | one DC with address, port and key; entities; update state. No bot flag, no test mode, no api_id. |
//! | [`ForeignFormat::Pyrogram`] (`version` 3) | yes | yes | DC id, api_id, test mode, key, user, bot flag; peers. No address (taken from [`session_core::dc_table`]). |
//! | [`ForeignFormat::Pyrofork`] (`version` 4) | yes | yes | as Pyrogram, plus update state and extra usernames. |
//! | [`ForeignFormat::Kurigram`] (`version` 4-7) | yes | yes (7) | as Pyrogram, plus server address and port, update state, usernames. |
//! | [`ForeignFormat::Mtcute`] | yes | no | main and media DC, keys of every DC, user, update state, peers. |
//!
//! An export plan holds exactly the tables, indexes, triggers and `version` row the library
//! itself creates, so that the library opens the file as its own. Peer ids in these files are
//! "marked" (Bot API) ids; see [`session_core::PeerKey::marked`]. Detection, import and export
//! dispatch: the `detect` module.

pub mod format;
pub mod value;

pub use format::{
    ExportPlan, ForeignFormat, Imported, Statement, KURIGRAM_VERSION, PYROFORK_VERSION, PYROGRAM_VERSION,
    TELETHON_VERSION,
};
pub use value::{ForeignFile, Query, Row, Value};
