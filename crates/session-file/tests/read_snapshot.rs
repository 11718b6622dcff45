//! `read_snapshot` reads a file that a live backend owns, without the lock and without writing.

use session_core::{Change, SessionBackend, SessionError};
use session_file::{read_snapshot, BinaryFileBackend, StoredFormat};

#[tokio::test]
async fn reads_an_owned_file_and_reports_a_torn_tail_without_touching_it() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("live.session");
    let backend = BinaryFileBackend::open(&path).await.expect("open");
    let mut data = session_testkit::sample_session(10);
    backend.save_session(&data).await.expect("save");
    let batch = [Change::SetHomeDc(4)];
    data.apply_all(&batch);
    backend.persist(&batch, &data).await.expect("persist");

    let snap = read_snapshot(&path).expect("read").expect("a session");
    assert_eq!(snap.format, StoredFormat::Log);
    assert_eq!(snap.data, data);
    assert_eq!(snap.torn_at, None);

    // Half a record at the end: reported, not repaired.
    let mut bytes = std::fs::read(&path).expect("bytes");
    let good = bytes.len() as u64;
    bytes.extend_from_slice(&[2, 200, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
    std::fs::write(&path, &bytes).expect("write");
    let snap = read_snapshot(&path).expect("read").expect("a session");
    assert_eq!(snap.torn_at, Some(good));
    assert_eq!(snap.data, data);
    assert_eq!(std::fs::read(&path).expect("bytes"), bytes, "read_snapshot changed the file");

    bytes[20] ^= 1;
    std::fs::write(&path, &bytes).expect("write");
    assert!(matches!(read_snapshot(&path), Err(SessionError::Corrupt { preserved_at: None, .. })));
}
