//! Encryption at rest through the client: `ClientBuilder::session_key` / `Config::session_key`
//! seal the session the builder opens (file, SQLite file, string), a sealed session is refused
//! without the key (`Sealed`) or with another key (`WrongKey`) instead of starting a new login,
//! and no stored byte holds any 8-byte window of the auth key.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use grammers_tl_types::{self as tl, Identifiable};
use layer_client::core::{Keyring, SealingKey, SelfUser, SessionBackend, SessionError};
use layer_client::session_backend::{BinaryFileBackend, InMemoryBackend};
use layer_client::{Client, ClientError, Config};
use support::{routes, session_for, state, Dc, Handler, Reply};

const API_ID: i32 = 424242;
const API_HASH: &str = "0123456789abcdef0123456789abcdef";

fn handler<F: Fn(&support::Call) -> Reply + Send + Sync + 'static>(f: F) -> Handler {
    Arc::new(f)
}

async fn dc() -> Dc {
    Dc::start(
        2,
        2,
        routes(HashMap::from([(
            tl::functions::updates::GetState::CONSTRUCTOR_ID,
            handler(|_| state(10, 0, 1_700_000_000, 1)),
        )])),
    )
    .await
}

/// A builder with the test's application credentials.
fn builder() -> layer_client::ClientBuilder {
    Client::builder().api_id(API_ID).api_hash(API_HASH)
}

fn key(byte: u8) -> Keyring {
    Keyring::new(SealingKey::from_bytes([byte; 32]))
}

/// Every file in `dir` (the session, its `-wal`, `-shm`, backups), read raw.
fn stored_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

fn assert_no_window_of(secret: &[u8], files: &[(String, Vec<u8>)]) {
    assert!(!files.is_empty());
    for (name, bytes) in files {
        for window in secret.windows(8) {
            assert!(!bytes.windows(8).any(|w| w == window), "{name} holds 8 bytes of the auth key");
        }
    }
}

fn connect_err(result: Result<(Client, layer_client::ShutdownHandle), ClientError>) -> ClientError {
    match result {
        Ok(_) => panic!("a sealed session must not open"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_session_is_sealed_with_the_builders_key_and_refused_without_it() {
    let dc = dc().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bot.session");
    // A plain session of an earlier run: sealed by the first write of a client given a key.
    BinaryFileBackend::open(&path)
        .await
        .unwrap()
        .save_session(&session_for(&[&dc], 2, Some(SelfUser::new(77, false))))
        .await
        .unwrap();

    let (client, shutdown) = builder().session_path(&path).session_key(key(1)).connect().await.unwrap();
    assert!(client.is_authorized().await.unwrap());
    shutdown.shutdown().await.unwrap();
    drop(client);
    assert_no_window_of(&dc.key, &stored_bytes(dir.path()));

    let plain = builder().session_path(&path).connect().await;
    assert!(matches!(connect_err(plain), ClientError::Session(SessionError::Sealed { .. })));
    let wrong = builder().session_path(&path).session_key(key(2)).connect();
    assert!(matches!(connect_err(wrong.await), ClientError::Session(SessionError::WrongKey { .. })));

    // Config takes the key too; the session is still the logged-in one.
    let (client, shutdown) = Client::connect(Config {
        session_path: path.clone(),
        api_id: API_ID,
        api_hash: API_HASH.into(),
        session_key: Some(key(1)),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(client.is_authorized().await.unwrap());
    assert_eq!(client.session().snapshot().user, Some(SelfUser::new(77, false)));
    shutdown.shutdown().await.unwrap();
}

#[cfg(feature = "sqlite-session")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_session_is_sealed_with_the_builders_key_and_refused_without_it() {
    use layer_client::session_backend::SqliteBackend;
    let dc = dc().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bot.db");
    {
        let backend = SqliteBackend::open_with_key(&path, key(3)).await.unwrap();
        backend.save_session(&session_for(&[&dc], 2, Some(SelfUser::new(78, false)))).await.unwrap();
        backend.close().await.unwrap();
    }
    let (client, shutdown) = builder().session_path(&path).session_key(key(3)).connect().await.unwrap();
    assert!(client.is_authorized().await.unwrap());
    assert_eq!(client.session().snapshot().user, Some(SelfUser::new(78, false)));
    // Checked while the client runs, so the -wal is there too.
    assert_no_window_of(&dc.key, &stored_bytes(dir.path()));
    shutdown.shutdown().await.unwrap();
    drop(client);

    let plain = builder().session_path(&path).connect().await;
    assert!(matches!(connect_err(plain), ClientError::Session(SessionError::Sealed { .. })));
    let wrong = builder().session_path(&path).session_key(key(4)).connect();
    assert!(matches!(connect_err(wrong.await), ClientError::Session(SessionError::WrongKey { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_string_session_with_a_key_exports_the_sealed_form_only_that_key_opens() {
    let dc = dc().await;
    let (client, shutdown) = builder()
        .session(InMemoryBackend::with_session(session_for(&[&dc], 2, Some(SelfUser::new(79, true)))))
        .connect()
        .await
        .unwrap();
    let plain = client.export_session_string().await.unwrap();
    shutdown.shutdown().await.unwrap();
    drop(client);
    let (client, shutdown) = builder().session_string(plain.clone()).session_key(key(5)).connect().await.unwrap();
    assert!(client.is_authorized().await.unwrap());
    let sealed = client.export_session_string().await.unwrap();
    shutdown.shutdown().await.unwrap();
    drop(client);
    assert!(sealed.starts_with("Le1."), "the sealed form");
    assert_no_window_of(&dc.key, &[("exported string".into(), sealed.clone().into_bytes())]);

    let without = Client::with_string_session(&sealed, API_ID, API_HASH).await;
    assert!(matches!(connect_err(without), ClientError::Session(SessionError::Sealed { .. })));
    let wrong = builder().session_string(sealed.clone()).session_key(key(6));
    assert!(matches!(connect_err(wrong.connect().await), ClientError::Session(SessionError::WrongKey { .. })));
    let (client, shutdown) = builder().session_string(sealed).session_key(key(5)).connect().await.unwrap();
    assert_eq!(client.session().snapshot().user, Some(SelfUser::new(79, true)));
    shutdown.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_key_beside_a_backend_passed_in_is_refused_not_ignored() {
    let err = builder().session(InMemoryBackend::new()).session_key(key(7)).connect().await;
    match connect_err(err) {
        ClientError::Config(message) => assert!(message.contains("open_with_key"), "{message}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}
