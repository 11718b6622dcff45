//! Named sessions of one SQLite file: each has its own rows and its own owner; the same name
//! twice is `Locked` naming the holder (by any path that reaches the file); a database written
//! by the schema-3 code (a fixture it wrote, `tests/fixtures/v3.db`, with the session it holds
//! in `v3.expected`) migrates in place and opens as `default` with the same data; listing.

#![allow(clippy::unwrap_used)]

use session_sqlite::session_core::{codec, Change, Peer, PeerKey, PeerKind, SessionData};
use session_sqlite::{SessionBackend, SessionError, SqliteBackend};

fn peers(base: i64, n: i64) -> SessionData {
    let mut data = SessionData::default();
    data.home_dc = 2;
    data.peers = (0..n).map(|i| Peer::new(base + i, PeerKind::User, base + i)).collect();
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_one_file_keep_their_rows_apart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("accounts.db");
    let alice = SqliteBackend::open_named(&path, "alice").await.unwrap();
    let bob = SqliteBackend::open_named(&path, "bob").await.unwrap();
    let default = SqliteBackend::open(&path).await.unwrap();
    assert_eq!((alice.session_name(), default.session_name()), ("alice", "default"));
    // Enough peers for chunks, then overlay rows, removals and a fold on one of them.
    alice.save_session(&peers(0, 10_000)).await.unwrap();
    bob.save_session(&peers(1_000_000, 10)).await.unwrap();
    let mut full = peers(0, 10_000);
    for i in 0..5_000 {
        let changes =
            [Change::UpsertPeer(Peer::new(20_000 + i, PeerKind::User, 7)), Change::RemovePeer(PeerKey::user(i))];
        full.apply_all(&changes);
        alice.persist(&changes, &full).await.unwrap();
    }
    bob.persist(&[Change::LogOut], &SessionData::default()).await.unwrap();
    bob.save_session(&peers(1_000_000, 10)).await.unwrap();
    assert_eq!(alice.load_session().await.unwrap().unwrap(), full);
    assert_eq!(bob.load_session().await.unwrap().unwrap(), peers(1_000_000, 10));
    assert_eq!(default.load_session().await.unwrap(), None);
    // Deleting one session leaves the others.
    bob.delete().await.unwrap();
    assert_eq!(bob.load_session().await.unwrap(), None);
    assert_eq!(alice.load_session().await.unwrap().unwrap(), full);
    drop((alice, bob, default));
    let reopened = SqliteBackend::open_named(&path, "alice").await.unwrap();
    assert_eq!(reopened.load_session().await.unwrap().unwrap(), full);
    let listed = SqliteBackend::list_sessions(&path).await.unwrap();
    let shown: Vec<(&str, bool)> = listed.iter().map(|s| (s.name.as_str(), s.stored)).collect();
    assert_eq!(shown, [("alice", true), ("bob", false), ("default", false)]);
    assert!(listed.iter().all(|s| s.holder.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_name_twice_is_locked_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("accounts.db");
    let link = dir.path().join("link.db");
    let _first = SqliteBackend::open_named(&path, "alice").await.unwrap();
    std::os::unix::fs::symlink(&path, &link).unwrap();
    for p in [&path, &link, &dir.path().join("sub/../accounts.db")] {
        if let Some(parent) = p.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        match SqliteBackend::open_named(p, "alice").await {
            Err(SessionError::Locked { pid, resource, .. }) => {
                assert_eq!(pid, Some(std::process::id()), "{}", p.display());
                assert!(resource.ends_with("#alice"), "{resource}");
            }
            other => panic!("{}: the same name twice: {other:?}", p.display()),
        }
    }
    // Another name of the same file, and the default session, are free.
    let _bob = SqliteBackend::open_named(&link, "bob").await.unwrap();
    let _default = SqliteBackend::open(&path).await.unwrap();
    for bad in ["", "a\nb"] {
        assert!(matches!(SqliteBackend::open_named(&path, bad).await, Err(SessionError::Invalid { .. })), "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_3_database_migrates_in_place_and_opens_as_default() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let expected = codec::decode(&std::fs::read(fixtures.join("v3.expected")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    std::fs::copy(fixtures.join("v3.db"), &path).unwrap();
    let version = |p: &std::path::Path| -> i64 {
        rusqlite::Connection::open(p).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap()
    };
    assert_eq!(version(&path), 3);
    // Read as it is, without migrating, then migrated by the first open.
    let mut read = session_sqlite::read_only::ReadOnly::open(&path).unwrap();
    assert_eq!(read.load().unwrap().unwrap().data, expected);
    drop(read);
    let backend = SqliteBackend::open(&path).await.unwrap();
    assert_eq!(version(&path), i64::from(session_sqlite::schema::SCHEMA_VERSION));
    assert_eq!(backend.load_session().await.unwrap().unwrap(), expected);
    // It goes on as usual (the overlay, removals and sums the v3 code left included).
    let mut full = expected.clone();
    let change = Change::UpsertPeer(Peer::new(42, PeerKind::Bot, 42));
    full.apply(&change);
    backend.persist(std::slice::from_ref(&change), &full).await.unwrap();
    drop(backend);
    let named = SqliteBackend::open_named(&path, "second").await.unwrap();
    assert_eq!(named.load_session().await.unwrap(), None);
    drop(named);
    assert_eq!(SqliteBackend::open(&path).await.unwrap().load_session().await.unwrap().unwrap(), full);
    let names: Vec<String> = SqliteBackend::list_sessions(&path).await.unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["default", "second"]);
}
