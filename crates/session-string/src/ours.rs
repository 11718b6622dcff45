//! This crate's own string forms: full (`L1.` + the core codec), compact (`Lc1.`) and sealed
//! (`Le1.`: the full form encrypted with a key, see [`encode_sealed`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use base64::Engine;
use session_core::seal::{self, Binding};
use session_core::{
    codec, dc_table, AuthKey, DcOption, KdfRecord, Keyring, SelfUser, SessionData, SessionError, AUTH_KEY_LEN,
};

use session_interop::b64;
use session_interop::reader::Reader;
use session_interop::string_format::{parse_our_prefix as parse_prefix, OurForm as Form};

/// The prefix of a full string (layout version 1).
pub const FULL_PREFIX: &str = "L1.";
/// The prefix of a compact string (layout version 1).
pub const COMPACT_PREFIX: &str = "Lc1.";
/// The prefix of a sealed string (layout version 1).
pub const SEALED_PREFIX: &str = "Le1.";
/// The newest layout version of every form this build reads and the one it writes.
pub const STRING_VERSION: u32 = 1;

const WHAT: &str = "layer string session";

const F_IPV6: u8 = 1;
const F_TEST: u8 = 2;
const F_USER: u8 = 4;
const F_BOT: u8 = 8;
const F_PUBLISHED: u8 = 16;
const F_KNOWN: u8 = F_IPV6 | F_TEST | F_USER | F_BOT | F_PUBLISHED;

/// Encodes the whole session: `L1.` + unpadded base64url of [`session_core::codec::encode`].
///
/// Everything the session holds survives (every DC, peers, update state, ...), with no count
/// limit.
pub fn encode_full(data: &SessionData) -> Result<String, SessionError> {
    let bytes = codec::encode(data)?;
    let mut out = String::with_capacity(FULL_PREFIX.len() + bytes.len().div_ceil(3) * 4);
    out.push_str(FULL_PREFIX);
    b64::encode_url_no_pad(&bytes, &mut out);
    Ok(out)
}

/// Encodes the compact form: the home DC (id, address, auth key), the user and test mode, with a
/// checksum. About as long as a Telethon string (about 360 characters).
///
/// Fails when there is no home DC or it has no auth key (a compact string without a key would be
/// useless), or when the home DC id does not fit in a byte.
pub fn encode_compact(data: &SessionData) -> Result<String, SessionError> {
    let home = data.home().ok_or_else(|| {
        SessionError::invalid(WHAT, format!("cannot write a compact string: home DC {} has no address", data.home_dc))
    })?;
    let key = home.auth_key.as_ref().ok_or_else(|| {
        SessionError::invalid(WHAT, format!("cannot write a compact string: home DC {} has no auth key", data.home_dc))
    })?;
    let dc = u8::try_from(data.home_dc).map_err(|_| {
        SessionError::invalid(WHAT, format!("cannot write a compact string: home DC id {} does not fit", data.home_dc))
    })?;
    let mut flags = 0u8;
    if home.addr.is_ipv6() {
        flags |= F_IPV6;
    }
    if data.test_mode {
        flags |= F_TEST;
    }
    if let Some(user) = data.user {
        flags |= F_USER;
        if user.bot {
            flags |= F_BOT;
        }
    }
    if published(data.home_dc, data.test_mode, home.addr.is_ipv6()) == Some(home.addr) {
        flags |= F_PUBLISHED;
    }
    let mut bytes = Vec::with_capacity(2 + 18 + 10 + AUTH_KEY_LEN + 4);
    bytes.push(flags);
    bytes.push(dc);
    if flags & F_PUBLISHED == 0 {
        match home.addr.ip() {
            IpAddr::V4(ip) => bytes.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => bytes.extend_from_slice(&ip.octets()),
        }
        bytes.extend_from_slice(&home.addr.port().to_le_bytes());
    }
    if let Some(user) = data.user {
        write_varint(&mut bytes, zigzag(user.id));
    }
    bytes.extend_from_slice(key.as_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let mut out = String::with_capacity(COMPACT_PREFIX.len() + 4 * bytes.len().div_ceil(3));
    out.push_str(COMPACT_PREFIX);
    b64::URL_NO_PAD.encode_string(&bytes, &mut out);
    Ok(out)
}

const SEALED_WHAT: &str = "layer sealed string session";

/// Encodes the whole session sealed with `keys` (encryption at rest): `Le1.` + unpadded
/// base64url of
///
/// ```text
/// KDF record length (u8: 0, or 29 when the key was derived from a passphrase) | KDF record |
/// envelope (session_core::seal) of session_core::codec::encode(data)
/// ```
///
/// The envelope is bound to the prefix and the KDF record. Everything the full form holds is
/// inside; what the string still shows is its length (about the full form's plus 60 bytes
/// before base64) and, for a passphrase, the salt. Blocking when a passphrase's key is derived
/// (once per keyring).
pub fn encode_sealed(data: &SessionData, keys: &Keyring) -> Result<String, SessionError> {
    let plain = zeroize::Zeroizing::new(codec::encode(data)?);
    let key = keys.sealing_key(None)?;
    let kdf = key.kdf().map(KdfRecord::to_bytes);
    let kdf: &[u8] = kdf.as_ref().map_or(&[], |k| k.as_slice());
    let envelope = seal::seal(&key, &sealed_binding(kdf), &plain)?;
    let mut bytes = Vec::with_capacity(1 + kdf.len() + envelope.len());
    bytes.push(u8::try_from(kdf.len()).unwrap_or(u8::MAX));
    bytes.extend_from_slice(kdf);
    bytes.extend_from_slice(&envelope);
    let mut out = String::with_capacity(SEALED_PREFIX.len() + bytes.len().div_ceil(3) * 4);
    out.push_str(SEALED_PREFIX);
    b64::encode_url_no_pad(&bytes, &mut out);
    Ok(out)
}

fn sealed_binding(kdf: &[u8]) -> Binding {
    Binding::new("layer-session string").part(SEALED_PREFIX).part(kdf)
}

/// True when `s` is (after trimming) a sealed string of any layout version: `Le<digits>.`.
pub fn is_sealed(s: &str) -> bool {
    sealed_version(s.trim()).is_some()
}

/// The layout version and prefix length of a sealed string.
fn sealed_version(s: &str) -> Option<(u32, usize)> {
    let rest = s.strip_prefix("Le")?;
    let dot = rest.bytes().take(12).position(|b| b == b'.')?;
    let digits = &rest[..dot];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse::<u32>().unwrap_or(u32::MAX), 2 + dot + 1))
}

/// The parts of a sealed string: the KDF record and the envelope.
fn sealed_parts(s: &str) -> Result<(Option<KdfRecord>, Vec<u8>), SessionError> {
    let trimmed = s.trim();
    let lead = s.len() - s.trim_start().len();
    let Some((version, skip)) = sealed_version(trimmed) else {
        return Err(SessionError::invalid(SEALED_WHAT, format!("expected the prefix {SEALED_PREFIX:?}")));
    };
    if version > STRING_VERSION {
        return Err(SessionError::UnsupportedVersion { what: SEALED_WHAT, found: version, supported: STRING_VERSION });
    }
    if version == 0 {
        return Err(SessionError::invalid(SEALED_WHAT, "string layout version 0 does not exist"));
    }
    let bytes = b64::decode(&trimmed[skip..], lead + skip, SEALED_WHAT)?;
    let corrupt = |reason: &str| SessionError::corrupt(SEALED_WHAT, reason);
    let (&kdf_len, rest) = bytes.split_first().ok_or_else(|| corrupt("empty"))?;
    let kdf_len = usize::from(kdf_len);
    let kdf_bytes = rest.get(..kdf_len).ok_or_else(|| corrupt("shorter than its key derivation record"))?;
    let kdf = match kdf_len {
        0 => None,
        _ => Some(KdfRecord::from_bytes(kdf_bytes).ok_or_else(|| corrupt("unknown key derivation record"))?),
    };
    Ok((kdf, bytes[1 + kdf_len..].to_vec()))
}

/// Decodes a sealed string with `keys`; any other of our forms (and only ours) is decoded as
/// [`decode`] does, so a caller holding a key reads plain strings too. A key the keyring lacks
/// is [`SessionError::WrongKey`]; a string changed after sealing is [`SessionError::Corrupt`].
/// Blocking when a passphrase's key is derived.
pub fn decode_sealed(s: &str, keys: &Keyring) -> Result<SessionData, SessionError> {
    if !is_sealed(s) {
        return decode(s);
    }
    let (kdf, envelope) = sealed_parts(s)?;
    let kdf_bytes = kdf.map(|k| k.to_bytes());
    let binding = sealed_binding(kdf_bytes.as_ref().map_or(&[], |k| k.as_slice()));
    let plain = keys.open(kdf.as_ref(), SEALED_WHAT, &binding, &envelope)?;
    codec::decode(&plain)
}

/// Decodes either of our plain forms. Leading and trailing whitespace is ignored; padding and
/// either base64 alphabet are accepted. A sealed string (`Le1.`) is [`SessionError::Sealed`]
/// (naming its key id): read it with [`decode_sealed`].
pub fn decode(s: &str) -> Result<SessionData, SessionError> {
    let trimmed = s.trim();
    let lead = s.len() - s.trim_start().len();
    if is_sealed(trimmed) {
        let (_, envelope) = sealed_parts(s)?;
        return Err(SessionError::Sealed { resource: SEALED_WHAT.to_owned(), key_id: seal::key_id_of(&envelope) });
    }
    let Some((form, version, skip)) = parse_prefix(trimmed) else {
        return Err(wrong_prefix(trimmed));
    };
    if version > STRING_VERSION {
        return Err(SessionError::UnsupportedVersion {
            what: if form == Form::Full { "layer string session" } else { "layer compact string session" },
            found: version,
            supported: STRING_VERSION,
        });
    }
    if version == 0 {
        return Err(SessionError::invalid(WHAT, "string layout version 0 does not exist"));
    }
    let body = &trimmed[skip..];
    let bytes = b64::decode(body, lead + skip, WHAT)?;
    match form {
        Form::Full => codec::decode(&bytes),
        Form::Compact => decode_compact_bytes(&bytes),
    }
}

fn wrong_prefix(s: &str) -> SessionError {
    let shown: String = s.chars().take(4).collect();
    let hint = match session_interop::import_string(s) {
        Ok(imported) => {
            format!(" (it is a {} string: read it with `session_string::foreign::import`)", imported.format)
        }
        Err(_) => String::new(),
    };
    SessionError::invalid(
        WHAT,
        format!(
            "wrong prefix {shown:?}: expected {FULL_PREFIX:?} (full), {COMPACT_PREFIX:?} (compact) or {SEALED_PREFIX:?} (sealed){hint}"
        ),
    )
}

fn decode_compact_bytes(bytes: &[u8]) -> Result<SessionData, SessionError> {
    let corrupt = |reason: String| SessionError::corrupt("layer compact string session", reason);
    let Some(split) = bytes.len().checked_sub(4) else {
        return Err(corrupt(format!("{} bytes is too short", bytes.len())));
    };
    let (body, crc) = bytes.split_at(split);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != stored {
        return Err(corrupt("checksum mismatch (the string was changed or cut)".to_owned()));
    }
    let mut r = Reader::new(body);
    let truncated = || corrupt("truncated".to_owned());
    let flags = r.u8().ok_or_else(truncated)?;
    if flags & !F_KNOWN != 0 {
        return Err(corrupt(format!("unknown flag bits {:#04x}", flags & !F_KNOWN)));
    }
    let dc = i32::from(r.u8().ok_or_else(truncated)?);
    let test = flags & F_TEST != 0;
    let ipv6 = flags & F_IPV6 != 0;
    let addr = if flags & F_PUBLISHED != 0 {
        published(dc, test, ipv6).ok_or_else(|| corrupt(format!("DC {dc} has no published address")))?
    } else {
        let ip = if ipv6 {
            IpAddr::V6(Ipv6Addr::from(r.array::<16>().ok_or_else(truncated)?))
        } else {
            IpAddr::V4(Ipv4Addr::from(r.array::<4>().ok_or_else(truncated)?))
        };
        let port = u16::from_le_bytes(r.array().ok_or_else(truncated)?);
        SocketAddr::new(ip, port)
    };
    let user = if flags & F_USER != 0 {
        let id = unzigzag(read_varint(&mut r).ok_or_else(|| corrupt("bad user id".to_owned()))?);
        Some(SelfUser::new(id, flags & F_BOT != 0))
    } else if flags & F_BOT != 0 {
        return Err(corrupt("bot flag without a user".to_owned()));
    } else {
        None
    };
    let key = AuthKey::from_slice(r.take(AUTH_KEY_LEN).ok_or_else(truncated)?).ok_or_else(truncated)?;
    if r.remaining() != 0 {
        return Err(corrupt(format!("{} unexpected bytes after the auth key", r.remaining())));
    }
    let mut data = SessionData::default();
    data.home_dc = dc;
    data.test_mode = test;
    data.user = user;
    let option = DcOption::new(dc, addr).with_auth_key(Some(key));
    data.dcs.insert(option.key(), option);
    Ok(data)
}

/// The published address of a DC in the family asked for.
fn published(dc: i32, test: bool, ipv6: bool) -> Option<SocketAddr> {
    if ipv6 {
        dc_table::ipv6(dc, test).map(SocketAddr::V6)
    } else {
        dc_table::ipv4(dc, test).map(SocketAddr::V4)
    }
}

fn zigzag(v: i64) -> u64 {
    u64::from_le_bytes(((v << 1) ^ (v >> 63)).to_le_bytes())
}

fn unzigzag(v: u64) -> i64 {
    i64::from_le_bytes((v >> 1).to_le_bytes()) ^ -i64::from_le_bytes((v & 1).to_le_bytes())
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(u8::try_from(v & 0x7f).unwrap_or(0) | 0x80);
        v >>= 7;
    }
    out.push(u8::try_from(v).unwrap_or(0));
}

fn read_varint(r: &mut Reader<'_>) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let b = r.u8()?;
        let part = u64::from(b & 0x7f);
        if i == 9 && part > 1 {
            return None;
        }
        v |= part << (7 * i);
        if b & 0x80 == 0 {
            // Reject non-minimal encodings so that each session has one string.
            if i > 0 && b == 0 {
                return None;
            }
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_round_trips() {
        for v in [0, 1, -1, i64::MAX, i64::MIN, 5_000_000_001, -1_001_234_567_890] {
            assert_eq!(unzigzag(zigzag(v)), v);
            let mut out = Vec::new();
            write_varint(&mut out, zigzag(v));
            let mut r = Reader::new(&out);
            assert_eq!(read_varint(&mut r).map(unzigzag), Some(v));
            assert_eq!(r.remaining(), 0);
        }
    }
}
