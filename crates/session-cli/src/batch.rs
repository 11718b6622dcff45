//! Converting every session in a folder into a destination folder.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{CliError, CliResult, EXIT_OK};
use crate::gramjs_store;
use crate::location::{self, shown_path, Source};
use crate::read::{self, ReadOptions};
use crate::write::{self, WriteOptions};

/// The outcome of a batch.
#[derive(Debug, Default)]
pub struct Summary {
    /// Sessions converted.
    pub converted: usize,
    /// Sessions that failed, with the error.
    pub failed: Vec<(PathBuf, CliError)>,
}

impl Summary {
    /// The exit code: 0 when everything converted, else the code of the first failure.
    pub fn exit_code(&self) -> u8 {
        self.failed.first().map_or(EXIT_OK, |(_, e)| e.code)
    }
}

fn skipped(name: &str) -> bool {
    name.starts_with('.')
        || [".lock", "-wal", "-shm", "-journal", ".bak", ".expected.json"].iter().any(|s| name.ends_with(s))
        || name.starts_with(crate::guard::STAGE_PREFIX)
}

/// The sessions in `dir`: files, and folders that are GramJS StoreSessions, sorted by name.
pub fn entries(dir: &Path) -> CliResult<Vec<PathBuf>> {
    let shown = shown_path(dir);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| CliError::source(&shown, e))? {
        let entry = entry.map_err(|e| CliError::source(&shown, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if skipped(&name) {
            continue;
        }
        if path.is_file() || (path.is_dir() && gramjs_store::is_store(&path)) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn stem(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if path.is_dir() {
        return name;
    }
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_owned(),
        _ => name,
    }
}

/// Converts every session in `src` into the folder named by `dest_arg` (its prefix chooses the
/// format). Progress goes to a bar on a terminal, else one line per session on `out`.
pub async fn run(
    src: &Path,
    dest_arg: &str,
    read_options: &ReadOptions,
    write_options: &WriteOptions,
    out: &mut dyn Write,
) -> CliResult<Summary> {
    let items = entries(src)?;
    let dir = location::batch_dir(dest_arg);
    // Every folder this creates is private (0700) from its creation; one that exists is the
    // user's and is left as it is.
    crate::guard::private_dir_builder(true).create(&dir).map_err(|e| CliError::dest(shown_path(&dir), e))?;
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(items.len() as u64);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {wide_msg}") {
            bar.set_style(style);
        }
        Some(bar)
    } else {
        None
    };
    let mut summary = Summary::default();
    for item in items {
        if let Some(bar) = &bar {
            bar.set_message(shown_path(&item));
        }
        let result = one(&item, dest_arg, &dir, read_options, write_options).await;
        let line = match &result {
            Ok((dest, dropped)) if dropped.is_empty() => format!("converted {} -> {dest}", shown_path(&item)),
            Ok((dest, dropped)) => {
                format!("converted {} -> {dest} (dropped: {})", shown_path(&item), dropped.join("; "))
            }
            Err(e) => format!("failed {}", e.message),
        };
        let line = location::redact_message(&line);
        match &bar {
            Some(bar) => {
                if result.is_err() {
                    bar.println(&line);
                }
                bar.inc(1);
            }
            None => {
                let _ = writeln!(out, "{line}");
            }
        }
        match result {
            Ok(_) => summary.converted += 1,
            Err(e) => summary.failed.push((item, e)),
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let _ = writeln!(out, "{} converted, {} failed", summary.converted, summary.failed.len());
    for (path, e) in &summary.failed {
        let line = format!("  failed: {} (exit {}): {}", shown_path(path), e.code, e.message);
        let _ = writeln!(out, "{}", location::redact_message(&line));
    }
    Ok(summary)
}

async fn one(
    item: &Path,
    dest_arg: &str,
    dir: &Path,
    read_options: &ReadOptions,
    write_options: &WriteOptions,
) -> CliResult<(String, Vec<String>)> {
    let source = Source::Path { path: item.to_path_buf(), family: None };
    let loaded = read::read(&source, read_options).await?;
    let dest = location::batch_dest(dest_arg, dir, &stem(item))?;
    let dropped = write::write(&loaded.data, &dest, write_options).await?;
    Ok((dest.to_string(), dropped))
}
