//! Tests that need other processes: kill -9 in a loop, two owners, file modes under a umask.
//!
//! The child processes are `session-file-processes-child` (`tests/bin/processes_child.rs`), a
//! program built with the internal `test-children` feature, as is this test.
#![cfg(unix)]

#[path = "bin/processes_steps.rs"]
mod steps;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use session_core::{PeerKey, SessionBackend, SessionError};
use session_file::BinaryFileBackend;
use session_testkit::Rng;
use steps::peer;

/// The child program (see `tests/bin/processes_child.rs` for its modes).
const CHILD: &str = env!("CARGO_BIN_EXE_session-file-processes-child");

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn child(mode: &str, path: &Path, start: u64) -> Command {
    let mut cmd = Command::new(CHILD);
    cmd.arg(mode)
        .arg(path)
        .arg(start.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// Lines of a child's stdout, read on a thread.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn acks(rx: &mpsc::Receiver<String>, into: &mut BTreeSet<u64>) {
    while let Ok(line) = rx.try_recv() {
        if let Some(n) = line.strip_prefix("ack ") {
            into.insert(n.parse().expect("ack number"));
        }
    }
}

fn check_holds(path: &Path, acked: &BTreeSet<u64>, round: usize) -> u64 {
    runtime().block_on(async {
        let backend = match BinaryFileBackend::open(path).await {
            Ok(b) => b,
            Err(e) => panic!("round {round}: the file does not open after kill -9: {e}"),
        };
        let data = backend.load_session().await.expect("load").unwrap_or_default();
        for i in acked {
            let p = peer(*i);
            assert_eq!(
                data.peers.get(PeerKey::user(p.id)),
                Some(p),
                "round {round}: acknowledged change {i} is missing after kill -9"
            );
        }
        if let Some(last) = acked.last() {
            assert!(
                i64::from(data.updates.pts) >= i64::try_from(*last).expect("pts"),
                "round {round}: pts {} is behind the acknowledged {last}",
                data.updates.pts
            );
        }
        let dir = path.parent().expect("dir");
        let strays: Vec<_> = std::fs::read_dir(dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(strays.is_empty(), "round {round}: temp files left after open: {strays:?}");
        u64::try_from(data.peers.len()).expect("len")
    })
}

#[test]
fn kill_dash_nine_in_a_loop_loses_no_acknowledged_change() {
    let kills: usize = std::env::var("LAYER_SOAK_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    assert!(kills > 0);
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("crash.session");
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs());
    eprintln!("crash loop: {kills} kills, seed {seed}");
    let mut rng = Rng::new(seed);
    let mut acked = BTreeSet::new();
    let mut next = 0u64;
    let mut killed_after_acks = 0;
    let mut torn_tails_cut = 0;
    for round in 0..kills {
        let mut proc = child("writer", &path, next).spawn().expect("spawn writer");
        let rx = lines(&mut proc);
        if rng.below(2) == 0 {
            // Kill after a random number of acknowledged flushes...
            let want = acked.len() + usize::try_from(rng.below(40)).expect("small");
            let deadline = Instant::now() + Duration::from_secs(20);
            while acked.len() < want && Instant::now() < deadline {
                if let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
                    if let Some(n) = line.strip_prefix("ack ") {
                        acked.insert(n.parse().expect("ack number"));
                    }
                }
            }
            killed_after_acks += 1;
        } else {
            // ... or at a random instant, startup and open included.
            std::thread::sleep(Duration::from_micros(rng.below(30_000)));
        }
        proc.kill().expect("SIGKILL");
        proc.wait().expect("wait");
        // Lines already written before death are still in the pipe.
        std::thread::sleep(Duration::from_millis(5));
        acks(&rx, &mut acked);
        let before = std::fs::metadata(&path).map_or(0, |m| m.len());
        let peers = check_holds(&path, &acked, round);
        if std::fs::metadata(&path).map_or(0, |m| m.len()) < before {
            torn_tails_cut += 1;
        }
        next = next.max(peers).max(acked.last().map_or(0, |l| l + 1));
    }
    assert!(acked.len() > kills / 2, "the writer acknowledged too little to test anything: {}", acked.len());
    assert!(killed_after_acks > 0);
    eprintln!(
        "crash loop: {} acknowledged changes survived {kills} kills ({torn_tails_cut} torn tails cut off on open)",
        acked.len()
    );
}

#[test]
fn a_second_owner_is_refused_and_the_first_keeps_writing() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("owned.session");
    let mut owner = child("owner", &path, 0).spawn().expect("spawn owner");
    let rx = lines(&mut owner);
    let owner_pid: u32 = loop {
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("owner ready");
        if let Some(pid) = line.strip_prefix("ready ") {
            break pid.parse().expect("pid");
        }
    };
    assert_eq!(owner_pid, owner.id());

    let mut acked = BTreeSet::new();
    // Let it write for a while, then a second process tries to open the same file.
    while acked.len() < 20 {
        if let Some(n) = rx.recv_timeout(Duration::from_secs(30)).expect("ack").strip_prefix("ack ") {
            acked.insert(n.parse::<u64>().expect("n"));
        }
    }
    let second = child("second", &path, 0).output().expect("second process");
    let said = String::from_utf8_lossy(&second.stdout);
    assert!(
        said.lines().any(|l| l == format!("locked {owner_pid}")),
        "the second process was not refused with the owner's pid: {said}"
    );
    // A second backend in this process is refused too, naming the owner.
    match runtime().block_on(BinaryFileBackend::open(&path)) {
        Err(SessionError::Locked { pid, resource, .. }) => {
            assert_eq!(pid, Some(owner_pid));
            assert!(resource.contains("owned.session"), "{resource}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    // The owner kept writing through all of this.
    let before = acked.len();
    while acked.len() < before + 20 {
        if let Some(n) = rx.recv_timeout(Duration::from_secs(30)).expect("ack").strip_prefix("ack ") {
            acked.insert(n.parse::<u64>().expect("n"));
        }
    }
    owner.stdin.take().expect("stdin").write_all(b"stop\n").expect("stop");
    let status = owner.wait().expect("owner exit");
    assert!(status.success(), "owner failed: {status}");
    std::thread::sleep(Duration::from_millis(5));
    acks(&rx, &mut acked);
    check_holds(&path, &acked, 0);
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

fn files_are_private_under(umask: &str) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("private.session");
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(format!("umask {umask} && exec \"$0\" \"$@\"")).arg(CHILD).arg("modes").arg(&path).arg("0");
    let out = sh.output().expect("run child under umask");
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let temps: Vec<&str> = said.lines().filter_map(|l| l.strip_prefix("temp ")).collect();
    assert!(!temps.is_empty(), "no temp file was observed: {said}");
    for t in temps {
        assert_eq!(t, "600", "a temp file was created with mode {t} under umask {umask}");
    }
    assert_eq!(mode(&path), 0o600, "session file mode under umask {umask}");
    assert_eq!(mode(&session_core::fs::lock_path(&path)), 0o600, "lock file mode under umask {umask}");
    let preserved = said.lines().find_map(|l| l.strip_prefix("preserved ")).expect("a preserved copy");
    assert_eq!(mode(Path::new(preserved)), 0o600, "preserved copy mode under umask {umask}");
}

#[test]
fn files_are_private_under_umask_022() {
    files_are_private_under("022");
}

#[test]
fn files_are_private_under_umask_000() {
    files_are_private_under("000");
}
