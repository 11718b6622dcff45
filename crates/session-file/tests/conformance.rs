//! The shared conformance suite over real files, reopened from disk (plain and sealed), plus very
//! large sessions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use session_core::{async_trait, BoxError};
use session_file::{BinaryFileBackend, Keyring, SealingKey};
use session_testkit::Harness;

struct Files {
    dir: tempfile::TempDir,
    next: AtomicU64,
    /// Sealed files: opened with this key every time.
    key: Option<SealingKey>,
}

impl Files {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir"), next: AtomicU64::new(0), key: None }
    }

    fn sealed() -> Self {
        Self { key: Some(SealingKey::generate()), ..Self::new() }
    }

    async fn open(&self, path: std::path::PathBuf) -> Result<BinaryFileBackend, BoxError> {
        Ok(match &self.key {
            Some(key) => BinaryFileBackend::open_with_key(path, Keyring::new(key.clone())).await?,
            None => BinaryFileBackend::open(path).await?,
        })
    }
}

#[async_trait]
impl Harness for Files {
    type Backend = BinaryFileBackend;

    async fn fresh(&self) -> Result<BinaryFileBackend, BoxError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.open(self.dir.path().join(format!("s{n}.session"))).await
    }

    async fn reopen(&self, old: Arc<BinaryFileBackend>) -> Result<Arc<BinaryFileBackend>, BoxError> {
        let path = old.path().to_path_buf();
        // The suite dropped every other reference: dropping this one releases the lock.
        assert_eq!(Arc::strong_count(&old), 1, "the suite still holds the backend");
        drop(old);
        Ok(Arc::new(self.open(path).await?))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    session_testkit::run_all(&Files::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_on_sealed_files() {
    session_testkit::run_all(&Files::sealed()).await;
}

#[tokio::test(flavor = "current_thread")]
async fn conformance_suite_on_a_current_thread_runtime() {
    session_testkit::run_all(&Files::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_peers_round_trip_exactly() {
    session_testkit::many_peers(&Files::new(), 1_000_000).await;
}
