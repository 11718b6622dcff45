//! `read_only`: a session database is read without its owner lock and without a byte written or
//! a file created beside it, in each state the files can be in (owner running, owner gone, a
//! `-wal` left without its `-shm`), and our databases are told from empty and foreign ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use session_core::{Change, Peer, PeerKind, SessionBackend, SessionData, SessionError};
use session_sqlite::read_only::{read_snapshot, Kind, ReadOnly};
use session_sqlite::SqliteBackend;

/// Every file of `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("list")
        .map(|e| {
            let path = e.expect("entry").path();
            let bytes = std::fs::read(&path).expect("read");
            (path, bytes)
        })
        .collect()
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

async fn stored(backend: &SqliteBackend, changes: &[Change], data: &mut SessionData) {
    data.apply_all(changes);
    backend.persist(changes, data).await.expect("persist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_its_owner_holds_is_read_without_writing_and_the_owner_writes_on() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("held.db");
    let backend = SqliteBackend::open(&path).await.expect("open");
    let mut data = SessionData::default();
    stored(&backend, &[Change::SetHomeDc(2), Change::UpsertPeer(Peer::new(5, PeerKind::User, 50))], &mut data).await;
    assert!(sibling(&path, "-wal").exists() && sibling(&path, "-shm").exists(), "the owner runs in WAL mode");
    let db_before = std::fs::read(&path).expect("db");
    let wal_before = std::fs::read(sibling(&path, "-wal")).expect("wal");
    let names_before: Vec<PathBuf> = files(dir.path()).into_keys().collect();

    let read = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            let mut db = ReadOnly::open(&path).expect("open read-only");
            assert!(!db.copied(), "-wal and -shm exist: read in place");
            assert_eq!(db.kind().expect("kind"), Kind::Ours);
            assert!(db.integrity_check().expect("check").is_empty());
            db.load().expect("load").expect("a session")
        }
    })
    .await
    .expect("join");
    assert_eq!(read.data, data);
    assert_eq!(read.version, session_sql::SCHEMA_VERSION);
    // Nothing written or created (the `-shm` is shared memory every WAL reader maps; its bytes
    // are not compared).
    assert_eq!(std::fs::read(&path).expect("db"), db_before);
    assert_eq!(std::fs::read(sibling(&path, "-wal")).expect("wal"), wal_before);
    assert_eq!(files(dir.path()).into_keys().collect::<Vec<_>>(), names_before);
    // The owner lock was never taken: the owner writes on, and a second read sees it.
    stored(&backend, &[Change::SetHomeDc(4)], &mut data).await;
    let again = tokio::task::spawn_blocking(move || read_snapshot(&path)).await.expect("join").expect("read");
    assert_eq!(again.map(|s| s.data.home_dc), Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_database_is_read_immutable_and_nothing_appears_beside_it() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("closed.db");
    let backend = SqliteBackend::open(&path).await.expect("open");
    let mut data = SessionData::default();
    stored(&backend, &[Change::SetHomeDc(3)], &mut data).await;
    drop(backend);
    // A closed owner checkpoints and removes its `-wal`; its lock file may stay.
    assert!(!sibling(&path, "-wal").exists());
    let before = files(dir.path());
    let snapshot = tokio::task::spawn_blocking({
        let path = path.clone();
        move || read_snapshot(&path)
    })
    .await
    .expect("join")
    .expect("read")
    .expect("a session");
    assert_eq!(snapshot.data, data);
    assert_eq!(files(dir.path()), before, "no -wal, -shm or any other file created, no byte changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_without_its_shm_is_read_from_a_private_copy() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("live.db");
    let backend = SqliteBackend::open(&path).await.expect("open");
    let mut data = SessionData::default();
    stored(&backend, &[Change::SetHomeDc(2)], &mut data).await;
    stored(&backend, &[Change::UpsertPeer(Peer::new(9, PeerKind::Bot, 90))], &mut data).await;
    // A copy of the files as a backup tool takes them: the database and its `-wal` (holding the
    // last commits), no `-shm`.
    let copied = tempfile::tempdir().expect("dir");
    let copy = copied.path().join("copy.db");
    std::fs::copy(&path, &copy).expect("copy db");
    std::fs::copy(sibling(&path, "-wal"), sibling(&copy, "-wal")).expect("copy wal");
    drop(backend);
    let before = files(copied.path());
    let (was_copied, snapshot) = tokio::task::spawn_blocking({
        let copy = copy.clone();
        move || {
            let mut db = ReadOnly::open(&copy).expect("open");
            (db.copied(), db.load().expect("load"))
        }
    })
    .await
    .expect("join");
    assert!(was_copied, "a reader in place would create -shm");
    assert_eq!(snapshot.expect("a session").data, data, "the commits in the -wal are read");
    assert_eq!(files(copied.path()), before, "no -shm created, nothing changed");
}

#[test]
fn empty_foreign_and_missing_databases() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("missing.db");
    assert!(read_snapshot(&missing).expect("no file: no session").is_none());
    assert!(!missing.exists(), "nothing created");

    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").expect("empty file");
    assert_eq!(ReadOnly::open(&empty).expect("open").kind().expect("kind"), Kind::Empty);
    assert!(read_snapshot(&empty).expect("empty: no session").is_none());

    let foreign = dir.path().join("telethon.session");
    Connection::open(&foreign).and_then(|c| c.execute_batch("CREATE TABLE sessions (dc_id INTEGER)")).expect("make");
    let before = std::fs::read(&foreign).expect("bytes");
    assert_eq!(ReadOnly::open(&foreign).expect("open").kind().expect("kind"), Kind::Foreign);
    let err = read_snapshot(&foreign).expect_err("another program's database");
    assert!(matches!(err, SessionError::Invalid { .. }) && err.to_string().contains("import"), "{err}");
    assert_eq!(std::fs::read(&foreign).expect("bytes"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_and_damage_are_errors_never_a_session() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("newer.db");
    let backend = SqliteBackend::open(&path).await.expect("open");
    let mut data = SessionData::default();
    stored(&backend, &[Change::SetHomeDc(2)], &mut data).await;
    drop(backend);
    let newer = session_sql::SCHEMA_VERSION + 1;
    Connection::open(&path).and_then(|c| c.execute_batch(&format!("PRAGMA user_version = {newer}"))).expect("bump");
    let err = ReadOnly::open(&path).expect("open").load().expect_err("newer");
    assert!(matches!(err, SessionError::UnsupportedVersion { found, .. } if found == newer), "{err}");

    // A value changed behind the schema's back: its row no longer matches its checksum.
    Connection::open(&path)
        .and_then(|c| {
            c.execute_batch(&format!(
                "PRAGMA user_version = {}; UPDATE session SET home_dc = 5",
                session_sql::SCHEMA_VERSION
            ))
        })
        .expect("tamper");
    let err = read_snapshot(&path).expect_err("damaged");
    assert!(matches!(err, SessionError::Corrupt { .. }), "{err}");
    // The name a tool gives the database is the one errors carry.
    let err = ReadOnly::open(&path).expect("open").with_name("<shown>").load().expect_err("damaged");
    assert!(err.to_string().contains("<shown>"), "{err}");
}
