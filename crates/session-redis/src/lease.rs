//! [`RedisLeases`]: the lease contract of `session_core::lease` on Redis, one script per
//! operation, timed by the server's clock.

use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use session_core::{async_trait, LeaseGrant, LeaseHolder, LeaseStore, SessionError};
use tracing::Instrument;

use crate::conn::Conn;
use crate::keys::{Keys, DEFAULT_KEY_PREFIX};
use crate::scripts::{ACQUIRE, RELEASE, RENEW};
use crate::RedisOptions;

/// The lease of one Redis session (`PREFIX{NAME}:lease`). [`RedisBackend`](crate::RedisBackend)
/// takes and keeps it by itself; this handle is for tools and tests that work with the lease
/// alone (and for [`session_testkit::lease`]-style checks).
///
/// The hash holds the fencing `token` (incremented by every new owner, never reset: the key has
/// no expiry and `delete` keeps it), the `holder` (empty when released) and when the lease
/// `expires`, in milliseconds of the server's `TIME`.
#[derive(Clone)]
pub struct RedisLeases {
    conn: Arc<Conn>,
    key: String,
    resource: String,
}

impl std::fmt::Debug for RedisLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLeases").field("resource", &self.resource).finish()
    }
}

impl RedisLeases {
    /// A handle on the lease of session `name` at `url` (key prefix and timeout from `options`),
    /// on a connection of its own. Connects lazily: an unreachable server shows in the first
    /// call.
    pub fn new(url: &str, name: &str, options: &RedisOptions) -> Result<RedisLeases, SessionError> {
        let conn = Arc::new(Conn::new(url, options.call_timeout)?);
        let keys = Keys::new(options.key_prefix.as_deref().unwrap_or(DEFAULT_KEY_PREFIX), name)?;
        Ok(RedisLeases::on(conn, &keys, name))
    }

    pub(crate) fn on(conn: Arc<Conn>, keys: &Keys, name: &str) -> RedisLeases {
        let resource = format!("{} session {name:?}", conn.url.shown);
        RedisLeases { conn, key: keys.lease.clone(), resource }
    }

    fn ms(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    fn lost(&self, token: u64, what: &str) -> SessionError {
        SessionError::LeaseLost {
            resource: self.resource.clone(),
            reason: format!("{what}: token {token} is no longer the holder's (another owner took the session over, or it was released)"),
        }
    }
}

#[async_trait]
impl LeaseStore for RedisLeases {
    fn resource(&self) -> String {
        self.resource.clone()
    }

    async fn acquire(&self, holder: &LeaseHolder, ttl: Duration) -> Result<LeaseGrant, SessionError> {
        let span = tracing::debug_span!("lease", backend = "redis", op = "acquire", url = %self.conn.url.shown);
        let key = self.key.clone();
        let (who, ms) = (holder.encode(), Self::ms(ttl));
        let reply: Vec<Value> = self
            .conn
            .run(|mut c| async move { ACQUIRE.key(key).arg(who).arg(ms).invoke_async(&mut c).await })
            .instrument(span)
            .await?;
        let malformed = || SessionError::Backend {
            backend: "redis".to_owned(),
            source: format!("{}: unexpected answer to the lease script", self.resource).into(),
        };
        let int = |v: &Value| match v {
            Value::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        };
        match reply.as_slice() {
            [flag, token, left] if int(flag) == Some(1) => {
                let token = int(token).ok_or_else(malformed)?;
                Ok(LeaseGrant { token, ttl: Duration::from_millis(int(left).ok_or_else(malformed)?) })
            }
            [_, Value::BulkString(who), left] => {
                let holder = std::str::from_utf8(who).ok().and_then(LeaseHolder::decode);
                Err(SessionError::Locked {
                    resource: self.resource.clone(),
                    pid: None,
                    holder,
                    expires_in: int(left).map(Duration::from_millis),
                })
            }
            _ => Err(malformed()),
        }
    }

    async fn renew(&self, token: u64, ttl: Duration) -> Result<LeaseGrant, SessionError> {
        let span = tracing::debug_span!("lease", backend = "redis", op = "renew", url = %self.conn.url.shown);
        let key = self.key.clone();
        let ms = Self::ms(ttl);
        let renewed: i64 = self
            .conn
            .run(|mut c| async move { RENEW.key(key).arg(token).arg(ms).invoke_async(&mut c).await })
            .instrument(span)
            .await?;
        if renewed == 1 {
            Ok(LeaseGrant { token, ttl })
        } else {
            Err(self.lost(token, "renewal refused"))
        }
    }

    async fn release(&self, token: u64) -> Result<(), SessionError> {
        let span = tracing::debug_span!("lease", backend = "redis", op = "release", url = %self.conn.url.shown);
        let key = self.key.clone();
        let _: i64 = self
            .conn
            .run(|mut c| async move { RELEASE.key(key).arg(token).invoke_async(&mut c).await })
            .instrument(span)
            .await?;
        Ok(())
    }
}
