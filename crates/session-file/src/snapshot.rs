//! A read-only look at a session file: no owner lock, no write, no repair.
//!
//! Tools (`layer-session inspect` / `verify`) use it on a file that a running program owns. The
//! owner only ever appends whole records (fsync'ed before they count) or renames a complete new
//! file over the old one, so reading the bytes once gives a consistent state: the acknowledged
//! records, plus possibly a torn tail that the reader reports and leaves alone.

use std::path::Path;

use session_core::{SessionData, SessionError};

use crate::legacy::{self, LegacyFormat};
use crate::log::{self, ParseError, MAGIC};

/// The layout a session file was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoredFormat {
    /// Our log (header, snapshot, change records).
    Log,
    /// A layer-client 0.5 / ferogram file.
    Legacy(LegacyFormat),
}

/// What [`read_snapshot`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The session (every acknowledged change applied).
    pub data: SessionData,
    /// The file's layout.
    pub format: StoredFormat,
    /// Where a torn, never acknowledged last record starts (log files only). The owner cuts it
    /// off when it next opens the file.
    pub torn_at: Option<u64>,
    /// The size of the file in bytes when it was read.
    pub file_len: u64,
}

/// Reads the session file at `path` without taking the owner lock and without writing anything
/// (blocking: call it from `spawn_blocking` in async code). `Ok(None)` when the file is empty.
///
/// Damage is reported as [`SessionError::Corrupt`] naming the file (nothing is preserved or
/// changed: the file is not ours to touch); a newer format as
/// [`SessionError::UnsupportedVersion`].
pub fn read_snapshot(path: &Path) -> Result<Option<Snapshot>, SessionError> {
    let resource = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| SessionError::io(&resource, e))?;
    let file_len = bytes.len() as u64;
    if bytes.is_empty() {
        return Ok(None);
    }
    if bytes.starts_with(&MAGIC) || (bytes.len() < MAGIC.len() && MAGIC.starts_with(&bytes)) {
        return match log::parse(&bytes) {
            Ok(parsed) => {
                Ok(Some(Snapshot { data: parsed.data, format: StoredFormat::Log, torn_at: parsed.torn_at, file_len }))
            }
            Err(ParseError::Corrupt(reason)) => Err(SessionError::corrupt(resource, reason)),
            Err(ParseError::Other(e)) => Err(e),
        };
    }
    match legacy::decode(&bytes) {
        Ok(l) => Ok(Some(Snapshot { data: l.data, format: StoredFormat::Legacy(l.format), torn_at: None, file_len })),
        Err(e) => Err(SessionError::corrupt(resource, format!("neither a session log nor a layer/ferogram file: {e}"))),
    }
}
