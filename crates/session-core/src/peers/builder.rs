//! [`SortedPeers`]: builds a [`PeerCache`] from peers that storage already keeps in key order,
//! straight into the cache's sorted vector.

use std::collections::BTreeMap;

use super::blob::{Reader, MIN_PEER_LEN};
use super::cache::{Extra, Packed, PeerCache, Slot};
use super::model::{Peer, PeerClass, PeerKey};

/// Builds a [`PeerCache`] from peers given in strictly increasing key order, straight into the
/// cache's sorted vector: no tree, and no intermediate list of [`Peer`]s. For storage that keeps
/// peers sorted (SQL rows `ORDER BY` key, packed chunks).
///
/// ```
/// use session_core::{Peer, PeerKind, SortedPeers};
///
/// let mut sorted = SortedPeers::with_capacity(2);
/// sorted.push(Peer::new(1, PeerKind::User, 10)).expect("in order");
/// sorted.push(Peer::new(5, PeerKind::Bot, 50)).expect("in order");
/// // A key not greater than the last one's is handed back.
/// assert!(sorted.push(Peer::new(5, PeerKind::User, 7)).is_err());
/// let cache = sorted.finish();
/// assert_eq!(cache.len(), 2);
/// ```
#[derive(Debug, Default)]
pub struct SortedPeers {
    base: Vec<Slot>,
    extra: Vec<(PeerKey, Extra)>,
}

impl SortedPeers {
    /// An empty builder with room for `n` peers.
    pub fn with_capacity(n: usize) -> Self {
        Self { base: Vec::with_capacity(n), extra: Vec::new() }
    }

    /// Makes room for `n` more peers.
    pub fn reserve(&mut self, n: usize) {
        self.base.reserve(n);
    }

    /// Number of peers pushed.
    pub fn len(&self) -> usize {
        self.base.len()
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.base.is_empty()
    }

    /// Appends a peer whose key is greater than every key pushed before; otherwise hands it
    /// back unchanged.
    #[allow(clippy::result_large_err)]
    pub fn push(&mut self, peer: Peer) -> Result<(), Peer> {
        let key = peer.key();
        if self.base.last().is_some_and(|last| last.key() >= key) {
            return Err(peer);
        }
        self.base.push(Slot::new(key, Packed { access_hash: peer.access_hash, kind: peer.kind.code(), min: peer.min }));
        if !peer.usernames.is_empty() || peer.phone.is_some() {
            self.extra.push((key, Extra { usernames: peer.usernames, phone: peer.phone }));
        }
        Ok(())
    }

    /// Appends the peers of a blob written by [`PeerCache::encode_blobs`] (or a whole encoded
    /// cache); their keys must be increasing and follow every key pushed before. Returns the
    /// number of peers. On an error (damaged bytes, keys out of order) the builder may hold some
    /// of the blob's peers: discard it.
    pub fn extend_from_blob(&mut self, bytes: &[u8]) -> Result<usize, &'static str> {
        let mut r = Reader { bytes, pos: 0 };
        let count = r.varint()?;
        if count > (bytes.len() / MIN_PEER_LEN) as u64 {
            return Err("peer count exceeds the bytes present");
        }
        let count = usize::try_from(count).map_err(|_| "peer count too large")?;
        self.base.reserve(count);
        let mut prev: Option<(PeerClass, i64)> = None;
        for _ in 0..count {
            let (slot, extra) = r.peer(prev)?;
            if self.base.last().is_some_and(|last| last.key() >= slot.key()) {
                return Err("peers out of key order");
            }
            prev = Some((slot.class, slot.id));
            let key = slot.key();
            self.base.push(slot);
            if let Some(e) = extra {
                self.extra.push((key, e));
            }
        }
        if r.pos != bytes.len() {
            return Err("trailing bytes after the peers");
        }
        Ok(count)
    }

    /// The cache.
    pub fn finish(self) -> PeerCache {
        PeerCache { base: self.base, removed: 0, added: BTreeMap::new(), extra: self.extra.into_iter().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::blob::{put_varint, PeerBlob};
    use crate::peers::model::PeerKind;

    #[test]
    fn sorted_builder_equals_collecting_and_refuses_disorder() {
        let peers: Vec<Peer> = (0..300i64)
            .map(|i| {
                let kind = PeerKind::ALL[usize::try_from(i % 8).unwrap_or(0)];
                let p = Peer::new(i / 3, kind, i * 7).with_min(i % 5 == 0);
                if i % 4 == 0 {
                    p.with_usernames(vec![format!("u{i}")]).with_phone(Some(i.to_string()))
                } else {
                    p
                }
            })
            .collect();
        let collected: PeerCache = peers.iter().cloned().collect();
        let mut sorted = SortedPeers::with_capacity(0);
        for p in collected.iter() {
            sorted.push(p).expect("in key order");
        }
        assert_eq!(sorted.len(), collected.len());
        let built = sorted.finish();
        assert_eq!(built, collected);
        assert_eq!(postcard::to_allocvec(&built).ok(), postcard::to_allocvec(&collected).ok());
        let mut again = SortedPeers::default();
        again.push(Peer::new(2, PeerKind::Megagroup, 1)).expect("first");
        // Same key (another kind of the same id space), then a smaller key: both handed back.
        assert_eq!(again.push(Peer::new(2, PeerKind::Broadcast, 9)).map_err(|p| p.access_hash), Err(9));
        assert!(again.push(Peer::new(1, PeerKind::User, 1)).is_err(), "user ids sort before channels");
        assert_eq!(again.finish().len(), 1);
    }

    #[test]
    fn blobs_rebuild_the_cache_after_inserts_and_removals() {
        let mut cache: PeerCache = (0..100i64)
            .map(|i| {
                let p = Peer::new(i * 2, PeerKind::User, i);
                if i % 9 == 0 {
                    p.with_usernames(vec![format!("n{i}")])
                } else {
                    p
                }
            })
            .collect();
        // Later inserts (odd ids, some with extras), replacements and removals: the merged path.
        for i in 0..40i64 {
            cache.insert(Peer::new(i * 5 + 1, PeerKind::Bot, -i).with_phone((i % 4 == 0).then(|| i.to_string())));
        }
        for i in (0..200i64).step_by(6) {
            cache.remove(PeerKey::user(i));
        }
        cache.insert(Peer::new(7, PeerKind::Megagroup, 70).with_usernames(vec!["g".into()]));
        for per_blob in [1, 7, 64, 10_000] {
            let blobs = cache.encode_blobs(per_blob);
            assert!(blobs.iter().all(|b| b.count <= per_blob && b.first <= b.last && b.first.class == b.last.class));
            assert!(blobs.windows(2).all(|w| w[0].last < w[1].first));
            let mut sorted = SortedPeers::default();
            for b in &blobs {
                assert_eq!(sorted.extend_from_blob(&b.bytes), Ok(b.count));
            }
            assert_eq!(sorted.finish(), cache, "{per_blob} per blob");
        }
        // Blobs split at id spaces: this cache has users, then channels.
        assert_eq!(cache.encode_blobs(usize::MAX).len(), 2);
        // One blob of a single id space is the cache's own encoding.
        let users: PeerCache = cache.iter().filter(|p| p.key().class == PeerClass::User).collect();
        let whole = users.encode_blobs(usize::MAX);
        assert_eq!(whole.len(), 1);
        let framed = whole.first().map(|PeerBlob { bytes: b, .. }| {
            // postcard writes a byte string as a varint length and the bytes.
            let mut v = Vec::new();
            put_varint(&mut v, b.len() as u64);
            v.extend_from_slice(b);
            v
        });
        assert_eq!(postcard::to_allocvec(&users).ok(), framed);
        // A blob appended before the one that precedes it is refused.
        let blobs = cache.encode_blobs(10);
        let mut sorted = SortedPeers::default();
        sorted.extend_from_blob(&blobs[1].bytes).expect("second");
        assert_eq!(sorted.extend_from_blob(&blobs[0].bytes), Err("peers out of key order"));
        assert!(PeerCache::new().encode_blobs(10).is_empty());
    }
}
