//! `verify`: a full integrity check of a source (read without the owner lock, nothing written).

use session_core::{codec, DcFlags, SessionData};

use crate::read::Loaded;

/// The outcome of [`check`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    /// Problems: `verify` exits non-zero when there is any.
    pub problems: Vec<String>,
    /// Remarks that are not problems (a session that is not logged in).
    pub notes: Vec<String>,
}

/// Checks a session that was read (and decoded, which already checked every checksum and
/// length the format has) for consistency.
pub fn check(loaded: &Loaded) -> Findings {
    // A dropped informational value leaves the session whole: a note, not a problem.
    let notes = loaded.notes.iter().chain(&loaded.dropped).cloned().collect();
    let mut f = Findings { problems: loaded.warnings.clone(), notes };
    let data: &SessionData = &loaded.data;
    if data.home_dc == 0 {
        f.notes.push("no home DC chosen (a fresh session)".into());
    } else if data.home().is_none() {
        f.problems.push(format!("home DC {} has no DC entry (no address to connect to)", data.home_dc));
    } else if !data.has_home_key() {
        f.notes.push(format!("home DC {} has no auth key (not logged in)", data.home_dc));
    }
    for (key, o) in &data.dcs {
        if key.id != o.id || key.flags != o.flags.identity() {
            f.problems.push(format!("DC {} is stored under the wrong key", o.id));
        }
        if o.flags.contains(DcFlags::IPV6) != o.addr.is_ipv6() {
            f.problems.push(format!("DC {}: the IPv6 flag disagrees with the address {}", o.id, o.addr));
        }
        if o.addr.port() == 0 {
            f.problems.push(format!("DC {}: port 0", o.id));
        }
        if o.id <= 0 {
            f.problems.push(format!("DC id {} is not a DC", o.id));
        }
        if o.auth_key.as_ref().is_some_and(session_core::AuthKey::is_zero) {
            f.problems.push(format!("DC {}: the auth key is all zeros", o.id));
        }
    }
    if let Some(user) = data.user {
        if user.id <= 0 {
            f.problems.push(format!("logged-in user id {} is not a user id", user.id));
        }
    }
    let bad_peers = data.peers.iter().filter(|p| p.id <= 0).count();
    if bad_peers > 0 {
        f.problems.push(format!("{bad_peers} cached peers have an id that is not positive"));
    }
    let bad_channels = data.updates.channels.keys().filter(|id| **id <= 0).count();
    if bad_channels > 0 {
        f.problems.push(format!("{bad_channels} channel pts entries have an id that is not positive"));
    }
    match codec::encode(data).and_then(|b| codec::decode(&b)) {
        Ok(back) if &back == data => {}
        Ok(_) => f.problems.push("the session does not survive a round trip through the codec".into()),
        Err(e) => f.problems.push(format!("the session cannot be re-encoded: {e}")),
    }
    f
}
