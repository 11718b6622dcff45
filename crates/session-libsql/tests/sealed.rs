//! Sealed (encrypted at rest) sessions on a real sqld, in an embedded replica and in a local
//! file: no 8-byte window of an auth key or of the future auth token in any row read raw from
//! the server, in any file of the server's directory or in the replica's copy; a wrong or missing
//! key is a typed error that leaves the server's rows as they were; a value moved to another
//! named session on the server is an error that changes nothing.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::path::Path;
use std::time::Duration;

use session_core::{AuthKey, Change, DcOption, Keyring, Peer, PeerKind, SealingKey, SessionData, SessionError};
use session_libsql::{LibSqlBackend, RemoteOptions, SessionBackend};
use session_sql::{row_crc, SqlValueRef, Table};
use session_testkit::{sample_session, Rng};
use support::Sqld;

fn key(byte: u8) -> SealingKey {
    SealingKey::from_bytes([byte; 32])
}

fn keys(byte: u8) -> Keyring {
    Keyring::new(key(byte))
}

/// A session with known auth keys on two DCs and a future auth token.
fn secret_session(seed: u64) -> SessionData {
    let mut data = sample_session(40);
    data.apply(&Change::SetDc(
        DcOption::new(2, "149.154.167.51:443".parse().unwrap())
            .with_auth_key(AuthKey::from_slice(&Rng::new(seed).bytes(256))),
    ));
    data.apply(&Change::SetAuthKey { dc_id: 4, key: AuthKey::from_slice(&Rng::new(seed + 1).bytes(256)) });
    data.apply(&Change::SetFutureAuthToken(Some(Rng::new(seed + 2).bytes(64))));
    data
}

/// Saves `data`, then persists a batch of peers, a new auth key and a new token.
async fn write(backend: &LibSqlBackend, mut data: SessionData) -> SessionData {
    backend.save_session(&data).await.unwrap();
    let batch: Vec<Change> = (0..30).map(|i| Change::UpsertPeer(Peer::new(900 + i, PeerKind::User, i))).collect();
    data.apply_all(&batch);
    backend.persist(&batch, &data).await.unwrap();
    let more = vec![
        Change::SetAuthKey { dc_id: 5, key: AuthKey::from_slice(&Rng::new(77).bytes(256)) },
        Change::SetFutureAuthToken(Some(Rng::new(78).bytes(48))),
    ];
    data.apply_all(&more);
    backend.persist(&more, &data).await.unwrap();
    data
}

fn secrets(data: &SessionData) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> =
        data.dcs.values().filter_map(|d| d.auth_key.as_ref()).map(|k| k.as_bytes().to_vec()).collect();
    out.extend(data.future_auth_token.clone());
    assert!(out.len() >= 4);
    out
}

fn assert_no_secret(what: &str, bytes: &[u8], data: &SessionData) {
    for secret in secrets(data) {
        for window in secret.windows(8) {
            assert!(!bytes.windows(8).any(|w| w == window), "{what} holds 8 bytes of a secret");
        }
    }
}

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

async fn raw(url: &str) -> libsql::Connection {
    libsql::Builder::new_remote(url.to_owned(), String::new()).build().await.unwrap().connect().unwrap()
}

/// Every row of the session schema's tables, as the server returns them, in a stable order.
async fn dump(url: &str) -> Vec<(String, Vec<libsql::Value>)> {
    let conn = raw(url).await;
    let mut out = Vec::new();
    for table in session_sql::TABLES {
        let mut rows = conn.query(&format!("SELECT * FROM {table} ORDER BY 1, 2"), ()).await.unwrap();
        while let Some(row) = rows.next().await.unwrap() {
            let values = (0..row.column_count()).map(|i| row.get_value(i).unwrap()).collect();
            out.push(((*table).to_owned(), values));
        }
    }
    out
}

/// The bytes of every value of [`dump`] (integers in both byte orders).
fn dump_bytes(rows: &[(String, Vec<libsql::Value>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (_, values) in rows {
        for v in values {
            match v {
                libsql::Value::Integer(i) => {
                    out.extend(i.to_le_bytes());
                    out.extend(i.to_be_bytes());
                }
                libsql::Value::Text(t) => out.extend(t.as_bytes()),
                libsql::Value::Blob(b) => out.extend(b),
                _ => {}
            }
            out.push(0);
        }
    }
    out
}

fn waiting() -> RemoteOptions {
    RemoteOptions::default().wait_for_owner(Duration::from_secs(10))
}

async fn open_sealed(url: &str, name: &str, byte: u8) -> Result<LibSqlBackend, SessionError> {
    LibSqlBackend::open_remote_with_key(url, "", waiting().session(name), keys(byte)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_remote_session_round_trips_and_the_server_sees_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let sqld = Sqld::start(&dir.path().join("server"), None);
    let url = sqld.url();
    let backend = open_sealed(&url, "default", 1).await.unwrap();
    let data = write(&backend, secret_session(1)).await;
    assert_eq!(backend.load_session().await.unwrap(), Some(data.clone()));
    let rows = dump(&url).await;
    assert!(rows.iter().any(|(t, _)| t == "seal"), "the seal record is stored");
    assert_no_secret("the rows on sqld", &dump_bytes(&rows), &data);
    let mut all = Vec::new();
    files(&dir.path().join("server"), &mut all);
    assert!(!all.is_empty());
    for file in &all {
        assert_no_secret(&file.display().to_string(), &std::fs::read(file).unwrap(), &data);
    }
    backend.close().await.unwrap();
    drop(backend);
    let again = open_sealed(&url, "default", 1).await.unwrap();
    assert_eq!(again.load_session().await.unwrap(), Some(data));
    again.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_key_is_typed_and_changes_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let sqld = Sqld::start(&dir.path().join("server"), None);
    let url = sqld.url();
    let backend = open_sealed(&url, "default", 1).await.unwrap();
    write(&backend, secret_session(2)).await;
    backend.close().await.unwrap();
    drop(backend);
    let before = dump(&url).await;
    match LibSqlBackend::open_remote_with(&url, "", waiting()).await {
        Err(SessionError::Sealed { key_id, .. }) => assert_eq!(key_id, Some(key(1).id())),
        other => panic!("expected Sealed, got {other:?}"),
    }
    match open_sealed(&url, "default", 2).await {
        Err(SessionError::WrongKey { key_id, .. }) => assert_eq!(key_id, key(1).id()),
        other => panic!("expected WrongKey, got {other:?}"),
    }
    // Another name of the same database: refused before its name is registered.
    assert!(matches!(
        LibSqlBackend::open_remote_with(&url, "", waiting().session("other")).await,
        Err(SessionError::Sealed { .. })
    ));
    assert!(dump(&url).await == before, "a refused open changed the session rows");
}

/// Puts `sealed` into the `peers` row (sid, id) on the server, with the checksum and sum that
/// then match: only the seal can tell.
async fn put_sealed(conn: &libsql::Connection, sid: i64, id: i64, sealed: &str) {
    let mut rows =
        conn.query("SELECT class, crc FROM peers WHERE sid = ?1 AND id = ?2", libsql::params![sid, id]).await.unwrap();
    let row = rows.next().await.unwrap().unwrap();
    let (class, old): (i64, i64) = (row.get(0).unwrap(), row.get(1).unwrap());
    let crc = row_crc(
        Table::Peers,
        &[
            SqlValueRef::Integer(class),
            SqlValueRef::Integer(id),
            SqlValueRef::Integer(0),
            SqlValueRef::Integer(0),
            SqlValueRef::Integer(0),
            SqlValueRef::Null,
            SqlValueRef::Null,
            SqlValueRef::Text(sealed),
        ],
    );
    conn.execute(
        "UPDATE peers SET sealed = ?1, crc = ?2 WHERE sid = ?3 AND id = ?4",
        libsql::params![sealed, crc, sid, id],
    )
    .await
    .unwrap();
    conn.execute(
        "UPDATE session SET peers_sum = (peers_sum - ?1 + ?2 + 4294967296) % 4294967296 WHERE sid = ?3",
        libsql::params![old, crc, sid],
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_moved_to_another_session_on_the_server_is_an_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sqld = Sqld::start(&dir.path().join("server"), None);
    let url = sqld.url();
    for name in ["a", "b"] {
        let backend = open_sealed(&url, name, 1).await.unwrap();
        write(&backend, secret_session(3)).await;
        backend.close().await.unwrap();
    }
    let conn = raw(&url).await;
    let sid = |name: &'static str| {
        let conn = &conn;
        async move {
            let mut rows = conn.query("SELECT id FROM sessions WHERE name = ?1", [name]).await.unwrap();
            rows.next().await.unwrap().unwrap().get::<i64>(0).unwrap()
        }
    };
    let (a, b) = (sid("a").await, sid("b").await);
    let mut rows = conn.query("SELECT sealed FROM peers WHERE sid = ?1 AND id = 905", [a]).await.unwrap();
    let sealed: String = rows.next().await.unwrap().unwrap().get(0).unwrap();
    drop(rows);
    put_sealed(&conn, b, 905, &sealed).await;
    let before = dump(&url).await;
    let backend = open_sealed(&url, "b", 1).await.unwrap();
    let err = match backend.load_session().await {
        Ok(_) => panic!("a moved value loaded"),
        Err(e) => SessionError::from_boxed(e, "libsql"),
    };
    assert!(matches!(&err, SessionError::Corrupt { reason, .. } if reason.contains("authenticate")), "{err}");
    backend.close().await.unwrap();
    // Session a still loads.
    let other = open_sealed(&url, "a", 1).await.unwrap();
    assert!(other.load_session().await.unwrap().is_some());
    other.close().await.unwrap();
    assert!(dump(&url).await == before, "the failed load changed rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_replica_and_a_sealed_local_file_hold_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let sqld = Sqld::start(&dir.path().join("server"), None);
    let url = sqld.url();
    let copy = dir.path().join("replica.db");
    let replica = LibSqlBackend::open_replica_with_key(&copy, &url, "", waiting(), keys(1)).await.unwrap();
    let data = write(&replica, secret_session(4)).await;
    assert_eq!(replica.load_session().await.unwrap(), Some(data.clone()));
    for file in [copy.clone(), dir.path().join("replica.db-wal")] {
        if let Ok(bytes) = std::fs::read(&file) {
            assert_no_secret(&file.display().to_string(), &bytes, &data);
        }
    }
    assert_no_secret("the rows on sqld", &dump_bytes(&dump(&url).await), &data);
    replica.close().await.unwrap();
    drop(replica);
    // The copy is sealed like the server: without the key it does not open.
    assert!(matches!(
        LibSqlBackend::open_replica_with(&copy, &url, "", waiting()).await,
        Err(SessionError::Sealed { .. })
    ));

    let local = dir.path().join("local.db");
    let backend = LibSqlBackend::open_local_with_key(&local, keys(2)).await.unwrap();
    let data = write(&backend, secret_session(5)).await;
    assert_no_secret("the local file", &std::fs::read(&local).unwrap(), &data);
    if let Ok(wal) = std::fs::read(dir.path().join("local.db-wal")) {
        assert_no_secret("the local -wal", &wal, &data);
    }
    drop(backend);
    assert!(matches!(LibSqlBackend::open_local(&local).await, Err(SessionError::Sealed { .. })));
    let backend = LibSqlBackend::open_local_with_key(&local, keys(2)).await.unwrap();
    assert_eq!(backend.load_session().await.unwrap(), Some(data));
}

/// Named sealed sessions of one sqld database.
struct SealedRemote {
    sqld: Sqld,
    next: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl session_testkit::Harness for SealedRemote {
    type Backend = LibSqlBackend;

    async fn fresh(&self) -> Result<LibSqlBackend, session_core::BoxError> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(open_sealed(&self.sqld.url(), &format!("s{n}"), 9).await?)
    }

    async fn reopen(
        &self,
        old: std::sync::Arc<LibSqlBackend>,
    ) -> Result<std::sync::Arc<LibSqlBackend>, session_core::BoxError> {
        let name = old.session_name().to_owned();
        drop(old);
        Ok(std::sync::Arc::new(open_sealed(&self.sqld.url(), &name, 9).await?))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_remote_sessions_pass_the_suite_and_a_thousand_peers_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let remote = SealedRemote { sqld: Sqld::start(&dir.path().join("server"), None), next: Default::default() };
    session_testkit::run_all(&remote).await;
    session_testkit::many_peers(&remote, 1_000).await;
}
