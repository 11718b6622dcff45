//! The peer cache: access hashes keyed by the peer's id space and id.
//!
//! A session may cache millions of peers, so each peer is packed (24 bytes for a loaded one: a
//! sorted vector, no tree node) and the rare extras (usernames, phone) live in a side map. There
//! is no count limit anywhere.

use std::collections::{btree_map, BTreeMap};
use std::iter::{Filter, Peekable};

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

impl PeerClass {
    /// The stored code of this id space: one byte, **stable** (the SQL schema's `class` column):
    /// 0 user, 1 chat, 2 channel.
    pub const fn code(self) -> u8 {
        match self {
            PeerClass::User => 0,
            PeerClass::Chat => 1,
            PeerClass::Channel => 2,
        }
    }

    /// The id space a stored code names, or `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<PeerClass> {
        match code {
            0 => Some(PeerClass::User),
            1 => Some(PeerClass::Chat),
            2 => Some(PeerClass::Channel),
            _ => None,
        }
    }
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

    /// The stored code of this kind: one byte, **stable** (part of every format we write: the file
    /// log's peer blobs, the SQL schema's `kind` column). A kind added later gets a new code;
    /// existing codes never change meaning.
    ///
    /// | code | kind |
    /// |---|---|
    /// | 0 | `User` |
    /// | 1 | `Bot` |
    /// | 2 | `BasicGroup` |
    /// | 3 | `Channel` |
    /// | 4 | `Broadcast` |
    /// | 5 | `Megagroup` |
    /// | 6 | `Gigagroup` |
    /// | 7 | `Community` |
    pub const fn code(self) -> u8 {
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

    /// The kind a stored code names, or `None` for a code this version does not know (the caller
    /// reports that as damage or as a newer format; it never guesses).
    pub fn from_code(code: u8) -> Option<PeerKind> {
        Self::ALL.get(usize::from(code)).copied()
    }

    fn to_u8(self) -> u8 {
        self.code()
    }

    fn from_u8(v: u8) -> PeerKind {
        Self::from_code(v).unwrap_or(PeerKind::User)
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

/// `Packed::kind` of a peer removed from [`PeerCache::base`] (a tombstone until the next compaction).
const GONE: u8 = u8::MAX;

/// One peer of [`PeerCache::base`]: the key and the packed value in 24 bytes (32 as a pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    id: i64,
    access_hash: i64,
    class: PeerClass,
    kind: u8,
    min: bool,
}

impl Slot {
    fn new(key: PeerKey, p: Packed) -> Slot {
        Slot { id: key.id, access_hash: p.access_hash, class: key.class, kind: p.kind, min: p.min }
    }

    fn key(&self) -> PeerKey {
        PeerKey { class: self.class, id: self.id }
    }

    fn packed(&self) -> Packed {
        Packed { access_hash: self.access_hash, kind: self.kind, min: self.min }
    }

    fn live(&self) -> bool {
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
    base: Vec<Slot>,
    /// Tombstones in `base`.
    removed: usize,
    /// Peers whose keys are not in `base`.
    added: BTreeMap<PeerKey, Packed>,
    extra: BTreeMap<PeerKey, Extra>,
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
        let packed = Packed { access_hash: peer.access_hash, kind: peer.kind.to_u8(), min: peer.min };
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
    fn entries(&self) -> Entries<'_> {
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
struct Entries<'a> {
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
            base.push(Slot::new(key, Packed { access_hash: peer.access_hash, kind: peer.kind.to_u8(), min: peer.min }));
            if !peer.usernames.is_empty() || peer.phone.is_some() {
                extra.push((key, Extra { usernames: peer.usernames, phone: peer.phone }));
            }
        }
        base.shrink_to_fit();
        PeerCache { base, removed: 0, added: BTreeMap::new(), extra: extra.into_iter().collect() }
    }
}

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
        self.base
            .push(Slot::new(key, Packed { access_hash: peer.access_hash, kind: peer.kind.to_u8(), min: peer.min }));
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
    /// pieces and read them back with [`SortedPeers::extend_from_blob`]. An empty cache gives no
    /// blob.
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
const MIN_PEER_LEN: usize = 10;

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

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
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

    /// One peer; `prev` is the key of the peer before it in the blob. Extras that hold nothing
    /// are `None`.
    #[inline(always)]
    fn peer(&mut self, prev: Option<(PeerClass, i64)>) -> Result<(Slot, Option<Extra>), &'static str> {
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
        let slot = Slot { id, access_hash, class, kind: kind.to_u8(), min: header & 0x10 != 0 };
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
    fn stored_codes_are_the_documented_table() {
        let kinds: Vec<(u8, PeerKind)> = PeerKind::ALL.iter().map(|k| (k.code(), *k)).collect();
        assert_eq!(
            kinds,
            [
                (0, PeerKind::User),
                (1, PeerKind::Bot),
                (2, PeerKind::BasicGroup),
                (3, PeerKind::Channel),
                (4, PeerKind::Broadcast),
                (5, PeerKind::Megagroup),
                (6, PeerKind::Gigagroup),
                (7, PeerKind::Community),
            ]
        );
        for k in PeerKind::ALL {
            assert_eq!(PeerKind::from_code(k.code()), Some(k));
        }
        assert_eq!(PeerKind::from_code(8), None);
        for c in [PeerClass::User, PeerClass::Chat, PeerClass::Channel] {
            assert_eq!(PeerClass::from_code(c.code()), Some(c));
        }
        assert_eq!((PeerClass::User.code(), PeerClass::Chat.code(), PeerClass::Channel.code()), (0, 1, 2));
        assert_eq!(PeerClass::from_code(3), None);
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

    /// The blob layout written the plain way, byte by byte, from the documented format.
    fn reference_blob(peers: &[Peer]) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, peers.len() as u64);
        let mut prev: Option<(PeerClass, i64)> = None;
        for p in peers {
            let key = p.key();
            let extra = !p.usernames.is_empty() || p.phone.is_some();
            out.push(p.kind.to_u8() | (u8::from(p.min) << 4) | (u8::from(extra) << 5));
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
    fn a_loaded_peer_takes_24_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
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
