//! Session backends: where a [`Client`](crate::Client) keeps its session.
//!
//! Every backend implements [`SessionBackend`] from `session-core`; pass any of them (or your
//! own) to [`ClientBuilder::session`](crate::ClientBuilder::session). Users who need only a
//! backend (to convert or inspect sessions) can depend on its crate alone.
//!
//! | backend | feature | crate |
//! | --- | --- | --- |
//! | [`InMemoryBackend`] | default | `session-core` |
//! | [`StringSessionBackend`] | default | `session-string` |

use std::path::PathBuf;
use std::sync::Arc;

pub use session_core::{InMemoryBackend, SessionBackend};
pub use session_string::StringSessionBackend;

use crate::error::ClientError;

/// Opens the backend a session path selects: `.db` is SQLite, anything else the binary file.
pub(crate) async fn open_path(path: PathBuf) -> Result<Arc<dyn SessionBackend>, ClientError> {
    Err(ClientError::Config(format!("no file backend is available yet for {}", path.display())))
}

/// A string-backed session.
///
/// A string that cannot be read is not an error here: the backend reports it from `load`, so
/// the store refuses to open and the client never starts a new login over it.
pub(crate) fn open_string(session: &str) -> Result<Arc<dyn SessionBackend>, ClientError> {
    Ok(Arc::new(StringSessionBackend::new(session)))
}

/// Our full string form of a session.
pub(crate) fn encode_string(data: &session_core::SessionData) -> Result<String, ClientError> {
    Ok(session_string::encode_full(data)?)
}
