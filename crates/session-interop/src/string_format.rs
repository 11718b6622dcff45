//! The string session formats: their names, what an import returns, the prefix of our own
//! forms, and the helpers every single-DC string codec shares.

use std::fmt;

use session_core::{AuthKey, DcOption, SessionData, SessionError};

/// A string session format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StringFormat {
    /// `session-string`'s full form (`L1.` + codec bytes).
    Full,
    /// `session-string`'s compact form (`Lc1.`).
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

    /// True for `session-string`'s own forms ([`StringFormat::Full`], [`StringFormat::Compact`]),
    /// which that crate reads and writes; this crate only recognizes their prefix.
    pub fn is_ours(self) -> bool {
        matches!(self, StringFormat::Full | StringFormat::Compact)
    }
}

impl fmt::Display for StringFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A string session read by an import, with what the import left out.
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
    /// An import that dropped nothing.
    pub fn new(session: SessionData, format: StringFormat) -> Self {
        Self { format, session, warnings: Vec::new() }
    }
}

/// Which of `session-string`'s two forms a string is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OurForm {
    /// `L<version>.`: the whole session.
    Full,
    /// `Lc<version>.`: home DC, key, user, test mode.
    Compact,
}

/// Parses the prefix of `session-string`'s own forms: `L` + optional `c` + decimal version +
/// `.`. Returns the form, the version and the length of the prefix; `None` when the string does
/// not start like one of ours (no base64 text contains `.`, so this cannot mistake a foreign
/// string for ours). Here, below both, because the foreign import must step aside for our
/// strings and our decoder must name a foreign string given to it.
pub fn parse_our_prefix(s: &str) -> Option<(OurForm, u32, usize)> {
    let rest = s.strip_prefix('L')?;
    let (form, rest, skip) = match rest.strip_prefix('c') {
        Some(r) => (OurForm::Compact, r, 2),
        None => (OurForm::Full, rest, 1),
    };
    let dot = rest.bytes().take(12).position(|b| b == b'.')?;
    let digits = &rest[..dot];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let version = digits.parse::<u32>().unwrap_or(u32::MAX);
    Some((form, version, skip + dot + 1))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(parse_our_prefix("L1.AAAA"), Some((OurForm::Full, 1, 3)));
        assert_eq!(parse_our_prefix("Lc12.AAAA"), Some((OurForm::Compact, 12, 5)));
        assert_eq!(parse_our_prefix("LAAAA"), None);
        assert_eq!(parse_our_prefix("L.AA"), None);
        assert_eq!(parse_our_prefix("1AAA"), None);
    }
}
