//! A store that cannot be read makes `connect` fail; the client never starts a new login over
//! it (it does not even open a connection).

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use layer_client::core::{BoxError, SessionError};
use layer_client::session_backend::SessionBackend;
use layer_client::{Client, ClientError, Config};

/// A remote store that is down: every load fails, and saves are counted (there must be none).
#[derive(Default)]
struct DownStore {
    saves: AtomicUsize,
}

#[async_trait::async_trait]
impl SessionBackend for DownStore {
    async fn load(&self) -> Result<Option<Vec<u8>>, BoxError> {
        let source: BoxError = "connection refused (test)".into();
        Err(Box::new(SessionError::Unavailable { resource: "redis://down".into(), source }))
    }
    async fn save(&self, _data: &[u8]) -> Result<(), BoxError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A third-party store returning its own error type.
struct ForeignError;

#[async_trait::async_trait]
impl SessionBackend for ForeignError {
    async fn load(&self) -> Result<Option<Vec<u8>>, Box<dyn std::error::Error + Send + Sync>> {
        Err("ETIMEDOUT".into())
    }
    async fn save(&self, _data: &[u8]) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}

#[tokio::test]
async fn an_unreachable_store_fails_connect() {
    let store = Arc::new(DownStore::default());
    let err = Client::builder().session(Arc::clone(&store)).api_id(1).api_hash("x").connect().await.unwrap_err();
    assert!(matches!(err, ClientError::Session(SessionError::Unavailable { .. })), "{err:?}");
    assert!(err.to_string().contains("redis://down"), "{err}");
    assert_eq!(store.saves.load(Ordering::SeqCst), 0, "nothing was written over the real session");
}

#[tokio::test]
async fn a_foreign_error_is_kept_as_a_backend_error() {
    let err = Client::builder().session(ForeignError).api_id(1).api_hash("x").connect().await.unwrap_err();
    match err {
        ClientError::Session(SessionError::Backend { source, .. }) => assert_eq!(source.to_string(), "ETIMEDOUT"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn api_id_is_required() {
    let err = Client::builder().in_memory().api_hash("x").connect().await.unwrap_err();
    assert!(matches!(err, ClientError::Config(_)), "{err:?}");
    let err = Client::connect(Config::default()).await.unwrap_err();
    assert!(matches!(err, ClientError::Config(_)), "{err:?}");
}
