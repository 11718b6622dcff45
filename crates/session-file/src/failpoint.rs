//! Fault injection for tests of the write protocol. Not part of the supported API.
//!
//! A [`Failpoints`] handed to [`crate::BinaryFileBackend::open_with_failpoints`] makes chosen
//! steps of the write protocol fail once with a chosen error, the way a full disk or a failing
//! device would: a failed write leaves half of its bytes behind.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

/// A step of the write protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Appending a change record to the log.
    Append,
    /// fdatasync of the appended record.
    AppendSync,
    /// Writing a new file (compaction, `save`, first write) under its temp name.
    TempWrite,
    /// fsync of the new file.
    TempSync,
    /// Renaming the new file over the old one.
    Rename,
    /// fsync of the directory after the rename.
    DirSync,
}

impl Step {
    /// Every step, in protocol order.
    pub const ALL: [Step; 6] =
        [Step::Append, Step::AppendSync, Step::TempWrite, Step::TempSync, Step::Rename, Step::DirSync];
}

/// Steps armed to fail, and what was observed.
#[derive(Debug, Default)]
pub struct Failpoints {
    armed: Mutex<Vec<(Step, io::ErrorKind)>>,
    fired: Mutex<Vec<Step>>,
    temp_modes: Mutex<Vec<u32>>,
}

impl Failpoints {
    /// No step armed.
    pub fn new() -> Arc<Failpoints> {
        Arc::new(Failpoints::default())
    }

    /// The next time `step` runs it fails with an error of `kind`.
    pub fn arm(&self, step: Step, kind: io::ErrorKind) {
        self.armed.lock().unwrap_or_else(PoisonError::into_inner).push((step, kind));
    }

    /// Steps that failed because they were armed, in order.
    pub fn fired(&self) -> Vec<Step> {
        self.fired.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Permission bits of every temp file when it was created (Unix), for the permission tests.
    pub fn temp_modes(&self) -> Vec<u32> {
        self.temp_modes.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn check(&self, step: Step) -> Option<io::Error> {
        let mut armed = self.armed.lock().unwrap_or_else(PoisonError::into_inner);
        let index = armed.iter().position(|(s, _)| *s == step)?;
        let (_, kind) = armed.remove(index);
        self.fired.lock().unwrap_or_else(PoisonError::into_inner).push(step);
        Some(io::Error::new(kind, format!("injected failure at {step:?}")))
    }

    pub(crate) fn observe_temp(&self, path: &Path) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path) {
                self.temp_modes.lock().unwrap_or_else(PoisonError::into_inner).push(meta.permissions().mode() & 0o7777);
            }
        }
        #[cfg(not(unix))]
        let _ = path;
    }
}
