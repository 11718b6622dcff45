//! A read-only look at a session file: no owner lock, no write, no repair.
//!
//! Tools (`layer-session inspect` / `verify`) use it on a file that a running program owns. The
//! owner only ever appends whole records (fsync'ed before they count) or renames a complete new
//! file over the old one, so reading the bytes once gives a consistent state: the acknowledged
//! records, plus possibly a torn tail that the reader reports and leaves alone.
//!
//! The owner's high-water mark ([`crate::mark`]) is read from the lock file before the log: it
//! is written only after the data it covers, so read first it never runs ahead of the bytes read
//! after it, and a log shorter than it lost acknowledged records.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use session_core::fs::{check_regular, check_regular_file, lock_path, open_nonblocking, resolve};
use session_core::{KeyId, Keyring, SessionData, SessionError};

use crate::backend::MAX_FILE_LEN;
use crate::legacy::{self, LegacyFormat};
use crate::log::{self, ParseError, TornKind, MAGIC};
use crate::mark::Mark;

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
    /// How many bytes the torn tail holds, and what is wrong with it (with `torn_at`).
    pub torn: Option<(u64, TornKind)>,
    /// Torn tails an owner cut off this file earlier and kept (`<path>.torn-<digest>`), newest
    /// first.
    pub torn_copies: Vec<PathBuf>,
    /// How far the owner had acknowledged the log (its high-water mark), when the lock file
    /// records one for this generation of the file.
    pub acknowledged_len: Option<u64>,
    /// The key id a sealed log is sealed with (`None`: a plain file).
    pub sealed_with: Option<KeyId>,
}

/// Reads the session file at `path` without taking the owner lock and without writing anything
/// (blocking: call it from `spawn_blocking` in async code). `Ok(None)` when there is no file.
///
/// Damage is reported as [`SessionError::Corrupt`] naming the file (nothing is preserved or
/// changed: the file is not ours to touch); so is an empty file, and a log shorter than its
/// owner's high-water mark. A newer format is [`SessionError::UnsupportedVersion`]; a path that
/// is not a regular file, or a file over [`MAX_FILE_LEN`], is [`SessionError::Invalid`].
///
/// A sealed file is [`SessionError::Sealed`]: read it with [`read_snapshot_with_key`].
pub fn read_snapshot(path: &Path) -> Result<Option<Snapshot>, SessionError> {
    read(path, None)
}

/// [`read_snapshot`] of a file that may be sealed, opened with `keys`
/// ([`SessionError::WrongKey`] when they do not hold its key). A plain file reads as with
/// [`read_snapshot`]. Blocking, and slow when a passphrase's key is derived.
pub fn read_snapshot_with_key(path: &Path, keys: &Keyring) -> Result<Option<Snapshot>, SessionError> {
    read(path, Some(keys))
}

fn read(path: &Path, keys: Option<&Keyring>) -> Result<Option<Snapshot>, SessionError> {
    let resource = path.display().to_string();
    check_regular(path)?;
    let real = resolve(path).map_err(|e| SessionError::io(&resource, e))?;
    // Before the log: see the module docs.
    let mark = read_mark(&lock_path(&real));
    let file = match open_nonblocking(&real, false) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SessionError::io(&resource, e)),
    };
    let meta = check_regular_file(&file, path)?;
    if meta.len() > MAX_FILE_LEN {
        return Err(SessionError::invalid(
            "session file",
            format!("{resource} is {} bytes, over the {MAX_FILE_LEN}-byte limit of a session file", meta.len()),
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(meta.len()).read_to_end(&mut bytes).map_err(|e| SessionError::io(&resource, e))?;
    let file_len = bytes.len() as u64;
    if bytes.is_empty() {
        return Err(SessionError::corrupt(
            resource,
            "the file is empty (0 bytes): a session file is never written empty",
        ));
    }
    if bytes.starts_with(&MAGIC) || (bytes.len() < MAGIC.len() && MAGIC.starts_with(&bytes)) {
        let bytes = std::sync::Arc::new(bytes);
        let parsed = match log::parse_shared(&bytes, keys, &resource) {
            Ok(parsed) => parsed,
            Err(ParseError::Corrupt(reason)) => return Err(SessionError::corrupt(resource, reason)),
            Err(ParseError::Other(e)) => return Err(e),
        };
        let acknowledged_len = match mark {
            Some(m) => {
                m.check(&parsed).map_err(|reason| SessionError::corrupt(&resource, reason))?;
                (m.snapshot_end == parsed.snapshot_end && m.snapshot_crc == parsed.snapshot_crc).then_some(m.len)
            }
            None => None,
        };
        let sealed_with = parsed.sealed.as_ref().map(log::FileSeal::key_id);
        return Ok(Some(Snapshot {
            sealed_with,
            data: parsed.data,
            format: StoredFormat::Log,
            torn_at: parsed.torn.map(|t| t.at),
            file_len,
            torn: parsed.torn.map(|t| (t.len, t.kind)),
            torn_copies: crate::copies::torn_copies(&real),
            acknowledged_len,
        }));
    }
    match legacy::decode(&bytes) {
        Ok(l) => Ok(Some(Snapshot {
            data: l.data,
            format: StoredFormat::Legacy(l.format),
            torn_at: None,
            file_len,
            torn: None,
            torn_copies: Vec::new(),
            acknowledged_len: None,
            sealed_with: None,
        })),
        Err(e) => Err(SessionError::corrupt(resource, format!("neither a session log nor a layer/ferogram file: {e}"))),
    }
}

/// The high-water mark in a lock file, if it holds one (read without taking the lock).
fn read_mark(lock: &Path) -> Option<Mark> {
    let file = File::open(lock).ok()?;
    let mut text = String::new();
    file.take(4096).read_to_string(&mut text).ok()?;
    // The pid line, then the note.
    Mark::decode(text.split('\n').nth(1)?)
}
