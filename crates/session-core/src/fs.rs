//! File helpers shared by the file-based backends: private creation, file-type checks and the
//! owner lock.
//!
//! These are blocking calls; async callers run them on `spawn_blocking`.
//!
//! # The owner lock follows the file
//!
//! A session can be reached by many names: a symlink, a hard link, a `..` path, a bind mount of
//! its directory. A lock keyed by the name given would let each name have its own owner. So
//! [`OwnerLock::acquire`] holds two `flock` locks, both on inodes, never on names:
//!
//! - on `<real path>.lock`, where the real path is the given one with every symlink and `..`
//!   resolved (for a file that does not exist yet: its resolved directory plus its name). Every
//!   name of the file that goes through a symlink or a `..`, and every bind mount of its
//!   directory, reaches that same lock file inode;
//! - on the session file itself, when it exists, through a descriptor kept open for the lock's
//!   lifetime. A hard link has its own name in its own directory, so it gets its own `.lock`,
//!   but it is the same inode, and this second lock refuses it. A backend that replaces the file
//!   by rename locks the new file before the rename ([`OwnerLock::lock_new_file`],
//!   [`OwnerLock::follow`]), so the lock keeps following the live file.
//!
//! `flock` locks are independent of the POSIX (`fcntl`) record locks SQLite uses on Linux, so
//! holding one on a SQLite database does not disturb SQLite. What would disturb it is closing a
//! second descriptor of the database while a connection lives (that drops every POSIX lock the
//! process holds on the file): the descriptor stays in the [`OwnerLock`] until it is dropped,
//! so drop the connection first; and a second owner in the same process is refused from a
//! process-wide table of held inodes, before it opens the file at all.
//!
//! # The lock file
//!
//! `<real path>.lock` holds the owner's pid on its first line (padded to a fixed width, so that
//! rewriting it never shortens the file), and after it a free-form note the backend owns
//! ([`OwnerLock::write_note`]; the file backend keeps its high-water mark there). A second owner
//! is told the holder's pid: on Linux from `/proc/locks`, where the kernel records who took
//! the lock at the instant it was taken (so there is no window in which the pid is unknown or
//! stale); elsewhere from the first line, retried briefly while the holder has locked but not
//! yet written it.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Result, SessionError};

/// Options that create files readable and writable by the owner only (0600 on Unix), from the
/// first byte: the mode is given to `open(2)`, not applied afterwards, so no umask or race can
/// expose the file.
pub fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Creates (or opens) `path` for reading and writing, private to the owner if it is created.
pub fn open_private(path: &Path) -> Result<File> {
    private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| SessionError::io(path.display(), e))
}

/// Opens an existing file for reading without ever blocking in `open(2)` (`O_NONBLOCK`: a FIFO
/// that raced in after a type check opens at once instead of waiting for a writer). Regular
/// files ignore the flag.
pub fn open_nonblocking(path: &Path, write: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(write);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path)
}

/// Tightens an existing file to 0600 when it is readable or writable by anyone but its owner
/// (a session or lock file left 0644 by another tool or an older build). Returns whether the
/// mode was changed.
pub fn make_private(file: &File) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
            return Ok(true);
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(false)
}

/// What a session path names, when it is not a regular file (for the refusal's message).
fn kind_of(file_type: std::fs::FileType) -> Option<&'static str> {
    if file_type.is_file() {
        return None;
    }
    if file_type.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return Some("a FIFO");
        }
        if file_type.is_char_device() {
            return Some("a character device");
        }
        if file_type.is_block_device() {
            return Some("a block device");
        }
        if file_type.is_socket() {
            return Some("a socket");
        }
    }
    Some("not a regular file")
}

/// Refuses a session path that exists and is not a regular file (after following symlinks): a
/// FIFO would block the first read forever, a device would be read without end, a directory
/// cannot hold a session. `Ok(())` for a regular file and for a path that does not exist.
pub fn check_regular(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) => match kind_of(meta.file_type()) {
            None => Ok(()),
            Some(kind) => Err(not_regular(path, kind)),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SessionError::io(path.display(), e)),
    }
}

/// The error for a session path that is not a regular file.
pub fn not_regular(path: &Path, kind: &str) -> SessionError {
    SessionError::invalid("session file", format!("{} is {kind}, not a regular file", path.display()))
}

/// Refuses an open file that is not a regular file (the check after `open`, which no rename
/// can race).
pub fn check_regular_file(file: &File, path: &Path) -> Result<std::fs::Metadata> {
    let meta = file.metadata().map_err(|e| SessionError::io(path.display(), e))?;
    match kind_of(meta.file_type()) {
        None => Ok(meta),
        Some(kind) => Err(not_regular(path, kind)),
    }
}

/// Fsyncs a directory, so that a rename or a new file in it survives power loss.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    #[cfg(unix)]
    {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| SessionError::io(dir.display(), e))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// The lock file that guards a session at `path`: `<path>.lock`, beside the real file (symlinks
/// and `..` resolved, see [`resolve`]). When the path cannot be resolved (a missing directory),
/// the name as given.
pub fn lock_path(path: &Path) -> PathBuf {
    let real = resolve(path).unwrap_or_else(|_| path.to_path_buf());
    lock_path_of(&real)
}

fn lock_path_of(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    path.with_file_name(name)
}

/// The real path of a session file: absolute, every symlink and `..` resolved. For a file that
/// does not exist yet, its directory is resolved and its name appended; a dangling symlink is
/// followed to where the file will be created.
pub fn resolve(path: &Path) -> io::Result<PathBuf> {
    let mut path = std::path::absolute(path)?;
    // The kernel's own limit on symlinks followed in one lookup.
    for _ in 0..40 {
        match std::fs::canonicalize(&path) {
            Ok(real) => return Ok(real),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let meta = std::fs::symlink_metadata(&path);
        if meta.as_ref().is_ok_and(|m| m.file_type().is_symlink()) {
            let target = std::fs::read_link(&path)?;
            path = match path.parent() {
                Some(dir) => dir.join(target),
                None => target,
            };
            continue;
        }
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} names no file", path.display())))?;
        let dir = path.parent().unwrap_or(Path::new("/"));
        return Ok(std::fs::canonicalize(dir)?.join(name));
    }
    Err(io::Error::new(io::ErrorKind::InvalidInput, format!("too many levels of symlinks at {}", path.display())))
}

/// Width of the pid line at the start of the lock file, newline included: the widest u32 and a
/// newline, so that the note after it never moves.
const PID_LINE: usize = 11;

/// Device and inode of a file.
type FileId = (u64, u64);

/// Inodes of session files held by owner locks of this process. A second owner in this process
/// is refused from here without opening the file: closing a descriptor it opened would drop the
/// POSIX locks a SQLite connection of this process holds on it.
static HELD: Mutex<BTreeSet<FileId>> = Mutex::new(BTreeSet::new());

fn held() -> std::sync::MutexGuard<'static, BTreeSet<FileId>> {
    HELD.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn file_id(_meta: &std::fs::Metadata) -> FileId {
    (0, 0)
}

/// Opens and locks the lock file at `path`, making sure that the file locked is the one the
/// path names once the lock is held: a holder may unlink its lock file while holding it (the CLI
/// does, so that no `.lock` stays beside its outputs), and a process that opened the old file just
/// before would otherwise lock an orphan while a third one locks a new file at the same name.
fn lock_file_at(path: &Path, shown: &str) -> Result<File> {
    // Each retry means another process unlinked or replaced the lock file between our open and
    // our lock; a few in a row is already an unlikely race, so the bound only stops a livelock.
    for _ in 0..64 {
        let file = open_private(path)?;
        if let Err(e) = make_private(&file) {
            // Someone else's lock file (we may not chmod it): say so, and go on.
            tracing::warn!(lock = %path.display(), error = %e, "the lock file is readable by others and cannot be made private");
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let pid = lock_holder(&file);
                return Err(SessionError::locked(shown, pid));
            }
            Err(TryLockError::Error(e)) => return Err(SessionError::io(path.display(), e)),
        }
        let locked = file.metadata().map_err(|e| SessionError::io(path.display(), e))?;
        match std::fs::symlink_metadata(path) {
            Ok(named) if file_id(&named) == file_id(&locked) => return Ok(file),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(SessionError::io(path.display(), e)),
        }
        let _ = file.unlock();
    }
    Err(SessionError::io(
        path.display(),
        io::Error::new(io::ErrorKind::Interrupted, "the lock file kept being replaced while it was being locked"),
    ))
}

/// The lock on the session file's inode.
#[derive(Debug)]
struct DataLock {
    file: File,
    id: FileId,
}

impl Drop for DataLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
        held().remove(&self.id);
    }
}

/// Exclusive ownership of a session, held for as long as this value lives.
///
/// See the [module docs](self): an advisory `flock` on `<real path>.lock` (which also records
/// the holder's pid) and one on the session file's inode. The kernel releases both when the
/// holder exits, however it exits (kill -9 included), so no stale lock ever needs cleaning up.
/// The locks belong to open file descriptions, so a second backend in the same process is
/// refused just like another process.
#[derive(Debug)]
pub struct OwnerLock {
    file: File,
    path: PathBuf,
    session: PathBuf,
    data: Option<DataLock>,
    note: Option<String>,
    /// The lock file's length after the last note written (0: none yet), so that a note of the
    /// same length costs one `pwrite` and no `ftruncate`.
    written_len: std::sync::atomic::AtomicU64,
}

impl OwnerLock {
    /// Takes the lock for the session at `session_path`, by whatever name it is reached,
    /// failing at once with [`SessionError::Locked`] (naming the holder's pid) when someone
    /// holds it, and with [`SessionError::Invalid`] when the path names something that is not a
    /// regular file (a FIFO, a device, a directory), before creating anything.
    ///
    /// An existing lock file is tightened to 0600.
    pub fn acquire(session_path: &Path) -> Result<OwnerLock> {
        let shown = session_path.display().to_string();
        let session = resolve(session_path).map_err(|e| SessionError::io(&shown, e))?;
        check_regular(&session)?;
        let path = lock_path_of(&session);
        let mut file = lock_file_at(&path, &shown)?;
        let data = lock_data(&session, &shown)?;
        let note = read_note(&mut file);
        let pid_line = format!("{:<width$}\n", std::process::id(), width = PID_LINE - 1);
        // Only the pid line is rewritten, in place: the note after it is the previous owner's,
        // until the backend has read it and writes its own. No fsync: the pid is read through
        // the page cache, and after an OS crash nobody holds the lock.
        write_at(&file, pid_line.as_bytes(), 0).map_err(|e| SessionError::io(path.display(), e))?;
        Ok(OwnerLock { file, path, session, data, note, written_len: std::sync::atomic::AtomicU64::new(0) })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The session file's real path (symlinks and `..` resolved). A backend works on this path,
    /// so that a rename replaces the real file, not a symlink to it.
    pub fn session_path(&self) -> &Path {
        &self.session
    }

    /// The note the previous owner left in the lock file ([`OwnerLock::write_note`]), as found
    /// when this lock was taken: its first line, when it is valid UTF-8.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// Records `note` (one line; a newline ends it) in the lock file after the pid, for the next
    /// owner to read. Without `durable` it only reaches the page cache (it survives the death of
    /// this process, not an OS crash); with it, it is fsync'ed.
    pub fn write_note(&self, note: &str, durable: bool) -> Result<()> {
        use std::sync::atomic::Ordering;
        let line = format!("{}\n", note.lines().next().unwrap_or(""));
        let end = (PID_LINE + line.len()) as u64;
        write_at(&self.file, line.as_bytes(), PID_LINE as u64)
            .and_then(|()| {
                if self.written_len.swap(end, Ordering::Relaxed) == end {
                    Ok(())
                } else {
                    self.file.set_len(end)
                }
            })
            .and_then(|()| if durable { self.file.sync_data() } else { Ok(()) })
            .map_err(|e| {
                // Unknown length now: the next note sets it again.
                self.written_len.store(0, Ordering::Relaxed);
                SessionError::io(self.path.display(), e)
            })
    }

    /// Takes the lock on the session file's inode if the file exists now and that inode is not
    /// the one already held (a backend that created the file after [`OwnerLock::acquire`] calls
    /// this once it exists). Nothing is opened when the held inode is still the file's.
    pub fn lock_session_file(&mut self) -> Result<()> {
        let shown = self.session.display().to_string();
        match std::fs::metadata(&self.session) {
            Ok(meta) if self.data.as_ref().is_some_and(|d| d.id == file_id(&meta)) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(SessionError::io(&shown, e)),
        }
        if let Some(data) = lock_data(&self.session, &shown)? {
            self.data = Some(data);
        }
        Ok(())
    }

    /// Locks a new file that is about to replace the session file (a temp file before its
    /// rename), through `file`'s own open file description: the lock lives as long as `file`
    /// or any duplicate of it. Pass a duplicate to [`OwnerLock::follow`] after the rename.
    pub fn lock_new_file(file: &File, path: &Path) -> Result<()> {
        match file.try_lock() {
            Ok(()) => Ok(()),
            Err(TryLockError::WouldBlock) => Err(SessionError::locked(path.display().to_string(), lock_holder(file))),
            Err(TryLockError::Error(e)) => Err(SessionError::io(path.display(), e)),
        }
    }

    /// Makes `file` (already locked with [`OwnerLock::lock_new_file`] and renamed into place) the
    /// lock on the session file's inode, releasing the lock on the inode it replaced.
    pub fn follow(&mut self, file: File) -> Result<()> {
        let meta = file.metadata().map_err(|e| SessionError::io(self.session.display(), e))?;
        let id = file_id(&meta);
        held().insert(id);
        let old = self.data.replace(DataLock { file, id });
        if let Some(mut old) = old {
            if old.id == id {
                // Dropping the old entry would remove the id just registered.
                old.id = (u64::MAX, u64::MAX);
            }
        }
        Ok(())
    }

    /// Reads the pid recorded in the lock file of `session_path`, if any (for messages).
    pub fn holder(session_path: &Path) -> Option<u32> {
        let mut file = File::open(lock_path(session_path)).ok()?;
        lock_holder_in(&mut file, Duration::ZERO)
    }
}

impl Drop for OwnerLock {
    fn drop(&mut self) {
        // Closing the file releases the lock; unlocking first makes the release explicit even if
        // the descriptor was duplicated somewhere.
        let _ = self.file.unlock();
    }
}

/// Locks the inode of the session file at `session` (real path), if it exists.
fn lock_data(session: &Path, shown: &str) -> Result<Option<DataLock>> {
    let meta = match std::fs::metadata(session) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SessionError::io(shown, e)),
    };
    let id = file_id(&meta);
    let mut table = held();
    if table.contains(&id) {
        return Err(SessionError::locked(shown, Some(std::process::id())));
    }
    let file = match open_nonblocking(session, false) {
        Ok(f) => f,
        // Removed between the two calls: there is no inode to lock.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SessionError::io(shown, e)),
    };
    let meta = check_regular_file(&file, session)?;
    let id = file_id(&meta);
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let pid = proc_locks_holder(id).or_else(|| {
                // Not Linux, or /proc not mounted: the pid in the lock file beside this name
                // (a hard link's own lock file names nobody; then the pid stays unknown).
                File::open(lock_path_of(session)).ok().and_then(|mut f| lock_holder_in(&mut f, Duration::ZERO))
            });
            return Err(SessionError::locked(shown, pid));
        }
        Err(TryLockError::Error(e)) => return Err(SessionError::io(shown, e)),
    }
    table.insert(id);
    Ok(Some(DataLock { file, id }))
}

/// The pid of whoever holds the lock on `file` (which we failed to lock).
fn lock_holder(file: &File) -> Option<u32> {
    let from_kernel = file.metadata().ok().and_then(|m| proc_locks_holder(file_id(&m)));
    let mut file = file.try_clone().ok()?;
    from_kernel.or_else(|| lock_holder_in(&mut file, Duration::from_millis(500)))
}

/// The pid on the first line of a lock file, retried for up to `patience` while the line is
/// missing or incomplete (the holder locks first and writes its pid right after).
fn lock_holder_in(file: &mut File, patience: Duration) -> Option<u32> {
    let start = Instant::now();
    loop {
        let mut head = [0u8; PID_LINE];
        let read = read_at(file, &mut head, 0).ok()?;
        let pid = std::str::from_utf8(&head[..read])
            .ok()
            .and_then(|t| t.split('\n').next())
            .and_then(|l| l.trim().parse::<u32>().ok())
            .filter(|p| *p != 0);
        if pid.is_some() || start.elapsed() >= patience {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The pid that holds an exclusive `flock` on the file `id`, from the kernel's table of locks.
/// Lines look like `3: FLOCK  ADVISORY  WRITE 1861 fe:00:5308857 0 EOF`; waiters are `3: ->`.
#[cfg(target_os = "linux")]
fn proc_locks_holder(id: FileId) -> Option<u32> {
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    let (dev, ino) = id;
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let want = format!("{major:02x}:{minor:02x}:{ino}");
    text.lines().find_map(|line| {
        let mut fields = line.split_whitespace().skip(1);
        let (kind, _, mode, pid, file) =
            (fields.next()?, fields.next()?, fields.next()?, fields.next()?, fields.next()?);
        (kind == "FLOCK" && mode == "WRITE" && file == want)
            .then(|| pid.parse::<u32>().ok())
            .flatten()
            .filter(|p| *p != 0)
    })
}

#[cfg(not(target_os = "linux"))]
fn proc_locks_holder(_id: FileId) -> Option<u32> {
    None
}

/// The note after the pid line: its first line, if any.
fn read_note(file: &mut File) -> Option<String> {
    // A note is one short line; a lock file is never large unless someone else wrote it.
    let mut bytes = vec![0u8; 4096];
    let read = read_at(file, &mut bytes, PID_LINE as u64).ok()?;
    bytes.truncate(read);
    let text = String::from_utf8_lossy(&bytes);
    let line = text.split('\n').next()?.trim();
    (!line.is_empty()).then(|| line.to_owned())
}

/// Writes all of `buf` at offset `at` (positioned write on Unix: the file's cursor is left alone).
#[cfg(unix)]
pub fn write_at(file: &File, buf: &[u8], at: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(buf, at)
}

/// Writes all of `buf` at offset `at` (moves the file's cursor off Unix).
#[cfg(not(unix))]
pub fn write_at(mut file: &File, buf: &[u8], at: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    file.seek(SeekFrom::Start(at))?;
    file.write_all(buf)
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], at + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(not(unix))]
fn read_at(mut file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(at))?;
    let mut done = 0;
    while done < buf.len() {
        match file.read(&mut buf[done..])? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("owner-lock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[test]
    fn second_owner_in_the_same_process_is_refused_with_our_pid() {
        let dir = dir("same");
        let session = dir.join("a.session");
        let first = OwnerLock::acquire(&session).expect("first owner");
        match OwnerLock::acquire(&session) {
            Err(SessionError::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);
        let again = OwnerLock::acquire(&session).expect("lock released on drop");
        drop(again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(lock_path(&session)).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[cfg(unix)]
    #[test]
    fn every_alias_of_the_file_is_refused() {
        let dir = dir("alias");
        std::fs::create_dir(dir.join("sub")).expect("sub");
        let session = dir.join("a.session");
        std::fs::write(&session, b"x").expect("file");
        std::os::unix::fs::symlink(&session, dir.join("link")).expect("symlink");
        std::fs::hard_link(&session, dir.join("sub/hard")).expect("hard link");
        let first = OwnerLock::acquire(&session).expect("first owner");
        for alias in [dir.join("link"), dir.join("sub/hard"), dir.join("sub/../a.session")] {
            match OwnerLock::acquire(&alias) {
                Err(SessionError::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id()), "{alias:?}"),
                other => panic!("{alias:?}: expected Locked, got {other:?}"),
            }
        }
        drop(first);
        OwnerLock::acquire(&dir.join("sub/hard")).expect("free again");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// Holders that unlink their lock file before releasing it (as the CLI does) never let two
    /// owners in at once: an acquirer that opened the old file locks an orphan and must retry.
    #[test]
    fn owners_that_unlink_their_lock_file_still_exclude_each_other() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = dir("unlinking");
        let session = dir.join("never-written.session");
        let inside = AtomicUsize::new(0);
        let (entered, overlaps) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..300 {
                        let Ok(lock) = OwnerLock::acquire(&session) else { continue };
                        entered.fetch_add(1, Ordering::SeqCst);
                        if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                        // Gone already: another owner, holding an orphan, unlinked ours.
                        if std::fs::remove_file(lock.path()).is_err() {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        drop(lock);
                    }
                });
            }
        });
        assert!(entered.load(Ordering::SeqCst) > 100, "too few owners got in to test anything");
        assert_eq!(overlaps.load(Ordering::SeqCst), 0, "two owners held the session at once");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_missing_file_behind_a_dangling_symlink_locks_its_target() {
        let dir = dir("dangling");
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.join("target.session"), dir.join("link")).expect("symlink");
        let first = OwnerLock::acquire(&dir.join("link")).expect("first owner");
        assert_eq!(first.session_path(), resolve(&dir.join("target.session")).expect("resolve"));
        assert!(matches!(OwnerLock::acquire(&dir.join("target.session")), Err(SessionError::Locked { .. })));
        drop(first);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn the_note_survives_for_the_next_owner() {
        let dir = dir("note");
        let session = dir.join("a.session");
        let first = OwnerLock::acquire(&session).expect("first owner");
        assert_eq!(first.note(), None);
        first.write_note("a longer note than the next", false).expect("note");
        first.write_note("mark 12", false).expect("note");
        drop(first);
        let second = OwnerLock::acquire(&session).expect("second owner");
        assert_eq!(second.note(), Some("mark 12"));
        assert_eq!(OwnerLock::holder(&session), Some(std::process::id()));
        drop(second);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_refused_owner_always_learns_the_holders_pid() {
        // Eight threads race for each fresh lock file: the losers look while the winner may
        // have locked but not yet written its pid.
        let dir = dir("race");
        for round in 0..100 {
            let session = dir.join(format!("{round}.session"));
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let (session, barrier) = (session.clone(), std::sync::Arc::clone(&barrier));
                    std::thread::spawn(move || {
                        barrier.wait();
                        let result = OwnerLock::acquire(&session);
                        // Keep the winner's lock until every loser has looked.
                        barrier.wait();
                        result.map(|_| ())
                    })
                })
                .collect();
            let results: Vec<_> = threads.into_iter().map(|t| t.join().expect("thread")).collect();
            assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "round {round}: one owner");
            for result in results {
                match result {
                    Ok(()) => {}
                    Err(SessionError::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id()), "round {round}"),
                    Err(e) => panic!("round {round}: {e}"),
                }
            }
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[cfg(unix)]
    #[test]
    fn what_is_not_a_regular_file_is_refused_before_anything_is_created() {
        let dir = dir("types");
        for path in [PathBuf::from("/dev/zero"), dir.clone()] {
            match OwnerLock::acquire(&path) {
                Err(SessionError::Invalid { .. }) => {}
                other => panic!("{path:?}: expected Invalid, got {other:?}"),
            }
        }
        assert!(!Path::new("/dev/zero.lock").exists());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
