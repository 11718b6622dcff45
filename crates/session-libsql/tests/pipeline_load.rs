//! The load's protobuf read (`/v3-protobuf/pipeline`) on a real sqld: it is used, it reads what
//! the libsql client's JSON read reads, and a server that answers it badly gives a typed error
//! within the call's timeout. A proxy in front of sqld passes everything else through and does
//! what each test asks with the protobuf route.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::{Change, PeerKey, SessionBackend, SessionData, SessionError};
use session_libsql::{LibSqlBackend, RemoteOptions};
use session_testkit::{sample_peer, sample_session, Rng};
use support::Sqld;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with a request to the protobuf route.
#[derive(Clone, Copy, Debug)]
enum Protobuf {
    /// Passes it to sqld.
    Forward,
    /// Answers with this (status line, body).
    Answer(&'static str, &'static [u8]),
    /// Never answers.
    Freeze,
}

/// A proxy on 127.0.0.1 in front of `upstream`; counts the connections that asked for the
/// protobuf route.
async fn proxy(upstream: std::net::SocketAddr, mode: Protobuf) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else { return };
            let counter = counter.clone();
            tokio::spawn(async move {
                // The first request's head decides what the connection is.
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match client.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let protobuf = head.starts_with(b"POST /v3-protobuf/");
                if protobuf {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                match (protobuf, mode) {
                    (true, Protobuf::Answer(status, body)) => {
                        let mut r =
                            format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                                .into_bytes();
                        r.extend_from_slice(body);
                        let _ = client.write_all(&r).await;
                    }
                    (true, Protobuf::Freeze) => tokio::time::sleep(Duration::from_secs(120)).await,
                    _ => {
                        let Ok(mut server) = TcpStream::connect(upstream).await else { return };
                        if server.write_all(&head).await.is_err() {
                            return;
                        }
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }
            });
        }
    });
    (url, asked)
}

fn addr(sqld: &Sqld) -> std::net::SocketAddr {
    sqld.url().trim_start_matches("http://").parse().unwrap()
}

/// A session of `n` peers saved whole (packed chunks), then peers added and changed over the
/// chunks (overlay rows) and removed (removal marks).
async fn stored(backend: &LibSqlBackend, n: usize) -> SessionData {
    let mut data = sample_session(n);
    backend.save_session(&data).await.unwrap();
    let mut rng = Rng::new(3);
    let mut changes: Vec<Change> =
        (10_000_000..10_000_300).map(|id| Change::UpsertPeer(sample_peer(id, &mut rng))).collect();
    let keys: Vec<PeerKey> = data.peers.iter().map(|p| p.key()).step_by(997).collect();
    changes.extend(keys.iter().take(50).map(|k| Change::RemovePeer(*k)));
    for k in keys.iter().skip(50).take(20) {
        let mut p = data.peers.get(*k).unwrap();
        p.access_hash = p.access_hash.wrapping_add(1);
        changes.push(Change::UpsertPeer(p));
    }
    data.apply_all(&changes);
    backend.persist(&changes, &data).await.unwrap();
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_session_reads_the_same_over_protobuf_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let sqld = Sqld::start(&dir.path().join("server"), None);
    let owner = LibSqlBackend::open_remote(&sqld.url(), "").await.unwrap();
    let data = stored(&owner, 100_000).await;
    assert!(data.peers.len() > 100_000 && data.peers.len() < 100_300, "{}", data.peers.len());
    owner.close().await.unwrap();

    // Over protobuf: the route is asked, and the session read is the one stored.
    let (url, asked) = proxy(addr(&sqld), Protobuf::Forward).await;
    let b = LibSqlBackend::open_remote(&url, "").await.unwrap();
    let over_protobuf = b.load_session().await.unwrap();
    assert!(asked.load(Ordering::SeqCst) >= 1, "the load did not use the protobuf route");
    b.close().await.unwrap();

    // A server without the route: read through the libsql client (JSON), the same session.
    let (url, asked) = proxy(addr(&sqld), Protobuf::Answer("404 Not Found", b"")).await;
    let b = LibSqlBackend::open_remote(&url, "").await.unwrap();
    let over_json = b.load_session().await.unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 1, "the route is asked once, then no more");
    let again = b.load_session().await.unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    b.close().await.unwrap();

    assert_eq!(over_protobuf.as_ref(), Some(&data));
    assert_eq!(over_json.as_ref(), Some(&data));
    assert_eq!(again.as_ref(), Some(&data));
    // The lease-free reader shares the load.
    let (url, asked) = proxy(addr(&sqld), Protobuf::Forward).await;
    let snapshot = LibSqlBackend::read_remote(&url, "", &RemoteOptions::default(), None).await.unwrap().unwrap();
    assert!(asked.load(Ordering::SeqCst) >= 1, "the reader did not use the protobuf route");
    assert_eq!(snapshot.data, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_answers_to_the_protobuf_read_are_typed_errors_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let sqld = Sqld::start(&dir.path().join("server"), None);
    let owner = LibSqlBackend::open_remote(&sqld.url(), "").await.unwrap();
    stored(&owner, 2_000).await;
    owner.close().await.unwrap();
    let timeout = Duration::from_secs(2);
    type Expect = fn(&SessionError) -> bool;
    let cases: [(&str, Protobuf, Expect); 5] = [
        ("500", Protobuf::Answer("500 Internal Server Error", &[0xff, 0xfe, 0x00]), |e| {
            matches!(e, SessionError::Unavailable { .. })
        }),
        ("401", Protobuf::Answer("401 Unauthorized", b""), |e| matches!(e, SessionError::Unauthorized { .. })),
        ("not protobuf", Protobuf::Answer("200 OK", b"<html>hello</html>"), |e| {
            matches!(e, SessionError::Backend { .. })
        }),
        ("huge length prefix", Protobuf::Answer("200 OK", b"\x1a\xff\xff\xff\xff\xff\xff\xff\xff\x7f"), |e| {
            matches!(e, SessionError::Backend { .. })
        }),
        ("frozen", Protobuf::Freeze, |e| matches!(e, SessionError::Unavailable { .. })),
    ];
    for (name, mode, expected) in cases {
        let (url, asked) = proxy(addr(&sqld), mode).await;
        let b = LibSqlBackend::open_remote_with(&url, "", RemoteOptions::default().timeout(timeout)).await.unwrap();
        let started = Instant::now();
        let e = SessionError::from_boxed(b.load_session().await.expect_err(name), "test");
        let took = started.elapsed();
        assert!(asked.load(Ordering::SeqCst) >= 1, "{name}: the route was not asked");
        assert!(expected(&e), "{name}: {e:?}");
        assert!(took < timeout + Duration::from_secs(1), "{name}: {took:?}");
        b.close().await.unwrap();
    }
}
