//! The Pyrogram family (Pyrogram, pyrofork, kurigram): `export_session_string` strings and the
//! `FileStorage` SQLite file.

pub(crate) mod sqlite;
pub(crate) mod string;
