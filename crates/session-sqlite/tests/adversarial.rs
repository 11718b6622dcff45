//! The SQLite backend under attack: every bit position of a small session database flipped,
//! every page-granular truncation, every row deleted (or a value changed) behind the backend's
//! back with the plain `sqlite3` API, paths that name what is not a database file, and secrets
//! looked for in every message. Each damaged case must open as exactly the saved session or
//! fail with a typed error (`Corrupt` with its copy on disk, or another `SessionError`): never
//! a different session, never "no session".
//!
//! To stay fast in CI, the flips and cuts run on the sample database rewritten with 512-byte pages
//! (`VACUUM`: the same tables, rows and b-tree structure, an eighth of the bytes), one bit of
//! every byte (the bit rotates with the position). With `LAYER_SOAK_SQLITE_BITS=<1..8>` (set by
//! `cargo xtask soak`) they run on the database as the backend writes it (4 KiB pages) with that
//! many bits of every byte.
#![cfg(unix)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use session_core::{
    Change, DcFlags, DcOption, MinPeerContext, Peer, PeerKey, PeerKind, SelfUser, SessionBackend, SessionData,
    SessionError, UpdateState, UpdateStateChange,
};
use session_sqlite::SqliteBackend;
use session_testkit::sample_key;

const TOKEN: &[u8] = b"future-auth-token:do-not-print-7f3a9c";

/// The session the database holds: two DCs with keys (and one option without), update state
/// with channels, chunked peers, peers and a removal written over them, a min context, a user,
/// an api_id and a future auth token.
fn base() -> SessionData {
    let mut s = SessionData::default();
    s.home_dc = 2;
    s.user = Some(SelfUser::new(777_000_111, false));
    s.api_id = Some(12_345);
    s.future_auth_token = Some(TOKEN.to_vec());
    for (id, ip, key) in [(2, "149.154.167.51", 1u8), (4, "149.154.167.91", 2)] {
        let addr: SocketAddr = format!("{ip}:443").parse().expect("addr");
        let dc = DcOption::new(id, addr).with_auth_key(Some(sample_key(key))).with_salt(0x1234_5678, -3);
        s.dcs.insert(dc.key(), dc);
    }
    let v6: SocketAddr = "[2001:67c:4e8:f002::a]:443".parse().expect("v6");
    let dc = DcOption::new(2, v6).with_flags(DcFlags::IPV6);
    s.dcs.insert(dc.key(), dc);
    s.updates = UpdateState::new(1_000, 20, 1_700_000_000, 55);
    s.updates.channels.insert(1_001, 500);
    s.updates.channels.insert(1_002, 600);
    for i in 0..60i64 {
        let kind = [PeerKind::User, PeerKind::Bot, PeerKind::Megagroup][usize::try_from(i % 3).unwrap_or(0)];
        s.peers.insert(Peer::new(i * 13 + 1, kind, i.wrapping_mul(0x5DEE_CE66_D1CE)));
    }
    s.min_contexts.push(MinPeerContext::new(14, 27, 99));
    s
}

/// What is persisted after the save: rows in `peers`, `peer_removals` and `channels`.
fn changes() -> Vec<Change> {
    vec![
        Change::UpsertPeer(Peer::new(5_000, PeerKind::User, 42).with_usernames(vec!["someone".into()])),
        Change::UpsertPeer(Peer::new(5_001, PeerKind::Broadcast, -42)),
        Change::UpsertPeer(Peer::new(14, PeerKind::Bot, 7)),
        Change::RemovePeer(PeerKey::user(27)),
        Change::UpdateState(UpdateStateChange::Channel { id: 1_003, pts: 700 }),
        Change::UpdateState(UpdateStateChange::Primary { pts: 1_001, date: 1_700_000_100, seq: 56 }),
    ]
}

fn side(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// The bits flipped per byte in a soak run (`None`: the CI run).
fn soak_bits() -> Option<usize> {
    std::env::var("LAYER_SOAK_SQLITE_BITS").ok().and_then(|v| v.parse().ok()).map(|b: usize| b.clamp(1, 8))
}

/// Writes the sample database, checkpointed so that everything is in the main file, with
/// `page_size` pages when given. Returns the session it holds and the file's bytes.
async fn sample_db(dir: &Path, page_size: Option<u32>) -> (SessionData, Vec<u8>) {
    let path = dir.join("sample.db");
    let backend = SqliteBackend::open(&path).await.expect("open");
    let mut expected = base();
    backend.save_session(&expected).await.expect("save");
    let changes = changes();
    expected.apply_all(&changes);
    backend.persist(&changes, &expected).await.expect("persist");
    let loaded = backend.load_session().await.expect("load");
    assert_eq!(loaded.as_ref(), Some(&expected));
    assert_no_secret(&format!("{loaded:?}"), "Debug of the loaded session");
    assert_no_secret(&format!("{backend:?}"), "Debug of the backend");
    backend.close().await.expect("close");
    assert!(!side(&path, "-wal").exists(), "a clean close checkpoints and removes the WAL");
    let bytes = std::fs::read(&path).expect("read");
    // The overlay tables really hold rows (the cases below damage them).
    let raw = Connection::open(&path).expect("raw");
    for table in ["peers", "peer_removals", "peer_chunks", "channels", "dcs", "min_contexts", "session"] {
        let n: i64 = raw.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).expect("count");
        assert!(n > 0, "{table} is empty in the sample");
    }
    if let Some(size) = page_size {
        raw.execute_batch(&format!(
            "PRAGMA journal_mode = DELETE; PRAGMA page_size = {size}; VACUUM; PRAGMA journal_mode = WAL;"
        ))
        .expect("vacuum to another page size");
    }
    drop(raw);
    let bytes = if page_size.is_some() { std::fs::read(&path).expect("read") } else { bytes };
    std::fs::write(&path, &bytes).expect("restore");
    (expected, bytes)
}

/// How one damaged case ended.
#[derive(Debug, Default)]
struct Tally {
    same: usize,
    corrupt: usize,
    other: std::collections::BTreeMap<String, usize>,
    /// A few messages of the other typed errors, for the report.
    samples: std::collections::BTreeSet<String>,
    failures: Vec<String>,
}

impl Tally {
    fn cases(&self) -> usize {
        self.same + self.corrupt + self.other.values().sum::<usize>() + self.failures.len()
    }
}

/// The secrets of [`base`], in every form a message could show them.
fn secrets() -> Vec<String> {
    let mut out = Vec::new();
    for seed in [1u8, 2] {
        let key = sample_key(seed);
        let bytes = key.as_bytes();
        let hex: String = bytes[..16].iter().map(|b| format!("{b:02x}")).collect();
        out.push(hex.clone());
        out.push(hex.to_uppercase());
        out.push(format!("{:?}", &bytes[..12]).trim_end_matches(']').to_owned());
    }
    out.push(String::from_utf8_lossy(TOKEN).into_owned());
    out.push(format!("{:?}", &TOKEN[..12]).trim_end_matches(']').to_owned());
    out.push(TOKEN[..12].iter().map(|b| format!("{b:02x}")).collect());
    out
}

fn assert_no_secret(text: &str, what: &str) {
    for secret in secrets() {
        assert!(!text.contains(&secret), "{what} shows a secret ({secret}): {text}");
    }
}

fn remove_case_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("case.db") && !name.ends_with(".lock") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Opens the database at `dir/case.db` and loads it, and files the outcome.
async fn run_case(dir: &Path, label: &str, expected: &SessionData, tally: &mut Tally, corrupt_only: bool) {
    let path = dir.join("case.db");
    let outcome = tokio::time::timeout(Duration::from_secs(20), async {
        let backend = SqliteBackend::open(&path).await?;
        assert_no_secret(&format!("{backend:?}"), "Debug of the backend");
        let loaded = backend.load_session().await.map_err(|e| SessionError::from_boxed(e, "sqlite"));
        drop(backend);
        loaded
    })
    .await;
    let result = match outcome {
        Ok(r) => r,
        Err(_) => {
            tally.failures.push(format!("{label}: hung"));
            return;
        }
    };
    match result {
        Ok(Some(s)) if &s == expected && !corrupt_only => tally.same += 1,
        Ok(Some(_)) => tally.failures.push(format!("{label}: loaded a different session")),
        Ok(None) => tally.failures.push(format!("{label}: loaded as \"no session\"")),
        Err(e) => {
            assert_no_secret(&e.to_string(), "an error message");
            assert_no_secret(&format!("{e:?}"), "Debug of an error");
            match &e {
                SessionError::Corrupt { preserved_at: Some(copy), .. } if copy.is_file() => tally.corrupt += 1,
                SessionError::Corrupt { .. } => tally.failures.push(format!("{label}: Corrupt without a copy: {e}")),
                other if corrupt_only => tally.failures.push(format!("{label}: expected Corrupt, got {other}")),
                other => {
                    let kind = format!("{other:?}").split([' ', '{', '(']).next().unwrap_or_default().to_owned();
                    *tally.other.entry(kind).or_default() += 1;
                    if tally.samples.len() < 12 {
                        tally.samples.insert(other.to_string());
                    }
                }
            }
        }
    }
    remove_case_files(dir);
}

fn write_case(dir: &Path, bytes: &[u8]) {
    std::fs::write(dir.join("case.db"), bytes).expect("write case");
}

fn report(what: &str, tally: &Tally) {
    println!(
        "{what}: {} cases, {} the saved session, {} Corrupt with a copy, other typed errors {:?}, {} failures",
        tally.cases(),
        tally.same,
        tally.corrupt,
        tally.other,
        tally.failures.len()
    );
    for sample in &tally.samples {
        println!("  e.g. {sample}");
    }
    assert!(tally.failures.is_empty(), "{what}: {} of {} cases failed:\n{}", tally.failures.len(), tally.cases(), {
        let mut shown: Vec<&str> = tally.failures.iter().map(String::as_str).take(40).collect();
        shown.sort_unstable();
        shown.join("\n")
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flipped_bit_is_the_saved_session_or_a_typed_error() {
    let dir = tempfile::tempdir().expect("dir");
    let bits = soak_bits();
    let (expected, bytes) = sample_db(dir.path(), if bits.is_some() { None } else { Some(512) }).await;
    let bits = bits.unwrap_or(1);
    // Cases wait mostly on the disk (the copies of damaged files are fsynced): a few workers,
    // each in its own folder, overlap those waits.
    const WORKERS: usize = 4;
    let (expected, bytes) = (std::sync::Arc::new(expected), std::sync::Arc::new(bytes));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let folder = dir.path().join(format!("worker{w}"));
        std::fs::create_dir(&folder).expect("worker folder");
        let (expected, bytes) = (std::sync::Arc::clone(&expected), std::sync::Arc::clone(&bytes));
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            for at in (w..bytes.len()).step_by(WORKERS) {
                for k in 0..bits {
                    let bit = (at + k) % 8;
                    let mut damaged = bytes.to_vec();
                    damaged[at] ^= 1 << bit;
                    write_case(&folder, &damaged);
                    run_case(&folder, &format!("byte {at} bit {bit}"), &expected, &mut tally, false).await;
                }
            }
            tally
        }));
    }
    let mut tally = Tally::default();
    for worker in workers {
        let t = worker.await.expect("worker");
        tally.same += t.same;
        tally.corrupt += t.corrupt;
        for (kind, n) in t.other {
            *tally.other.entry(kind).or_default() += n;
        }
        tally.samples.extend(t.samples);
        tally.failures.extend(t.failures);
    }
    report(&format!("bit flips ({} bytes, {bits} bit(s) each)", bytes.len()), &tally);
    // The damage was seen: values of every table lie in the file, so many flips are Corrupt.
    assert!(tally.corrupt > 50, "too few flips were detected: {tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_truncation_is_the_saved_session_or_a_typed_error() {
    let dir = tempfile::tempdir().expect("dir");
    let (expected, bytes) = sample_db(dir.path(), if soak_bits().is_some() { None } else { Some(512) }).await;
    let page = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    let mut lengths: Vec<usize> = (0..bytes.len()).step_by(page).collect();
    lengths.extend([1, 16, 99, 100, 511, 512, page - 1, page + 1, bytes.len() / 2 + 3, bytes.len() - 1]);
    let mut tally = Tally::default();
    for len in lengths {
        write_case(dir.path(), &bytes[..len]);
        // Nothing is cut away from the end of a whole database: only an error may come of it.
        run_case(dir.path(), &format!("cut at {len}"), &expected, &mut tally, false).await;
    }
    report(&format!("truncations (pages of {page} bytes)"), &tally);
    assert_eq!(tally.same, 0, "a database cut short loaded whole: {tally:?}");
}

/// The key columns of each table, for deleting one row at a time.
const KEYS: [(&str, &str); 7] = [
    ("session", "sid"),
    ("dcs", "sid, id, key_flags"),
    ("channels", "sid, id"),
    ("peer_chunks", "sid, pos"),
    ("peers", "sid, class, id"),
    ("peer_removals", "sid, class, id"),
    ("min_contexts", "sid, pos"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_deleted_or_changed_behind_our_back_is_corrupt() {
    let dir = tempfile::tempdir().expect("dir");
    let (expected, bytes) = sample_db(dir.path(), None).await;
    let case = dir.path().join("case.db");
    let mut tally = Tally::default();
    let mut per_table = Vec::new();
    for (table, keys) in KEYS {
        write_case(dir.path(), &bytes);
        let rows: Vec<Vec<i64>> = {
            let raw = Connection::open(&case).expect("raw");
            let mut stmt = raw.prepare(&format!("SELECT {keys} FROM {table}")).expect("prepare");
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| (0..n).map(|i| r.get::<_, i64>(i)).collect::<Result<Vec<_>, _>>())
                .expect("query")
                .collect::<Result<Vec<_>, _>>()
                .expect("rows");
            rows
        };
        per_table.push((table, rows.len()));
        for row in rows {
            write_case(dir.path(), &bytes);
            let raw = Connection::open(&case).expect("raw");
            let filter: Vec<String> =
                keys.split(", ").zip(&row).map(|(column, value)| format!("{column} = {value}")).collect();
            let deleted = raw
                .execute(&format!("DELETE FROM {table} WHERE {}", filter.join(" AND ")), [])
                .expect("delete behind our back");
            assert_eq!(deleted, 1);
            drop(raw);
            run_case(dir.path(), &format!("{table} row {row:?} deleted"), &expected, &mut tally, true).await;
        }
    }
    // Values changed with SQL, each to something a session could hold.
    for (what, sql) in [
        ("another auth key", "UPDATE dcs SET auth_key = zeroblob(256) WHERE id = 2 AND key_flags = 0"),
        ("another access hash", "UPDATE peers SET access_hash = access_hash + 1 WHERE id = 5000"),
        ("another pts", "UPDATE session SET pts = pts + 1"),
        ("another channel pts", "UPDATE channels SET pts = 1 WHERE id = 1001"),
        ("a removal undone", "UPDATE peer_removals SET id = 40"),
        (
            "a row added",
            "INSERT INTO channels (sid, id, pts, crc) SELECT sid, 9, pts, crc FROM channels WHERE id = 1001",
        ),
        // Schema version 4: the session id is not under the row's checksum, the sums catch it.
        ("a peer moved to another session", "UPDATE peers SET sid = 1 WHERE id = 5000"),
        (
            "a channel of another session moved in",
            "UPDATE channels SET sid = 0, id = 9 WHERE sid = 0 AND id = 1001; \
          INSERT INTO channels (sid, id, pts, crc) VALUES (0, 1001, 5, 0)",
        ),
        ("a chunk dropped", "DELETE FROM peer_chunks"),
        ("the sums zeroed", "UPDATE session SET dcs_sum = 0"),
    ] {
        write_case(dir.path(), &bytes);
        let raw = Connection::open(&case).expect("raw");
        raw.execute_batch(sql).expect(what);
        drop(raw);
        run_case(dir.path(), what, &expected, &mut tally, true).await;
    }
    println!("rows per table: {per_table:?}");
    report("rows deleted or changed behind our back", &tally);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_not_a_database_file_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let fifo = dir.path().join("fifo.db");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    let zero = dir.path().join("zero.db");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink to /dev/zero");
    let folder = dir.path().join("folder.db");
    std::fs::create_dir(&folder).expect("dir");
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").expect("empty file");
    for path in [&fifo, &zero, &folder, &empty] {
        let opened = tokio::time::timeout(Duration::from_secs(10), SqliteBackend::open(path))
            .await
            .unwrap_or_else(|_| panic!("{} hung the open", path.display()));
        match opened {
            Err(SessionError::Invalid { .. } | SessionError::Io { .. }) => {}
            Err(e) => panic!("{}: expected Invalid, got {e:?}", path.display()),
            Ok(b) => {
                let loaded = b.load_session().await;
                panic!("{} was opened as a database (load: {loaded:?})", path.display())
            }
        }
    }
    assert_eq!(std::fs::metadata(&empty).expect("meta").len(), 0, "the empty file was written");
    assert!(!side(&empty, "-wal").exists() && !side(&fifo, "-wal").exists(), "side files were created");
}

const ALIAS_CHILD: &str = "SESSION_SQLITE_ALIAS_CHILD";
const ALIAS_TEST: &str = "every_name_of_a_held_database_is_refused";

fn expect_locked(r: Result<SqliteBackend, SessionError>, name: &Path, pid: u32) {
    match r {
        Err(SessionError::Locked { pid: Some(holder), .. }) => assert_eq!(holder, pid, "{}", name.display()),
        Err(e) => panic!("{}: expected Locked by {pid}, got {e:?}", name.display()),
        Ok(_) => panic!("{}: a second owner was let in through another name", name.display()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_name_of_a_held_database_is_refused() {
    if let Ok(names) = std::env::var(ALIAS_CHILD) {
        for name in names.lines() {
            match SqliteBackend::open(name).await {
                Err(SessionError::Locked { pid, .. }) => println!("alias locked {pid:?} {name}"),
                Err(e) => println!("alias error {name}: {e}"),
                Ok(_) => println!("alias opened {name}"),
            }
        }
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path();
    let db = root.join("owned.db");
    std::fs::create_dir(root.join("sub")).expect("sub");
    let owner = SqliteBackend::open(&db).await.expect("owner");
    let mut full = SessionData::default();
    let first = [Change::SetHomeDc(2), Change::UpsertPeer(Peer::new(1, PeerKind::User, 10))];
    full.apply_all(&first);
    owner.persist(&first, &full).await.expect("persist");

    std::os::unix::fs::symlink(&db, root.join("link.db")).expect("symlink");
    std::os::unix::fs::symlink("owned.db", root.join("relative.db")).expect("relative symlink");
    std::os::unix::fs::symlink(root, root.join("dirlink")).expect("directory symlink");
    std::fs::hard_link(&db, root.join("hard.db")).expect("hard link");
    let names = [
        root.join("link.db"),
        root.join("relative.db"),
        root.join("dirlink").join("owned.db"),
        root.join("hard.db"),
        root.join("sub").join("..").join("owned.db"),
        db.clone(),
    ];
    let me = std::process::id();
    for name in &names {
        expect_locked(SqliteBackend::open(name).await, name, me);
    }
    // Another process, by every name.
    let list: Vec<String> = names.iter().map(|n| n.to_str().expect("utf-8").to_owned()).collect();
    let output = common::child(ALIAS_TEST, &[(ALIAS_CHILD, &list.join("\n"))]).output().expect("child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed: {stdout}");
    for name in &list {
        let line = stdout.lines().find(|l| l.contains("alias ") && l.ends_with(name.as_str()));
        let line = line.unwrap_or_else(|| panic!("no answer for {name}: {stdout}"));
        assert!(line.contains(&format!("alias locked Some({me})")), "{line}");
    }
    // The owner was not disturbed, and nothing else wrote a WAL of its own beside a link.
    let more = [Change::UpsertPeer(Peer::new(2, PeerKind::User, 20))];
    full.apply_all(&more);
    owner.persist(&more, &full).await.expect("owner keeps writing");
    for name in ["link.db-wal", "hard.db-wal", "relative.db-wal"] {
        assert!(!root.join(name).exists(), "{name} was created");
    }
    owner.close().await.expect("close");
    // Free again: any name opens the same session.
    let again = SqliteBackend::open(root.join("hard.db")).await.expect("open by the hard link");
    assert_eq!(again.load_session().await.expect("load"), Some(full));
}
