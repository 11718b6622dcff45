//! mtcute string sessions, version 3 (little-endian TL serialization).

use std::net::{IpAddr, SocketAddr};

use base64::Engine;
use session_core::{AuthKey, DcFlags, DcKey, DcOption, SelfUser, SessionData, SessionError, AUTH_KEY_LEN};

use crate::b64;
use crate::reader::Reader;
use crate::string_format::{home_with_key, single_dc, StringFormat};

const WHAT: &str = "mtcute string session";

const HAS_SELF: i32 = 1;
const OLD_TEST: i32 = 2;
const HAS_MEDIA: i32 = 4;

const BOOL_TRUE: u32 = 0x9972_75b5;
const BOOL_FALSE: u32 = 0xbc79_9737;

/// int53 range: mtcute keeps the user id in a JavaScript number.
const INT53_MAX: i64 = (1 << 53) - 1;

fn err(reason: impl Into<String>) -> SessionError {
    SessionError::invalid(WHAT, reason)
}

/// TL `bytes`: length (1 byte, or `fe` + 3 bytes LE), data, zero padding to a multiple of 4.
fn read_tl_bytes<'a>(r: &mut Reader<'a>) -> Option<&'a [u8]> {
    let first = r.u8()?;
    let (len, header) = if first == 0xfe {
        let [a, b, c] = r.array::<3>()?;
        (usize::from(a) | usize::from(b) << 8 | usize::from(c) << 16, 4)
    } else if first == 0xff {
        return None;
    } else {
        (usize::from(first), 1)
    };
    let data = r.take(len)?;
    let pad = (4 - (header + len) % 4) % 4;
    let padding = r.take(pad)?;
    if padding.iter().any(|b| *b != 0) {
        return None;
    }
    Some(data)
}

fn write_tl_bytes(out: &mut Vec<u8>, data: &[u8]) -> Result<(), SessionError> {
    let header = if data.len() <= 253 {
        out.push(u8::try_from(data.len()).unwrap_or(0));
        1
    } else {
        let len = u32::try_from(data.len()).ok().filter(|l| *l < 1 << 24).ok_or_else(|| err("value too long"))?;
        let [a, b, c, _] = len.to_le_bytes();
        out.extend_from_slice(&[0xfe, a, b, c]);
        4
    };
    out.extend_from_slice(data);
    let pad = (4 - (header + data.len()) % 4) % 4;
    out.extend(std::iter::repeat_n(0u8, pad));
    Ok(())
}

struct Blob {
    id: i32,
    addr: SocketAddr,
    media: bool,
    test: bool,
}

fn parse_blob(bytes: &[u8]) -> Result<Blob, SessionError> {
    let mut r = Reader::new(bytes);
    let truncated = || err("truncated DC option");
    let [version, id, flags] = r.array::<3>().ok_or_else(truncated)?;
    if version != 1 && version != 2 {
        return Err(err(format!("DC option version {version} is not 1 or 2")));
    }
    if flags & !7 != 0 {
        return Err(err(format!("unknown DC option flags {flags:#04x}")));
    }
    let ip = read_tl_bytes(&mut r).ok_or_else(truncated)?;
    let port = r.i32_le().ok_or_else(truncated)?;
    if r.remaining() != 0 {
        return Err(err("trailing bytes in a DC option"));
    }
    let ip = std::str::from_utf8(ip).map_err(|_| err("DC address is not text"))?;
    let ip: IpAddr = ip.parse().map_err(|_| err(format!("DC address {ip:?} is not an IP address")))?;
    let port = u16::try_from(port).map_err(|_| err(format!("port {port} is out of range")))?;
    if (flags & 1 != 0) != ip.is_ipv6() {
        return Err(err("the IPv6 flag disagrees with the address"));
    }
    Ok(Blob {
        id: i32::from(id),
        addr: SocketAddr::new(ip, port),
        media: flags & 2 != 0,
        test: version == 2 && flags & 4 != 0,
    })
}

fn write_blob(out: &mut Vec<u8>, option: &DcOption, media: bool, test: bool) -> Result<(), SessionError> {
    let id = u8::try_from(option.id).map_err(|_| err(format!("cannot export: DC id {} does not fit", option.id)))?;
    let flags = u8::from(option.addr.is_ipv6()) | u8::from(media) << 1 | u8::from(test) << 2;
    let mut blob = vec![2, id, flags];
    write_tl_bytes(&mut blob, option.addr.ip().to_string().as_bytes())?;
    blob.extend_from_slice(&i32::from(option.addr.port()).to_le_bytes());
    write_tl_bytes(out, &blob)
}

pub(crate) fn import(bytes: &[u8]) -> Result<SessionData, SessionError> {
    let mut r = Reader::new(bytes);
    let truncated = || err("truncated");
    let version = r.u8().ok_or_else(truncated)?;
    if version != 3 {
        return Err(err(format!("version {version} is not supported (only 3)")));
    }
    let flags = r.i32_le().ok_or_else(truncated)?;
    if flags & !(HAS_SELF | OLD_TEST | HAS_MEDIA) != 0 {
        return Err(err(format!("unknown flags {flags:#x}")));
    }
    let main = parse_blob(read_tl_bytes(&mut r).ok_or_else(truncated)?)?;
    let media =
        if flags & HAS_MEDIA != 0 { Some(parse_blob(read_tl_bytes(&mut r).ok_or_else(truncated)?)?) } else { None };
    let mut test = main.test;
    if flags & OLD_TEST != 0 {
        test = true;
    } else if let Some(m) = &media {
        if m.test != main.test {
            return Err(err("main and media DC disagree on test mode"));
        }
    }
    let user = if flags & HAS_SELF != 0 {
        let id = r.i64_le().ok_or_else(truncated)?;
        if !(-INT53_MAX..=INT53_MAX).contains(&id) {
            return Err(err(format!("user id {id} is outside mtcute's int53 range")));
        }
        let bot = match r.u32_le().ok_or_else(truncated)? {
            BOOL_TRUE => true,
            BOOL_FALSE => false,
            other => return Err(err(format!("is_bot is {other:#010x}, not a TL Bool"))),
        };
        Some(SelfUser::new(id, bot))
    } else {
        None
    };
    let key = read_tl_bytes(&mut r).ok_or_else(truncated)?;
    let key = AuthKey::from_slice(key)
        .ok_or_else(|| err(format!("auth key is {} bytes, expected {AUTH_KEY_LEN}", key.len())))?;
    if r.remaining() != 0 {
        return Err(err(format!("{} trailing bytes", r.remaining())));
    }
    if main.media {
        return Err(err("the main DC is marked media-only"));
    }
    let mut data = single_dc(DcOption::new(main.id, main.addr).with_auth_key(Some(key)));
    data.test_mode = test;
    data.user = user;
    if let Some(m) = media {
        let option = DcOption::new(m.id, m.addr).with_flags(DcFlags::MEDIA_ONLY);
        data.dcs.insert(option.key(), option);
    }
    Ok(data)
}

pub(crate) fn export(data: &SessionData) -> Result<String, SessionError> {
    let (option, key, _) = home_with_key(data, StringFormat::MtcuteV3)?;
    // The media DC: a media-only option of the home DC, same address family first.
    let family = if option.addr.is_ipv6() { DcFlags::IPV6 } else { DcFlags::default() };
    let other = if option.addr.is_ipv6() { DcFlags::default() } else { DcFlags::IPV6 };
    let media = [family, other]
        .into_iter()
        .find_map(|f| data.dcs.get(&DcKey { id: data.home_dc, flags: DcFlags(f.0 | DcFlags::MEDIA_ONLY.0) }));
    let mut flags = 0i32;
    if data.user.is_some() {
        flags |= HAS_SELF;
    }
    if media.is_some() {
        flags |= HAS_MEDIA;
    }
    let mut bytes = Vec::with_capacity(400);
    bytes.push(3);
    bytes.extend_from_slice(&flags.to_le_bytes());
    write_blob(&mut bytes, option, false, data.test_mode)?;
    if let Some(m) = media {
        write_blob(&mut bytes, m, true, data.test_mode)?;
    }
    if let Some(user) = data.user {
        if !(-INT53_MAX..=INT53_MAX).contains(&user.id) {
            return Err(err(format!("cannot export: user id {} does not fit mtcute's int53", user.id)));
        }
        bytes.extend_from_slice(&user.id.to_le_bytes());
        bytes.extend_from_slice(&if user.bot { BOOL_TRUE } else { BOOL_FALSE }.to_le_bytes());
    }
    write_tl_bytes(&mut bytes, key.as_bytes())?;
    Ok(b64::URL_NO_PAD.encode(&bytes))
}
