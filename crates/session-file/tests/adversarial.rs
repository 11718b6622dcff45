//! The file backend attacked as an attacker, or an unlucky operator, would: every other name of
//! an owned file (symlink, hard link, `..`, a bind mount of its directory) in this process and in
//! another; many processes racing for one lock; every byte of a small log flipped and every
//! length cut; inputs that are not session files (FIFO, devices, directory, empty, huge);
//! modes of pre-existing 0644 files under umask 022; secrets in `Debug` and error messages.
//!
//! Child processes are `session-file-adversarial-child` (`tests/bin/adversarial_child.rs`), a
//! program built with the internal `test-children` feature, as is this test.
//! `LAYER_SOAK_ADVERSARIAL=1` (set by `cargo xtask soak`) flips every bit of every byte instead
//! of one bit per byte, and races more rounds.
#![cfg(unix)]

#[path = "bin/adversarial_shared.rs"]
mod shared;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use session_core::{Change, Peer, PeerKind, SessionBackend, SessionData, SessionError};
use session_file::{read_snapshot, BinaryFileBackend};
use session_testkit::sample_session;
use shared::{now_nanos, outcome, RACES};

/// The child program (see `tests/bin/adversarial_child.rs` for its modes).
const CHILD: &str = env!("CARGO_BIN_EXE_session-file-adversarial-child");

fn soak() -> bool {
    std::env::var_os("LAYER_SOAK_ADVERSARIAL").is_some()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn child(mode: &str, path: &Path) -> Command {
    let mut cmd = Command::new(CHILD);
    cmd.arg(mode).arg(path).stdin(Stdio::piped()).stdout(Stdio::piped());
    cmd
}

/// A line that is the child's answer (not a panic message or other output).
fn answer(line: &str) -> bool {
    ["locked ", "opened", "error ", "owner ", "holding ", "race ", "done"].iter().any(|p| line.starts_with(p))
}

/// The answer in a finished child's output.
fn said(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).lines().find(|l| answer(l)).unwrap_or("(no answer)").to_owned()
}

/// The first answer a running child prints; the rest of its output is read to the end on the
/// same thread (a closed pipe would fail the child's next `println!`).
fn first_answer(out: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if answer(&line) {
                let _ = tx.send(line);
            }
        }
    });
    rx
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// A saved session plus three appended batches: the file's bytes after each step, and the
/// session after each step. The backend is dropped: its mark says all of it was acknowledged.
async fn written(path: &Path, batches: usize) -> (Vec<SessionData>, Vec<usize>) {
    let backend = BinaryFileBackend::open(path).await.expect("open");
    let mut data = sample_session(2);
    backend.save_session(&data).await.expect("save");
    let mut states = vec![data.clone()];
    let mut lens = vec![file_len(path)];
    for i in 0..batches {
        let i = i64::try_from(i).expect("small");
        let api_id = i32::try_from(10 + i).expect("small");
        let batch = vec![Change::UpsertPeer(Peer::new(900 + i, PeerKind::User, i * 3)), Change::SetApiId(Some(api_id))];
        data.apply_all(&batch);
        backend.persist(&batch, &data).await.expect("persist");
        states.push(data.clone());
        lens.push(file_len(path));
    }
    (states, lens)
}

fn file_len(path: &Path) -> usize {
    usize::try_from(std::fs::metadata(path).expect("meta").len()).expect("len")
}

fn copies_in(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name.contains(".corrupt-") || name.contains(".torn-")
        })
        .collect();
    found.sort();
    found
}

fn assert_locked_by(result: String, pid: u32, what: &str) {
    assert_eq!(result, format!("locked {pid}"), "{what}");
}

/// Every alias of `owned` that the environment offers: symlink, symlinked directory, hard link
/// in another directory, `..` path.
fn aliases(dir: &Path, owned: &Path) -> Vec<(String, PathBuf)> {
    std::fs::create_dir_all(dir.join("other/deeper")).expect("dirs");
    std::os::unix::fs::symlink(owned, dir.join("other/link.session")).expect("symlink");
    std::os::unix::fs::symlink(dir, dir.join("other/dirlink")).expect("dir symlink");
    std::fs::hard_link(owned, dir.join("other/hard.session")).expect("hard link");
    let name = owned.file_name().expect("name");
    vec![
        ("symlink".into(), dir.join("other/link.session")),
        ("symlinked directory".into(), dir.join("other/dirlink").join(name)),
        ("hard link".into(), dir.join("other/hard.session")),
        ("dot-dot path".into(), dir.join("other/deeper/../..").join(name)),
    ]
}

/// A bind mount of `dir` at a new directory, unmounted on drop. Fails the test with the reason
/// when it cannot be made (not root, no mount namespace rights): never skipped.
struct Bind(PathBuf);

impl Bind {
    fn new(dir: &Path, at: &Path) -> Bind {
        std::fs::create_dir_all(at).expect("mount point");
        let out = Command::new("mount").arg("--bind").arg(dir).arg(at).output().expect("run mount");
        assert!(
            out.status.success(),
            "mount --bind failed ({}): {}; this test needs root (or CAP_SYS_ADMIN) to bind-mount a directory",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Bind(at.to_path_buf())
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn every_alias_is_refused_in_this_process_while_the_owner_lives() {
    let dir = tempdir();
    let owned = dir.path().join("a.session");
    let owner = BinaryFileBackend::open(&owned).await.expect("owner");
    owner.save_session(&sample_session(3)).await.expect("save");
    let me = std::process::id();
    for (what, alias) in aliases(dir.path(), &owned) {
        assert_locked_by(outcome(BinaryFileBackend::open(&alias).await), me, &what);
    }
    // The lock follows the live file through a rewrite (rename of a locked temp file): a hard
    // link made to the new file is refused too.
    owner.save_session(&sample_session(4)).await.expect("rewrite");
    std::fs::hard_link(&owned, dir.path().join("after-rewrite.session")).expect("link");
    assert_locked_by(
        outcome(BinaryFileBackend::open(dir.path().join("after-rewrite.session")).await),
        me,
        "new hard link",
    );
    drop(owner);
    BinaryFileBackend::open(dir.path().join("other/link.session")).await.expect("free once the owner is gone");
}

#[tokio::test]
async fn a_symlinked_session_stays_a_symlink_after_a_rewrite() {
    let dir = tempdir();
    let owned = dir.path().join("real.session");
    let link = dir.path().join("link.session");
    std::os::unix::fs::symlink(&owned, &link).expect("symlink");
    let backend = BinaryFileBackend::open(&link).await.expect("open through the link");
    backend.save_session(&sample_session(3)).await.expect("save");
    assert!(std::fs::symlink_metadata(&link).expect("meta").file_type().is_symlink(), "the link was replaced");
    drop(backend);
    let backend = BinaryFileBackend::open(&owned).await.expect("open the real file");
    assert_eq!(backend.load_session().await.expect("load"), Some(sample_session(3)));
}

#[test]
fn every_alias_is_refused_in_a_child_process() {
    let dir = tempdir();
    let owned = dir.path().join("a.session");
    let rt = runtime();
    let owner = rt.block_on(async {
        let owner = BinaryFileBackend::open(&owned).await.expect("owner");
        owner.save_session(&sample_session(3)).await.expect("save");
        owner
    });
    let me = std::process::id();
    for (what, alias) in aliases(dir.path(), &owned) {
        let out = child("try", &alias).output().expect("child");
        assert_locked_by(said(&out), me, &format!("child, {what}"));
    }
    drop(owner);
    let out = child("try", &owned).output().expect("child");
    assert_eq!(said(&out), "opened");
}

#[test]
fn a_bind_mounted_directory_reaches_the_same_lock() {
    let dir = tempdir();
    let inner = dir.path().join("data");
    std::fs::create_dir(&inner).expect("data dir");
    let owned = inner.join("a.session");
    let bind = Bind::new(&inner, &dir.path().join("bound"));
    let through_bind = bind.0.join("a.session");
    let rt = runtime();
    // This process owns it by its own name; this process and a child try through the bind.
    let owner = rt.block_on(async {
        let owner = BinaryFileBackend::open(&owned).await.expect("owner");
        owner.save_session(&sample_session(3)).await.expect("save");
        owner
    });
    let me = std::process::id();
    assert_locked_by(
        rt.block_on(async { outcome(BinaryFileBackend::open(&through_bind).await) }),
        me,
        "bind, same process",
    );
    let out = child("try", &through_bind).output().expect("child");
    assert_locked_by(said(&out), me, "bind, child");
    drop(owner);
    // And the other way round: a child owns it through the bind.
    let mut holder = child("hold", &through_bind).spawn().expect("holder");
    let line =
        first_answer(holder.stdout.take().expect("stdout")).recv_timeout(Duration::from_secs(60)).expect("holding");
    let pid: u32 = line.strip_prefix("holding ").expect("holding").parse().expect("pid");
    assert_locked_by(rt.block_on(async { outcome(BinaryFileBackend::open(&owned).await) }), pid, "held through bind");
    drop(holder.stdin.take());
    assert!(holder.wait().expect("wait").success());
    drop(bind);
}

#[test]
fn racing_processes_get_one_owner_and_every_loser_its_pid() {
    let rounds = if soak() { 40 } else { 4 };
    let dir = tempdir();
    let children_per_round = 4;
    for round in 0..rounds {
        // Fresh paths: the losers may look before the winner has written anything.
        let prefix = dir.path().join(format!("race-{round}"));
        let at = now_nanos() + 250_000_000;
        let mut children: Vec<_> = (0..children_per_round)
            .map(|_| child("race", &prefix).arg(at.to_string()).spawn().expect("spawn"))
            .collect();
        let answers: Vec<_> = children.iter_mut().map(|c| first_answer(c.stdout.take().expect("stdout"))).collect();
        // Per race: what each child said.
        let mut said: Vec<Vec<String>> = vec![Vec::new(); RACES];
        for rx in &answers {
            loop {
                let line = rx.recv_timeout(Duration::from_secs(60)).expect("a child answered");
                if line == "done" {
                    break;
                }
                let rest = line.strip_prefix("race ").expect("a race line");
                let (i, what) = rest.split_once(' ').expect("race number");
                said[i.parse::<usize>().expect("race number")].push(what.to_owned());
            }
        }
        for (i, lines) in said.iter().enumerate() {
            let owners: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("owner ")).collect();
            assert_eq!(owners.len(), 1, "round {round}, race {i}: one owner: {lines:?}");
            for line in lines {
                if !line.starts_with("owner ") {
                    assert_eq!(line, &format!("locked {}", owners[0]), "round {round}, race {i}: {lines:?}");
                }
            }
        }
        for mut c in children {
            drop(c.stdin.take());
            assert!(c.wait().expect("wait").success());
        }
    }
}

/// Opens `path` and says what it held; a backend that opened is dropped again.
async fn open_outcome(path: &Path) -> Result<Option<SessionData>, SessionError> {
    let backend = BinaryFileBackend::open(path).await?;
    backend.load_session().await.map_err(|e| SessionError::from_boxed(e, "file"))
}

/// Writes `bytes` at `path`, opens it, and checks that it is one of `allowed` or a typed error
/// with a copy of exactly `bytes` kept; then puts `good` back and removes copies.
async fn check_case(path: &Path, bytes: &[u8], allowed: &[&SessionData], good: &[u8], what: &str) -> bool {
    std::fs::write(path, bytes).expect("write case");
    let dir = path.parent().expect("dir");
    let corrupt = match open_outcome(path).await {
        Ok(Some(data)) => {
            assert!(allowed.contains(&&data), "{what}: opened as a session that was never the acknowledged one");
            false
        }
        Ok(None) => panic!("{what}: opened as no session"),
        Err(SessionError::Corrupt { preserved_at: Some(copy), .. }) => {
            assert_eq!(std::fs::read(&copy).expect("copy"), bytes, "{what}: the copy is not the damaged file");
            true
        }
        Err(SessionError::UnsupportedVersion { .. }) => true,
        Err(e) => panic!("{what}: not a typed damage error: {e}"),
    };
    for copy in copies_in(dir) {
        std::fs::remove_file(copy).expect("remove copy");
    }
    std::fs::write(path, good).expect("restore");
    corrupt
}

#[tokio::test]
async fn every_flipped_byte_and_every_cut_is_the_exact_session_or_corruption() {
    let dir = tempdir();
    let path = dir.path().join("s.session");
    let (states, lens) = written(&path, 3).await;
    let good = std::fs::read(&path).expect("read");
    let last = states.last().expect("state");
    let bits: Vec<u8> = if soak() { (0..8).collect() } else { vec![0] };
    let (mut tried, mut refused) = (0, 0);
    for pos in 0..good.len() {
        for &bit in &bits {
            // One bit per byte, a different one from byte to byte.
            let bit = (bit + u8::try_from(pos % 8).expect("bit")) % 8;
            let mut bytes = good.clone();
            bytes[pos] ^= 1 << bit;
            tried += 1;
            refused +=
                usize::from(check_case(&path, &bytes, &[last], &good, &format!("flip bit {bit} at {pos}")).await);
        }
    }
    // Every length short of the whole file loses something acknowledged: all refused.
    for cut in 0..good.len() {
        tried += 1;
        assert!(check_case(&path, &good[..cut], &[], &good, &format!("cut at {cut} of {}", good.len())).await);
        refused += 1;
    }
    // Every flip is caught (CRC-32 catches every single-bit error), so each case was refused.
    assert_eq!(refused, tried, "{tried} cases: every damaged one refused ({lens:?})");
    assert_eq!(open_outcome(&path).await.expect("intact").as_ref(), Some(last));
    eprintln!("{tried} damaged files tried, {refused} refused with a copy, 0 opened as another session");
}

#[tokio::test]
async fn only_the_unacknowledged_append_may_be_cut() {
    // The writer acknowledged two batches and died in the third append (its mark ends at the
    // second): damage to the first two is corruption; the third may be cut, and only it.
    let dir = tempdir();
    let full_path = dir.path().join("full.session");
    let (states, lens) = written(&full_path, 3).await;
    let full = std::fs::read(&full_path).expect("read");
    let path = dir.path().join("s.session");
    written(&path, 2).await;
    // The owner's lock file (its mark) as the dead writer left it, put back before each case.
    let lock = session_core::fs::lock_path(&path);
    let left = std::fs::read(&lock).expect("lock file");
    let acknowledged = lens[2];
    let (mut tried, mut cut_cases, mut refused) = (0, 0, 0);
    let allowed = [&states[2], &states[3]];
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for pos in 0..full.len() {
        let mut bytes = full.clone();
        bytes[pos] ^= 1 << (pos % 8);
        cases.push((format!("flip at {pos}"), bytes));
    }
    for cut in 0..=full.len() {
        cases.push((format!("cut at {cut}"), full[..cut].to_vec()));
    }
    for (what, bytes) in cases {
        tried += 1;
        // Restore the owner's state before each case (a cut moves the mark).
        std::fs::write(&lock, &left).expect("restore the lock file");
        std::fs::write(&path, &bytes).expect("write");
        match open_outcome(&path).await {
            Ok(Some(data)) => {
                assert!(allowed.contains(&&data), "{what}: another session");
                let damaged_at = bytes.iter().zip(&full).position(|(a, b)| a != b).unwrap_or(bytes.len());
                if data == states[2] {
                    assert!(damaged_at >= acknowledged, "{what}: cut although acknowledged bytes were damaged");
                    cut_cases += 1;
                }
            }
            Ok(None) => panic!("{what}: no session"),
            Err(SessionError::Corrupt { preserved_at: Some(_), .. }) => refused += 1,
            Err(SessionError::UnsupportedVersion { .. }) => refused += 1,
            Err(e) => panic!("{what}: {e}"),
        }
        for copy in copies_in(dir.path()) {
            std::fs::remove_file(copy).expect("remove copy");
        }
    }
    assert!(cut_cases > 0 && refused > 0);
    eprintln!("{tried} cases: {cut_cases} cut the unacknowledged append, {refused} refused, the rest intact");
}

/// Runs `f` on a thread of its own and fails the test if it takes longer than `limit` (a hang
/// leaves that thread behind instead of hanging the test binary).
fn within<T: Send + 'static>(limit: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what}: still running after {limit:?} (hung or reading without bound)"))
}

fn open_blocking_outcome(path: PathBuf) -> Result<String, SessionError> {
    runtime().block_on(async move { open_outcome(&path).await.map(|d| format!("{:?}", d.is_some())) })
}

#[test]
fn what_is_not_a_session_file_is_refused_at_once() {
    let dir = tempdir();
    let fifo = dir.path().join("fifo.session");
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success(), "mkfifo failed");
    let subdir = dir.path().join("dir.session");
    std::fs::create_dir(&subdir).expect("dir");
    let fifo_link = dir.path().join("to-fifo.session");
    std::os::unix::fs::symlink(&fifo, &fifo_link).expect("symlink");
    for (what, path) in [
        ("FIFO", fifo.clone()),
        ("symlink to a FIFO", fifo_link),
        ("/dev/zero", PathBuf::from("/dev/zero")),
        ("/dev/urandom", PathBuf::from("/dev/urandom")),
        ("directory", subdir.clone()),
    ] {
        let p = path.clone();
        match within(Duration::from_secs(5), what, move || open_blocking_outcome(p)) {
            Err(SessionError::Invalid { reason, .. }) => {
                assert!(reason.contains("not a regular file"), "{what}: {reason}")
            }
            other => panic!("{what}: expected Invalid, got {other:?}"),
        }
        let p = path.clone();
        match within(Duration::from_secs(5), what, move || read_snapshot(&p)) {
            Err(SessionError::Invalid { .. }) => {}
            other => panic!("{what}: read_snapshot: expected Invalid, got {:?}", other.map(|s| s.is_some())),
        }
    }
    assert!(!Path::new("/dev/zero.lock").exists() && !Path::new("/dev/urandom.lock").exists());
    assert!(!dir.path().join("fifo.session.lock").exists(), "a lock file was created beside a FIFO");
}

#[test]
fn empty_and_huge_files_are_refused_without_reading_without_bound() {
    let dir = tempdir();
    let empty = dir.path().join("empty.session");
    std::fs::write(&empty, b"").expect("empty");
    let p = empty.clone();
    match within(Duration::from_secs(5), "empty", move || open_blocking_outcome(p)) {
        Err(SessionError::Corrupt { preserved_at: Some(_), .. }) => {}
        other => panic!("empty: expected Corrupt with a copy, got {other:?}"),
    }
    // A sparse file far over the limit: refused by its size, nothing read.
    let sparse = dir.path().join("sparse.session");
    std::fs::File::create(&sparse).and_then(|f| f.set_len(1 << 40)).expect("sparse");
    let p = sparse.clone();
    match within(Duration::from_secs(5), "sparse 1 TiB", move || open_blocking_outcome(p)) {
        Err(SessionError::Invalid { .. }) => {}
        other => panic!("sparse: expected Invalid, got {other:?}"),
    }
    // A valid header and a snapshot frame claiming 2^60 bytes, in a 64 MiB sparse file: read
    // once (64 MiB), never a buffer of the claimed size.
    let rt = runtime();
    let good_path = dir.path().join("good.session");
    rt.block_on(written(&good_path, 0));
    let mut head = std::fs::read(&good_path).expect("read")[..25].to_vec();
    head[13..21].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let huge = dir.path().join("huge-length.session");
    std::fs::write(&huge, &head).expect("write");
    std::fs::OpenOptions::new().write(true).open(&huge).and_then(|f| f.set_len(64 << 20)).expect("extend");
    let p = huge.clone();
    match within(Duration::from_secs(20), "huge length field", move || open_blocking_outcome(p)) {
        Err(SessionError::Corrupt { .. }) => {}
        other => panic!("huge length: expected Corrupt, got {other:?}"),
    }
    std::fs::write(&huge, &head).expect("write");
    match within(Duration::from_secs(5), "huge length field, short file", move || read_snapshot(&huge)) {
        Err(SessionError::Corrupt { .. }) => {}
        other => panic!("huge length, read_snapshot: expected Corrupt, got {:?}", other.map(|s| s.is_some())),
    }
}

#[test]
fn the_same_damage_opened_ten_times_leaves_one_copy() {
    let dir = tempdir();
    let path = dir.path().join("s.session");
    let rt = runtime();
    rt.block_on(written(&path, 2));
    let mut bytes = std::fs::read(&path).expect("read");
    let at = bytes.len() - 3;
    bytes[at] ^= 0x20;
    std::fs::write(&path, &bytes).expect("write");
    for i in 0..10 {
        match rt.block_on(open_outcome(&path)) {
            Err(SessionError::Corrupt { preserved_at: Some(_), .. }) => {}
            other => panic!("open {i}: expected Corrupt, got {other:?}"),
        }
    }
    let copies = copies_in(dir.path());
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(std::fs::read(&copies[0]).expect("copy"), bytes);
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

#[test]
fn pre_existing_0644_files_are_made_private_and_everything_created_is_0600_under_umask_022() {
    let dir = tempdir();
    let path = dir.path().join("s.session");
    let rt = runtime();
    rt.block_on(written(&path, 2));
    let lock = session_core::fs::lock_path(&path);
    for p in [&path, &lock] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    // A child under umask 022 opens it and writes (append, rewrite, torn cut, damage copy).
    let mut full = std::fs::read(&path).expect("read");
    full.extend_from_slice(&[2, 9, 0, 0, 0, 0, 0, 0, 0, 1]);
    std::fs::write(&path, &full).expect("torn tail");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(CHILD)
        .arg("try")
        .arg(&path)
        .output()
        .expect("child");
    assert_eq!(said(&out), "opened");
    rt.block_on(async {
        let backend = BinaryFileBackend::open(&path).await.expect("open");
        let mut data = backend.load_session().await.expect("load").expect("session");
        let batch = [Change::SetHomeDc(3)];
        data.apply_all(&batch);
        backend.persist(&batch, &data).await.expect("append");
        backend.save_session(&data).await.expect("rewrite");
    });
    // A ferogram file, 0644: the first write keeps it as `.v8.bak`.
    let legacy = dir.path().join("legacy.session");
    let bytes = session_file::legacy::encode_ferogram_v8(&sample_session(2)).expect("legacy bytes");
    std::fs::write(&legacy, bytes).expect("legacy");
    std::fs::set_permissions(&legacy, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    rt.block_on(async {
        let backend = BinaryFileBackend::open(&legacy).await.expect("open legacy");
        let data = backend.load_session().await.expect("load").expect("session");
        backend.save_session(&data).await.expect("rewrite legacy");
    });
    assert!(dir.path().join("legacy.session.v8.bak").exists(), "no backup of the legacy file");
    let mut damaged = std::fs::read(&path).expect("read");
    damaged[20] ^= 1;
    std::fs::write(&path, &damaged).expect("damage");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert!(rt.block_on(open_outcome(&path)).is_err());
    let mut seen = 0;
    for entry in std::fs::read_dir(dir.path()).expect("dir").flatten() {
        let p = entry.path();
        if p == path {
            // The damaged file is left as it was found (not ours to touch once it is damaged).
            continue;
        }
        assert_eq!(mode(&p), 0o600, "{} is not private", p.display());
        seen += 1;
    }
    assert!(seen >= 6, "lock files, legacy file and backup, torn copy and corrupt copy expected");
    assert!(copies_in(dir.path()).iter().any(|p| p.to_string_lossy().contains(".torn-")), "no torn copy");
}

/// Every way the key could be spelled in text: hex (both cases) of any 8-byte window, and the
/// decimal list `Debug` of a byte slice prints.
fn spellings(key: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for window in key.windows(8).step_by(8) {
        let hex: String = window.iter().map(|b| format!("{b:02x}")).collect();
        out.push(hex.to_uppercase());
        out.push(hex);
        out.push(window.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(", "));
    }
    out
}

#[tokio::test]
async fn no_key_bytes_in_debug_or_error_messages() {
    let dir = tempdir();
    let path = dir.path().join("s.session");
    let mut data = sample_session(3);
    let token: Vec<u8> = (0u8..64).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect();
    data.apply(&Change::SetFutureAuthToken(Some(token.clone())));
    let backend = BinaryFileBackend::open(&path).await.expect("open");
    backend.save_session(&data).await.expect("save");
    let mut secrets: Vec<Vec<u8>> =
        data.dcs.values().filter_map(|d| d.auth_key.as_ref()).map(|k| k.as_bytes().to_vec()).collect();
    assert!(!secrets.is_empty(), "the sample has keys");
    secrets.push(token);
    let mut texts = vec![format!("{backend:?}"), format!("{data:?}"), format!("{data:#?}")];
    texts.push(format!("{:?}", BinaryFileBackend::open(&path).await.map(|_| ())));
    drop(backend);
    // Errors about damaged files, whose reasons describe what was read.
    let good = std::fs::read(&path).expect("read");
    for pos in [0, 14, 30, good.len() / 2, good.len() - 1] {
        let mut bytes = good.clone();
        bytes[pos] ^= 0x55;
        std::fs::write(&path, &bytes).expect("write");
        if let Err(e) = BinaryFileBackend::open(&path).await {
            texts.push(format!("{e} {e:?}"));
        }
        if let Err(e) = read_snapshot(&path) {
            texts.push(format!("{e} {e:?}"));
        }
    }
    std::fs::write(&path, &good).expect("restore");
    let snapshot = read_snapshot(&path).expect("read").expect("session");
    texts.push(format!("{snapshot:?}"));
    for secret in &secrets {
        for spelled in spellings(secret) {
            for text in &texts {
                assert!(!text.contains(&spelled), "secret bytes ({spelled}) printed in: {text}");
            }
        }
    }
}
