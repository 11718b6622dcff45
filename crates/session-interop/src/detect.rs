//! Which format a session is in, and the dispatch of string imports and exports to each
//! format's codec.
//!
//! Strings:
//!
//! | [`StringFormat`] | holds | export needs |
//! | --- | --- | --- |
//! | `Full` (`session-string`) | everything | nothing |
//! | `Compact` (`session-string`) | home DC (id, address, key), user, test mode | home DC with key |
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
//! [`import_string`]; the rest of the session is kept); Pyrogram
//! strings hold no address, so the home DC gets Telegram's published address from
//! [`session_core::dc_table`]; ferogram compact strings hold no bot flag (imported as `false`).

use base64::Engine;
use session_core::{SessionData, SessionError};

use crate::b64;
use crate::binary::{self, LegacyFormat};
use crate::ferogram::{binary as ferogram_binary, string as ferogram};
use crate::layer05;
use crate::mtcute::{sqlite as mtcute_sqlite, string as mtcute};
use crate::pyrogram::{sqlite as pyrogram_sqlite, string as pyrogram};
use crate::sqlite::format::{ExportPlan, ForeignFormat, Imported as SqliteImported};
use crate::sqlite::value::ForeignFile;
use crate::string_format::{parse_our_prefix, Imported, StringFormat};
use crate::telethon::{sqlite as telethon_sqlite, string as telethon};

/// Names the format of a string session of another library. Fails when the string is in no
/// supported format, with the reason the most likely format rejected it, and for
/// `session-string`'s own forms (see [`import_string`]).
///
/// A Telethon IPv6 string and a GramJS string for a 14-character IPv4 address have the same
/// length and prefix; they are told apart by the base64 alphabet where it shows, and otherwise by
/// which layout the bytes fit (GramJS's address length field, e.g. `00 0e`, followed by that much
/// address text).
pub fn detect_string(s: &str) -> Result<StringFormat, SessionError> {
    import_string(s).map(|i| i.format)
}

/// Reads a string session of another library, saying which values of the string were dropped
/// (see [`Imported::warnings`]). Leading and trailing whitespace is ignored.
///
/// `session-string`'s own forms (`L1.`, `Lc1.`) are refused with an error that says so: that
/// crate decodes them (its `foreign::import` reads every format, ours included).
pub fn import_string(s: &str) -> Result<Imported, SessionError> {
    let t = s.trim();
    let lead = s.len() - s.trim_start().len();
    if t.is_empty() {
        return Err(SessionError::invalid("string session", "the string is empty"));
    }
    if parse_our_prefix(t).is_some() {
        return Err(SessionError::invalid(
            "string session",
            "this is a layer-client string (full or compact form): read it with session_string::decode",
        ));
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
    match binary::decode(bytes) {
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

/// Writes `data` in another library's string `format`. Fails, naming what is missing, when the
/// format cannot hold what it needs (see the module table); never writes a placeholder for a
/// required field. `session-string`'s own forms are written by that crate: asking for them here
/// is an error.
pub fn export_string(data: &SessionData, format: StringFormat) -> Result<String, SessionError> {
    match format {
        StringFormat::Full | StringFormat::Compact => Err(SessionError::invalid(
            format.name(),
            "layer-client's own string forms are written by session_string::encode_full / encode_compact",
        )),
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

/// Tells which library wrote a foreign SQLite file, from its tables and columns.
///
/// Fails, listing the tables found, when the file is none of the formats in
/// [`crate::sqlite`]; a caller that knows other layouts (its own) checks them after this.
pub fn detect_sqlite(file: &ForeignFile<'_>) -> Result<ForeignFormat, SessionError> {
    let tables = file.tables()?;
    let has = |t: &str| tables.iter().any(|n| n == t);
    if has("mtcute_migrations") && has("key_value") {
        return Ok(ForeignFormat::Mtcute);
    }
    if has("version") && has("sessions") {
        let columns = file.columns("version")?;
        if columns.iter().any(|c| c == "version") && has("entities") {
            return Ok(ForeignFormat::Telethon);
        }
        if columns.iter().any(|c| c == "number") && has("peers") {
            return pyrogram_sqlite::detect(file);
        }
    }
    Err(file.invalid(&format!(
        "not a Telethon, Pyrogram-family or mtcute session (tables: {})",
        if tables.is_empty() { "none".to_owned() } else { tables.join(", ") }
    )))
}

/// Reads the session of a foreign SQLite file of any supported format.
pub fn import_sqlite(file: &ForeignFile<'_>) -> Result<SqliteImported, SessionError> {
    let format = detect_sqlite(file)?;
    let (session, warnings) = match format {
        ForeignFormat::Telethon => (telethon_sqlite::read(file)?, Vec::new()),
        ForeignFormat::Mtcute => (mtcute_sqlite::read(file)?, Vec::new()),
        _ => pyrogram_sqlite::read(file)?,
    };
    Ok(SqliteImported::new(format, session, warnings))
}

/// What to run on a new, empty file to make it a `format` file holding `data`; `now` (Unix
/// seconds) is the date Telethon stamps on each entity.
///
/// What the format cannot hold is left out: DCs other than the home DC, "min" peers (their
/// hashes are only valid in context), peer subtypes the format lacks; usernames are written in
/// lowercase, as the libraries themselves store them. The session must have a home DC. mtcute
/// storage is read, not written.
pub fn export_sqlite(data: &SessionData, format: ForeignFormat, now: i64) -> Result<ExportPlan, SessionError> {
    match format {
        ForeignFormat::Mtcute => Err(SessionError::invalid("export format", "mtcute storage is read, not written")),
        ForeignFormat::Telethon => telethon_sqlite::write(data, now),
        other => pyrogram_sqlite::write(data, other),
    }
}
