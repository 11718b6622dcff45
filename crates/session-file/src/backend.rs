//! `BinaryFileBackend`: the session log on disk and its write protocol.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use session_core::fs::{
    check_regular, check_regular_file, make_private, open_nonblocking, private_options, sync_dir, write_at, OwnerLock,
};
use session_core::{codec, BoxError, Change, KeyId, Keyring, SessionBackend, SessionData, SessionError};

use crate::copies::{self, Kind};
use crate::failpoint::{Failpoints, Step};
use crate::legacy::{self, LegacyFormat};
use crate::log::{self, FileSeal, ParseError, TornKind, MAGIC};
use crate::mark::Mark;
use crate::trace::{micros, timed};
use tracing::field::Empty;
use tracing::Span;

/// The change records may grow to this many times the snapshot before the log is compacted.
pub const COMPACT_FACTOR: u64 = 2;
/// ... plus this many bytes, so that small sessions are not rewritten every few changes.
pub const COMPACT_FLOOR: u64 = 64 * 1024;

/// The largest session file this backend reads: far above any session it writes (a million
/// peers take a few tens of MiB), and a bound on the memory a hostile or damaged file (a huge
/// sparse file) can make it allocate.
pub const MAX_FILE_LEN: u64 = 1 << 30;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A torn append that [`BinaryFileBackend::open`] cut off the end of the log: never
/// acknowledged, kept in a copy, and reported (also as a `tracing` warning).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CutTail {
    /// Where the cut record started (the new length of the file).
    pub at: u64,
    /// How many bytes were cut.
    pub len: u64,
    /// What was wrong with them.
    pub kind: TornKind,
    /// Where the cut bytes were kept (`<path>.torn-<digest>`, 0600).
    pub kept_at: PathBuf,
}

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
    /// The path as given (for [`BinaryFileBackend::path`]).
    path: PathBuf,
    /// The real file (symlinks and `..` resolved): every read, rename and copy goes here, so a
    /// symlink to the session stays a symlink to it.
    real: PathBuf,
    dir: PathBuf,
    state: Mutex<State>,
    failpoints: Option<Arc<Failpoints>>,
    opened_legacy: Option<LegacyFormat>,
    cut: Option<CutTail>,
    /// The keys of a sealed session ([`BinaryFileBackend::open_with_key`]).
    keys: Option<Keyring>,
}

struct State {
    /// Ownership; also where the high-water mark is recorded ([`crate::mark`]).
    lock: OwnerLock,
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
    /// Our log, open for appending; `snapshot_crc` and `snapshot_end` name its generation.
    Log { file: File, log_len: u64, snapshot_end: u64, snapshot_crc: u32, sealed: Option<Arc<FileSeal>> },
}

impl fmt::Debug for BinaryFileBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The path only: the session (keys) is never held here, and never printed.
        f.debug_struct("BinaryFileBackend").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

impl BinaryFileBackend {
    /// Opens (or prepares to create) the session file at `path`, taking ownership of it.
    ///
    /// Fails with [`SessionError::Locked`] (naming the holder's pid) when another process or
    /// backend holds the file, [`SessionError::Corrupt`] (naming the preserved copy) when the
    /// file is damaged, [`SessionError::UnsupportedVersion`] when a newer build wrote it. A
    /// missing file is not an error: the session is empty until the first write creates it; an
    /// empty file is `Corrupt` (this backend never leaves one: it creates files by rename). A
    /// path that is not a regular file (a FIFO, a device, a directory) or a file larger than
    /// [`MAX_FILE_LEN`] is refused at once with [`SessionError::Invalid`].
    /// A layer-client / ferogram file is read ([`crate::legacy`]) and kept beside the new file
    /// the first time it is rewritten. An existing file (and its lock file) readable by others
    /// is tightened to 0600.
    ///
    /// A sealed file (one written with [`open_with_key`](Self::open_with_key)) is refused with
    /// [`SessionError::Sealed`], naming its key id; nothing is changed on disk.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self, SessionError> {
        Self::open_inner(path.into(), None, None).await
    }

    /// Opens the session file at `path` sealed (encrypted at rest) with `keys`: every record
    /// written is sealed with the keyring's sealing key, bound to this file's generation and to
    /// its offset (see the book's page on encryption).
    ///
    /// - A file sealed with a key the keyring holds (the sealing key or an older one) opens.
    ///   When it is sealed with an older key, or is a plain (or layer-client 0.5 / ferogram)
    ///   file, it is read as it is and the first write rewrites it whole, sealed with the
    ///   sealing key: that first write is what encrypts or re-keys it (and until then the plain
    ///   bytes stay on disk).
    /// - A file sealed with a key the keyring lacks is [`SessionError::WrongKey`] (with its key
    ///   id), and a record that does not authenticate with the right key is
    ///   [`SessionError::Corrupt`], handled as any damage. A wrong key changes nothing on disk
    ///   and keeps no copy.
    ///
    /// Deriving a passphrase's key (Argon2id) happens here, on the blocking pool.
    pub async fn open_with_key(path: impl Into<PathBuf>, keys: Keyring) -> Result<Self, SessionError> {
        Self::open_inner(path.into(), None, Some(keys)).await
    }

    /// The id of the key the file is sealed with now (`None`: plain, or nothing written yet).
    pub fn sealed_with(&self) -> Option<KeyId> {
        match &self.inner.lock().stored {
            Stored::Log { sealed: Some(fs), .. } => Some(fs.key_id()),
            _ => None,
        }
    }

    #[doc(hidden)]
    /// Opens with fault injection (tests of the write protocol only).
    pub async fn open_with_failpoints(
        path: impl Into<PathBuf>,
        failpoints: Arc<Failpoints>,
    ) -> Result<Self, SessionError> {
        Self::open_inner(path.into(), Some(failpoints), None).await
    }

    #[doc(hidden)]
    /// Opens sealed, with fault injection (tests of the write protocol only).
    pub async fn open_with_key_and_failpoints(
        path: impl Into<PathBuf>,
        keys: Keyring,
        failpoints: Arc<Failpoints>,
    ) -> Result<Self, SessionError> {
        Self::open_inner(path.into(), Some(failpoints), Some(keys)).await
    }

    async fn open_inner(
        path: PathBuf,
        failpoints: Option<Arc<Failpoints>>,
        keys: Option<Keyring>,
    ) -> Result<Self, SessionError> {
        let span = tracing::info_span!("open", backend = "file", path = %path.display(), elapsed_us = Empty);
        let entered = span.clone();
        let open = async move {
            let joined =
                tokio::task::spawn_blocking(move || entered.in_scope(|| open_blocking(path, failpoints, keys))).await;
            match joined {
                Ok(r) => r.map_err(|e| -> BoxError { Box::new(e) }),
                Err(e) => {
                    Err(Box::new(SessionError::Backend { backend: "file".into(), source: Box::new(e) }) as BoxError)
                }
            }
        };
        let inner = timed(span, open).await.map_err(|e| SessionError::from_boxed(e, "file"))?;
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The session file, as given to [`BinaryFileBackend::open`].
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The torn append this backend cut off the end of the log when it opened it, if any.
    pub fn cut_at_open(&self) -> Option<&CutTail> {
        self.inner.cut.as_ref()
    }

    /// The layout of the file when it was opened, if it was a layer-client / ferogram file
    /// ([`crate::legacy`]). The first write replaces it with a log and keeps the old file at
    /// `<path>.v<N>.bak`.
    pub fn legacy_format(&self) -> Option<LegacyFormat> {
        self.inner.opened_legacy
    }

    /// Runs `f` on the blocking pool inside `span` (entered there too, so that what happens
    /// there is inside it).
    async fn run<T, F>(&self, span: &Span, f: F) -> Result<T, BoxError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &mut State) -> Result<T, SessionError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let span = span.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
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
        self.dir.join(format!(".{}.tmp-{}-{n}", file_name(&self.real), std::process::id()))
    }

    /// Writes `bytes` as the whole new file: temp file, fsync, rename over, fsync of the
    /// directory.
    fn write_file(
        &self,
        state: &mut State,
        bytes: &[u8],
        snapshot_end: u64,
        sealed: Option<Arc<FileSeal>>,
    ) -> Result<(), SessionError> {
        let tmp = self.temp_path();
        let before = |e: SessionError| {
            let _ = std::fs::remove_file(&tmp);
            e
        };
        let file = self.write_temp(&tmp, bytes).map_err(before)?;
        // Locked before it is the session file, so the lock on the data follows the live file.
        OwnerLock::lock_new_file(&file, &tmp).map_err(before)?;
        if let Stored::Legacy { format, backup: None } = state.stored {
            let backup = self.keep_legacy(format).map_err(before)?;
            state.stored = Stored::Legacy { format, backup: Some(backup) };
        }
        let snapshot_crc = log::snapshot_crc(bytes);
        // The new generation's mark, durable before the rename ([`crate::mark`]): after a power
        // cut the mark on disk never names this generation with more than it holds.
        let mark = Mark::of(snapshot_end, snapshot_crc, bytes.len() as u64);
        state.lock.write_note(&mark.encode(), true).map_err(before)?;
        self.fail(Step::Rename)
            .and_then(|()| std::fs::rename(&tmp, &self.real))
            .map_err(|e| before(io_err(&self.real, e)))?;
        if let Ok(dup) = file.try_clone() {
            // Releases the lock on the replaced inode; `file` itself keeps the new one locked
            // even if this fails.
            let _ = state.lock.follow(dup);
        }
        state.stored = Stored::Log { file, log_len: bytes.len() as u64, snapshot_end, snapshot_crc, sealed };
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
        let base = format!("{}.v{}.bak", file_name(&self.real), format.version());
        for n in 0u32.. {
            let name = if n == 0 { base.clone() } else { format!("{base}.{n}") };
            let backup = self.dir.join(name);
            if backup.exists() {
                continue;
            }
            match std::fs::hard_link(&self.real, &backup) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(_) => copy_private(&self.real, &backup).map_err(|e| io_err(&backup, e))?,
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
        let sealed = self.new_seal(state)?;
        let file = log::snapshot_file(codec_bytes, sealed.as_deref())?;
        let snapshot_end = file.len() as u64;
        state.opened = None;
        drop(data);
        self.write_file(state, &file, snapshot_end, sealed)
    }

    /// The seal of a new generation of the file, when this backend has keys: a passphrase keeps
    /// the salt of the file it replaces, so its key id does not change with every rewrite.
    fn new_seal(&self, state: &State) -> Result<Option<Arc<FileSeal>>, SessionError> {
        let Some(keys) = &self.keys else { return Ok(None) };
        let stored = match &state.stored {
            Stored::Log { sealed: Some(fs), .. } => fs.kdf().copied(),
            _ => None,
        };
        FileSeal::new(keys, stored.as_ref()).map(|fs| Some(Arc::new(fs)))
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
        if let (Stored::Log { file, log_len, snapshot_end, snapshot_crc, sealed }, false) = (&mut state.stored, rewrite)
        {
            let record = log::change_record(changes, sealed.as_deref(), *log_len)?;
            let snapshot = *snapshot_end;
            let limit = COMPACT_FACTOR.saturating_mul(snapshot).saturating_add(COMPACT_FLOOR);
            // Past the limit: fall through to compaction.
            if log_len.saturating_sub(snapshot).saturating_add(record.len() as u64) <= limit {
                state.opened = None;
                let at = *log_len;
                return match append(self, file, &record, at) {
                    Ok(()) => {
                        *log_len += record.len() as u64;
                        tracing::trace!(bytes = record.len(), log_bytes = *log_len, "appended a change record");
                        // Only now, after the fdatasync: a mark never runs ahead of the data.
                        // A failed note only weakens the check on the next open.
                        let mark = Mark::of(*snapshot_end, *snapshot_crc, *log_len);
                        let _ = state.lock.write_note(&mark.encode(), false);
                        Ok(Persisted::Done)
                    }
                    Err(e) => {
                        // Drop whatever part of the record reached the file, and replace the
                        // whole file on the next write: after a failed write or sync the file's
                        // cached pages cannot be trusted.
                        let _ = file.set_len(at);
                        state.needs_rewrite = true;
                        Err(io_err(&self.real, e))
                    }
                };
            }
        }
        let Some(full) = full else { return Ok(Persisted::NeedsFull) };
        state.opened = None;
        let (log_bytes, snapshot_bytes) = match &state.stored {
            Stored::Log { log_len, snapshot_end, .. } => (*log_len, *snapshot_end),
            _ => (0, 0),
        };
        let why = if state.needs_rewrite {
            "recovery"
        } else if rewrite {
            "log out"
        } else {
            match state.stored {
                Stored::Log { .. } => "log past its limit",
                Stored::Legacy { .. } => "legacy file",
                Stored::Nothing => "first write",
            }
        };
        // A rewrite of the whole file: O(session), where an append is O(change).
        let span = tracing::debug_span!(
            "compact",
            backend = "file",
            path = %self.real.display(),
            reason = why,
            log_bytes,
            snapshot_bytes,
            bytes = Empty,
            peers = full.peers.len(),
            elapsed_us = Empty
        );
        let start = (!span.is_disabled()).then(std::time::Instant::now);
        let result = span.in_scope(|| {
            codec::encode(full).and_then(|codec_bytes| {
                let sealed = self.new_seal(state)?;
                let file = log::snapshot_file(&codec_bytes, sealed.as_deref())?;
                let snapshot_end = file.len() as u64;
                span.record("bytes", snapshot_end);
                self.write_file(state, &file, snapshot_end, sealed)
            })
        });
        if let Some(start) = start {
            span.record("elapsed_us", micros(start));
        }
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
        // Shared, so that helper threads can open a large sealed snapshot without borrowing it.
        let bytes = match read_session_file(&self.real, false) {
            Ok(Some((_, b))) => Arc::new(b),
            Ok(None) => return Ok(None),
            Err(e) => return Err(e),
        };
        match &state.stored {
            Stored::Legacy { .. } => legacy::decode(&bytes).map(|s| Some(s.data)),
            Stored::Log { log_len, .. } => {
                match log::parse_shared(&bytes, self.keys.as_ref(), &self.real.display().to_string()) {
                    // We own the file and wrote every byte of it: anything unreadable is damage.
                    Ok(parsed) if parsed.valid_len < *log_len => {
                        let reason = format!(
                            "the log was acknowledged up to byte {log_len}, but only {} bytes of it read back",
                            parsed.valid_len
                        );
                        Err(corrupt(&self.real, &bytes, reason))
                    }
                    Ok(parsed) => Ok(Some(parsed.data)),
                    Err(ParseError::Corrupt(reason)) => Err(corrupt(&self.real, &bytes, reason)),
                    Err(ParseError::Other(e)) => Err(e),
                }
            }
            Stored::Nothing => Ok(None),
        }
    }

    fn delete(&self, state: &mut State) -> Result<(), SessionError> {
        if let Stored::Legacy { format, backup: None } = state.stored {
            let backup = self.keep_legacy(format)?;
            state.stored = Stored::Legacy { format, backup: Some(backup) };
        }
        match std::fs::remove_file(&self.real) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&self.real, e)),
        }
        state.stored = Stored::Nothing;
        state.opened = None;
        state.needs_rewrite = false;
        // No generation to vouch for any more.
        let _ = state.lock.write_note("", false);
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

fn corrupt(path: &Path, bytes: &[u8], reason: String) -> SessionError {
    let resource = path.display().to_string();
    let span = tracing::info_span!(
        "preserve_corrupt",
        backend = "file",
        path = %resource,
        bytes = bytes.len(),
        copy = Empty,
        elapsed_us = Empty
    );
    let start = (!span.is_disabled()).then(std::time::Instant::now);
    let kept = span.in_scope(|| copies::keep(path, bytes, Kind::Corrupt));
    if let Some(start) = start {
        span.record("elapsed_us", micros(start));
        if let Ok(copy) = &kept {
            span.record("copy", tracing::field::display(copy.display()));
        }
    }
    match kept {
        Ok(copy) => SessionError::Corrupt { resource, reason, preserved_at: Some(copy) },
        Err(e) => SessionError::Corrupt {
            resource,
            reason: format!("{reason} (and a copy could not be preserved: {e}; the file was left as it is)"),
            preserved_at: None,
        },
    }
}

/// Reads the whole session file at `path` (real path), refusing what is not a regular file or
/// is larger than [`MAX_FILE_LEN`], and never blocking in `open` (a FIFO that races in after
/// the type check). `None` when there is no file. With `write`, the file is opened read-write
/// and tightened to 0600.
fn read_session_file(path: &Path, write: bool) -> Result<Option<(File, Vec<u8>)>, SessionError> {
    let file = match open_nonblocking(path, write) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    let meta = check_regular_file(&file, path)?;
    if meta.len() > MAX_FILE_LEN {
        return Err(SessionError::invalid(
            "session file",
            format!("{} is {} bytes, over the {MAX_FILE_LEN}-byte limit of a session file", path.display(), meta.len()),
        ));
    }
    if write {
        match make_private(&file) {
            Ok(true) => {
                tracing::warn!(file = %path.display(), "the session file was readable by others: made private (0600)");
            }
            Ok(false) => {}
            // Someone else's file that we may write but not chmod: say so, and go on.
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "the session file is readable by others and cannot be made private");
            }
        }
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // Bounded by the size just checked: a file that grows meanwhile is read no further.
    file.try_clone().and_then(|f| f.take(meta.len()).read_to_end(&mut bytes)).map_err(|e| io_err(path, e))?;
    Ok(Some((file, bytes)))
}

fn open_blocking(
    given: PathBuf,
    failpoints: Option<Arc<Failpoints>>,
    keys: Option<Keyring>,
) -> Result<Inner, SessionError> {
    if file_name(&given).is_empty() {
        return Err(SessionError::invalid("session file path", format!("{} names no file", given.display())));
    }
    // Refused before the lock creates anything beside it (`OwnerLock::acquire` checks the
    // resolved path again).
    check_regular(&given)?;
    let span = tracing::debug_span!("lock", backend = "file", path = %given.display(), elapsed_us = Empty);
    let start = (!span.is_disabled()).then(std::time::Instant::now);
    let lock = span.in_scope(|| OwnerLock::acquire(&given));
    if let Some(start) = start {
        span.record("elapsed_us", micros(start));
        if let Err(e) = &lock {
            span.in_scope(|| crate::trace::failed(e));
        }
    }
    let lock = lock?;
    let path = lock.session_path().to_path_buf();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = file_name(&path);
    remove_stray_temps(&dir, &name);
    let mark = lock.note().and_then(Mark::decode);
    let mut state = State { lock, opened: None, stored: Stored::Nothing, needs_rewrite: false };
    let mut opened_legacy = None;
    let mut cut = None;
    let done = |state: State, opened_legacy, cut| Inner {
        path: given.clone(),
        real: path.clone(),
        dir: dir.clone(),
        state: Mutex::new(state),
        failpoints: failpoints.clone(),
        opened_legacy,
        cut,
        keys: keys.clone(),
    };
    let Some((file, bytes)) = read_session_file(&path, true)? else {
        return Ok(done(state, opened_legacy, cut));
    };
    // Shared, so that helper threads can open a large sealed snapshot without borrowing it.
    let bytes = Arc::new(bytes);
    if bytes.is_empty() {
        // Never ours: this backend creates a file only by renaming a complete, synced one over
        // its name, so no crash leaves it empty. Something else truncated it.
        return Err(corrupt(
            &path,
            &bytes,
            "the file is empty (0 bytes): a session file is never written empty".into(),
        ));
    } else if bytes.starts_with(&MAGIC) {
        let parsed = match log::parse_shared(&bytes, keys.as_ref(), &path.display().to_string()) {
            Ok(p) => p,
            Err(ParseError::Corrupt(reason)) => return Err(corrupt(&path, &bytes, reason)),
            Err(ParseError::Other(e)) => return Err(e),
        };
        if let Some(Err(reason)) = mark.map(|m| m.check(&parsed)) {
            return Err(corrupt(&path, &bytes, reason));
        }
        if let Some(torn) = parsed.torn {
            // Never acknowledged (the mark, when there is one, ends before it): keep its bytes,
            // then cut it off so appends follow the last good record. If the cut fails, the next
            // write replaces the file instead.
            let start = usize::try_from(torn.at).unwrap_or(bytes.len());
            let kept_at = copies::keep(&path, &bytes[start..], Kind::Torn).map_err(|e| {
                SessionError::io(format!("{} (keeping the torn last record before cutting it off)", path.display()), e)
            })?;
            tracing::warn!(
                file = %path.display(),
                at = torn.at,
                bytes = torn.len,
                kind = torn.kind.describe(),
                kept_at = %kept_at.display(),
                "cut a torn, never acknowledged append off the end of the session log"
            );
            let cut_result = file.set_len(parsed.valid_len).and_then(|()| file.sync_data());
            state.needs_rewrite = cut_result.is_err();
            cut = Some(CutTail { at: torn.at, len: torn.len, kind: torn.kind, kept_at });
        }
        let mark = Mark::of(parsed.snapshot_end, parsed.snapshot_crc, parsed.valid_len);
        let _ = state.lock.write_note(&mark.encode(), false);
        // Appends go on under the file's own seal only when it is the keyring's sealing key;
        // a plain file opened with keys, or one sealed with an older key, is rewritten whole
        // (sealed with the sealing key) by the first write.
        let sealed = match (&keys, parsed.sealed) {
            (Some(keys), Some(fs)) => {
                let current = keys.sealing_key(fs.kdf())?;
                (current.id() == fs.key_id()).then(|| Arc::new(fs))
            }
            _ => None,
        };
        if keys.is_some() && sealed.is_none() {
            state.needs_rewrite = true;
        }
        state.opened = Some(parsed.data);
        state.stored = Stored::Log {
            file,
            log_len: parsed.valid_len,
            snapshot_end: parsed.snapshot_end,
            snapshot_crc: parsed.snapshot_crc,
            sealed,
        };
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
    tracing::debug!(
        bytes = bytes.len(),
        legacy = opened_legacy.map(LegacyFormat::version),
        peers = state.opened.as_ref().map_or(0, |d| d.peers.len()),
        "opened the session file"
    );
    Ok(done(state, opened_legacy, cut))
}

/// The span of one call; `peers` and `bytes` are recorded where the call knows them.
macro_rules! span {
    ($self:ident, $name:literal $(, $field:ident = $value:expr)*) => {
        tracing::debug_span!(
            $name,
            backend = "file",
            path = %$self.inner.path.display(),
            $($field = $value,)*
            elapsed_us = Empty
        )
    };
}

#[async_trait]
impl SessionBackend for BinaryFileBackend {
    async fn load(&self) -> Result<Option<Vec<u8>>, BoxError> {
        let span = span!(self, "load", peers = Empty, bytes = Empty);
        let fields = span.clone();
        let load = self.run(&span, move |inner, state| {
            let read;
            let data = match &state.opened {
                Some(d) => d,
                None => match inner.read_back(state)? {
                    Some(d) => {
                        read = d;
                        &read
                    }
                    None => return Ok(None),
                },
            };
            let bytes = codec::encode(data)?;
            fields.record("peers", data.peers.len());
            fields.record("bytes", bytes.len());
            Ok(Some(bytes))
        });
        timed(span.clone(), load).await
    }

    async fn save(&self, data: &[u8]) -> Result<(), BoxError> {
        if data.is_empty() {
            return self.delete().await;
        }
        let span = span!(self, "save", bytes = data.len(), peers = Empty);
        let decoded = codec::decode(data)?;
        span.record("peers", decoded.peers.len());
        let bytes = data.to_vec();
        let save = self.run(&span, move |inner, state| inner.save_data(state, decoded, Some(&bytes)));
        timed(span.clone(), save).await
    }

    async fn delete(&self) -> Result<(), BoxError> {
        let span = span!(self, "delete");
        let delete = self.run(&span, |inner, state| inner.delete(state));
        timed(span.clone(), delete).await
    }

    fn name(&self) -> &str {
        "file"
    }

    async fn load_session(&self) -> Result<Option<SessionData>, BoxError> {
        let span = span!(self, "load", peers = Empty);
        let fields = span.clone();
        let load = self.run(&span, move |inner, state| {
            let data = inner.read_back(state)?;
            if let Some(data) = &data {
                fields.record("peers", data.peers.len());
            }
            Ok(data)
        });
        timed(span.clone(), load).await
    }

    async fn save_session(&self, data: &SessionData) -> Result<(), BoxError> {
        let span = span!(self, "save", peers = data.peers.len());
        let data = data.clone();
        let save = self.run(&span, move |inner, state| inner.save_data(state, data, None));
        timed(span.clone(), save).await
    }

    async fn persist(&self, changes: &[Change], full: &SessionData) -> Result<(), BoxError> {
        let span = span!(self, "persist", changes = changes.len());
        let persist = async {
            let owned = changes.to_vec();
            if let Persisted::Done = self.run(&span, move |inner, state| inner.persist(state, &owned, None)).await? {
                return Ok(());
            }
            // A whole new file is due: only now is the full session copied for the blocking pool.
            let owned = changes.to_vec();
            let full = full.clone();
            self.run(&span, move |inner, state| inner.persist(state, &owned, Some(&full))).await.map(|_| ())
        };
        timed(span.clone(), persist).await
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
