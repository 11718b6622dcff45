//! Other libraries' string sessions: detect, import and export, beside this crate's own forms.
//!
//! The codecs of the other libraries' formats moved to [`session_interop`] (see
//! [`session_interop::detect`] for the table of what each format holds and what an export
//! needs); [`StringFormat`] and [`Imported`] are its types, re-exported here and kept for 0.6.
//! The functions here read and write every string format, ours included: a string with our
//! prefix goes to [`crate::decode`], any other to [`session_interop::import_string`].

use session_core::{SessionData, SessionError};
use session_interop::string_format::{parse_our_prefix, OurForm};

pub use session_interop::{Imported, StringFormat};

use crate::ours;

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

/// Reads a string session of any supported format. Leading and trailing whitespace is ignored.
/// Values dropped on the way are not reported; [`import_with_warnings`] reports them.
pub fn import(s: &str) -> Result<(SessionData, StringFormat), SessionError> {
    import_with_warnings(s).map(|i| (i.session, i.format))
}

/// [`import`], also saying which values of the string were dropped (see [`Imported::warnings`]).
pub fn import_with_warnings(s: &str) -> Result<Imported, SessionError> {
    if ours::is_sealed(s) {
        // `Sealed`, naming the key id: not a foreign string, and not to be guessed at.
        return ours::decode(s).map(|d| Imported::new(d, StringFormat::Full));
    }
    match parse_our_prefix(s.trim()) {
        Some((form, ..)) => {
            let format = match form {
                OurForm::Full => StringFormat::Full,
                OurForm::Compact => StringFormat::Compact,
            };
            Ok(Imported::new(ours::decode(s)?, format))
        }
        None => session_interop::import_string(s),
    }
}

/// Writes `data` in `format`. Fails, naming what is missing, when the format cannot hold what it
/// needs (see the table in [`session_interop::detect`]); never writes a placeholder for a
/// required field.
pub fn export(data: &SessionData, format: StringFormat) -> Result<String, SessionError> {
    match format {
        StringFormat::Full => ours::encode_full(data),
        StringFormat::Compact => ours::encode_compact(data),
        other => session_interop::export_string(data, other),
    }
}
