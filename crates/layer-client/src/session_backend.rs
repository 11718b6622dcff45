//! Session backends: where a [`Client`](crate::Client) keeps its session.
//!
//! Every backend implements [`SessionBackend`] from `session-core`; pass any of them (or your
//! own) to [`ClientBuilder::session`](crate::ClientBuilder::session). Users who need only a
//! backend (to convert or inspect sessions) can depend on its crate alone.
//!
//! | backend | feature | crate |
//! | --- | --- | --- |
//! | [`InMemoryBackend`] | default | `session-core` |

use std::path::PathBuf;
use std::sync::Arc;

pub use session_core::{InMemoryBackend, SessionBackend};

use crate::error::ClientError;

/// Opens the backend a session path selects: `.db` is SQLite, anything else the binary file.
pub(crate) async fn open_path(path: PathBuf) -> Result<Arc<dyn SessionBackend>, ClientError> {
    Err(ClientError::Config(format!("no file backend is available yet for {}", path.display())))
}

/// A string-backed session.
pub(crate) fn open_string(_session: &str) -> Result<Arc<dyn SessionBackend>, ClientError> {
    Err(ClientError::Config("string sessions are not available yet".into()))
}

/// Our full string form of a session.
pub(crate) fn encode_string(_data: &session_core::SessionData) -> Result<String, ClientError> {
    Err(ClientError::Config("string sessions are not available yet".into()))
}
