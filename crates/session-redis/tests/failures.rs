//! A server that cannot answer is a typed error within a bound, never `Ok(None)`: wrong password,
//! server down, frozen, not Redis at all, a malformed URL; and a server without persistence is
//! refused unless allowed.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::time::{Duration, Instant};

use session_core::{Change, SessionBackend, SessionData, SessionError};
use session_redis::{RedisBackend, RedisOptions};
use support::{free_port, Config, Persistence, Redis};

/// Every failure below must come back within this (the call timeout is 1 s).
const BOUND: Duration = Duration::from_secs(3);

async fn open_err(url: &str) -> (SessionError, Duration) {
    let t = Instant::now();
    let e = RedisOptions::new().call_timeout(Duration::from_secs(1)).open(url).await.unwrap_err();
    (e, t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_unauthorized() {
    let redis = Redis::start(Config { password: Some("right-horse-battery".into()), tcp: true, ..Config::default() });
    let wrong = format!("redis://:wrong-staple-42@127.0.0.1:{}", redis.port);
    let (e, took) = open_err(&wrong).await;
    assert!(matches!(e, SessionError::Unauthorized { .. }), "{e:?}");
    assert!(took < BOUND, "{took:?}");
    let text = format!("{e} {e:?}");
    assert!(!text.contains("wrong-staple-42") && !text.contains("right-horse-battery"), "{text}");
    assert!(text.contains(":***@127.0.0.1"), "{text}");
    // No password at all: NOAUTH.
    let (e, _) = open_err(&format!("redis://127.0.0.1:{}", redis.port)).await;
    assert!(matches!(e, SessionError::Unauthorized { .. }), "{e:?}");
    // The right one works.
    RedisBackend::open(&redis.url()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_is_unavailable() {
    let (e, took) = open_err(&format!("redis://127.0.0.1:{}", free_port())).await;
    assert!(matches!(e, SessionError::Unavailable { .. }), "{e:?}");
    assert!(took < BOUND, "{took:?}");
    let dir = tempfile::tempdir().unwrap();
    let (e, took) = open_err(&format!("redis+unix://{}", dir.path().join("none.sock").display())).await;
    assert!(matches!(e, SessionError::Unavailable { .. }), "{e:?}");
    assert!(took < BOUND, "{took:?}");

    // Down after opening: load fails (never Ok(None)), and so do writes; back up, both work.
    let mut redis = Redis::durable();
    let b = RedisOptions::new().call_timeout(Duration::from_secs(1)).open(&redis.url()).await.unwrap();
    let mut data = SessionData::default();
    data.apply(&Change::SetHomeDc(3));
    b.save_session(&data).await.unwrap();
    redis.kill();
    let t = Instant::now();
    let e = SessionError::from_boxed(b.load_session().await.unwrap_err(), "redis");
    assert!(matches!(e, SessionError::Unavailable { .. }), "{e:?}");
    let e = SessionError::from_boxed(b.load().await.unwrap_err(), "redis");
    assert!(matches!(e, SessionError::Unavailable { .. }), "{e:?}");
    assert!(t.elapsed() < BOUND, "{:?}", t.elapsed());
    redis.restart();
    assert_eq!(b.load_session().await.unwrap(), Some(data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_bounds_every_queued_call() {
    let redis = Redis::durable();
    let timeout = Duration::from_millis(800);
    let b = std::sync::Arc::new(RedisOptions::new().call_timeout(timeout).open(&redis.url()).await.unwrap());
    redis.signal("STOP");
    let started = Instant::now();
    let mut calls = Vec::new();
    for _ in 0..5 {
        let b = b.clone();
        calls.push(tokio::spawn(async move {
            let r = b.load_session().await;
            (r.map(|_| ()).map_err(|e| SessionError::from_boxed(e, "redis")), started.elapsed())
        }));
    }
    for c in calls {
        let (r, at) = c.await.unwrap();
        assert!(matches!(r, Err(SessionError::Unavailable { .. })), "{r:?}");
        assert!(at < timeout + Duration::from_millis(700), "a queued call failed after {at:?}");
    }
    redis.signal("CONT");
    b.load_session().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_redis_is_a_backend_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nBad Request")
                    .await;
                tokio::time::sleep(Duration::from_secs(10)).await;
            });
        }
    });
    let (e, took) = open_err(&format!("redis://127.0.0.1:{port}")).await;
    assert!(matches!(e, SessionError::Backend { .. }), "{e:?}");
    assert!(e.to_string().contains("does not answer as a Redis server"), "{e}");
    assert!(took < BOUND, "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_url_is_invalid() {
    for url in ["http://127.0.0.1:6379", "redis://:pw@[::1", "not a url at all"] {
        let (e, took) = open_err(url).await;
        assert!(matches!(e, SessionError::Invalid { .. }), "{url}: {e:?}");
        assert!(took < Duration::from_millis(100), "{took:?}");
    }
    let e = RedisOptions::new().session("a{b}").open("redis://127.0.0.1:1").await.unwrap_err();
    assert!(matches!(e, SessionError::Invalid { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_persistence_is_refused_unless_allowed() {
    let redis = Redis::start(Config { persistence: Persistence::Volatile, ..Config::default() });
    let e = RedisBackend::open(&redis.url()).await.unwrap_err();
    match &e {
        SessionError::Invalid { reason, .. } => {
            assert!(reason.contains("appendonly") && reason.contains("allow_volatile"), "{reason}")
        }
        other => panic!("expected Invalid naming the setting, got {other:?}"),
    }
    let b = RedisOptions::new().allow_volatile(true).open(&redis.url()).await.unwrap();
    b.save_session(&SessionData::default()).await.unwrap();
}

/// Managed services refuse `CONFIG` (ACL, renamed command): the backend opens and warns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_hides_its_configuration_is_accepted() {
    let redis = Redis::start(Config { tcp: true, ..Config::default() });
    let acl = std::process::Command::new("redis-cli")
        .arg("-s")
        .arg(redis.socket())
        .args(["ACL", "SETUSER", "app", "on", ">app-secret", "~*", "+@all", "-config"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&acl.stdout).contains("OK"), "{acl:?}");
    let url = format!("redis://app:app-secret@127.0.0.1:{}", redis.port);
    let b = RedisBackend::open(&url).await.unwrap();
    b.save_session(&SessionData::default()).await.unwrap();
    assert!(!format!("{b:?}").contains("app-secret"));
}
