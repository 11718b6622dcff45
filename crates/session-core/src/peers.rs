//! The peer cache: access hashes keyed by the peer's id space and id.
//!
//! A session may cache millions of peers, so the map stores a packed 16-byte value per peer and
//! keeps the rare extras (usernames, phone) in a side map. There is no count limit anywhere.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The id space a peer lives in. Users, basic groups and channels number their ids separately,
/// so the same bare id can name three different peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PeerClass {
    /// Users and bots.
    User,
    /// Basic groups.
    Chat,
    /// Channels, megagroups and gigagroups.
    Channel,
}

/// What a peer is, as precisely as the source knew.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PeerKind {
    /// A user (not known to be a bot).
    User,
    /// A bot.
    Bot,
    /// A basic group.
    BasicGroup,
    /// A channel whose subtype is unknown.
    Channel,
    /// A broadcast channel.
    Broadcast,
    /// A megagroup (supergroup).
    Megagroup,
    /// A gigagroup (broadcast group).
    Gigagroup,
    /// A ferogram "community" (stored in the user id space, as ferogram stores it).
    Community,
}

impl PeerKind {
    /// The id space of this kind.
    pub fn class(self) -> PeerClass {
        match self {
            PeerKind::User | PeerKind::Bot | PeerKind::Community => PeerClass::User,
            PeerKind::BasicGroup => PeerClass::Chat,
            PeerKind::Channel | PeerKind::Broadcast | PeerKind::Megagroup | PeerKind::Gigagroup => PeerClass::Channel,
        }
    }

    /// Every kind, for tests and tools.
    pub const ALL: [PeerKind; 8] = [
        PeerKind::User,
        PeerKind::Bot,
        PeerKind::BasicGroup,
        PeerKind::Channel,
        PeerKind::Broadcast,
        PeerKind::Megagroup,
        PeerKind::Gigagroup,
        PeerKind::Community,
    ];

    fn to_u8(self) -> u8 {
        match self {
            PeerKind::User => 0,
            PeerKind::Bot => 1,
            PeerKind::BasicGroup => 2,
            PeerKind::Channel => 3,
            PeerKind::Broadcast => 4,
            PeerKind::Megagroup => 5,
            PeerKind::Gigagroup => 6,
            PeerKind::Community => 7,
        }
    }

    fn from_u8(v: u8) -> PeerKind {
        Self::ALL.get(usize::from(v)).copied().unwrap_or(PeerKind::User)
    }

    /// A short lowercase name (`user`, `bot`, `chat`, `channel`, `broadcast`, `megagroup`,
    /// `gigagroup`, `community`).
    pub fn as_str(self) -> &'static str {
        match self {
            PeerKind::User => "user",
            PeerKind::Bot => "bot",
            PeerKind::BasicGroup => "chat",
            PeerKind::Channel => "channel",
            PeerKind::Broadcast => "broadcast",
            PeerKind::Megagroup => "megagroup",
            PeerKind::Gigagroup => "gigagroup",
            PeerKind::Community => "community",
        }
    }
}

/// The key of a cached peer: its id space and bare (positive) id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PeerKey {
    /// Id space.
    pub class: PeerClass,
    /// Bare id.
    pub id: i64,
}

impl PeerKey {
    /// A key.
    pub fn new(class: PeerClass, id: i64) -> Self {
        Self { class, id }
    }

    /// A user key.
    pub fn user(id: i64) -> Self {
        Self::new(PeerClass::User, id)
    }

    /// A basic group key.
    pub fn chat(id: i64) -> Self {
        Self::new(PeerClass::Chat, id)
    }

    /// A channel key.
    pub fn channel(id: i64) -> Self {
        Self::new(PeerClass::Channel, id)
    }

    /// The Bot API "marked" id: user = id, basic group = -id, channel = -(10^12 + id).
    pub fn marked(self) -> i64 {
        match self.class {
            PeerClass::User => self.id,
            PeerClass::Chat => self.id.wrapping_neg(),
            PeerClass::Channel => (1_000_000_000_000i64.wrapping_add(self.id)).wrapping_neg(),
        }
    }

    /// Parses a Bot API marked id.
    pub fn from_marked(marked: i64) -> Self {
        if marked >= 0 {
            Self::user(marked)
        } else if marked > -1_000_000_000_000 {
            Self::chat(marked.wrapping_neg())
        } else {
            Self::channel(marked.wrapping_neg().wrapping_sub(1_000_000_000_000))
        }
    }
}

/// One cached peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Peer {
    /// Bare id.
    pub id: i64,
    /// What it is (also decides its id space).
    pub kind: PeerKind,
    /// Access hash (0 where the peer has none, such as basic groups).
    pub access_hash: i64,
    /// Whether the hash is a "min" hash, valid only in the context it was seen in.
    pub min: bool,
    /// Known usernames, the main one first.
    pub usernames: Vec<String>,
    /// Phone number, for users.
    pub phone: Option<String>,
}

impl Peer {
    /// A peer with no usernames or phone.
    pub fn new(id: i64, kind: PeerKind, access_hash: i64) -> Self {
        Self { id, kind, access_hash, min: false, usernames: Vec::new(), phone: None }
    }

    /// Marks the hash as "min".
    #[must_use]
    pub fn with_min(mut self, min: bool) -> Self {
        self.min = min;
        self
    }

    /// Sets the usernames.
    #[must_use]
    pub fn with_usernames(mut self, usernames: Vec<String>) -> Self {
        self.usernames = usernames;
        self
    }

    /// Sets the phone.
    #[must_use]
    pub fn with_phone(mut self, phone: Option<String>) -> Self {
        self.phone = phone;
        self
    }

    /// The cache key.
    pub fn key(&self) -> PeerKey {
        PeerKey::new(self.kind.class(), self.id)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Packed {
    access_hash: i64,
    kind: u8,
    min: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Extra {
    usernames: Vec<String>,
    phone: Option<String>,
}

/// Cached peers, keyed by [`PeerKey`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerCache {
    main: BTreeMap<PeerKey, Packed>,
    extra: BTreeMap<PeerKey, Extra>,
}

impl PeerCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of cached peers.
    pub fn len(&self) -> usize {
        self.main.len()
    }

    /// True when no peer is cached.
    pub fn is_empty(&self) -> bool {
        self.main.is_empty()
    }

    /// A cached peer.
    pub fn get(&self, key: PeerKey) -> Option<Peer> {
        self.main.get(&key).map(|p| self.unpack(key, p))
    }

    /// Just the access hash of a cached peer, without allocating.
    pub fn access_hash(&self, key: PeerKey) -> Option<i64> {
        self.main.get(&key).map(|p| p.access_hash)
    }

    /// Inserts or replaces a peer.
    pub fn insert(&mut self, peer: Peer) {
        let key = peer.key();
        self.main.insert(key, Packed { access_hash: peer.access_hash, kind: peer.kind.to_u8(), min: peer.min });
        if peer.usernames.is_empty() && peer.phone.is_none() {
            self.extra.remove(&key);
        } else {
            self.extra.insert(key, Extra { usernames: peer.usernames, phone: peer.phone });
        }
    }

    /// Removes a peer, returning whether it was cached.
    pub fn remove(&mut self, key: PeerKey) -> bool {
        self.extra.remove(&key);
        self.main.remove(&key).is_some()
    }

    /// Every peer, in key order.
    pub fn iter(&self) -> impl Iterator<Item = Peer> + '_ {
        self.main.iter().map(|(k, p)| self.unpack(*k, p))
    }

    /// Number of peers per kind.
    pub fn count_by_kind(&self) -> BTreeMap<PeerKind, usize> {
        let mut counts = BTreeMap::new();
        for p in self.main.values() {
            *counts.entry(PeerKind::from_u8(p.kind)).or_insert(0) += 1;
        }
        counts
    }

    fn unpack(&self, key: PeerKey, p: &Packed) -> Peer {
        let (usernames, phone) = match self.extra.get(&key) {
            Some(e) => (e.usernames.clone(), e.phone.clone()),
            None => (Vec::new(), None),
        };
        Peer { id: key.id, kind: PeerKind::from_u8(p.kind), access_hash: p.access_hash, min: p.min, usernames, phone }
    }
}

impl FromIterator<Peer> for PeerCache {
    fn from_iter<I: IntoIterator<Item = Peer>>(iter: I) -> Self {
        let mut peers: Vec<Peer> = iter.into_iter().collect();
        // Stable sort, then keep the last of equal keys: the same result as inserting in order,
        // but the maps are bulk-built from sorted input (dense nodes, no rebalancing).
        peers.sort_by_key(Peer::key);
        let mut main = Vec::with_capacity(peers.len());
        let mut extra = Vec::new();
        let mut iter = peers.into_iter().peekable();
        while let Some(peer) = iter.next() {
            let key = peer.key();
            if iter.peek().is_some_and(|next| next.key() == key) {
                continue;
            }
            main.push((key, Packed { access_hash: peer.access_hash, kind: peer.kind.to_u8(), min: peer.min }));
            if !peer.usernames.is_empty() || peer.phone.is_some() {
                extra.push((key, Extra { usernames: peer.usernames, phone: peer.phone }));
            }
        }
        PeerCache { main: main.into_iter().collect(), extra: extra.into_iter().collect() }
    }
}

impl Extend<Peer> for PeerCache {
    fn extend<I: IntoIterator<Item = Peer>>(&mut self, iter: I) {
        for peer in iter {
            self.insert(peer);
        }
    }
}

impl Serialize for PeerCache {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for PeerCache {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SeqVisitor;
        impl<'de> serde::de::Visitor<'de> for SeqVisitor {
            type Value = PeerCache;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence of peers")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<PeerCache, A::Error> {
                // Grows with what was actually decoded, never with the declared length.
                let mut peers = Vec::new();
                while let Some(peer) = seq.next_element::<Peer>()? {
                    peers.push(peer);
                }
                Ok(peers.into_iter().collect())
            }
        }
        deserializer.deserialize_seq(SeqVisitor)
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
    fn marked_ids_round_trip() {
        for key in [PeerKey::user(5), PeerKey::chat(7), PeerKey::channel(1_234_567_890)] {
            assert_eq!(PeerKey::from_marked(key.marked()), key);
        }
        assert_eq!(PeerKey::channel(1_234_567_890).marked(), -1_001_234_567_890);
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
}
