//! The database and its -wal, -shm and lock files are private (0600) from creation, under the
//! common umask 022. The check runs in a child process started with `umask 022`, so that the
//! test does not depend on (or change) the umask of the test runner.
#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use session_core::{Change, SessionBackend, SessionData};
use session_sqlite::SqliteBackend;

const CHILD: &str = "SESSION_SQLITE_UMASK_CHILD";
const TEST: &str = "files_are_private_under_umask_022";

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn in_child(dir: &std::path::Path) {
    // The child really runs with umask 022: a plain new file is world-readable.
    let plain = dir.join("plain");
    std::fs::write(&plain, b"x").expect("plain file");
    assert_eq!(mode(&plain), 0o644, "the child is not running under umask 022");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let db = dir.join("private.db");
        let backend = SqliteBackend::open(&db).await.expect("open");
        let mut full = SessionData::default();
        let change = Change::SetHomeDc(2);
        full.apply(&change);
        backend.persist(&[change], &full).await.expect("persist");
        // While the backend is open in WAL mode, all four files exist.
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let path = dir.join(format!("private.db{suffix}"));
            assert_eq!(mode(&path), 0o600, "{} is not private", path.display());
        }
        println!("all private");
    });
}

#[test]
fn files_are_private_under_umask_022() {
    if let Some(dir) = std::env::var_os(CHILD) {
        in_child(std::path::Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let exe = std::env::current_exe().expect("exe");
    let output = Command::new("sh")
        .arg("-c")
        .arg(r#"umask 022 && exec "$0" --exact "$1" --nocapture --test-threads=1"#)
        .arg(exe)
        .arg(TEST)
        .env(CHILD, dir.path())
        .output()
        .expect("run child under umask 022");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("all private"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // And the files stay private after the backend closed.
    assert_eq!(mode(&dir.path().join("private.db")), 0o600);
}
