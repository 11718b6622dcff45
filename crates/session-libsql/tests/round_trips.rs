//! Requests an open makes, counted from outside (a proxy in front of sqld counts HTTP request
//! lines): a restart's open of a database whose schema is current reads the schema and the seal
//! record in one request, so it is the check and the lease (two requests), plain or sealed; the
//! lease-free reader is the check and the load. A database the open migrates still opens.

#![allow(clippy::unwrap_used)]

mod support;

use session_core::{Keyring, SealingKey, SessionBackend};
use session_libsql::{LibSqlBackend, RemoteOptions};
use session_testkit::sample_session;
use support::{CountingProxy, Sqld, REQUEST_LINE_END};

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
        let proxy = CountingProxy::start(sqld.url().trim_start_matches("http://").to_owned(), REQUEST_LINE_END).await;
        let url = proxy.url.clone();
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

        let before = proxy.count();
        let again = open().await.unwrap();
        let opened = proxy.count() - before;
        assert_eq!(again.load_session().await.unwrap().as_ref(), Some(&data));
        again.close().await.unwrap();
        assert_eq!(opened, 2, "requests of an open (sealed: {}): check and lease", keyring.is_some());

        let before = proxy.count();
        let snapshot =
            LibSqlBackend::read_remote(&url, "", &RemoteOptions::default(), keyring.as_ref()).await.unwrap().unwrap();
        assert_eq!(snapshot.data, data);
        assert_eq!(snapshot.sealed_with.is_some(), keyring.is_some());
        let read = proxy.count() - before;
        assert_eq!(read, 2, "requests of the lease-free read (sealed: {}): check and load", keyring.is_some());
    }
}
