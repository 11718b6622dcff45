//! Spans for open, load, save, persist, delete and the lease, tagged `backend = "redis"`, and no
//! secret (auth keys in any form, the future auth token, the URL password) in any span, event,
//! error or `Debug`.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use session_core::{Change, SessionBackend, SessionData, SessionError};
use session_redis::{RedisBackend, RedisOptions};
use session_testkit::capture::{self, secret_changes, Secrets};
use support::{Config, Redis};

const T: &str = "session_redis";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_name_the_calls_and_hold_no_secret() {
    let capture = capture::install();
    let _serial = capture.lock().await;
    let password = "Pa55-w0rd-n0t-in-logs";
    let redis = Redis::start(Config { password: Some(password.into()), tcp: true, ..Config::default() });
    let url = redis.url();
    let mut secrets = Secrets::new();
    secrets.text("the URL password", password).text("a refused password", "wr0ng-Pa55");

    let b = RedisBackend::open_named(&url, "observed").await.unwrap();
    let changes = secret_changes(21, 30);
    let mut data = SessionData::default();
    data.apply_all(&changes);
    secrets.session(&data);
    b.persist(&changes, &data).await.unwrap();
    b.save_session(&data).await.unwrap();
    assert_eq!(b.load_session().await.unwrap().as_ref(), Some(&data));
    let debug = format!("{b:?} {:?}", b.lease_handle());
    // Errors carry no secret either: a refused login, a refused second owner.
    let wrong = url.replace(password, "wr0ng-Pa55");
    let e1 = RedisBackend::open_named(&wrong, "observed").await.unwrap_err();
    let e2 = RedisOptions::new().session("observed").open(&url).await.unwrap_err();
    assert!(matches!(e1, SessionError::Unauthorized { .. }) && matches!(e2, SessionError::Locked { .. }));
    data.apply(&Change::LogOut);
    b.persist(&[Change::LogOut], &data).await.unwrap();
    b.delete().await.unwrap();
    b.close().await.unwrap();

    let log = capture.take();
    let shown = url.replace(password, "***");
    log.expect_span(T, "open", &[("backend", Some("redis")), ("url", Some(&shown)), ("session", Some("observed"))]);
    for name in ["load", "save", "persist", "delete"] {
        log.expect_span(T, name, &[("backend", Some("redis")), ("session", Some("observed"))]);
    }
    log.expect_span(T, "lease", &[("backend", Some("redis")), ("op", Some("acquire"))]);
    log.expect_span(T, "lease", &[("backend", Some("redis")), ("op", Some("release"))]);
    log.assert_no_secret(&secrets);
    for text in [debug, format!("{e1} {e1:?}"), format!("{e2} {e2:?}")] {
        assert_eq!(secrets.find_in(&text), None, "a secret in {text}");
    }
}

/// A sealed backend: no sealing key, passphrase, auth key or token in any span, event, error or
/// `Debug` (of the options, the backend, a `Sealed` and a `WrongKey` error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_backend_logs_no_key_or_passphrase() {
    use session_core::{KdfParams, Keyring, Passphrase, SealingKey};
    let capture = capture::install();
    let _serial = capture.lock().await;
    let redis = Redis::durable();
    let url = redis.url();
    let raw = [0x5Cu8, 0xA1, 0x07, 0xE9, 0x33, 0x4B, 0xD2, 0x18].repeat(4);
    let phrase = "sealing-passphrase-not-in-logs";
    let mut secrets = Secrets::new();
    secrets.bytes("the sealing key", &raw).text("the passphrase", phrase);
    let fast = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };
    let key = || SealingKey::from_bytes(raw.clone().try_into().unwrap());
    let options = RedisOptions::new().session("sealed").key(Keyring::new(key()));
    let debug_options = format!("{options:?}");
    let b = options.open(&url).await.unwrap();
    let changes = secret_changes(22, 30);
    let mut data = SessionData::default();
    data.apply_all(&changes);
    secrets.session(&data);
    b.persist(&changes, &data).await.unwrap();
    assert_eq!(b.load_session().await.unwrap().as_ref(), Some(&data));
    let debug = format!("{debug_options} {b:?}");
    b.close().await.unwrap();
    let ring = Keyring::from_passphrase(Passphrase::new(phrase), fast);
    let e1 = RedisOptions::new().session("sealed").key(ring).open(&url).await.unwrap_err();
    let e2 = RedisOptions::new().session("sealed").open(&url).await.unwrap_err();
    assert!(matches!(e1, SessionError::WrongKey { .. }) && matches!(e2, SessionError::Sealed { .. }), "{e1:?} {e2:?}");

    let log = capture.take();
    log.assert_no_secret(&secrets);
    for text in [debug, format!("{e1} {e1:?}"), format!("{e2} {e2:?}")] {
        assert_eq!(secrets.find_in(&text), None, "a secret in {text}");
    }
}
