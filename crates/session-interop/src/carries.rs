//! What each format can hold at all (whatever a particular session holds), and the stable
//! machine-readable names of the formats (the `format` field of `layer-session inspect --json`).

use crate::binary::LegacyFormat;
use crate::sqlite::format::ForeignFormat;
use crate::string_format::StringFormat;

/// Which fields of the model a format can hold. A field a format cannot hold is `null` in
/// `layer-session inspect --json`.
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
    /// Every field (our own formats).
    pub const ALL: Carries = Carries {
        address: true,
        user: true,
        bot: true,
        test_mode: true,
        api_id: true,
        update_state: true,
        channels: true,
        peers: true,
    };

    /// No field.
    pub const NONE: Carries = Carries {
        address: false,
        user: false,
        bot: false,
        test_mode: false,
        api_id: false,
        update_state: false,
        channels: false,
        peers: false,
    };

    /// A GramJS StoreSession folder: the home DC's address and key, and peers.
    pub const GRAMJS_STORE: Carries = Carries { address: true, peers: true, ..Carries::NONE };

    /// A layer-client 0.5 / ferogram binary file (or their native string) of this version.
    pub fn binary(f: LegacyFormat) -> Carries {
        let v2 = f.version() >= 2;
        Carries { address: true, update_state: v2, channels: v2, peers: v2, ..Carries::NONE }
    }

    /// A foreign SQLite file.
    pub fn sqlite(f: ForeignFormat) -> Carries {
        match f {
            ForeignFormat::Telethon => Carries { bot: false, test_mode: false, api_id: false, ..Carries::ALL },
            ForeignFormat::Pyrogram => Carries { address: false, update_state: false, channels: false, ..Carries::ALL },
            ForeignFormat::Pyrofork => Carries { address: false, ..Carries::ALL },
            ForeignFormat::Mtcute => Carries { api_id: false, ..Carries::ALL },
            ForeignFormat::Kurigram => Carries::ALL,
        }
    }

    /// A string session.
    pub fn string(f: StringFormat) -> Carries {
        match f {
            StringFormat::Full => Carries::ALL,
            StringFormat::Compact | StringFormat::MtcuteV3 => {
                Carries { address: true, user: true, bot: true, test_mode: true, ..Carries::NONE }
            }
            StringFormat::Telethon | StringFormat::GramJs => Carries { address: true, ..Carries::NONE },
            StringFormat::Pyrogram => Carries { user: true, bot: true, test_mode: true, api_id: true, ..Carries::NONE },
            StringFormat::PyrogramLegacy | StringFormat::PyrogramLegacyU32 => {
                Carries { user: true, bot: true, test_mode: true, ..Carries::NONE }
            }
            StringFormat::FerogramCompactV1 | StringFormat::FerogramCompactV2 => {
                Carries { address: true, user: true, ..Carries::NONE }
            }
            StringFormat::LayerClient => Carries::binary(LegacyFormat::LayerV3),
            StringFormat::Ferogram => Carries::binary(LegacyFormat::FerogramV8),
        }
    }
}

/// The stable name of a layer-client / ferogram binary file format, e.g. `layer-v3-file`.
pub fn binary_file_id(f: LegacyFormat) -> String {
    format!("{}-file", f.name().replace(' ', "-"))
}

/// The stable name of a layer-client / ferogram native string format, e.g. `ferogram-v8-string`.
pub fn native_string_id(f: LegacyFormat) -> String {
    format!("{}-string", f.name().replace(' ', "-"))
}

/// The stable name of a foreign SQLite format, e.g. `telethon-sqlite`.
pub fn sqlite_id(f: ForeignFormat) -> String {
    format!("{}-sqlite", f.name().to_lowercase())
}

/// The stable name of a GramJS StoreSession folder.
pub const GRAMJS_STORE_ID: &str = "gramjs-store";

/// The stable name of a string format, e.g. `telethon-string`.
pub fn string_id(f: StringFormat) -> &'static str {
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
    }
}

/// The format version of a string format where it has one of its own (`None` for
/// `session-string`'s forms, whose version that crate holds, and for unversioned formats).
pub fn string_version(f: StringFormat) -> Option<u32> {
    match f {
        StringFormat::MtcuteV3 => Some(3),
        StringFormat::FerogramCompactV1 => Some(1),
        StringFormat::FerogramCompactV2 => Some(2),
        _ => None,
    }
}
