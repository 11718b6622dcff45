//! The write path: a batch of changes (or a whole session) becomes one [`Plan`], the arguments
//! of the fenced `WRITE` script, so one change costs the fields it touches and nothing more.

use std::collections::BTreeSet;

use session_core::{Change, DcKey, PeerCache, PeerKey, SessionData, SessionError, UpdateStateChange};

use crate::keys::{
    bucket_field, bucket_of, dc_field, encode_dc, encode_meta, encode_peer, map_bucket, peer_field, push_record, FORMAT,
};
use crate::seal::Sealer;

/// One atomic write of the session hash: replace it or not, the fields to set (an empty value
/// is a tombstone), and the peer operations.
#[derive(Default)]
pub(crate) struct Plan {
    pub replace: bool,
    pub set: Vec<(Vec<u8>, Vec<u8>)>,
    /// Peer operations, sorted by bucket: bucket, key, value (empty: remove).
    pub peer_ops: Vec<Vec<u8>>,
}

impl Plan {
    /// The whole session, replacing whatever was stored.
    pub(crate) fn full(data: &SessionData) -> Result<Plan, SessionError> {
        let mut plan = Plan { replace: true, ..Plan::default() };
        plan.meta(data)?;
        for key in data.dcs.keys() {
            plan.dc(data, *key)?;
        }
        plan.set.extend(data.updates.channels.iter().map(|(id, pts)| chan_pair(*id, *pts)));
        plan.set.extend(peer_pairs(&data.peers));
        Ok(plan)
    }

    /// Forgets the session (the lease stays).
    pub(crate) fn delete() -> Plan {
        Plan { replace: true, ..Plan::default() }
    }

    /// `changes`, already applied to `full`: the fields they touched, read from `full`.
    /// `meta_known` says whether the store already holds the `meta` field (written by this
    /// owner); if not it is written too, so a session is never peers without its header.
    pub(crate) fn changes(changes: &[Change], full: &SessionData, meta_known: bool) -> Result<Plan, SessionError> {
        // A log out wipes everything before it: start from the state it left.
        if changes.iter().any(|c| matches!(c, Change::LogOut)) {
            return Plan::full(full);
        }
        let mut meta = !meta_known;
        let mut all_channels = false;
        let mut dcs = BTreeSet::<DcKey>::new();
        let mut channels = BTreeSet::<i64>::new();
        let mut peers = BTreeSet::<PeerKey>::new();
        for change in changes {
            match change {
                Change::SetDc(option) => {
                    dcs.insert(option.key());
                }
                Change::RemoveDc(key) => {
                    dcs.insert(*key);
                }
                Change::SetAuthKey { dc_id, .. } => dcs.extend(full.dcs.keys().filter(|k| k.id == *dc_id)),
                Change::UpsertPeer(peer) => {
                    peers.insert(peer.key());
                }
                Change::RemovePeer(key) => {
                    peers.insert(*key);
                }
                Change::UpdateState(UpdateStateChange::All(_)) => {
                    meta = true;
                    all_channels = true;
                }
                Change::UpdateState(UpdateStateChange::Channel { id, .. })
                | Change::UpdateState(UpdateStateChange::RemoveChannel { id }) => {
                    channels.insert(*id);
                }
                // Home DC, user, test mode, api_id, pts/qts/date/seq, min contexts, the future
                // auth token (and any change kind added later): the small `meta` field.
                _ => meta = true,
            }
        }
        let mut plan = Plan::default();
        if meta {
            plan.meta(full)?;
        }
        for key in dcs {
            plan.dc(full, key)?;
        }
        if all_channels {
            // The whole state was replaced: every channel stored before is dropped, which the
            // session hash can only do by rewriting it (rare: a state reset).
            return Plan::full(full);
        }
        for id in channels {
            match full.updates.channels.get(&id) {
                Some(pts) => plan.set.push(chan_pair(id, *pts)),
                None => plan.set.push((chan_field(id), Vec::new())),
            }
        }
        let mut ops: Vec<([u8; 2], Vec<u8>)> = peers
            .into_iter()
            .map(|key| {
                let bucket = bucket_of(key);
                let mut op = Vec::with_capacity(24);
                op.extend_from_slice(&bucket);
                op.extend_from_slice(&peer_field(key));
                if let Some(peer) = full.peers.get(key) {
                    op.extend_from_slice(&encode_peer(&peer));
                }
                (bucket, op)
            })
            .collect();
        ops.sort_by_key(|op| op.0);
        plan.peer_ops = ops.into_iter().map(|(_, op)| op).collect();
        Ok(plan)
    }

    fn meta(&mut self, data: &SessionData) -> Result<(), SessionError> {
        self.set.push((b"format".to_vec(), FORMAT.to_string().into_bytes()));
        self.set.push((b"meta".to_vec(), encode_meta(data)?));
        Ok(())
    }

    fn dc(&mut self, data: &SessionData, key: DcKey) -> Result<(), SessionError> {
        let value = encode_dc(data, key)?.unwrap_or_default();
        self.set.push((dc_field(key), value));
        Ok(())
    }

    /// The plan with every value sealed ([`crate::seal`]): `format` becomes the sealed layout
    /// and the marker is written beside it; tombstones stay empty. The script sees opaque bytes
    /// either way (a peer operation keeps its plain bucket and key).
    pub(crate) fn seal(self, sealer: &Sealer) -> Result<Plan, SessionError> {
        let mut set = Vec::with_capacity(self.set.len() + 1);
        for (field, value) in self.set {
            if field == b"format" {
                set.push((field, Sealer::format()));
                set.push((b"seal".to_vec(), sealer.marker()));
                continue;
            }
            if value.is_empty() {
                set.push((field, value));
                continue;
            }
            let sealed = if field.len() == 4 && field.starts_with(b"p:") {
                map_bucket(&value, |key, v| sealer.seal(&field, Some(key), v))?.ok_or_else(|| {
                    SessionError::invalid("peer bucket", "a bucket built for a write is not well formed")
                })?
            } else {
                sealer.seal(&field, None, &value)?
            };
            set.push((field, sealed));
        }
        let mut peer_ops = Vec::with_capacity(self.peer_ops.len());
        for op in self.peer_ops {
            if op.len() <= 11 {
                peer_ops.push(op); // a removal
                continue;
            }
            let (head, value) = op.split_at(11);
            let sealed = sealer.seal(&bucket_field([head[0], head[1]]), Some(&head[2..]), value)?;
            let mut out = Vec::with_capacity(11 + sealed.len());
            out.extend_from_slice(head);
            out.extend_from_slice(&sealed);
            peer_ops.push(out);
        }
        Ok(Plan { replace: self.replace, set, peer_ops })
    }

    /// Fields written or removed, for spans.
    pub(crate) fn size(&self) -> usize {
        self.set.len() + self.peer_ops.len()
    }

    /// Adds the script's arguments after the token.
    pub(crate) fn add_args(&self, inv: &mut redis::ScriptInvocation<'_>) {
        inv.arg(if self.replace { "1" } else { "0" });
        inv.arg(self.set.len());
        for (f, v) in &self.set {
            inv.arg(f.as_slice()).arg(v.as_slice());
        }
        inv.arg(self.peer_ops.len());
        for op in &self.peer_ops {
            inv.arg(op.as_slice());
        }
    }
}

fn chan_field(id: i64) -> Vec<u8> {
    format!("c:{id}").into_bytes()
}

fn chan_pair(id: i64, pts: i32) -> (Vec<u8>, Vec<u8>) {
    (chan_field(id), pts.to_string().into_bytes())
}

/// Every peer, as whole buckets.
fn peer_pairs(cache: &PeerCache) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut buckets: Vec<Vec<u8>> = vec![Vec::new(); 1 << 16];
    for peer in cache.iter() {
        let b = bucket_of(peer.key());
        push_record(&mut buckets[usize::from(u16::from_be_bytes(b))], &peer);
    }
    buckets
        .into_iter()
        .enumerate()
        .filter(|(_, blob)| !blob.is_empty())
        .map(|(b, blob)| (bucket_field(u16::try_from(b).unwrap_or(u16::MAX).to_be_bytes()), blob))
        .collect()
}
