//! Many accounts in one database: 50 named sessions, 10 processes owning 5 each, all writing at
//! once, on a real sqld (remote mode: a lease per session) and in one local SQLite file (an
//! owner lock per session). Every acknowledged change of every session is there afterwards and
//! no row crossed into another session; a session already owned by a child, opened again by
//! name, is refused with `Locked` naming the child (the conformance suite on named sessions is
//! in `tests/conformance.rs`).

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use session_core::{PeerKey, SessionBackend, SessionError};
use session_libsql::{LibSqlBackend, RemoteOptions};
use support::Sqld;

const CHILD: &str = env!("CARGO_BIN_EXE_session-libsql-lease-child");
const PROCESSES: usize = 10;
const PER_PROCESS: usize = 5;

fn writes() -> i64 {
    std::env::var("LAYER_SOAK_NAMED_WRITES").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
}

fn base(session: usize) -> i64 {
    i64::try_from(session).unwrap() * 1_000_000
}

struct Owner {
    child: Child,
    out: BufReader<ChildStdout>,
}

fn line(out: &mut BufReader<ChildStdout>) -> String {
    let mut l = String::new();
    out.read_line(&mut l).unwrap();
    l.trim_end().to_owned()
}

/// Starts the 10 owners of `target` (each opens its 5 sessions), checks that a session one of
/// them owns is refused to us naming it, lets them all write at once, and returns the
/// acknowledged writes per session.
async fn run_owners(
    target: &str,
    parallel: usize,
    open_again: impl AsyncFn(&str) -> Result<LibSqlBackend, SessionError>,
) -> Vec<i64> {
    let writes = writes();
    let mut owners: Vec<Owner> = (0..PROCESSES)
        .map(|p| {
            let names: Vec<String> = (0..PER_PROCESS).map(|j| format!("s{}", p * PER_PROCESS + j)).collect();
            let mut child = Command::new(CHILD)
                .args(["named", target, &names.join(","), &writes.to_string(), &parallel.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            let out = BufReader::new(child.stdout.take().unwrap());
            Owner { child, out }
        })
        .collect();
    for (p, owner) in owners.iter_mut().enumerate() {
        assert_eq!(line(&mut owner.out), "OPEN", "process {p}");
    }
    // Owned by process 3: refused to us, naming that process.
    let pid = owners[3].child.id();
    match open_again("s17").await {
        Err(SessionError::Locked { pid: Some(p), .. }) => assert_eq!(p, pid),
        Err(SessionError::Locked { holder: Some(h), .. }) => assert_eq!(h.pid, pid),
        Err(e) => panic!("expected Locked naming pid {pid}, got {e}"),
        Ok(_) => panic!("s17 opened twice"),
    }
    let start = Instant::now();
    for owner in &mut owners {
        owner.child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }
    let mut acked = vec![-1i64; PROCESSES * PER_PROCESS];
    let mut retries = Vec::new();
    for (p, owner) in owners.iter_mut().enumerate() {
        loop {
            let l = line(&mut owner.out);
            if l == "DONE" {
                break;
            }
            if l.starts_with("RETRY ") {
                retries.push(l);
                continue;
            }
            let Some(rest) = l.strip_prefix("ACK s") else { panic!("process {p}: {l:?}") };
            let (session, i) = rest.split_once(' ').unwrap();
            let (session, i): (usize, i64) = (session.parse().unwrap(), i.parse().unwrap());
            assert_eq!(session / PER_PROCESS, p, "process {p} acknowledged a session it does not own");
            assert_eq!(acked[session] + 1, i, "session {session}: writes out of order");
            acked[session] = i;
        }
        assert!(owner.child.wait().unwrap().success());
    }
    println!(
        "{target}: {} writes in {:?}, {} calls retried after a timeout: {retries:?}",
        acked.iter().map(|a| a + 1).sum::<i64>(),
        start.elapsed(),
        retries.len()
    );
    // A retried call is the store's normal answer to a slow server; many would mean a stuck path.
    assert!(retries.len() <= 5, "{target}: {} calls timed out", retries.len());
    acked
}

/// Every session holds exactly its own acknowledged writes: its peers `base..=base+last`, each
/// with its access hash, its channel at the last pts, and nothing of any other session.
async fn check_sessions(acked: &[i64], open: impl AsyncFn(&str) -> Result<LibSqlBackend, SessionError>) {
    let mut seen = BTreeMap::new();
    for (session, last) in acked.iter().enumerate() {
        assert_eq!(*last, writes() - 1, "session {session}: not every write was acknowledged");
        let backend = open(&format!("s{session}")).await.unwrap();
        let data = backend.load_session().await.unwrap().unwrap();
        let b = base(session);
        assert_eq!(data.peers.len(), usize::try_from(last + 1).unwrap(), "session {session}: peers");
        for i in 0..=*last {
            assert_eq!(data.peers.access_hash(PeerKey::user(b + i)), Some(b + i), "session {session} peer {i}");
        }
        assert_eq!(data.updates.channels.len(), 1, "session {session}: channels {:?}", data.updates.channels);
        assert_eq!(data.updates.channels.get(&b).copied(), Some(i32::try_from(*last).unwrap()));
        seen.insert(session, data.peers.len());
        backend.close().await.unwrap();
    }
    assert_eq!(seen.len(), PROCESSES * PER_PROCESS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_remote_sessions_ten_processes_writing_at_once_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    // sqld runs with room for the fleet's streams (two per open session, plus one per read
    // transaction while it lasts; sqld's default allows 128) and on its libsql-wal
    // (`many_writers_wal`: the default WAL's stall stopped this test for good in 6 of 14 runs,
    // 0 of 21 on libsql-wal).
    let mut args = vec!["--max-concurrent-connections", "1024"];
    args.extend(support::many_writers_wal());
    let sqld = Sqld::start_with(&dir.path().join("server"), None, &args);
    let url = sqld.url();
    let open =
        async |name: &str| LibSqlBackend::open_remote_with(&url, "", RemoteOptions::default().session(name)).await;
    // The fleet's database exists before the fleet starts (its schema is made by the first
    // open), as the README advises.
    open("default").await.unwrap().close().await.unwrap();
    // Each process writes its sessions in turn: ten writers at once on the server
    // (`LAYER_SOAK_NAMED_PARALLEL=5`: all fifty at once).
    let parallel = std::env::var("LAYER_SOAK_NAMED_PARALLEL").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let acked = run_owners(&format!("remote:{url}"), parallel, open).await;
    check_sessions(&acked, open).await;
    // Listed by name with their leases, all released by the owners' close.
    let listed = LibSqlBackend::list_remote_sessions(&url, "", Duration::from_secs(10)).await.unwrap();
    let named: Vec<_> = listed.iter().filter(|s| s.name != "default").collect();
    assert_eq!(named.len(), 50, "{listed:?}");
    assert!(named.iter().all(|s| s.stored && s.holder.is_none()), "{listed:?}");
}

#[cfg(feature = "local")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_local_sessions_ten_processes_writing_at_once_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("accounts.db");
    let open = async |name: &str| LibSqlBackend::open_local_named(&path, name).await;
    // Each process writes its five sessions at once: fifty writers on the file.
    let acked = run_owners(&format!("local:{}", path.display()), PER_PROCESS, open).await;
    check_sessions(&acked, open).await;
    // The default session was never written: the others' rows are not its rows.
    let default = LibSqlBackend::open_local(&path).await.unwrap();
    assert_eq!(default.load_session().await.unwrap(), None);
    let listed = LibSqlBackend::list_local_sessions(&path).await.unwrap();
    assert_eq!(listed.len(), 51, "{listed:?}");
    assert!(listed.iter().all(|s| s.stored == (s.name != "default")), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_remote_name_twice_is_locked_and_another_name_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let sqld = Sqld::start(&dir.path().join("server"), None);
    let url = sqld.url();
    let first = LibSqlBackend::open_remote_with(&url, "", RemoteOptions::default().session("twice")).await.unwrap();
    match LibSqlBackend::open_remote_with(&url, "", RemoteOptions::default().session("twice")).await {
        Err(SessionError::Locked { holder: Some(h), .. }) => assert_eq!(h.pid, std::process::id()),
        other => panic!("the same name twice: {other:?}"),
    }
    let other = LibSqlBackend::open_remote_with(&url, "", RemoteOptions::default().session("other")).await.unwrap();
    assert_eq!(other.session_name(), "other");
    first.close().await.unwrap();
    other.close().await.unwrap();
    let bad = LibSqlBackend::open_remote_with(&url, "", RemoteOptions::default().session("")).await;
    assert!(matches!(bad, Err(SessionError::Invalid { .. })), "{bad:?}");
}
