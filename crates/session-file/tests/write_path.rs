//! A change costs O(size of the change): persisting one peer into a large session appends one
//! small record to the same file; it does not rewrite the session.

use session_core::{Change, Peer, PeerKind, SessionBackend};
use session_file::BinaryFileBackend;

#[tokio::test]
async fn one_change_appends_one_small_record_to_the_same_file() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("big.session");
    let backend = BinaryFileBackend::open(&path).await.expect("open");
    let mut data = session_testkit::sample_session(100_000);
    backend.save_session(&data).await.expect("save");
    let before = std::fs::metadata(&path).expect("meta");
    for i in 0..100i64 {
        let change = [Change::UpsertPeer(Peer::new(7_000_000_000 + i, PeerKind::User, i))];
        data.apply_all(&change);
        backend.persist(&change, &data).await.expect("persist");
    }
    let after = std::fs::metadata(&path).expect("meta");
    let grown = after.len() - before.len();
    assert!(grown <= 100 * 64, "100 one-peer changes grew the file by {grown} bytes");
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(before.ino(), after.ino(), "the file was rewritten instead of appended to");
    }
    drop(backend);
    let backend = BinaryFileBackend::open(&path).await.expect("reopen");
    assert_eq!(backend.load_session().await.expect("load"), Some(data));
}
