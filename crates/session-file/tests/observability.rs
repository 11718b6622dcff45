//! Every operation on the session file shows up as a `tracing` span with the backend, the path,
//! sizes and a duration; refusals (locked, damaged) as debug events with the holder's pid or the
//! kept copy; and no auth key or future auth token ever appears in any of it, in any form.

use session_core::{Change, SessionBackend, SessionData, SessionError, SessionStore};
use session_file::{BinaryFileBackend, COMPACT_FLOOR};
use session_testkit::capture::{self, secret_changes, Secrets};

const T: &str = "session_file";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_are_traced_without_secrets() {
    let capture = capture::install();
    let _serial = capture.lock().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    let shown = path.display().to_string();
    let mut secrets = Secrets::new();

    let backend = BinaryFileBackend::open(&path).await.expect("open");
    let changes = secret_changes(0xF11E, 10);
    let mut data = SessionData::default();
    data.apply_all(&changes);
    secrets.session(&data);
    backend.persist(&changes, &data).await.expect("first write");
    let one = [Change::SetHomeDc(4)];
    data.apply_all(&one);
    backend.persist(&one, &data).await.expect("append");
    // Appends past the compaction limit: the next write rewrites the file.
    let peers: Vec<Change> =
        secret_changes(0xF11F, 2_000).into_iter().filter(|c| matches!(c, Change::UpsertPeer(_))).collect();
    let mut appended = 0u64;
    while appended < 3 * COMPACT_FLOOR {
        data.apply_all(&peers);
        backend.persist(&peers, &data).await.expect("append peers");
        appended += 40 * peers.len() as u64;
    }
    backend.save_session(&data).await.expect("save");
    assert_eq!(backend.load_session().await.expect("load").as_ref(), Some(&data));
    assert!(backend.load().await.expect("load bytes").is_some());
    let e = BinaryFileBackend::open(&path).await.expect_err("second owner");
    assert!(matches!(e, SessionError::Locked { .. }), "{e}");
    drop(backend);

    let store = SessionStore::open_default(BinaryFileBackend::open(&path).await.expect("reopen")).await.expect("store");
    store.apply_many(secret_changes(0xF120, 3)).await.expect("apply");
    store.read(|d| {
        secrets.session(d);
    });
    store.delete().await.expect("delete");
    store.close().await.expect("close");
    drop(store);

    let bad = dir.path().join("bad.session");
    std::fs::write(&bad, vec![9u8; 300]).expect("garbage");
    let e = BinaryFileBackend::open(&bad).await.expect_err("garbage");
    assert!(matches!(e, SessionError::Corrupt { preserved_at: Some(_), .. }), "{e}");

    let log = capture.take();
    let at = Some(shown.as_str());
    log.expect_span(T, "open", &[("backend", Some("file")), ("path", at), ("elapsed_us", None)]);
    log.expect_span(T, "lock", &[("backend", Some("file")), ("path", at), ("elapsed_us", None)]);
    log.expect_span(
        T,
        "persist",
        &[("backend", Some("file")), ("path", at), ("changes", Some("1")), ("elapsed_us", None)],
    );
    log.expect_event(T, "appended a change record", &[("bytes", None), ("log_bytes", None)]);
    log.expect_span(T, "compact", &[("reason", Some("first write")), ("bytes", None), ("elapsed_us", None)]);
    let compact = log.expect_span(
        T,
        "compact",
        &[("reason", Some("log past its limit")), ("log_bytes", None), ("peers", Some("2000"))],
    );
    assert_eq!(compact.parent, Some("persist"));
    log.expect_span(T, "save", &[("backend", Some("file")), ("peers", Some("2000")), ("elapsed_us", None)]);
    log.expect_span(T, "load", &[("backend", Some("file")), ("peers", Some("2000")), ("elapsed_us", None)]);
    log.expect_span(T, "load", &[("bytes", None), ("peers", Some("2000"))]);
    log.expect_span(T, "delete", &[("backend", Some("file")), ("elapsed_us", None)]);
    log.expect_event(T, "opened the session file", &[("bytes", None), ("peers", Some("2000"))]);
    let pid = std::process::id().to_string();
    let locked = log.expect_event(T, "locked by another owner", &[("holder_pid", Some(&pid))]);
    assert_eq!(locked.span, Some("lock"));
    let bad_shown = bad.display().to_string();
    let kept =
        log.expect_span(T, "preserve_corrupt", &[("path", Some(&bad_shown)), ("bytes", Some("300")), ("copy", None)]);
    let copy = kept.field("copy").expect("copy").to_owned();
    log.expect_event(T, "the stored session is damaged", &[("copy", Some(&copy))]);
    log.expect_span("session_core", "flush", &[("backend", Some("file")), ("changes", None), ("elapsed_us", None)]);
    log.assert_no_secret(&secrets);
}
