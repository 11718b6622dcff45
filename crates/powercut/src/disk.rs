//! [`Disk`]: one mounted power-cut filesystem, and the cut-and-restart cycle the crash loops
//! drive.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, MountOption};

use crate::fs::{OpStats, PowerCutFs, Shared, State};
use crate::model::{write_image, Choices, LossMode, Nodes};

/// A FUSE mount of a backing folder that forgets, at each simulated power cut, everything that
/// was not made durable (see the crate docs for the model).
///
/// The filesystem is served by a thread of its own (never by the caller's async runtime), so
/// the process that owns the `Disk` may itself use the mount.
pub struct Disk {
    backing: PathBuf,
    mountpoint: PathBuf,
    mode: LossMode,
    choices: Choices,
    shared: Arc<Shared>,
    session: Option<BackgroundSession>,
    cuts: u64,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk")
            .field("backing", &self.backing)
            .field("mountpoint", &self.mountpoint)
            .field("mode", &self.mode)
            .field("cuts", &self.cuts)
            .finish_non_exhaustive()
    }
}

impl Disk {
    /// Mounts `backing` at `mountpoint` (both existing directories). Whatever `backing` holds
    /// now counts as durable.
    ///
    /// An error says why FUSE could not be mounted (no `/dev/fuse`, not root, no `fusermount3`);
    /// a test that gets one must fail, not pass.
    pub fn mount(backing: impl Into<PathBuf>, mountpoint: impl Into<PathBuf>, mode: LossMode) -> io::Result<Disk> {
        let (backing, mountpoint) = (backing.into(), mountpoint.into());
        let (shared, session) = start(&backing, &mountpoint)?;
        let seed = match mode {
            LossMode::Torn { seed } => seed,
            LossMode::Strict => 0,
        };
        Ok(Disk { backing, mountpoint, mode, choices: Choices::new(seed), shared, session: Some(session), cuts: 0 })
    }

    /// Where the filesystem is mounted: the folder the code under test writes to.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// The folder behind the mount.
    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// Cuts the power at the `n`-th changing operation from now (1: the next one), which fails
    /// with `EIO` like every operation after it.
    pub fn cut_after_ops(&self, n: u64) {
        let mut st = self.shared.lock();
        let at = st.stats.mutating + n.max(1);
        st.cut_at = Some(at);
    }

    /// Cuts the power now: from this instant every operation fails with `EIO`.
    pub fn cut_now(&self) {
        let mut st = self.shared.lock();
        st.cut = true;
        self.shared.cond.notify_all();
    }

    /// Whether the power is cut (by [`Disk::cut_now`] or an armed operation count).
    pub fn is_cut(&self) -> bool {
        self.shared.lock().cut
    }

    /// Waits up to `timeout` for the power to be cut; returns whether it was.
    pub fn wait_for_cut(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        while !st.cut {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = match self.shared.cond.wait_timeout(st, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }

    /// What the filesystem saw since the last (re)mount.
    pub fn stats(&self) -> OpStats {
        self.shared.lock().stats
    }

    /// Power cuts done so far.
    pub fn cuts(&self) -> u64 {
        self.cuts
    }

    /// The power cut and the restart: cuts (if not yet cut), unmounts, resets the backing folder
    /// to its durable state (in [`LossMode::Torn`], plus a random subset of the unsynced
    /// sectors), and mounts it afresh. Whoever wrote through the mount must be gone (killed)
    /// first: a file still open on the mount keeps it busy.
    pub fn power_cycle(&mut self) -> io::Result<()> {
        self.cut_now();
        self.stop()?;
        let image = {
            let st = self.shared.lock();
            let torn = match self.mode {
                LossMode::Torn { .. } => Some(&mut self.choices),
                LossMode::Strict => None,
            };
            st.nodes.durable_image(torn)?
        };
        write_image(&self.backing, &image)?;
        let (shared, session) = start(&self.backing, &self.mountpoint)?;
        self.shared = shared;
        self.session = Some(session);
        self.cuts += 1;
        Ok(())
    }

    /// Unmounts (the backing folder keeps the live state, not the durable one).
    pub fn unmount(mut self) -> io::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else { return Ok(()) };
        match session.umount_and_join() {
            Ok(()) => Ok(()),
            // The serving thread may read `ECONNABORTED` instead of `ENODEV` from the device as
            // the connection goes away (seen about once in a thousand cuts): the session is over
            // all the same, but make sure nothing stays mounted before the next mount.
            Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => self.detach_if_mounted(),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("cannot unmount {} (is a file on it still open?): {e}", self.mountpoint.display()),
            )),
        }
    }

    fn detach_if_mounted(&self) -> io::Result<()> {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
        let point = self.mountpoint.to_string_lossy();
        if !mounts.lines().any(|l| l.split(' ').nth(4) == Some(&*point)) {
            return Ok(());
        }
        let status = std::process::Command::new("umount").arg("-l").arg(&self.mountpoint).status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("`umount -l {}` failed: {status}", self.mountpoint.display())))
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        // An error cannot be returned from here; `unmount` reports it.
        let _ = self.stop();
    }
}

/// Scans `backing` (all of it durable) and mounts it at `mountpoint` on a thread of its own.
fn start(backing: &Path, mountpoint: &Path) -> io::Result<(Arc<Shared>, BackgroundSession)> {
    let nodes = Nodes::scan(backing)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read the backing folder {}: {e}", backing.display())))?;
    let shared = Arc::new(Shared { state: Mutex::new(State::new(nodes)), cond: Condvar::new() });
    let mut config = fuser::Config::default();
    config.mount_options =
        vec![MountOption::FSName("powercut".to_owned()), MountOption::Subtype("powercut".to_owned())];
    let fs = PowerCutFs { shared: Arc::clone(&shared) };
    let session = fuser::spawn_mount(fs, mountpoint, &config).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot mount the power-cut FUSE filesystem at {}: {e} (it needs /dev/fuse and root, or \
                 Debian's fuse3 for fusermount3: `cargo xtask setup` installs it)",
                mountpoint.display()
            ),
        )
    })?;
    // The first request proves the kernel talks to us, before anyone relies on the mount.
    std::fs::metadata(mountpoint).map_err(|e| {
        io::Error::new(e.kind(), format!("the FUSE mount at {} does not answer: {e}", mountpoint.display()))
    })?;
    Ok((shared, session))
}
