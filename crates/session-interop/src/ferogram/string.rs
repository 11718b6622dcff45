//! ferogram's compact `StringSession` (V1 and V2): unpadded base64url, big-endian.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use base64::Engine;
use session_core::{AuthKey, DcOption, SelfUser, SessionData, SessionError, AUTH_KEY_LEN};

use crate::b64;
use crate::reader::Reader;
use crate::string_format::{home_with_key, single_dc, StringFormat};

/// Bytes of a compact string for an IPv4 address; IPv6 adds 12.
const V2_LEN_V4: usize = 1 + 1 + 1 + 4 + 2 + 8 + AUTH_KEY_LEN;
/// V1 adds server salt (8), seq (4) and layer (4).
const V1_EXTRA: usize = 8 + 4 + 4;

/// True when the length fits a compact string of the version in the first byte.
pub(crate) fn is_compact_len(bytes: &[u8]) -> bool {
    let extra = match bytes.first() {
        Some(1) => V1_EXTRA,
        Some(2) => 0,
        _ => return false,
    };
    bytes.len() == V2_LEN_V4 + extra || bytes.len() == V2_LEN_V4 + 12 + extra
}

pub(crate) fn import_compact(bytes: &[u8]) -> Result<(SessionData, StringFormat), SessionError> {
    let mut r = Reader::new(bytes);
    let version = r.u8().unwrap_or(0);
    let format = if version == 1 { StringFormat::FerogramCompactV1 } else { StringFormat::FerogramCompactV2 };
    let what = format.name();
    let truncated = || SessionError::invalid(what, "truncated");
    let dc = r.u8().ok_or_else(truncated)?;
    let ip = match r.u8().ok_or_else(truncated)? {
        4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>().ok_or_else(truncated)?)),
        6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>().ok_or_else(truncated)?)),
        other => return Err(SessionError::invalid(what, format!("IP type byte {other} is not 4 or 6"))),
    };
    let port = r.u16_be().ok_or_else(truncated)?;
    let user_id = r.i64_be().ok_or_else(truncated)?;
    let salt = if version == 1 {
        let salt = r.i64_be().ok_or_else(truncated)?;
        // seq_no and layer: ferogram does not use them when it restores a session either.
        let _seq = r.u32_be().ok_or_else(truncated)?;
        let _layer = r.u32_be().ok_or_else(truncated)?;
        salt
    } else {
        0
    };
    let key = r.take(AUTH_KEY_LEN).and_then(AuthKey::from_slice).ok_or_else(truncated)?;
    if r.remaining() != 0 {
        return Err(SessionError::invalid(what, "trailing bytes"));
    }
    if dc == 0 {
        return Err(SessionError::invalid(what, "DC id 0"));
    }
    let option = DcOption::new(i32::from(dc), SocketAddr::new(ip, port)).with_auth_key(Some(key)).with_salt(salt, 0);
    let mut data = single_dc(option);
    // The string holds no bot flag: the user is imported as not a bot.
    data.user = if user_id == 0 { None } else { Some(SelfUser::new(user_id, false)) };
    Ok((data, format))
}

/// Writes a compact string. V1's seq_no and layer are written as 0: we do not keep them, and
/// ferogram ignores both when it restores a session.
pub(crate) fn export_compact(data: &SessionData, version: u8) -> Result<String, SessionError> {
    let format = if version == 1 { StringFormat::FerogramCompactV1 } else { StringFormat::FerogramCompactV2 };
    let (option, key, dc) = home_with_key(data, format)?;
    let mut bytes = Vec::with_capacity(V2_LEN_V4 + 12 + V1_EXTRA);
    bytes.push(version);
    bytes.push(dc);
    match option.addr.ip() {
        IpAddr::V4(ip) => {
            bytes.push(4);
            bytes.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            bytes.push(6);
            bytes.extend_from_slice(&ip.octets());
        }
    }
    bytes.extend_from_slice(&option.addr.port().to_be_bytes());
    // ferogram always writes the user id (from get_me); 0 stands for "not logged in yet".
    bytes.extend_from_slice(&data.user.map_or(0, |u| u.id).to_be_bytes());
    if version == 1 {
        bytes.extend_from_slice(&option.server_salt.to_be_bytes());
        bytes.extend_from_slice(&0u32.to_be_bytes());
        bytes.extend_from_slice(&0u32.to_be_bytes());
    }
    bytes.extend_from_slice(key.as_bytes());
    Ok(b64::URL_NO_PAD.encode(&bytes))
}
