//! Every operation that touches the database shows up as a `tracing` span with the backend,
//! the path, sizes and a duration; refusals (locked, damaged) as debug events with what an
//! operator needs; and no auth key or future auth token ever appears in any of it, in any form.

use rusqlite::Connection;
use session_core::{Change, SessionBackend, SessionData, SessionError, SessionStore};
use session_sqlite::SqliteBackend;
use session_testkit::capture::{self, secret_changes, Secrets};

const T: &str = "session_sqlite";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_are_traced_without_secrets() {
    let capture = capture::install();
    let _serial = capture.lock().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.db");
    let shown = path.display().to_string();

    let backend = SqliteBackend::open(&path).await.expect("open");
    let changes = secret_changes(0xA11CE, 10);
    let mut data = SessionData::default();
    data.apply_all(&changes);
    let mut secrets = Secrets::new();
    secrets.session(&data);
    backend.persist(&changes, &data).await.expect("persist");
    // Enough peer rows in one write to fold the overlay into chunks.
    let peers: Vec<Change> =
        secret_changes(0xB0B, 4_200).into_iter().filter(|c| matches!(c, Change::UpsertPeer(_))).collect();
    data.apply_all(&peers);
    backend.persist(&peers, &data).await.expect("persist peers");
    backend.save_session(&data).await.expect("save");
    assert_eq!(backend.load_session().await.expect("load").as_ref(), Some(&data));
    assert!(backend.load().await.expect("load bytes").is_some());

    // A second owner is refused, and the refusal names the holder.
    let e = SqliteBackend::open(&path).await.expect_err("second owner");
    assert!(matches!(e, SessionError::Locked { .. }), "{e}");
    backend.delete().await.expect("delete");
    backend.close().await.expect("close");

    // Through the store, as a client uses it.
    let store = SessionStore::open_default(SqliteBackend::open(&path).await.expect("reopen")).await.expect("store");
    store.apply_many(secret_changes(0xC0FFEE, 3)).await.expect("apply");
    store.read(|d| {
        secrets.session(d);
    });
    store.close().await.expect("close store");
    drop(store);

    // A damaged file: refused as Corrupt, a copy kept and named.
    let bad = dir.path().join("bad.db");
    std::fs::write(&bad, vec![7u8; 4096]).expect("garbage");
    let e = SqliteBackend::open(&bad).await.expect_err("garbage");
    assert!(matches!(e, SessionError::Corrupt { preserved_at: Some(_), .. }), "{e}");

    // A database of schema version 2 is migrated.
    let old = dir.path().join("v2.db");
    {
        let conn = Connection::open(&old).expect("raw");
        conn.execute_batch(session_sql::MIGRATIONS[0]).expect("v1");
        conn.execute_batch(session_sql::MIGRATIONS[1]).expect("v2");
        conn.execute_batch("PRAGMA user_version = 2; PRAGMA journal_mode = WAL;").expect("version");
    }
    drop(SqliteBackend::open(&old).await.expect("migrate"));

    let log = capture.take();
    let path = Some(shown.as_str());
    log.expect_span(T, "open", &[("backend", Some("sqlite")), ("path", path), ("elapsed_us", None)]);
    log.expect_span(T, "lock", &[("backend", Some("sqlite")), ("path", path), ("elapsed_us", None)]);
    log.expect_event(T, "created a new session database", &[("path", path)]);
    let persist =
        log.expect_span(T, "persist", &[("backend", Some("sqlite")), ("path", path), ("changes", Some("4200"))]);
    assert!(persist.field("elapsed_us").is_some(), "{persist:?}");
    log.expect_span(T, "persist", &[("changes", Some(&changes.len().to_string())), ("critical", Some("true"))]);
    let compact =
        log.expect_span(T, "compact", &[("backend", Some("sqlite")), ("overlay_rows", None), ("elapsed_us", None)]);
    assert_eq!(compact.parent, Some("persist"), "the compaction happens inside the write that made it due");
    log.expect_event(T, "folded the peer overlay into chunks", &[("peers", Some("4200"))]);
    log.expect_span(T, "save", &[("backend", Some("sqlite")), ("peers", Some("4200")), ("elapsed_us", None)]);
    log.expect_span(T, "load", &[("backend", Some("sqlite")), ("peers", Some("4200")), ("elapsed_us", None)]);
    log.expect_span(T, "load", &[("bytes", None), ("peers", Some("4200"))]);
    log.expect_span(T, "delete", &[("backend", Some("sqlite")), ("elapsed_us", None)]);
    log.expect_span(T, "close", &[("backend", Some("sqlite")), ("elapsed_us", None)]);
    let pid = std::process::id().to_string();
    let locked = log.expect_event(T, "locked by another owner", &[("holder_pid", Some(&pid))]);
    assert_eq!(locked.span, Some("lock"));
    let bad_shown = bad.display().to_string();
    let kept =
        log.expect_span(T, "preserve_corrupt", &[("path", Some(&bad_shown)), ("bytes", Some("4096")), ("copy", None)]);
    let copy = kept.field("copy").expect("copy").to_owned();
    assert!(copy.contains("bad.db.corrupt-"), "{copy}");
    log.expect_event(T, "the stored session is damaged", &[("copy", Some(&copy))]);
    let old_shown = old.display().to_string();
    log.expect_span(
        T,
        "migrate",
        &[("path", Some(&old_shown)), ("from", Some("2")), ("to", Some(&session_sql::SCHEMA_VERSION.to_string()))],
    );
    log.expect_event(T, "migrated the session schema one version up", &[("from", Some("2")), ("to", Some("3"))]);
    // The store's own spans, for every backend.
    log.expect_span("session_core", "flush", &[("backend", Some("sqlite")), ("changes", None), ("elapsed_us", None)]);
    log.assert_no_secret(&secrets);
}

/// The search itself finds a key that did reach a log: the test above can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_a_field_is_found() {
    let capture = capture::install();
    let _serial = capture.lock().await;
    let mut data = SessionData::default();
    data.apply_all(&secret_changes(0xD00D, 0));
    let mut secrets = Secrets::new();
    secrets.session(&data);
    let key = data.auth_key(3).expect("key").as_bytes().to_vec();
    let hex: String = key.iter().skip(100).take(8).map(|b| format!("{b:02X}")).collect();
    tracing::info!(leaked = %hex, "oops");
    assert!(caught(capture.take(), &secrets).is_err(), "8 bytes of a key in upper-case hex");
    tracing::debug!(bytes = ?&key[40..52], "oops");
    assert!(caught(capture.take(), &secrets).is_err(), "a byte list");
    let token = data.future_auth_token.clone().expect("token");
    let b64 = base64_of(&token);
    let span = tracing::trace_span!("x", value = tracing::field::Empty);
    span.record("value", b64.as_str());
    assert!(caught(capture.take(), &secrets).is_err(), "base64 of the token");
    tracing::info!(len = key.len(), "nothing secret");
    capture.take().assert_no_secret(&secrets);
}

fn base64_of(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = c.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=c.len() {
            out.push(char::from(A[usize::try_from((n >> (18 - 6 * i)) & 63).unwrap_or(0)]));
        }
    }
    out
}

fn caught(log: capture::Captured, secrets: &Secrets) -> Result<(), Box<dyn std::any::Any + Send>> {
    std::panic::catch_unwind(|| log.assert_no_secret(secrets))
}
