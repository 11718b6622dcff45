//! Telethon: its `StringSession` (and GramJS's, which has the same shape) and its
//! `SQLiteSession` file (schema `version` 8).

pub(crate) mod sqlite;
pub(crate) mod string;
