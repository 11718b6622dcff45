//! A third-party backend written as a user would: only `load` and `save`, about one screen,
//! checked by the same conformance suite as the built-in backends.
//!
//! Run: `cargo run -p layer-examples --example custom_backend`

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use session_core::{async_trait, BoxError, SessionBackend};
use session_testkit::{run_all, Harness};

/// Keeps the session bytes in one file, replaced atomically on every save.
pub struct PlainFileBackend {
    path: PathBuf,
}

#[async_trait]
impl SessionBackend for PlainFileBackend {
    async fn load(&self) -> Result<Option<Vec<u8>>, BoxError> {
        match tokio::fs::read(&self.path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn save(&self, data: &[u8]) -> Result<(), BoxError> {
        let tmp = self.path.with_extension("tmp");
        tokio::fs::write(&tmp, data).await?;
        tokio::fs::File::open(&tmp).await?.sync_all().await?;
        tokio::fs::rename(&tmp, &self.path).await?;
        Ok(())
    }
}

/// Tells the suite how to make fresh backends and reopen one over the same file.
struct Files {
    dir: PathBuf,
    next: AtomicU32,
}

#[async_trait]
impl Harness for Files {
    type Backend = PlainFileBackend;

    async fn fresh(&self) -> Result<PlainFileBackend, BoxError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(PlainFileBackend { path: self.dir.join(format!("session-{n}.bin")) })
    }

    async fn reopen(&self, old: Arc<PlainFileBackend>) -> Result<Arc<PlainFileBackend>, BoxError> {
        Ok(Arc::new(PlainFileBackend { path: old.path.clone() }))
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let dir = std::env::temp_dir().join(format!("custom-backend-{}", std::process::id()));
    tokio::fs::create_dir_all(&dir).await?;
    run_all(&Files { dir: dir.clone(), next: AtomicU32::new(0) }).await;
    tokio::fs::remove_dir_all(&dir).await?;
    println!("PlainFileBackend (load + save only) passes the session-testkit conformance suite");
    Ok(())
}
