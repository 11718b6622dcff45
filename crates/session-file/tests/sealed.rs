//! A sealed (encrypted at rest) session file: no secret on disk, a wrong or missing key is a
//! typed error that changes nothing, damage and moved records are corruption, plain files are
//! sealed by their first write, keys rotate, passphrases keep one key id, files of version 2
//! still open, and a snapshot long enough to be split into segments (and opened on several
//! threads) round trips.

use std::path::Path;

use session_core::{
    AuthKey, Change, DcOption, KdfParams, Keyring, Passphrase, Peer, PeerKind, SealingKey, SessionBackend, SessionData,
    SessionError,
};
use session_file::{read_snapshot, read_snapshot_with_key, BinaryFileBackend};
use session_testkit::sample_session;

const FAST: KdfParams = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };

fn key(byte: u8) -> SealingKey {
    SealingKey::from_bytes([byte; 32])
}

/// A session with two known auth keys and a future auth token, all of distinct random-looking
/// bytes so an 8-byte window of them cannot occur by chance.
fn secret_session() -> SessionData {
    let mut data = sample_session(30);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed.to_le_bytes()[0]
    };
    let key2: Vec<u8> = (0..256).map(|_| next()).collect();
    let key4: Vec<u8> = (0..256).map(|_| next()).collect();
    let token: Vec<u8> = (0..64).map(|_| next()).collect();
    data.apply(&Change::SetDc(
        DcOption::new(2, "149.154.167.51:443".parse().expect("addr")).with_auth_key(AuthKey::from_slice(&key2)),
    ));
    data.apply(&Change::SetAuthKey { dc_id: 4, key: AuthKey::from_slice(&key4) });
    data.apply(&Change::SetFutureAuthToken(Some(token)));
    data
}

fn secrets(data: &SessionData) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> =
        data.dcs.values().filter_map(|d| d.auth_key.as_ref()).map(|k| k.as_bytes().to_vec()).collect();
    out.extend(data.future_auth_token.clone());
    assert!(out.len() >= 3, "the session holds the secrets the test looks for");
    out
}

/// Every file in `dir` (the session, its lock, any copy) holds no 8-byte window of a secret.
fn assert_no_secret_on_disk(dir: &Path, data: &SessionData) {
    // Every window of every secret, looked up once per window of each file.
    let windows: std::collections::HashSet<Vec<u8>> =
        secrets(data).iter().flat_map(|s| s.windows(8).map(<[u8]>::to_vec).collect::<Vec<_>>()).collect();
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        assert!(!bytes.windows(8).any(|w| windows.contains(w)), "{} holds 8 bytes of a secret", path.display());
    }
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A sealed file with a saved session and two appended batches; the session written.
async fn sealed_file(path: &Path, keys: Keyring) -> SessionData {
    let backend = BinaryFileBackend::open_with_key(path, keys).await.expect("open");
    let mut data = secret_session();
    backend.save_session(&data).await.expect("save");
    for i in 0..2 {
        let batch = vec![Change::UpsertPeer(Peer::new(700 + i, PeerKind::User, 31 * i)), Change::SetHomeDc(2)];
        data.apply_all(&batch);
        backend.persist(&batch, &data).await.expect("persist");
    }
    data
}

#[tokio::test]
async fn a_sealed_file_round_trips_and_no_secret_reaches_the_disk() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    let data = sealed_file(&path, Keyring::new(key(1))).await;
    let bytes = std::fs::read(&path).expect("read");
    assert_eq!(&bytes[..4], b"LYSF");
    assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 3, "a sealed log is file version 3");
    assert_no_secret_on_disk(dir.path(), &data);
    // Nor any peer's access hash in the clear: the whole session is sealed.
    let peer = data.peers.iter().next().expect("a peer");
    let hash = peer.access_hash.to_le_bytes();
    assert!(!bytes.windows(8).any(|w| w == hash), "an access hash in the clear");

    let backend = BinaryFileBackend::open_with_key(&path, Keyring::new(key(1))).await.expect("reopen");
    assert_eq!(backend.sealed_with(), Some(key(1).id()));
    assert_eq!(backend.load_session().await.expect("load"), Some(data.clone()));
    drop(backend);
    // The read-only reader opens it with the key, and says it is sealed without one.
    let snap = read_snapshot_with_key(&path, &Keyring::new(key(1))).expect("read").expect("some");
    assert_eq!((snap.data, snap.sealed_with), (data, Some(key(1).id())));
    match read_snapshot(&path) {
        Err(SessionError::Sealed { key_id, .. }) => assert_eq!(key_id, Some(key(1).id())),
        other => panic!("expected Sealed, got {other:?}"),
    }
}

#[tokio::test]
async fn without_a_key_or_with_a_wrong_one_nothing_changes_on_disk() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    sealed_file(&path, Keyring::new(key(1))).await;
    let before = std::fs::read(&path).expect("read");
    let names = file_names(dir.path());

    match BinaryFileBackend::open(&path).await {
        Err(e @ SessionError::Sealed { .. }) => {
            let shown = e.to_string();
            assert!(shown.contains("sealed") && shown.contains(&key(1).id().to_string()), "{shown}");
        }
        other => panic!("expected Sealed, got {other:?}"),
    }
    match BinaryFileBackend::open_with_key(&path, Keyring::new(key(2))).await {
        Err(SessionError::WrongKey { key_id, .. }) => assert_eq!(key_id, key(1).id()),
        other => panic!("expected WrongKey, got {other:?}"),
    }
    let wrong_pass = Keyring::from_passphrase(Passphrase::new("not it"), FAST);
    assert!(matches!(BinaryFileBackend::open_with_key(&path, wrong_pass).await, Err(SessionError::WrongKey { .. })));
    assert_eq!(std::fs::read(&path).expect("read"), before, "the file changed");
    assert_eq!(file_names(dir.path()), names, "a copy or another file appeared");
    // And the right key still opens it.
    BinaryFileBackend::open_with_key(&path, Keyring::new(key(1))).await.expect("right key");
}

#[tokio::test]
async fn every_flipped_byte_of_a_sealed_file_is_an_error_never_a_wrong_key_or_other_data() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    // A small session, so that every byte can be tried.
    let backend = BinaryFileBackend::open_with_key(&path, Keyring::new(key(3))).await.expect("open");
    let mut data = SessionData::default();
    data.apply(&Change::SetAuthKey { dc_id: 2, key: AuthKey::from_slice(&[7u8; 256]) });
    backend.save_session(&data).await.expect("save");
    for i in 0..2 {
        let batch = [Change::UpsertPeer(Peer::new(5 + i, PeerKind::User, 9))];
        data.apply_all(&batch);
        backend.persist(&batch, &data).await.expect("persist");
    }
    drop(backend);
    let good = std::fs::read(&path).expect("read");
    let mut tried = 0;
    for i in 0..good.len() {
        let mut bytes = good.clone();
        bytes[i] ^= 0x10;
        std::fs::write(&path, &bytes).expect("write");
        match BinaryFileBackend::open_with_key(&path, Keyring::new(key(3))).await {
            Err(SessionError::Corrupt { .. } | SessionError::UnsupportedVersion { .. }) => {}
            other => panic!("byte {i}: expected Corrupt, got {other:?}"),
        }
        tried += 1;
    }
    assert_eq!(tried, good.len());
    std::fs::write(&path, &good).expect("restore");
    let backend = BinaryFileBackend::open_with_key(&path, Keyring::new(key(3))).await.expect("intact");
    assert_eq!(backend.load_session().await.expect("load"), Some(data));
}

#[tokio::test]
async fn records_moved_between_files_or_offsets_do_not_open() {
    let dir = tempfile::tempdir().expect("dir");
    let (a, b) = (dir.path().join("a.session"), dir.path().join("b.session"));
    // Same key, same changes: only the files' generations (and the offsets) differ.
    let make = |path: std::path::PathBuf| async move {
        let backend = BinaryFileBackend::open_with_key(&path, Keyring::new(key(4))).await.expect("open");
        let data = SessionData::default();
        backend.save_session(&data).await.expect("save");
        let len = std::fs::metadata(&path).expect("meta").len();
        let batch = [Change::SetHomeDc(2)];
        backend.persist(&batch, &data).await.expect("persist");
        (std::fs::read(&path).expect("read"), usize::try_from(len).expect("len"))
    };
    let (bytes_a, snap_a) = make(a.clone()).await;
    let (bytes_b, snap_b) = make(b.clone()).await;
    let record_a = bytes_a[snap_a..].to_vec();
    let record_b = bytes_b[snap_b..].to_vec();
    let cases = [
        // B's change record appended to A in place of A's own.
        ("another file's record", [&bytes_a[..snap_a], &record_b[..]].concat()),
        // A's record replayed once more after itself.
        ("a replayed record", [&bytes_a[..], &record_a[..]].concat()),
        // B's header and snapshot with A's record.
        ("another file's snapshot", [&bytes_b[..snap_b], &record_a[..]].concat()),
    ];
    for (what, bytes) in cases {
        std::fs::write(&a, &bytes).expect("write");
        match BinaryFileBackend::open_with_key(&a, Keyring::new(key(4))).await {
            Err(SessionError::Corrupt { reason, .. }) => assert!(reason.contains("moved"), "{what}: {reason}"),
            other => panic!("{what}: expected Corrupt, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_plain_file_opened_with_a_key_is_sealed_by_its_first_write() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    let mut data = secret_session();
    {
        let plain = BinaryFileBackend::open(&path).await.expect("open");
        plain.save_session(&data).await.expect("save");
    }
    let plain_bytes = std::fs::read(&path).expect("read");
    let backend = BinaryFileBackend::open_with_key(&path, Keyring::new(key(5))).await.expect("open with key");
    assert_eq!(backend.sealed_with(), None);
    assert_eq!(backend.load_session().await.expect("load"), Some(data.clone()));
    assert_eq!(std::fs::read(&path).expect("read"), plain_bytes, "opening alone rewrites nothing");
    let batch = [Change::SetHomeDc(4)];
    data.apply_all(&batch);
    backend.persist(&batch, &data).await.expect("persist");
    assert_eq!(backend.sealed_with(), Some(key(5).id()));
    drop(backend);
    // The session file itself holds no secret any more (the old plain bytes are gone: the file
    // was replaced by rename).
    let bytes = std::fs::read(&path).expect("read");
    for secret in secrets(&data) {
        assert!(!bytes.windows(8).any(|w| secret.windows(8).any(|s| s == w)));
    }
    assert!(matches!(BinaryFileBackend::open(&path).await, Err(SessionError::Sealed { .. })));
    let reopened = BinaryFileBackend::open_with_key(&path, Keyring::new(key(5))).await.expect("reopen");
    assert_eq!(reopened.load_session().await.expect("load"), Some(data));
}

#[tokio::test]
async fn rotation_reads_with_the_old_key_and_rewrites_with_the_new() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    let mut data = sealed_file(&path, Keyring::new(key(6))).await;
    let rotated = Keyring::new(key(7)).with_old_key(key(6));
    let backend = BinaryFileBackend::open_with_key(&path, rotated).await.expect("open");
    assert_eq!(backend.load_session().await.expect("load"), Some(data.clone()));
    let batch = [Change::SetHomeDc(5)];
    data.apply_all(&batch);
    backend.persist(&batch, &data).await.expect("persist");
    assert_eq!(backend.sealed_with(), Some(key(7).id()));
    drop(backend);
    assert!(matches!(
        BinaryFileBackend::open_with_key(&path, Keyring::new(key(6))).await,
        Err(SessionError::WrongKey { .. })
    ));
    let backend = BinaryFileBackend::open_with_key(&path, Keyring::new(key(7))).await.expect("new key");
    assert_eq!(backend.load_session().await.expect("load"), Some(data.clone()));
    assert_no_secret_on_disk(dir.path(), &data);
}

#[tokio::test]
async fn a_passphrase_keeps_its_salt_so_appends_go_on_without_a_rewrite() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    let ring = || Keyring::from_passphrase(Passphrase::new("correct horse battery staple"), FAST);
    let mut data = sealed_file(&path, ring()).await;
    let before = std::fs::read(&path).expect("read");
    let backend = BinaryFileBackend::open_with_key(&path, ring()).await.expect("reopen");
    let id = backend.sealed_with().expect("sealed");
    assert_eq!(backend.load_session().await.expect("load"), Some(data.clone()));
    let batch = [Change::SetHomeDc(3)];
    data.apply_all(&batch);
    backend.persist(&batch, &data).await.expect("persist");
    assert_eq!(backend.sealed_with(), Some(id), "same passphrase, same salt, same key");
    drop(backend);
    let after = std::fs::read(&path).expect("read");
    assert!(after.len() > before.len() && after.starts_with(&before), "the change was appended, not rewritten");
    // A raw-key keyring cannot open a passphrase's file, and the passphrase's file says so.
    assert!(matches!(
        BinaryFileBackend::open_with_key(&path, Keyring::new(key(1))).await,
        Err(SessionError::WrongKey { .. })
    ));
    let backend = BinaryFileBackend::open_with_key(&path, ring()).await.expect("reopen");
    assert_eq!(backend.load_session().await.expect("load"), Some(data.clone()));
    // A full save starts a new generation under the same passphrase key, still sealed.
    backend.save_session(&data).await.expect("save");
    assert_eq!(backend.sealed_with(), Some(id));
    drop(backend);
    assert_no_secret_on_disk(dir.path(), &data);
}

#[tokio::test]
async fn a_key_dropped_from_a_plain_open_never_unseals_the_file() {
    // A sealed file stays sealed: a plain backend cannot open it, so it can never rewrite it in
    // the clear; only a backend with the key writes to it.
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    let data = sealed_file(&path, Keyring::new(key(8))).await;
    assert!(BinaryFileBackend::open(&path).await.is_err());
    let backend = BinaryFileBackend::open_with_key(&path, Keyring::new(key(8))).await.expect("open");
    backend.save_session(&data).await.expect("save");
    drop(backend);
    let bytes = std::fs::read(&path).expect("read");
    assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 3);
    assert_no_secret_on_disk(dir.path(), &data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_passphrase_or_secret_appears_in_any_span_or_event() {
    use session_testkit::capture::{self, secret_changes, Secrets};
    let capture = capture::install();
    let _serial = capture.lock().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    let raw = [0x5cu8; 32];
    let passphrase = "a passphrase nobody may log";
    let mut secrets = Secrets::new();
    secrets.bytes("sealing key", &raw).text("passphrase", passphrase);

    let backend =
        BinaryFileBackend::open_with_key(&path, Keyring::new(SealingKey::from_bytes(raw))).await.expect("open");
    let changes = secret_changes(0x5EA1, 20);
    let mut data = SessionData::default();
    data.apply_all(&changes);
    secrets.session(&data);
    backend.persist(&changes, &data).await.expect("write");
    let one = [Change::SetHomeDc(4)];
    data.apply_all(&one);
    backend.persist(&one, &data).await.expect("append");
    drop(backend);
    let errors = [
        BinaryFileBackend::open(&path).await.expect_err("no key"),
        BinaryFileBackend::open_with_key(&path, Keyring::from_passphrase(Passphrase::new(passphrase), FAST))
            .await
            .expect_err("wrong passphrase"),
    ];
    let pass_path = dir.path().join("p.session");
    let ring = Keyring::from_passphrase(Passphrase::new(passphrase), FAST);
    let backend = BinaryFileBackend::open_with_key(&pass_path, ring).await.expect("open");
    backend.save_session(&data).await.expect("save");
    tracing::info!(keyring = ?Keyring::new(SealingKey::from_bytes(raw)), errors = ?errors, "what a caller may log");

    let log = capture.take();
    assert!(!log.spans(T, "open").is_empty(), "the opens were traced");
    log.assert_no_secret(&secrets);
}

const T: &str = "session_file";

#[tokio::test]
async fn a_rotation_that_fails_at_any_step_leaves_a_file_the_rotated_keyring_reads() {
    use session_file::failpoint::{Failpoints, Step};
    for step in [Step::TempWrite, Step::TempSync, Step::Rename, Step::DirSync] {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("s.session");
        let before = sealed_file(&path, Keyring::new(key(10))).await;
        let rotated = || Keyring::new(key(11)).with_old_key(key(10));
        let failpoints = Failpoints::new();
        failpoints.arm(step, std::io::ErrorKind::Other);
        let backend =
            BinaryFileBackend::open_with_key_and_failpoints(&path, rotated(), failpoints.clone()).await.expect("open");
        let mut after = before.clone();
        let batch = [Change::SetHomeDc(4)];
        after.apply_all(&batch);
        let result = backend.persist(&batch, &after).await;
        assert_eq!(failpoints.fired(), vec![step], "{step:?}");
        assert!(result.is_err(), "{step:?}: the failed write is reported");
        drop(backend);
        // Old or new, never lost: the rotated keyring opens whatever is there, and what it
        // reads is the session before or after the change.
        let reopened = BinaryFileBackend::open_with_key(&path, rotated()).await.expect("reopen");
        let read = reopened.load_session().await.expect("load").expect("some");
        assert!(read == before || read == after, "{step:?}: neither the old nor the new session");
        // The retried write completes the rotation.
        reopened.persist(&batch, &after).await.expect("retry");
        assert_eq!(reopened.sealed_with(), Some(key(11).id()), "{step:?}");
        drop(reopened);
        let last = BinaryFileBackend::open_with_key(&path, Keyring::new(key(11))).await.expect("new key alone");
        assert_eq!(last.load_session().await.expect("load"), Some(after));
    }
}

/// The session the version 2 fixture holds (`tests/golden/sealed-v2.session`, written by the
/// build before snapshots were segmented, sealed with the raw key `[0x5A; 32]`): a snapshot and
/// two change records.
fn v2_fixture_session() -> SessionData {
    let mut data = SessionData::default();
    data.apply(&Change::SetAuthKey { dc_id: 2, key: AuthKey::from_slice(&[0xA7u8; 256]) });
    data.apply(&Change::SetHomeDc(2));
    for i in 0..40 {
        data.apply(&Change::UpsertPeer(Peer::new(1000 + i, PeerKind::User, 77 * i)));
    }
    data.apply_all(&[Change::UpsertPeer(Peer::new(5, PeerKind::Channel, 9)), Change::SetHomeDc(4)]);
    data.apply(&Change::RemovePeer(Peer::new(1003, PeerKind::User, 0).key()));
    data
}

#[tokio::test]
async fn a_sealed_file_of_version_2_opens_takes_appends_and_is_rewritten_as_version_3() {
    let fixture =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/sealed-v2.session")).expect("fixture");
    assert_eq!(u16::from_le_bytes([fixture[4], fixture[5]]), 2, "the fixture is of version 2");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    std::fs::write(&path, &fixture).expect("write");
    let k = || Keyring::new(SealingKey::from_bytes([0x5A; 32]));
    let mut data = v2_fixture_session();

    assert!(matches!(BinaryFileBackend::open(&path).await, Err(SessionError::Sealed { .. })));
    assert!(matches!(
        BinaryFileBackend::open_with_key(&path, Keyring::new(key(1))).await,
        Err(SessionError::WrongKey { .. })
    ));
    let snap = read_snapshot_with_key(&path, &k()).expect("read").expect("some");
    assert_eq!(snap.data, data);

    let backend = BinaryFileBackend::open_with_key(&path, k()).await.expect("open");
    assert_eq!(backend.sealed_with(), Some(SealingKey::from_bytes([0x5A; 32]).id()));
    assert_eq!(backend.load_session().await.expect("load"), Some(data.clone()));
    // Its own key: appended to in place, still version 2.
    let batch = [Change::SetHomeDc(5)];
    data.apply_all(&batch);
    backend.persist(&batch, &data).await.expect("append");
    drop(backend);
    let appended = std::fs::read(&path).expect("read");
    assert!(appended.starts_with(&fixture) && appended.len() > fixture.len(), "appended, not rewritten");
    let backend = BinaryFileBackend::open_with_key(&path, k()).await.expect("reopen");
    assert_eq!(backend.load_session().await.expect("load"), Some(data.clone()));
    // A whole new file (a save) is of version 3, and opens.
    backend.save_session(&data).await.expect("save");
    drop(backend);
    let bytes = std::fs::read(&path).expect("read");
    assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), 3);
    let backend = BinaryFileBackend::open_with_key(&path, k()).await.expect("reopen");
    assert_eq!(backend.load_session().await.expect("load"), Some(data));
}

#[tokio::test]
async fn a_snapshot_of_many_segments_round_trips_through_compaction_and_keeps_no_secret() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    // Enough peers for a snapshot of several 64 KiB segments (opened on several threads where
    // the machine has them).
    let mut data = secret_session();
    for i in 0..30_000u32 {
        data.apply(&Change::UpsertPeer(Peer::new(i64::from(i) * 3 + 10_000, PeerKind::User, i64::from(i) << 20)));
    }
    let backend = BinaryFileBackend::open_with_key(&path, Keyring::new(key(12))).await.expect("open");
    backend.save_session(&data).await.expect("save");
    let saved = std::fs::metadata(&path).expect("meta").len();
    assert!(saved > 3 * 64 * 1024, "the snapshot spans several segments ({saved} bytes)");
    // Appends until the log is compacted (a new snapshot, sealed again in segments).
    let mut compacted = false;
    for round in 0..400u32 {
        let batch: Vec<Change> = (0..1000u32)
            .map(|j| Change::UpsertPeer(Peer::new(i64::from(round * 1000 + j) + 1_000_000, PeerKind::Channel, 5)))
            .collect();
        data.apply_all(&batch);
        // A new generation has a new random file id in its header.
        let header = |p: &Path| std::fs::read(p).expect("read")[..40].to_vec();
        let before = header(&path);
        backend.persist(&batch, &data).await.expect("persist");
        if header(&path) != before {
            compacted = true;
            break;
        }
    }
    assert!(compacted, "the log was compacted");
    drop(backend);
    let backend = BinaryFileBackend::open_with_key(&path, Keyring::new(key(12))).await.expect("reopen");
    assert_eq!(backend.load_session().await.expect("load"), Some(data.clone()));
    drop(backend);
    assert_eq!(read_snapshot_with_key(&path, &Keyring::new(key(12))).expect("read").expect("some").data, data);
    assert_no_secret_on_disk(dir.path(), &data);
}
