//! The writer child process of the power-cut loops (`tests/file_backend.rs`, `tests/sqlite.rs`),
//! a program of its own: a test that played the writer when an environment variable was set
//! passed, doing nothing, in every normal run.
//!
//! `powercut-writer MODE PATH START` writes step after step on PATH (on the mount), from START
//! on or after what is stored, and prints `ack N` once step N was acknowledged, until the power
//! is cut and it is killed; `stop ...` when a write fails. MODE: `ours` (session-file),
//! `layer05` (layer-client 0.5, the reference), `powerloss` or `balanced` (session-sqlite; the
//! first step also prints `wal` when the `-wal` and `-shm` files are on the mount).

#[path = "file_steps.rs"]
mod file_steps;
#[path = "sqlite_steps.rs"]
mod sqlite_steps;

use std::path::{Path, PathBuf};

use session_core::SessionBackend;
use session_file::BinaryFileBackend;
use session_sqlite::SqliteBackend;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().expect("mode");
    let path = PathBuf::from(args.next().expect("path"));
    let start: u64 = args.next().expect("start").parse().expect("start number");
    match mode.as_str() {
        "ours" => ours_writer(&path, start),
        "layer05" => reference_writer(&path, start),
        _ => sqlite_writer(&mode, &path, start),
    }
}

/// The writer's runtime (the filesystem serves from the parent, so the runtime may use the mount).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn ours_writer(path: &Path, start: u64) {
    use file_steps::changes;
    runtime().block_on(async {
        let backend = match BinaryFileBackend::open(path).await {
            Ok(b) => b,
            Err(e) => return println!("stop open: {e}"),
        };
        let mut full = match backend.load_session().await {
            Ok(s) => s.unwrap_or_default(),
            Err(e) => return println!("stop load: {e}"),
        };
        let mut i = start.max(u64::try_from(full.updates.pts).unwrap_or(0) + 1);
        loop {
            let batch = changes(i);
            full.apply_all(&batch);
            // Every 50th step a full save: a new file, fsync, rename, fsync of the directory.
            let result = if i.is_multiple_of(50) {
                backend.save_session(&full).await
            } else {
                backend.persist(&batch, &full).await
            };
            if let Err(e) = result {
                return println!("stop {e}");
            }
            println!("ack {i}");
            i += 1;
        }
    });
}

fn reference_writer(path: &Path, start: u64) {
    use file_steps::pts;
    use layer_client_05::SessionBackend as _;
    let backend = layer_client_05::BinaryFileBackend::new(path);
    let stored = match backend.load() {
        Ok(s) => s.map_or(0, |s| u64::try_from(s.updates_state.pts).unwrap_or(0)),
        Err(e) => return println!("stop load: {e}"),
    };
    let mut i = start.max(stored + 1);
    loop {
        let change = layer_client_05::UpdateStateChange::Primary { pts: pts(i), date: 1, seq: 2 };
        if let Err(e) = backend.apply_update_state(change) {
            return println!("stop {e}");
        }
        println!("ack {i}");
        i += 1;
    }
}

fn sqlite_writer(mode: &str, path: &Path, start: u64) {
    use sqlite_steps::{durability, step, SAVE_EVERY};
    runtime().block_on(async {
        let backend = match SqliteBackend::open_with(path, durability(mode)).await {
            Ok(b) => b,
            Err(e) => return println!("stop open: {e}"),
        };
        let mut full = match backend.load_session().await {
            Ok(s) => s.unwrap_or_default(),
            Err(e) => return println!("stop load: {e}"),
        };
        let mut i = start.max(u64::try_from(full.updates.pts).unwrap_or(0) + 1);
        let first = i;
        loop {
            let changes = step(i);
            full.apply_all(&changes);
            let result = if i.is_multiple_of(SAVE_EVERY) {
                backend.save_session(&full).await
            } else {
                backend.persist(&changes, &full).await
            };
            if let Err(e) = result {
                return println!("stop {e}");
            }
            println!("ack {i}");
            if i == first {
                // WAL mode as shipped, its index mapped through FUSE: both files are there.
                let side = |suffix: &str| path.with_file_name(format!("power.db{suffix}")).exists();
                if side("-wal") && side("-shm") {
                    println!("wal");
                }
            }
            i += 1;
        }
    });
}
