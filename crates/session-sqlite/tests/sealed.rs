//! A sealed (encrypted at rest) SQLite session: no secret in the database, its `-wal` or its
//! `-shm`; a wrong or missing key is a typed error that changes nothing; a value moved to another
//! row or named session, or a flipped bit, is an error and changes nothing; plain databases stay
//! readable and are sealed when opened with a key; keys rotate; the conformance suite and a
//! 1,000-peer persist pass sealed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use session_core::{
    async_trait, AuthKey, BoxError, Change, DcOption, KdfParams, Keyring, Passphrase, Peer, PeerKind, SealingKey,
    SessionBackend, SessionData, SessionError,
};
use session_sql::{row_crc, SqlValueRef, Table};
use session_sqlite::SqliteBackend;
use session_testkit::{many_peers, run_all, sample_session, Harness, Rng};

const FAST: KdfParams = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };

fn key(byte: u8) -> SealingKey {
    SealingKey::from_bytes([byte; 32])
}

fn keys(byte: u8) -> Keyring {
    Keyring::new(key(byte))
}

const PHONE: &str = "+15550123987";
const USERNAME: &str = "secret_username_q";

/// A session with known auth keys on two DCs, a future auth token, and peers with a phone and
/// a username.
fn secret_session(seed: u64) -> SessionData {
    let mut data = sample_session(30);
    data.apply(&Change::SetDc(
        DcOption::new(2, "149.154.167.51:443".parse().expect("addr"))
            .with_auth_key(AuthKey::from_slice(&Rng::new(seed).bytes(256))),
    ));
    data.apply(&Change::SetAuthKey { dc_id: 4, key: AuthKey::from_slice(&Rng::new(seed + 1).bytes(256)) });
    data.apply(&Change::SetFutureAuthToken(Some(Rng::new(seed + 2).bytes(64))));
    data.apply(&Change::UpsertPeer(
        Peer::new(555_001, PeerKind::User, 0x1234_5678_9ABC_DEF1).with_phone(Some(PHONE.into())),
    ));
    data.apply(&Change::UpsertPeer(
        Peer::new(555_002, PeerKind::Channel, 0x0FED_CBA9_8765_4321).with_usernames(vec![USERNAME.into()]),
    ));
    data
}

fn secrets(data: &SessionData) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> =
        data.dcs.values().filter_map(|d| d.auth_key.as_ref()).map(|k| k.as_bytes().to_vec()).collect();
    out.extend(data.future_auth_token.clone());
    assert!(out.len() >= 3, "the session holds the secrets the test looks for");
    out
}

/// Every file in `dir` (the database, `-wal`, `-shm`, the lock files) holds no 8-byte window of
/// an auth key or of the future auth token, no access hash of the peers above (either byte
/// order) and no phone number or username. Returns the names of the files looked at.
fn assert_no_secret_on_disk(dir: &Path, data: &SessionData) -> Vec<String> {
    let mut names = Vec::new();
    let hashes = [0x1234_5678_9ABC_DEF1i64, 0x0FED_CBA9_8765_4321];
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        for secret in secrets(data) {
            for window in secret.windows(8) {
                assert!(!bytes.windows(8).any(|w| w == window), "{} holds 8 bytes of a secret", path.display());
            }
        }
        for h in hashes {
            for form in [h.to_le_bytes(), h.to_be_bytes()] {
                assert!(!bytes.windows(8).any(|w| w == form), "{} holds an access hash", path.display());
            }
        }
        for text in [PHONE, USERNAME] {
            assert!(!bytes.windows(text.len()).any(|w| w == text.as_bytes()), "{} holds {text}", path.display());
        }
        names.push(path.file_name().expect("name").to_string_lossy().into_owned());
    }
    names.sort();
    names
}

/// Saves `data` (then persists a batch of peers, a single peer, a new auth key and the token)
/// through `backend`; returns the session as written.
async fn write(backend: &SqliteBackend, mut data: SessionData) -> SessionData {
    backend.save_session(&data).await.expect("save");
    let batch: Vec<Change> =
        (0..20).map(|i| Change::UpsertPeer(Peer::new(800 + i, PeerKind::User, i * 0x0101_0101_0101))).collect();
    data.apply_all(&batch);
    backend.persist(&batch, &data).await.expect("persist a batch");
    let more = vec![
        Change::UpsertPeer(Peer::new(900, PeerKind::Bot, 77)),
        Change::SetAuthKey { dc_id: 5, key: AuthKey::from_slice(&Rng::new(99).bytes(256)) },
        Change::SetFutureAuthToken(Some(Rng::new(98).bytes(48))),
        Change::SetHomeDc(4),
    ];
    data.apply_all(&more);
    backend.persist(&more, &data).await.expect("persist changes");
    data
}

/// The bytes of the database and its `-wal` (if any).
fn stored(path: &Path) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut wal = path.as_os_str().to_os_string();
    wal.push("-wal");
    (std::fs::read(path).expect("read db"), std::fs::read(PathBuf::from(wal)).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_database_round_trips_and_no_secret_reaches_the_disk() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.db");
    let backend = SqliteBackend::open_with_key(&path, keys(1)).await.expect("open");
    assert_eq!(backend.sealed_with(), Some(key(1).id()));
    let data = write(&backend, secret_session(1)).await;
    // While the backend is open the changes sit in the WAL: it is looked at too.
    let names = assert_no_secret_on_disk(dir.path(), &data);
    assert!(names.iter().any(|n| n == "s.db-wal") && names.iter().any(|n| n == "s.db-shm"), "{names:?}");
    assert_eq!(backend.load_session().await.expect("load"), Some(data.clone()));
    drop(backend);
    assert_no_secret_on_disk(dir.path(), &data);
    let backend = SqliteBackend::open_with_key(&path, keys(1)).await.expect("reopen");
    assert_eq!(backend.load_session().await.expect("load"), Some(data.clone()));
    // Reopened with the same key, nothing is rewritten; a further write stays sealed.
    let mut data = data;
    let change = [Change::UpsertPeer(Peer::new(901, PeerKind::User, 1).with_phone(Some(PHONE.into())))];
    data.apply_all(&change);
    backend.persist(&change, &data).await.expect("persist");
    assert_no_secret_on_disk(dir.path(), &data);
    assert_eq!(backend.load_session().await.expect("load"), Some(data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_or_with_a_wrong_one_nothing_changes() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.db");
    let backend = SqliteBackend::open_with_key(&path, keys(1)).await.expect("open");
    write(&backend, secret_session(2)).await;
    drop(backend);
    let before = stored(&path);
    match SqliteBackend::open(&path).await {
        Err(SessionError::Sealed { key_id, .. }) => assert_eq!(key_id, Some(key(1).id())),
        other => panic!("expected Sealed, got {other:?}"),
    }
    match SqliteBackend::open_with_key(&path, keys(2)).await {
        Err(SessionError::WrongKey { key_id, .. }) => assert_eq!(key_id, key(1).id()),
        other => panic!("expected WrongKey, got {other:?}"),
    }
    let pass = Keyring::from_passphrase(Passphrase::new("not the key"), FAST);
    assert!(matches!(SqliteBackend::open_with_key(&path, pass).await, Err(SessionError::WrongKey { .. })));
    // A named session of the same file: the record is the database's.
    assert!(matches!(SqliteBackend::open_named(&path, "other").await, Err(SessionError::Sealed { .. })));
    // The read-only reader (inspection tools) says it is sealed too.
    assert!(matches!(session_sqlite::read_only::read_snapshot(&path), Err(SessionError::Sealed { .. })));
    assert!(stored(&path) == before, "a refused open changed the stored bytes");
    let backend = SqliteBackend::open_with_key(&path, keys(1)).await.expect("the right key still opens it");
    assert!(backend.load_session().await.expect("load").is_some());
}

/// Puts the bytes of [`stored`] back (every backend closed).
fn restore(path: &Path, bytes: &(Vec<u8>, Option<Vec<u8>>)) {
    let mut wal = path.as_os_str().to_os_string();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    std::fs::write(path, &bytes.0).expect("restore db");
    match &bytes.1 {
        Some(w) => std::fs::write(&wal, w).expect("restore wal"),
        None => {
            let _ = std::fs::remove_file(&wal);
        }
    }
}

/// Runs `sql` on the database (closed by every backend) through a plain connection.
fn tamper(path: &Path, f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<()>) {
    let conn = rusqlite::Connection::open(path).expect("open raw");
    f(&conn).expect("tamper");
    conn.close().expect("close raw");
}

/// The stored values (placeholders and `sealed`) of a `peers` row, for its checksum.
fn peer_stored(conn: &rusqlite::Connection, sid: i64, id: i64) -> rusqlite::Result<(i64, String, i64)> {
    conn.query_row("SELECT class, sealed, crc FROM peers WHERE sid = ?1 AND id = ?2", (sid, id), |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

fn peer_crc(class: i64, id: i64, sealed: &str) -> i64 {
    let row = [
        SqlValueRef::Integer(class),
        SqlValueRef::Integer(id),
        SqlValueRef::Integer(0),
        SqlValueRef::Integer(0),
        SqlValueRef::Integer(0),
        SqlValueRef::Null,
        SqlValueRef::Null,
        SqlValueRef::Text(sealed),
    ];
    row_crc(Table::Peers, &row)
}

/// Puts `sealed` into the `peers` row (sid, id), with the checksum it then needs and the
/// session's sum moved to match: only the seal itself can tell.
fn put_sealed(conn: &rusqlite::Connection, sid: i64, id: i64, sealed: &str) -> rusqlite::Result<()> {
    let (class, _, old) = peer_stored(conn, sid, id)?;
    let crc = peer_crc(class, id, sealed);
    conn.execute("UPDATE peers SET sealed = ?1, crc = ?2 WHERE sid = ?3 AND id = ?4", (sealed, crc, sid, id))?;
    conn.execute(
        "UPDATE session SET peers_sum = (peers_sum - ?1 + ?2 + 4294967296) % 4294967296 WHERE sid = ?3",
        (old, crc, sid),
    )?;
    Ok(())
}

/// A load after tampering: an error of the expected kind, and the stored bytes as they were.
async fn refused(path: &Path, name: &str, what: &str) -> SessionError {
    let before = stored(path);
    let backend = SqliteBackend::open_named_with_key(path, name, Default::default(), keys(1)).await.expect("open");
    let err = match backend.load_session().await {
        Ok(_) => panic!("{what}: the load succeeded"),
        Err(e) => SessionError::from_boxed(e, "sqlite"),
    };
    drop(backend);
    assert!(stored(path) == before, "{what}: the failed load changed the stored bytes");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_and_flipped_values_are_errors_and_change_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.db");
    for name in ["a", "b"] {
        let b = SqliteBackend::open_named_with_key(&path, name, Default::default(), keys(1)).await.expect("open");
        let mut data = secret_session(3);
        let peers: Vec<Change> =
            (0..3).map(|i| Change::UpsertPeer(Peer::new(700 + i, PeerKind::User, 1000 + i))).collect();
        b.save_session(&data).await.expect("save");
        data.apply_all(&peers);
        b.persist(&peers, &data).await.expect("persist");
    }
    let sid = |name: &str| -> i64 {
        let conn = rusqlite::Connection::open(&path).expect("raw");
        conn.query_row("SELECT id FROM sessions WHERE name = ?1", [name], |r| r.get(0)).expect("sid")
    };
    let (a, b) = (sid("a"), sid("b"));
    let original = stored(&path);

    // A value moved to another row of the same session (checksum and sum made to match).
    tamper(&path, |c| {
        let (_, sealed, _) = peer_stored(c, a, 700)?;
        put_sealed(c, a, 701, &sealed)
    });
    let err = refused(&path, "a", "moved row").await;
    assert!(matches!(&err, SessionError::Corrupt { reason, .. } if reason.contains("authenticate")), "{err}");
    // Session b is untouched by it.
    let ok = SqliteBackend::open_named_with_key(&path, "b", Default::default(), keys(1)).await.expect("open b");
    assert!(ok.load_session().await.expect("b loads").is_some());
    drop(ok);

    // A value moved to the same row of another named session.
    restore(&path, &original);
    tamper(&path, |c| {
        let (_, sealed, _) = peer_stored(c, a, 701)?;
        put_sealed(c, b, 701, &sealed)
    });
    let err = refused(&path, "b", "moved session").await;
    assert!(matches!(&err, SessionError::Corrupt { reason, .. } if reason.contains("authenticate")), "{err}");

    restore(&path, &original);
    // A flipped bit in a sealed value, checksum made to match: the seal's tag catches it.
    tamper(&path, |c| {
        let (_, sealed, _) = peer_stored(c, b, 702)?;
        let mut bytes = sealed.into_bytes();
        let at = bytes.len() / 2;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        put_sealed(c, b, 702, &String::from_utf8(bytes).expect("base64"))
    });
    let err = refused(&path, "b", "flipped bit").await;
    assert!(matches!(&err, SessionError::Corrupt { .. }), "{err}");
    restore(&path, &original);
    // A flipped bit left as it is: the row's checksum catches it first.
    tamper(&path, |c| {
        c.execute("UPDATE dcs SET sealed = 'x' || substr(sealed, 2) WHERE sid = ?1", [a])?;
        Ok(())
    });
    let err = refused(&path, "a", "flipped unchecked").await;
    assert!(matches!(&err, SessionError::Corrupt { .. }), "{err}");
    restore(&path, &original);

    // A row written in clear behind the seal (checksum and sum matching) is refused too.
    tamper(&path, |c| {
        let crc = row_crc(Table::Channels, &[SqlValueRef::Integer(42), SqlValueRef::Integer(7)]);
        c.execute("INSERT INTO channels (sid, id, pts, crc) VALUES (?1, 42, 7, ?2)", (b, crc))?;
        c.execute("UPDATE session SET channels_sum = (channels_sum + ?1) % 4294967296 WHERE sid = ?2", (crc, b))?;
        Ok(())
    });
    let err = refused(&path, "b", "row in clear").await;
    assert!(matches!(&err, SessionError::Corrupt { reason, .. } if reason.contains("in clear")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_database_stays_readable_and_is_sealed_when_opened_with_a_key() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.db");
    let plain = SqliteBackend::open(&path).await.expect("open");
    assert_eq!(plain.sealed_with(), None);
    let data = write(&plain, secret_session(4)).await;
    drop(plain);
    let plain = SqliteBackend::open(&path).await.expect("a plain database opens without a key");
    assert_eq!(plain.load_session().await.expect("load"), Some(data.clone()));
    drop(plain);

    let sealed = SqliteBackend::open_with_key(&path, keys(1)).await.expect("sealed at open");
    assert_eq!(sealed.load_session().await.expect("load"), Some(data.clone()));
    drop(sealed);
    assert!(matches!(SqliteBackend::open(&path).await, Err(SessionError::Sealed { .. })));
    // The rows are sealed now: no secret left in the live rows (the plain bytes of the old
    // pages may linger in free pages until overwritten, as the book says; `VACUUM` drops them).
    let conn = rusqlite::Connection::open(&path).expect("raw");
    let clear: i64 = conn
        .query_row(
            "SELECT (SELECT count(*) FROM dcs WHERE sealed IS NULL OR auth_key IS NOT NULL) + \
             (SELECT count(*) FROM session WHERE sealed IS NULL OR future_auth_token IS NOT NULL) + \
             (SELECT count(*) FROM peer_chunks WHERE sealed IS NULL OR length(data) > 0)",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(clear, 0, "rows left in clear after sealing");
    conn.execute_batch("VACUUM").expect("vacuum");
    conn.close().expect("close");
    assert_no_secret_on_disk(dir.path(), &data);

    // A plain database holding another session is not sealed behind that session's back.
    let path2 = dir.path().join("two.db");
    let other = SqliteBackend::open_named(&path2, "other").await.expect("open");
    other.save_session(&secret_session(5)).await.expect("save");
    drop(other);
    let before = stored(&path2);
    assert!(matches!(SqliteBackend::open_with_key(&path2, keys(1)).await, Err(SessionError::Invalid { .. })));
    assert!(stored(&path2) == before, "a refused seal changed the stored bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_and_passphrases_keep_their_salt() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.db");
    let backend = SqliteBackend::open_with_key(&path, keys(1)).await.expect("open");
    let data = write(&backend, secret_session(6)).await;
    drop(backend);
    let rotated = SqliteBackend::open_with_key(&path, keys(2).with_old_key(key(1))).await.expect("rotate");
    assert_eq!(rotated.sealed_with(), Some(key(2).id()));
    assert_eq!(rotated.load_session().await.expect("load"), Some(data.clone()));
    drop(rotated);
    // Every row was sealed again with the new key: the old one alone no longer opens it.
    let new_only = SqliteBackend::open_with_key(&path, keys(2)).await.expect("new key alone");
    assert_eq!(new_only.load_session().await.expect("load"), Some(data.clone()));
    drop(new_only);
    assert!(matches!(SqliteBackend::open_with_key(&path, keys(1)).await, Err(SessionError::WrongKey { .. })));

    let path = dir.path().join("p.db");
    let pass = || Keyring::from_passphrase(Passphrase::new("correct horse"), FAST);
    let backend = SqliteBackend::open_with_key(&path, pass()).await.expect("open");
    let id = backend.sealed_with();
    let data = write(&backend, secret_session(7)).await;
    drop(backend);
    let before = stored(&path);
    let again = SqliteBackend::open_with_key(&path, pass()).await.expect("reopen");
    assert_eq!(again.sealed_with(), id, "the stored salt is reused: one passphrase, one key id");
    assert_eq!(again.load_session().await.expect("load"), Some(data));
    drop(again);
    assert!(stored(&path).0 == before.0, "reopening with the passphrase rewrote the database");
}

struct SealedFiles {
    dir: tempfile::TempDir,
    next: AtomicUsize,
}

#[async_trait]
impl Harness for SealedFiles {
    type Backend = SqliteBackend;

    async fn fresh(&self) -> Result<SqliteBackend, BoxError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(SqliteBackend::open_with_key(self.dir.path().join(format!("s{n}.db")), keys(9)).await?)
    }

    async fn reopen(&self, old: Arc<SqliteBackend>) -> Result<Arc<SqliteBackend>, BoxError> {
        let path: PathBuf = old.path().expect("file backend").to_path_buf();
        drop(old);
        Ok(Arc::new(SqliteBackend::open_with_key(path, keys(9)).await?))
    }
}

fn sealed_files() -> SealedFiles {
    SealedFiles { dir: tempfile::tempdir().expect("temp dir"), next: AtomicUsize::new(0) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_database_passes_the_suite() {
    run_all(&sealed_files()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_peers_round_trip_sealed() {
    many_peers(&sealed_files(), 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overlay_folds_into_sealed_chunks() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.db");
    let backend = SqliteBackend::open_with_key(&path, keys(1)).await.expect("open");
    let mut data = secret_session(8);
    backend.save_session(&data).await.expect("save");
    // Past the overlay's limit (4,096 rows): the persist folds the rows into chunks, reading
    // them back sealed and writing the chunks sealed.
    let peers: Vec<Change> =
        (0..5_000).map(|i| Change::UpsertPeer(Peer::new(20_000 + i, PeerKind::User, i * 31))).collect();
    data.apply_all(&peers);
    backend.persist(&peers, &data).await.expect("persist");
    drop(backend);
    let conn = rusqlite::Connection::open(&path).expect("raw");
    let (rows, clear): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM peers), (SELECT count(*) FROM peer_chunks WHERE sealed IS NULL)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("count");
    assert_eq!((rows, clear), (0, 0), "folded into sealed chunks");
    conn.close().expect("close");
    let backend = SqliteBackend::open_with_key(&path, keys(1)).await.expect("reopen");
    assert_eq!(backend.load_session().await.expect("load"), Some(data));
}
