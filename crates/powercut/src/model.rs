//! The durable model: what a disk would still hold after a power cut, kept beside the live
//! backing folder, and the image the backing folder is reset to at the cut.
//!
//! Identity is the node id (the FUSE inode number), never the backing folder's inode number:
//! a file that was unlinked but whose name is still durable keeps its durable bytes under its
//! node id even when the backing filesystem hands its inode number to a new file.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Sector size of the modelled disk: the unit a torn write keeps or loses.
pub const SECTOR: u64 = 512;

/// The root directory's node id (FUSE's root inode number).
pub(crate) const ROOT: u64 = 1;

/// What a cut keeps of the writes that were not synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossMode {
    /// Nothing that was not synced survives: file bytes as of the file's last `fsync` or
    /// `fdatasync`, names as of their directory's last `fsync`.
    Strict,
    /// Names as in `Strict`; of each file's unsynced writes, an arbitrary (seeded) subset of its
    /// 512-byte sectors survives, and its length is either the synced one or the live one, as
    /// a disk that reorders writes and loses power mid-way leaves it.
    Torn {
        /// Seed of the choice of surviving sectors (one choice per cut).
        seed: u64,
    },
}

/// A small seeded generator (splitmix64): the harness needs no statistical quality, only
/// reproducible choices from a printed seed.
#[derive(Clone, Debug)]
pub(crate) struct Choices(u64);

impl Choices {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// Whether a node is a file or a directory (nothing else is served).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
}

impl Kind {
    pub(crate) fn of(meta: &Metadata) -> Option<Kind> {
        if meta.is_file() {
            Some(Kind::File)
        } else if meta.is_dir() {
            Some(Kind::Dir)
        } else {
            None
        }
    }
}

/// One file or directory, live or only durable.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    /// Where it lives in the backing folder now (relative); `None` once unlinked or replaced.
    pub(crate) path: Option<PathBuf>,
    /// Files: the bytes as of the last sync.
    pub(crate) durable: Vec<u8>,
    /// Files: sectors written since the last sync.
    pub(crate) dirty: BTreeSet<u64>,
    /// Files: the smallest length the file was truncated to since the last sync.
    pub(crate) truncated_to: Option<u64>,
    /// Directories: the entries as of the directory's last sync.
    pub(crate) entries: BTreeMap<OsString, u64>,
    /// Permission bits, kept for the rebuilt image.
    pub(crate) mode: u32,
}

impl Node {
    fn new(kind: Kind, path: PathBuf, mode: u32) -> Self {
        Node {
            kind,
            path: Some(path),
            durable: Vec::new(),
            dirty: BTreeSet::new(),
            truncated_to: None,
            entries: BTreeMap::new(),
            mode,
        }
    }

    /// Records a write of `len` bytes at `offset` (not yet durable).
    pub(crate) fn wrote(&mut self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let last = (offset + len - 1) / SECTOR;
        self.dirty.extend(offset / SECTOR..=last);
    }

    /// Records a change of length from `old` to `new` (not yet durable).
    pub(crate) fn resized(&mut self, old: u64, new: u64) {
        if new < old {
            self.truncated_to = Some(self.truncated_to.map_or(new, |t| t.min(new)));
        }
    }

    /// Makes the live bytes of `file` (this node's content) durable.
    pub(crate) fn sync(&mut self, file: &File) -> io::Result<()> {
        let len = file.metadata()?.len();
        let (durable, dirty) = (std::mem::take(&mut self.durable), std::mem::take(&mut self.dirty));
        self.durable = merge(durable, self.truncated_to.take(), len, dirty.iter().copied(), file)?;
        Ok(())
    }
}

/// `durable`, cut at `truncated_to`, sized to `len` (zeros where it grows), with `sectors` copied
/// from `file` (the live content).
fn merge(
    mut durable: Vec<u8>,
    truncated_to: Option<u64>,
    len: u64,
    sectors: impl Iterator<Item = u64>,
    file: &File,
) -> io::Result<Vec<u8>> {
    let live_len = file.metadata()?.len();
    if let Some(t) = truncated_to {
        durable.truncate(usize_of(t)?);
    }
    durable.resize(usize_of(len)?, 0);
    for sector in sectors {
        let start = sector * SECTOR;
        let end = ((sector + 1) * SECTOR).min(len).min(live_len);
        if start >= end {
            continue;
        }
        let buf = &mut durable[usize_of(start)?..usize_of(end)?];
        file.read_exact_at(buf, start)?;
    }
    Ok(durable)
}

fn usize_of(n: u64) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large for memory"))
}

/// Every node the filesystem knows, and how live backing inodes map to them.
#[derive(Debug)]
pub(crate) struct Nodes {
    pub(crate) backing: PathBuf,
    nodes: HashMap<u64, Node>,
    by_backing: HashMap<u64, u64>,
    next: u64,
}

impl Nodes {
    /// Everything in `backing` as it is now, all of it durable (the state a remount starts from).
    pub(crate) fn scan(backing: &Path) -> io::Result<Nodes> {
        let meta = std::fs::symlink_metadata(backing)?;
        if !meta.is_dir() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the backing folder is not a directory"));
        }
        let mut nodes =
            Nodes { backing: backing.to_owned(), nodes: HashMap::new(), by_backing: HashMap::new(), next: ROOT + 1 };
        nodes.nodes.insert(ROOT, Node::new(Kind::Dir, PathBuf::new(), meta.mode() & 0o7777));
        nodes.by_backing.insert(meta.ino(), ROOT);
        let mut stack = vec![ROOT];
        while let Some(dir) = stack.pop() {
            let rel = nodes.nodes[&dir].path.clone().unwrap_or_default();
            let mut entries = BTreeMap::new();
            for entry in std::fs::read_dir(backing.join(&rel))? {
                let entry = entry?;
                let meta = entry.metadata()?;
                let Some(kind) = Kind::of(&meta) else { continue };
                let id = nodes.add(kind, rel.join(entry.file_name()), &meta);
                if kind == Kind::File {
                    let content = std::fs::read(entry.path())?;
                    if let Some(node) = nodes.nodes.get_mut(&id) {
                        node.durable = content;
                    }
                } else {
                    stack.push(id);
                }
                entries.insert(entry.file_name(), id);
            }
            if let Some(node) = nodes.nodes.get_mut(&dir) {
                node.entries = entries;
            }
        }
        Ok(nodes)
    }

    fn add(&mut self, kind: Kind, rel: PathBuf, meta: &Metadata) -> u64 {
        let id = self.next;
        self.next += 1;
        self.nodes.insert(id, Node::new(kind, rel, meta.mode() & 0o7777));
        self.by_backing.insert(meta.ino(), id);
        id
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Node> {
        self.nodes.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Node> {
        self.nodes.get_mut(&id)
    }

    /// The backing path of a live node.
    pub(crate) fn live_path(&self, id: u64) -> Option<PathBuf> {
        self.nodes.get(&id).and_then(|n| n.path.as_ref()).map(|rel| self.backing.join(rel))
    }

    /// The relative path of `name` inside live directory `parent`.
    pub(crate) fn child_rel(&self, parent: u64, name: &std::ffi::OsStr) -> Option<PathBuf> {
        let node = self.nodes.get(&parent)?;
        if node.kind != Kind::Dir {
            return None;
        }
        node.path.as_ref().map(|p| p.join(name))
    }

    /// The node of the live backing object at `rel` (created on first sight), or `None` if
    /// nothing of a served kind is there.
    pub(crate) fn resolve(&mut self, rel: &Path) -> io::Result<Option<(u64, Metadata)>> {
        let meta = match std::fs::symlink_metadata(self.backing.join(rel)) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(kind) = Kind::of(&meta) else { return Ok(None) };
        let id = match self.by_backing.get(&meta.ino()).copied() {
            Some(id) if self.nodes.get(&id).is_some_and(|n| n.kind == kind) => {
                if let Some(node) = self.nodes.get_mut(&id) {
                    node.path = Some(rel.to_owned());
                }
                id
            }
            _ => self.add(kind, rel.to_owned(), &meta),
        };
        Ok(Some((id, meta)))
    }

    /// `rel` no longer names the node it named (unlinked, or replaced by a rename).
    pub(crate) fn detach(&mut self, id: u64, backing_ino: u64) {
        if self.by_backing.get(&backing_ino) == Some(&id) {
            self.by_backing.remove(&backing_ino);
        }
        if let Some(node) = self.nodes.get_mut(&id) {
            node.path = None;
        }
    }

    /// A live node (and, for a directory, everything under it) moved from `from` to `to`.
    pub(crate) fn moved(&mut self, from: &Path, to: &Path) {
        for node in self.nodes.values_mut() {
            let Some(path) = node.path.as_mut() else { continue };
            if let Ok(rest) = path.strip_prefix(from) {
                *path = if rest.as_os_str().is_empty() { to.to_owned() } else { to.join(rest) };
            }
        }
    }

    /// Makes the live entries of directory `id` its durable entries.
    pub(crate) fn sync_dir(&mut self, id: u64) -> io::Result<()> {
        let Some(rel) = self.nodes.get(&id).and_then(|n| n.path.clone()) else { return Ok(()) };
        let mut entries = BTreeMap::new();
        for entry in std::fs::read_dir(self.backing.join(&rel))? {
            let entry = entry?;
            if let Some((child, _)) = self.resolve(&rel.join(entry.file_name()))? {
                entries.insert(entry.file_name(), child);
            }
        }
        if let Some(node) = self.nodes.get_mut(&id) {
            node.entries = entries;
        }
        Ok(())
    }

    /// What the disk holds after a cut: the durable tree from the root, each file's durable
    /// bytes (plus, with `torn`, a random part of what was not synced).
    pub(crate) fn durable_image(&self, mut torn: Option<&mut Choices>) -> io::Result<Vec<(PathBuf, Entry)>> {
        let mut image = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![(ROOT, PathBuf::new())];
        while let Some((dir, rel)) = stack.pop() {
            if !seen.insert(dir) {
                continue;
            }
            let Some(node) = self.nodes.get(&dir) else { continue };
            for (name, &child) in &node.entries {
                let Some(c) = self.nodes.get(&child) else { continue };
                let path = rel.join(name);
                match c.kind {
                    Kind::Dir => {
                        image.push((path.clone(), Entry::Dir { mode: c.mode }));
                        stack.push((child, path));
                    }
                    Kind::File => {
                        let bytes = match torn.as_deref_mut() {
                            Some(choices) => self.torn_bytes(c, choices)?,
                            None => c.durable.clone(),
                        };
                        image.push((path, Entry::File { bytes, mode: c.mode }));
                    }
                }
            }
        }
        Ok(image)
    }

    /// A file's bytes after a cut that keeps a random subset of its unsynced sectors.
    fn torn_bytes(&self, node: &Node, choices: &mut Choices) -> io::Result<Vec<u8>> {
        let Some(live) = node.path.as_ref().map(|p| self.backing.join(p)) else { return Ok(node.durable.clone()) };
        let file = match File::open(&live) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(node.durable.clone()),
            Err(e) => return Err(e),
        };
        let live_len = file.metadata()?.len();
        let durable_len = u64::try_from(node.durable.len()).unwrap_or(u64::MAX);
        // The length (metadata) reached the disk or it did not; each unsynced sector did or not.
        let (len, truncated) = if choices.coin() { (live_len, node.truncated_to) } else { (durable_len, None) };
        let kept: Vec<u64> = node.dirty.iter().copied().filter(|_| choices.coin()).collect();
        merge(node.durable.clone(), truncated, len, kept.into_iter(), &file)
    }
}

/// One path of the rebuilt backing folder.
#[derive(Debug)]
pub(crate) enum Entry {
    Dir { mode: u32 },
    File { bytes: Vec<u8>, mode: u32 },
}

/// Replaces everything inside `backing` with `image`.
pub(crate) fn write_image(backing: &Path, image: &[(PathBuf, Entry)]) -> io::Result<()> {
    for entry in std::fs::read_dir(backing)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    // Parents come before children: the image is built from the root down.
    for (rel, entry) in image {
        let path = backing.join(rel);
        match entry {
            Entry::Dir { mode } => {
                std::fs::create_dir(&path)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
            }
            Entry::File { bytes, mode } => {
                std::fs::write(&path, bytes)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
            }
        }
    }
    Ok(())
}
