//! One process owning 1,000 named sessions of one sqld database renews all their leases with one
//! request per renewal interval, measured from outside: every HTTP request the process sends goes
//! through a counting proxy in front of sqld. A lease taken over by another process after it
//! expired is reported lost for that session alone; the 999 others keep writing.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use session_core::{Change, LeaseOptions, LeaseStatus, Peer, PeerKind, SessionBackend};
use session_core::{SessionData, SessionError};
use session_libsql::{LibSqlBackend, RemoteOptions};
use support::{CountingProxy, Sqld, REQUEST_LINE_END};

const CHILD: &str = env!("CARGO_BIN_EXE_session-libsql-lease-child");

/// One line of a child's output (blocking: the child answers at once).
fn line(out: &mut BufReader<std::process::ChildStdout>) -> String {
    let mut l = String::new();
    out.read_line(&mut l).unwrap();
    l.trim_end().to_owned()
}

fn sessions() -> usize {
    std::env::var("LAYER_SOAK_BATCHED_SESSIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sessions_renew_with_one_request_per_interval_and_lose_alone() {
    let dir = tempfile::tempdir().unwrap();
    // Each open session keeps its Hrana streams (a database connection each on the server) until
    // sqld expires them: more than sqld's default limit of 128 for a thousand sessions.
    // And on libsql-wal (`many_writers_wal`): a thousand leases taken at once met the default
    // WAL's stall in a CI run (one open's ten bounded tries all went unanswered).
    let mut args = vec!["--max-concurrent-connections", "4096"];
    args.extend(support::many_writers_wal());
    let sqld = Sqld::start_with(&dir.path().join("server"), None, &args);
    let upstream = sqld.url().trim_start_matches("http://").to_owned();
    let proxy = CountingProxy::start(upstream, REQUEST_LINE_END).await;
    let n = sessions();
    let ttl = Duration::from_secs(6);
    let options = |i: usize| {
        RemoteOptions::default()
            .session(format!("s{i}"))
            .timeout(Duration::from_secs(20))
            .lease(LeaseOptions::default().with_ttl(ttl))
    };

    // The first open migrates the database; the rest open 12 at a time. An open that timed out
    // on the loaded server (its lease calls are bounded by a sixth of the time to live) is tried
    // again, up to nine times: setting up a thousand owners is not what is measured, and
    // on a machine busy with other builds three bounded tries in a row were seen to run out.
    let mut backends: Vec<Option<LibSqlBackend>> = (0..n).map(|_| None).collect();
    backends[0] = Some(LibSqlBackend::open_remote_with(&proxy.url, "", options(0)).await.unwrap());
    let started = std::time::Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(12));
    let mut opening = Vec::new();
    for i in 1..n {
        let (gate, url, opts) = (gate.clone(), proxy.url.clone(), options(i));
        opening.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let mut tries = 0;
            loop {
                tries += 1;
                match LibSqlBackend::open_remote_with(&url, "", opts.clone()).await {
                    Err(SessionError::Unavailable { .. }) if tries < 10 => continue,
                    result => return (i, result),
                }
            }
        }));
    }
    for task in opening {
        let (i, backend) = task.await.unwrap();
        backends[i] = Some(backend.unwrap_or_else(|e| panic!("open s{i}: {e}")));
    }
    let backends: Vec<LibSqlBackend> = backends.into_iter().map(Option::unwrap).collect();
    eprintln!("opened {n} sessions in {:?} ({} requests)", started.elapsed(), proxy.count());

    // Nothing but lease renewals runs now. Renewals come every ttl/3 = 2 s; over five intervals
    // one request each (plus one for an interval boundary falling at the window's edge). One
    // renewal per session would be 5,000.
    let intervals = 5;
    let before = proxy.count();
    tokio::time::sleep(ttl / 3 * intervals).await;
    let renewals = proxy.count() - before;
    eprintln!("{renewals} requests in {intervals} renewal intervals for {n} leases");
    assert!(
        renewals <= usize::try_from(intervals).unwrap() + 1 && renewals >= 1,
        "{renewals} requests in {intervals} renewal intervals for {n} sessions' leases"
    );
    // Past their time to live: every lease was renewed by those few requests.
    for (i, b) in backends.iter().enumerate() {
        let status = b.lease().unwrap().borrow().clone();
        assert!(matches!(status, LeaseStatus::Held { .. }), "s{i}: {status:?}");
    }

    // Another process takes s17 over after its lease expired (the server's row is made to
    // expire, as if its owner had been paused past the time to live); it reaches sqld directly.
    let victim = 17.min(n - 1);
    let raw = libsql::Builder::new_remote(sqld.url(), String::new()).build().await.unwrap().connect().unwrap();
    // A renewal of the batch landing between the expiry and the takeover renews the lease (its
    // token is still current): the other process is then Locked, and the round is repeated.
    let mut rounds = 0;
    let (mut thief, mut thief_out) = loop {
        rounds += 1;
        raw.execute("UPDATE layer_session_leases SET expires_ms = 0 WHERE name = ?1", [format!("s{victim}")])
            .await
            .unwrap();
        let mut child = Command::new(CHILD)
            .args(["named", &format!("remote:{}", sqld.url()), &format!("s{victim}"), "1", "1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let said = line(&mut out);
        if said == "OPEN" {
            break (child, out);
        }
        assert!(said.contains("Locked") && rounds < 5, "the other process could not take the lease over: {said}");
        assert!(child.wait().unwrap().success());
    };

    let mut watch = backends[victim].lease().unwrap();
    tokio::time::timeout(ttl, watch.wait_for(|s| matches!(s, LeaseStatus::Lost { .. })))
        .await
        .expect("the session taken over was not reported Lost within one time to live")
        .unwrap();
    let before = proxy.count();
    tokio::time::sleep(ttl / 3 * 2).await;
    let after_loss = proxy.count() - before;
    assert!(after_loss <= 3, "{after_loss} requests in two intervals after one loss");
    for (i, b) in backends.iter().enumerate() {
        let status = b.lease().unwrap().borrow().clone();
        if i == victim {
            assert!(matches!(status, LeaseStatus::Lost { .. }), "s{i}: {status:?}");
        } else {
            assert!(matches!(status, LeaseStatus::Held { .. }), "s{i} lost with s{victim}: {status:?}");
        }
    }
    // The victim's writes are refused; its neighbours' are not.
    let change = Change::UpsertPeer(Peer::new(5, PeerKind::User, 55));
    let mut full = SessionData::default();
    full.apply(&change);
    let refused = backends[victim].persist(std::slice::from_ref(&change), &full).await.unwrap_err();
    assert!(
        matches!(SessionError::from_boxed(refused, "libsql"), SessionError::LeaseLost { .. }),
        "the session taken over could still write"
    );
    for i in [0, victim.saturating_sub(1), (victim + 1).min(n - 1), n - 1] {
        if i != victim {
            backends[i].persist(std::slice::from_ref(&change), &full).await.unwrap();
        }
    }
    // The new owner writes, and hands the session back by closing.
    thief.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(line(&mut thief_out), format!("ACK s{victim} 0"));
    assert_eq!(line(&mut thief_out), "DONE");
    assert!(thief.wait().unwrap().success());
    for b in &backends {
        b.close().await.unwrap();
    }
}
