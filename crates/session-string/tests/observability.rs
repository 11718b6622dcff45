//! The string backend's calls show up as `tracing` spans (backend `string`, sizes, a duration)
//! and the string it publishes as its length only: no auth key, future auth token or string
//! session (valid or damaged) ever appears in a span or an event.

use session_core::{Change, SessionBackend, SessionData, SessionStore};
use session_string::StringSessionBackend;
use session_testkit::capture::{self, secret_changes, Secrets};

const T: &str = "session_string";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_traced_without_secrets() {
    let capture = capture::install();
    let _serial = capture.lock().await;
    let mut secrets = Secrets::new();

    let mut data = SessionData::default();
    data.apply_all(&secret_changes(0x5717, 30));
    secrets.session(&data);
    let backend = StringSessionBackend::from_session(&data).expect("backend");
    let string = backend.current();
    secrets.text("the string session", &string);
    let mut rx = backend.subscribe();
    let more = secret_changes(0x5718, 5);
    data.apply_all(&more);
    secrets.session(&data);
    backend.persist(&more, &data).await.expect("persist");
    assert!(rx.has_changed().expect("sender alive"));
    let published = rx.borrow_and_update().clone();
    secrets.text("the published string", &published);
    assert_eq!(backend.load_session().await.expect("load").as_ref(), Some(&data));
    assert!(backend.load().await.expect("load bytes").is_some());
    backend.save_session(&data).await.expect("save");

    // A damaged string: refused by load with an error that never echoes it.
    let mut damaged: Vec<char> = string.chars().collect();
    let mid = damaged.len() / 2;
    damaged[mid] = if damaged[mid] == 'A' { 'B' } else { 'A' };
    damaged.truncate(damaged.len() - 7);
    let damaged: String = damaged.into_iter().collect();
    secrets.text("a damaged string session", &damaged);
    let broken = StringSessionBackend::new(&damaged);
    assert!(broken.load_session().await.is_err());
    assert!(broken.persist(&[Change::SetHomeDc(2)], &data).await.is_err());

    // Through the store.
    let store = SessionStore::open_default(StringSessionBackend::new(&string)).await.expect("store");
    store.apply_many(secret_changes(0x5719, 2)).await.expect("apply");
    store.read(|d| {
        secrets.session(d);
    });
    store.close().await.expect("close");
    backend.delete().await.expect("delete");

    let log = capture.take();
    log.expect_span(
        T,
        "persist",
        &[("backend", Some("string")), ("changes", Some(&more.len().to_string())), ("elapsed_us", None)],
    );
    log.expect_event(T, "published a new string session", &[("bytes", Some(&published.len().to_string()))]);
    log.expect_span(T, "load", &[("backend", Some("string")), ("peers", Some("30")), ("elapsed_us", None)]);
    log.expect_span(T, "load", &[("bytes", None), ("peers", Some("30"))]);
    log.expect_span(T, "save", &[("backend", Some("string")), ("peers", Some("30"))]);
    log.expect_span(T, "delete", &[("backend", Some("string")), ("elapsed_us", None)]);
    log.expect_event(T, "failed", &[("error", None)]);
    log.expect_span("session_core", "open_store", &[("backend", Some("string")), ("peers", Some("30"))]);
    log.expect_span("session_core", "flush", &[("backend", Some("string")), ("changes", None), ("elapsed_us", None)]);
    log.assert_no_secret(&secrets);
}
