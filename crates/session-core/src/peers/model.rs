//! What a cached peer is: its id space ([`PeerClass`]), its kind ([`PeerKind`]), its key
//! ([`PeerKey`]) and the peer itself ([`Peer`]), with the stored one-byte codes of kinds and id
//! spaces that every format we write uses.

use serde::{Deserialize, Serialize};

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

    /// The kind of a code this crate wrote itself (a packed slot's), so never unknown.
    pub(super) fn from_u8(v: u8) -> PeerKind {
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
    fn marked_ids_round_trip() {
        for key in [PeerKey::user(5), PeerKey::chat(7), PeerKey::channel(1_234_567_890)] {
            assert_eq!(PeerKey::from_marked(key.marked()), key);
        }
        assert_eq!(PeerKey::channel(1_234_567_890).marked(), -1_001_234_567_890);
    }
}
