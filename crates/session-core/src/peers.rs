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
        // Sources (our codec, SQL `ORDER BY`) usually deliver peers in key order already.
        if !peers.is_sorted_by_key(Peer::key) {
            peers.sort_by_key(Peer::key);
        }
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
        let mut out = Vec::with_capacity(self.main.len() * 11 + 10);
        put_varint(&mut out, self.main.len() as u64);
        let mut extras = self.extra.iter().peekable();
        let mut prev: Option<(PeerClass, i64)> = None;
        for (key, p) in &self.main {
            let extra = match extras.peek() {
                Some((k, e)) if *k == key => {
                    let e = *e;
                    extras.next();
                    Some(e)
                }
                _ => None,
            };
            out.push(p.kind | (u8::from(p.min) << 4) | (u8::from(extra.is_some()) << 5));
            let base = match prev {
                Some((class, id)) if class == key.class => id,
                _ => 0,
            };
            put_varint(&mut out, zigzag(key.id.wrapping_sub(base)));
            prev = Some((key.class, key.id));
            out.extend_from_slice(&p.access_hash.to_le_bytes());
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
        serializer.serialize_bytes(&out)
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
const MIN_PEER_LEN: usize = 10;

fn decode_blob(bytes: &[u8]) -> Result<PeerCache, &'static str> {
    let mut r = Reader { bytes, pos: 0 };
    let count = r.varint()?;
    // Never trust the count beyond what the bytes can hold.
    let max = (bytes.len() / MIN_PEER_LEN) as u64;
    if count > max {
        return Err("peer count exceeds the bytes present");
    }
    let count = usize::try_from(count).map_err(|_| "peer count too large")?;
    let mut main = Vec::with_capacity(count);
    let mut extra = Vec::new();
    let mut prev: Option<(PeerClass, i64)> = None;
    let mut sorted = true;
    for _ in 0..count {
        let header = r.byte()?;
        if header & 0b1100_0000 != 0 {
            return Err("unknown peer header bits");
        }
        let kind = PeerKind::ALL.get(usize::from(header & 0x0F)).copied().ok_or("unknown peer kind")?;
        let class = kind.class();
        let base = match prev {
            Some((c, id)) if c == class => id,
            _ => 0,
        };
        let id = base.wrapping_add(unzigzag(r.varint()?));
        let key = PeerKey { class, id };
        if let Some((c, p)) = prev {
            sorted &= (c, p) < (class, id);
        }
        prev = Some((class, id));
        let access_hash = i64::from_le_bytes(r.array::<8>()?);
        main.push((key, Packed { access_hash, kind: kind.to_u8(), min: header & 0x10 != 0 }));
        if header & 0x20 != 0 {
            let n = r.varint()?;
            let mut usernames = Vec::new();
            for _ in 0..n {
                usernames.push(r.string()?);
            }
            let phone = match r.byte()? {
                0 => None,
                1 => Some(r.string()?),
                _ => return Err("bad phone marker"),
            };
            if !usernames.is_empty() || phone.is_some() {
                extra.push((key, Extra { usernames, phone }));
            }
        }
    }
    if r.pos != bytes.len() {
        return Err("trailing bytes after the peers");
    }
    if !sorted {
        // Only hand-made input gets here: fall back to ordinary inserts (the last one wins).
        let mut cache = PeerCache::new();
        let mut extras: BTreeMap<PeerKey, Extra> = BTreeMap::new();
        for (k, e) in extra {
            extras.insert(k, e);
        }
        for (k, p) in main {
            cache.main.insert(k, p);
            match extras.remove(&k) {
                Some(e) => cache.extra.insert(k, e),
                None => cache.extra.remove(&k),
            };
        }
        return Ok(cache);
    }
    Ok(PeerCache { main: main.into_iter().collect(), extra: extra.into_iter().collect() })
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
        let end = self.pos.checked_add(len).ok_or("truncated peer cache")?;
        let slice = self.bytes.get(self.pos..end).ok_or("truncated peer cache")?;
        self.pos = end;
        String::from_utf8(slice.to_vec()).map_err(|_| "username or phone is not UTF-8")
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

        // A count the bytes cannot hold is refused before anything is allocated for it.
        let mut lie = Vec::new();
        put_varint(&mut lie, u64::MAX);
        assert!(decode_blob(&lie).is_err());
        for v in [0i64, 1, -1, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }
}
