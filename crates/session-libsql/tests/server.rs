//! Behaviour on a real sqld: replicas, authentication, an unreachable server, two clients,
//! rollback, schema versions.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use session_core::{Change, PeerKey, SessionBackend, SessionData, SessionError};
use session_libsql::{LibSqlBackend, Mode, RemoteOptions};
use session_testkit::{sample_peer, sample_session, Rng};
use support::{JwtKey, Sqld};

fn kind(e: session_core::BoxError) -> SessionError {
    SessionError::from_boxed(e, "test")
}

async fn load(b: &LibSqlBackend) -> Option<SessionData> {
    b.load_session().await.unwrap()
}

/// Applies `changes` to `data` and persists them through `b`.
async fn persist(b: &LibSqlBackend, data: &mut SessionData, changes: Vec<Change>) {
    data.apply_all(&changes);
    b.persist(&changes, data).await.unwrap();
}

async fn raw(url: &str, token: &str) -> libsql::Connection {
    libsql::Builder::new_remote(url.to_owned(), token.to_owned()).build().await.unwrap().connect().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_hand_the_session_over_and_each_catches_up_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let sqld = Sqld::start(&dir.path().join("server"), None);
    let a = LibSqlBackend::open_replica(dir.path().join("a.db"), &sqld.url(), "").await.unwrap();
    assert_eq!(a.mode(), Mode::Replica);
    assert_eq!(a.name(), "libsql-replica");
    assert!(load(&a).await.is_none());
    // One owner: a second replica of the same session is refused while `a` holds it.
    let e = LibSqlBackend::open_replica(dir.path().join("b.db"), &sqld.url(), "").await.unwrap_err();
    assert!(
        matches!(&e, SessionError::Locked { holder: Some(h), .. } if h.pid == std::process::id()),
        "a second replica opened the session: {e}"
    );

    let mut data = sample_session(100);
    a.save_session(&data).await.unwrap();
    let mut rng = Rng::new(7);
    let peer = sample_peer(1_000_001, &mut rng);
    persist(&a, &mut data, vec![Change::UpsertPeer(peer.clone()), Change::SetHomeDc(4)]).await;
    assert!(!a.sync().await.unwrap(), "nobody else wrote");
    let a_path = a.path().unwrap().to_path_buf();
    a.close().await.unwrap();
    drop(a);

    // `b` takes over: its copy is pulled on open.
    let b = LibSqlBackend::open_replica(dir.path().join("b.db"), &sqld.url(), "").await.unwrap();
    assert_eq!(load(&b).await.as_ref(), Some(&data));
    persist(&b, &mut data, vec![Change::RemovePeer(peer.key()), Change::SetApiId(Some(99))]).await;
    b.close().await.unwrap();
    drop(b);

    // A remote client sees the same, and `a`'s old copy catches up when it opens again.
    let r = LibSqlBackend::open_remote(&sqld.url(), "").await.unwrap();
    assert_eq!(load(&r).await.as_ref(), Some(&data));
    persist(&r, &mut data, vec![Change::SetTestMode(true)]).await;
    r.close().await.unwrap();
    let a = LibSqlBackend::open_replica(&a_path, &sqld.url(), "").await.unwrap();
    assert_eq!(load(&a).await.as_ref(), Some(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_unauthorized_never_an_empty_session() {
    let dir = tempfile::tempdir().unwrap();
    let key = JwtKey::random();
    let key_file = dir.path().join("jwt.pub");
    key.write_public_key(&key_file);
    let sqld = Sqld::start(&dir.path().join("server"), Some(&key_file));

    let good = LibSqlBackend::open_remote(&sqld.url(), &key.token()).await.unwrap();
    let data = sample_session(10);
    good.save_session(&data).await.unwrap();
    assert_eq!(load(&good).await.as_ref(), Some(&data));
    good.close().await.unwrap();

    let other_key = JwtKey::random().token();
    for token in ["", "not-a-jwt", other_key.as_str()] {
        let e = LibSqlBackend::open_remote(&sqld.url(), token).await.unwrap_err();
        assert!(matches!(e, SessionError::Unauthorized { .. }), "token {token:?}: {e}");
        let e = LibSqlBackend::open_replica(dir.path().join("r.db"), &sqld.url(), token).await.unwrap_err();
        assert!(matches!(e, SessionError::Unauthorized { .. }), "replica, token {token:?}: {e}");
    }
    let replica = LibSqlBackend::open_replica(dir.path().join("r.db"), &sqld.url(), &key.token()).await.unwrap();
    assert_eq!(load(&replica).await.as_ref(), Some(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_unavailable_and_the_session_survives_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut sqld = Sqld::start(&dir.path().join("server"), None);
    let remote = LibSqlBackend::open_remote(&sqld.url(), "").await.unwrap();
    let data = sample_session(1000);
    remote.save_session(&data).await.unwrap();
    let changes = vec![Change::SetHomeDc(5)];
    let mut changed = data.clone();
    changed.apply_all(&changes);

    sqld.stop();
    let e = kind(remote.load_session().await.unwrap_err());
    assert!(matches!(e, SessionError::Unavailable { .. }), "load: {e}");
    let e = kind(remote.load().await.unwrap_err());
    assert!(matches!(e, SessionError::Unavailable { .. }), "load bytes: {e}");
    let e = kind(remote.persist(&changes, &changed).await.unwrap_err());
    assert!(matches!(e, SessionError::Unavailable { .. }), "persist: {e}");
    let e = LibSqlBackend::open_remote(&sqld.url(), "").await.unwrap_err();
    assert!(matches!(e, SessionError::Unavailable { .. }), "open: {e}");
    let e = LibSqlBackend::open_replica(dir.path().join("r2.db"), &sqld.url(), "").await.unwrap_err();
    assert!(matches!(e, SessionError::Unavailable { .. }), "open replica: {e}");

    sqld.restart();
    // The same backend works again (its lease held through the short outage), and the server
    // has exactly what was acknowledged.
    assert_eq!(load(&remote).await.as_ref(), Some(&data));
    remote.persist(&changes, &changed).await.unwrap();
    remote.close().await.unwrap();

    // The embedded replica: its copy keeps serving reads while the primary is down.
    let replica = LibSqlBackend::open_replica(dir.path().join("r.db"), &sqld.url(), "").await.unwrap();
    assert_eq!(load(&replica).await.as_ref(), Some(&changed));
    sqld.stop();
    let mut again = changed.clone();
    let more = vec![Change::SetHomeDc(2)];
    again.apply_all(&more);
    let e = kind(replica.persist(&more, &again).await.unwrap_err());
    assert!(matches!(e, SessionError::Unavailable { .. }), "replica persist: {e}");
    let e = replica.sync().await.unwrap_err();
    assert!(matches!(e, SessionError::Unavailable { .. }), "replica sync: {e}");
    assert_eq!(load(&replica).await.as_ref(), Some(&changed));
    sqld.restart();
    replica.persist(&more, &again).await.unwrap();
    replica.close().await.unwrap();
    let fresh = LibSqlBackend::open_remote(&sqld.url(), "").await.unwrap();
    assert_eq!(load(&fresh).await.as_ref(), Some(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_address_is_unavailable() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let e = LibSqlBackend::open_remote(&format!("http://127.0.0.1:{port}"), "").await.unwrap_err();
    assert!(matches!(e, SessionError::Unavailable { .. }), "{e}");
    // A server that accepts connections and never answers: the call's time limit applies.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let held = std::thread::spawn(move || silent.accept().map(|(conn, _)| conn));
    let started = std::time::Instant::now();
    let e = LibSqlBackend::open_remote_with_timeout(&url, "", std::time::Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(e, SessionError::Unavailable { .. }), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "the time limit was not applied");
    drop(held.join());
    let e = LibSqlBackend::open_remote("ftp://example.org", "").await.unwrap_err();
    assert!(matches!(e, SessionError::Invalid { .. }), "{e}");
}

/// Two clients on one remote session: each write is a transaction of upserts and keyed
/// deletes, so writes of different rows never undo each other; for the same row the last
/// committed write wins. No acknowledged change is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_client_is_refused_and_clients_taking_turns_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sqld = Sqld::start(&dir.path().join("server"), None);
    let a = LibSqlBackend::open_remote(&sqld.url(), "").await.unwrap();
    // Before leases, both opened and the last writer won; now the second is told who owns it.
    let e = LibSqlBackend::open_remote(&sqld.url(), "").await.unwrap_err();
    assert!(
        matches!(&e, SessionError::Locked { holder: Some(h), expires_in: Some(_), .. } if h.pid == std::process::id()),
        "{e}"
    );
    let mut view = sample_session(50);
    a.save_session(&view).await.unwrap();
    let mut written = Vec::new();
    let mut rng = Rng::new(1);
    for i in 0..40 {
        let peer = sample_peer(1_000_000 + i, &mut rng);
        persist(&a, &mut view, vec![Change::UpsertPeer(peer.clone())]).await;
        written.push(peer);
    }
    a.close().await.unwrap();
    let b = LibSqlBackend::open_remote(&sqld.url(), "").await.unwrap();
    for i in 0..40 {
        let peer = sample_peer(2_000_000 + i, &mut rng);
        persist(&b, &mut view, vec![Change::UpsertPeer(peer.clone())]).await;
        written.push(peer);
    }
    let stored = load(&b).await.unwrap();
    for peer in written {
        assert_eq!(stored.peers.get(peer.key()), Some(peer), "an acknowledged peer was lost");
    }
    assert_eq!(stored.peers.len(), 50 + 80);
    assert_eq!(stored, view);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_is_rolled_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let sqld = Sqld::start(&dir.path().join("server"), None);
    let backend = LibSqlBackend::open_remote(&sqld.url(), "").await.unwrap();
    let mut data = sample_session(20);
    backend.save_session(&data).await.unwrap();

    // The server refuses one peer: the whole change set must be refused.
    let mut rng = Rng::new(3);
    let good = sample_peer(500, &mut rng);
    let bad = sample_peer(501, &mut rng);
    raw(&sqld.url(), "")
        .await
        .execute(
            &format!(
                "CREATE TRIGGER refuse BEFORE INSERT ON peers WHEN NEW.id = {} BEGIN SELECT RAISE(ABORT, 'refused'); END",
                bad.id
            ),
            (),
        )
        .await
        .unwrap();
    // A full save writes peers as chunks: refuse every chunk from now on (the persists below
    // write rows, never chunks).
    raw(&sqld.url(), "")
        .await
        .execute(
            "CREATE TRIGGER refuse_chunk BEFORE INSERT ON peer_chunks BEGIN SELECT RAISE(ABORT, 'refused'); END",
            (),
        )
        .await
        .unwrap();
    let changes = vec![Change::SetHomeDc(5), Change::UpsertPeer(good.clone()), Change::UpsertPeer(bad.clone())];
    let mut changed = data.clone();
    changed.apply_all(&changes);
    let e = kind(backend.persist(&changes, &changed).await.unwrap_err());
    assert!(matches!(e, SessionError::Backend { .. }), "{e}");
    assert_eq!(load(&backend).await.as_ref(), Some(&data), "nothing of the failed change set is stored");
    let e = backend.save_session(&changed).await.unwrap_err();
    assert!(matches!(kind(e), SessionError::Backend { .. }));
    assert_eq!(load(&backend).await.as_ref(), Some(&data), "a failed save leaves the old session");

    // The connection is not stuck in a transaction.
    persist(&backend, &mut data, vec![Change::UpsertPeer(good.clone())]).await;
    assert_eq!(load(&backend).await.as_ref(), Some(&data));
    assert!(data.peers.get(PeerKey::new(good.kind.class(), good.id)).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_versions_and_foreign_databases() {
    let dir = tempfile::tempdir().unwrap();
    let sqld = Sqld::start(&dir.path().join("server"), None);
    let conn = raw(&sqld.url(), "").await;
    // Clients racing to create the schema: one migrates, the others see its work.
    let url = sqld.url();
    // (One owner at a time: each waits for the previous to close.)
    let opens = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            let options = RemoteOptions::default().wait_for_owner(std::time::Duration::from_secs(30));
            let backend = LibSqlBackend::open_remote_with(&url, "", options).await?;
            let empty = load(&backend).await.is_none();
            backend.close().await.map_err(kind)?;
            Ok::<bool, SessionError>(empty)
        })
    });
    for open in opens.collect::<Vec<_>>() {
        assert!(open.await.unwrap().unwrap());
    }
    // A second open of an up-to-date database does not migrate again.
    LibSqlBackend::open_remote(&sqld.url(), "").await.unwrap().close().await.unwrap();
    let version = session_sql::SCHEMA_VERSION;
    conn.execute(&format!("PRAGMA user_version = {}", version + 1), ()).await.unwrap();
    let e = LibSqlBackend::open_remote(&sqld.url(), "").await.unwrap_err();
    assert!(matches!(e, SessionError::UnsupportedVersion { found, .. } if found == version + 1), "{e}");

    let other = Sqld::start(&dir.path().join("other"), None);
    raw(&other.url(), "").await.execute("CREATE TABLE invoices (id INTEGER)", ()).await.unwrap();
    let e = LibSqlBackend::open_remote(&other.url(), "").await.unwrap_err();
    assert!(matches!(e, SessionError::Invalid { .. }), "{e}");
    // Refused before anything was written to it: not even the lease's tables.
    let mut rows =
        raw(&other.url(), "").await.query("SELECT name FROM sqlite_master WHERE type = 'table'", ()).await.unwrap();
    let mut tables = Vec::new();
    while let Some(row) = rows.next().await.unwrap() {
        tables.push(row.get::<String>(0).unwrap());
    }
    assert_eq!(tables, ["invoices"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_remote_share_the_schema() {
    // A session written by the local mode, copied row for row, reads the same remotely: the
    // tables are the same (the replica relies on this too).
    let dir = tempfile::tempdir().unwrap();
    let sqld = Sqld::start(&dir.path().join("server"), None);
    let local = LibSqlBackend::open_local(dir.path().join("l.db")).await.unwrap();
    assert_eq!((local.mode(), local.name()), (Mode::Local, "libsql-local"));
    let remote = LibSqlBackend::open_remote(&sqld.url(), "").await.unwrap();
    assert_eq!((remote.mode(), remote.name()), (Mode::Remote, "libsql-remote"));
    let data = sample_session(300);
    local.save_session(&data).await.unwrap();
    remote.save(&local.load().await.unwrap().unwrap()).await.unwrap();
    assert_eq!(load(&remote).await, load(&local).await);
    let conn = raw(&sqld.url(), "").await;
    let mut rows = conn.query("SELECT sum(peers) FROM peer_chunks", ()).await.unwrap();
    let n = rows.next().await.unwrap().unwrap().get::<i64>(0).unwrap();
    assert_eq!(n, 300, "a save writes the peers as chunks");
    remote.delete().await.unwrap();
    assert!(load(&remote).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_change_sets_apply_in_order_with_exact_values() {
    let dir = tempfile::tempdir().unwrap();
    let sqld = Sqld::start(&dir.path().join("server"), None);
    let backend = LibSqlBackend::open_remote(&sqld.url(), "").await.unwrap();
    let mut data = sample_session(0);
    backend.save_session(&data).await.unwrap();
    // One change set: 300 upserts in a row (sent as one JSON run), the same peers again with
    // other values (the later must win), extreme hashes, quotes, backslashes, non-ASCII and
    // JSON-looking text.
    let mut changes = Vec::new();
    for round in 0..2i64 {
        for i in 0..300i64 {
            let hash = match i % 4 {
                0 => i64::MIN,
                1 => i64::MAX,
                2 => -1 - round,
                _ => i * 1_000_003 + round,
            };
            let kind = session_core::PeerKind::ALL[usize::try_from(i % 8).unwrap()];
            let peer = session_core::Peer::new(10_000 + i, kind, hash)
                .with_min(round == 1)
                .with_usernames(vec![format!("o'k\\\"{i}"), "[1,2]".to_owned(), format!("ü{round}")])
                .with_phone((i % 3 == 0).then(|| format!("+{i}'{round}")));
            changes.push(Change::UpsertPeer(peer));
        }
    }
    changes.push(Change::RemovePeer(PeerKey::new(session_core::PeerClass::User, 10_000)));
    persist(&backend, &mut data, changes).await;
    assert_eq!(data.peers.len(), 299);
    assert_eq!(load(&backend).await.as_ref(), Some(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_shrink_under_a_small_response_limit() {
    // sqld refuses responses over 64 KB: the 20,000-row pages of a load must be halved until
    // they fit, inside the same read transaction; so must the pages of peer chunks, and a chunk
    // (4,096 peers, over 64 KB as base64) is read in pieces.
    let dir = tempfile::tempdir().unwrap();
    let sqld = Sqld::start_with(&dir.path().join("server"), None, &["--max-response-size", "64KB"]);
    let backend = LibSqlBackend::open_remote(&sqld.url(), "").await.unwrap();
    let mut data = sample_session(9_000);
    backend.save_session(&data).await.unwrap();
    // Peers persisted one by one are rows over the chunks (a remote database is never folded).
    let mut rng = Rng::new(11);
    let rows: Vec<Change> = (20_000..25_000).map(|n| Change::UpsertPeer(sample_peer(n, &mut rng))).collect();
    persist(&backend, &mut data, rows).await;
    // The limit is in force: all peers in one response are refused.
    let e = raw(&sqld.url(), "")
        .await
        .execute_batch("SELECT json_group_array(json_array(class, id, usernames)) FROM peers")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("RESPONSE_TOO_LARGE"), "{e}");
    assert_eq!(load(&backend).await.as_ref(), Some(&data));
    backend.close().await.unwrap();
    let replica = LibSqlBackend::open_replica(dir.path().join("r.db"), &sqld.url(), "").await.unwrap();
    assert_eq!(load(&replica).await.as_ref(), Some(&data));
}

/// A load is one batch when every table's first page holds all its rows, else a paged read
/// transaction: a session of more chunks than one page of them (32 of 4,096 peers) loads
/// exactly, and so does the same session cut to fit one batch again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_past_one_batch_loads_exactly_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let sqld = Sqld::start(&dir.path().join("server"), None);
    let backend = LibSqlBackend::open_remote(&sqld.url(), "").await.unwrap();
    let mut data = sample_session(33 * 4_096);
    backend.save_session(&data).await.unwrap();
    let mut chunks = raw(&sqld.url(), "").await.query("SELECT count(*) FROM peer_chunks", ()).await.unwrap();
    let n: i64 = chunks.next().await.unwrap().unwrap().get(0).unwrap();
    assert!(n > 32, "{n} chunks: the paged read is not reached");
    assert_eq!(load(&backend).await.as_ref(), Some(&data));
    let mut rng = Rng::new(5);
    let rows: Vec<Change> = (200_000..200_050).map(|n| Change::UpsertPeer(sample_peer(n, &mut rng))).collect();
    persist(&backend, &mut data, rows).await;
    assert_eq!(load(&backend).await.as_ref(), Some(&data));
    let small = sample_session(1_000);
    backend.save_session(&small).await.unwrap();
    assert_eq!(load(&backend).await.as_ref(), Some(&small));
    backend.close().await.unwrap();
}

/// A server database of schema version 2 (no checksums) with rows is migrated in one
/// interactive transaction that checksums them: it loads the same session, and then a value
/// changed behind the backend's back, or a row deleted, is `Corrupt`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_server_database_is_migrated_with_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let sqld = Sqld::start(&dir.path().join("server"), None);
    let conn = raw(&sqld.url(), "").await;
    let v1: String = session_sql::MIGRATIONS[0]
        .split(';')
        .filter(|s| !s.trim().is_empty() && !s.to_ascii_lowercase().contains("application_id"))
        .map(|s| format!("{s};"))
        .collect();
    conn.execute_batch(&v1).await.unwrap();
    conn.execute_batch(session_sql::MIGRATIONS[1]).await.unwrap();
    conn.execute_batch(
        "INSERT INTO session (id, home_dc, pts, qts, date, seq) VALUES (0, 2, 10, 2, 3, 4);
         INSERT INTO dcs (id, key_flags, flags, ip, port, auth_key, server_salt, time_offset)
           VALUES (2, 0, 0, '149.154.167.51', 443, zeroblob(256), 9, 0);
         INSERT INTO channels (id, pts) VALUES (1001, 50);
         INSERT INTO peers (class, id, kind, access_hash, min, usernames, phone) VALUES (0, 5, 1, 55, 0, NULL, NULL);
         PRAGMA user_version = 2;",
    )
    .await
    .unwrap();
    let mut expected = SessionData::default();
    expected.home_dc = 2;
    expected.updates = session_core::UpdateState::new(10, 2, 3, 4);
    expected.updates.channels.insert(1001, 50);
    expected.peers.insert(session_core::Peer::new(5, session_core::PeerKind::Bot, 55));
    let dc = session_core::DcOption::new(2, "149.154.167.51:443".parse().unwrap())
        .with_auth_key(session_core::AuthKey::from_slice(&[0; 256]))
        .with_salt(9, 0);
    expected.dcs.insert(dc.key(), dc);

    let backend = LibSqlBackend::open_remote(&sqld.url(), "").await.unwrap();
    assert_eq!(load(&backend).await.as_ref(), Some(&expected));
    let mut rows = conn.query("SELECT count(*) FROM dcs WHERE crc = 0", ()).await.unwrap();
    let row = rows.next().await.unwrap().unwrap();
    assert_eq!(row.get::<i64>(0).unwrap(), 0, "a row kept no checksum");
    // Changes keep the checksums and sums right.
    let mut data = expected.clone();
    persist(
        &backend,
        &mut data,
        vec![Change::SetHomeDc(4), Change::UpsertPeer(session_core::Peer::new(6, session_core::PeerKind::User, 1))],
    )
    .await;
    assert_eq!(load(&backend).await.as_ref(), Some(&data));
    // Behind its back: a row deleted.
    conn.execute("DELETE FROM channels WHERE id = 1001", ()).await.unwrap();
    let e = backend.load_session().await.unwrap_err();
    assert!(matches!(kind(e), SessionError::Corrupt { .. }));
}
