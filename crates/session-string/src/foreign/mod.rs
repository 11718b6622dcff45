//! Other libraries' string sessions: detect, import and export.
//!
//! | [`StringFormat`] | holds | export needs |
//! | --- | --- | --- |
//! | `Full` (ours) | everything | nothing |
//! | `Compact` (ours) | home DC (id, address, key), user, test mode | home DC with key |
//! | `Telethon` | home DC id, its IPv4 or IPv6 address and port, key | home DC with key |
//! | `GramJs` | home DC id, its address as text, port (≤ 32767), key | home DC with key |
//! | `Pyrogram` | home DC id, api_id, test mode, key, user id, bot flag (no address) | key, api_id, user |
//! | `PyrogramLegacy` | as `Pyrogram` without api_id (356 chars) | key, user |
//! | `PyrogramLegacyU32` | as `PyrogramLegacy` with a 32-bit user id (351 chars) | key, user id < 2³² |
//! | `MtcuteV3` | home DC (id, address, test mode), media DC, user id and bot flag, key | home DC with key, user id within ±2⁵³ |
//! | `FerogramCompactV2` | home DC id, IPv4/IPv6 address and port, user id, key | home DC with key |
//! | `FerogramCompactV1` | as V2 plus the home DC's server salt (and seq/layer we do not keep) | home DC with key |
//! | `LayerClient` | layer-client 0.5's binary session (read: v1-v3; written: v3): every DC, update state, peers (users and channels), no user | at most 255 DCs and 65,535 peers/channels; no basic groups, communities, min contexts or token |
//! | `Ferogram` | ferogram's binary session (read: v2-v8; written: v8): as `LayerClient` plus basic groups, channel kinds, communities, min contexts and the future auth token | at most 255 DCs and 65,535 peers/channels/min contexts |
//!
//! Everything a format cannot hold is dropped on export (peers, update state and the other DCs
//! for every single-DC format; the user for Telethon and GramJS; test mode for Telethon, GramJS
//! and ferogram compact, whose address already points at the test servers). What a format must
//! hold and we do not have is an error that names it, never a made-up value. On import, fields
//! the format does not carry get their defaults: no user, `test_mode = false`, no api_id (also
//! when a Pyrogram string's unsigned api_id is above `i32::MAX`, with a warning from
//! [`import_with_warnings`]; the rest of the session is kept); Pyrogram
//! strings hold no address, so the home DC gets Telegram's published address from
//! [`session_core::dc_table`]; ferogram compact strings hold no bot flag (imported as `false`).

mod ferogram;
mod mtcute;
mod pyrogram;
mod telethon;

use std::fmt;

use base64::Engine;
use session_core::{AuthKey, DcOption, SessionData, SessionError};
use session_interop::binary::{self as legacy, LegacyFormat};
use session_interop::{ferogram as ferogram_binary, layer05};

use session_interop::b64;
use crate::ours::{self, Form};

/// A string session format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StringFormat {
    /// This crate's full form (`L1.` + codec bytes).
    Full,
    /// This crate's compact form (`Lc1.`).
    Compact,
    /// Telethon's `StringSession` (`1` + padded base64url, IPv4 or IPv6 packed).
    Telethon,
    /// GramJS's `StringSession` (`1` + padded standard base64, address as text).
    GramJs,
    /// Pyrogram (and kurigram, pyrofork) `export_session_string`: 362 characters, with api_id.
    Pyrogram,
    /// Older Pyrogram strings: 356 characters, 64-bit user id, no api_id.
    PyrogramLegacy,
    /// The oldest Pyrogram strings: 351 characters, 32-bit user id, no api_id.
    PyrogramLegacyU32,
    /// mtcute's string session, version 3.
    MtcuteV3,
    /// ferogram's compact `StringSession` version 1 (with server salt, seq and layer).
    FerogramCompactV1,
    /// ferogram's compact `StringSession` version 2 (what `export_session_string` returns).
    FerogramCompactV2,
    /// layer-client 0.5's native string (base64url of its binary session file).
    LayerClient,
    /// ferogram's native string (base64url of its binary session file).
    Ferogram,
}

impl StringFormat {
    /// Every format.
    pub const ALL: [StringFormat; 12] = [
        StringFormat::Full,
        StringFormat::Compact,
        StringFormat::Telethon,
        StringFormat::GramJs,
        StringFormat::Pyrogram,
        StringFormat::PyrogramLegacy,
        StringFormat::PyrogramLegacyU32,
        StringFormat::MtcuteV3,
        StringFormat::FerogramCompactV1,
        StringFormat::FerogramCompactV2,
        StringFormat::LayerClient,
        StringFormat::Ferogram,
    ];

    /// A human-readable name.
    pub fn name(self) -> &'static str {
        match self {
            StringFormat::Full => "layer full",
            StringFormat::Compact => "layer compact",
            StringFormat::Telethon => "Telethon",
            StringFormat::GramJs => "GramJS",
            StringFormat::Pyrogram => "Pyrogram",
            StringFormat::PyrogramLegacy => "Pyrogram (356-character legacy)",
            StringFormat::PyrogramLegacyU32 => "Pyrogram (351-character legacy)",
            StringFormat::MtcuteV3 => "mtcute v3",
            StringFormat::FerogramCompactV1 => "ferogram compact V1",
            StringFormat::FerogramCompactV2 => "ferogram compact V2",
            StringFormat::LayerClient => "layer-client 0.5 native",
            StringFormat::Ferogram => "ferogram native",
        }
    }
}

impl fmt::Display for StringFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Names the format of a string session. Fails when the string is in no supported format, with
/// the reason the most likely format rejected it.
///
/// A Telethon IPv6 string and a GramJS string for a 14-character IPv4 address have the same
/// length and prefix; they are told apart by the base64 alphabet where it shows, and otherwise by
/// which layout the bytes fit (GramJS's address length field, e.g. `00 0e`, followed by that much
/// address text).
pub fn detect(s: &str) -> Result<StringFormat, SessionError> {
    import(s).map(|(_, format)| format)
}

/// A string session read by [`import_with_warnings`], with what the import left out.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Imported {
    /// The format the string was in.
    pub format: StringFormat,
    /// What it held.
    pub session: SessionData,
    /// Values the string held that the session does not keep, one sentence each (today: a
    /// Pyrogram `api_id` above `i32::MAX`). The import did not fail over them; show them.
    pub warnings: Vec<String>,
}

impl Imported {
    fn new(session: SessionData, format: StringFormat) -> Self {
        Self { format, session, warnings: Vec::new() }
    }
}

/// Reads a string session of any supported format. Leading and trailing whitespace is ignored.
/// Values dropped on the way are not reported; [`import_with_warnings`] reports them.
pub fn import(s: &str) -> Result<(SessionData, StringFormat), SessionError> {
    import_with_warnings(s).map(|i| (i.session, i.format))
}

/// [`import`], also saying which values of the string were dropped (see [`Imported::warnings`]).
pub fn import_with_warnings(s: &str) -> Result<Imported, SessionError> {
    let t = s.trim();
    let lead = s.len() - s.trim_start().len();
    if t.is_empty() {
        return Err(SessionError::invalid("string session", "the string is empty"));
    }
    if ours::parse_prefix(t).is_some() {
        let (data, form) = ours::decode_form(t)?;
        let format = match form {
            Form::Full => StringFormat::Full,
            Form::Compact => StringFormat::Compact,
        };
        return Ok(Imported::new(data, format));
    }
    if let Some(body) = t.strip_prefix('1') {
        return telethon::import_either(body, lead + 1).map(|(data, format)| Imported::new(data, format));
    }
    let bytes = b64::decode(t, lead, "string session")?;
    import_binary(&bytes)
}

/// Dispatches the unprefixed binary formats. Candidates are tried from the most constrained
/// layout to the least; the first that reads the input exactly wins.
fn import_binary(bytes: &[u8]) -> Result<Imported, SessionError> {
    let mut first_error: Option<SessionError> = None;
    let mut note = |e: SessionError| {
        if first_error.is_none() {
            first_error = Some(e);
        }
    };
    if let Some(layout) = pyrogram::Layout::from_len(bytes.len()) {
        match pyrogram::import(bytes, layout) {
            Ok((data, warnings)) => {
                // Pyrogram strings are told apart by length alone, and a keyless layer/ferogram
                // native session of exactly that length can fit the layout too (its flag bytes
                // happen to be 0 or 1). Such bytes also read exactly as a native session, which a
                // real Pyrogram string (256 random key bytes in the middle) never does: prefer it.
                if let Ok((native, format)) = legacy_import(bytes) {
                    return Ok(Imported::new(native, format));
                }
                return Ok(Imported { format: layout.format(), session: data, warnings });
            }
            Err(e) => note(e),
        }
    }
    match bytes.first() {
        Some(1 | 2) if ferogram::is_compact_len(bytes) => match ferogram::import_compact(bytes) {
            Ok((data, format)) => return Ok(Imported::new(data, format)),
            Err(e) => note(e),
        },
        Some(3) => match mtcute::import(bytes) {
            Ok(data) => return Ok(Imported::new(data, StringFormat::MtcuteV3)),
            Err(e) => note(e),
        },
        _ => {}
    }
    match legacy_import(bytes) {
        Ok((data, format)) => Ok(Imported::new(data, format)),
        Err(e) => Err(first_error.unwrap_or(e)),
    }
}

fn legacy_import(bytes: &[u8]) -> Result<(SessionData, StringFormat), SessionError> {
    match legacy::decode(bytes) {
        Ok(session) => {
            let format = match session.format {
                LegacyFormat::LayerV1 | LegacyFormat::LayerV2 | LegacyFormat::LayerV3 => StringFormat::LayerClient,
                _ => StringFormat::Ferogram,
            };
            Ok((session.data, format))
        }
        Err(e) => Err(SessionError::invalid(
            "string session",
            format!(
                "not a Telethon, GramJS, Pyrogram, mtcute or ferogram compact string (no layout fits its \
                 {} bytes and first byte), nor a layer-client/ferogram native string: {e}",
                bytes.len()
            ),
        )),
    }
}

fn native(bytes: Result<Vec<u8>, SessionError>) -> Result<String, SessionError> {
    Ok(b64::URL_NO_PAD.encode(bytes?))
}

/// Writes `data` in `format`. Fails, naming what is missing, when the format cannot hold what it
/// needs (see the module table); never writes a placeholder for a required field.
pub fn export(data: &SessionData, format: StringFormat) -> Result<String, SessionError> {
    match format {
        StringFormat::Full => ours::encode_full(data),
        StringFormat::Compact => ours::encode_compact(data),
        StringFormat::Telethon => telethon::export_telethon(data),
        StringFormat::GramJs => telethon::export_gramjs(data),
        StringFormat::Pyrogram => pyrogram::export(data, pyrogram::Layout::Current),
        StringFormat::PyrogramLegacy => pyrogram::export(data, pyrogram::Layout::Legacy64),
        StringFormat::PyrogramLegacyU32 => pyrogram::export(data, pyrogram::Layout::Legacy32),
        StringFormat::MtcuteV3 => mtcute::export(data),
        StringFormat::FerogramCompactV1 => ferogram::export_compact(data, 1),
        StringFormat::FerogramCompactV2 => ferogram::export_compact(data, 2),
        StringFormat::LayerClient => native(layer05::encode_layer_v3(data)),
        StringFormat::Ferogram => native(ferogram_binary::encode_ferogram_v8(data)),
    }
}

/// The home DC's main option, its key and its id as a byte: what every single-DC format needs.
pub(crate) fn home_with_key(
    data: &SessionData,
    format: StringFormat,
) -> Result<(&DcOption, &AuthKey, u8), SessionError> {
    let what = format.name();
    if data.home_dc == 0 {
        return Err(SessionError::invalid(what, "cannot export: the session has no home DC"));
    }
    let option = data.home().ok_or_else(|| {
        SessionError::invalid(what, format!("cannot export: home DC {} has no address", data.home_dc))
    })?;
    let key = option.auth_key.as_ref().ok_or_else(|| {
        SessionError::invalid(what, format!("cannot export: home DC {} has no auth key", data.home_dc))
    })?;
    let dc = u8::try_from(data.home_dc).map_err(|_| {
        SessionError::invalid(what, format!("cannot export: home DC id {} does not fit in a byte", data.home_dc))
    })?;
    Ok((option, key, dc))
}

/// A session with one DC option holding `key` (if any), as the single-DC formats import.
pub(crate) fn single_dc(option: DcOption) -> SessionData {
    let mut data = SessionData::default();
    data.home_dc = option.id;
    data.dcs.insert(option.key(), option);
    data
}
