//! Where a session lives in Redis: its keys, and the layout of the fields inside them.
//!
//! A session named `NAME` under the key prefix `P` (default `layer-session:`) is two hashes and a
//! scratch hash, all with the hash tag `{NAME}` so that a Redis Cluster keeps them on one slot (a
//! script may only touch keys of one slot):
//!
//! | key | fields |
//! | --- | --- |
//! | `P{NAME}:s` | `format` (layout version: `1`, or `2` sealed); `seal` (sealed sessions only: which key, see [`crate::seal`]); `meta` (home DC, user, test mode, api_id, update state without channels, min contexts, future auth token); `dc:ID:FLAGS` per DC option; `c:ID` per channel (its pts, decimal); `p:BB` per peer bucket (BB: the bucket number, 2 bytes big-endian) |
//! | `P{NAME}:lease` | `token` (the fencing counter, never reset), `holder`, `expires` (ms, Redis' clock) |
//! | `P{NAME}:tmp` | scratch: a large write is staged here and renamed over `:s` (never read) |
//!
//! One hash for the whole session so that every write is committed by one command (see the
//! `WRITE` script). An empty value is a tombstone (a removed DC option, channel or emptied
//! bucket); a full save drops them.
//!
//! The values of `meta` and `dc:*` are the core codec's bytes (versioned and checksummed) of a
//! session holding only that part. In a sealed session every value but `format` and `seal` is
//! sealed ([`crate::seal`]); field names and peer keys stay plain.
//!
//! Peers are grouped in buckets so that a million of them are 65,536 fields (loaded in one
//! `HGETALL` of tens of milliseconds on the server) while one change still rewrites one small
//! bucket (about N / 65,536 peers, by a script on the server). A peer's bucket is
//! [`bucket_of`] its key (stable: a stored layout depends on it). A bucket is a concatenation of
//! records, in any order: the key (9 bytes: id space code, id big-endian with the sign bit
//! flipped), the value's length (u32 LE) and the value: a byte `kind code | min << 4 | extras <<
//! 5` and the access hash (8 bytes LE); with the extras bit, the number of usernames (u32 LE),
//! each username (u32 LE length, UTF-8), and the phone (0, or 1, u32 LE length, UTF-8).
//!
//! Nothing here expires:
//! `delete` removes the three data keys and keeps the lease, so tokens only grow.

use session_core::{codec, DcKey, Peer, PeerClass, PeerKey, PeerKind, SessionData, SessionError, UpdateState};

/// The layout version of a plain session (what this build writes without a key).
pub(crate) const FORMAT: u32 = 1;
/// The layout version of a sealed session (`crate::seal`); also the newest this build reads.
pub(crate) const SEALED_FORMAT: u32 = 2;

/// The default key prefix.
pub const DEFAULT_KEY_PREFIX: &str = "layer-session:";

/// The name of the session `open` uses.
pub const DEFAULT_SESSION: &str = "default";

/// The keys of one session.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    pub session: String,
    pub tmp: String,
    pub lease: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str, name: &str) -> Result<Keys, SessionError> {
        if name.is_empty() || name.contains(['{', '}']) || name.len() > 256 {
            return Err(SessionError::invalid(
                "Redis session name",
                format!("{name:?}: a session name is 1 to 256 bytes without '{{' or '}}'"),
            ));
        }
        let base = format!("{prefix}{{{name}}}");
        Ok(Keys { session: format!("{base}:s"), tmp: format!("{base}:tmp"), lease: format!("{base}:lease") })
    }
}

/// The part of a session stored in the `meta` field.
pub(crate) fn meta_of(full: &SessionData) -> SessionData {
    let mut meta = SessionData::default();
    meta.home_dc = full.home_dc;
    meta.user = full.user;
    meta.test_mode = full.test_mode;
    meta.api_id = full.api_id;
    let u = &full.updates;
    meta.updates = UpdateState::new(u.pts, u.qts, u.date, u.seq);
    meta.min_contexts.clone_from(&full.min_contexts);
    meta.future_auth_token.clone_from(&full.future_auth_token);
    meta
}

pub(crate) fn encode_meta(full: &SessionData) -> Result<Vec<u8>, SessionError> {
    codec::encode(&meta_of(full))
}

/// The field of a DC option.
pub(crate) fn dc_field(key: DcKey) -> Vec<u8> {
    format!("dc:{}:{}", key.id, key.flags.0).into_bytes()
}

/// The value of a DC option's field.
pub(crate) fn encode_dc(full: &SessionData, key: DcKey) -> Result<Option<Vec<u8>>, SessionError> {
    let Some(option) = full.dcs.get(&key) else { return Ok(None) };
    let mut one = SessionData::default();
    one.dcs.insert(key, option.clone());
    codec::encode(&one).map(Some)
}

/// The field of a peer: sorts as the cache's keys do.
pub(crate) fn peer_field(key: PeerKey) -> [u8; 9] {
    let mut f = [0u8; 9];
    f[0] = key.class.code();
    f[1..].copy_from_slice(&(u64::from_ne_bytes(key.id.to_ne_bytes()) ^ (1 << 63)).to_be_bytes());
    f
}

pub(crate) fn parse_peer_field(f: &[u8]) -> Option<PeerKey> {
    let (&code, id) = f.split_first()?;
    let id: [u8; 8] = id.try_into().ok()?;
    let id = i64::from_ne_bytes((u64::from_be_bytes(id) ^ (1 << 63)).to_ne_bytes());
    Some(PeerKey::new(PeerClass::from_code(code)?, id))
}

/// The bucket of a peer (layout in the module doc): a multiplicative hash of its key, 16 bits.
pub(crate) fn bucket_of(key: PeerKey) -> [u8; 2] {
    let mixed = (u64::from_ne_bytes(key.id.to_ne_bytes()) ^ (u64::from(key.class.code()) << 61))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let top = mixed >> 48;
    [u8::try_from(top >> 8).unwrap_or(0), u8::try_from(top & 0xFF).unwrap_or(0)]
}

/// The session hash's field of a bucket.
pub(crate) fn bucket_field(bucket: [u8; 2]) -> Vec<u8> {
    vec![b'p', b':', bucket[0], bucket[1]]
}

/// Appends a peer's record (key, length, value) to a bucket.
pub(crate) fn push_record(bucket: &mut Vec<u8>, peer: &Peer) {
    bucket.extend_from_slice(&peer_field(peer.key()));
    let at = bucket.len();
    bucket.extend_from_slice(&[0; 4]);
    write_peer(bucket, peer);
    let len = u32::try_from(bucket.len() - at - 4).unwrap_or(u32::MAX);
    bucket[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// The records of a bucket, each checked to belong to it; `None` when damaged.
pub(crate) fn read_bucket(field: &[u8], mut blob: &[u8], out: &mut Vec<Peer>) -> Option<()> {
    while !blob.is_empty() {
        let key = parse_peer_field(take(&mut blob, 9)?)?;
        let len = usize::try_from(u32::from_le_bytes(take(&mut blob, 4)?.try_into().ok()?)).ok()?;
        let peer = decode_peer(key, take(&mut blob, len)?)?;
        if bucket_of(key) != field {
            return None;
        }
        out.push(peer);
    }
    Some(())
}

/// A bucket with each record's value replaced by `f(key, value)` (sealing or opening them);
/// `Ok(None)` when the bucket's records are damaged.
pub(crate) fn map_bucket<E>(
    mut blob: &[u8],
    mut f: impl FnMut(&[u8], &[u8]) -> Result<Vec<u8>, E>,
) -> Result<Option<Vec<u8>>, E> {
    let mut out = Vec::with_capacity(blob.len() + blob.len() / 2);
    while !blob.is_empty() {
        let record = (|| {
            let key = take(&mut blob, 9)?;
            let len = usize::try_from(u32::from_le_bytes(take(&mut blob, 4)?.try_into().ok()?)).ok()?;
            Some((key, take(&mut blob, len)?))
        })();
        let Some((key, value)) = record else { return Ok(None) };
        let value = f(key, value)?;
        out.extend_from_slice(key);
        out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&value);
    }
    Ok(Some(out))
}

/// The value of a peer's record (layout in the module doc).
pub(crate) fn encode_peer(peer: &Peer) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    write_peer(&mut out, peer);
    out
}

fn write_peer(out: &mut Vec<u8>, peer: &Peer) {
    let extras = !peer.usernames.is_empty() || peer.phone.is_some();
    out.push(peer.kind.code() | (u8::from(peer.min) << 4) | (u8::from(extras) << 5));
    out.extend_from_slice(&peer.access_hash.to_le_bytes());
    if extras {
        let put = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        };
        out.extend_from_slice(&u32::try_from(peer.usernames.len()).unwrap_or(u32::MAX).to_le_bytes());
        for u in &peer.usernames {
            put(out, u);
        }
        match &peer.phone {
            Some(p) => {
                out.push(1);
                put(out, p);
            }
            None => out.push(0),
        }
    }
}

/// Reads [`encode_peer`]'s form back for the peer `key`; `None` when damaged.
pub(crate) fn decode_peer(key: PeerKey, bytes: &[u8]) -> Option<Peer> {
    let (&head, rest) = bytes.split_first()?;
    let kind = PeerKind::from_code(head & 0x0F)?;
    if kind.class() != key.class || head & 0xC0 != 0 {
        return None;
    }
    let hash: [u8; 8] = rest.get(..8)?.try_into().ok()?;
    let mut peer = Peer::new(key.id, kind, i64::from_le_bytes(hash)).with_min(head & 0x10 != 0);
    let mut rest = &rest[8..];
    if head & 0x20 != 0 {
        let word = |b: &[u8]| -> Option<usize> { usize::try_from(u32::from_le_bytes(b.try_into().ok()?)).ok() };
        let count = word(take(&mut rest, 4)?)?;
        let mut names = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let n = word(take(&mut rest, 4)?)?;
            names.push(String::from_utf8(take(&mut rest, n)?.to_vec()).ok()?);
        }
        let phone = match take(&mut rest, 1)?[0] {
            0 => None,
            1 => {
                let n = word(take(&mut rest, 4)?)?;
                Some(String::from_utf8(take(&mut rest, n)?.to_vec()).ok()?)
            }
            _ => return None,
        };
        peer = peer.with_usernames(names).with_phone(phone);
    }
    rest.is_empty().then_some(peer)
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (a, b) = (rest.get(..n)?, rest.get(n..)?);
    *rest = b;
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_fields_sort_like_keys_and_round_trip() {
        let mut keys: Vec<PeerKey> = [i64::MIN, -5, -1, 0, 1, 77, i64::MAX]
            .iter()
            .flat_map(|&id| [PeerKey::user(id), PeerKey::chat(id), PeerKey::channel(id)])
            .collect();
        keys.sort();
        let fields: Vec<[u8; 9]> = keys.iter().map(|k| peer_field(*k)).collect();
        assert!(fields.windows(2).all(|w| w[0] < w[1]), "fields do not sort as keys");
        for (k, f) in keys.iter().zip(&fields) {
            assert_eq!(parse_peer_field(f), Some(*k));
        }
        assert_eq!(parse_peer_field(&[0; 8]), None);
        assert_eq!(parse_peer_field(&[250; 9]), None);
    }

    #[test]
    fn peers_round_trip_and_damage_is_refused() {
        let peers = [
            Peer::new(5, PeerKind::User, -9),
            Peer::new(-3, PeerKind::Megagroup, i64::MAX).with_min(true),
            Peer::new(8, PeerKind::Bot, 1).with_usernames(vec!["a".into(), "bé".into()]).with_phone(Some("+1".into())),
            Peer::new(9, PeerKind::BasicGroup, 0).with_phone(Some(String::new())),
        ];
        for p in &peers {
            let bytes = encode_peer(p);
            assert_eq!(decode_peer(p.key(), &bytes).as_ref(), Some(p));
            for cut in 0..bytes.len() {
                assert_eq!(decode_peer(p.key(), &bytes[..cut]), None, "{p:?} cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(decode_peer(p.key(), &longer), None);
        }
        // A kind of another id space than the field's.
        assert_eq!(decode_peer(PeerKey::chat(5), &encode_peer(&peers[0])), None);
    }

    #[test]
    fn buckets_spread_and_records_read_back() {
        let mut seen = std::collections::HashSet::new();
        for id in 0..10_000i64 {
            seen.insert(bucket_of(PeerKey::user(id)));
        }
        assert!(seen.len() > 9_000, "10,000 ids in {} buckets", seen.len());
        assert_ne!(bucket_of(PeerKey::user(1)), bucket_of(PeerKey::channel(1)));
        let peers = [Peer::new(1, PeerKind::User, 5), Peer::new(1, PeerKind::User, 6).with_phone(Some("7".into()))];
        let mut blob = Vec::new();
        for p in &peers {
            push_record(&mut blob, p);
        }
        let field = bucket_of(PeerKey::user(1));
        let mut out = Vec::new();
        assert_eq!(read_bucket(&field, &blob, &mut out), Some(()));
        assert_eq!(out, peers);
        assert_eq!(read_bucket(&[0, 0], &blob, &mut Vec::new()).filter(|_| field != [0, 0]), None);
        assert_eq!(read_bucket(&field, &blob[..blob.len() - 1], &mut Vec::new()), None);
    }

    #[test]
    fn names_with_braces_are_refused() {
        assert!(Keys::new("p:", "a{b").is_err());
        assert!(Keys::new("p:", "").is_err());
        let k = Keys::new("p:", "acct-1").expect("keys");
        assert_eq!(k.session, "p:{acct-1}:s");
        assert_eq!(k.lease, "p:{acct-1}:lease");
    }
}
