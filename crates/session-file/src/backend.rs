//! `BinaryFileBackend`: the session log on disk and its write protocol.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use session_core::fs::{private_options, sync_dir, OwnerLock};
use session_core::{codec, BoxError, Change, SessionBackend, SessionData, SessionError};

use crate::failpoint::{Failpoints, Step};
use crate::legacy::{self, LegacyFormat};
use crate::log::{self, ParseError, MAGIC};

/// The change records may grow to this many times the snapshot before the log is compacted.
pub const COMPACT_FACTOR: u64 = 2;
/// ... plus this many bytes, so that small sessions are not rewritten every few changes.
pub const COMPACT_FLOOR: u64 = 64 * 1024;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The default session backend: one file, written as an append-only log.
///
/// See the [crate docs](crate) for the file format and what it promises. Every method runs its
/// file work on `tokio::task::spawn_blocking`. A change costs one append and one fdatasync.
///
/// The backend keeps no copy of the session: the caller (the store) holds one already, and a
/// second would double the memory of a million-peer session. The session read at `open` is
/// handed over by the first load; later loads read the file again, and a rewrite (compaction,
/// log out, the first write over a legacy file) writes the `full` session that
/// [`SessionBackend::persist`] is given.
pub struct BinaryFileBackend {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    dir: PathBuf,
    state: Mutex<State>,
    failpoints: Option<Arc<Failpoints>>,
    opened_legacy: Option<LegacyFormat>,
    _lock: OwnerLock,
}

struct State {
    /// The session read at open, until the first load takes it or a write makes it stale.
    opened: Option<SessionData>,
    stored: Stored,
    /// A write failed in a way that leaves the file's tail or its directory entry uncertain:
    /// the next write replaces the whole file.
    needs_rewrite: bool,
}

enum Stored {
    /// No file, or an empty one.
    Nothing,
    /// A layer/ferogram file, not yet rewritten; `backup` is where it was kept once we did.
    Legacy { format: LegacyFormat, backup: Option<PathBuf> },
    /// Our log, open for appending.
    Log { file: File, log_len: u64, snapshot_end: u64 },
}

impl fmt::Debug for BinaryFileBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BinaryFileBackend").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

impl BinaryFileBackend {
    /// Opens (or prepares to create) the session file at `path`, taking ownership of it.
    ///
    /// Fails with [`SessionError::Locked`] (naming the holder's pid) when another process or
    /// backend holds the file, [`SessionError::Corrupt`] (naming the preserved copy) when the
    /// file is damaged, [`SessionError::UnsupportedVersion`] when a newer build wrote it. A
    /// missing file is not an error: the session is empty until the first write creates it.
    /// A layer-client / ferogram file is read ([`crate::legacy`]) and kept beside the new file
    /// the first time it is rewritten.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self, SessionError> {
        Self::open_inner(path.into(), None).await
    }

    #[doc(hidden)]
    /// Opens with fault injection (tests of the write protocol only).
    pub async fn open_with_failpoints(
        path: impl Into<PathBuf>,
        failpoints: Arc<Failpoints>,
    ) -> Result<Self, SessionError> {
        Self::open_inner(path.into(), Some(failpoints)).await
    }

    async fn open_inner(path: PathBuf, failpoints: Option<Arc<Failpoints>>) -> Result<Self, SessionError> {
        let inner = tokio::task::spawn_blocking(move || open_blocking(path, failpoints))
            .await
            .map_err(|e| SessionError::Backend { backend: "file".into(), source: Box::new(e) })??;
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The session file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The layout of the file when it was opened, if it was a layer-client / ferogram file
    /// ([`crate::legacy`]). The first write replaces it with a log and keeps the old file at
    /// `<path>.v<N>.bak`.
    pub fn legacy_format(&self) -> Option<LegacyFormat> {
        self.inner.opened_legacy
    }

    async fn run<T, F>(&self, f: F) -> Result<T, BoxError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &mut State) -> Result<T, SessionError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let joined = tokio::task::spawn_blocking(move || {
            let mut state = inner.lock();
            f(&inner, &mut state)
        })
        .await;
        match joined {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Box::new(e)),
            Err(e) => Err(Box::new(SessionError::Backend { backend: "file".into(), source: Box::new(e) })),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| {
            // A panic in the middle of a write leaves the file's tail unknown: rewrite it.
            let mut state = poisoned.into_inner();
            state.needs_rewrite = true;
            state
        })
    }

    fn fail(&self, step: Step) -> io::Result<()> {
        match self.failpoints.as_ref().and_then(|f| f.check(step)) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn temp_path(&self) -> PathBuf {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!(".{}.tmp-{}-{n}", file_name(&self.path), std::process::id()))
    }

    /// Writes `bytes` as the whole new file: temp file, fsync, rename over, fsync of the
    /// directory.
    fn write_file(&self, state: &mut State, bytes: &[u8], snapshot_end: u64) -> Result<(), SessionError> {
        let tmp = self.temp_path();
        let before = |e: SessionError| {
            let _ = std::fs::remove_file(&tmp);
            e
        };
        let file = self.write_temp(&tmp, bytes).map_err(before)?;
        if let Stored::Legacy { format, backup: None } = state.stored {
            let backup = self.keep_legacy(format).map_err(before)?;
            state.stored = Stored::Legacy { format, backup: Some(backup) };
        }
        self.fail(Step::Rename)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| before(io_err(&self.path, e)))?;
        state.stored = Stored::Log { file, log_len: bytes.len() as u64, snapshot_end };
        // Until the directory is synced the rename may not survive power loss, and appends to
        // the new file would be lost with it: keep rewriting until a sync succeeds.
        state.needs_rewrite = true;
        self.fail(Step::DirSync).map_err(|e| io_err(&self.dir, e))?;
        sync_dir(&self.dir)?;
        state.needs_rewrite = false;
        Ok(())
    }

    fn write_temp(&self, tmp: &Path, bytes: &[u8]) -> Result<File, SessionError> {
        let mut file =
            private_options().read(true).write(true).create_new(true).open(tmp).map_err(|e| io_err(tmp, e))?;
        if let Some(f) = &self.failpoints {
            f.observe_temp(tmp);
        }
        if let Err(e) = self.fail(Step::TempWrite) {
            let _ = file.write_all(&bytes[..bytes.len() / 2]);
            return Err(io_err(tmp, e));
        }
        file.write_all(bytes).map_err(|e| io_err(tmp, e))?;
        self.fail(Step::TempSync).and_then(|()| file.sync_all()).map_err(|e| io_err(tmp, e))?;
        Ok(file)
    }

    /// Keeps the user's layer/ferogram file beside the new one: a hard link (or a copy where
    /// links are not supported) at `<path>.v<N>.bak`, never replacing an earlier backup.
    fn keep_legacy(&self, format: LegacyFormat) -> Result<PathBuf, SessionError> {
        let base = format!("{}.v{}.bak", file_name(&self.path), format.version());
        for n in 0u32.. {
            let name = if n == 0 { base.clone() } else { format!("{base}.{n}") };
            let backup = self.dir.join(name);
            if backup.exists() {
                continue;
            }
            match std::fs::hard_link(&self.path, &backup) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(_) => copy_private(&self.path, &backup).map_err(|e| io_err(&backup, e))?,
            }
            sync_dir(&self.dir)?;
            return Ok(backup);
        }
        Err(SessionError::invalid("session file", "no free name for the backup of the legacy file"))
    }

    fn save_data(&self, state: &mut State, data: SessionData, codec_bytes: Option<&[u8]>) -> Result<(), SessionError> {
        let encoded;
        let codec_bytes = match codec_bytes {
            Some(b) => b,
            None => {
                encoded = codec::encode(&data)?;
                &encoded
            }
        };
        let file = log::snapshot_file(codec_bytes);
        let snapshot_end = file.len() as u64;
        state.opened = None;
        drop(data);
        self.write_file(state, &file, snapshot_end)
    }

    /// Appends `changes`, or rewrites the whole file from `full` when a new file is due
    /// (first write, legacy file, compaction, log out, recovery from a failure). Without `full`,
    /// a due rewrite returns [`Persisted::NeedsFull`] and changes nothing.
    fn persist(
        &self,
        state: &mut State,
        changes: &[Change],
        full: Option<&SessionData>,
    ) -> Result<Persisted, SessionError> {
        if changes.is_empty() && !state.needs_rewrite {
            return Ok(Persisted::Done);
        }
        let rewrite = state.needs_rewrite || changes.iter().any(|c| matches!(c, Change::LogOut));
        if let (Stored::Log { file, log_len, snapshot_end }, false) = (&mut state.stored, rewrite) {
            let record = log::change_record(changes)?;
            let snapshot = *snapshot_end;
            let limit = COMPACT_FACTOR.saturating_mul(snapshot).saturating_add(COMPACT_FLOOR);
            // Past the limit: fall through to compaction.
            if log_len.saturating_sub(snapshot).saturating_add(record.len() as u64) <= limit {
                state.opened = None;
                let at = *log_len;
                return match append(self, file, &record, at) {
                    Ok(()) => {
                        *log_len += record.len() as u64;
                        Ok(Persisted::Done)
                    }
                    Err(e) => {
                        // Drop whatever part of the record reached the file, and replace the
                        // whole file on the next write: after a failed write or sync the file's
                        // cached pages cannot be trusted.
                        let _ = file.set_len(at);
                        state.needs_rewrite = true;
                        Err(io_err(&self.path, e))
                    }
                };
            }
        }
        let Some(full) = full else { return Ok(Persisted::NeedsFull) };
        state.opened = None;
        let result = codec::encode(full).and_then(|codec_bytes| {
            let file = log::snapshot_file(&codec_bytes);
            let snapshot_end = file.len() as u64;
            self.write_file(state, &file, snapshot_end)
        });
        if result.is_err() {
            // The file is behind the session: the next write replaces it, even if the caller
            // does not pass these changes again.
            state.needs_rewrite = true;
        }
        result.map(|()| Persisted::Done)
    }

    /// The stored session, read from the file.
    fn read_back(&self, state: &mut State) -> Result<Option<SessionData>, SessionError> {
        if let Some(data) = state.opened.take() {
            return Ok(Some(data));
        }
        if matches!(state.stored, Stored::Nothing) {
            return Ok(None);
        }
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&self.path, e)),
        };
        match &state.stored {
            Stored::Legacy { .. } => legacy::decode(&bytes).map(|s| Some(s.data)),
            _ => match log::parse(&bytes) {
                Ok(parsed) => Ok(Some(parsed.data)),
                Err(ParseError::Corrupt(reason)) => Err(corrupt(&self.path, &bytes, reason)),
                Err(ParseError::Other(e)) => Err(e),
            },
        }
    }

    fn delete(&self, state: &mut State) -> Result<(), SessionError> {
        if let Stored::Legacy { format, backup: None } = state.stored {
            let backup = self.keep_legacy(format)?;
            state.stored = Stored::Legacy { format, backup: Some(backup) };
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&self.path, e)),
        }
        state.stored = Stored::Nothing;
        state.opened = None;
        state.needs_rewrite = false;
        sync_dir(&self.dir)
    }
}

/// What [`Inner::persist`] did.
enum Persisted {
    Done,
    /// A whole new file is due and needs the full session.
    NeedsFull,
}

fn io_err(path: &Path, e: io::Error) -> SessionError {
    SessionError::io(path.display(), e)
}

fn append(inner: &Inner, file: &File, record: &[u8], at: u64) -> io::Result<()> {
    if let Err(e) = inner.fail(Step::Append) {
        let _ = write_at(file, &record[..record.len() / 2], at);
        return Err(e);
    }
    write_at(file, record, at)?;
    inner.fail(Step::AppendSync)?;
    file.sync_data()
}

#[cfg(unix)]
fn write_at(file: &File, buf: &[u8], at: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(buf, at)
}

#[cfg(not(unix))]
fn write_at(mut file: &File, buf: &[u8], at: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(at))?;
    file.write_all(buf)
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn copy_private(from: &Path, to: &Path) -> io::Result<()> {
    let mut src = File::open(from)?;
    let mut dst = private_options().write(true).create_new(true).open(to)?;
    io::copy(&mut src, &mut dst)?;
    dst.sync_all()
}

/// True for `.<name>.tmp-<pid>-<n>`: the temp files of this session, from any process.
fn is_temp_of(candidate: &str, name: &str) -> bool {
    let Some(rest) =
        candidate.strip_prefix('.').and_then(|c| c.strip_prefix(name)).and_then(|c| c.strip_prefix(".tmp-"))
    else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    rest.split_once('-').is_some_and(|(pid, n)| digits(pid) && digits(n))
}

fn remove_stray_temps(dir: &Path, name: &str) {
    // We hold the lock, so every temp file of this session belongs to a writer that died.
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if is_temp_of(&entry.file_name().to_string_lossy(), name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Keeps a copy of damaged bytes at `<path>.corrupt-<unix time>[-n]`.
fn preserve(path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let base = format!("{}.corrupt-{secs}", file_name(path));
    for n in 0u32.. {
        let name = if n == 0 { base.clone() } else { format!("{base}-{n}") };
        let copy = path.with_file_name(name);
        match private_options().write(true).create_new(true).open(&copy) {
            Ok(mut f) => {
                f.write_all(bytes)?;
                f.sync_all()?;
                if let Some(dir) = path.parent() {
                    let _ = sync_dir(dir);
                }
                return Ok(copy);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, "no free name for the preserved copy"))
}

fn corrupt(path: &Path, bytes: &[u8], reason: String) -> SessionError {
    let resource = path.display().to_string();
    match preserve(path, bytes) {
        Ok(copy) => SessionError::Corrupt { resource, reason, preserved_at: Some(copy) },
        Err(e) => SessionError::Corrupt {
            resource,
            reason: format!("{reason} (and a copy could not be preserved: {e}; the file was left as it is)"),
            preserved_at: None,
        },
    }
}

fn open_blocking(path: PathBuf, failpoints: Option<Arc<Failpoints>>) -> Result<Inner, SessionError> {
    let lock = OwnerLock::acquire(&path)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = file_name(&path);
    if name.is_empty() {
        return Err(SessionError::invalid("session file path", format!("{} names no file", path.display())));
    }
    remove_stray_temps(&dir, &name);
    let mut state = State { opened: None, stored: Stored::Nothing, needs_rewrite: false };
    let mut opened_legacy = None;
    let mut file = match std::fs::OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Inner { path, dir, state: Mutex::new(state), failpoints, opened_legacy, _lock: lock });
        }
        Err(e) => return Err(SessionError::io(path.display(), e)),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| SessionError::io(path.display(), e))?;
    if bytes.is_empty() {
        // Nothing to lose: the first write replaces it.
    } else if bytes.starts_with(&MAGIC) {
        let parsed = match log::parse(&bytes) {
            Ok(p) => p,
            Err(ParseError::Corrupt(reason)) => return Err(corrupt(&path, &bytes, reason)),
            Err(ParseError::Other(e)) => return Err(e),
        };
        if parsed.torn_at.is_some() {
            // The torn record was never acknowledged: cut it off so appends follow the last
            // good record. If that fails, the next write replaces the file instead.
            let cut = file.set_len(parsed.valid_len).and_then(|()| file.sync_data());
            state.needs_rewrite = cut.is_err();
        }
        state.opened = Some(parsed.data);
        state.stored = Stored::Log { file, log_len: parsed.valid_len, snapshot_end: parsed.snapshot_end };
    } else if bytes.len() < MAGIC.len() && MAGIC.starts_with(&bytes) {
        return Err(corrupt(&path, &bytes, format!("only {} bytes of a file header", bytes.len())));
    } else {
        match legacy::decode(&bytes) {
            Ok(session) => {
                state.opened = Some(session.data);
                state.stored = Stored::Legacy { format: session.format, backup: None };
                opened_legacy = Some(session.format);
            }
            Err(e) => {
                return Err(corrupt(
                    &path,
                    &bytes,
                    format!("not a session log, and not a layer-client/ferogram file either: {e}"),
                ))
            }
        }
    }
    Ok(Inner { path, dir, state: Mutex::new(state), failpoints, opened_legacy, _lock: lock })
}

#[async_trait]
impl SessionBackend for BinaryFileBackend {
    async fn load(&self) -> Result<Option<Vec<u8>>, BoxError> {
        self.run(|inner, state| {
            let data = match &state.opened {
                Some(d) => return codec::encode(d).map(Some),
                None => inner.read_back(state)?,
            };
            data.as_ref().map(codec::encode).transpose()
        })
        .await
    }

    async fn save(&self, data: &[u8]) -> Result<(), BoxError> {
        if data.is_empty() {
            return self.delete().await;
        }
        let decoded = codec::decode(data)?;
        let bytes = data.to_vec();
        self.run(move |inner, state| inner.save_data(state, decoded, Some(&bytes))).await
    }

    async fn delete(&self) -> Result<(), BoxError> {
        self.run(|inner, state| inner.delete(state)).await
    }

    fn name(&self) -> &str {
        "file"
    }

    async fn load_session(&self) -> Result<Option<SessionData>, BoxError> {
        self.run(|inner, state| inner.read_back(state)).await
    }

    async fn save_session(&self, data: &SessionData) -> Result<(), BoxError> {
        let data = data.clone();
        self.run(move |inner, state| inner.save_data(state, data, None)).await
    }

    async fn persist(&self, changes: &[Change], full: &SessionData) -> Result<(), BoxError> {
        let owned = changes.to_vec();
        if let Persisted::Done = self.run(move |inner, state| inner.persist(state, &owned, None)).await? {
            return Ok(());
        }
        // A whole new file is due: only now is the full session copied for the blocking pool.
        let owned = changes.to_vec();
        let full = full.clone();
        self.run(move |inner, state| inner.persist(state, &owned, Some(&full))).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised_exactly() {
        assert!(is_temp_of(".a.session.tmp-12-0", "a.session"));
        assert!(!is_temp_of(".a.session.tmp-12-0", "a"));
        assert!(!is_temp_of(".a.tmp-x.tmp-1-2", "a"));
        assert!(!is_temp_of(".a.session.tmp-12-", "a.session"));
        assert!(!is_temp_of("a.session.tmp-1-2", "a.session"));
    }
}
