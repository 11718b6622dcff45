//! The foreign SQLite formats, what an import returns and what an export asks a driver to run.

use session_core::SessionData;

use crate::sqlite::value::Value;

/// The schema version Telethon 1.45 writes.
pub const TELETHON_VERSION: u32 = 8;
/// The schema version Pyrogram 2.0 writes.
pub const PYROGRAM_VERSION: u32 = 3;
/// The schema version pyrofork 2.3 writes.
pub const PYROFORK_VERSION: u32 = 4;
/// The schema version kurigram 2.2 writes (4 to 7 are read).
pub const KURIGRAM_VERSION: u32 = 7;

/// A foreign SQLite session format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ForeignFormat {
    /// Telethon's `SQLiteSession` (schema `version` 8).
    Telethon,
    /// Pyrogram's `FileStorage` (`version` 3).
    Pyrogram,
    /// pyrofork's `FileStorage` (`version` 4).
    Pyrofork,
    /// kurigram's `SQLiteStorage` (`version` 7 when exported; 4 to 7 are read).
    Kurigram,
    /// mtcute's `SqliteStorage` (`@mtcute/node`).
    Mtcute,
}

impl ForeignFormat {
    /// Every format.
    pub const ALL: [ForeignFormat; 5] = [
        ForeignFormat::Telethon,
        ForeignFormat::Pyrogram,
        ForeignFormat::Pyrofork,
        ForeignFormat::Kurigram,
        ForeignFormat::Mtcute,
    ];

    /// The library's name.
    pub fn name(self) -> &'static str {
        match self {
            ForeignFormat::Telethon => "Telethon",
            ForeignFormat::Pyrogram => "Pyrogram",
            ForeignFormat::Pyrofork => "pyrofork",
            ForeignFormat::Kurigram => "kurigram",
            ForeignFormat::Mtcute => "mtcute",
        }
    }

    /// The schema version an export in this format writes (`None`: not exported).
    pub fn export_version(self) -> Option<u32> {
        match self {
            ForeignFormat::Telethon => Some(TELETHON_VERSION),
            ForeignFormat::Pyrogram => Some(PYROGRAM_VERSION),
            ForeignFormat::Pyrofork => Some(PYROFORK_VERSION),
            ForeignFormat::Kurigram => Some(KURIGRAM_VERSION),
            ForeignFormat::Mtcute => None,
        }
    }
}

impl std::fmt::Display for ForeignFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A session read from a foreign file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Imported {
    /// The format the file was in.
    pub format: ForeignFormat,
    /// What it held.
    pub session: SessionData,
    /// Values the file held that the session does not keep, one sentence each (today: a
    /// Pyrogram-family `api_id` outside `i32`). The import did not fail over them; show them.
    pub warnings: Vec<String>,
}

impl Imported {
    /// An import in `format` with its warnings.
    pub fn new(format: ForeignFormat, session: SessionData, warnings: Vec<String>) -> Self {
        Self { format, session, warnings }
    }
}

/// One statement of an export, with its parameters bound in order (`?` placeholders).
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    /// The SQL text (the same few texts repeat; a driver may cache them prepared).
    pub sql: &'static str,
    /// The values of its `?` placeholders.
    pub params: Vec<Value>,
}

impl Statement {
    pub(crate) fn new(sql: &'static str, params: Vec<Value>) -> Self {
        Self { sql, params }
    }
}

/// Everything an export writes into a new, empty file, to be run in one transaction: the
/// library's own `schema` (a batch of `CREATE` statements), then each statement in order.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportPlan {
    /// The tables, indexes and triggers the library itself creates.
    pub schema: &'static str,
    /// The rows: `version`, the session, peers, update state.
    pub statements: Vec<Statement>,
}
