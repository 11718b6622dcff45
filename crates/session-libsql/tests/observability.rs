//! Every mode's operations show up as `tracing` spans with the backend name, where the session
//! is (a path, or the server's URL without credentials), sizes and a duration; a refused token
//! as a debug event; and no auth key, future auth token, JWT or URL password ever appears in any
//! span or event, in any form. The remote and replica modes run on a real sqld with JWT
//! authentication (the test fails, never skips, when sqld is missing).

#![allow(clippy::unwrap_used)]

mod support;

use session_core::{Change, SessionBackend, SessionData, SessionError, SessionStore};
use session_libsql::LibSqlBackend;
use session_testkit::capture::{self, secret_changes, Captured, Secrets};
use support::{JwtKey, Sqld};

const T: &str = "session_libsql";

/// Persists secret-bearing changes (a critical batch, then peers), saves, loads and deletes.
async fn exercise(b: &LibSqlBackend, seed: u64, secrets: &mut Secrets) -> SessionData {
    let changes = secret_changes(seed, 20);
    let mut data = SessionData::default();
    data.apply_all(&changes);
    secrets.session(&data);
    b.persist(&changes, &data).await.unwrap();
    let more: Vec<Change> =
        secret_changes(seed ^ 1, 50).into_iter().filter(|c| matches!(c, Change::UpsertPeer(_))).collect();
    data.apply_all(&more);
    b.persist(&more, &data).await.unwrap();
    b.save_session(&data).await.unwrap();
    assert_eq!(b.load_session().await.unwrap().as_ref(), Some(&data));
    assert!(b.load().await.unwrap().is_some());
    data
}

fn expect_calls(log: &Captured, backend: &str, place: (&str, &str)) {
    let at = [("backend", Some(backend)), (place.0, Some(place.1)), ("elapsed_us", None)];
    log.expect_span(T, "open", &at);
    let with = |name: &str, extra: (&str, Option<&str>)| {
        let mut fields = at.to_vec();
        fields.push(extra);
        log.expect_span(T, name, &fields);
    };
    with("persist", ("changes", Some("50")));
    with("save", ("peers", Some("50")));
    with("load", ("peers", Some("50")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_is_traced_without_secrets() {
    let capture = capture::install();
    let _serial = capture.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut secrets = Secrets::new();

    // Local and in memory: the libSQL span around session-sqlite's own.
    let path = dir.path().join("local.db");
    let local = LibSqlBackend::open_local(&path).await.unwrap();
    exercise(&local, 11, &mut secrets).await;
    let e = LibSqlBackend::open_local(&path).await.unwrap_err();
    assert!(matches!(e, SessionError::Locked { .. }), "{e}");
    local.delete().await.unwrap();
    drop(local);
    let memory = LibSqlBackend::in_memory().await.unwrap();
    exercise(&memory, 12, &mut secrets).await;

    // A server with JWT authentication.
    let key = JwtKey::random();
    let key_file = dir.path().join("jwt.pub");
    key.write_public_key(&key_file);
    let sqld = Sqld::start(&dir.path().join("server"), Some(&key_file));
    let url = sqld.url();
    let token = key.token();
    let wrong = JwtKey::random().token();
    secrets.text("the auth token", &token).text("a refused token", &wrong);
    let remote = LibSqlBackend::open_remote(&url, &token).await.unwrap();
    exercise(&remote, 13, &mut secrets).await;
    let e = LibSqlBackend::open_remote(&url, &wrong).await.unwrap_err();
    assert!(matches!(e, SessionError::Unauthorized { .. }), "{e}");
    // A password in the URL is refused before any request, and never shown.
    let password = "hunter2-Pa55word-in-the-url";
    secrets.text("a URL password", password);
    let with_password = url.replace("http://", &format!("http://alice:{password}@"));
    let e = LibSqlBackend::open_remote(&with_password, &token).await.unwrap_err();
    assert!(matches!(e, SessionError::Invalid { .. }), "{e}");
    // A token in the query is not ours to send, and not shown either.
    assert!(LibSqlBackend::open_remote(&format!("{url}?authToken={token}"), "").await.is_err());

    // The session has one owner at a time: the remote backend hands it over to the replica.
    remote.delete().await.unwrap();
    remote.close().await.unwrap();
    drop(remote);

    // An embedded replica, through the store as a client uses it.
    let replica_path = dir.path().join("replica.db");
    let replica = LibSqlBackend::open_replica(&replica_path, &url, &token).await.unwrap();
    assert!(!replica.sync().await.unwrap());
    let store = SessionStore::open_default(replica).await.unwrap();
    store.apply_many(secret_changes(14, 3)).await.unwrap();
    store.read(|d| {
        secrets.session(d);
    });
    store.close().await.unwrap();
    drop(store);

    let log = capture.take();
    let shown = path.display().to_string();
    expect_calls(&log, "libsql-local", ("path", &shown));
    expect_calls(&log, "libsql-memory", ("path", ":memory:"));
    expect_calls(&log, "libsql-remote", ("url", &url));
    // session-sqlite's spans inside the local mode's.
    let inner = log.expect_span("session_sqlite", "persist", &[("backend", Some("sqlite")), ("path", Some(&shown))]);
    assert_eq!(inner.parent, Some("persist"));
    let pid = std::process::id().to_string();
    log.expect_event("session_sqlite", "locked by another owner", &[("holder_pid", Some(&pid))]);
    log.expect_span(T, "delete", &[("backend", Some("libsql-local")), ("elapsed_us", None)]);
    log.expect_span(T, "delete", &[("backend", Some("libsql-remote")), ("url", Some(&url))]);
    // The fresh server's schema is created by the first client, as a migration from 0.
    let to = session_sql::SCHEMA_VERSION.to_string();
    log.expect_span(T, "migrate", &[("url", Some(&url)), ("from", Some("0")), ("to", Some(&to)), ("elapsed_us", None)]);
    log.expect_event(T, "migrated the session schema", &[("url", Some(&url))]);
    log.expect_event(T, "sending one write transaction", &[("bytes", None)]);
    let refused = log.expect_event(T, "failed", &[("error", None)]);
    assert!(refused.field("error").unwrap().contains("refused the credentials"), "{refused:?}");
    log.expect_span(
        T,
        "open",
        &[("backend", Some("libsql-remote")), ("url", Some(&url.replace("http://", "http://***@")))],
    );
    log.expect_span(
        T,
        "open",
        &[
            ("backend", Some("libsql-replica")),
            ("path", Some(&replica_path.display().to_string())),
            ("url", Some(&url)),
        ],
    );
    log.expect_span(T, "sync", &[("backend", Some("libsql-replica")), ("pulled", Some("false")), ("elapsed_us", None)]);
    log.expect_span("session_core", "flush", &[("backend", Some("libsql-replica")), ("changes", None)]);
    log.assert_no_secret(&secrets);
}
