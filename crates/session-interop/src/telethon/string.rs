//! Telethon and GramJS `StringSession`s: both are `'1'` + base64 of one DC and its key.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use base64::Engine;
use session_core::{AuthKey, DcOption, SessionData, SessionError, AUTH_KEY_LEN};

use crate::b64::{self, Alphabet};
use crate::reader::Reader;
use crate::string_format::{home_with_key, single_dc, StringFormat};

const TELETHON: &str = "Telethon string session";
const GRAMJS: &str = "GramJS string session";

/// Decoded lengths of Telethon payloads: dc + IPv4/IPv6 + port + key.
const TELETHON_V4_LEN: usize = 1 + 4 + 2 + AUTH_KEY_LEN;
const TELETHON_V6_LEN: usize = 1 + 16 + 2 + AUTH_KEY_LEN;

/// Reads a `'1'`-prefixed string as Telethon or GramJS. `body` is what follows the `'1'`.
pub(crate) fn import_either(body: &str, offset: usize) -> Result<(SessionData, StringFormat), SessionError> {
    let bytes = b64::decode(body, offset, "Telethon or GramJS string session")?;
    let alphabet = Alphabet::of(body);
    let tele = telethon(&bytes);
    let gram = gramjs(&bytes);
    match (tele, gram) {
        (Ok(t), Err(_)) => Ok((t, StringFormat::Telethon)),
        (Err(_), Ok(g)) => Ok((g, StringFormat::GramJs)),
        (Ok(t), Ok(g)) => {
            // Same length: only a Telethon IPv6 string (275 bytes) and a GramJS string with a
            // 14-character address can both parse. The alphabet settles it when it shows;
            // otherwise GramJS's layout fitting exactly (length field + address text) does.
            let gramjs = match (alphabet.url, alphabet.std) {
                (true, false) => false,
                (false, true) => true,
                _ => gramjs_length_field_fits(&bytes),
            };
            if gramjs {
                Ok((g, StringFormat::GramJs))
            } else {
                Ok((t, StringFormat::Telethon))
            }
        }
        (Err(t), Err(g)) => {
            if bytes.len() == TELETHON_V4_LEN || bytes.len() == TELETHON_V6_LEN || alphabet.url && !alphabet.std {
                Err(t)
            } else {
                Err(g)
            }
        }
    }
}

fn gramjs_length_field_fits(bytes: &[u8]) -> bool {
    match bytes.get(1..3) {
        Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])) + 1 + 2 + 2 + AUTH_KEY_LEN == bytes.len(),
        _ => false,
    }
}

fn telethon(bytes: &[u8]) -> Result<SessionData, SessionError> {
    let mut r = Reader::new(bytes);
    let ip = match bytes.len() {
        TELETHON_V4_LEN | TELETHON_V6_LEN => {
            let dc = r.u8().unwrap_or(0);
            let ip = if bytes.len() == TELETHON_V4_LEN {
                r.array::<4>().map(|o| IpAddr::V4(Ipv4Addr::from(o)))
            } else {
                r.array::<16>().map(|o| IpAddr::V6(Ipv6Addr::from(o)))
            };
            (dc, ip)
        }
        n => {
            return Err(SessionError::invalid(
                TELETHON,
                format!("{n} bytes after base64 decoding; Telethon strings hold {TELETHON_V4_LEN} (IPv4) or {TELETHON_V6_LEN} (IPv6)"),
            ))
        }
    };
    let (dc, Some(ip)) = ip else {
        return Err(SessionError::invalid(TELETHON, "truncated"));
    };
    let port = r.u16_be().ok_or_else(|| SessionError::invalid(TELETHON, "truncated"))?;
    let key = r.take(AUTH_KEY_LEN).and_then(AuthKey::from_slice);
    let Some(key) = key else {
        return Err(SessionError::invalid(TELETHON, "truncated auth key"));
    };
    if dc == 0 {
        return Err(SessionError::invalid(TELETHON, "DC id 0"));
    }
    // Telethon writes an all-zero key when it has none.
    let key = if key.is_zero() { None } else { Some(key) };
    Ok(single_dc(DcOption::new(i32::from(dc), SocketAddr::new(ip, port)).with_auth_key(key)))
}

fn gramjs(bytes: &[u8]) -> Result<SessionData, SessionError> {
    let mut r = Reader::new(bytes);
    let truncated = || SessionError::invalid(GRAMJS, "truncated");
    let dc = r.u8().ok_or_else(truncated)?;
    let len = r.u16_be().ok_or_else(truncated)?;
    if len == 0 || len > 100 {
        return Err(SessionError::invalid(GRAMJS, format!("address length {len} is not plausible")));
    }
    let text = r.take(usize::from(len)).ok_or_else(truncated)?;
    let text = std::str::from_utf8(text).map_err(|_| SessionError::invalid(GRAMJS, "address is not text"))?;
    let ip: IpAddr =
        text.parse().map_err(|_| SessionError::invalid(GRAMJS, format!("address {text:?} is not an IP address")))?;
    let port = r.u16_be().ok_or_else(truncated)?;
    let rest = r.rest();
    let key = match rest.len() {
        AUTH_KEY_LEN => AuthKey::from_slice(rest),
        n => {
            return Err(SessionError::invalid(GRAMJS, format!("auth key is {n} bytes, expected {AUTH_KEY_LEN}")));
        }
    };
    if dc == 0 {
        return Err(SessionError::invalid(GRAMJS, "DC id 0"));
    }
    if port > 0x7fff {
        // GramJS reads the port as a signed 16-bit number: it never wrote this.
        return Err(SessionError::invalid(GRAMJS, format!("port {port} does not fit GramJS's signed 16-bit field")));
    }
    Ok(single_dc(DcOption::new(i32::from(dc), SocketAddr::new(ip, port)).with_auth_key(key)))
}

pub(crate) fn export_telethon(data: &SessionData) -> Result<String, SessionError> {
    let (option, key, dc) = home_with_key(data, StringFormat::Telethon)?;
    let mut bytes = Vec::with_capacity(TELETHON_V6_LEN);
    bytes.push(dc);
    match option.addr.ip() {
        IpAddr::V4(ip) => bytes.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => bytes.extend_from_slice(&ip.octets()),
    }
    bytes.extend_from_slice(&option.addr.port().to_be_bytes());
    bytes.extend_from_slice(key.as_bytes());
    // Telethon only reads IPv4 when the base64 part is exactly 352 characters: keep padding.
    let mut out = String::from("1");
    b64::URL_PAD.encode_string(&bytes, &mut out);
    Ok(out)
}

pub(crate) fn export_gramjs(data: &SessionData) -> Result<String, SessionError> {
    let (option, key, dc) = home_with_key(data, StringFormat::GramJs)?;
    let port = option.addr.port();
    if port > 0x7fff {
        return Err(SessionError::invalid(
            GRAMJS,
            format!("cannot export: port {port} does not fit GramJS's signed 16-bit port field"),
        ));
    }
    let text = option.addr.ip().to_string();
    let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
    let mut bytes = Vec::with_capacity(1 + 2 + text.len() + 2 + AUTH_KEY_LEN);
    bytes.push(dc);
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(text.as_bytes());
    bytes.extend_from_slice(&port.to_be_bytes());
    bytes.extend_from_slice(key.as_bytes());
    let mut out = String::from("1");
    b64::STD_PAD.encode_string(&bytes, &mut out);
    Ok(out)
}
