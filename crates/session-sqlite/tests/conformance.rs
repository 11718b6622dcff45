//! The shared conformance suite, against files (reopen = drop + open the same path) and memory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use session_core::{async_trait, BoxError};
use session_sqlite::SqliteBackend;
use session_testkit::{many_peers, run_all, Fresh, Harness};

struct Files {
    dir: tempfile::TempDir,
    next: AtomicUsize,
}

impl Files {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir"), next: AtomicUsize::new(0) }
    }
}

#[async_trait]
impl Harness for Files {
    type Backend = SqliteBackend;

    async fn fresh(&self) -> Result<SqliteBackend, BoxError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(SqliteBackend::open(self.dir.path().join(format!("s{n}.db"))).await?)
    }

    async fn reopen(&self, old: Arc<SqliteBackend>) -> Result<Arc<SqliteBackend>, BoxError> {
        let path: PathBuf = old.path().expect("file backend").to_path_buf();
        drop(old);
        Ok(Arc::new(SqliteBackend::open(path).await?))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_backend_passes_the_suite() {
    run_all(&Files::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_backend_passes_the_suite() {
    run_all(&Fresh(|| async { Ok(SqliteBackend::in_memory().await?) })).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_peers_round_trip_exactly() {
    many_peers(&Files::new(), 1_000_000).await;
}
