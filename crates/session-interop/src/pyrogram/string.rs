//! Pyrogram-family strings (Pyrogram, kurigram, pyrofork): unpadded base64url of a big-endian
//! struct, told apart by length. They hold no address: DC ids map to [`session_core::dc_table`].

use base64::Engine;
use session_core::{dc_table, AuthKey, DcOption, SelfUser, SessionData, SessionError, AUTH_KEY_LEN};

use crate::b64;
use crate::reader::Reader;
use crate::string_format::{home_with_key, single_dc, StringFormat};

/// The three layouts Pyrogram has written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `>BI?256sQ?`: dc, api_id, test_mode, key, user_id, is_bot (271 bytes, 362 characters).
    Current,
    /// `>B?256sQ?`: dc, test_mode, key, user_id, is_bot (267 bytes, 356 characters).
    Legacy64,
    /// `>B?256sI?`: dc, test_mode, key, 32-bit user_id, is_bot (263 bytes, 351 characters).
    Legacy32,
}

impl Layout {
    pub(crate) fn from_len(len: usize) -> Option<Layout> {
        [Layout::Current, Layout::Legacy64, Layout::Legacy32].into_iter().find(|l| l.len() == len)
    }

    fn len(self) -> usize {
        match self {
            Layout::Current => 1 + 4 + 1 + AUTH_KEY_LEN + 8 + 1,
            Layout::Legacy64 => 1 + 1 + AUTH_KEY_LEN + 8 + 1,
            Layout::Legacy32 => 1 + 1 + AUTH_KEY_LEN + 4 + 1,
        }
    }

    pub(crate) fn format(self) -> StringFormat {
        match self {
            Layout::Current => StringFormat::Pyrogram,
            Layout::Legacy64 => StringFormat::PyrogramLegacy,
            Layout::Legacy32 => StringFormat::PyrogramLegacyU32,
        }
    }
}

fn bool_byte(b: u8, field: &str, what: &str) -> Result<bool, SessionError> {
    match b {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(SessionError::invalid(what, format!("{field} byte is {other}, expected 0 or 1"))),
    }
}

/// Reads a Pyrogram-family string; the second value holds warnings about what was dropped.
pub(crate) fn import(bytes: &[u8], layout: Layout) -> Result<(SessionData, Vec<String>), SessionError> {
    let what = layout.format().name();
    let truncated = || SessionError::invalid(what, "truncated");
    let mut r = Reader::new(bytes);
    let dc = r.u8().ok_or_else(truncated)?;
    let api_id = match layout {
        Layout::Current => Some(r.u32_be().ok_or_else(truncated)?),
        _ => None,
    };
    let test_mode = bool_byte(r.u8().ok_or_else(truncated)?, "test_mode", what)?;
    let key = r.take(AUTH_KEY_LEN).and_then(AuthKey::from_slice).ok_or_else(truncated)?;
    let user_id = match layout {
        Layout::Legacy32 => u64::from(r.u32_be().ok_or_else(truncated)?),
        _ => r.u64_be().ok_or_else(truncated)?,
    };
    let is_bot = bool_byte(r.u8().ok_or_else(truncated)?, "is_bot", what)?;
    if r.remaining() != 0 {
        return Err(SessionError::invalid(what, "trailing bytes"));
    }
    let dc = i32::from(dc);
    let addr = dc_table::address(dc, test_mode).ok_or_else(|| {
        let servers = if test_mode { "test" } else { "production" };
        SessionError::invalid(what, format!("DC {dc} has no published {servers} address (Pyrogram strings hold none)"))
    })?;
    let user_id = i64::try_from(user_id)
        .map_err(|_| SessionError::invalid(what, format!("user id {user_id} is out of range")))?;
    // Pyrogram packs api_id unsigned and reads back whatever it wrote, but Telegram's api_id is a
    // signed 32-bit `int`: a value above i32::MAX names no application. Refusing the string
    // would lose its auth key over an informational field, so the value is dropped and said so.
    let mut warnings = Vec::new();
    let api_id = api_id.and_then(|id| match i32::try_from(id) {
        Ok(id) => Some(id),
        Err(_) => {
            warnings.push(dropped_api_id(what, id));
            None
        }
    });
    let key = if key.is_zero() { None } else { Some(key) };
    let mut data = single_dc(DcOption::new(dc, addr).with_auth_key(key));
    data.test_mode = test_mode;
    data.api_id = api_id;
    data.user = if user_id == 0 { None } else { Some(SelfUser::new(user_id, is_bot)) };
    Ok((data, warnings))
}

/// The warning for an api_id that does not fit Telegram's signed 32-bit `int`.
fn dropped_api_id(what: &str, id: u32) -> String {
    format!(
        "{what}: api_id {id} was not kept: it is above {}, the largest api_id Telegram accepts (a \
         signed 32-bit int; Pyrogram stores it unsigned); the auth key and the rest of the session \
         were imported",
        i32::MAX
    )
}

pub(crate) fn export(data: &SessionData, layout: Layout) -> Result<String, SessionError> {
    let format = layout.format();
    let what = format.name();
    let (_, key, dc) = home_with_key(data, format)?;
    let published = dc_table::address(data.home_dc, data.test_mode);
    if published.is_none() {
        // Pyrogram would connect to its own table's address for this id; refuse rather than
        // write a session whose DC it cannot reach.
        return Err(SessionError::invalid(
            what,
            format!("cannot export: DC {} has no published address and Pyrogram strings hold none", data.home_dc),
        ));
    }
    let user = data.user.ok_or_else(|| {
        SessionError::invalid(what, "cannot export: Pyrogram strings need the logged-in user (id and bot flag)")
    })?;
    let mut bytes = Vec::with_capacity(layout.len());
    bytes.push(dc);
    if layout == Layout::Current {
        let api_id = data
            .api_id
            .ok_or_else(|| SessionError::invalid(what, "cannot export: Pyrogram strings need the api_id"))?;
        let api_id = u32::try_from(api_id)
            .map_err(|_| SessionError::invalid(what, format!("cannot export: api_id {api_id} is negative")))?;
        bytes.extend_from_slice(&api_id.to_be_bytes());
    }
    bytes.push(u8::from(data.test_mode));
    bytes.extend_from_slice(key.as_bytes());
    match layout {
        Layout::Legacy32 => {
            let id = u32::try_from(user.id).map_err(|_| {
                SessionError::invalid(what, format!("cannot export: user id {} does not fit 32 bits", user.id))
            })?;
            bytes.extend_from_slice(&id.to_be_bytes());
        }
        _ => {
            let id = u64::try_from(user.id)
                .map_err(|_| SessionError::invalid(what, format!("cannot export: user id {} is negative", user.id)))?;
            bytes.extend_from_slice(&id.to_be_bytes());
        }
    }
    bytes.push(u8::from(user.bot));
    Ok(b64::URL_NO_PAD.encode(&bytes))
}
