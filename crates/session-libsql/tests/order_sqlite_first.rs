//! First use of SQLite in this process (rusqlite's bundled engine, through the local mode's session-sqlite),
//! then libSQL (remote, over HTTP). Its own test binary, so "first" is real: keep a single test.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use session_core::SessionBackend;
use session_libsql::LibSqlBackend;
use session_testkit::sample_session;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_then_libsql() {
    let dir = tempfile::tempdir().unwrap();
    let data = sample_session(100);

    let sqlite = LibSqlBackend::open_local(dir.path().join("s.db")).await.unwrap();
    sqlite.save_session(&data).await.unwrap();
    assert_eq!(sqlite.load_session().await.unwrap().as_ref(), Some(&data));

    let sqld = support::Sqld::start(&dir.path().join("server"), None);
    let remote = LibSqlBackend::open_remote(&sqld.url(), "").await.unwrap();
    remote.save_session(&data).await.unwrap();
    assert_eq!(remote.load_session().await.unwrap().as_ref(), Some(&data));
    // One owner per session: the remote backend hands it to the replica.
    remote.close().await.unwrap();
    let replica = LibSqlBackend::open_replica(dir.path().join("r.db"), &sqld.url(), "").await.unwrap();
    assert_eq!(replica.load_session().await.unwrap().as_ref(), Some(&data));

    // Both engines keep working side by side.
    let memory = LibSqlBackend::in_memory().await.unwrap();
    memory.save_session(&data).await.unwrap();
    assert_eq!(memory.load_session().await.unwrap(), replica.load_session().await.unwrap());
}
