//! What every write of the tool holds and leaves behind: the destination's owner lock (the same
//! one the backends take, so a session a running program holds is never replaced), private
//! staging folders that a killed run's successor cleans up, and no `.lock` file left beside an
//! output once the command is done.
//!
//! These are blocking calls; async callers run them on the blocking pool.

use std::collections::BTreeSet;
use std::fs::{DirBuilder, File, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use session_core::fs::{lock_path, private_options, OwnerLock};
use session_core::SessionError;

use crate::error::CliError;
use crate::location::shown_path;

/// Names of staging folders start with this; the owner's pid and a counter follow.
pub const STAGE_PREFIX: &str = ".layer-session-stage.";

/// The file inside a staging folder that its owner keeps locked while it runs.
const STAGE_OWNER: &str = ".owner";

/// Set to `pause-after-stage` (tests only) to make a conversion stop, with its staging folder
/// written, until it is killed: the only way to test what a killed run leaves behind without
/// racing it.
pub const FAILPOINT_ENV: &str = "LAYER_SESSION_FAILPOINT";

/// The identity of a file, to tell whether a name still points at the file we locked.
#[cfg(unix)]
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path).ok().map(|_| (0, 0))
}

/// The lock behind a [`DestLock`].
#[derive(Debug)]
enum Held {
    /// A session file's owner lock, as the backends take it.
    Owner(#[allow(dead_code)] OwnerLock),
    /// A folder destination (a GramJS StoreSession): the `flock` on the lock file beside it,
    /// the same lock file an [`OwnerLock`] of that name takes (the owner lock itself refuses
    /// anything but a regular file).
    Folder(#[allow(dead_code)] File),
}

/// Ownership of a destination for the length of one write.
///
/// The lock file is removed on [`DestLock::release`] when this run created it, while the lock is
/// still held, so that no `.lock` file is left beside the output. A lock file that existed
/// before (a program that uses the destination made it) is left in place.
#[derive(Debug)]
pub struct DestLock {
    lock: Option<Held>,
    /// The lock file this run created (and its identity), to remove on release.
    created: Option<(PathBuf, (u64, u64))>,
}

impl DestLock {
    /// Takes the owner lock of `dest`, refusing at once when a running program holds it.
    pub fn acquire(dest: &Path) -> Result<DestLock, CliError> {
        let file = lock_path(dest);
        // A lock file beside no session guards nothing and carries no note worth keeping (a
        // killed run's): it is taken over like one this run created.
        let existed = identity(&file).is_some() && std::fs::symlink_metadata(dest).is_ok();
        let is_dir = std::fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir());
        let lock = if is_dir {
            Held::Folder(lock_folder(dest, &file)?)
        } else {
            Held::Owner(OwnerLock::acquire(dest).map_err(|e| held(dest, &e))?)
        };
        let created = if existed { None } else { identity(&file).map(|id| (file, id)) };
        Ok(DestLock { lock: Some(lock), created })
    }

    /// Removes the lock file if this run created it, then releases the lock.
    pub fn release(self) {
        drop(self);
    }
}

impl Drop for DestLock {
    fn drop(&mut self) {
        // Runs before the fields drop: the lock is still held while its file is removed, and
        // only the very file we locked is removed.
        if let Some((file, id)) = self.created.take() {
            if identity(&file) == Some(id) {
                let _ = std::fs::remove_file(&file);
            }
        }
        drop(self.lock.take());
    }
}

fn lock_folder(dest: &Path, lock_file: &Path) -> Result<File, CliError> {
    let file = private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_file)
        .map_err(|e| CliError::dest(shown_path(dest), format!("cannot open its lock file: {e}")))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(held(dest, &SessionError::locked(dest.display().to_string(), None))),
        Err(TryLockError::Error(e)) => Err(CliError::dest(shown_path(dest), format!("cannot lock it: {e}"))),
    }
}

/// Whether the lock file of `dest` exists beside an existing `dest` (before a backend of this
/// run takes the lock): only such a lock file is left in place.
pub fn lock_file_exists(dest: &Path) -> bool {
    identity(&lock_path(dest)).is_some() && std::fs::symlink_metadata(dest).is_ok()
}

/// Removes the lock file of `dest` that a backend of this run created (`existed_before` false),
/// while that backend still holds the lock.
pub fn remove_created_lock_file(dest: &Path, existed_before: bool) {
    if !existed_before {
        let _ = std::fs::remove_file(lock_path(dest));
    }
}

/// `path` with `suffix` appended to its name (`db` -> `db-wal`).
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The message for a destination whose lock could not be taken.
pub fn held(dest: &Path, e: &SessionError) -> CliError {
    let shown = shown_path(dest);
    match e {
        SessionError::Locked { pid: Some(pid), .. } => CliError::dest(
            &shown,
            format!("is held by a running program (pid {pid}); stop it before replacing this session"),
        ),
        SessionError::Locked { pid: None, .. } => {
            CliError::dest(&shown, "is held by a running program; stop it before replacing this session")
        }
        other => CliError::dest(&shown, other),
    }
}

/// Makes an existing destination private (0600 for a file, 0700 for a folder) before this run
/// writes into it: replacing a session must not leave its keys readable by others.
pub fn tighten(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let private = if meta.is_dir() { 0o700 } else { 0o600 };
        if meta.file_type().is_file() || meta.is_dir() {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & private))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// A folder private to this run (0700 from its creation), beside a destination, that holds
/// what is written before it is moved into place. It is removed on drop; when the run is
/// killed instead, the next run that stages into the same folder removes it (its owner lock is
/// free then).
#[derive(Debug)]
pub struct Stage {
    path: PathBuf,
    owner: Option<File>,
}

/// A folder created with `mode` (0700 for ours) from the first moment, whatever the umask.
pub fn private_dir_builder(recursive: bool) -> DirBuilder {
    let mut builder = DirBuilder::new();
    builder.recursive(recursive);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
}

impl Stage {
    /// Creates a staging folder in `dir`, after removing stale ones that killed runs left there.
    pub fn new(dir: &Path) -> std::io::Result<Stage> {
        // Once per folder and run: a batch stages once per session into the same folder.
        static SWEPT: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
        let first = SWEPT.lock().unwrap_or_else(PoisonError::into_inner).insert(dir.to_path_buf());
        if first {
            sweep(dir);
        }
        let pid = std::process::id();
        let builder = private_dir_builder(false);
        let mut n = 0u32;
        let path = loop {
            let path = dir.join(format!("{STAGE_PREFIX}{pid}.{n}"));
            match builder.create(&path) {
                Ok(()) => break path,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(e),
            }
        };
        let mut stage = Stage { path, owner: None };
        let owner_path = stage.path.join(STAGE_OWNER);
        let mut owner = private_options().write(true).create_new(true).open(&owner_path)?;
        owner.try_lock().map_err(std::io::Error::from)?;
        owner.write_all(pid.to_string().as_bytes())?;
        stage.owner = Some(owner);
        Ok(stage)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops here until killed when the test failpoint asks for it (see [`FAILPOINT_ENV`]).
    pub fn failpoint(&self) {
        if std::env::var(FAILPOINT_ENV).as_deref() == Ok("pause-after-stage") {
            eprintln!("failpoint: paused with staging folder {}", self.path.display());
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        // Removed while still locked, so a concurrent sweep never sees it free.
        let _ = std::fs::remove_dir_all(&self.path);
        drop(self.owner.take());
    }
}

/// Removes the staging folders in `dir` whose owner is gone: ours by name, and only when their
/// owner lock can be taken (the kernel released it when the owner died), or, for a folder
/// whose owner died before it created its lock file, when no process has the pid in its name.
pub fn sweep(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(STAGE_PREFIX)) else { continue };
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if !meta.is_dir() {
            continue;
        }
        match File::open(path.join(STAGE_OWNER)) {
            Ok(owner) => match owner.try_lock() {
                Ok(()) => {
                    let _ = std::fs::remove_dir_all(&path);
                }
                Err(TryLockError::WouldBlock | TryLockError::Error(_)) => {}
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pid = rest.split('.').next().and_then(|p| p.parse::<u32>().ok());
                if pid.is_some_and(|p| !alive(p)) {
                    let _ = std::fs::remove_dir_all(&path);
                }
            }
            Err(_) => {}
        }
    }
}

/// Whether a process with `pid` exists (Linux: `/proc`; elsewhere assumed alive).
fn alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Reads at most `limit` bytes of `reader`; more is an error naming the limit.
pub fn read_bounded(reader: &mut dyn Read, limit: u64, what: &str) -> Result<Vec<u8>, CliError> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::source(what, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(CliError::source(what, format!("is larger than {} (no session is that large)", size(limit))));
    }
    Ok(bytes)
}

/// A byte count for messages.
pub fn size(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}
