//! The session data model: everything a client needs to reconnect without logging in again.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::auth_key::AuthKey;
use crate::peers::PeerCache;

/// Flags of a DC option, with the bit values layer-client and ferogram files use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DcFlags(pub u32);

impl DcFlags {
    /// The address is IPv6.
    pub const IPV6: DcFlags = DcFlags(1);
    /// Only for downloading media.
    pub const MEDIA_ONLY: DcFlags = DcFlags(2);
    /// Only reachable over obfuscated TCP.
    pub const TCPO_ONLY: DcFlags = DcFlags(4);
    /// A CDN DC.
    pub const CDN: DcFlags = DcFlags(8);
    /// A static address that should be preferred by clients.
    pub const STATIC: DcFlags = DcFlags(16);
    /// A test-server DC.
    pub const TEST: DcFlags = DcFlags(32);

    /// Every bit of `other` is set in `self`.
    pub fn contains(self, other: DcFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with the bits of `other` set or cleared.
    #[must_use]
    pub fn with(self, other: DcFlags, on: bool) -> DcFlags {
        if on {
            DcFlags(self.0 | other.0)
        } else {
            DcFlags(self.0 & !other.0)
        }
    }

    /// The bits that make two options of one DC different entries (address family, media, CDN).
    pub fn identity(self) -> DcFlags {
        DcFlags(self.0 & (Self::IPV6.0 | Self::MEDIA_ONLY.0 | Self::CDN.0))
    }
}

/// Identifies one DC option: the DC id and the flags that make it a distinct entry. One DC may
/// have an IPv4 entry, an IPv6 entry and media-only entries, each with its own address and key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DcKey {
    /// The DC id (1-5 in production; larger for CDN DCs).
    pub id: i32,
    /// The identity bits of the flags (see [`DcFlags::identity`]).
    pub flags: DcFlags,
}

impl DcKey {
    /// The main IPv4 entry of a DC.
    pub fn main(id: i32) -> Self {
        Self { id, flags: DcFlags::default() }
    }
}

/// One DC option: where to connect and what we hold for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DcOption {
    /// The DC id.
    pub id: i32,
    /// Address and port. Its family agrees with [`DcFlags::IPV6`].
    pub addr: SocketAddr,
    /// Flags as Telegram reports them.
    pub flags: DcFlags,
    /// The authorization key for this DC, when one was negotiated.
    pub auth_key: Option<AuthKey>,
    /// The last server salt.
    pub server_salt: i64,
    /// Offset of the server clock from ours, in seconds.
    pub time_offset: i32,
}

impl DcOption {
    /// An option with no key; the IPv6 flag is set from the address family.
    pub fn new(id: i32, addr: SocketAddr) -> Self {
        let flags = DcFlags::default().with(DcFlags::IPV6, addr.is_ipv6());
        Self { id, addr, flags, auth_key: None, server_salt: 0, time_offset: 0 }
    }

    /// Sets the flags (the IPv6 bit is kept in agreement with the address).
    #[must_use]
    pub fn with_flags(mut self, flags: DcFlags) -> Self {
        self.flags = flags.with(DcFlags::IPV6, self.addr.is_ipv6());
        self
    }

    /// Sets the auth key.
    #[must_use]
    pub fn with_auth_key(mut self, key: Option<AuthKey>) -> Self {
        self.auth_key = key;
        self
    }

    /// Sets the server salt and time offset.
    #[must_use]
    pub fn with_salt(mut self, server_salt: i64, time_offset: i32) -> Self {
        self.server_salt = server_salt;
        self.time_offset = time_offset;
        self
    }

    /// The key this option is stored under.
    pub fn key(&self) -> DcKey {
        DcKey { id: self.id, flags: self.flags.identity() }
    }
}

/// The logged-in account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SelfUser {
    /// User id.
    pub id: i64,
    /// Whether the account is a bot.
    pub bot: bool,
}

impl SelfUser {
    /// The logged-in user.
    pub fn new(id: i64, bot: bool) -> Self {
        Self { id, bot }
    }
}

/// The update sequence state: common pts/qts/date/seq plus per-channel pts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UpdateState {
    /// Common message box pts.
    pub pts: i32,
    /// Secret chats and bot updates qts.
    pub qts: i32,
    /// Date of the last update.
    pub date: i32,
    /// Update sequence number.
    pub seq: i32,
    /// pts per channel, keyed by bare channel id.
    pub channels: BTreeMap<i64, i32>,
}

impl UpdateState {
    /// A state with the four common counters and no channels.
    pub fn new(pts: i32, qts: i32, date: i32, seq: i32) -> Self {
        Self { pts, qts, date, seq, channels: BTreeMap::new() }
    }
}

/// A "min" peer context (ferogram): a user seen only through a message in another chat, and
/// where, so that its full form can be fetched later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MinPeerContext {
    /// The user.
    pub user_id: i64,
    /// The chat the user was seen in (0 when unknown).
    pub peer_id: i64,
    /// The message that mentioned the user.
    pub msg_id: i32,
}

impl MinPeerContext {
    /// A context.
    pub fn new(user_id: i64, peer_id: i64, msg_id: i32) -> Self {
        Self { user_id, peer_id, msg_id }
    }
}

/// A whole session.
///
/// Build one with [`SessionData::default`] and change it only through [`crate::Change`]s
/// ([`SessionData::apply`]), so that what a backend persists incrementally and what it would
/// save in full are the same session by construction.
///
/// `Debug` prints no secret: auth keys show their key id, and `future_auth_token` its length only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionData {
    /// The DC the account lives on (0: none chosen yet).
    pub home_dc: i32,
    /// Every known DC option.
    pub dcs: BTreeMap<DcKey, DcOption>,
    /// The logged-in account, if any.
    pub user: Option<SelfUser>,
    /// Whether this session talks to Telegram's test servers.
    pub test_mode: bool,
    /// The api_id the session was created with, where the source recorded it.
    pub api_id: Option<i32>,
    /// Update sequence state.
    pub updates: UpdateState,
    /// Cached peers and their access hashes.
    pub peers: PeerCache,
    /// "min" peer contexts (kept for ferogram sessions).
    pub min_contexts: Vec<MinPeerContext>,
    /// A future auth token (secret; kept for ferogram sessions).
    pub future_auth_token: Option<Vec<u8>>,
}

/// A secret's length, never its bytes (for `Debug`).
pub(crate) struct Redacted(pub(crate) usize);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<redacted, {} bytes>", self.0)
    }
}

impl std::fmt::Debug for SessionData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionData")
            .field("home_dc", &self.home_dc)
            .field("dcs", &self.dcs)
            .field("user", &self.user)
            .field("test_mode", &self.test_mode)
            .field("api_id", &self.api_id)
            .field("updates", &self.updates)
            .field("peers", &self.peers)
            .field("min_contexts", &self.min_contexts)
            .field("future_auth_token", &self.future_auth_token.as_ref().map(|t| Redacted(t.len())))
            .finish()
    }
}

impl SessionData {
    /// The main option of a DC: its IPv4 non-media entry, else its IPv6 non-media entry.
    pub fn dc(&self, id: i32) -> Option<&DcOption> {
        self.dcs.get(&DcKey::main(id)).or_else(|| self.dcs.get(&DcKey { id, flags: DcFlags::IPV6 }))
    }

    /// The main option of the home DC.
    pub fn home(&self) -> Option<&DcOption> {
        self.dc(self.home_dc)
    }

    /// The auth key of a DC's main option.
    pub fn auth_key(&self, dc_id: i32) -> Option<&AuthKey> {
        self.dc(dc_id).and_then(|o| o.auth_key.as_ref())
    }

    /// True when the home DC has an auth key (the session may be logged in).
    pub fn has_home_key(&self) -> bool {
        self.auth_key(self.home_dc).is_some()
    }

    /// True when nothing at all is stored.
    pub fn is_empty(&self) -> bool {
        self == &SessionData::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_session_shows_the_future_auth_token_length_only() {
        let session = SessionData { future_auth_token: Some(vec![0xAB; 32]), ..SessionData::default() };
        let shown = format!("{session:?} {session:#?}");
        assert!(shown.contains("<redacted, 32 bytes>"), "{shown}");
        assert!(!shown.contains("171"), "token bytes printed: {shown}");
        assert!(!shown.to_lowercase().contains("abab"), "token bytes printed: {shown}");
    }

    #[test]
    fn debug_of_a_token_change_shows_its_length_only() {
        let change = crate::Change::SetFutureAuthToken(Some(vec![0xAB; 32]));
        let shown = format!("{change:?} {change:#?} {:?}", std::slice::from_ref(&change));
        assert!(shown.contains("SetFutureAuthToken(Some(<redacted, 32 bytes>))"), "{shown}");
        assert!(!shown.contains("171"), "token bytes printed: {shown}");
        assert!(!shown.to_lowercase().contains("abab"), "token bytes printed: {shown}");
        assert_eq!(format!("{:?}", crate::Change::SetHomeDc(2)), "SetHomeDc(2)");
    }
}
