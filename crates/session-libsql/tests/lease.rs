//! One owner per remote session, on a real sqld: the lease SQL passes the lease checks; two
//! processes racing for a session get exactly one owner (100 times); a killed owner is replaced
//! within the time to live; a frozen (SIGSTOP) owner that was taken over writes nothing after
//! the takeover; a frozen server makes the owner stop writing before its lease could expire, and
//! it resumes once renewed; a graceful close hands over at once; calls queued behind a frozen
//! server fail after one timeout; a replica reads from its copy while a write is stuck.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::{
    Change, LeaseOptions, LeaseStatus, Peer, PeerKey, PeerKind, SessionBackend, SessionData, SessionError,
};
use session_libsql::{LibSqlBackend, LibSqlLeases, RemoteOptions};
use support::Sqld;

const CHILD: &str = env!("CARGO_BIN_EXE_session-libsql-lease-child");

fn child(args: &[&str]) -> (Child, BufReader<ChildStdout>) {
    let mut c = Command::new(CHILD)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = BufReader::new(c.stdout.take().unwrap());
    (c, out)
}

fn line(out: &mut BufReader<ChildStdout>) -> String {
    let mut l = String::new();
    out.read_line(&mut l).unwrap();
    l.trim_end().to_owned()
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

fn peer_change(id: i64) -> Change {
    Change::UpsertPeer(Peer::new(id, PeerKind::User, id * 5))
}

async fn persist(backend: &LibSqlBackend, full: &mut SessionData, id: i64) -> Result<(), SessionError> {
    let change = peer_change(id);
    full.apply(&change);
    backend.persist(std::slice::from_ref(&change), full).await.map_err(|e| SessionError::from_boxed(e, "libsql"))
}

fn short(ttl_ms: u64, timeout_ms: u64) -> RemoteOptions {
    RemoteOptions::default()
        .timeout(Duration::from_millis(timeout_ms))
        .lease(LeaseOptions::default().with_ttl(Duration::from_millis(ttl_ms)))
}

fn server() -> (tempfile::TempDir, Sqld) {
    let dir = tempfile::tempdir().unwrap();
    let sqld = Sqld::start(&dir.path().join("server"), None);
    (dir, sqld)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_lease_sql_passes_the_lease_checks_on_sqld() {
    let (_dir, sqld) = server();
    let url = sqld.url();
    session_testkit::lease::run_lease_checks("r-", |name| {
        let url = url.clone();
        async move { Arc::new(LibSqlLeases::connect(&url, "", Duration::from_secs(10), &name).await.unwrap()) }
    })
    .await;
}

#[test]
fn two_processes_racing_for_a_session_get_one_owner_100_times() {
    let (_dir, sqld) = server();
    let url = sqld.url();
    let rounds = std::env::var("LAYER_SOAK_LEASE_RACES").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let mut tokens = Vec::new();
    for round in 0..rounds {
        let (mut a, mut out_a) = child(&["race", &url]);
        let (mut b, mut out_b) = child(&["race", &url]);
        let (la, lb) = (line(&mut out_a), line(&mut out_b));
        let (owner, locked) = match (la.starts_with("OWNER"), lb.starts_with("OWNER")) {
            (true, false) => (&la, &lb),
            (false, true) => (&lb, &la),
            _ => panic!("round {round}: not exactly one owner: {la:?} / {lb:?}"),
        };
        let parts: Vec<&str> = owner.split(' ').collect();
        let (token, pid): (u64, u32) = (parts[1].parse().unwrap(), parts[2].parse().unwrap());
        assert!(locked.starts_with("LOCKED"), "round {round}: the loser got {locked:?}");
        assert!(locked.contains(&format!("pid {pid} ")), "round {round}: Locked does not name the owner: {locked}");
        assert!(tokens.last().is_none_or(|t| *t < token), "round {round}: token {token} after {tokens:?}");
        tokens.push(token);
        for c in [&mut a, &mut b] {
            c.stdin.take().unwrap().write_all(b"done\n").unwrap();
        }
        assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    }
    assert_eq!(tokens.len(), rounds);
}

/// Reads `ACK <id>` lines until `n` were seen; returns the ids.
fn acks(out: &mut BufReader<ChildStdout>, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    while ids.len() < n {
        let l = line(out);
        let id = l.strip_prefix("ACK ").unwrap_or_else(|| panic!("writer said {l:?}"));
        ids.push(id.parse().unwrap());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owner_is_replaced_within_the_ttl_with_nothing_lost() {
    let (_dir, sqld) = server();
    let url = sqld.url();
    let ttl = Duration::from_millis(2000);
    let (mut writer, mut out) = child(&["writer", &url, "2000", "1000"]);
    assert_eq!(line(&mut out), "OPEN");
    let acked = acks(&mut out, 20);
    signal(writer.id(), "-KILL");
    let killed = Instant::now();
    writer.wait().unwrap();
    let next = LibSqlBackend::open_remote_with(&url, "", RemoteOptions::default().wait_for_owner(ttl * 3))
        .await
        .expect("the next owner");
    let waited = killed.elapsed();
    assert!(waited <= ttl + Duration::from_secs(1), "took {waited:?} to own the session after a kill");
    let data = next.load_session().await.unwrap().unwrap();
    for id in acked {
        assert!(data.peers.get(PeerKey::user(id)).is_some(), "acknowledged peer {id} lost");
    }
    next.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_owner_taken_over_writes_nothing_after_the_takeover() {
    let (_dir, sqld) = server();
    let url = sqld.url();
    let ttl = Duration::from_millis(1500);
    let (mut writer, mut out) = child(&["writer", &url, "1500", "1000"]);
    assert_eq!(line(&mut out), "OPEN");
    let acked = acks(&mut out, 10);
    signal(writer.id(), "-STOP");
    let frozen = Instant::now();
    // The new owner waits for the old lease to expire by the server's clock and takes over.
    let next = LibSqlBackend::open_remote_with(&url, "", RemoteOptions::default().wait_for_owner(ttl * 4))
        .await
        .expect("takeover");
    assert!(frozen.elapsed() >= ttl / 2, "took the session over while its lease held");
    let mut full = next.load_session().await.unwrap().unwrap_or_default();
    persist(&next, &mut full, 1).await.expect("the new owner writes");
    let before_resume = next.load_session().await.unwrap().unwrap();
    signal(writer.id(), "-CONT");
    // The old owner's next write is refused (by its own lease check or by the server's fence).
    let mut after = Vec::new();
    loop {
        let l = line(&mut out);
        if l.starts_with("ERR ") {
            assert!(l.starts_with("ERR LeaseLost"), "the resumed owner got {l:?}");
            break;
        }
        after.push(l);
    }
    assert!(writer.wait().unwrap().success());
    // At most the write in flight when it froze can still be acknowledged; nothing after it.
    let last = *acked.last().unwrap();
    for l in &after {
        let id: i64 = l.strip_prefix("ACK ").unwrap().parse().unwrap();
        assert_eq!(id, last + 1, "the resumed owner acknowledged {id} after the takeover");
    }
    let stored = next.load_session().await.unwrap().unwrap();
    assert_eq!(stored, before_resume, "the server changed after the old owner resumed");
    let old_ids: Vec<i64> = stored.peers.iter().map(|p| p.id).filter(|id| *id >= 1000).collect();
    assert!(old_ids.iter().all(|id| *id <= last + 1), "rows of the old owner after the takeover: {old_ids:?}");
    next.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_stops_writes_before_the_lease_could_expire_and_they_resume_after() {
    let (_dir, sqld) = server();
    let url = sqld.url();
    let ttl = Duration::from_millis(1500);
    let backend = LibSqlBackend::open_remote_with(&url, "", short(1500, 300)).await.unwrap();
    let mut full = SessionData::default();
    persist(&backend, &mut full, 1).await.unwrap();
    let mut lease = backend.lease().unwrap();
    let token = match lease.borrow().clone() {
        LeaseStatus::Held { token, .. } => token,
        other => panic!("{other:?}"),
    };
    let pid = sqld.pid().unwrap();
    signal(pid, "-STOP");
    let frozen = Instant::now();
    tokio::time::timeout(ttl, lease.wait_for(|s| matches!(s, LeaseStatus::Suspended { .. })))
        .await
        .expect("suspended before the lease could expire")
        .unwrap();
    assert!(frozen.elapsed() < ttl);
    let refused = persist(&backend, &mut full, 2).await.expect_err("wrote on a suspended lease");
    assert!(matches!(refused, SessionError::LeaseLost { .. }), "{refused:?}");
    signal(pid, "-CONT");
    tokio::time::timeout(ttl * 3, lease.wait_for(|s| matches!(s, LeaseStatus::Held { .. })))
        .await
        .expect("held again once the server answers")
        .unwrap();
    assert!(matches!(lease.borrow().clone(), LeaseStatus::Held { token: t, .. } if t == token));
    persist(&backend, &mut full, 3).await.expect("writes resume");
    let stored = backend.load_session().await.unwrap().unwrap();
    assert!(stored.peers.get(PeerKey::user(3)).is_some());
    backend.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_close_hands_over_within_a_second() {
    let (_dir, sqld) = server();
    let url = sqld.url();
    let first = LibSqlBackend::open_remote(&url, "").await.unwrap();
    let waiting = {
        let url = url.clone();
        tokio::spawn(async move {
            let b = LibSqlBackend::open_remote_with(
                &url,
                "",
                RemoteOptions::default().wait_for_owner(Duration::from_secs(20)),
            )
            .await;
            (b, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a second owner got in");
    let closed = Instant::now();
    first.close().await.unwrap();
    let (second, owned_at) = waiting.await.unwrap();
    let second = second.expect("the waiting owner");
    let handover = owned_at.duration_since(closed);
    assert!(handover < Duration::from_secs(1), "handover took {handover:?}");
    // The old owner cannot write any more.
    let mut full = SessionData::default();
    assert!(matches!(persist(&first, &mut full, 1).await, Err(SessionError::LeaseLost { .. })));
    persist(&second, &mut full, 2).await.unwrap();
    second.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_queued_behind_a_frozen_server_fail_after_one_timeout() {
    let (_dir, sqld) = server();
    let url = sqld.url();
    let timeout = Duration::from_millis(800);
    let backend = Arc::new(LibSqlBackend::open_remote_with(&url, "", short(30_000, 800)).await.unwrap());
    let pid = sqld.pid().unwrap();
    signal(pid, "-STOP");
    let started = Instant::now();
    let mut calls = Vec::new();
    for id in 0..5 {
        let b = Arc::clone(&backend);
        calls.push(tokio::spawn(async move {
            let mut full = SessionData::default();
            let r = persist(&b, &mut full, id).await;
            (r, Instant::now())
        }));
    }
    for call in calls {
        let (result, ended) = call.await.unwrap();
        assert!(matches!(result, Err(SessionError::Unavailable { .. })), "{result:?}");
        let took = ended.duration_since(started);
        assert!(took < timeout + Duration::from_millis(700), "a queued call failed only after {took:?}");
    }
    signal(pid, "-CONT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_reads_its_copy_while_a_write_is_stuck_on_the_server() {
    let (dir, sqld) = server();
    let url = sqld.url();
    let backend = Arc::new(
        LibSqlBackend::open_replica_with(dir.path().join("copy.db"), &url, "", short(30_000, 5000)).await.unwrap(),
    );
    let mut full = SessionData::default();
    persist(&backend, &mut full, 1).await.unwrap();
    let pid = sqld.pid().unwrap();
    signal(pid, "-STOP");
    let stuck = {
        let b = Arc::clone(&backend);
        let mut full = full.clone();
        tokio::spawn(async move { persist(&b, &mut full, 2).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let read = backend.load_session().await.unwrap().unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(500), "the read waited {took:?} behind the stuck write");
    assert!(read.peers.get(PeerKey::user(1)).is_some());
    signal(pid, "-CONT");
    stuck.await.unwrap().expect("the write completes once the server answers");
}
