//! File helpers shared by the file-based backends: private creation and the owner lock.
//!
//! These are blocking calls; async callers run them on `spawn_blocking`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

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

/// The lock file that guards a session at `path`: `<path>.lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    path.with_file_name(name)
}

/// Exclusive ownership of a session, held for as long as this value lives.
///
/// The lock is an advisory `flock`-style lock on `<path>.lock`, which also records the holder's
/// pid. The kernel releases it when the holder exits, however it exits (kill -9 included), so no
/// stale lock ever needs cleaning up. The lock belongs to the open file description, so a second
/// backend in the same process is refused just like another process.
#[derive(Debug)]
pub struct OwnerLock {
    file: File,
    path: PathBuf,
}

impl OwnerLock {
    /// Takes the lock for the session at `session_path`, failing at once with
    /// [`SessionError::Locked`] (naming the holder's pid) when someone holds it.
    pub fn acquire(session_path: &Path) -> Result<OwnerLock> {
        let path = lock_path(session_path);
        let mut file = open_private(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                // The holder writes its pid right after locking; an unreadable or empty file
                // still gives a Locked error, without a pid.
                let pid = file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse::<u32>().ok());
                return Err(SessionError::Locked { resource: session_path.display().to_string(), pid });
            }
            Err(TryLockError::Error(e)) => return Err(SessionError::io(path.display(), e)),
        }
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()))
            // No fsync: the pid is read by other processes through the page cache, and after an
            // OS crash nobody holds the lock, so a durable pid would serve no one (the fsync cost
            // one disk flush per open, 0.1-4 ms here: most of a small session's load time).
            .map_err(|e| SessionError::io(path.display(), e))?;
        Ok(OwnerLock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the pid recorded in the lock file of `session_path`, if any (for messages).
    pub fn holder(session_path: &Path) -> Option<u32> {
        std::fs::read_to_string(lock_path(session_path)).ok().and_then(|t| t.trim().parse().ok())
    }
}

impl Drop for OwnerLock {
    fn drop(&mut self) {
        // Closing the file releases the lock; unlocking first makes the release explicit even if
        // the descriptor was duplicated somewhere.
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_owner_in_the_same_process_is_refused_with_our_pid() {
        let dir = std::env::temp_dir().join(format!("owner-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
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
}
