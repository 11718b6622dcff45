//! The conformance suite against the local, remote and replica modes (the last two on a real
//! sqld, a fresh server per fresh backend).

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use session_core::BoxError;
use session_libsql::{LibSqlBackend, Mode, RemoteOptions};
use session_testkit::{run_all, Fresh, Harness};
use support::Sqld;

struct Servers {
    dir: tempfile::TempDir,
    next: AtomicUsize,
    running: Mutex<Vec<Sqld>>,
    replica: bool,
}

impl Servers {
    fn new(replica: bool) -> Self {
        Self { dir: tempfile::tempdir().unwrap(), next: AtomicUsize::new(0), running: Mutex::new(Vec::new()), replica }
    }
}

#[async_trait]
impl Harness for Servers {
    type Backend = LibSqlBackend;

    async fn fresh(&self) -> Result<LibSqlBackend, BoxError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let sqld = Sqld::start(&self.dir.path().join(format!("server{n}")), None);
        let url = sqld.url();
        self.running.lock().unwrap().push(sqld);
        if self.replica {
            Ok(LibSqlBackend::open_replica(self.dir.path().join(format!("replica{n}.db")), &url, "").await?)
        } else {
            Ok(LibSqlBackend::open_remote(&url, "").await?)
        }
    }

    async fn reopen(&self, old: Arc<LibSqlBackend>) -> Result<Arc<LibSqlBackend>, BoxError> {
        let url = old.url().unwrap().to_owned();
        let path = old.path().map(|p| p.to_path_buf());
        drop(old);
        // Dropping the old backend releases its lease in the background; the new owner waits
        // for that (a few milliseconds), as a restarted process would.
        let options = RemoteOptions::default().wait_for_owner(std::time::Duration::from_secs(5));
        Ok(Arc::new(match path {
            Some(path) => LibSqlBackend::open_replica_with(path, &url, "", options).await?,
            None => LibSqlBackend::open_remote_with(&url, "", options).await?,
        }))
    }
}

struct Files {
    dir: tempfile::TempDir,
    next: AtomicUsize,
}

#[async_trait]
impl Harness for Files {
    type Backend = LibSqlBackend;

    async fn fresh(&self) -> Result<LibSqlBackend, BoxError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(LibSqlBackend::open_local(self.dir.path().join(format!("s{n}.db"))).await?)
    }

    async fn reopen(&self, old: Arc<LibSqlBackend>) -> Result<Arc<LibSqlBackend>, BoxError> {
        let path = old.path().unwrap().to_path_buf();
        drop(old);
        Ok(Arc::new(LibSqlBackend::open_local(path).await?))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_passes_the_suite() {
    run_all(&Files { dir: tempfile::tempdir().unwrap(), next: AtomicUsize::new(0) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_passes_the_suite() {
    run_all(&Fresh(|| async {
        let b = LibSqlBackend::in_memory().await?;
        assert_eq!(b.mode(), Mode::Memory);
        Ok(b)
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_passes_the_suite() {
    run_all(&Servers::new(false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_passes_the_suite() {
    run_all(&Servers::new(true)).await;
}

/// Named sessions, all in one database: each backend the suite asks for is a new name beside
/// the sessions of the earlier ones (so the suite also checks that they never see each other's
/// rows); a reopen opens the same name.
struct Named {
    dir: tempfile::TempDir,
    next: AtomicUsize,
    /// `None`: one local file; `Some`: one server.
    sqld: Option<Sqld>,
    /// With a server: every session's copy in one local replica file.
    replica: bool,
}

impl Named {
    fn new(remote: bool, replica: bool) -> Named {
        let dir = tempfile::tempdir().unwrap();
        let sqld = remote.then(|| Sqld::start(&dir.path().join("server"), None));
        Named { dir, next: AtomicUsize::new(0), sqld, replica }
    }

    async fn open(&self, name: &str) -> Result<LibSqlBackend, BoxError> {
        let options = RemoteOptions::default().session(name).wait_for_owner(std::time::Duration::from_secs(5));
        Ok(match &self.sqld {
            Some(sqld) if self.replica => {
                LibSqlBackend::open_replica_with(self.dir.path().join("copies.db"), &sqld.url(), "", options).await?
            }
            Some(sqld) => LibSqlBackend::open_remote_with(&sqld.url(), "", options).await?,
            None => LibSqlBackend::open_local_named(self.dir.path().join("accounts.db"), name).await?,
        })
    }
}

#[async_trait]
impl Harness for Named {
    type Backend = LibSqlBackend;

    async fn fresh(&self) -> Result<LibSqlBackend, BoxError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.open(&format!("account {n}")).await
    }

    async fn reopen(&self, old: Arc<LibSqlBackend>) -> Result<Arc<LibSqlBackend>, BoxError> {
        let name = old.session_name().to_owned();
        drop(old);
        Ok(Arc::new(self.open(&name).await?))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_local_sessions_of_one_file_pass_the_suite() {
    run_all(&Named::new(false, false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_remote_sessions_of_one_database_pass_the_suite() {
    run_all(&Named::new(true, false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_replica_sessions_sharing_one_copy_file_pass_the_suite() {
    run_all(&Named::new(true, true)).await;
}
