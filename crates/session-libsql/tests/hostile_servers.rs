//! Servers that are not sqld, and URLs that are not URLs: each gives a typed error in bounded
//! time, never a panic and never `Unavailable` (which tells the caller to retry) when retrying
//! cannot help.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use session_core::SessionError;
use session_libsql::{LibSqlBackend, RemoteOptions};

/// A server on 127.0.0.1 that answers every connection with `response` (after reading the
/// request head), for as long as the test runs.
fn answering(response: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let response = response.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 65536];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(&response);
            });
        }
    });
    format!("http://{addr}")
}

fn http(status: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

async fn open(url: &str) -> (SessionError, Duration) {
    let started = Instant::now();
    let options = RemoteOptions::default().timeout(Duration::from_secs(3));
    let e = LibSqlBackend::open_remote_with(url, "", options).await.expect_err("opened a session on it");
    (e, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_server_is_not_a_session_store() {
    for (status, body) in [
        ("404 Not Found", b"<html>no such page</html>".to_vec()),
        ("200 OK", b"<html>hello</html>".to_vec()),
        ("405 Method Not Allowed", Vec::new()),
    ] {
        let url = answering(http(status, &body));
        let (e, took) = open(&url).await;
        assert!(took < Duration::from_secs(4), "{status}: {took:?}");
        assert!(
            matches!(e, SessionError::Invalid { .. } | SessionError::Backend { .. }),
            "{status}: a server that is not sqld gave {e:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_with_bodies_that_are_not_utf8_are_typed_errors() {
    let garbage = [0xff_u8, 0xfe, 0x00, 0xc3, 0x28, 0xa0, 0xa1];
    // libsql's client panics reading such a body; the call must come back as an error (the
    // status is lost with the panic, so it is reported as the server being unusable now).
    for status in ["500 Internal Server Error", "401 Unauthorized", "503 Service Unavailable"] {
        let url = answering(http(status, &garbage));
        let (e, took) = open(&url).await;
        assert!(took < Duration::from_secs(4), "{status}: {took:?}");
        assert!(matches!(e, SessionError::Unavailable { .. }), "{status} with a non-UTF-8 body gave {e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_urls_are_invalid() {
    for url in ["", "not a url", "http://", "http://[::1", "libsql://", "http://host:notaport", "file:///tmp/x.db"] {
        let (e, _) = open(url).await;
        assert!(matches!(e, SessionError::Invalid { .. }), "{url:?} gave {e:?}");
    }
}
