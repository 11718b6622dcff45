//! What a conversion drops: the source session compared with what the destination reads back.
//!
//! Server salts and time offsets are not compared: they are refreshed by the server on the
//! next connection. A peer kind is lost only when a precise kind (bot, broadcast, megagroup,
//! gigagroup, community) comes back as its generic one; usernames compare case-insensitively
//! (Telethon, Pyrogram and GramJS store them in lowercase).

use session_core::{DcFlags, DcOption, PeerKind, SessionData};

fn family(o: &DcOption) -> String {
    let mut s = String::from(if o.flags.contains(DcFlags::IPV6) { "IPv6" } else { "IPv4" });
    if o.flags.contains(DcFlags::MEDIA_ONLY) {
        s.push_str(" media");
    }
    if o.flags.contains(DcFlags::CDN) {
        s.push_str(" CDN");
    }
    s
}

fn generic(kind: PeerKind) -> PeerKind {
    match kind {
        PeerKind::Bot | PeerKind::Community => PeerKind::User,
        PeerKind::Broadcast | PeerKind::Megagroup | PeerKind::Gigagroup => PeerKind::Channel,
        other => other,
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Everything `before` holds that `after` does not, one phrase per item (empty: nothing lost).
pub fn dropped(before: &SessionData, after: &SessionData) -> Vec<String> {
    let mut out = Vec::new();
    if before.home_dc != after.home_dc {
        out.push(format!("home DC {} (read back as {})", before.home_dc, after.home_dc));
    }
    let mut dcs_missing = Vec::new();
    for (key, o) in &before.dcs {
        match after.dcs.get(key) {
            None => dcs_missing.push(format!("DC {} {}", o.id, family(o))),
            Some(a) => {
                if a.addr != o.addr {
                    out.push(format!("DC {} address {} (read back as {})", o.id, o.addr, a.addr));
                }
                if o.auth_key.is_some() && a.auth_key != o.auth_key {
                    out.push(format!("auth key of DC {} {}", o.id, family(o)));
                }
                let significant = DcFlags(DcFlags::TCPO_ONLY.0 | DcFlags::STATIC.0 | DcFlags::TEST.0);
                let lost = DcFlags(o.flags.0 & significant.0 & !a.flags.0);
                if lost.0 != 0 {
                    out.push(format!("flags {:#x} of DC {} {}", lost.0, o.id, family(o)));
                }
            }
        }
    }
    if !dcs_missing.is_empty() {
        out.push(format!("{} ({})", plural(dcs_missing.len(), "DC option"), dcs_missing.join(", ")));
    }
    if let Some(user) = before.user {
        match after.user {
            None => out.push(format!("logged-in user id {}", user.id)),
            Some(a) => {
                if a.id != user.id {
                    out.push(format!("logged-in user id {} (read back as {})", user.id, a.id));
                }
                if user.bot && !a.bot {
                    out.push("bot flag".into());
                }
            }
        }
    }
    if before.test_mode && !after.test_mode {
        out.push("test mode".into());
    }
    if let Some(api_id) = before.api_id {
        if after.api_id != Some(api_id) {
            out.push(format!("api_id {api_id}"));
        }
    }
    let (b, a) = (&before.updates, &after.updates);
    if (b.pts, b.qts, b.date, b.seq) != (a.pts, a.qts, a.date, a.seq) {
        out.push(format!("update state (pts {}, qts {}, date {}, seq {})", b.pts, b.qts, b.date, b.seq));
    }
    let channels = b.channels.iter().filter(|(id, pts)| a.channels.get(id) != Some(pts)).count();
    if channels > 0 {
        out.push(format!("pts of {}", plural(channels, "channel")));
    }
    let (mut missing, mut hash, mut kind, mut names, mut phone, mut min) = (0, 0, 0, 0, 0, 0);
    for p in before.peers.iter() {
        let Some(q) = after.peers.get(p.key()) else {
            missing += 1;
            continue;
        };
        if q.access_hash != p.access_hash {
            hash += 1;
        }
        if q.kind != p.kind && generic(p.kind) != p.kind && q.kind == generic(p.kind) {
            kind += 1;
        }
        let lower = |v: &[String]| v.iter().map(|s| s.to_lowercase()).collect::<Vec<_>>();
        let after_names = lower(&q.usernames);
        if lower(&p.usernames).iter().any(|n| !after_names.contains(n)) {
            names += 1;
        }
        if p.phone.is_some() && q.phone != p.phone {
            phone += 1;
        }
        if p.min != q.min {
            min += 1;
        }
    }
    let peer_items = [
        (missing, "{} (cached)"),
        (hash, "access hashes of {}"),
        (kind, "the subtype (bot, broadcast, megagroup, gigagroup, community) of {}"),
        (names, "usernames of {}"),
        (phone, "phone numbers of {}"),
        (min, "the \"min\" flag of {}"),
    ];
    for (n, what) in peer_items {
        if n > 0 {
            out.push(what.replace("{}", &plural(n, "peer")));
        }
    }
    let contexts = before.min_contexts.iter().filter(|c| !after.min_contexts.contains(c)).count();
    if contexts > 0 {
        out.push(plural(contexts, "min-peer context"));
    }
    if before.future_auth_token.is_some() && after.future_auth_token != before.future_auth_token {
        out.push("future auth token".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use session_core::{AuthKey, Peer, SelfUser};

    use super::*;

    fn sample() -> SessionData {
        let mut d = SessionData::default();
        d.home_dc = 2;
        let addr: SocketAddr = "149.154.167.51:443".parse().expect("addr");
        let o = DcOption::new(2, addr).with_auth_key(Some(AuthKey::new([7; 256])));
        d.dcs.insert(o.key(), o);
        d.user = Some(SelfUser::new(5, true));
        d.peers = [Peer::new(1, PeerKind::Bot, 9), Peer::new(2, PeerKind::Channel, 8)].into_iter().collect();
        d
    }

    #[test]
    fn identical_sessions_drop_nothing() {
        assert!(dropped(&sample(), &sample()).is_empty());
    }

    #[test]
    fn a_generic_kind_is_a_loss_a_more_precise_one_is_not() {
        let before = sample();
        let mut after = sample();
        after.peers.insert(Peer::new(1, PeerKind::User, 9));
        after.peers.insert(Peer::new(2, PeerKind::Broadcast, 8));
        let d = dropped(&before, &after);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].contains("subtype") && d[0].contains("1 peer"), "{d:?}");
    }

    #[test]
    fn keys_users_and_peers_are_named() {
        let before = sample();
        let mut after = sample();
        after.dcs.values_mut().for_each(|o| o.auth_key = None);
        after.user = None;
        after.peers = session_core::PeerCache::new();
        let d = dropped(&before, &after).join("; ");
        assert!(d.contains("auth key of DC 2"), "{d}");
        assert!(d.contains("logged-in user id 5"), "{d}");
        assert!(d.contains("2 peers (cached)"), "{d}");
    }
}
