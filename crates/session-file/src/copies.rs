//! Copies of bytes the backend will not load or keeps out of the log: a damaged file
//! (`<name>.corrupt-<digest>`) and a cut torn tail (`<name>.torn-<digest>`).
//!
//! A copy is named by a digest of its content (CRC-32 and length), so opening the same damaged
//! file again finds its copy instead of adding one per attempt: a program that retries in a loop
//! must not fill the disk. A different file that happens to share the digest gets a numbered
//! name; an existing copy is reused only when its bytes are identical. Torn-tail copies are
//! never-acknowledged bytes kept for inspection, so only the newest [`TORN_KEPT`] are kept. Every
//! copy is created 0600, and an existing one is tightened to 0600.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use session_core::fs::{make_private, private_options, sync_dir};

/// How many torn-tail copies are kept per session (the oldest beyond this are removed).
pub(crate) const TORN_KEPT: usize = 8;

/// What kind of copy.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Corrupt,
    Torn,
}

impl Kind {
    fn infix(self) -> &'static str {
        match self {
            Kind::Corrupt => "corrupt",
            Kind::Torn => "torn",
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Keeps `bytes` beside `path` as a `kind` copy, reusing an identical one. Returns its path.
pub(crate) fn keep(path: &Path, bytes: &[u8], kind: Kind) -> io::Result<PathBuf> {
    let base = format!("{}.{}-{:08x}-{}", file_name(path), kind.infix(), crc32fast::hash(bytes), bytes.len());
    for n in 0u32..1000 {
        let name = if n == 0 { base.clone() } else { format!("{base}.{n}") };
        let copy = path.with_file_name(name);
        match private_options().write(true).create_new(true).open(&copy) {
            Ok(mut f) => {
                f.write_all(bytes)?;
                f.sync_all()?;
                if let Some(dir) = path.parent() {
                    let _ = sync_dir(dir);
                }
                if let Kind::Torn = kind {
                    prune_torn(path);
                }
                return Ok(copy);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if holds(&copy, bytes)? {
                    return Ok(copy);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, "no free name for the preserved copy"))
}

/// Whether the file at `copy` holds exactly `bytes` (read no further than that); tightens it to
/// 0600 if so.
fn holds(copy: &Path, bytes: &[u8]) -> io::Result<bool> {
    let file = match File::open(copy) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() != bytes.len() as u64 {
        return Ok(false);
    }
    let mut found = Vec::with_capacity(bytes.len());
    file.try_clone()?.take(bytes.len() as u64 + 1).read_to_end(&mut found)?;
    if found != bytes {
        return Ok(false);
    }
    make_private(&file)?;
    Ok(true)
}

/// The torn-tail copies beside `path`, newest first.
pub(crate) fn torn_copies(path: &Path) -> Vec<PathBuf> {
    let prefix = format!("{}.torn-", file_name(path));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    found.sort_by(|a, b| b.cmp(a));
    found.into_iter().map(|(_, p)| p).collect()
}

fn prune_torn(path: &Path) {
    for old in torn_copies(path).into_iter().skip(TORN_KEPT) {
        let _ = std::fs::remove_file(old);
    }
}
