//! The store's spans (`open_store`, `flush`) name the backend and carry sizes and durations for
//! every backend, the in-memory one included; no auth key or future auth token appears in them.

use session_core::{Change, FlushPolicy, InMemoryBackend, SessionStore};
use session_testkit::capture::{self, secret_changes, Secrets};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_is_traced_without_secrets() {
    let capture = capture::install();
    let _serial = capture.lock().await;
    let backend = Arc::new(InMemoryBackend::new());
    let store = SessionStore::open(backend.clone(), FlushPolicy::default()).await.expect("open");
    let changes = secret_changes(0xC0DE, 12);
    let n = changes.len();
    store.apply_many(changes).await.expect("apply");
    store.apply(Change::SetHomeDc(4)).await.expect("critical");
    store.close().await.expect("close");
    let mut secrets = Secrets::new();
    store.read(|d| {
        secrets.session(d);
    });
    drop(store);
    let reopened = SessionStore::open(backend, FlushPolicy::default()).await.expect("reopen");
    reopened.close().await.expect("close");

    let log = capture.take();
    log.expect_span(
        "session_core",
        "open_store",
        &[("backend", Some("memory")), ("peers", Some("0")), ("elapsed_us", None)],
    );
    log.expect_span("session_core", "open_store", &[("backend", Some("memory")), ("peers", Some("12"))]);
    log.expect_span(
        "session_core",
        "flush",
        &[("backend", Some("memory")), ("changes", None), ("peers", Some("12")), ("elapsed_us", None)],
    );
    let flushed: usize =
        log.spans("session_core", "flush").iter().filter_map(|s| s.field("changes")?.parse::<usize>().ok()).sum();
    assert_eq!(flushed, n + 1, "every change applied is in exactly one flush");
    log.assert_no_secret(&secrets);
}
