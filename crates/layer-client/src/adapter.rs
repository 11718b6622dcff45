//! Our [`SessionStore`] behind grammers' [`Session`] trait.
//!
//! grammers reads the home DC and DC options synchronously on every request: both are served from
//! the store's memory. Everything grammers writes (auth keys, DC addresses, the home DC after a
//! migration, the logged-in user, cached peers, the update state) becomes a typed
//! [`Change`] applied through [`SessionStore::apply_many`], so it is persisted by the backend
//! with the store's group-commit rules: keys, home DC and user before the call returns, the rest
//! within the flush interval.

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;

use grammers_session::types::{
    ChannelKind, ChannelState, DcOption as GDcOption, PeerAuth, PeerId, PeerInfo, PeerKind as GPeerKind, UpdateState,
    UpdatesState,
};
use grammers_session::{BoxFuture, Session};
use session_core::{
    dc_table, AuthKey, Change, DcFlags, DcKey, DcOption, Peer, PeerKey, PeerKind, SelfUser, SessionData, SessionError,
    SessionStore, UpdateStateChange,
};

use crate::health::Health;

/// The DC grammers starts on when a session names none (Telegram's recommended first DC).
pub(crate) const DEFAULT_DC: i32 = 2;

/// A [`SessionStore`] that grammers can drive.
pub(crate) struct StoreSession {
    store: SessionStore,
    health: Arc<Health>,
}

impl StoreSession {
    pub(crate) fn new(store: SessionStore, health: Arc<Health>) -> Self {
        Self { store, health }
    }

    /// Applies changes that grammers only logs a failure of (peers, update state, the user it
    /// caches after a login Telegram accepted). A store error is recorded for the application
    /// (health watch and our next call) instead of being handed to grammers, and the changes
    /// are kept pending to be retried with the rest. The error is either an earlier background
    /// failure reported before `changes` were applied (the retry below applies them) or the
    /// failed write of a critical change, which stays applied and pending; changes are
    /// idempotent, so applying them twice is harmless.
    async fn apply_kept(&self, changes: Vec<Change>) -> Result<(), SessionError> {
        if changes.is_empty() {
            return Ok(());
        }
        match self.store.apply_many(changes.clone()).await {
            Ok(()) => Ok(()),
            Err(SessionError::Closed) => Err(SessionError::Closed),
            Err(e) => {
                self.health.failed(e, self.store.pending() + changes.len());
                match self.store.apply_many(changes).await {
                    Err(SessionError::Closed) => Err(SessionError::Closed),
                    Err(again) => {
                        self.health.failed(again, self.store.pending());
                        Ok(())
                    }
                    Ok(()) => Ok(()),
                }
            }
        }
    }
}

fn v4_of(addr: SocketAddr) -> Option<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(a) => a.ip().to_ipv4_mapped().map(|ip| SocketAddrV4::new(ip, a.port())),
    }
}

fn v6_of(addr: SocketAddr) -> SocketAddrV6 {
    match addr {
        SocketAddr::V6(a) => a,
        SocketAddr::V4(a) => SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0),
    }
}

/// grammers' view of one DC, built from our options and the published table.
pub(crate) fn dc_option_of(data: &SessionData, dc_id: i32) -> Option<GDcOption> {
    let v4_entry = data.dcs.get(&DcKey::main(dc_id));
    let v6_entry = data.dcs.get(&DcKey { id: dc_id, flags: DcFlags::IPV6 });
    let ipv4 = v4_entry
        .and_then(|o| v4_of(o.addr))
        .or_else(|| dc_table::ipv4(dc_id, data.test_mode))
        .or_else(|| v6_entry.and_then(|o| v4_of(o.addr)));
    let ipv6 = v6_entry.map(|o| v6_of(o.addr)).or_else(|| dc_table::ipv6(dc_id, data.test_mode));
    let (ipv4, ipv6) = match (ipv4, ipv6) {
        (Some(a), Some(b)) => (a, b),
        (Some(a), None) => (a, v6_of(SocketAddr::V4(a))),
        (None, Some(b)) => (SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0), b),
        (None, None) => return None,
    };
    let auth_key = data.auth_key(dc_id).map(|k| *k.as_bytes());
    Some(GDcOption { id: dc_id, ipv4, ipv6, auth_key })
}

/// The changes that make our session hold what grammers' `option` says, none when it already does.
pub(crate) fn dc_changes(data: &SessionData, option: &GDcOption) -> Vec<Change> {
    let mut changes = Vec::new();
    let key = option.auth_key.map(AuthKey::new);
    let has_v4 = !option.ipv4.ip().is_unspecified() && option.ipv4.port() != 0;
    let main_key = data.dc(option.id).map(DcOption::key);
    if has_v4 {
        let addr = SocketAddr::V4(option.ipv4);
        let current = data.dcs.get(&DcKey::main(option.id));
        let mut next = match current {
            Some(c) => {
                let mut n = c.clone();
                n.addr = addr;
                n
            }
            None => DcOption::new(option.id, addr).with_flags(data.test_mode_flags()),
        };
        // The IPv4 entry becomes (or stays) the main option, so it carries the DC's key; an
        // IPv6 entry that held it keeps its copy (updated below).
        next.auth_key = key.clone();
        if current != Some(&next) {
            changes.push(Change::SetDc(next));
        }
    }
    let v6_key = DcKey { id: option.id, flags: DcFlags::IPV6 };
    let v6_entry = data.dcs.get(&v6_key);
    if main_key == Some(v6_key) || v6_entry.is_some_and(|o| o.auth_key.is_some()) {
        // An IPv6 entry that holds a key (an IPv6-only session, or its copy) follows the DC's
        // key, so that no stale key is left behind.
        if let Some(current) = v6_entry {
            let mut next = current.clone();
            next.auth_key = key.clone();
            if main_key == Some(v6_key) && !option.ipv6.ip().is_unspecified() && option.ipv6.port() != 0 {
                next.addr = SocketAddr::V6(option.ipv6);
            }
            if current != &next {
                changes.push(Change::SetDc(next));
            }
        }
    } else if !has_v4 && key.is_some() && data.auth_key(option.id) != key.as_ref() {
        changes.push(Change::SetAuthKey { dc_id: option.id, key });
    }
    // A real (not IPv4-mapped, not published) IPv6 address is kept as its own entry.
    let ip6 = option.ipv6.ip();
    let published = dc_table::ipv6(option.id, data.test_mode);
    let stored = data.dcs.get(&v6_key);
    if !ip6.is_unspecified()
        && ip6.to_ipv4_mapped().is_none()
        && option.ipv6.port() != 0
        && Some(option.ipv6) != published
        && stored.map(|o| o.addr) != Some(SocketAddr::V6(option.ipv6))
        && main_key != Some(v6_key)
    {
        let next = match stored {
            Some(s) => {
                let mut n = s.clone();
                n.addr = SocketAddr::V6(option.ipv6);
                n
            }
            None => DcOption::new(option.id, SocketAddr::V6(option.ipv6)).with_flags(data.test_mode_flags()),
        };
        changes.push(Change::SetDc(next));
    }
    changes
}

trait TestFlags {
    fn test_mode_flags(&self) -> DcFlags;
}

impl TestFlags for SessionData {
    fn test_mode_flags(&self) -> DcFlags {
        DcFlags::default().with(DcFlags::TEST, self.test_mode)
    }
}

fn peer_kind_of_channel(kind: Option<ChannelKind>) -> PeerKind {
    match kind {
        Some(ChannelKind::Broadcast) => PeerKind::Broadcast,
        Some(ChannelKind::Megagroup) => PeerKind::Megagroup,
        Some(ChannelKind::Gigagroup) => PeerKind::Gigagroup,
        // A grammers "community" lives in the channel id space; ours is a user-space kind.
        Some(ChannelKind::Community) | None => PeerKind::Channel,
    }
}

fn channel_kind_of(kind: PeerKind) -> Option<ChannelKind> {
    match kind {
        PeerKind::Broadcast => Some(ChannelKind::Broadcast),
        PeerKind::Megagroup => Some(ChannelKind::Megagroup),
        PeerKind::Gigagroup => Some(ChannelKind::Gigagroup),
        _ => None,
    }
}

/// grammers' view of a cached peer.
pub(crate) fn peer_info_of(data: &SessionData, id: PeerId) -> Option<PeerInfo> {
    if id == PeerId::self_user() {
        let user = data.user?;
        let auth =
            data.peers.access_hash(PeerKey::user(user.id)).map(PeerAuth::from_hash).or(Some(PeerAuth::default()));
        return Some(PeerInfo::User { id: user.id, auth, bot: Some(user.bot), is_self: Some(true) });
    }
    let bare = id.bare_id()?;
    match id.kind() {
        GPeerKind::User => {
            let peer = data.peers.get(PeerKey::user(bare))?;
            let is_self = data.user.map(|u| u.id == bare);
            let auth = (!peer.min).then(|| PeerAuth::from_hash(peer.access_hash));
            Some(PeerInfo::User { id: bare, auth, bot: Some(peer.kind == PeerKind::Bot), is_self })
        }
        GPeerKind::Chat => data.peers.get(PeerKey::chat(bare)).map(|_| PeerInfo::Chat { id: bare }),
        GPeerKind::Channel => {
            let peer = data.peers.get(PeerKey::channel(bare))?;
            let auth = (!peer.min).then(|| PeerAuth::from_hash(peer.access_hash));
            Some(PeerInfo::Channel { id: bare, auth, kind: channel_kind_of(peer.kind) })
        }
    }
}

/// Caches the peer at `key` with what grammers sent merged into what is already known: a hash
/// (`auth`) replaces the known one and is no longer "min", no hash keeps the known one, and the
/// kind (`kind_of`, given the known peer) always applies. A peer neither known nor sent with a
/// hash is not cached, and nothing is pushed when the merge changes nothing. Returns the kind.
fn merge_peer(
    data: &SessionData,
    key: PeerKey,
    auth: Option<PeerAuth>,
    kind_of: impl FnOnce(Option<&Peer>) -> PeerKind,
    out: &mut Vec<Change>,
) -> PeerKind {
    let existing = data.peers.get(key);
    let kind = kind_of(existing.as_ref());
    let next = match (auth, &existing) {
        (Some(a), Some(e)) => {
            let mut n = e.clone();
            n.access_hash = a.hash();
            n.min = false;
            n.kind = kind;
            Some(n)
        }
        (Some(a), None) => Some(Peer::new(key.id, kind, a.hash())),
        (None, Some(e)) => {
            let mut n = e.clone();
            n.kind = kind;
            Some(n)
        }
        (None, None) => None,
    };
    if let Some(next) = next {
        if existing.as_ref() != Some(&next) {
            out.push(Change::UpsertPeer(next));
        }
    }
    kind
}

/// The changes that cache `info`, merged with what is already known; none when nothing is new.
pub(crate) fn peer_changes(data: &SessionData, info: &PeerInfo, out: &mut Vec<Change>) {
    match *info {
        PeerInfo::User { id, auth, bot, is_self } => {
            let kind_of = |existing: Option<&Peer>| match (bot, existing) {
                (Some(true), _) => PeerKind::Bot,
                (Some(false), _) => PeerKind::User,
                (None, Some(e)) => e.kind,
                (None, None) => PeerKind::User,
            };
            let kind = merge_peer(data, PeerKey::user(id), auth, kind_of, out);
            if is_self == Some(true) {
                let bot = bot.unwrap_or(kind == PeerKind::Bot);
                let user = Some(SelfUser::new(id, bot));
                if data.user != user {
                    out.push(Change::SetUser(user));
                }
                if data.home_dc == 0 {
                    // Logged in on the DC grammers starts on: that is the home DC.
                    out.push(Change::SetHomeDc(DEFAULT_DC));
                }
            }
        }
        PeerInfo::Chat { id } => {
            if data.peers.get(PeerKey::chat(id)).is_none() {
                out.push(Change::UpsertPeer(Peer::new(id, PeerKind::BasicGroup, 0)));
            }
        }
        PeerInfo::Channel { id, auth, kind } => {
            let kind_of = |existing: Option<&Peer>| match (kind, existing) {
                (Some(k), _) => peer_kind_of_channel(Some(k)),
                (None, Some(e)) => e.kind,
                (None, None) => PeerKind::Channel,
            };
            merge_peer(data, PeerKey::channel(id), auth, kind_of, out);
        }
    }
}

fn update_change(update: UpdateState) -> UpdateStateChange {
    match update {
        UpdateState::All(s) => {
            let mut state = session_core::UpdateState::new(s.pts, s.qts, s.date, s.seq);
            state.channels = s.channels.into_iter().map(|c| (c.id, c.pts)).collect();
            UpdateStateChange::All(state)
        }
        UpdateState::Primary { pts, date, seq } => UpdateStateChange::Primary { pts, date, seq },
        UpdateState::Secondary { qts } => UpdateStateChange::Secondary { qts },
        UpdateState::Channel { id, pts } => UpdateStateChange::Channel { id, pts },
    }
}

impl Session for StoreSession {
    type Error = SessionError;

    fn home_dc_id(&self) -> Result<i32, SessionError> {
        Ok(self.store.read(|d| if d.home_dc == 0 { DEFAULT_DC } else { d.home_dc }))
    }

    fn set_home_dc_id(&self, dc_id: i32) -> BoxFuture<'_, Result<(), SessionError>> {
        Box::pin(async move {
            if self.store.read(|d| d.home_dc) == dc_id {
                return Ok(());
            }
            self.store.apply(Change::SetHomeDc(dc_id)).await
        })
    }

    fn dc_option(&self, dc_id: i32) -> Result<Option<GDcOption>, SessionError> {
        Ok(self.store.read(|d| dc_option_of(d, dc_id)))
    }

    fn set_dc_option(&self, dc_option: &GDcOption) -> BoxFuture<'_, Result<(), SessionError>> {
        let option = dc_option.clone();
        Box::pin(async move {
            let changes = self.store.read(|d| {
                let mut changes = dc_changes(d, &option);
                // grammers starts on DEFAULT_DC when the session names no home: once it holds a
                // key there, that DC is the session's home, recorded so that the stored session
                // (and every string exported from it) names it.
                if d.home_dc == 0 && option.id == DEFAULT_DC && option.auth_key.is_some() {
                    changes.push(Change::SetHomeDc(DEFAULT_DC));
                }
                changes
            });
            self.store.apply_many(changes).await
        })
    }

    fn peer(&self, peer: PeerId) -> BoxFuture<'_, Result<Option<PeerInfo>, SessionError>> {
        Box::pin(async move { Ok(self.store.read(|d| peer_info_of(d, peer))) })
    }

    fn cache_peer(&self, peer: PeerInfo) -> BoxFuture<'_, Result<(), SessionError>> {
        Box::pin(async move {
            let mut changes = Vec::new();
            self.store.read(|d| peer_changes(d, &peer, &mut changes));
            self.apply_kept(changes).await
        })
    }

    fn cache_peers(&self, peers: Vec<PeerInfo>) -> BoxFuture<'_, Result<(), SessionError>> {
        Box::pin(async move {
            let mut changes = Vec::new();
            self.store.read(|d| {
                // Later infos about the same peer build on earlier ones in this batch.
                let mut scratch: Option<SessionData> = None;
                for peer in &peers {
                    let before = changes.len();
                    peer_changes(scratch.as_ref().unwrap_or(d), peer, &mut changes);
                    if changes.len() > before {
                        scratch.get_or_insert_with(|| d.clone()).apply_all(&changes[before..]);
                    }
                }
            });
            self.apply_kept(changes).await
        })
    }

    fn updates_state(&self) -> BoxFuture<'_, Result<UpdatesState, SessionError>> {
        Box::pin(async move {
            Ok(self.store.read(|d| UpdatesState {
                pts: d.updates.pts,
                qts: d.updates.qts,
                date: d.updates.date,
                seq: d.updates.seq,
                channels: d.updates.channels.iter().map(|(&id, &pts)| ChannelState { id, pts }).collect(),
            }))
        })
    }

    fn set_update_state(&self, update: UpdateState) -> BoxFuture<'_, Result<(), SessionError>> {
        Box::pin(async move { self.apply_kept(vec![Change::UpdateState(update_change(update))]).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(b: u8) -> [u8; 256] {
        [b; 256]
    }

    /// A first run: the session calls grammers' pool makes after generating a key on a DC the
    /// session knew nothing about (`create_connection`: store the option with the new key, then
    /// the DC options of the config it fetched with it), through the file backend, then a
    /// restart that must hand grammers the same key and home DC.
    #[tokio::test(flavor = "current_thread")]
    async fn a_key_grammers_generates_is_persisted_and_served_after_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("first.session");
        let mut new_key = [0u8; 256];
        for (i, b) in new_key.iter_mut().enumerate() {
            *b = u8::try_from(i * 7 % 251).expect("small");
        }
        {
            let backend = crate::session_backend::open_path(path.clone(), None).await.expect("new file");
            let store = SessionStore::open(backend, session_core::FlushPolicy::default()).await.expect("open");
            let session = StoreSession::new(store.clone(), Arc::new(Health::new()));
            assert_eq!(session.home_dc_id().expect("home"), DEFAULT_DC);
            let mut option = session.dc_option(DEFAULT_DC).expect("read").expect("published address");
            assert!(option.auth_key.is_none(), "a first run has no key");
            option.auth_key = Some(new_key);
            session.set_dc_option(&option).await.expect("stored");
            let mut other = session.dc_option(4).expect("read").expect("published address");
            other.ipv4 = SocketAddrV4::new(Ipv4Addr::new(149, 154, 167, 92), 443);
            session.set_dc_option(&other).await.expect("config option stored");
            // No close: the key is critical and must already be on disk (a crash here keeps it).
            drop(session);
            drop(store);
        }
        let backend = crate::session_backend::open_path(path, None).await.expect("reopen");
        let store = SessionStore::open(backend, session_core::FlushPolicy::default()).await.expect("open");
        let session = StoreSession::new(store, Arc::new(Health::new()));
        assert_eq!(session.home_dc_id().expect("home"), DEFAULT_DC);
        assert_eq!(session.dc_option(DEFAULT_DC).expect("read").and_then(|o| o.auth_key), Some(new_key));
        assert_eq!(session.store.read(|d| d.home_dc), DEFAULT_DC, "the home DC is named in the stored session");
    }

    #[test]
    fn table_addresses_fill_missing_dcs() {
        let data = SessionData::default();
        let o = dc_option_of(&data, 4).expect("published DC");
        assert_eq!(Some(o.ipv4), dc_table::ipv4(4, false));
        assert_eq!(Some(o.ipv6), dc_table::ipv6(4, false));
        assert!(o.auth_key.is_none());
        assert!(dc_option_of(&data, 99).is_none());
    }

    #[test]
    fn set_dc_option_round_trips_and_is_idempotent() {
        let mut data = SessionData::default();
        let opt = GDcOption {
            id: 2,
            ipv4: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4000),
            ipv6: SocketAddrV6::new(Ipv4Addr::LOCALHOST.to_ipv6_mapped(), 4000, 0, 0),
            auth_key: Some(key(7)),
        };
        let changes = dc_changes(&data, &opt);
        assert_eq!(changes.len(), 1);
        data.apply_all(&changes);
        assert_eq!(data.auth_key(2).map(|k| *k.as_bytes()), Some(key(7)));
        let back = dc_option_of(&data, 2).expect("stored");
        assert_eq!(back.ipv4, opt.ipv4);
        assert_eq!(back.auth_key, opt.auth_key);
        assert!(dc_changes(&data, &back).is_empty(), "same option again changes nothing");
    }

    #[test]
    fn salt_and_offset_survive_a_new_address() {
        let mut data = SessionData::default();
        data.apply(&Change::SetDc(
            DcOption::new(2, SocketAddr::from(([127, 0, 0, 1], 1)))
                .with_auth_key(Some(AuthKey::new(key(1))))
                .with_salt(42, -3),
        ));
        let mut opt = dc_option_of(&data, 2).expect("stored");
        opt.ipv4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 2);
        data.apply_all(&dc_changes(&data, &opt));
        let stored = data.dc(2).expect("dc 2");
        assert_eq!((stored.server_salt, stored.time_offset), (42, -3));
        assert_eq!(stored.addr.port(), 2);
    }

    #[test]
    fn an_ipv6_only_session_keeps_its_key() {
        let mut data = SessionData::default();
        let v6 = SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 2], 443));
        data.apply(&Change::SetDc(DcOption::new(2, v6).with_auth_key(Some(AuthKey::new(key(3))))));
        let opt = dc_option_of(&data, 2).expect("known");
        assert_eq!(opt.auth_key, Some(key(3)));
        data.apply_all(&dc_changes(&data, &opt));
        assert_eq!(data.auth_key(2).map(|k| *k.as_bytes()), Some(key(3)));
        assert_eq!(
            dc_option_of(&data, 2).map(|o| o.ipv6),
            Some(match v6 {
                SocketAddr::V6(a) => a,
                SocketAddr::V4(_) => unreachable!(),
            })
        );
        assert!(dc_changes(&data, &dc_option_of(&data, 2).expect("known")).is_empty());
        // A new key (after a fresh key exchange) replaces the old one wherever it was.
        let mut next = dc_option_of(&data, 2).expect("known");
        next.auth_key = Some(key(4));
        data.apply_all(&dc_changes(&data, &next));
        assert_eq!(data.auth_key(2).map(|k| *k.as_bytes()), Some(key(4)));
        let copies: Vec<_> = data.dcs.values().map(|o| o.auth_key.as_ref().map(|k| *k.as_bytes())).collect();
        assert!(copies.iter().all(|k| *k == Some(key(4))), "no stale key left on any entry");
    }

    /// What grammers leaves out is kept, what it sends replaces; the same rules for users and
    /// channels (one merge serves both).
    #[test]
    fn peer_merges_keep_what_grammers_left_out() {
        let mut data = SessionData::default();
        data.apply_all(&[
            Change::UpsertPeer(Peer::new(5, PeerKind::User, 50).with_min(true).with_usernames(vec!["u".into()])),
            Change::UpsertPeer(Peer::new(6, PeerKind::Megagroup, 60).with_min(true).with_usernames(vec!["c".into()])),
        ]);
        let changes = |info: PeerInfo| {
            let mut out = Vec::new();
            peer_changes(&data, &info, &mut out);
            out
        };
        let upserted = |out: Vec<Change>| match out.as_slice() {
            [Change::UpsertPeer(p)] => (p.kind, p.access_hash, p.min, p.usernames.clone()),
            other => panic!("expected one upsert, got {other:?}"),
        };
        // A full hash replaces a min one; usernames stay.
        let user = PeerInfo::User { id: 5, auth: Some(PeerAuth::from_hash(51)), bot: None, is_self: None };
        assert_eq!(upserted(changes(user)), (PeerKind::User, 51, false, vec!["u".to_owned()]));
        let channel = PeerInfo::Channel { id: 6, auth: Some(PeerAuth::from_hash(61)), kind: None };
        assert_eq!(upserted(changes(channel)), (PeerKind::Megagroup, 61, false, vec!["c".to_owned()]));
        // No hash: the known one (min) stays, a new kind applies.
        let user = PeerInfo::User { id: 5, auth: None, bot: Some(true), is_self: None };
        assert_eq!(upserted(changes(user)), (PeerKind::Bot, 50, true, vec!["u".to_owned()]));
        let channel = PeerInfo::Channel { id: 6, auth: None, kind: Some(ChannelKind::Broadcast) };
        assert_eq!(upserted(changes(channel)), (PeerKind::Broadcast, 60, true, vec!["c".to_owned()]));
        // Nothing new, or nothing to cache: no change.
        assert!(changes(PeerInfo::User { id: 5, auth: None, bot: None, is_self: None }).is_empty());
        assert!(changes(PeerInfo::Channel { id: 6, auth: None, kind: None }).is_empty());
        assert!(changes(PeerInfo::User { id: 8, auth: None, bot: Some(true), is_self: None }).is_empty());
        assert!(changes(PeerInfo::Channel { id: 9, auth: None, kind: Some(ChannelKind::Megagroup) }).is_empty());
        // Unknown with a hash: cached with the kind sent, or the id space's default.
        let user = PeerInfo::User { id: 8, auth: Some(PeerAuth::from_hash(80)), bot: None, is_self: None };
        assert_eq!(upserted(changes(user)), (PeerKind::User, 80, false, Vec::new()));
        let channel = PeerInfo::Channel { id: 9, auth: Some(PeerAuth::from_hash(90)), kind: None };
        assert_eq!(upserted(changes(channel)), (PeerKind::Channel, 90, false, Vec::new()));
    }

    #[test]
    fn self_user_sentinel_and_peers() {
        let mut data = SessionData::default();
        let mut changes = Vec::new();
        peer_changes(
            &data,
            &PeerInfo::User { id: 77, auth: Some(PeerAuth::from_hash(5)), bot: Some(true), is_self: Some(true) },
            &mut changes,
        );
        data.apply_all(&changes);
        assert_eq!(data.user, Some(SelfUser::new(77, true)));
        assert_eq!(data.home_dc, DEFAULT_DC, "a login on the starting DC makes it the home");
        match peer_info_of(&data, PeerId::self_user()) {
            Some(PeerInfo::User { id, auth, bot, is_self }) => {
                assert_eq!((id, auth.map(PeerAuth::hash), bot, is_self), (77, Some(5), Some(true), Some(true)));
            }
            other => panic!("unexpected {other:?}"),
        }
        let mut again = Vec::new();
        peer_changes(
            &data,
            &PeerInfo::User { id: 77, auth: Some(PeerAuth::from_hash(5)), bot: Some(true), is_self: Some(true) },
            &mut again,
        );
        assert!(again.is_empty());
        let mut ch = Vec::new();
        peer_changes(
            &data,
            &PeerInfo::Channel { id: 10, auth: Some(PeerAuth::from_hash(9)), kind: Some(ChannelKind::Megagroup) },
            &mut ch,
        );
        data.apply_all(&ch);
        let peer = data.peers.get(PeerKey::channel(10)).expect("cached");
        assert_eq!((peer.kind, peer.access_hash), (PeerKind::Megagroup, 9));
        let channel = PeerId::channel(10).expect("valid id");
        assert_eq!(
            peer_info_of(&data, channel),
            Some(PeerInfo::Channel { id: 10, auth: Some(PeerAuth::from_hash(9)), kind: Some(ChannelKind::Megagroup) })
        );
    }
}
