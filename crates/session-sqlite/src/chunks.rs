//! The packed form of the peer cache in `peer_chunks` rows (schema version 2).
//!
//! A chunk holds up to [`CHUNK_PEERS`] peers in key order, so that a full save writes a few dozen
//! blobs instead of one row per peer and a load reads them back at memory speed. Layout of the
//! `data` blob:
//!
//! - per peer: a header byte (kind code in bits 0-3, `min` in bit 4, extras in bit 5), the bare id
//!   as a zigzag varint delta from the previous peer of the chunk in the same id space (the first
//!   peer of an id space starts from 0), the access hash as 8 bytes little-endian; with the extras
//!   bit, the username count, each username (varint length + UTF-8) and the phone (0, or 1 +
//!   varint length + UTF-8);
//! - then the CRC-32 of everything before it, 4 bytes little-endian.
//!
//! SQLite checks no checksum of its own on page contents; the CRC turns a damaged blob into a
//! `Corrupt` error instead of a changed access hash. The row's `peers` column holds the count.

use session_core::{Peer, PeerClass, PeerKind, SortedPeers};

use crate::schema::{kind_code, kind_from_code};

/// Peers per chunk: about 45 KiB of blob for plain peers.
pub(crate) const CHUNK_PEERS: usize = 4096;

/// The smallest encoded peer: header, one-byte id delta, 8-byte hash.
const MIN_PEER_LEN: usize = 10;

/// Encodes `peers` (in key order) into one chunk blob.
pub(crate) fn encode<'a>(peers: impl Iterator<Item = &'a Peer>) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHUNK_PEERS * 11 + 4);
    let mut prev: Option<(PeerClass, i64)> = None;
    for p in peers {
        let class = p.kind.class();
        let extras = !p.usernames.is_empty() || p.phone.is_some();
        // Kind codes are 0..=7 (the schema's stable codes).
        let code = u8::try_from(kind_code(p.kind)).unwrap_or(0);
        out.push(code | (u8::from(p.min) << 4) | (u8::from(extras) << 5));
        let base = match prev {
            Some((c, id)) if c == class => id,
            _ => 0,
        };
        put_varint(&mut out, zigzag(p.id.wrapping_sub(base)));
        prev = Some((class, p.id));
        out.extend_from_slice(&p.access_hash.to_le_bytes());
        if extras {
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
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a chunk of `count` peers, appending them to `out` (their keys must follow those
/// already there).
pub(crate) fn decode(blob: &[u8], count: usize, out: &mut SortedPeers) -> Result<(), &'static str> {
    let Some((body, crc)) = blob.split_last_chunk::<4>() else {
        return Err("shorter than its checksum");
    };
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return Err("checksum mismatch");
    }
    if count > body.len() / MIN_PEER_LEN {
        return Err("peer count exceeds the bytes present");
    }
    out.reserve(count);
    let mut r = Reader { bytes: body, pos: 0 };
    let mut prev: Option<(PeerClass, i64)> = None;
    for _ in 0..count {
        let header = r.byte()?;
        if header & 0b1100_0000 != 0 {
            return Err("unknown peer header bits");
        }
        let kind: PeerKind = kind_from_code(i64::from(header & 0x0F)).ok_or("unknown peer kind")?;
        let class = kind.class();
        let base = match prev {
            Some((c, id)) if c == class => id,
            _ => 0,
        };
        let id = base.wrapping_add(unzigzag(r.varint()?));
        prev = Some((class, id));
        let access_hash = i64::from_le_bytes(r.array::<8>()?);
        let mut peer = Peer::new(id, kind, access_hash).with_min(header & 0x10 != 0);
        if header & 0x20 != 0 {
            let n = r.varint()?;
            let mut usernames = Vec::new();
            for _ in 0..n {
                usernames.push(r.string()?);
            }
            peer.usernames = usernames;
            peer.phone = match r.byte()? {
                0 => None,
                1 => Some(r.string()?),
                _ => return Err("bad phone marker"),
            };
        }
        out.push(peer).map_err(|_| "peers out of key order")?;
    }
    if r.pos != body.len() {
        return Err("trailing bytes after the peers");
    }
    Ok(())
}

fn zigzag(v: i64) -> u64 {
    u64::from_le_bytes(((v << 1) ^ (v >> 63)).to_le_bytes())
}

fn unzigzag(v: u64) -> i64 {
    i64::from_le_bytes((v >> 1).to_le_bytes()) ^ -i64::from_le_bytes((v & 1).to_le_bytes())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v.to_le_bytes()[0] | 0x80);
        v >>= 7;
    }
    out.push(v.to_le_bytes()[0]);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, &'static str> {
        let b = *self.bytes.get(self.pos).ok_or("truncated")?;
        self.pos += 1;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let end = self.pos.checked_add(N).ok_or("truncated")?;
        let slice = self.bytes.get(self.pos..end).ok_or("truncated")?;
        self.pos = end;
        let mut a = [0u8; N];
        a.copy_from_slice(slice);
        Ok(a)
    }

    fn varint(&mut self) -> Result<u64, &'static str> {
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
        let end = self.pos.checked_add(len).ok_or("truncated")?;
        let slice = self.bytes.get(self.pos..end).ok_or("truncated")?;
        self.pos = end;
        String::from_utf8(slice.to_vec()).map_err(|_| "username or phone is not UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::class_code;

    /// The key order of the schema (id space code, then id), as the chunks keep it.
    fn key(p: &Peer) -> (i64, i64) {
        (class_code(p.kind.class()), p.id)
    }

    fn sample() -> Vec<Peer> {
        vec![
            Peer::new(0, PeerKind::User, 1),
            Peer::new(7, PeerKind::Bot, -1).with_min(true).with_usernames(vec!["a".into(), "bé".into()]),
            Peer::new(i64::MAX, PeerKind::User, i64::MIN).with_phone(Some("+1".into())),
            Peer::new(3, PeerKind::BasicGroup, 0),
            Peer::new(-5, PeerKind::Gigagroup, 42),
            Peer::new(9, PeerKind::Broadcast, 43),
        ]
    }

    #[test]
    fn round_trips_every_kind_and_extreme_id() {
        let mut peers = sample();
        peers.sort_by_key(key);
        let blob = encode(peers.iter());
        let mut out = SortedPeers::default();
        decode(&blob, peers.len(), &mut out).expect("decodes");
        assert_eq!(out.finish().iter().collect::<Vec<_>>(), peers);
    }

    #[test]
    fn damage_is_an_error_never_other_peers() {
        let mut peers = sample();
        peers.sort_by_key(key);
        let blob = encode(peers.iter());
        for at in 0..blob.len() {
            for bit in 0..8 {
                let mut bad = blob.clone();
                bad[at] ^= 1 << bit;
                let mut out = SortedPeers::default();
                assert!(decode(&bad, peers.len(), &mut out).is_err(), "flip at {at} bit {bit}");
            }
        }
        for len in 0..blob.len() {
            assert!(decode(&blob[..len], peers.len(), &mut SortedPeers::default()).is_err(), "cut at {len}");
        }
        // A count that disagrees with the blob.
        assert!(decode(&blob, peers.len() + 1, &mut SortedPeers::default()).is_err());
        assert!(decode(&blob, peers.len() - 1, &mut SortedPeers::default()).is_err());
        assert!(decode(&blob, usize::MAX, &mut SortedPeers::default()).is_err());
    }

    #[test]
    fn out_of_order_is_refused() {
        let peers = [Peer::new(5, PeerKind::User, 1), Peer::new(4, PeerKind::User, 2)];
        let blob = encode(peers.iter());
        assert_eq!(decode(&blob, 2, &mut SortedPeers::default()), Err("peers out of key order"));
    }
}
