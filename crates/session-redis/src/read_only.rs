//! Reading a session without owning it ([`RedisOptions::read_session`]): for tools
//! (`layer-session inspect`, `verify`) that look at a session while its owner runs.
//!
//! Reading never uses the session's auth keys against Telegram, so it needs no lease; and
//! because it takes none, it sends nothing that changes the server: no lease key, no script
//! loaded (a backend's connection loads its write scripts; this one has its own connection that
//! does not), no rewrite of a plain session into a sealed one. The session is one hash, read by
//! one `HGETALL`: a single command, so a concurrent write (one script, or a staged hash renamed
//! over it) is seen whole or not at all. Connecting and the read together are bounded by the
//! call timeout.

use redis::AsyncConnectionConfig;
use session_core::{SessionError, SessionSnapshot};

use crate::conn::{Conn, Failure};
use crate::keys::{Keys, DEFAULT_KEY_PREFIX};
use crate::reader::{self, Fields};
use crate::seal::{self, blocking, Sealer};
use crate::RedisOptions;

impl RedisOptions {
    /// Reads session [`RedisOptions::session`] under these options' key prefix at `url` without
    /// taking its lease and without writing anything: its owner keeps running undisturbed.
    /// `Ok(None)` when no such session is stored.
    ///
    /// With [`RedisOptions::key`], a sealed session is opened with those keys
    /// ([`SessionError::WrongKey`] when they lack its key); without, a sealed one is
    /// [`SessionError::Sealed`]. A plain session is read as it is. A server that keeps nothing on
    /// disk is not refused (nothing is written to it). The lease options are not used.
    pub async fn read_session(&self, url: &str) -> Result<Option<SessionSnapshot>, SessionError> {
        // Parses the URL and gives the redacted form and the error mapping; its own connection
        // (which loads the write scripts) is never opened.
        let conn = Conn::new(url, self.call_timeout)?;
        let client = redis::Client::open(url)
            .map_err(|_| SessionError::invalid("Redis URL", format!("{} is not a Redis URL", conn.url.shown)))?;
        let prefix = self.key_prefix.as_deref().unwrap_or(DEFAULT_KEY_PREFIX).to_owned();
        let keys = Keys::new(&prefix, &self.session)?;
        let resource = format!("{} session {:?}", conn.url.shown, self.session);
        let timeout = self.call_timeout;
        let read = async {
            let config =
                AsyncConnectionConfig::new().set_connection_timeout(Some(timeout)).set_response_timeout(Some(timeout));
            let mut c = client.get_multiplexed_async_connection_with_config(&config).await?;
            redis::cmd("HGETALL").arg(&keys.session).query_async::<Fields>(&mut c).await
        };
        let fields = match tokio::time::timeout(timeout, read).await {
            Ok(Ok(fields)) => fields,
            Ok(Err(e)) => return Err(conn.map(Failure::Redis(e))),
            Err(_) => return Err(conn.map(Failure::Timeout(timeout))),
        };
        let (data, sealed_with) = match reader::seal_of(&fields, &resource)? {
            None => (reader::decode(&fields, None, &resource)?, None),
            Some(marker) => {
                let Some(keyring) = self.keys.clone() else {
                    return Err(SessionError::Sealed { resource, key_id: Some(marker.key_id) });
                };
                let name = self.session.clone();
                // A passphrase's key is derived here (Argon2id), and a large session opened
                // value by value: off the runtime.
                let data = blocking(move || {
                    let key = seal::opening_key(&keyring, &marker, &resource)?;
                    let sealer = Sealer::new(key, &prefix, &name, &resource);
                    reader::decode(&fields, Some(&sealer), &resource)
                })
                .await?;
                (data, Some(marker.key_id))
            }
        };
        Ok(data.map(|data| SessionSnapshot::new(data, sealed_with)))
    }
}
