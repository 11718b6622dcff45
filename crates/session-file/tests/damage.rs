//! Damaged files: corruption is reported and preserved, a torn tail is dropped (and kept), a
//! log cut short of what its owner acknowledged is corruption, newer formats are refused by name,
//! stray temp files are cleaned up.

use std::path::{Path, PathBuf};

use session_core::{Change, Peer, PeerKind, SessionBackend, SessionData, SessionError};
use session_file::BinaryFileBackend;
use session_testkit::sample_session;

const HEADER_LEN: usize = 12;
const FRAME_LEN: usize = 13;

/// A file holding a saved session and three appended batches; the session after each step and
/// the file length after each step.
async fn written(path: &Path) -> (Vec<SessionData>, Vec<u64>) {
    written_upto(path, 3).await
}

/// The same file after the first `batches` batches only: its owner's high-water mark ends
/// there, as it does when a writer dies in the middle of the next append.
async fn written_upto(path: &Path, batches: i64) -> (Vec<SessionData>, Vec<u64>) {
    let backend = BinaryFileBackend::open(path).await.expect("open");
    let mut data = sample_session(40);
    backend.save_session(&data).await.expect("save");
    let mut states = vec![data.clone()];
    let mut lens = vec![std::fs::metadata(path).expect("meta").len()];
    for i in 0..batches {
        let batch = vec![
            Change::UpsertPeer(Peer::new(900 + i, PeerKind::Megagroup, i * 11)),
            Change::SetHomeDc(i32::try_from(i).expect("small") + 1),
        ];
        data.apply_all(&batch);
        backend.persist(&batch, &data).await.expect("persist");
        states.push(data.clone());
        lens.push(std::fs::metadata(path).expect("meta").len());
    }
    (states, lens)
}

fn preserved_copies(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(".corrupt-"))
        .collect()
}

async fn expect_corrupt(path: &Path, damaged: &[u8], what: &str) {
    match BinaryFileBackend::open(path).await {
        Err(SessionError::Corrupt { resource, reason, preserved_at }) => {
            assert!(resource.contains(&path.display().to_string()), "{what}: error names {resource}");
            let copy = preserved_at.unwrap_or_else(|| panic!("{what}: no preserved copy ({reason})"));
            assert_eq!(std::fs::read(&copy).expect("preserved copy"), damaged, "{what}: preserved copy differs");
            std::fs::remove_file(copy).expect("remove copy");
        }
        Err(other) => panic!("{what}: expected Corrupt, got {other}"),
        Ok(b) => panic!("{what}: a damaged file opened, holding {:?}", b.load_session().await.map(|d| d.is_some())),
    }
    // The damaged file itself was left alone, and opening again still refuses it.
    assert_eq!(std::fs::read(path).expect("file"), damaged, "{what}: the damaged file was modified");
    assert!(BinaryFileBackend::open(path).await.is_err(), "{what}: second open started over");
    for copy in preserved_copies(path.parent().expect("dir")) {
        std::fs::remove_file(copy).expect("remove copy");
    }
}

#[tokio::test]
async fn a_flipped_byte_in_the_snapshot_or_header_is_corruption_and_is_preserved() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    let (_, lens) = written(&path).await;
    let good = std::fs::read(&path).expect("read");
    let snapshot_end = usize::try_from(lens[0]).expect("len");
    let mut positions: Vec<usize> = (0..HEADER_LEN + FRAME_LEN).collect();
    positions.extend([HEADER_LEN + FRAME_LEN + 3, snapshot_end / 2, snapshot_end - 1]);
    for pos in positions {
        let mut damaged = good.clone();
        damaged[pos] ^= 0x10;
        std::fs::write(&path, &damaged).expect("write");
        expect_corrupt(&path, &damaged, &format!("flip at {pos}")).await;
    }
}

#[tokio::test]
async fn a_damaged_record_followed_by_more_records_is_corruption() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    let (_, lens) = written(&path).await;
    let good = std::fs::read(&path).expect("read");
    let first = usize::try_from(lens[0]).expect("len");
    let second = usize::try_from(lens[1]).expect("len");
    for pos in [first, first + 1, first + 5, first + FRAME_LEN, second - 1] {
        let mut damaged = good.clone();
        damaged[pos] ^= 0x01;
        std::fs::write(&path, &damaged).expect("write");
        expect_corrupt(&path, &damaged, &format!("flip in the first change record at {pos}")).await;
    }
}

#[tokio::test]
async fn a_torn_tail_loads_the_acknowledged_prefix_and_is_cut_off() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    let (states, lens) = written(&dir.path().join("full.session")).await;
    let good = std::fs::read(dir.path().join("full.session")).expect("read");
    // The owner of `path` acknowledged two batches, and died writing the third.
    written_upto(&path, 2).await;
    let (prefix, full) = (lens[2], lens[3]);
    let mut cases: Vec<(String, Vec<u8>)> = (prefix..full)
        .map(|cut| (format!("cut at {cut}"), good[..usize::try_from(cut).expect("len")].to_vec()))
        .collect();
    // A complete last record whose checksum fails: a power cut kept some of its sectors (the
    // owner's mark says it was never acknowledged).
    let mut bad_sum = good.clone();
    let last = bad_sum.len() - 1;
    bad_sum[last] ^= 0xFF;
    cases.push(("bad checksum of the last record".into(), bad_sum));
    // Zeros where the last record should be (a file extended but never written).
    let mut zeros = good[..usize::try_from(prefix).expect("len")].to_vec();
    zeros.resize(good.len(), 0);
    cases.push(("zero-filled last record".into(), zeros));
    for (what, bytes) in cases {
        std::fs::write(&path, &bytes).expect("write");
        let backend = BinaryFileBackend::open(&path).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let loaded = backend.load_session().await.expect("load");
        assert_eq!(loaded.as_ref(), Some(&states[2]), "{what}: not the acknowledged prefix");
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), prefix, "{what}: tail not cut off");
        // What was cut is reported, and its bytes are kept, private.
        let tail = &bytes[usize::try_from(prefix).expect("len")..];
        if tail.is_empty() {
            assert_eq!(backend.cut_at_open(), None, "{what}: nothing to cut");
        } else {
            let cut = backend.cut_at_open().unwrap_or_else(|| panic!("{what}: the cut is not reported"));
            assert_eq!((cut.at, cut.len), (prefix, tail.len() as u64), "{what}");
            assert_eq!(std::fs::read(&cut.kept_at).expect("kept tail"), tail, "{what}: kept bytes differ");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&cut.kept_at).expect("meta").permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{what}: kept tail mode");
            }
        }
        // Appending continues from the good prefix.
        let mut expected = states[2].clone();
        let batch = [Change::SetApiId(Some(77))];
        expected.apply_all(&batch);
        backend.persist(&batch, &expected).await.expect("persist after torn tail");
        drop(backend);
        let backend = BinaryFileBackend::open(&path).await.expect("reopen");
        assert_eq!(backend.load_session().await.expect("load").as_ref(), Some(&expected), "{what}: after append");
        assert!(preserved_copies(dir.path()).is_empty(), "{what}: a torn tail is not corruption");
        drop(backend);
        // Back to the state of a writer that acknowledged two batches.
        std::fs::remove_file(&path).expect("remove");
        written_upto(&path, 2).await;
    }
    // An untouched file loads everything.
    std::fs::write(&path, &good).expect("write");
    let backend = BinaryFileBackend::open(&path).await.expect("open");
    assert_eq!(backend.load_session().await.expect("load").as_ref(), Some(&states[3]));
}

#[tokio::test]
async fn damage_to_or_truncation_of_acknowledged_records_is_corruption_not_a_torn_tail() {
    // The owner acknowledged all three batches: nothing of them may be cut or lost.
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    let (_, lens) = written(&path).await;
    let good = std::fs::read(&path).expect("read");
    let full = good.len();
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    // Cut at every length inside the change records, record boundaries included: each loses
    // acknowledged records.
    for cut in usize::try_from(lens[0]).expect("len")..full {
        cases.push((format!("cut at {cut}"), good[..cut].to_vec()));
    }
    // A flipped bit in the last, complete, acknowledged record.
    for pos in [usize::try_from(lens[2]).expect("len"), usize::try_from(lens[2]).expect("len") + 3, full - 1] {
        let mut flipped = good.clone();
        flipped[pos] ^= 0x04;
        cases.push((format!("flip at {pos} of the last record"), flipped));
    }
    let mut zeros = good[..usize::try_from(lens[2]).expect("len")].to_vec();
    zeros.resize(full, 0);
    cases.push(("the last record zeroed".into(), zeros));
    for (what, bytes) in cases {
        std::fs::write(&path, &bytes).expect("write");
        expect_corrupt(&path, &bytes, &what).await;
        // Restore the file the owner left (its mark is unchanged: no owner opened it since).
        std::fs::write(&path, &good).expect("restore");
    }
    let backend = BinaryFileBackend::open(&path).await.expect("the untouched file opens");
    assert!(backend.cut_at_open().is_none());
}

#[tokio::test]
async fn opening_a_damaged_file_again_and_again_keeps_one_copy() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    written(&path).await;
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[HEADER_LEN + FRAME_LEN + 5] ^= 1;
    std::fs::write(&path, &bytes).expect("write");
    let mut kept = std::collections::BTreeSet::new();
    for _ in 0..10 {
        match BinaryFileBackend::open(&path).await {
            Err(SessionError::Corrupt { preserved_at: Some(copy), .. }) => {
                kept.insert(copy);
            }
            other => panic!("expected Corrupt with a copy, got {:?}", other.map(|_| ())),
        }
    }
    assert_eq!(kept.len(), 1, "one copy named every time");
    assert_eq!(preserved_copies(dir.path()).len(), 1, "copies piled up");
    // Different damage gets its own copy.
    bytes[HEADER_LEN + FRAME_LEN + 6] ^= 1;
    std::fs::write(&path, &bytes).expect("write");
    assert!(BinaryFileBackend::open(&path).await.is_err());
    assert_eq!(preserved_copies(dir.path()).len(), 2);
}

#[tokio::test]
async fn a_newer_format_is_refused_by_name_and_left_alone() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    written(&path).await;
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[4] = 4; // file format version 4 (2 and 3 are sealed logs)
    let crc = crc32fast::hash(&bytes[..8]);
    bytes[8..12].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).expect("write");
    match BinaryFileBackend::open(&path).await {
        Err(SessionError::UnsupportedVersion { found: 4, supported: 3, .. }) => {}
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).expect("read"), bytes);
    assert!(preserved_copies(dir.path()).is_empty());
}

#[tokio::test]
async fn a_file_that_is_no_session_at_all_is_corruption_not_a_fresh_start() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    for (what, bytes) in [
        ("text", b"hello, this is not a session file\n".to_vec()),
        ("partial magic", b"LYS".to_vec()),
        ("one byte", vec![3u8]),
    ] {
        std::fs::write(&path, &bytes).expect("write");
        expect_corrupt(&path, &bytes, what).await;
    }
    // An empty file was never written by a backend (it creates files by rename): something
    // truncated the session, which must not open as "no session".
    std::fs::write(&path, b"").expect("write");
    expect_corrupt(&path, b"", "empty file").await;
}

#[tokio::test]
async fn stray_temp_files_of_dead_writers_are_removed_on_open() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    written(&path).await;
    let stray = dir.path().join(".s.session.tmp-999999-3");
    std::fs::write(&stray, b"half a snapshot").expect("stray");
    let other = dir.path().join(".s.session.tmp-x.tmp-1-2");
    std::fs::write(&other, b"not ours").expect("other");
    let backend = BinaryFileBackend::open(&path).await.expect("open");
    assert!(!stray.exists(), "the stray temp file was not removed");
    assert!(other.exists(), "a file that is not our temp file was removed");
    assert!(backend.load_session().await.expect("load").is_some());
}

#[tokio::test]
async fn a_second_backend_in_the_same_process_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    let first = BinaryFileBackend::open(&path).await.expect("open");
    match BinaryFileBackend::open(&path).await {
        Err(SessionError::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(first);
    BinaryFileBackend::open(&path).await.expect("released on drop");
}

#[tokio::test]
async fn log_out_rewrites_the_file_so_no_key_stays_on_disk() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    let backend = BinaryFileBackend::open(&path).await.expect("open");
    let mut data = sample_session(5);
    backend.save_session(&data).await.expect("save");
    let key = *data.dcs.values().find_map(|d| d.auth_key.as_ref()).expect("a key").as_bytes();
    data.apply(&Change::LogOut);
    backend.persist(&[Change::LogOut], &data).await.expect("log out");
    let bytes = std::fs::read(&path).expect("read");
    assert!(!bytes.windows(32).any(|w| w == &key[..32]), "the auth key is still in the file after log out");
    drop(backend);
    let backend = BinaryFileBackend::open(&path).await.expect("reopen");
    assert!(backend.load_session().await.expect("load").unwrap_or_default().is_empty());
}

#[tokio::test]
async fn the_log_is_compacted_once_it_outgrows_the_snapshot() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    let backend = BinaryFileBackend::open(&path).await.expect("open");
    let mut data = sample_session(1000);
    backend.save_session(&data).await.expect("save");
    let snapshot = std::fs::metadata(&path).expect("meta").len();
    let mut largest = 0;
    for i in 0..3000i64 {
        let batch = [Change::UpsertPeer(Peer::new(5_000_000 + i % 50, PeerKind::User, i))];
        data.apply_all(&batch);
        backend.persist(&batch, &data).await.expect("persist");
        largest = largest.max(std::fs::metadata(&path).expect("meta").len());
    }
    let limit = snapshot + session_file::COMPACT_FACTOR * snapshot + session_file::COMPACT_FLOOR + 1024;
    assert!(largest <= limit, "the log grew to {largest} bytes, over {limit}");
    drop(backend);
    let backend = BinaryFileBackend::open(&path).await.expect("reopen");
    assert_eq!(backend.load_session().await.expect("load"), Some(data));
}
