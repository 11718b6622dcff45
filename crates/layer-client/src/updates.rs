//! [`Updates`]: grammers' update stream with its state kept in the session.
//!
//! grammers advances pts/qts/date/seq (and each channel's pts) in memory as it hands updates
//! out, and writes them to the session only when the stream starts or when
//! `sync_update_state` is called. Without that call a restart catches up from the login-time
//! state: updates are missed or replayed. [`Updates::next`] makes the call after every update it
//! hands out; the store keeps the state in memory and writes it under its
//! [`FlushPolicy`](session_core::FlushPolicy), so after a crash the stored state is at most one
//! flush interval behind the last update handed out, and after
//! [`ShutdownHandle::shutdown`](crate::ShutdownHandle::shutdown) it is exact.

use std::fmt;
use std::sync::Arc;

use grammers_client::client::UpdateStream;
use grammers_client::tl;
use grammers_client::update::Update;
use grammers_session::updates::State;
use session_core::SessionError;

use crate::error::ClientError;
use crate::health::Health;

/// The updates of a [`Client`](crate::Client), from [`Client::stream_updates`](crate::Client::stream_updates).
///
/// Each update returned by [`next`](Self::next) is counted as handled: its pts/qts/seq are
/// recorded in the session before the next one is fetched.
pub struct Updates {
    stream: UpdateStream,
    health: Arc<Health>,
}

impl fmt::Debug for Updates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Updates").finish_non_exhaustive()
    }
}

impl Updates {
    pub(crate) fn new(stream: UpdateStream, health: Arc<Health>) -> Self {
        Self { stream, health }
    }

    /// Waits for the next update. Gaps are filled by grammers (`updates.getDifference`).
    ///
    /// Fails with [`ClientError::Session`] when the update state could not be recorded; the
    /// update is then not handed out, and the next call records the state again.
    pub async fn next(&mut self) -> Result<Update, ClientError> {
        self.health.take()?;
        let update = self.stream.next().await?;
        self.sync().await?;
        Ok(update)
    }

    /// [`next`](Self::next) for the raw TL update, with grammers' update state and peers.
    pub async fn next_raw(
        &mut self,
    ) -> Result<(tl::enums::Update, State, grammers_client::peer::PeerMap), ClientError> {
        self.health.take()?;
        let update = self.stream.next_raw().await?;
        self.sync().await?;
        Ok(update)
    }

    /// Records the current update state in the session now (it is written under the store's
    /// flush policy; call [`Client::flush`](crate::Client::flush) to write it at once).
    pub async fn sync(&self) -> Result<(), ClientError> {
        self.stream
            .sync_update_state()
            .await
            .map_err(|e| ClientError::Session(SessionError::from_boxed(e, "update state")))
    }
}
