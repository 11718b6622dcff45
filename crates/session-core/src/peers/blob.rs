//! The stored form of a [`PeerCache`]: one byte string (or consecutive [`PeerBlob`]s of it), so
//! that a million peers encode and decode in a single pass without a serde call per peer.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cache::{Extra, Packed, PeerCache, Slot};
use super::model::{Peer, PeerClass, PeerKey, PeerKind};

/// A piece of an encoded [`PeerCache`] ([`PeerCache::encode_blobs`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerBlob {
    /// Peers in the blob.
    pub count: usize,
    /// The key of its first peer.
    pub first: PeerKey,
    /// The key of its last peer.
    pub last: PeerKey,
    /// The encoded peers.
    pub bytes: Vec<u8>,
}

/// The stored form of the cache: one byte string, so that a million peers encode and decode in a
/// single pass without a serde call (or an allocation) per peer.
///
/// Peers come in key order. Per peer: a header byte (kind in bits 0-3, min in bit 4, extras in
/// bit 5), the id as a zigzag varint delta from the previous peer of the same id space (ids of a
/// new id space start from 0), the access hash as 8 bytes little-endian; then, if the extras bit
/// is set, the username count and each username (varint length + UTF-8) and the phone (0, or 1 +
/// varint length + UTF-8).
impl Serialize for PeerCache {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.encode_blob())
    }
}

impl PeerCache {
    /// About the size of the encoded cache (for reserving buffers).
    pub(crate) fn encoded_len_hint(&self) -> usize {
        // Header, an id delta of up to 2 bytes and the hash; extras are rare and short.
        self.len() * 11 + self.extra.len() * 24 + 10
    }

    fn encode_blob(&self) -> Vec<u8> {
        if self.added.is_empty() && self.removed == 0 {
            // Straight from the vector (a freshly loaded cache): no merge.
            self.encode_entries(self.len(), self.base.iter().map(|s| (s.key(), s.packed())), None)
        } else {
            self.encode_entries(self.len(), self.entries(), None)
        }
    }

    /// The cache as consecutive blobs of at most `per_blob` peers each (at least one), in key
    /// order; a blob never holds peers of two id spaces, so the key ranges of the blobs leave
    /// room for new ids above each space's last. Each blob has the layout of the whole cache's
    /// (a count, then the peers; see the `Serialize` impl), so storage can write a large cache in
    /// pieces and read them back with
    /// [`SortedPeers::extend_from_blob`](crate::SortedPeers::extend_from_blob). An empty cache
    /// gives no blob.
    pub fn encode_blobs(&self, per_blob: usize) -> Vec<PeerBlob> {
        // A freshly loaded cache is encoded straight from its vector; otherwise the merge of
        // both parts is laid out once.
        let merged: Vec<Slot>;
        let slots: &[Slot] = if self.added.is_empty() && self.removed == 0 {
            &self.base
        } else {
            merged = self.entries().map(|(k, p)| Slot::new(k, p)).collect();
            &merged
        };
        slots
            .chunk_by(|a, b| a.class == b.class)
            .flat_map(|space| space.chunks(per_blob.max(1)))
            .filter_map(|part| {
                let (first, last) = (part.first()?.key(), part.last()?.key());
                let bytes = self.encode_entries(part.len(), part.iter().map(|s| (s.key(), s.packed())), Some(first));
                Some(PeerBlob { count: part.len(), first, last, bytes })
            })
            .collect()
    }

    /// Encodes `len` entries; `from` is the first entry's key (`None`: the first of the cache).
    fn encode_entries(
        &self,
        len: usize,
        entries: impl Iterator<Item = (PeerKey, Packed)>,
        from: Option<PeerKey>,
    ) -> Vec<u8> {
        let whole = from.is_none() && len == self.len();
        let mut out = Vec::with_capacity(if whole { self.encoded_len_hint() } else { len * 11 + 10 });
        put_varint(&mut out, len as u64);
        let mut extras = match from {
            Some(key) => self.extra.range(key..),
            None => self.extra.range(..),
        }
        .peekable();
        let mut prev: Option<(PeerClass, i64)> = None;
        for (key, p) in entries {
            let extra = match extras.peek() {
                Some((k, e)) if **k == key => {
                    let e = *e;
                    extras.next();
                    Some(e)
                }
                _ => None,
            };
            let base = match prev {
                Some((class, id)) if class == key.class => id,
                _ => 0,
            };
            prev = Some((key.class, key.id));
            let header = p.kind | (u8::from(p.min) << 4) | (u8::from(extra.is_some()) << 5);
            let delta = zigzag(key.id.wrapping_sub(base));
            let end;
            if delta < 1 << 49 {
                // Header, a varint of at most 7 bytes and the hash fit in 16 bytes: built in a
                // register, appended whole (a constant-size copy, no call), then cut to length.
                let mut word = u128::from(header);
                let mut shift = 8;
                let mut v = delta;
                while v >= 0x80 {
                    word |= u128::from((v & 0x7F) | 0x80) << shift;
                    v >>= 7;
                    shift += 8;
                }
                word |= u128::from(v) << shift;
                word |= u128::from(u64::from_le_bytes(p.access_hash.to_le_bytes())) << (shift + 8);
                end = out.len() + shift / 8 + 1 + 8;
                out.extend_from_slice(&word.to_le_bytes());
            } else {
                let mut buf = [0u8; FIXED_MAX];
                buf[0] = header;
                let n = 1 + varint_into(&mut buf[1..11], delta);
                buf[n..n + 8].copy_from_slice(&p.access_hash.to_le_bytes());
                end = out.len() + n + 8;
                out.extend_from_slice(&buf);
            }
            out.truncate(end);
            if let Some(e) = extra {
                put_varint(&mut out, e.usernames.len() as u64);
                for u in &e.usernames {
                    put_str(&mut out, u);
                }
                match &e.phone {
                    None => out.push(0),
                    Some(phone) => {
                        out.push(1);
                        put_str(&mut out, phone);
                    }
                }
            }
        }
        out
    }
}

impl<'de> Deserialize<'de> for PeerCache {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BlobVisitor;
        impl serde::de::Visitor<'_> for BlobVisitor {
            type Value = PeerCache;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the peer cache byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<PeerCache, E> {
                decode_blob(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_bytes(BlobVisitor)
    }
}

/// The smallest encoded peer: header, one-byte id delta, 8-byte hash.
pub(super) const MIN_PEER_LEN: usize = 10;

/// The longest fixed part of a peer: header, ten-byte id delta, 8-byte hash.
const FIXED_MAX: usize = 1 + 10 + 8;

fn decode_blob(bytes: &[u8]) -> Result<PeerCache, &'static str> {
    let mut r = Reader { bytes, pos: 0 };
    let count = r.varint()?;
    // Never trust the count beyond what the bytes can hold.
    let max = (bytes.len() / MIN_PEER_LEN) as u64;
    if count > max {
        return Err("peer count exceeds the bytes present");
    }
    let count = usize::try_from(count).map_err(|_| "peer count too large")?;
    let mut base: Vec<Slot> = Vec::with_capacity(count);
    // Extras with the index of their peer in `base`.
    let mut extra: Vec<(usize, Extra)> = Vec::new();
    let mut prev: Option<(PeerClass, i64)> = None;
    let mut sorted = true;
    for index in 0..count {
        let (slot, e) = r.peer(prev)?;
        if let Some((c, p)) = prev {
            sorted &= (c, p) < (slot.class, slot.id);
        }
        prev = Some((slot.class, slot.id));
        base.push(slot);
        if let Some(e) = e {
            extra.push((index, e));
        }
    }
    if r.pos != bytes.len() {
        return Err("trailing bytes after the peers");
    }
    if !sorted {
        // Only hand-made input gets here: insert in order (the last one of a key wins).
        let mut cache = PeerCache::new();
        let mut extras = extra.into_iter().peekable();
        for (index, slot) in base.into_iter().enumerate() {
            let (usernames, phone) = match extras.next_if(|(i, _)| *i == index) {
                Some((_, e)) => (e.usernames, e.phone),
                None => (Vec::new(), None),
            };
            cache.insert(Peer {
                id: slot.id,
                kind: PeerKind::from_u8(slot.kind),
                access_hash: slot.access_hash,
                min: slot.min,
                usernames,
                phone,
            });
        }
        return Ok(cache);
    }
    let extra = extra.into_iter().map(|(i, e)| (base[i].key(), e)).collect();
    Ok(PeerCache { base, removed: 0, added: BTreeMap::new(), extra })
}

fn zigzag(v: i64) -> u64 {
    u64::from_le_bytes(((v << 1) ^ (v >> 63)).to_le_bytes())
}

fn unzigzag(v: u64) -> i64 {
    i64::from_le_bytes((v >> 1).to_le_bytes()) ^ -i64::from_le_bytes((v & 1).to_le_bytes())
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v.to_le_bytes()[0] | 0x80);
        v >>= 7;
    }
    out.push(v.to_le_bytes()[0]);
}

/// Writes `v` as a varint at the start of `buf` (at least 10 bytes), returning its length.
fn varint_into(buf: &mut [u8], mut v: u64) -> usize {
    let mut n = 0;
    while v >= 0x80 {
        buf[n] = v.to_le_bytes()[0] | 0x80;
        v >>= 7;
        n += 1;
    }
    buf[n] = v.to_le_bytes()[0];
    n + 1
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub(super) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, &'static str> {
        let b = *self.bytes.get(self.pos).ok_or("truncated peer cache")?;
        self.pos += 1;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let end = self.pos.checked_add(N).ok_or("truncated peer cache")?;
        let slice = self.bytes.get(self.pos..end).ok_or("truncated peer cache")?;
        self.pos = end;
        let mut a = [0u8; N];
        a.copy_from_slice(slice);
        Ok(a)
    }

    /// One peer; `prev` is the key of the peer before it in the blob. Extras that hold nothing
    /// are `None`.
    #[inline(always)]
    pub(super) fn peer(&mut self, prev: Option<(PeerClass, i64)>) -> Result<(Slot, Option<Extra>), &'static str> {
        let (header, delta, access_hash) = self.fixed()?;
        if header & 0b1100_0000 != 0 {
            return Err("unknown peer header bits");
        }
        let kind = PeerKind::ALL.get(usize::from(header & 0x0F)).copied().ok_or("unknown peer kind")?;
        let class = kind.class();
        let base_id = match prev {
            Some((c, id)) if c == class => id,
            _ => 0,
        };
        let id = base_id.wrapping_add(unzigzag(delta));
        let slot = Slot { id, access_hash, class, kind: kind.code(), min: header & 0x10 != 0 };
        if header & 0x20 == 0 {
            return Ok((slot, None));
        }
        let n = self.varint()?;
        let mut usernames = Vec::new();
        for _ in 0..n {
            usernames.push(self.string()?);
        }
        let phone = match self.byte()? {
            0 => None,
            1 => Some(self.string()?),
            _ => return Err("bad phone marker"),
        };
        let extra = (!usernames.is_empty() || phone.is_some()).then_some(Extra { usernames, phone });
        Ok((slot, extra))
    }

    /// The fixed part of a peer: header byte, id delta varint, access hash. Always inlined:
    /// returned through memory, its result is read back wider than it was written (a
    /// store-forwarding stall on every peer, a third of the decode time).
    #[inline(always)]
    fn fixed(&mut self) -> Result<(u8, u64, i64), &'static str> {
        let Some(w) = self.bytes.get(self.pos..).and_then(|rest| rest.first_chunk::<FIXED_MAX>()) else {
            // Near the end: byte by byte, with every bound checked.
            let header = self.byte()?;
            let delta = self.varint()?;
            return Ok((header, delta, i64::from_le_bytes(self.array::<8>()?)));
        };
        // Enough bytes for the longest peer: no bound to check per byte.
        let mut delta = 0u64;
        let mut i = 1;
        loop {
            let b = w[i];
            delta |= u64::from(b & 0x7F) << (7 * (i - 1));
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            if i == 11 {
                return Err("varint too long");
            }
        }
        let mut hash = [0u8; 8];
        hash.copy_from_slice(&w[i..i + 8]);
        self.pos += i + 8;
        Ok((w[0], delta, i64::from_le_bytes(hash)))
    }

    pub(super) fn varint(&mut self) -> Result<u64, &'static str> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long")
    }

    fn string(&mut self) -> Result<String, &'static str> {
        let len = usize::try_from(self.varint()?).map_err(|_| "string too long")?;
        let end = self.pos.checked_add(len).ok_or("truncated peer cache")?;
        let slice = self.bytes.get(self.pos..end).ok_or("truncated peer cache")?;
        self.pos = end;
        String::from_utf8(slice.to_vec()).map_err(|_| "username or phone is not UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blob layout written the plain way, byte by byte, from the documented format.
    fn reference_blob(peers: &[Peer]) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, peers.len() as u64);
        let mut prev: Option<(PeerClass, i64)> = None;
        for p in peers {
            let key = p.key();
            let extra = !p.usernames.is_empty() || p.phone.is_some();
            out.push(p.kind.code() | (u8::from(p.min) << 4) | (u8::from(extra) << 5));
            let base = prev.filter(|(c, _)| *c == key.class).map_or(0, |(_, id)| id);
            put_varint(&mut out, zigzag(key.id.wrapping_sub(base)));
            prev = Some((key.class, key.id));
            out.extend_from_slice(&p.access_hash.to_le_bytes());
            if extra {
                put_varint(&mut out, p.usernames.len() as u64);
                for u in &p.usernames {
                    put_str(&mut out, u);
                }
                match &p.phone {
                    None => out.push(0),
                    Some(phone) => {
                        out.push(1);
                        put_str(&mut out, phone);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn blob_bytes_match_the_plain_encoding() {
        // Id gaps of every varint length (1 to 10 bytes), both signs of hash, extras.
        let mut peers = Vec::new();
        let mut id = -5i64;
        for (i, shift) in (0..64).step_by(3).enumerate() {
            id = id.wrapping_add(1i64.wrapping_shl(shift)).wrapping_add(1);
            let kind = PeerKind::ALL[i % 8];
            let mut p =
                Peer::new(id, kind, (i as i64).wrapping_mul(-0x0123_4567_89AB_CDEF)).with_min(i.is_multiple_of(3));
            if i.is_multiple_of(4) {
                p = p.with_usernames(vec!["n".repeat(i)]).with_phone(Some(format!("+{i}")));
            }
            peers.push(p);
        }
        peers.push(Peer::new(i64::MIN, PeerKind::User, 1));
        peers.push(Peer::new(i64::MAX, PeerKind::User, -1));
        peers.push(Peer::new(i64::MAX, PeerKind::Megagroup, 0));
        let cache: PeerCache = peers.into_iter().collect();
        let sorted: Vec<Peer> = cache.iter().collect();
        assert_eq!(cache.encode_blob(), reference_blob(&sorted));
        let mut mixed = cache.clone();
        mixed.remove(sorted[3].key());
        mixed.insert(Peer::new(77, PeerKind::Bot, 5));
        assert_eq!(mixed.encode_blob(), reference_blob(&mixed.iter().collect::<Vec<_>>()));
        assert_eq!(decode_blob(&mixed.encode_blob()), Ok(mixed));
    }

    #[test]
    fn blob_round_trips_and_refuses_lies() {
        let mut cache = PeerCache::new();
        cache.insert(Peer::new(i64::MAX, PeerKind::User, i64::MIN).with_phone(Some("+1".into())));
        cache.insert(Peer::new(0, PeerKind::User, 1));
        cache.insert(Peer::new(5, PeerKind::Gigagroup, -1).with_min(true).with_usernames(vec!["a".into(), "b".into()]));
        cache.insert(Peer::new(3, PeerKind::BasicGroup, 0));
        let bytes = postcard::to_allocvec(&cache).expect("encode");
        assert_eq!(postcard::from_bytes::<PeerCache>(&bytes).expect("decode"), cache);

        // Hand-made: two peers out of order with the same key; the last one wins.
        let mut blob = Vec::new();
        put_varint(&mut blob, 2);
        for hash in [7i64, 9] {
            blob.push(0);
            put_varint(&mut blob, zigzag(if hash == 7 { 4 } else { 0 }));
            blob.extend_from_slice(&hash.to_le_bytes());
        }
        let decoded = decode_blob(&blob).expect("valid but unsorted");
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded.access_hash(PeerKey::user(4)), Some(9));

        // The same, where only the last of the two has extras: they stay with it.
        let mut blob = Vec::new();
        put_varint(&mut blob, 2);
        blob.push(0);
        put_varint(&mut blob, zigzag(4));
        blob.extend_from_slice(&7i64.to_le_bytes());
        blob.push(0x20);
        put_varint(&mut blob, zigzag(0));
        blob.extend_from_slice(&9i64.to_le_bytes());
        put_varint(&mut blob, 1);
        put_str(&mut blob, "last");
        blob.push(0);
        let decoded = decode_blob(&blob).expect("valid but unsorted");
        assert_eq!(decoded.get(PeerKey::user(4)).map(|p| p.usernames), Some(vec!["last".to_owned()]));

        // A count the bytes cannot hold is refused before anything is allocated for it.
        let mut lie = Vec::new();
        put_varint(&mut lie, u64::MAX);
        assert!(decode_blob(&lie).is_err());
        for v in [0i64, 1, -1, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }
}
