//! The database and its -wal, -shm and lock files are private (0600) from creation, under the
//! common umask 022, and so are they after opening a database someone left world-readable
//! (0644): SQLite gives the side files it creates the database's mode. The check runs in a child process started with `umask 022`, so that the
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
        drop(backend);

        // A database left 0644 (a copy, another tool, an older build).
        let old = dir.join("old.db");
        let backend = SqliteBackend::open(&old).await.expect("create");
        backend.persist(&[Change::SetHomeDc(2)], &full).await.expect("persist");
        drop(backend);
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).expect("chmod 0644");
        let backend = SqliteBackend::open(&old).await.expect("open the 0644 database");
        let mut more = full.clone();
        let change = Change::SetHomeDc(4);
        more.apply(&change);
        backend.persist(&[change], &more).await.expect("persist");
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let path = dir.join(format!("old.db{suffix}"));
            assert_eq!(mode(&path), 0o600, "{} is not private after opening a 0644 database", path.display());
        }
        drop(backend);

        // A killed owner's database with its `-wal` and `-shm`, all left 0644: each is made
        // private before SQLite reads the WAL back.
        let backend = SqliteBackend::open(&old).await.expect("reopen");
        let mut last = more.clone();
        let change = Change::SetHomeDc(5);
        last.apply(&change);
        backend.persist(&[change], &last).await.expect("persist");
        for suffix in ["", "-wal", "-shm"] {
            let to = dir.join(format!("killed.db{suffix}"));
            std::fs::copy(dir.join(format!("old.db{suffix}")), &to).expect("copy while open");
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).expect("chmod 0644");
        }
        drop(backend);
        let killed = dir.join("killed.db");
        let backend = SqliteBackend::open(&killed).await.expect("open the killed owner's files");
        assert_eq!(backend.load_session().await.expect("load").map(|s| s.home_dc), Some(5));
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let path = dir.join(format!("killed.db{suffix}"));
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
