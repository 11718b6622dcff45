//! layer-client 0.5 and ferogram session files, versions 1 to 8: reading all of them (the
//! writers are `layer05::encode_layer_v3` and `ferogram::encode_ferogram_v8`).
//!
//! The layouts are those of `FORMATS.md` ("layer-client / ferogram binary files"). What this
//! reader does that the original decoders do not:
//!
//! - **Version detection by exact fit.** A v1 file has no version byte: it starts with the home
//!   DC as an `i32`, so a v1 file whose home DC is 2..=8 starts with the same byte as a v2..v8
//!   file. Both original decoders guess from that byte and return garbage without an error for
//!   such files. Here every reading the first byte allows is tried, and a reading is accepted only
//!   if it consumes the input exactly and its values are plausible (home DC in
//!   `1..=`[`MAX_PLAUSIBLE_HOME_DC`], DC ids in `1..=`[`MAX_PLAUSIBLE_DC_ID`], addresses that
//!   parse as `ip:port` / `[ipv6]:port`). No reading
//!   fits: the input is refused. More than one fits: refused as ambiguous (never observed; it
//!   would take a file that is two valid sessions at once).
//! - **Counts are not trusted.** Nothing is allocated from a count before the bytes it promises
//!   are known to be present. The original writers store peer, channel and min-context counts as
//!   `u16` and silently wrap past 65,535 while still writing every record; when exactly one count
//!   `n + k * 65,536` makes the file fit exactly, that count is used, so such files load in full
//!   instead of short.
//!
//! How values map onto [`SessionData`]:
//!
//! | file | model |
//! | --- | --- |
//! | DC entry | one [`DcOption`] per entry; flags byte (v3+) onto [`DcFlags`] (same bit values); the IPv6 bit always follows the address family (v1/v2 have no flags byte). Two entries with the same id and identity flags cannot both be kept: the first wins, as in the original decoders' lookups |
//! | layer v2/v3 peer byte | 0: [`PeerKind::User`], anything else: [`PeerKind::Channel`] (layer's reading) |
//! | ferogram v4+ peer byte | 1: channel, 2: [`PeerKind::BasicGroup`], anything else: [`PeerKind::User`] (ferogram's reading) |
//! | ferogram channel kind (v6+) | 0 [`PeerKind::Broadcast`], 1 [`PeerKind::Megagroup`], 2 [`PeerKind::Gigagroup`], other (0xFF): [`PeerKind::Channel`] |
//! | ferogram `is_community` = 1 (v8) | [`PeerKind::Community`], whatever the peer byte says |
//! | ferogram "min" channel (v4+: a channel with hash 0 and no channel kind) | a [`PeerKind::Channel`] peer with hash 0 and [`Peer::min`] set |
//! | min-peer contexts (v4+) | [`SessionData::min_contexts`] |
//! | future auth token (v7+) | [`SessionData::future_auth_token`] (present-but-empty stays `Some(vec![])`) |
//!
//! The files hold no logged-in user, test-mode flag or api_id: those stay `None`/`false`.
//!
//! The encoders (modules `layer05` and `ferogram`) refuse, with [`SessionError::Invalid`] naming the problem, anything the target
//! format cannot hold (more than 255 DCs, more than 65,535 peers, channels or min contexts, a
//! peer kind the format has no value for, ...) instead of truncating it. What they drop without
//! an error, because the formats have no place for it and it is only cache: usernames and phone
//! numbers of peers, the bot bit (bots are written as users), the logged-in user, test mode and
//! api_id. Min peers: ferogram v8 writes a min channel as hash 0 with no channel kind (its own
//! convention); other min peers are written with their hash, which both formats take as a full
//! one.

use std::fmt;
use std::net::SocketAddr;

use session_core::{
    AuthKey, DcFlags, DcKey, DcOption, MinPeerContext, Peer, PeerCache, PeerKind, SessionData, SessionError,
    UpdateState, AUTH_KEY_LEN,
};

/// The largest DC id a reading accepts as plausible in the DC table (production DCs are 1-5,
/// CDN DCs in the hundreds). The garbage readings of misdetected files have ids in the millions.
pub const MAX_PLAUSIBLE_DC_ID: i32 = 10_000;

/// The largest home DC a reading accepts. Reading a versioned file as v1 makes its home DC
/// `version + 256 * (low byte of the real home DC) + ...`, at least 257 for every real home DC;
/// a home DC is never a CDN DC, so 255 separates the two readings with room to spare.
pub const MAX_PLAUSIBLE_HOME_DC: i32 = 255;

const WHAT: &str = "layer-client/ferogram session file";
const CHANNEL_RECORD: usize = 8 + 4;
const MIN_CONTEXT_RECORD: usize = 8 + 8 + 4;
const COUNT_WRAP: usize = 1 << 16;

/// Which layout a legacy file was written in.
///
/// Versions 2 and 3 were written by layer-client and by early ferogram alike, in the same
/// layout; they are named after layer, and their peer byte is read as layer reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LegacyFormat {
    /// No version byte: home DC and the DC table only (layer-client up to 0.3).
    LayerV1,
    /// Version byte 2: adds update state, channel pts and peers; no DC flags byte.
    LayerV2,
    /// Version byte 3: adds the DC flags byte (layer-client 0.4.7-0.5, ferogram 0.1-0.2).
    LayerV3,
    /// ferogram version 4: adds min-peer contexts (no released writer ever wrote it).
    FerogramV4,
    /// ferogram version 5: the peer byte gains the value 2 (basic group).
    FerogramV5,
    /// ferogram version 6: adds the channel kind byte per peer.
    FerogramV6,
    /// ferogram version 7: adds the future auth token.
    FerogramV7,
    /// ferogram version 8: adds the community byte per peer.
    FerogramV8,
}

impl LegacyFormat {
    /// Every format, oldest first.
    pub const ALL: [LegacyFormat; 8] = [
        LegacyFormat::LayerV1,
        LegacyFormat::LayerV2,
        LegacyFormat::LayerV3,
        LegacyFormat::FerogramV4,
        LegacyFormat::FerogramV5,
        LegacyFormat::FerogramV6,
        LegacyFormat::FerogramV7,
        LegacyFormat::FerogramV8,
    ];

    /// The format version number (1-8).
    pub fn version(self) -> u8 {
        match self {
            LegacyFormat::LayerV1 => 1,
            LegacyFormat::LayerV2 => 2,
            LegacyFormat::LayerV3 => 3,
            LegacyFormat::FerogramV4 => 4,
            LegacyFormat::FerogramV5 => 5,
            LegacyFormat::FerogramV6 => 6,
            LegacyFormat::FerogramV7 => 7,
            LegacyFormat::FerogramV8 => 8,
        }
    }

    /// The format of a version number, if it is 1-8.
    pub fn from_version(version: u8) -> Option<LegacyFormat> {
        Self::ALL.get(usize::from(version).checked_sub(1)?).copied()
    }

    /// A short name such as `layer v3` or `ferogram v8`.
    pub fn name(self) -> &'static str {
        match self {
            LegacyFormat::LayerV1 => "layer v1",
            LegacyFormat::LayerV2 => "layer v2",
            LegacyFormat::LayerV3 => "layer v3",
            LegacyFormat::FerogramV4 => "ferogram v4",
            LegacyFormat::FerogramV5 => "ferogram v5",
            LegacyFormat::FerogramV6 => "ferogram v6",
            LegacyFormat::FerogramV7 => "ferogram v7",
            LegacyFormat::FerogramV8 => "ferogram v8",
        }
    }

    fn peer_record_len(self) -> usize {
        let base = 8 + 8 + 1;
        base + usize::from(self.version() >= 6) + usize::from(self.version() >= 8)
    }
}

impl fmt::Display for LegacyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A decoded legacy file: the session and the layout it was read in.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LegacySession {
    /// The session.
    pub data: SessionData,
    /// The layout the bytes were in.
    pub format: LegacyFormat,
}

/// Decodes a layer-client 0.5 / ferogram session file (or the bytes of their native string).
///
/// See the [module docs](self) for how the version is decided and how values map. Never
/// panics, and allocates nothing that the input does not pay for with bytes.
pub fn decode(bytes: &[u8]) -> Result<LegacySession, SessionError> {
    let first = *bytes.first().ok_or_else(|| SessionError::invalid(WHAT, "empty input"))?;
    let mut candidates = vec![LegacyFormat::LayerV1];
    if let Some(format) = LegacyFormat::from_version(first).filter(|f| f.version() >= 2) {
        candidates.push(format);
    }
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for format in candidates {
        match read(bytes, format) {
            Ok(data) => accepted.push(LegacySession { data, format }),
            Err(reason) => refused.push(format!("as {format}: {reason}")),
        }
    }
    match accepted.len() {
        1 => Ok(accepted.remove(0)),
        0 => {
            let mut reason = format!("no layout fits the {} bytes ({})", bytes.len(), refused.join("; "));
            if first > 8 {
                reason.push_str(&format!(
                    "; a first byte of {first} could also be a ferogram format newer than v8, which this build does not read"
                ));
            }
            Err(SessionError::invalid(WHAT, reason))
        }
        _ => Err(SessionError::invalid(
            WHAT,
            format!(
                "ambiguous: the bytes read completely as {}; refusing to guess",
                accepted.iter().map(|s| s.format.name()).collect::<Vec<_>>().join(" and ")
            ),
        )),
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|end| *end <= self.buf.len()).ok_or_else(|| {
            format!("truncated: {what} needs {n} bytes at offset {}, {} remain", self.pos, self.remaining())
        })?;
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &str) -> Result<i32, String> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    fn i64(&mut self, what: &str) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

fn plausible_dc(id: i32) -> bool {
    (1..=MAX_PLAUSIBLE_DC_ID).contains(&id)
}

fn read(bytes: &[u8], format: LegacyFormat) -> Result<SessionData, String> {
    let version = format.version();
    let mut r = Reader { buf: bytes, pos: 0 };
    if version >= 2 {
        r.u8("version byte")?;
    }
    let mut data = SessionData::default();
    data.home_dc = r.i32("home DC")?;
    if !(1..=MAX_PLAUSIBLE_HOME_DC).contains(&data.home_dc) {
        return Err(format!("home DC {} is not a DC id", data.home_dc));
    }
    let dc_count = r.u8("DC count")?;
    for index in 0..dc_count {
        let option = read_dc(&mut r, version).map_err(|e| format!("DC entry {index}: {e}"))?;
        // The first entry under a key wins: it is the one the original decoders' lookups use.
        data.dcs.entry(option.key()).or_insert(option);
    }
    if format == LegacyFormat::LayerV1 {
        if r.remaining() != 0 {
            return Err(format!("{} bytes follow the DC table, where v1 ends", r.remaining()));
        }
        return Ok(data);
    }
    let pts = r.i32("pts")?;
    let qts = r.i32("qts")?;
    let date = r.i32("date")?;
    let seq = r.i32("seq")?;
    data.updates = UpdateState::new(pts, qts, date, seq);
    let layout = tail_layout(bytes, r.pos, format)?;

    let mut r = Reader { buf: bytes, pos: r.pos + 2 };
    for _ in 0..layout.channels {
        let id = r.i64("channel id")?;
        let pts = r.i32("channel pts")?;
        data.updates.channels.insert(id, pts);
    }
    r.pos += 2;
    let mut peers = Vec::with_capacity(layout.peers);
    for _ in 0..layout.peers {
        peers.push(read_peer(&mut r, format)?);
    }
    data.peers = peers.into_iter().collect::<PeerCache>();
    if version >= 4 {
        r.pos += 2;
        let mut contexts = Vec::with_capacity(layout.min_contexts);
        for _ in 0..layout.min_contexts {
            let user_id = r.i64("min context user")?;
            let peer_id = r.i64("min context peer")?;
            let msg_id = r.i32("min context message")?;
            contexts.push(MinPeerContext::new(user_id, peer_id, msg_id));
        }
        data.min_contexts = contexts;
    }
    if version >= 7 && r.u8("token flag")? == 1 {
        let len = r.u16("token length")?;
        data.future_auth_token = Some(r.take(usize::from(len), "token")?.to_vec());
    }
    if r.remaining() != 0 {
        return Err(format!("{} trailing bytes", r.remaining()));
    }
    Ok(data)
}

fn read_dc(r: &mut Reader<'_>, version: u8) -> Result<DcOption, String> {
    let id = r.i32("DC id")?;
    if !plausible_dc(id) {
        return Err(format!("DC id {id} is not a DC id"));
    }
    let auth_key = if r.u8("key flag")? == 1 {
        Some(AuthKey::from_slice(r.take(AUTH_KEY_LEN, "auth key")?).ok_or("auth key of the wrong length")?)
    } else {
        None
    };
    let salt = r.i64("salt")?;
    let time_offset = r.i32("time offset")?;
    let len = r.u8("address length")?;
    let text = r.take(usize::from(len), "address")?;
    let text = std::str::from_utf8(text).map_err(|_| "address is not UTF-8 text".to_owned())?;
    let addr: SocketAddr = text.parse().map_err(|_| format!("address {text:?} is not ip:port"))?;
    let flags = if version >= 3 { r.u8("DC flags")? } else { 0 };
    Ok(DcOption::new(id, addr)
        .with_flags(DcFlags(u32::from(flags)))
        .with_auth_key(auth_key)
        .with_salt(salt, time_offset))
}

fn read_peer(r: &mut Reader<'_>, format: LegacyFormat) -> Result<Peer, String> {
    let version = format.version();
    let id = r.i64("peer id")?;
    let hash = r.i64("peer hash")?;
    let kind_byte = r.u8("peer kind")?;
    let channel_kind = if version >= 6 { Some(r.u8("channel kind")?) } else { None };
    let community = version >= 8 && r.u8("community flag")? == 1;
    if version <= 3 {
        let kind = if kind_byte != 0 { PeerKind::Channel } else { PeerKind::User };
        return Ok(Peer::new(id, kind, hash));
    }
    if community {
        return Ok(Peer::new(id, PeerKind::Community, hash));
    }
    Ok(match kind_byte {
        1 => {
            let kind = match channel_kind {
                Some(0) => PeerKind::Broadcast,
                Some(1) => PeerKind::Megagroup,
                Some(2) => PeerKind::Gigagroup,
                _ => PeerKind::Channel,
            };
            Peer::new(id, kind, hash).with_min(hash == 0 && kind == PeerKind::Channel)
        }
        2 => Peer::new(id, PeerKind::BasicGroup, hash),
        _ => Peer::new(id, PeerKind::User, hash),
    })
}

#[derive(Debug, PartialEq, Eq)]
struct Layout {
    channels: usize,
    peers: usize,
    min_contexts: usize,
}

/// Every count `raw + k * 65,536` whose records fit in `available` bytes.
fn counts(raw: u16, available: usize, record: usize) -> impl Iterator<Item = usize> {
    (0usize..)
        .map(move |k| usize::from(raw).saturating_add(k.saturating_mul(COUNT_WRAP)))
        .take_while(move |n| n.checked_mul(record).is_some_and(|bytes| bytes <= available))
}

fn u16_at(bytes: &[u8], pos: usize) -> Option<u16> {
    let b = bytes.get(pos..pos.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

/// Finds the counts of the fixed-size sections after the update state (channels, peers,
/// min contexts, token) that make the input end exactly, allowing for counts that the writer
/// wrapped at 65,536. Only positions are computed here; nothing is read or allocated.
fn tail_layout(bytes: &[u8], start: usize, format: LegacyFormat) -> Result<Layout, String> {
    let version = format.version();
    let len = bytes.len();
    let peer_record = format.peer_record_len();
    let mut found = Vec::new();
    let ch_raw = u16_at(bytes, start).ok_or("truncated: no channel count")?;
    let after_ch_count = start + 2;
    for channels in counts(ch_raw, len.saturating_sub(after_ch_count), CHANNEL_RECORD) {
        let p1 = after_ch_count + channels * CHANNEL_RECORD;
        let Some(peer_raw) = u16_at(bytes, p1) else { continue };
        for peers in counts(peer_raw, len.saturating_sub(p1 + 2), peer_record) {
            let p2 = p1 + 2 + peers * peer_record;
            if version < 4 {
                if p2 == len {
                    found.push(Layout { channels, peers, min_contexts: 0 });
                }
                continue;
            }
            let Some(min_raw) = u16_at(bytes, p2) else { continue };
            for min_contexts in counts(min_raw, len.saturating_sub(p2 + 2), MIN_CONTEXT_RECORD) {
                let p3 = p2 + 2 + min_contexts * MIN_CONTEXT_RECORD;
                let end = if version < 7 {
                    Some(p3)
                } else {
                    match bytes.get(p3) {
                        None => None,
                        Some(1) => u16_at(bytes, p3 + 1).map(|t| p3 + 3 + usize::from(t)),
                        Some(_) => Some(p3 + 1),
                    }
                };
                if end == Some(len) {
                    found.push(Layout { channels, peers, min_contexts });
                }
            }
        }
        if found.len() > 1 {
            break;
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(describe_misfit(bytes, start, format)),
        _ => Err("the channel/peer counts fit the bytes in more than one way".to_owned()),
    }
}

/// Why the counts as written do not fit, for the error message.
fn describe_misfit(bytes: &[u8], start: usize, format: LegacyFormat) -> String {
    let mut r = Reader { buf: bytes, pos: start };
    let attempt = (|| -> Result<usize, String> {
        let channels = usize::from(r.u16("channel count")?);
        r.take(channels.saturating_mul(CHANNEL_RECORD), "channels")?;
        let peers = usize::from(r.u16("peer count")?);
        r.take(peers.saturating_mul(format.peer_record_len()), "peers")?;
        if format.version() >= 4 {
            let min = usize::from(r.u16("min context count")?);
            r.take(min.saturating_mul(MIN_CONTEXT_RECORD), "min contexts")?;
        }
        if format.version() >= 7 && r.u8("token flag")? == 1 {
            let len = usize::from(r.u16("token length")?);
            r.take(len, "token")?;
        }
        Ok(r.remaining())
    })();
    match attempt {
        Ok(trailing) => format!("{trailing} trailing bytes"),
        Err(e) => e,
    }
}

/// Home DC, DC table, update state and channel pts: the part v3 and v8 share.
pub(crate) fn write_head(out: &mut Vec<u8>, data: &SessionData, format: &str) -> Result<(), SessionError> {
    out.extend_from_slice(&data.home_dc.to_le_bytes());
    let dc_count = u8::try_from(data.dcs.len()).map_err(|_| {
        SessionError::invalid(format, format!("{} DC options do not fit (at most 255)", data.dcs.len()))
    })?;
    out.push(dc_count);
    for (key, dc) in &data.dcs {
        write_dc(out, key, dc, format)?;
    }
    let u = &data.updates;
    for v in [u.pts, u.qts, u.date, u.seq] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    write_count(out, u.channels.len(), "channel pts entries", format)?;
    for (id, pts) in &u.channels {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&pts.to_le_bytes());
    }
    Ok(())
}

fn write_dc(out: &mut Vec<u8>, key: &DcKey, dc: &DcOption, format: &str) -> Result<(), SessionError> {
    let flags = u8::try_from(dc.flags.0).map_err(|_| {
        SessionError::invalid(format, format!("DC {} has flags {:#x}, which do not fit in a byte", key.id, dc.flags.0))
    })?;
    out.extend_from_slice(&dc.id.to_le_bytes());
    match &dc.auth_key {
        Some(k) => {
            out.push(1);
            out.extend_from_slice(k.as_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&dc.server_salt.to_le_bytes());
    out.extend_from_slice(&dc.time_offset.to_le_bytes());
    let addr = dc.addr.to_string();
    let len = u8::try_from(addr.len())
        .map_err(|_| SessionError::invalid(format, format!("DC {} address {addr} is longer than 255 bytes", key.id)))?;
    out.push(len);
    out.extend_from_slice(addr.as_bytes());
    out.push(flags);
    Ok(())
}

pub(crate) fn write_count(out: &mut Vec<u8>, n: usize, what: &str, format: &str) -> Result<(), SessionError> {
    let n16 = u16::try_from(n).map_err(|_| {
        SessionError::invalid(format, format!("{n} {what} do not fit (the format holds at most 65,535)"))
    })?;
    out.extend_from_slice(&n16.to_le_bytes());
    Ok(())
}
