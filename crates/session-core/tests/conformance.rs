//! The in-memory backend passes the conformance suite.

use session_core::InMemoryBackend;
use session_testkit::{run_all, Fresh};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_backend_passes_the_suite() {
    run_all(&Fresh(|| async { Ok(InMemoryBackend::new()) })).await;
}
