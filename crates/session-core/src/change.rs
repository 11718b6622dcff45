//! Typed changes to a session, which backends can persist one by one.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::auth_key::AuthKey;
use crate::dc_table;
use crate::model::{DcKey, DcOption, MinPeerContext, SelfUser, SessionData, UpdateState};
use crate::peers::{Peer, PeerKey};

/// A partial update of the update state, mirroring how MTProto clients advance it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum UpdateStateChange {
    /// Replace the whole state, channels included.
    All(UpdateState),
    /// The common box advanced: pts, date and seq.
    Primary {
        /// New pts.
        pts: i32,
        /// New date.
        date: i32,
        /// New seq.
        seq: i32,
    },
    /// The secondary box advanced: qts.
    Secondary {
        /// New qts.
        qts: i32,
    },
    /// One channel's pts advanced.
    Channel {
        /// Bare channel id.
        id: i64,
        /// New pts.
        pts: i32,
    },
    /// Forget one channel's pts.
    RemoveChannel {
        /// Bare channel id.
        id: i64,
    },
}

/// One change to a session.
///
/// Every change is idempotent: applying it twice gives the same session as applying it once. A
/// backend may therefore be handed the same change again after a failed `persist`.
///
/// `Debug` prints no secret: auth keys show their key id, a future auth token its length only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Change {
    /// The home DC moved.
    SetHomeDc(i32),
    /// Insert or replace a DC option (address, flags, key, salt) under its [`DcKey`].
    SetDc(DcOption),
    /// Set or clear the auth key of a DC's main option. When the DC has no option yet, one is
    /// created at Telegram's published address for that DC.
    SetAuthKey {
        /// DC id.
        dc_id: i32,
        /// The key, or `None` to drop it.
        key: Option<AuthKey>,
    },
    /// Remove a DC option.
    RemoveDc(DcKey),
    /// The update state advanced.
    UpdateState(UpdateStateChange),
    /// Insert or replace a cached peer.
    UpsertPeer(Peer),
    /// Forget a cached peer.
    RemovePeer(PeerKey),
    /// The logged-in account changed (`None`: nobody).
    SetUser(Option<SelfUser>),
    /// Test mode was switched.
    SetTestMode(bool),
    /// The api_id became known.
    SetApiId(Option<i32>),
    /// Replace the "min" peer contexts.
    SetMinContexts(Vec<MinPeerContext>),
    /// Set or clear the future auth token.
    SetFutureAuthToken(Option<Vec<u8>>),
    /// The account logged out: the session is reset to empty.
    LogOut,
}

impl std::fmt::Debug for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::SetHomeDc(dc) => f.debug_tuple("SetHomeDc").field(dc).finish(),
            Change::SetDc(option) => f.debug_tuple("SetDc").field(option).finish(),
            Change::SetAuthKey { dc_id, key } => {
                f.debug_struct("SetAuthKey").field("dc_id", dc_id).field("key", key).finish()
            }
            Change::RemoveDc(key) => f.debug_tuple("RemoveDc").field(key).finish(),
            Change::UpdateState(change) => f.debug_tuple("UpdateState").field(change).finish(),
            Change::UpsertPeer(peer) => f.debug_tuple("UpsertPeer").field(peer).finish(),
            Change::RemovePeer(key) => f.debug_tuple("RemovePeer").field(key).finish(),
            Change::SetUser(user) => f.debug_tuple("SetUser").field(user).finish(),
            Change::SetTestMode(on) => f.debug_tuple("SetTestMode").field(on).finish(),
            Change::SetApiId(id) => f.debug_tuple("SetApiId").field(id).finish(),
            Change::SetMinContexts(contexts) => f.debug_tuple("SetMinContexts").field(contexts).finish(),
            Change::SetFutureAuthToken(token) => f
                .debug_tuple("SetFutureAuthToken")
                .field(&token.as_ref().map(|t| crate::model::Redacted(t.len())))
                .finish(),
            Change::LogOut => f.write_str("LogOut"),
        }
    }
}

impl Change {
    /// Changes whose loss would force a new login or resurrect a logged-out session. The store
    /// flushes these before the call that made them returns.
    pub fn is_critical(&self) -> bool {
        match self {
            Change::SetHomeDc(_) | Change::SetAuthKey { .. } | Change::SetUser(_) | Change::LogOut => true,
            Change::SetDc(dc) => dc.auth_key.is_some(),
            _ => false,
        }
    }
}

impl SessionData {
    /// Applies one change.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::SetHomeDc(dc) => self.home_dc = *dc,
            Change::SetDc(option) => {
                self.dcs.insert(option.key(), option.clone());
            }
            Change::SetAuthKey { dc_id, key } => {
                let test = self.test_mode;
                let option = match self.main_dc_key(*dc_id) {
                    Some(k) => self.dcs.get_mut(&k),
                    None => {
                        let addr =
                            dc_table::address(*dc_id, test).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 443)));
                        let option = DcOption::new(*dc_id, addr);
                        let k = option.key();
                        Some(self.dcs.entry(k).or_insert(option))
                    }
                };
                if let Some(option) = option {
                    option.auth_key = key.clone();
                }
            }
            Change::RemoveDc(key) => {
                self.dcs.remove(key);
            }
            Change::UpdateState(u) => match u {
                UpdateStateChange::All(state) => self.updates = state.clone(),
                UpdateStateChange::Primary { pts, date, seq } => {
                    self.updates.pts = *pts;
                    self.updates.date = *date;
                    self.updates.seq = *seq;
                }
                UpdateStateChange::Secondary { qts } => self.updates.qts = *qts,
                UpdateStateChange::Channel { id, pts } => {
                    self.updates.channels.insert(*id, *pts);
                }
                UpdateStateChange::RemoveChannel { id } => {
                    self.updates.channels.remove(id);
                }
            },
            Change::UpsertPeer(peer) => self.peers.insert(peer.clone()),
            Change::RemovePeer(key) => {
                self.peers.remove(*key);
            }
            Change::SetUser(user) => self.user = *user,
            Change::SetTestMode(test) => self.test_mode = *test,
            Change::SetApiId(api_id) => self.api_id = *api_id,
            Change::SetMinContexts(c) => self.min_contexts = c.clone(),
            Change::SetFutureAuthToken(t) => self.future_auth_token = t.clone(),
            Change::LogOut => *self = SessionData::default(),
        }
    }

    /// Applies changes in order.
    pub fn apply_all<'a>(&mut self, changes: impl IntoIterator<Item = &'a Change>) {
        for change in changes {
            self.apply(change);
        }
    }

    fn main_dc_key(&self, id: i32) -> Option<DcKey> {
        self.dc(id).map(DcOption::key)
    }
}
