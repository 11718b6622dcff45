//! `read_snapshot` reads a file that a live backend owns, without the lock and without writing; it
//! applies the owner's high-water mark and lists the torn tails an owner cut.

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

#[tokio::test]
async fn reports_what_an_owner_cut_and_refuses_a_log_cut_below_its_mark() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    let backend = BinaryFileBackend::open(&path).await.expect("open");
    let mut data = session_testkit::sample_session(4);
    backend.save_session(&data).await.expect("save");
    let before = std::fs::metadata(&path).expect("meta").len();
    let batch = [Change::SetHomeDc(4)];
    data.apply_all(&batch);
    backend.persist(&batch, &data).await.expect("persist");
    let full = std::fs::read(&path).expect("bytes");
    let snap = read_snapshot(&path).expect("read").expect("a session");
    assert_eq!(snap.acknowledged_len, Some(full.len() as u64));

    // Cut exactly at the record boundary: a valid but older log, below the owner's mark.
    std::fs::write(&path, &full[..usize::try_from(before).expect("len")]).expect("write");
    match read_snapshot(&path) {
        Err(SessionError::Corrupt { reason, preserved_at: None, .. }) => {
            assert!(reason.contains("acknowledged"), "{reason}")
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|s| s.map(|s| s.data == data))),
    }
    std::fs::write(&path, &full).expect("restore");
    drop(backend);

    // A torn append the next owner cuts off is listed with its copy.
    let mut torn = full.clone();
    torn.extend_from_slice(&[2, 40, 0, 0, 0, 0, 0, 0, 0, 7]);
    std::fs::write(&path, &torn).expect("write");
    let snap = read_snapshot(&path).expect("read").expect("a session");
    assert_eq!(snap.torn_at, Some(full.len() as u64));
    assert_eq!(snap.torn.map(|(len, _)| len), Some(10));
    let backend = BinaryFileBackend::open(&path).await.expect("open cuts the tail");
    let cut = backend.cut_at_open().expect("cut").clone();
    let snap = read_snapshot(&path).expect("read").expect("a session");
    assert_eq!((snap.torn_at, snap.data), (None, data));
    assert_eq!(snap.torn_copies, vec![cut.kept_at]);

    // An empty file is damage, not "no session".
    drop(backend);
    std::fs::write(&path, b"").expect("empty");
    assert!(matches!(read_snapshot(&path), Err(SessionError::Corrupt { .. })));
}
