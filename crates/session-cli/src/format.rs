//! Every session format the tool reads or writes, its stable name, and what it can hold.

use std::fmt;

use session_file::legacy::LegacyFormat;
use session_sqlite::foreign::ForeignFormat;
use session_string::StringFormat;

/// A session format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Our log file (`session_file::BinaryFileBackend`).
    File,
    /// Our SQLite database (`session_sqlite::SqliteBackend`).
    Sqlite,
    /// A local libSQL database (same schema as [`Format::Sqlite`]).
    LibsqlLocal,
    /// A remote libSQL database.
    LibsqlRemote,
    /// A layer-client 0.5 or ferogram binary file.
    Legacy(LegacyFormat),
    /// The native string of layer-client 0.5 or ferogram (base64url of their binary file).
    NativeString(LegacyFormat),
    /// Another library's SQLite `.session` file.
    ForeignSqlite(ForeignFormat),
    /// A GramJS `StoreSession` folder.
    GramjsStore,
    /// A string session.
    String(StringFormat),
}

/// Which fields of the model a format can hold at all (whatever a particular session holds).
/// A field a format cannot hold is `null` in `inspect --json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Carries {
    /// DC addresses and ports (Pyrogram stores only the DC id).
    pub address: bool,
    /// The logged-in user's id.
    pub user: bool,
    /// Whether the account is a bot.
    pub bot: bool,
    /// Test-server mode.
    pub test_mode: bool,
    /// The api_id.
    pub api_id: bool,
    /// The common update state (pts, qts, date, seq).
    pub update_state: bool,
    /// Per-channel pts.
    pub channels: bool,
    /// Cached peers.
    pub peers: bool,
}

impl Carries {
    const ALL: Carries = Carries {
        address: true,
        user: true,
        bot: true,
        test_mode: true,
        api_id: true,
        update_state: true,
        channels: true,
        peers: true,
    };
    const NONE: Carries = Carries {
        address: false,
        user: false,
        bot: false,
        test_mode: false,
        api_id: false,
        update_state: false,
        channels: false,
        peers: false,
    };
}

impl Format {
    /// The stable machine-readable name (the `format` field of `inspect --json`).
    pub fn id(self) -> String {
        match self {
            Format::File => "file".into(),
            Format::Sqlite => "sqlite".into(),
            Format::LibsqlLocal => "libsql".into(),
            Format::LibsqlRemote => "libsql-remote".into(),
            Format::Legacy(f) => format!("{}-file", f.name().replace(' ', "-")),
            Format::NativeString(f) => format!("{}-string", f.name().replace(' ', "-")),
            Format::ForeignSqlite(f) => format!("{}-sqlite", f.name().to_lowercase()),
            Format::GramjsStore => "gramjs-store".into(),
            Format::String(f) => string_id(f).into(),
        }
    }

    /// A human-readable description.
    pub fn describe(self) -> String {
        match self {
            Format::File => "layer session file (log)".into(),
            Format::Sqlite => "layer SQLite database".into(),
            Format::LibsqlLocal => "layer libSQL database (local)".into(),
            Format::LibsqlRemote => "layer libSQL database (remote)".into(),
            Format::Legacy(f) => format!("{f} binary session file"),
            Format::NativeString(f) => format!("{f} native string"),
            Format::ForeignSqlite(f) => format!("{} SQLite session file", f.name()),
            Format::GramjsStore => "GramJS StoreSession folder".into(),
            Format::String(f) => format!("{} string session", f.name()),
        }
    }

    /// The format version where the format has one.
    pub fn version(self) -> Option<u32> {
        match self {
            Format::Legacy(f) | Format::NativeString(f) => Some(u32::from(f.version())),
            Format::File | Format::Sqlite | Format::LibsqlLocal | Format::LibsqlRemote => Some(1),
            Format::String(StringFormat::Full | StringFormat::Compact) => Some(session_string::STRING_VERSION),
            Format::String(StringFormat::MtcuteV3) => Some(3),
            Format::String(StringFormat::FerogramCompactV1) => Some(1),
            Format::String(StringFormat::FerogramCompactV2) => Some(2),
            Format::ForeignSqlite(f) => f.export_version(),
            _ => None,
        }
    }

    /// What the format can hold.
    pub fn carries(self) -> Carries {
        let address_only = Carries { address: true, ..Carries::NONE };
        match self {
            Format::File | Format::Sqlite | Format::LibsqlLocal | Format::LibsqlRemote => Carries::ALL,
            Format::Legacy(f) | Format::NativeString(f) => legacy(f),
            Format::ForeignSqlite(f) => match f {
                ForeignFormat::Telethon => Carries { bot: false, test_mode: false, api_id: false, ..Carries::ALL },
                ForeignFormat::Pyrogram => {
                    Carries { address: false, update_state: false, channels: false, ..Carries::ALL }
                }
                ForeignFormat::Pyrofork => Carries { address: false, ..Carries::ALL },
                ForeignFormat::Mtcute => Carries { api_id: false, ..Carries::ALL },
                _ => Carries::ALL,
            },
            Format::GramjsStore => Carries { address: true, peers: true, ..Carries::NONE },
            Format::String(f) => match f {
                StringFormat::Full => Carries::ALL,
                StringFormat::Compact => {
                    Carries { address: true, user: true, bot: true, test_mode: true, ..Carries::NONE }
                }
                StringFormat::Telethon | StringFormat::GramJs => address_only,
                StringFormat::Pyrogram => {
                    Carries { user: true, bot: true, test_mode: true, api_id: true, ..Carries::NONE }
                }
                StringFormat::PyrogramLegacy | StringFormat::PyrogramLegacyU32 => {
                    Carries { user: true, bot: true, test_mode: true, ..Carries::NONE }
                }
                StringFormat::MtcuteV3 => {
                    Carries { address: true, user: true, bot: true, test_mode: true, ..Carries::NONE }
                }
                StringFormat::FerogramCompactV1 | StringFormat::FerogramCompactV2 => {
                    Carries { address: true, user: true, ..Carries::NONE }
                }
                StringFormat::LayerClient => legacy(LegacyFormat::LayerV3),
                StringFormat::Ferogram => legacy(LegacyFormat::FerogramV8),
                _ => address_only,
            },
        }
    }

    /// True for the formats of this project (which hold everything).
    pub fn is_ours(self) -> bool {
        matches!(
            self,
            Format::File
                | Format::Sqlite
                | Format::LibsqlLocal
                | Format::LibsqlRemote
                | Format::String(StringFormat::Full)
        )
    }
}

fn legacy(f: LegacyFormat) -> Carries {
    let v2 = f.version() >= 2;
    Carries { address: true, update_state: v2, channels: v2, peers: v2, ..Carries::NONE }
}

fn string_id(f: StringFormat) -> &'static str {
    match f {
        StringFormat::Full => "string",
        StringFormat::Compact => "string-compact",
        StringFormat::Telethon => "telethon-string",
        StringFormat::GramJs => "gramjs-string",
        StringFormat::Pyrogram => "pyrogram-string",
        StringFormat::PyrogramLegacy => "pyrogram-string-legacy",
        StringFormat::PyrogramLegacyU32 => "pyrogram-string-legacy-u32",
        StringFormat::MtcuteV3 => "mtcute-string",
        StringFormat::FerogramCompactV1 => "ferogram-compact-v1-string",
        StringFormat::FerogramCompactV2 => "ferogram-compact-v2-string",
        StringFormat::LayerClient => "layer-string",
        StringFormat::Ferogram => "ferogram-string",
        _ => "string-other",
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}
