//! One owner: a second process opening the same database gets `Locked` with the first's pid
//! (at once, not "database is locked" on every write), and the first keeps writing.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use session_core::{Change, Peer, PeerKind, SessionBackend, SessionData, SessionError};
use session_sqlite::SqliteBackend;

const CHILD: &str = "SESSION_SQLITE_OWNER_CHILD";
const TEST: &str = "a_second_process_is_refused_with_the_owners_pid";

/// The owner: opens, says so, then persists one peer per line read from stdin until EOF.
fn owner(path: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let backend = SqliteBackend::open(path).await.expect("owner open");
        let mut full = SessionData::default();
        println!("ready {}", std::process::id());
        let mut n = 0i64;
        for line in std::io::stdin().lock().lines() {
            if line.expect("stdin").trim() != "write" {
                continue;
            }
            n += 1;
            let change = Change::UpsertPeer(Peer::new(n, PeerKind::User, n * 10));
            full.apply(&change);
            backend.persist(&[change], &full).await.expect("owner keeps writing");
            println!("ok {n}");
        }
    });
}

fn expect_locked(r: Result<SqliteBackend, SessionError>, pid: u32) {
    match r {
        Err(SessionError::Locked { pid: Some(holder), .. }) => assert_eq!(holder, pid),
        Err(e) => panic!("expected Locked by pid {pid}, got {e}"),
        Ok(_) => panic!("a second owner was let in"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_is_refused_with_the_owners_pid() {
    if let Ok(path) = std::env::var(CHILD) {
        // The owner blocks on stdin: run it off the test's runtime.
        tokio::task::spawn_blocking(move || owner(&path)).await.expect("owner");
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("owned.db");
    let path_text = path.to_str().expect("utf-8").to_owned();
    let mut child = common::child(TEST, &[(CHILD, &path_text)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn owner");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut next = |prefix: &str| -> String {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(out.read_line(&mut line).expect("read") > 0, "owner exited before {prefix}");
            if let Some(rest) = common::after(&line, prefix) {
                return rest.to_owned();
            }
        }
    };
    let pid: u32 = next("ready ").parse().expect("pid");
    assert_eq!(pid, child.id());

    writeln!(stdin, "write").expect("send");
    assert_eq!(next("ok "), "1");
    expect_locked(SqliteBackend::open(&path).await, pid);
    // Refused again, and the owner was not disturbed by the attempts.
    expect_locked(SqliteBackend::open(&path).await, pid);
    writeln!(stdin, "write").expect("send");
    assert_eq!(next("ok "), "2");
    writeln!(stdin, "write").expect("send");
    assert_eq!(next("ok "), "3");
    drop(stdin);
    assert!(child.wait().expect("wait").success(), "owner failed");

    // The owner is gone: the lock is free, and everything it wrote is there.
    let backend = SqliteBackend::open(&path).await.expect("open after the owner exits");
    let s = backend.load_session().await.expect("load").expect("session");
    assert_eq!(s.peers.len(), 3);
    // Within one process a second backend is refused too, naming this process.
    expect_locked(SqliteBackend::open(&path).await, std::process::id());
}
