//! An embedded replica and a server restored from a backup: the replica's generation identifies
//! the server's history, not only its count of writes. After a restore, writes (of another
//! session of the same database) bring the server's counter back to exactly the copy's; the
//! copy, which holds writes the server lost and lacks the server's new ones, must not be served
//! (`sync` pulls and says so) nor extended by the replica's next write (it is pulled instead).

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use session_core::{Change, Peer, PeerKind, SessionBackend, SessionData, SessionError};
use session_libsql::{LibSqlBackend, RemoteOptions};
use support::Sqld;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Persists peer `id`, tried again while the server (just restarted) is not reachable yet.
async fn persist(backend: &LibSqlBackend, full: &mut SessionData, id: i64) {
    let change = Change::UpsertPeer(Peer::new(id, PeerKind::User, id * 7));
    full.apply(&change);
    let mut tries = 0;
    loop {
        tries += 1;
        match backend.persist(std::slice::from_ref(&change), full).await {
            Ok(()) => return,
            Err(e) if tries < 20 => {
                let e = SessionError::from_boxed(e, "libsql");
                assert!(!matches!(e, SessionError::LeaseLost { .. }), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("persist {id}: {e}"),
        }
    }
}

async fn sync(backend: &LibSqlBackend) -> bool {
    for _ in 0..20 {
        match backend.sync().await {
            Ok(pulled) => return pulled,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("sync failed 20 times");
}

async fn peers(backend: &LibSqlBackend) -> Vec<i64> {
    let data = backend.load_session().await.unwrap().unwrap_or_default();
    let mut ids: Vec<i64> = data.peers.iter().map(|p| p.id).collect();
    ids.sort_unstable();
    ids
}

async fn counter(url: &str) -> i64 {
    let conn = libsql::Builder::new_remote(url.to_owned(), String::new()).build().await.unwrap().connect().unwrap();
    let mut rows = conn.query("SELECT value FROM write_generation WHERE id = 0", ()).await.unwrap();
    rows.next().await.unwrap().unwrap().get::<i64>(0).unwrap()
}

/// The server as the copy knows it (peer 1), then two writes the server will lose (peers 2 and 3)
/// on top of a backup taken in between, the server restored from the backup, and two writes of
/// another session: the server's counter equals the copy's again, its contents do not.
struct Restored {
    _dir: tempfile::TempDir,
    _sqld: Sqld,
    replica: LibSqlBackend,
    full: SessionData,
    _other: LibSqlBackend,
}

async fn restored() -> Restored {
    let dir = tempfile::tempdir().unwrap();
    let server = dir.path().join("server");
    let backup = dir.path().join("backup");
    let mut sqld = Sqld::start(&server, None);
    let url = sqld.url();
    let replica = LibSqlBackend::open_replica(dir.path().join("copy.db"), &url, "").await.unwrap();
    let other = LibSqlBackend::open_remote_with(&url, "", RemoteOptions::default().session("other")).await.unwrap();
    let mut full = SessionData::default();
    persist(&replica, &mut full, 1).await;

    sqld.stop();
    copy_dir(&server, &backup);
    sqld.restart();
    persist(&replica, &mut full, 2).await;
    persist(&replica, &mut full, 3).await;
    assert_eq!(peers(&replica).await, [1, 2, 3]);
    let copy_count = counter(&url).await;

    sqld.stop();
    std::fs::remove_dir_all(&server).unwrap();
    copy_dir(&backup, &server);
    sqld.restart();
    let mut other_full = SessionData::default();
    persist(&other, &mut other_full, 100).await;
    persist(&other, &mut other_full, 101).await;
    assert_eq!(counter(&url).await, copy_count, "the scenario needs the server's count back at the copy's");
    Restored { _dir: dir, _sqld: sqld, replica, full, _other: other }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_pulls_a_server_restored_from_a_backup_whose_count_matches_the_copy() {
    let r = restored().await;
    assert!(sync(&r.replica).await, "sync kept a copy whose history the server does not have");
    assert_eq!(peers(&r.replica).await, [1], "the replica serves writes the restored server lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_does_not_extend_a_copy_that_diverged_from_a_restored_server() {
    let mut r = restored().await;
    // The client's state is the copy's (1, 2, 3); the write adds peer 4, on the server's 1.
    persist(&r.replica, &mut r.full, 4).await;
    assert_eq!(peers(&r.replica).await, [1, 4], "the write extended the diverged copy");
    assert!(!sync(&r.replica).await, "the copy is the server's after the write");
}
