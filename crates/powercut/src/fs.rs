//! The FUSE filesystem: a passthrough to the backing folder that records, for every operation,
//! what became durable ([`crate::model`]), and that fails every operation with `EIO` from the
//! instant of a cut (so nothing in flight reaches the backing folder afterwards).
//!
//! Locks are not implemented here on purpose: without `FUSE_POSIX_LOCKS` / `FUSE_FLOCK_LOCKS`
//! the kernel keeps `fcntl` and `flock` locks itself, which is all one machine needs.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite,
    Request, TimeOrNow, WriteFlags,
};

use crate::model::{Kind, Nodes};

/// Attributes and entries are not cached by the kernel: every change goes through us anyway,
/// and a stale size after a cut would only confuse.
const TTL: Duration = Duration::ZERO;

/// Counts of what the filesystem saw since it was mounted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpStats {
    /// Operations that change something (write, truncate, create, mkdir, unlink, rmdir, rename,
    /// fsync, fsync of a directory): the unit of [`crate::Disk::cut_after_ops`].
    pub mutating: u64,
    /// `fsync` / `fdatasync` of files.
    pub file_syncs: u64,
    /// `fsync` of directories.
    pub dir_syncs: u64,
    /// Operations refused with `EIO` because the power was cut.
    pub refused: u64,
}

pub(crate) enum Handle {
    File { node: u64, file: File },
    Dir,
}

pub(crate) struct State {
    pub(crate) nodes: Nodes,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    pub(crate) cut: bool,
    pub(crate) cut_at: Option<u64>,
    pub(crate) stats: OpStats,
}

impl State {
    pub(crate) fn new(nodes: Nodes) -> Self {
        State { nodes, handles: HashMap::new(), next_fh: 1, cut: false, cut_at: None, stats: OpStats::default() }
    }

    /// Lets an operation through, or refuses it because the power is (now) out.
    fn gate(&mut self, mutating: bool, cond: &Condvar) -> Result<(), Errno> {
        if !self.cut && mutating {
            self.stats.mutating += 1;
            if self.cut_at.is_some_and(|n| self.stats.mutating >= n) {
                self.cut = true;
                cond.notify_all();
            }
        }
        if self.cut {
            self.stats.refused += 1;
            return Err(Errno::EIO);
        }
        Ok(())
    }

    fn handle(&mut self, h: Handle) -> FileHandle {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, h);
        FileHandle(fh)
    }

    fn file(&self, fh: FileHandle) -> Result<(u64, &File), Errno> {
        match self.handles.get(&fh.0) {
            Some(Handle::File { node, file }) => Ok((*node, file)),
            _ => Err(Errno::EBADF),
        }
    }
}

/// What the filesystem and the harness share.
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) cond: Condvar,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The filesystem served by one mount.
pub(crate) struct PowerCutFs {
    pub(crate) shared: Arc<Shared>,
}

fn errno(e: io::Error) -> Errno {
    Errno::from(e)
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    let nanos = u32::try_from(nsecs).unwrap_or(0);
    match u64::try_from(secs) {
        Ok(s) => UNIX_EPOCH + Duration::new(s, nanos),
        Err(_) => UNIX_EPOCH,
    }
}

fn attr(id: u64, meta: &Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(id),
        size: meta.len(),
        blocks: meta.blocks(),
        atime: time(meta.atime(), meta.atime_nsec()),
        mtime: time(meta.mtime(), meta.mtime_nsec()),
        ctime: time(meta.ctime(), meta.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: if meta.is_dir() { FileType::Directory } else { FileType::RegularFile },
        perm: u16::try_from(meta.mode() & 0o7777).unwrap_or(0o600),
        nlink: u32::try_from(meta.nlink()).unwrap_or(1),
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// Open options for the backing file. Always readable: an fsync reads the unsynced sectors
/// back through whatever handle it came with. The kernel already applied `O_TRUNC` (as a
/// setattr), `O_CREAT` and `O_EXCL`; `O_APPEND` would make `pwrite` ignore the offset the kernel
/// chose, so none of them is passed on.
fn backing_options(flags: i32) -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true).write(flags & libc::O_ACCMODE != libc::O_RDONLY);
    options
}

impl PowerCutFs {
    fn lookup_entry(&self, parent: u64, name: &OsStr, mutating: bool) -> Result<(u64, Metadata), Errno> {
        let mut st = self.shared.lock();
        st.gate(mutating, &self.shared.cond)?;
        let rel = st.nodes.child_rel(parent, name).ok_or(Errno::ENOENT)?;
        st.nodes.resolve(&rel).map_err(errno)?.ok_or(Errno::ENOENT)
    }
}

impl Filesystem for PowerCutFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.lookup_entry(parent.0, name, false) {
            Ok((id, meta)) => reply.entry(&TTL, &attr(id, &meta), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let mut st = self.shared.lock();
        if let Err(e) = st.gate(false, &self.shared.cond) {
            return reply.error(e);
        }
        let meta = match fh.map(|fh| st.file(fh)) {
            Some(Ok((_, file))) => file.metadata(),
            _ => match st.nodes.live_path(ino.0) {
                Some(path) => std::fs::symlink_metadata(path),
                None => return reply.error(Errno::ENOENT),
            },
        };
        match meta {
            Ok(meta) => reply.attr(&TTL, &attr(ino.0, &meta)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut st = self.shared.lock();
        if let Err(e) = st.gate(size.is_some() || mode.is_some(), &self.shared.cond) {
            return reply.error(e);
        }
        let id = ino.0;
        let result = (|| -> io::Result<Metadata> {
            let path = st.nodes.live_path(id);
            let owned;
            let file = match fh.map(|fh| st.file(fh)) {
                Some(Ok((_, file))) => file,
                _ => {
                    let path = path.clone().ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
                    owned = if size.is_some() { OpenOptions::new().write(true).open(path)? } else { File::open(path)? };
                    &owned
                }
            };
            if let Some(mode) = mode {
                file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
            }
            let mut resized = None;
            if let Some(size) = size {
                let old = file.metadata()?.len();
                file.set_len(size)?;
                resized = Some((old, size));
            }
            let meta = file.metadata()?;
            if let Some(node) = st.nodes.get_mut(id) {
                if let Some(mode) = mode {
                    node.mode = mode & 0o7777;
                }
                if let Some((old, new)) = resized {
                    node.resized(old, new);
                }
            }
            Ok(meta)
        })();
        match result {
            Ok(meta) => reply.attr(&TTL, &attr(id, &meta)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        let mut st = self.shared.lock();
        if let Err(e) = st.gate(true, &self.shared.cond) {
            return reply.error(e);
        }
        let Some(rel) = st.nodes.child_rel(parent.0, name) else { return reply.error(Errno::ENOENT) };
        let path = st.nodes.backing.join(&rel);
        let made = std::fs::create_dir(&path)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777)))
            .and_then(|()| st.nodes.resolve(&rel));
        match made {
            Ok(Some((id, meta))) => reply.entry(&TTL, &attr(id, &meta), Generation(0)),
            Ok(None) => reply.error(Errno::EIO),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent.0, name, false, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent.0, name, true, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut st = self.shared.lock();
        if let Err(e) = st.gate(true, &self.shared.cond) {
            return reply.error(e);
        }
        if !flags.is_empty() {
            return reply.error(Errno::EINVAL);
        }
        let (Some(from), Some(to)) = (st.nodes.child_rel(parent.0, name), st.nodes.child_rel(newparent.0, newname))
        else {
            return reply.error(Errno::ENOENT);
        };
        let result = (|| -> io::Result<()> {
            let replaced = st.nodes.resolve(&to)?;
            if st.nodes.resolve(&from)?.is_none() {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            std::fs::rename(st.nodes.backing.join(&from), st.nodes.backing.join(&to))?;
            if let Some((old, meta)) = replaced {
                st.nodes.detach(old, meta.ino());
            }
            st.nodes.moved(&from, &to);
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut st = self.shared.lock();
        if let Err(e) = st.gate(false, &self.shared.cond) {
            return reply.error(e);
        }
        let Some(path) = st.nodes.live_path(ino.0) else { return reply.error(Errno::ENOENT) };
        match backing_options(flags.0).open(path) {
            Ok(file) => {
                let fh = st.handle(Handle::File { node: ino.0, file });
                reply.opened(fh, FopenFlags::empty());
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut st = self.shared.lock();
        if let Err(e) = st.gate(true, &self.shared.cond) {
            return reply.error(e);
        }
        let Some(rel) = st.nodes.child_rel(parent.0, name) else { return reply.error(Errno::ENOENT) };
        let result = (|| -> io::Result<(u64, Metadata, File)> {
            let existed = st.nodes.resolve(&rel)?;
            if existed.is_some() && flags & libc::O_EXCL != 0 {
                return Err(io::Error::from_raw_os_error(libc::EEXIST));
            }
            let mut options = backing_options(flags);
            options.create(true).mode(mode & 0o7777);
            if flags & libc::O_ACCMODE == libc::O_RDONLY {
                options.write(true);
            }
            let file = options.open(st.nodes.backing.join(&rel))?;
            let old = file.metadata()?.len();
            if flags & libc::O_TRUNC != 0 && old > 0 {
                file.set_len(0)?;
            }
            let (id, _) = st.nodes.resolve(&rel)?.ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))?;
            if let Some(node) = st.nodes.get_mut(id) {
                if existed.is_none() {
                    node.mode = mode & 0o7777;
                }
                if flags & libc::O_TRUNC != 0 {
                    node.resized(old, 0);
                }
            }
            let meta = file.metadata()?;
            Ok((id, meta, file))
        })();
        match result {
            Ok((id, meta, file)) => {
                let fh = st.handle(Handle::File { node: id, file });
                reply.created(&TTL, &attr(id, &meta), Generation(0), fh, FopenFlags::empty());
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut st = self.shared.lock();
        if let Err(e) = st.gate(false, &self.shared.cond) {
            return reply.error(e);
        }
        let file = match st.file(fh) {
            Ok((_, file)) => file,
            Err(e) => return reply.error(e),
        };
        let mut buf = vec![0u8; usize::try_from(size).unwrap_or(0)];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return reply.error(errno(e)),
            }
        }
        reply.data(&buf[..filled]);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut st = self.shared.lock();
        if let Err(e) = st.gate(true, &self.shared.cond) {
            return reply.error(e);
        }
        let (node, result) = match st.file(fh) {
            Ok((node, file)) => (node, file.write_all_at(data, offset)),
            Err(e) => return reply.error(e),
        };
        if let Err(e) = result {
            return reply.error(errno(e));
        }
        if let Some(n) = st.nodes.get_mut(node) {
            n.wrote(offset, data.len() as u64);
        }
        reply.written(u32::try_from(data.len()).unwrap_or(u32::MAX));
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.shared.lock().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let mut st = self.shared.lock();
        if let Err(e) = st.gate(true, &self.shared.cond) {
            return reply.error(e);
        }
        st.stats.file_syncs += 1;
        let State { handles, nodes, .. } = &mut *st;
        let result = match handles.get(&fh.0) {
            // `fdatasync` counts as `fsync`: both make the data and the length durable, and
            // neither makes the file's name durable (only an fsync of its directory does).
            Some(Handle::File { node, file }) => match nodes.get_mut(*node) {
                Some(n) => n.sync(file),
                None => Ok(()),
            },
            _ => return reply.error(Errno::EBADF),
        };
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut st = self.shared.lock();
        if let Err(e) = st.gate(false, &self.shared.cond) {
            return reply.error(e);
        }
        if st.nodes.get(ino.0).is_none_or(|n| n.kind != Kind::Dir || n.path.is_none()) {
            return reply.error(Errno::ENOENT);
        }
        let fh = st.handle(Handle::Dir);
        reply.opened(fh, FopenFlags::empty());
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let mut st = self.shared.lock();
        if let Err(e) = st.gate(false, &self.shared.cond) {
            return reply.error(e);
        }
        let Some(rel) = st.nodes.get(ino.0).and_then(|n| n.path.clone()) else { return reply.error(Errno::ENOENT) };
        let listed = (|| -> io::Result<Vec<(u64, FileType, std::ffi::OsString)>> {
            let mut names: Vec<_> = std::fs::read_dir(st.nodes.backing.join(&rel))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<_>>()?;
            names.sort();
            let mut out = vec![(ino.0, FileType::Directory, ".".into()), (ino.0, FileType::Directory, "..".into())];
            for name in names {
                if let Some((id, meta)) = st.nodes.resolve(&rel.join(&name))? {
                    let kind = if meta.is_dir() { FileType::Directory } else { FileType::RegularFile };
                    out.push((id, kind, name));
                }
            }
            Ok(out)
        })();
        match listed {
            Ok(entries) => {
                for (i, (id, kind, name)) in entries.into_iter().enumerate().skip(usize::try_from(offset).unwrap_or(0))
                {
                    if reply.add(INodeNo(id), i as u64 + 1, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.shared.lock().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let mut st = self.shared.lock();
        if let Err(e) = st.gate(true, &self.shared.cond) {
            return reply.error(e);
        }
        st.stats.dir_syncs += 1;
        match st.nodes.sync_dir(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}

impl PowerCutFs {
    fn remove(&self, parent: u64, name: &OsStr, dir: bool, reply: ReplyEmpty) {
        let mut st = self.shared.lock();
        if let Err(e) = st.gate(true, &self.shared.cond) {
            return reply.error(e);
        }
        let Some(rel) = st.nodes.child_rel(parent, name) else { return reply.error(Errno::ENOENT) };
        let result = (|| -> io::Result<()> {
            let (id, meta) = st.nodes.resolve(&rel)?.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
            let path = st.nodes.backing.join(&rel);
            if dir {
                std::fs::remove_dir(path)?;
            } else {
                std::fs::remove_file(path)?;
            }
            st.nodes.detach(id, meta.ino());
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }
}
