//! [`RedisOptions::list_sessions`]: the sessions under a key prefix, found by `SCAN` (never
//! `KEYS`, which blocks the server), with who holds each one's lease and for how long by the
//! server's clock. Reads only: takes no lease and writes nothing.

use std::time::Duration;

use session_core::{LeaseHolder, SessionError};

use crate::conn::Conn;
use crate::keys::{Keys, DEFAULT_KEY_PREFIX};
use crate::RedisOptions;

/// One session found on a Redis server by [`RedisOptions::list_sessions`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisSessionInfo {
    /// The session's name.
    pub name: String,
    /// Whether a session is stored under the name (its lease may outlive a deleted session).
    pub stored: bool,
    /// Who holds the session's lease, when one is held (even if expired: see `expires_in`).
    pub holder: Option<LeaseHolder>,
    /// How long the holder's lease has left by the server's clock (`Some(ZERO)`: expired).
    pub expires_in: Option<Duration>,
}

/// `s` with the glob characters of `SCAN MATCH` escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl RedisOptions {
    /// The sessions at `url` under these options' key prefix, by name, with their lease. Each
    /// call to the server is bounded by the call timeout.
    pub async fn list_sessions(&self, url: &str) -> Result<Vec<RedisSessionInfo>, SessionError> {
        let conn = Conn::new(url, self.call_timeout)?;
        let prefix = self.key_prefix.as_deref().unwrap_or(DEFAULT_KEY_PREFIX).to_owned();
        let pattern = format!("{}{{*}}:*", glob_escape(&prefix));
        let mut names = std::collections::BTreeSet::new();
        let mut cursor = 0u64;
        loop {
            let pattern = pattern.clone();
            let (next, keys): (u64, Vec<String>) = conn
                .run(|mut c| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            for key in keys {
                let Some(rest) = key.strip_prefix(prefix.as_str()).and_then(|r| r.strip_prefix('{')) else { continue };
                if let Some((name, suffix)) = rest.rsplit_once("}:") {
                    if matches!(suffix, "s" | "lease") && !name.contains(['{', '}']) {
                        names.insert(name.to_owned());
                    }
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let keys = Keys::new(&prefix, &name)?;
            let (stored, holder, expires, time): (bool, Option<String>, Option<u64>, (u64, u64)) = conn
                .run(|mut c| async move {
                    redis::pipe()
                        .exists(&keys.session)
                        .hget(&keys.lease, "holder")
                        .hget(&keys.lease, "expires")
                        .cmd("TIME")
                        .query_async(&mut c)
                        .await
                })
                .await?;
            let holder = holder.as_deref().filter(|h| !h.is_empty()).and_then(LeaseHolder::decode);
            let now_ms = time.0.saturating_mul(1000).saturating_add(time.1 / 1000);
            let expires_in = match (&holder, expires) {
                (Some(_), Some(at)) => Some(Duration::from_millis(at.saturating_sub(now_ms))),
                _ => None,
            };
            out.push(RedisSessionInfo { name, stored, holder, expires_in });
        }
        Ok(out)
    }
}
