//! The client on real files: backend selection by path, one owner, reopen after a restart, and
//! a client process killed mid-run (`layer-client-test-child`, `tests/bin/child.rs`, built with
//! the internal `test-children` feature, as is this test).

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use grammers_tl_types::{self as tl, Identifiable};
use layer_client::core::{Change, SelfUser, SessionBackend, SessionData, SessionError};
use layer_client::session_backend::BinaryFileBackend;
use layer_client::{Client, ClientError, Config};
use support::{routes, session_for, state, Dc, Handler, Reply};
use tokio::io::{AsyncBufReadExt, BufReader};

const API_ID: i32 = 424242;
const API_HASH: &str = "0123456789abcdef0123456789abcdef";

fn handler<F: Fn(&support::Call) -> Reply + Send + Sync + 'static>(f: F) -> Handler {
    Arc::new(f)
}

async fn cluster() -> (Dc, Dc) {
    let dc2 = Dc::start(
        2,
        2,
        routes(HashMap::from([(
            tl::functions::auth::ImportBotAuthorization::CONSTRUCTOR_ID,
            handler(|_| Reply::err(303, "USER_MIGRATE_4")),
        )])),
    )
    .await;
    let dc4 = Dc::start(
        4,
        4,
        routes(HashMap::from([
            (
                tl::functions::auth::ImportBotAuthorization::CONSTRUCTOR_ID,
                handler(|_| support::authorization(support::self_user(1001, 0x5eed, true))),
            ),
            (tl::functions::updates::GetState::CONSTRUCTOR_ID, handler(|_| state(321, 7, 1_700_000_100, 12))),
        ])),
    )
    .await;
    (dc2, dc4)
}

/// Writes `data` to a session file the way an earlier run would have left it.
async fn seed(path: &Path, data: &SessionData) {
    let backend = BinaryFileBackend::open(path).await.unwrap();
    backend.save_session(data).await.unwrap();
}

async fn reopen(path: &Path) -> SessionData {
    BinaryFileBackend::open(path).await.unwrap().load_session().await.unwrap().expect("a session")
}

fn config(path: &Path) -> Config {
    Config { session_path: path.into(), api_id: API_ID, api_hash: API_HASH.into(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_migration_survives_a_restart_of_the_file() {
    let (dc2, dc4) = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bot.session");
    seed(&path, &session_for(&[&dc2, &dc4], 2, None)).await;

    let (client, shutdown) = Client::connect(config(&path)).await.unwrap();
    client.bot_sign_in("1001:token").await.unwrap();
    shutdown.shutdown().await.unwrap();
    drop(client);

    let stored = reopen(&path).await;
    assert_eq!(stored.home_dc, 4);
    assert_eq!(stored.user, Some(SelfUser::new(1001, true)));
    assert_eq!(stored.auth_key(4).map(|k| *k.as_bytes()), Some(dc4.key));
    assert_eq!(stored.api_id, Some(API_ID));
    assert_eq!(stored.updates.pts, 321);

    let (client, shutdown) = Client::connect(config(&path)).await.unwrap();
    assert!(client.is_authorized().await.unwrap());
    assert_eq!(dc4.count::<tl::functions::updates::GetState>(), 2);
    shutdown.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_second_client_on_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.session");
    let (first, shutdown) = Client::connect(config(&path)).await.unwrap();
    let err = Client::connect(config(&path)).await.unwrap_err();
    match &err {
        ClientError::Session(SessionError::Locked { pid, .. }) => assert_eq!(*pid, Some(std::process::id())),
        other => panic!("expected a locked error, got {other:?}"),
    }
    shutdown.shutdown().await.unwrap();
    drop(first);
    // Once the first client is gone, the file opens again.
    let (_again, shutdown) = Client::connect(config(&path)).await.unwrap();
    shutdown.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_corrupt_file_fails_connect_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.session");
    let mut data = SessionData::default();
    data.apply(&Change::SetUser(Some(SelfUser::new(9, false))));
    seed(&path, &data).await;
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();

    let err = Client::connect(config(&path)).await.unwrap_err();
    assert!(matches!(err, ClientError::Session(SessionError::Corrupt { .. })), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the damaged file is not replaced by a new session");
}

#[cfg(not(feature = "sqlite-session"))]
#[tokio::test]
async fn a_db_path_without_the_sqlite_feature_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.db");
    let err = Client::connect(config(&path)).await.unwrap_err();
    assert!(matches!(err, ClientError::FeatureDisabled { feature: "sqlite-session", .. }), "{err:?}");
    assert!(err.to_string().contains("sqlite-session"), "{err}");
    assert!(!path.exists(), "nothing was created");
}

#[cfg(feature = "sqlite-session")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_db_path_selects_sqlite() {
    let (dc2, dc4) = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.db");
    {
        let backend = layer_client::session_backend::SqliteBackend::open(&path).await.unwrap();
        backend.save_session(&session_for(&[&dc2, &dc4], 2, None)).await.unwrap();
    }
    let (client, shutdown) = Client::connect(config(&path)).await.unwrap();
    assert_eq!(client.session().backend().name(), "sqlite");
    client.bot_sign_in("1001:token").await.unwrap();
    shutdown.shutdown().await.unwrap();
    drop(client);
    let backend = layer_client::session_backend::SqliteBackend::open(&path).await.unwrap();
    let stored = backend.load_session().await.unwrap().unwrap();
    assert_eq!((stored.home_dc, stored.user), (4, Some(SelfUser::new(1001, true))));
}

/// The child program; in mode `kill` it signs in, then caches peers without end, printing
/// `ACK n` each time `n` peers are durable.
const CHILD: &str = env!("CARGO_BIN_EXE_layer-client-test-child");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_client_leaves_a_loadable_session() {
    let (dc2, dc4) = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.session");
    seed(&path, &session_for(&[&dc2, &dc4], 2, None)).await;

    for round in 0..6u64 {
        let mut child = tokio::process::Command::new(CHILD)
            .arg("kill")
            .arg(&path)
            .args([&API_ID.to_string(), API_HASH])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked;
        let mut signed_in = false;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(40 + 37 * round);
        loop {
            let next = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
            let line = next.expect("child made progress").unwrap().expect("child is running");
            if line.ends_with("SIGNED_IN") {
                signed_in = true;
            } else if let Some(n) = line.split("ACK ").nth(1) {
                acked = n.trim().parse().unwrap();
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
        }
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();
        assert!(signed_in);

        let stored = reopen(&path).await;
        assert_eq!(stored.home_dc, 4, "round {round}");
        assert_eq!(stored.user, Some(SelfUser::new(1001, true)), "round {round}");
        assert_eq!(stored.auth_key(4).map(|k| *k.as_bytes()), Some(dc4.key), "round {round}");
        assert!(
            stored.peers.len() >= acked,
            "round {round}: {} peers stored, {acked} acknowledged",
            stored.peers.len()
        );
    }
}

#[cfg(feature = "libsql-session")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_libsql_local_file_keeps_the_migrated_login() {
    use layer_client::session_backend::LibSqlBackend;
    let (dc2, dc4) = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.libsql");
    {
        let backend = LibSqlBackend::open_local(&path).await.unwrap();
        backend.save_session(&session_for(&[&dc2, &dc4], 2, None)).await.unwrap();
    }
    let backend = LibSqlBackend::open_local(&path).await.unwrap();
    let (client, shutdown) =
        Client::builder().session(backend).api_id(API_ID).api_hash(API_HASH).connect().await.unwrap();
    client.bot_sign_in("1001:token").await.unwrap();
    shutdown.shutdown().await.unwrap();
    drop(client);
    let stored = LibSqlBackend::open_local(&path).await.unwrap().load_session().await.unwrap().unwrap();
    assert_eq!((stored.home_dc, stored.user), (4, Some(SelfUser::new(1001, true))));
}

#[cfg(feature = "libsql-session")]
#[tokio::test]
async fn a_libsql_server_that_is_down_fails_connect() {
    use layer_client::session_backend::LibSqlBackend;
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let err = match LibSqlBackend::open_remote(&url, "token").await {
        Err(e) => ClientError::Session(e),
        Ok(backend) => {
            Client::builder().session(backend).api_id(API_ID).api_hash(API_HASH).connect().await.unwrap_err()
        }
    };
    assert!(matches!(err, ClientError::Session(SessionError::Unavailable { .. })), "{err:?}");
}
