//! Damage gives `Corrupt` with a preserved copy of the file, never an empty or partial session.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use session_core::{SessionBackend, SessionError};
use session_sqlite::SqliteBackend;
use session_testkit::sample_session;

const PAGE: usize = 4096;

async fn make(path: &Path, peers: usize) {
    let backend = SqliteBackend::open(path).await.expect("open");
    backend.save_session(&sample_session(peers)).await.expect("save");
    backend.close().await.expect("close");
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    assert!(!Path::new(&wal).exists(), "a clean close checkpoints and removes the WAL");
}

fn overwrite(path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).expect("open for damage");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.write_all(bytes).expect("write");
    f.sync_all().expect("sync");
}

fn assert_corrupt_with_copy<T: std::fmt::Debug>(r: Result<T, SessionError>, damaged: &Path) {
    match r {
        Err(SessionError::Corrupt { preserved_at: Some(copy), .. }) => {
            assert_eq!(
                std::fs::read(&copy).expect("preserved copy"),
                std::fs::read(damaged).expect("damaged file"),
                "the preserved copy is not the damaged file"
            );
            assert_ne!(copy, damaged);
        }
        other => panic!("expected Corrupt with a preserved copy, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_page_is_a_corrupt_error_not_an_empty_session() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("damaged.db");
    make(&path, 20_000).await;
    let pages = usize::try_from(std::fs::metadata(&path).expect("meta").len()).expect("size") / PAGE;
    assert!(pages > 50, "the database is big enough to damage its middle ({pages} pages)");
    // Garbage over three pages in the middle of the peers table.
    for at in [pages * 3 / 10, pages / 2, pages * 7 / 10] {
        overwrite(&path, u64::try_from(at * PAGE).expect("offset"), &[0xA5; PAGE]);
    }
    let backend = SqliteBackend::open(&path).await.expect("the schema page is intact, so open works");
    let err = backend.load_session().await.expect_err("load must fail");
    let err = SessionError::from_boxed(err, "sqlite");
    assert!(err.to_string().contains("damaged.db"), "{err}");
    assert_corrupt_with_copy(Err::<(), _>(err), &path);
    // Loading again is still an error (never a fresh session), and so is the check.
    assert!(backend.load_session().await.is_err());
    assert_corrupt_with_copy(backend.check().await, &path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_header_is_a_corrupt_error_at_open() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("header.db");
    make(&path, 10).await;
    overwrite(&path, 0, b"this is no longer a SQLite header");
    assert_corrupt_with_copy(SqliteBackend::open(&path).await, &path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sound_database_passes_the_check() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("sound.db");
    make(&path, 1_000).await;
    let backend = SqliteBackend::open(&path).await.expect("open");
    backend.check().await.expect("quick_check passes");
    assert_eq!(backend.load_session().await.expect("load"), Some(sample_session(1_000)));
}
