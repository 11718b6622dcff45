//! Sealed (encrypted at rest) sessions on a real PostgreSQL server: no 8-byte window of an auth
//! key or of the future auth token in any row read raw from the server (as bytes or as the hex
//! PostgreSQL shows a `bytea` in) nor in any file of its data directory (tables and WAL); a wrong
//! or missing key is a typed error that leaves the rows as they were; a value moved to another
//! named session, or a flipped bit, is an error that changes nothing.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use session_core::{
    AuthKey, Change, DcOption, Keyring, Peer, PeerKind, SealingKey, SessionBackend, SessionData, SessionError,
};
use session_postgres::{PostgresBackend, PostgresOptions};
use session_sql::{row_crc, SqlValueRef, Table};
use session_testkit::{sample_session, Rng};
use support::Postgres;

fn key(byte: u8) -> SealingKey {
    SealingKey::from_bytes([byte; 32])
}

fn keys(byte: u8) -> Keyring {
    Keyring::new(key(byte))
}

const PHONE: &str = "+15550123987";

fn secret_session(seed: u64) -> SessionData {
    let mut data = sample_session(40);
    data.apply(&Change::SetDc(
        DcOption::new(2, "149.154.167.51:443".parse().unwrap())
            .with_auth_key(AuthKey::from_slice(&Rng::new(seed).bytes(256))),
    ));
    data.apply(&Change::SetAuthKey { dc_id: 4, key: AuthKey::from_slice(&Rng::new(seed + 1).bytes(256)) });
    data.apply(&Change::SetFutureAuthToken(Some(Rng::new(seed + 2).bytes(64))));
    data.apply(&Change::UpsertPeer(Peer::new(555_001, PeerKind::User, 17).with_phone(Some(PHONE.into()))));
    data
}

/// Saves `data`, then persists a batch of peers, a new auth key and a new token.
async fn write(backend: &PostgresBackend, mut data: SessionData) -> SessionData {
    backend.save_session(&data).await.unwrap();
    let batch: Vec<Change> = (0..30).map(|i| Change::UpsertPeer(Peer::new(900 + i, PeerKind::User, i))).collect();
    data.apply_all(&batch);
    backend.persist(&batch, &data).await.unwrap();
    let more = vec![
        Change::UpsertPeer(Peer::new(901, PeerKind::User, 5)),
        Change::SetAuthKey { dc_id: 5, key: AuthKey::from_slice(&Rng::new(77).bytes(256)) },
        Change::SetFutureAuthToken(Some(Rng::new(78).bytes(48))),
    ];
    data.apply_all(&more);
    backend.persist(&more, &data).await.unwrap();
    data
}

/// Every 8-byte window of every auth key and of the future auth token.
fn windows(data: &SessionData) -> HashSet<[u8; 8]> {
    let mut secrets: Vec<Vec<u8>> =
        data.dcs.values().filter_map(|d| d.auth_key.as_ref()).map(|k| k.as_bytes().to_vec()).collect();
    secrets.extend(data.future_auth_token.clone());
    assert!(secrets.len() >= 4);
    secrets.iter().flat_map(|s| s.windows(8).map(|w| <[u8; 8]>::try_from(w).unwrap())).collect()
}

fn assert_no_secret(what: &str, bytes: &[u8], secret: &HashSet<[u8; 8]>) {
    assert!(!bytes.windows(8).any(|w| secret.contains(w)), "{what} holds 8 bytes of a secret");
    // A `bytea` shown as text is hex.
    let hex: HashSet<String> =
        secret.iter().map(|w| w.iter().map(|b| format!("{b:02x}")).collect::<String>()).collect();
    let text = String::from_utf8_lossy(bytes);
    assert!(!hex.iter().any(|h| text.contains(h.as_str())), "{what} holds 8 bytes of a secret as hex");
    assert!(!text.contains(PHONE), "{what} holds a phone number");
}

fn options(name: &str) -> PostgresOptions {
    PostgresOptions::new().session(name).call_timeout(Duration::from_secs(30)).wait_for_owner(Duration::from_secs(10))
}

async fn client(pg: &Postgres) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// Every row of the session schema's tables as PostgreSQL's JSON text, in a stable order.
async fn dump(pg: &Postgres) -> Vec<String> {
    let client = client(pg).await;
    let mut out = Vec::new();
    for table in session_sql::TABLES {
        let sql = format!("SELECT row_to_json(t)::text FROM layer_session.{table} t ORDER BY 1");
        for row in client.query(&sql, &[]).await.unwrap() {
            out.push(format!("{table}: {}", row.get::<_, String>(0)));
        }
    }
    out
}

/// The bytes of every file under `dir` (PostgreSQL's tables and WAL), file by file.
fn scan(dir: &Path, secret: &HashSet<[u8; 8]>, seen: &mut usize) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scan(&path, secret, seen);
        } else if let Ok(bytes) = std::fs::read(&path) {
            *seen += bytes.len();
            assert!(!bytes.windows(8).any(|w| secret.contains(w)), "{} holds 8 bytes of a secret", path.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_session_round_trips_and_the_server_holds_no_secret() {
    let pg = Postgres::start();
    let backend = options("default").open_with_key(&pg.url(), keys(1)).await.unwrap();
    assert_eq!(backend.sealed_with(), Some(key(1).id()));
    let data = write(&backend, secret_session(1)).await;
    assert_eq!(backend.load_session().await.unwrap(), Some(data.clone()));
    let rows = dump(&pg).await;
    assert!(rows.iter().any(|r| r.starts_with("seal: ")), "the seal record is stored");
    let secret = windows(&data);
    assert_no_secret("the rows on PostgreSQL", rows.join("\n").as_bytes(), &secret);
    // Written to the data files as well as logged in the WAL.
    client(&pg).await.batch_execute("CHECKPOINT").await.unwrap();
    let mut seen = 0;
    scan(&pg.dir.path().join("data"), &secret, &mut seen);
    assert!(seen > 1 << 20, "the data directory was read ({seen} bytes)");
    backend.close().await.unwrap();
    drop(backend);
    let again = options("default").open_with_key(&pg.url(), keys(1)).await.unwrap();
    assert_eq!(again.load_session().await.unwrap(), Some(data));
    again.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_key_is_typed_and_changes_no_row() {
    let pg = Postgres::start();
    let backend = options("default").open_with_key(&pg.url(), keys(1)).await.unwrap();
    write(&backend, secret_session(2)).await;
    backend.close().await.unwrap();
    drop(backend);
    let before = dump(&pg).await;
    match options("default").open(&pg.url()).await {
        Err(SessionError::Sealed { key_id, .. }) => assert_eq!(key_id, Some(key(1).id())),
        other => panic!("expected Sealed, got {other:?}"),
    }
    match options("default").open_with_key(&pg.url(), keys(2)).await {
        Err(SessionError::WrongKey { key_id, .. }) => assert_eq!(key_id, key(1).id()),
        other => panic!("expected WrongKey, got {other:?}"),
    }
    assert!(matches!(options("other").open(&pg.url()).await, Err(SessionError::Sealed { .. })));
    assert!(dump(&pg).await == before, "a refused open changed the session rows");
}

/// Puts `sealed` into the `peers` row (sid, id), with the checksum and sum that then match.
async fn put_sealed(client: &tokio_postgres::Client, sid: i64, id: i64, sealed: &str) {
    let row = client
        .query_one("SELECT class, crc FROM layer_session.peers WHERE sid = $1 AND id = $2", &[&sid, &id])
        .await
        .unwrap();
    let (class, old): (i64, i64) = (row.get(0), row.get(1));
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
    client
        .execute(
            "UPDATE layer_session.peers SET sealed = $1, crc = $2 WHERE sid = $3 AND id = $4",
            &[&sealed, &crc, &sid, &id],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE layer_session.session SET peers_sum = (peers_sum - $1 + $2 + 4294967296) % 4294967296 \
             WHERE sid = $3",
            &[&old, &crc, &sid],
        )
        .await
        .unwrap();
}

async fn refused(pg: &Postgres, name: &str, what: &str) -> SessionError {
    let before = dump(pg).await;
    let backend = options(name).open_with_key(&pg.url(), keys(1)).await.unwrap();
    let err = match backend.load_session().await {
        Ok(_) => panic!("{what}: the load succeeded"),
        Err(e) => SessionError::from_boxed(e, "postgres"),
    };
    backend.close().await.unwrap();
    assert!(dump(pg).await == before, "{what}: the failed load changed rows");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_and_flipped_values_are_errors_and_change_nothing() {
    let pg = Postgres::start();
    for name in ["a", "b"] {
        let backend = options(name).open_with_key(&pg.url(), keys(1)).await.unwrap();
        write(&backend, secret_session(3)).await;
        backend.close().await.unwrap();
    }
    let client = client(&pg).await;
    let sid = |name: &'static str| {
        let client = &client;
        async move {
            client.query_one("SELECT id FROM layer_session.sessions WHERE name = $1", &[&name]).await.unwrap().get(0)
        }
    };
    let (a, b): (i64, i64) = (sid("a").await, sid("b").await);
    let sealed_of = |sid: i64, id: i64| {
        let client = &client;
        async move {
            client
                .query_one("SELECT sealed FROM layer_session.peers WHERE sid = $1 AND id = $2", &[&sid, &id])
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    let (a905, b905, b906) = (sealed_of(a, 905).await, sealed_of(b, 905).await, sealed_of(b, 906).await);

    // Moved to the same row of another named session.
    put_sealed(&client, b, 905, &a905).await;
    let err = refused(&pg, "b", "moved session").await;
    assert!(matches!(&err, SessionError::Corrupt { reason, .. } if reason.contains("authenticate")), "{err}");
    put_sealed(&client, b, 905, &b905).await;

    // Moved to another row of the same session.
    put_sealed(&client, b, 905, &b906).await;
    let err = refused(&pg, "b", "moved row").await;
    assert!(matches!(&err, SessionError::Corrupt { reason, .. } if reason.contains("authenticate")), "{err}");
    put_sealed(&client, b, 905, &b905).await;

    // A flipped bit (the checksum made to match): the seal's tag catches it.
    let mut flipped = b905.clone().into_bytes();
    let at = flipped.len() / 2;
    flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
    put_sealed(&client, b, 905, std::str::from_utf8(&flipped).unwrap()).await;
    let err = refused(&pg, "b", "flipped bit").await;
    assert!(matches!(&err, SessionError::Corrupt { .. }), "{err}");
    put_sealed(&client, b, 905, &b905).await;

    // Put back, both sessions load.
    for name in ["a", "b"] {
        let backend = options(name).open_with_key(&pg.url(), keys(1)).await.unwrap();
        assert!(backend.load_session().await.unwrap().is_some(), "{name}");
        backend.close().await.unwrap();
    }
}

struct SealedSessions {
    pg: Postgres,
    next: std::sync::atomic::AtomicUsize,
}

#[session_core::async_trait]
impl session_testkit::Harness for SealedSessions {
    type Backend = PostgresBackend;

    async fn fresh(&self) -> Result<PostgresBackend, session_core::BoxError> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(options(&format!("s{n}")).open_with_key(&self.pg.url(), keys(9)).await?)
    }

    async fn reopen(
        &self,
        old: std::sync::Arc<PostgresBackend>,
    ) -> Result<std::sync::Arc<PostgresBackend>, session_core::BoxError> {
        let name = old.session().to_owned();
        drop(old);
        Ok(std::sync::Arc::new(options(&name).open_with_key(&self.pg.url(), keys(9)).await?))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_sessions_pass_the_suite_and_a_thousand_peers_round_trip() {
    let sessions = SealedSessions { pg: Postgres::start(), next: std::sync::atomic::AtomicUsize::new(0) };
    session_testkit::run_all(&sessions).await;
    session_testkit::many_peers(&sessions, 1_000).await;
}
