//! The packed form of the peer cache in `peer_chunks` rows (schema version 2).
//!
//! A chunk holds up to [`CHUNK_PEERS`] peers in key order, so that a full save writes a few dozen
//! blobs instead of one row per peer and a load reads them back at memory speed. The `data` blob
//! is the core codec's encoding of a peer cache holding just those peers
//! ([`PeerCache::encode_blobs`]: a varint count, then per peer a header byte, the id as a zigzag
//! varint delta, the access hash, and the rare usernames and phone), followed by the CRC-32 of
//! everything before it (4 bytes little-endian). The row's `peers` column repeats the count.
//!
//! SQLite checks no checksum of its own on page contents; the CRC turns a damaged blob into a
//! `Corrupt` error instead of a changed access hash.

use session_core::{PeerBlob, PeerCache, SortedPeers};

/// Peers per chunk: about 45 KiB of blob for plain peers.
pub(crate) const CHUNK_PEERS: usize = 4096;

/// The chunks of `peers`, in key order (`bytes` end with their CRC).
pub(crate) fn encode(peers: &PeerCache) -> impl Iterator<Item = PeerBlob> {
    peers.encode_blobs(CHUNK_PEERS).into_iter().map(|mut chunk| {
        let crc = crc32fast::hash(&chunk.bytes);
        chunk.bytes.extend_from_slice(&crc.to_le_bytes());
        chunk
    })
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
    if out.extend_from_blob(body)? != count {
        return Err("holds another number of peers than its row says");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::{Peer, PeerKind};

    fn sample() -> PeerCache {
        (0..10_000i64)
            .map(|i| {
                let kind = PeerKind::ALL[usize::try_from(i % 8).unwrap_or(0)];
                let p = Peer::new(i * 7 - 30_000, kind, i.wrapping_mul(0x9E37_79B9_7F4A)).with_min(i % 3 == 0);
                match i % 50 {
                    0 => p.with_usernames(vec![format!("u{i}"), "bé".into()]),
                    1 => p.with_phone(Some(format!("+{i}"))),
                    _ => p,
                }
            })
            .chain([Peer::new(i64::MAX, PeerKind::User, i64::MIN), Peer::new(i64::MIN, PeerKind::Gigagroup, 1)])
            .collect()
    }

    #[test]
    fn round_trips_in_chunks() {
        let peers = sample();
        let chunks: Vec<PeerBlob> = encode(&peers).collect();
        // Per id space, full chunks and one partial (a chunk never spans two spaces).
        let per_space = peers.count_by_kind().into_iter().fold([0usize; 3], |mut acc, (kind, n)| {
            acc[usize::try_from(crate::codes::class_code(kind.class())).unwrap_or(0)] += n;
            acc
        });
        assert_eq!(chunks.len(), per_space.iter().map(|n| n.div_ceil(CHUNK_PEERS)).sum::<usize>());
        assert!(chunks.iter().all(|c| c.first.class == c.last.class));
        let mut out = SortedPeers::default();
        for c in &chunks {
            decode(&c.bytes, c.count, &mut out).expect("decodes");
        }
        assert_eq!(out.finish(), peers);
    }

    #[test]
    fn damage_is_an_error_never_other_peers() {
        let peers: PeerCache = sample().iter().take(40).collect();
        let PeerBlob { count, bytes: blob, .. } = encode(&peers).next().expect("one chunk");
        for at in 0..blob.len() {
            for bit in 0..8 {
                let mut bad = blob.clone();
                bad[at] ^= 1 << bit;
                assert!(decode(&bad, count, &mut SortedPeers::default()).is_err(), "flip at {at} bit {bit}");
            }
        }
        for len in 0..blob.len() {
            assert!(decode(&blob[..len], count, &mut SortedPeers::default()).is_err(), "cut at {len}");
        }
        // A count that disagrees with the blob.
        for wrong in [count + 1, count - 1, usize::MAX] {
            assert!(decode(&blob, wrong, &mut SortedPeers::default()).is_err(), "count {wrong}");
        }
    }

    #[test]
    fn chunks_out_of_order_are_refused() {
        let peers = sample();
        let chunks: Vec<PeerBlob> = encode(&peers).collect();
        let mut out = SortedPeers::default();
        decode(&chunks[1].bytes, chunks[1].count, &mut out).expect("second chunk");
        assert_eq!(decode(&chunks[0].bytes, chunks[0].count, &mut out), Err("peers out of key order"));
    }
}
