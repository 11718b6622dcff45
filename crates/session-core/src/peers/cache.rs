//! [`PeerCache`], the packed map of cached peers: a sorted vector of 24-byte slots for peers
//! loaded in bulk, a tree for peers inserted later, and a side map for the rare extras.

use std::collections::{btree_map, BTreeMap};
use std::iter::{Filter, Peekable};

use super::model::{Peer, PeerClass, PeerKey, PeerKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Packed {
    pub(super) access_hash: i64,
    pub(super) kind: u8,
    pub(super) min: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Extra {
    pub(super) usernames: Vec<String>,
    pub(super) phone: Option<String>,
}

/// `Packed::kind` of a peer removed from [`PeerCache::base`] (a tombstone until the next compaction).
pub(super) const GONE: u8 = u8::MAX;

/// One peer of [`PeerCache::base`]: the key and the packed value in 24 bytes (32 as a pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Slot {
    pub(super) id: i64,
    pub(super) access_hash: i64,
    pub(super) class: PeerClass,
    pub(super) kind: u8,
    pub(super) min: bool,
}

impl Slot {
    pub(super) fn new(key: PeerKey, p: Packed) -> Slot {
        Slot { id: key.id, access_hash: p.access_hash, class: key.class, kind: p.kind, min: p.min }
    }

    pub(super) fn key(&self) -> PeerKey {
        PeerKey { class: self.class, id: self.id }
    }

    pub(super) fn packed(&self) -> Packed {
        Packed { access_hash: self.access_hash, kind: self.kind, min: self.min }
    }

    pub(super) fn live(&self) -> bool {
        self.kind != GONE
    }
}

/// Cached peers, keyed by [`PeerKey`].
///
/// Peers that arrive in bulk (a decoded session, [`FromIterator`]) are kept in one sorted vector,
/// so loading a million peers builds no tree and dropping them frees one block; peers inserted
/// later go to a tree beside it. A key is in at most one of the two. Removing a bulk-loaded peer
/// leaves a tombstone, swept when tombstones reach half of the vector.
#[derive(Clone, Default)]
pub struct PeerCache {
    /// Sorted by key, keys unique; entries whose kind is [`GONE`] are removed peers.
    pub(super) base: Vec<Slot>,
    /// Tombstones in `base`.
    pub(super) removed: usize,
    /// Peers whose keys are not in `base`.
    pub(super) added: BTreeMap<PeerKey, Packed>,
    pub(super) extra: BTreeMap<PeerKey, Extra>,
}

impl PeerCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of cached peers.
    pub fn len(&self) -> usize {
        self.base.len() - self.removed + self.added.len()
    }

    /// True when no peer is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A cached peer.
    pub fn get(&self, key: PeerKey) -> Option<Peer> {
        self.packed(key).map(|p| self.unpack(key, &p))
    }

    /// Just the access hash of a cached peer, without allocating.
    pub fn access_hash(&self, key: PeerKey) -> Option<i64> {
        self.packed(key).map(|p| p.access_hash)
    }

    /// Inserts or replaces a peer.
    pub fn insert(&mut self, peer: Peer) {
        let key = peer.key();
        let packed = Packed { access_hash: peer.access_hash, kind: peer.kind.code(), min: peer.min };
        match self.base.binary_search_by_key(&key, Slot::key) {
            Ok(i) => {
                if !self.base[i].live() {
                    self.removed -= 1;
                }
                self.base[i] = Slot::new(key, packed);
            }
            Err(_) => {
                self.added.insert(key, packed);
            }
        }
        if peer.usernames.is_empty() && peer.phone.is_none() {
            self.extra.remove(&key);
        } else {
            self.extra.insert(key, Extra { usernames: peer.usernames, phone: peer.phone });
        }
    }

    /// Removes a peer, returning whether it was cached.
    pub fn remove(&mut self, key: PeerKey) -> bool {
        self.extra.remove(&key);
        match self.base.binary_search_by_key(&key, Slot::key) {
            Ok(i) if self.base[i].live() => {
                self.base[i].kind = GONE;
                self.removed += 1;
                if self.removed * 2 >= self.base.len() {
                    self.base.retain(Slot::live);
                    self.removed = 0;
                }
                true
            }
            Ok(_) => false,
            Err(_) => self.added.remove(&key).is_some(),
        }
    }

    /// Every peer, in key order.
    pub fn iter(&self) -> impl Iterator<Item = Peer> + '_ {
        self.entries().map(|(k, p)| self.unpack(k, &p))
    }

    /// Number of peers per kind.
    pub fn count_by_kind(&self) -> BTreeMap<PeerKind, usize> {
        let mut counts = BTreeMap::new();
        for (_, p) in self.entries() {
            *counts.entry(PeerKind::from_u8(p.kind)).or_insert(0) += 1;
        }
        counts
    }

    fn packed(&self, key: PeerKey) -> Option<Packed> {
        match self.base.binary_search_by_key(&key, Slot::key) {
            Ok(i) => Some(self.base[i]).filter(Slot::live).map(|s| s.packed()),
            Err(_) => self.added.get(&key).copied(),
        }
    }

    /// Every live entry of both parts, in key order.
    pub(super) fn entries(&self) -> Entries<'_> {
        let live: fn(&&Slot) -> bool = |s| s.live();
        Entries { base: self.base.iter().filter(live).peekable(), added: self.added.iter().peekable() }
    }

    fn unpack(&self, key: PeerKey, p: &Packed) -> Peer {
        let (usernames, phone) = match self.extra.get(&key) {
            Some(e) => (e.usernames.clone(), e.phone.clone()),
            None => (Vec::new(), None),
        };
        Peer { id: key.id, kind: PeerKind::from_u8(p.kind), access_hash: p.access_hash, min: p.min, usernames, phone }
    }
}

/// The live entries of [`PeerCache::base`].
type LiveBase<'a> = Filter<std::slice::Iter<'a, Slot>, fn(&&Slot) -> bool>;

/// The merge of [`PeerCache::base`] (tombstones skipped) and [`PeerCache::added`]; their keys are
/// disjoint.
pub(super) struct Entries<'a> {
    base: Peekable<LiveBase<'a>>,
    added: Peekable<btree_map::Iter<'a, PeerKey, Packed>>,
}

impl Iterator for Entries<'_> {
    type Item = (PeerKey, Packed);

    fn next(&mut self) -> Option<Self::Item> {
        let take_added = match (self.base.peek(), self.added.peek()) {
            (Some(b), Some((a, _))) => **a < b.key(),
            (Some(_), None) => false,
            (None, _) => true,
        };
        if take_added {
            self.added.next().map(|(k, p)| (*k, *p))
        } else {
            self.base.next().map(|s| (s.key(), s.packed()))
        }
    }
}

impl PartialEq for PeerCache {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.extra == other.extra && self.entries().eq(other.entries())
    }
}

impl Eq for PeerCache {}

impl std::fmt::Debug for PeerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter().map(|p| (p.key(), p))).finish()
    }
}

impl FromIterator<Peer> for PeerCache {
    fn from_iter<I: IntoIterator<Item = Peer>>(iter: I) -> Self {
        let mut peers: Vec<Peer> = iter.into_iter().collect();
        // Stable sort, then keep the last of equal keys: the same result as inserting in order.
        // Sources (our codec, SQL `ORDER BY`) usually deliver peers in key order already.
        if !peers.is_sorted_by_key(Peer::key) {
            peers.sort_by_key(Peer::key);
        }
        let mut base = Vec::with_capacity(peers.len());
        let mut extra = Vec::new();
        let mut iter = peers.into_iter().peekable();
        while let Some(peer) = iter.next() {
            let key = peer.key();
            if iter.peek().is_some_and(|next| next.key() == key) {
                continue;
            }
            base.push(Slot::new(key, Packed { access_hash: peer.access_hash, kind: peer.kind.code(), min: peer.min }));
            if !peer.usernames.is_empty() || peer.phone.is_some() {
                extra.push((key, Extra { usernames: peer.usernames, phone: peer.phone }));
            }
        }
        base.shrink_to_fit();
        PeerCache { base, removed: 0, added: BTreeMap::new(), extra: extra.into_iter().collect() }
    }
}

impl Extend<Peer> for PeerCache {
    fn extend<I: IntoIterator<Item = Peer>>(&mut self, iter: I) {
        for peer in iter {
            self.insert(peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bare_id_in_three_spaces_are_three_peers() {
        let mut cache = PeerCache::new();
        cache.insert(Peer::new(42, PeerKind::User, 1));
        cache.insert(Peer::new(42, PeerKind::BasicGroup, 0));
        cache.insert(Peer::new(42, PeerKind::Megagroup, 3));
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.access_hash(PeerKey::channel(42)), Some(3));
    }

    #[test]
    fn extras_follow_the_peer() {
        let mut cache = PeerCache::new();
        cache.insert(Peer::new(1, PeerKind::User, 9).with_usernames(vec!["a".into()]));
        cache.insert(Peer::new(1, PeerKind::Bot, 10));
        let p = cache.get(PeerKey::user(1)).expect("cached");
        assert!(p.usernames.is_empty());
        assert_eq!(p.kind, PeerKind::Bot);
        let built: PeerCache =
            [Peer::new(2, PeerKind::User, 1).with_phone(Some("1".into())), Peer::new(2, PeerKind::User, 2)]
                .into_iter()
                .collect();
        assert_eq!(built.get(PeerKey::user(2)).map(|p| p.access_hash), Some(2));
    }

    #[test]
    fn loaded_and_inserted_peers_behave_as_one_map() {
        // A reference map beside a cache that starts bulk-loaded (sorted vector) and then gets
        // inserts, replacements, removals (tombstones, sweeps) and re-inserts of removed keys.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let peer = |id: u64, kind: u64, hash: u64| {
            let kind = PeerKind::ALL[usize::try_from(kind % 8).unwrap_or(0)];
            let p = Peer::new(i64::try_from(id).unwrap_or(0), kind, i64::try_from(hash).unwrap_or(0));
            if hash.is_multiple_of(3) {
                p.with_usernames(vec![format!("u{id}")])
            } else {
                p
            }
        };
        for round in 0..20 {
            let mut reference: BTreeMap<PeerKey, Peer> = BTreeMap::new();
            let loaded: Vec<Peer> = (0..200).map(|_| peer(next(300), next(8), next(1000))).collect();
            for p in &loaded {
                reference.insert(p.key(), p.clone());
            }
            let mut cache: PeerCache = loaded.into_iter().collect();
            for _ in 0..400 {
                let key_id = next(400);
                if next(3) == 0 {
                    let key = PeerKey::new([PeerClass::User, PeerClass::Chat, PeerClass::Channel][round % 3], 0);
                    let key = PeerKey { id: i64::try_from(key_id).unwrap_or(0), ..key };
                    assert_eq!(cache.remove(key), reference.remove(&key).is_some());
                } else {
                    let p = peer(key_id, next(8), next(1000));
                    reference.insert(p.key(), p.clone());
                    cache.insert(p);
                }
                assert_eq!(cache.len(), reference.len());
            }
            if round.is_multiple_of(2) {
                // Most of them: the tombstones are swept.
                for key in reference.keys().copied().filter(|k| k.id % 4 != 0).collect::<Vec<_>>() {
                    assert!(cache.remove(key));
                    assert!(!cache.remove(key));
                    reference.remove(&key);
                }
                assert_eq!(cache.len(), reference.len());
            }
            let probe = PeerKey::user(i64::try_from(next(400)).unwrap_or(0));
            assert_eq!(cache.get(probe), reference.get(&probe).cloned());
            assert_eq!(cache.access_hash(probe), reference.get(&probe).map(|p| p.access_hash));
            assert_eq!(cache.iter().collect::<Vec<_>>(), reference.values().cloned().collect::<Vec<_>>());
            // Equal to the same peers built any other way, and encoded to the same bytes.
            let rebuilt: PeerCache = reference.values().cloned().collect();
            let mut inserted = PeerCache::new();
            inserted.extend(reference.values().cloned());
            assert_eq!(cache, rebuilt);
            assert_eq!(cache, inserted);
            assert_eq!(cache.count_by_kind(), rebuilt.count_by_kind());
            let bytes = postcard::to_allocvec(&cache).expect("encode");
            assert_eq!(bytes, postcard::to_allocvec(&inserted).expect("encode"));
            assert_eq!(postcard::from_bytes::<PeerCache>(&bytes).expect("decode"), rebuilt);
            cache.insert(Peer::new(1_000_000, PeerKind::User, 1));
            assert_ne!(cache, rebuilt);
        }
    }

    #[test]
    fn a_loaded_peer_takes_24_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
    }
}
