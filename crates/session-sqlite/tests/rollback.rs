//! Failed transactions roll back whole and leave the connection usable; databases we must not
//! touch (a newer schema, another program's file) are refused without being changed.

mod common;

use rusqlite::Connection;
use session_core::{Change, Peer, PeerKind, SessionBackend, SessionData, SessionError};
use session_sqlite::SqliteBackend;

fn inject_failure(path: &std::path::Path) -> Connection {
    let conn = Connection::open(path).expect("second connection");
    conn.execute_batch(
        "CREATE TRIGGER fail_666 BEFORE INSERT ON peers WHEN NEW.id = 666 \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END; \
         CREATE TRIGGER fail_chunk BEFORE INSERT ON peer_chunks \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .expect("create trigger");
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_statement_rolls_back_the_whole_transaction_and_the_connection_stays_usable() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("rollback.db");
    let backend = SqliteBackend::open(&path).await.expect("open");
    let mut stored = SessionData::default();
    let first = [Change::SetHomeDc(2), Change::UpsertPeer(Peer::new(1, PeerKind::User, 10))];
    stored.apply_all(&first);
    backend.persist(&first, &stored).await.expect("persist");

    let injector = inject_failure(&path);
    // The failing statement comes after two that succeed, inside one transaction.
    let batch = [
        Change::SetHomeDc(4),
        Change::UpsertPeer(Peer::new(2, PeerKind::User, 20)),
        Change::UpsertPeer(Peer::new(666, PeerKind::User, 6660)),
    ];
    let mut attempted = stored.clone();
    attempted.apply_all(&batch);
    let err = backend.persist(&batch, &attempted).await.expect_err("injected failure");
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(backend.load_session().await.expect("load").as_ref(), Some(&stored), "a partial transaction stayed");
    // A full save (its peers go in chunks, which the second trigger refuses) fails the same way
    // and leaves the old session loadable.
    let err = backend.save_session(&attempted).await.expect_err("injected failure");
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(backend.load_session().await.expect("load").as_ref(), Some(&stored));

    // The connection is not stuck in a transaction: other writes go through at once.
    let next = [Change::SetHomeDc(5)];
    stored.apply_all(&next);
    backend.persist(&next, &stored).await.expect("persist after a failure");
    injector.execute_batch("DROP TRIGGER fail_666; DROP TRIGGER fail_chunk").expect("drop triggers");
    drop(injector);
    // The retried batch (changes are idempotent) now succeeds.
    stored.apply_all(&batch);
    backend.persist(&batch, &stored).await.expect("retry");
    drop(backend);
    let reopened = SqliteBackend::open(&path).await.expect("reopen");
    assert_eq!(reopened.load_session().await.expect("load"), Some(stored));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_version_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("newer.db");
    SqliteBackend::open(&path).await.expect("create").close().await.expect("close");
    let newer = session_sql::SCHEMA_VERSION + 1;
    // As a newer build might leave it: another version, and not in WAL mode.
    Connection::open(&path)
        .expect("raw")
        .execute_batch(&format!("PRAGMA user_version = {newer}; PRAGMA journal_mode = DELETE;"))
        .expect("bump");
    let before = std::fs::read(&path).expect("read");
    match SqliteBackend::open(&path).await {
        Err(SessionError::UnsupportedVersion { found, supported, .. }) => {
            assert_eq!((found, supported), (newer, session_sql::SCHEMA_VERSION));
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    let version: u32 =
        Connection::open(&path).expect("raw").query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
    assert_eq!(version, newer, "the newer database was changed");
    assert_eq!(std::fs::read(&path).expect("read"), before, "refusing changed the file (journal mode?)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_session_file_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("telethon.session");
    std::fs::copy(common::fixtures().join("telethon").join("telethon-sqlite.session"), &path).expect("copy");
    let before = std::fs::read(&path).expect("read");
    match SqliteBackend::open(&path).await {
        Err(SessionError::Invalid { reason, .. }) => assert!(reason.contains("Telethon"), "{reason}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).expect("read"), before, "the Telethon file was changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_record_the_version_and_application_id() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("fresh.db");
    SqliteBackend::open(&path).await.expect("create").close().await.expect("close");
    let raw = Connection::open(&path).expect("raw");
    let version: u32 = raw.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
    let app: i32 = raw.query_row("PRAGMA application_id", [], |r| r.get(0)).expect("app id");
    let mode: String = raw.query_row("PRAGMA journal_mode", [], |r| r.get(0)).expect("journal");
    assert_eq!((version, app, mode.as_str()), (session_sql::SCHEMA_VERSION, session_sql::APPLICATION_ID, "wal"));
}

/// A database written by schema version 1 (peers as one row each) opens migrated, loads the
/// same session, and its rows are folded into chunks by the first persist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_is_migrated_and_folded() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("v1.db");
    {
        let conn = Connection::open(&path).expect("raw");
        conn.execute_batch(session_sql::MIGRATIONS[0]).expect("v1 tables");
        conn.execute_batch("PRAGMA user_version = 1; PRAGMA journal_mode = WAL;").expect("v1");
        conn.execute_batch("INSERT INTO session (id, home_dc) VALUES (0, 2)").expect("session row");
        let mut insert = conn
            .prepare("INSERT INTO peers (class, id, kind, access_hash, min, usernames, phone) VALUES (?1, ?2, ?3, ?4, 0, ?5, NULL)")
            .expect("prepare");
        for i in 0..10_000i64 {
            let (class, kind) = if i % 2 == 0 { (0, 0) } else { (2, 5) };
            let names = (i == 4).then(|| "[\"four\"]".to_owned());
            insert.execute(rusqlite::params![class, i, kind, i * 11, names]).expect("peer row");
        }
    }
    let mut expected = SessionData::default();
    expected.home_dc = 2;
    expected.peers = (0..10_000i64)
        .map(|i| {
            let kind = if i % 2 == 0 { PeerKind::User } else { PeerKind::Megagroup };
            let p = Peer::new(i, kind, i * 11);
            if i == 4 {
                p.with_usernames(vec!["four".into()])
            } else {
                p
            }
        })
        .collect();

    let backend = SqliteBackend::open(&path).await.expect("open migrates");
    assert_eq!(backend.load_session().await.expect("load").as_ref(), Some(&expected));
    let mut full = expected.clone();
    let change =
        [Change::UpsertPeer(Peer::new(1, PeerKind::Megagroup, -1)), Change::RemovePeer(session_core::PeerKey::user(2))];
    full.apply_all(&change);
    backend.persist(&change, &full).await.expect("persist folds");
    drop(backend);

    let raw = Connection::open(&path).expect("raw");
    let count = |sql: &str| -> i64 { raw.query_row(sql, [], |r| r.get(0)).expect("count") };
    assert_eq!(count("PRAGMA user_version"), i64::from(session_sql::SCHEMA_VERSION));
    assert_eq!(count("SELECT count(*) FROM peers"), 0, "the overlay was folded");
    assert_eq!(count("SELECT count(*) FROM peer_removals"), 0);
    assert_eq!(count("SELECT sum(peers) FROM peer_chunks"), 9_999);
    drop(raw);
    let reopened = SqliteBackend::open(&path).await.expect("reopen");
    assert_eq!(reopened.load_session().await.expect("load"), Some(full));
}

/// A database written by schema version 2 (no checksums) opens migrated to version 3 in one
/// transaction that checksums every row already there: it loads the same session, and from then
/// on a value changed behind the backend's back is `Corrupt`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_database_is_migrated_with_checksums() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("v2.db");
    let key: Vec<u8> = (0..256u32).map(|i| u8::try_from(i % 251).unwrap_or(0)).collect();
    {
        let conn = Connection::open(&path).expect("raw");
        conn.execute_batch(session_sql::MIGRATIONS[0]).expect("v1 tables");
        conn.execute_batch(session_sql::MIGRATIONS[1]).expect("v2 tables");
        conn.execute_batch("PRAGMA user_version = 2; PRAGMA journal_mode = WAL;").expect("v2");
        conn.execute_batch(
            "INSERT INTO session (id, home_dc, user_id, user_bot, pts, qts, date, seq) VALUES (0, 2, 77, 0, 10, 2, 3, 4);
             INSERT INTO channels (id, pts) VALUES (1001, 50);
             INSERT INTO peers (class, id, kind, access_hash, min, usernames, phone) VALUES (0, 5, 1, 55, 0, NULL, NULL);
             INSERT INTO peer_removals (class, id) VALUES (0, 6);
             INSERT INTO min_contexts (pos, user_id, peer_id, msg_id) VALUES (0, 1, 2, 3);",
        )
        .expect("v2 rows");
        conn.execute(
            "INSERT INTO dcs (id, key_flags, flags, ip, port, auth_key, server_salt, time_offset) \
             VALUES (2, 0, 0, '149.154.167.51', 443, ?1, 9, 0)",
            [&key],
        )
        .expect("dc row");
    }
    let mut expected = SessionData::default();
    expected.home_dc = 2;
    expected.user = Some(session_core::SelfUser::new(77, false));
    expected.updates = session_core::UpdateState::new(10, 2, 3, 4);
    expected.updates.channels.insert(1001, 50);
    expected.peers.insert(Peer::new(5, PeerKind::Bot, 55));
    expected.min_contexts.push(session_core::MinPeerContext::new(1, 2, 3));
    let auth = session_core::AuthKey::from_slice(&key).expect("key");
    let dc = session_core::DcOption::new(2, "149.154.167.51:443".parse().expect("addr"))
        .with_auth_key(Some(auth))
        .with_salt(9, 0);
    expected.dcs.insert(dc.key(), dc);

    let backend = SqliteBackend::open(&path).await.expect("open migrates");
    assert_eq!(backend.load_session().await.expect("load").as_ref(), Some(&expected));
    drop(backend);
    {
        let raw = Connection::open(&path).expect("raw");
        let version: u32 = raw.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version, session_sql::SCHEMA_VERSION);
        for table in ["session", "dcs", "channels", "peers", "peer_removals", "min_contexts"] {
            let unsummed: i64 =
                raw.query_row(&format!("SELECT count(*) FROM {table} WHERE crc = 0"), [], |r| r.get(0)).expect("crc");
            assert_eq!(unsummed, 0, "{table} has rows without a checksum after the migration");
        }
        // One byte of the key changed behind the backend's back.
        raw.execute(
            "UPDATE dcs SET auth_key = ?1 WHERE id = 2",
            [&{
                let mut k = key.clone();
                k[100] ^= 1;
                k
            }],
        )
        .expect("damage");
    }
    let backend = SqliteBackend::open(&path).await.expect("open");
    let err = SessionError::from_boxed(backend.load_session().await.expect_err("a changed key"), "sqlite");
    match err {
        SessionError::Corrupt { preserved_at: Some(copy), .. } => assert!(copy.is_file()),
        other => panic!("expected Corrupt with a copy, got {other:?}"),
    }
}
