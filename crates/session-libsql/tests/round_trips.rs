//! Requests an open makes, counted from outside (a proxy in front of sqld counts HTTP request
//! lines): a restart's open of a database whose schema is current reads the schema and the seal
//! record in one request, so it is the check and the lease (two requests), plain or sealed; the
//! lease-free reader is the check and the load. A database the open migrates still opens.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use session_core::{Keyring, SealingKey, SessionBackend};
use session_libsql::{LibSqlBackend, RemoteOptions};
use session_testkit::sample_session;
use support::Sqld;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Starts a proxy to `upstream` (host:port); returns its URL and the count of HTTP requests
/// through it (request lines end in ` HTTP/1.1\r\n`, which no Hrana body holds).
async fn counting_proxy(upstream: String) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (upstream, counter) = (upstream.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&upstream).await else { return };
                let ((mut client_in, mut client_out), (mut server_in, mut server_out)) =
                    (client.into_split(), server.into_split());
                let up = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    let marker = b" HTTP/1.1\r\n";
                    // The end of the previous read, so a request line split across reads counts.
                    let mut tail: Vec<u8> = Vec::new();
                    loop {
                        let n = match client_in.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let mut seen = std::mem::take(&mut tail);
                        seen.extend_from_slice(&buf[..n]);
                        counter.fetch_add(seen.windows(marker.len()).filter(|w| w == marker).count(), Ordering::SeqCst);
                        tail = seen[seen.len().saturating_sub(marker.len() - 1)..].to_vec();
                        if server_out.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = server_out.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut server_in, &mut client_out).await;
                    let _ = client_out.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    (url, requests)
}

fn keys() -> Keyring {
    Keyring::new(SealingKey::from_bytes([7; 32]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_opens_in_two_requests_plain_or_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let plain = Sqld::start(&dir.path().join("plain"), None);
    let sealed = Sqld::start(&dir.path().join("sealed"), None);
    let data = sample_session(300);

    for (sqld, keyring) in [(&plain, None), (&sealed, Some(keys()))] {
        let (url, requests) = counting_proxy(sqld.url().trim_start_matches("http://").to_owned()).await;
        let open = || async {
            match keyring.clone() {
                Some(k) => LibSqlBackend::open_remote_with_key(&url, "", RemoteOptions::default(), k).await,
                None => LibSqlBackend::open_remote(&url, "").await,
            }
        };
        // The first open migrates (and seals) the empty database.
        let first = open().await.unwrap();
        first.save_session(&data).await.unwrap();
        first.close().await.unwrap();

        let before = requests.load(Ordering::SeqCst);
        let again = open().await.unwrap();
        let opened = requests.load(Ordering::SeqCst) - before;
        assert_eq!(again.load_session().await.unwrap().as_ref(), Some(&data));
        again.close().await.unwrap();
        assert_eq!(opened, 2, "requests of an open (sealed: {}): check and lease", keyring.is_some());

        let before = requests.load(Ordering::SeqCst);
        let snapshot =
            LibSqlBackend::read_remote(&url, "", &RemoteOptions::default(), keyring.as_ref()).await.unwrap().unwrap();
        assert_eq!(snapshot.data, data);
        assert_eq!(snapshot.sealed_with.is_some(), keyring.is_some());
        let read = requests.load(Ordering::SeqCst) - before;
        assert_eq!(read, 2, "requests of the lease-free read (sealed: {}): check and load", keyring.is_some());
    }
}
