//! mtcute's `SqliteStorage` (`@mtcute/node` 0.30): a key/value table, `auth_keys` and `peers`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use session_core::{
    AuthKey, Change, DcFlags, DcOption, Peer, PeerClass, PeerKey, PeerKind, SelfUser, SessionData, SessionError,
    UpdateState, UpdateStateChange,
};

use crate::sqlite::value::{field, get, ForeignFile as File, Value};

/// A DC option as mtcute stores it under `dc_main` / `dc_media`.
struct BasicDc {
    id: i32,
    addr: SocketAddr,
    test: bool,
}

/// `u8 version (1 or 2) | u8 dc | u8 flags (v2 only: 1 IPv6, 2 media-only, 4 test) | TL string ip | i32 LE port`.
fn parse_dc(bytes: &[u8]) -> Option<BasicDc> {
    let (&version, rest) = bytes.split_first()?;
    let (&dc, mut rest) = rest.split_first()?;
    let flags = match version {
        1 => 0,
        2 => {
            let (&f, r) = rest.split_first()?;
            rest = r;
            f
        }
        _ => return None,
    };
    let (ip, rest) = tl_bytes(rest)?;
    let ip: IpAddr = std::str::from_utf8(ip).ok()?.parse().ok()?;
    let port = i32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
    Some(BasicDc { id: i32::from(dc), addr: SocketAddr::new(ip, u16::try_from(port).ok()?), test: flags & 4 != 0 })
}

/// TL `bytes`: a length (`u8`, or `0xfe` + 3-byte LE), the data, zero padding to a multiple of 4.
fn tl_bytes(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&first, _) = input.split_first()?;
    let (len, header) = if first == 0xfe {
        let b = input.get(1..4)?;
        (usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16, 4)
    } else if first == 0xff {
        return None;
    } else {
        (usize::from(first), 1)
    };
    let data = input.get(header..header + len)?;
    let padded = (header + len).div_ceil(4) * 4;
    Some((data, input.get(padded..)?))
}

fn i32_le(bytes: &[u8]) -> Option<i32> {
    Some(i32::from_le_bytes(bytes.get(..4)?.try_into().ok()?))
}

/// `current_user`: `i32 version (1) | i32 flags (1 bot, 2 usernames, 4 premium) | i64 user id | ...`.
fn parse_user(bytes: &[u8]) -> Option<SelfUser> {
    if i32_le(bytes)? != 1 {
        return None;
    }
    let flags = i32_le(bytes.get(4..)?)?;
    let id = i64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some(SelfUser::new(id, flags & 1 != 0))
}

/// mtcute's `hash` column: a Long as `"low|high"` signed 32-bit halves, `""` for none.
fn parse_hash(text: &str) -> Option<i64> {
    if text.is_empty() {
        return Some(0);
    }
    let (low, high) = text.split_once('|')?;
    let low: i32 = low.trim().parse().ok()?;
    let high: i32 = high.trim().parse().ok()?;
    Some(i64::from(high) << 32 | i64::from(u32::from_le_bytes(low.to_le_bytes())))
}

const USER_EMPTY: u32 = 0xd3bc_4b7a;

/// The precise kind from `peers.complete`, the TL object mtcute caches: for `user` the bot flag
/// (flags.14), for `channel`/`channelForbidden` broadcast (flags.5), megagroup (flags.8) and
/// gigagroup (flags.26). The flags word directly follows the constructor in all of them.
fn kind_of(class: PeerClass, complete: Option<&[u8]>) -> PeerKind {
    let words = complete.and_then(|c| Some((u32::from_le_bytes(c.get(..4)?.try_into().ok()?), c.get(4..8)?)));
    let flags = words.and_then(
        |(ctor, f)| {
            if ctor == USER_EMPTY {
                None
            } else {
                Some(u32::from_le_bytes(f.try_into().ok()?))
            }
        },
    );
    match (class, flags) {
        (PeerClass::User, Some(f)) if f & (1 << 14) != 0 => PeerKind::Bot,
        (PeerClass::User, _) => PeerKind::User,
        (PeerClass::Chat, _) => PeerKind::BasicGroup,
        (PeerClass::Channel, Some(f)) if f & (1 << 26) != 0 => PeerKind::Gigagroup,
        (PeerClass::Channel, Some(f)) if f & (1 << 8) != 0 => PeerKind::Megagroup,
        (PeerClass::Channel, Some(f)) if f & (1 << 5) != 0 => PeerKind::Broadcast,
        (PeerClass::Channel, _) => PeerKind::Channel,
    }
}

/// Reads the session of an mtcute storage file.
pub(crate) fn read(file: &File<'_>) -> Result<SessionData, SessionError> {
    let mut kv: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for row in file.rows("SELECT key, value FROM key_value")? {
        if let (Some(k), Some(v)) = (get(&row, 0).text(), get(&row, 1).blob()) {
            kv.insert(k, v.to_vec());
        }
    }
    let bad = |what: &str| file.invalid(&format!("key_value {what} does not parse"));
    let main = kv.get("dc_main").map(|b| parse_dc(b).ok_or_else(|| bad("dc_main"))).transpose()?;
    let media = kv.get("dc_media").map(|b| parse_dc(b).ok_or_else(|| bad("dc_media"))).transpose()?;
    let Some(main) = main else {
        return Err(file.invalid("no dc_main: the storage holds no session"));
    };

    let mut s = SessionData::default();
    s.apply(&Change::SetTestMode(main.test));
    s.apply(&Change::SetDc(DcOption::new(main.id, main.addr)));
    // mtcute writes `dc_media` only when media goes to another address than `dc_main`.
    if let Some(media) = media {
        s.apply(&Change::SetDc(DcOption::new(media.id, media.addr).with_flags(DcFlags::MEDIA_ONLY)));
    }
    for row in file.rows("SELECT dc, key FROM auth_keys ORDER BY dc")? {
        let dc: i32 = field(file, get(&row, 0), "auth_keys.dc")?.ok_or_else(|| file.invalid("auth_keys.dc is NULL"))?;
        let bytes = get(&row, 1).blob().unwrap_or_default();
        let key = AuthKey::from_slice(bytes)
            .ok_or_else(|| file.invalid(&format!("auth_keys.key of DC {dc} is {} bytes, not 256", bytes.len())))?;
        s.apply(&Change::SetAuthKey { dc_id: dc, key: Some(key) });
    }
    s.apply(&Change::SetHomeDc(main.id));
    if let Some(user) = kv.get("current_user") {
        s.apply(&Change::SetUser(Some(parse_user(user).ok_or_else(|| bad("current_user"))?)));
    }

    let counter = |name: &str| -> Result<i32, SessionError> {
        kv.get(name).map(|b| i32_le(b).ok_or_else(|| bad(name))).transpose().map(Option::unwrap_or_default)
    };
    let mut state = UpdateState::new(
        counter("updates_pts")?,
        counter("updates_qts")?,
        counter("updates_date")?,
        counter("updates_seq")?,
    );
    for (k, v) in &kv {
        if let Some(id) = k.strip_prefix("updates_channel:") {
            let id: i64 = id.parse().map_err(|_| bad(k))?;
            state.channels.insert(id, i32_le(v).ok_or_else(|| bad(k))?);
        }
    }
    s.apply(&Change::UpdateState(UpdateStateChange::All(state)));

    let has_min = file.columns("peers")?.iter().any(|c| c == "isMin");
    let sql =
        format!("SELECT id, hash, usernames, phone, {}, complete FROM peers", if has_min { "isMin" } else { "0" });
    let mut peers = Vec::new();
    for row in file.rows(&sql)? {
        let marked: i64 = field(file, get(&row, 0), "peers.id")?.ok_or_else(|| file.invalid("peers.id is NULL"))?;
        let key = PeerKey::from_marked(marked);
        let hash = get(&row, 1).text().unwrap_or_default();
        let hash = parse_hash(&hash).ok_or_else(|| file.invalid(&format!("peers.hash {hash:?} is not low|high")))?;
        let usernames: Vec<String> = match get(&row, 2) {
            Value::Null => Vec::new(),
            v => {
                let text = v.text().unwrap_or_default();
                serde_json::from_str(&text)
                    .map_err(|e| file.invalid(&format!("peers.usernames is not a JSON list of strings: {e}")))?
            }
        };
        let phone = get(&row, 3).text().filter(|p| !p.is_empty());
        let min = field::<i64>(file, get(&row, 4), "peers.isMin")?.unwrap_or(0) != 0;
        let kind = kind_of(key.class, get(&row, 5).blob());
        peers.push(Peer::new(key.id, kind, hash).with_min(min).with_usernames(usernames).with_phone(phone));
    }
    s.peers = peers.into_iter().collect();
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).filter_map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
    }

    #[test]
    fn dc_blob_and_user_from_the_fixture() {
        let dc = parse_dc(&hex("0202000e3134392e3135342e3136372e353000bb010000")).expect("dc_main");
        assert_eq!((dc.id, dc.addr.to_string().as_str(), dc.test), (2, "149.154.167.50:443", false));
        let media = parse_dc(&hex("0202020f3134392e3135342e3136372e323232bb010000")).expect("dc_media");
        assert_eq!(media.addr.to_string(), "149.154.167.222:443");
        let user = parse_user(&hex("01000000000000003d1ea10600000000")).expect("user");
        assert_eq!((user.id, user.bot), (111_222_333, false));
        assert_eq!(parse_hash("2112454933|287445236"), Some(1_234_567_890_123_456_789));
        assert_eq!(parse_hash("654984396|-1006084207"), Some(-4_321_098_765_432_109_876));
        assert_eq!(parse_hash(""), Some(0));
        assert!(parse_dc(&hex("0302")).is_none());
    }

    #[test]
    fn kinds_from_the_tl_object() {
        let bot = hex("884377310B400000");
        let user = hex("884377311F000000");
        let supergroup = hex("1CB1321C00210000");
        let channel = hex("1CB1321C60200000");
        assert_eq!(kind_of(PeerClass::User, Some(&bot)), PeerKind::Bot);
        assert_eq!(kind_of(PeerClass::User, Some(&user)), PeerKind::User);
        assert_eq!(kind_of(PeerClass::Channel, Some(&supergroup)), PeerKind::Megagroup);
        assert_eq!(kind_of(PeerClass::Channel, Some(&channel)), PeerKind::Broadcast);
        assert_eq!(kind_of(PeerClass::Channel, None), PeerKind::Channel);
    }
}
