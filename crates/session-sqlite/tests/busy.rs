//! A database whose write lock another connection keeps past the busy timeout (the owner of
//! another session of the file, or a program such as the sqlite3 shell) makes a write fail as
//! `Unavailable`, a transient error the store retries, never `Locked`, which says another owner
//! holds the session: this owner still holds it, and its next write goes through.

#![allow(clippy::unwrap_used)]

use session_sqlite::session_core::{Change, Peer, PeerKind, SessionData};
use session_sqlite::{SessionBackend, SessionError, SqliteBackend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_past_the_busy_timeout_is_unavailable_not_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("accounts.db");
    let alice = SqliteBackend::open_named(&path, "alice").await.unwrap();
    let mut full = SessionData::default();
    full.home_dc = 2;
    alice.save_session(&full).await.unwrap();

    // Another connection of the file takes the write lock and keeps it.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();

    let change = [Change::UpsertPeer(Peer::new(7, PeerKind::User, 77))];
    full.apply_all(&change);
    let started = std::time::Instant::now();
    let refused = alice.persist(&change, &full).await.map_err(|e| SessionError::from_boxed(e, "sqlite"));
    match &refused {
        Err(SessionError::Unavailable { source, .. }) => {
            assert!(source.to_string().contains("busy"), "{source}");
        }
        other => panic!("a busy database while this owner holds the session: {other:?}"),
    }
    // It waited the busy timeout out before giving up.
    assert!(started.elapsed() >= std::time::Duration::from_secs(4), "{:?}", started.elapsed());

    // The other connection lets go: this owner still owns the session and writes.
    other.execute_batch("COMMIT").unwrap();
    alice.persist(&change, &full).await.unwrap();
    assert_eq!(alice.load_session().await.unwrap().unwrap(), full);
}
