//! The other process of `tests/lease.rs`: an owner of a remote session on a real sqld.
//!
//! `race <url>`: opens the session and prints `OWNER <token> <pid>` or `LOCKED <message>`, then
//! waits for a line (or the end) on stdin and closes (releasing the lease).
//! `writer <url> <ttl_ms> <first_id>`: opens with that lease time to live, then caches peer
//! after peer (`first_id`, `first_id + 1`, ...), printing `ACK <id>` after each acknowledged
//! write; on the first error prints `ERR <kind>` and exits.
//! `named <target> <names> <writes> <parallel>` (the other processes of `tests/named.rs`):
//! opens each session of the comma-separated `names` (`target` is `remote:<url>` or
//! `local:<path>`), prints `OPEN`, waits for a line on stdin, then writes `writes` changes to
//! every session, `parallel` sessions at a time (peer `base(name) + i` with access hash `base(name) + i`, and the channel pts `i` of
//! channel `base(name)`), printing `ACK <name> <i>` after each acknowledged write, then closes
//! every session and prints `DONE`. On an error: `ERR <name> <kind> <message>`.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, Write};
use std::time::Duration;

use session_core::{Change, LeaseOptions, Peer, PeerKind, SessionBackend, SessionData, SessionError};
use session_libsql::{LibSqlBackend, RemoteOptions};

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn kind(e: &SessionError) -> &'static str {
    match e {
        SessionError::Locked { .. } => "Locked",
        SessionError::LeaseLost { .. } => "LeaseLost",
        SessionError::Unavailable { .. } => "Unavailable",
        _ => "Other",
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // A program's own runtime (the crate's normal dependencies have no tokio macros).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        match args.get(1).map(String::as_str) {
            Some("race") => race(&args[2]).await,
            Some("writer") => writer(&args[2], args[3].parse().unwrap(), args[4].parse().unwrap()).await,
            Some("named") => named(&args[2], &args[3], args[4].parse().unwrap(), args[5].parse().unwrap()).await,
            other => panic!("unknown mode {other:?}"),
        }
    });
}

async fn race(url: &str) {
    match LibSqlBackend::open_remote(url, "").await {
        Ok(backend) => {
            let token = match backend.lease().map(|l| l.borrow().clone()) {
                Some(session_core::LeaseStatus::Held { token, .. }) => token,
                other => panic!("an open backend whose lease is {other:?}"),
            };
            say(format!("OWNER {token} {}", std::process::id()));
            wait_for_line().await;
            backend.close().await.unwrap();
        }
        Err(e) => {
            say(format!("{} {e}", kind(&e).to_uppercase()));
            wait_for_line().await;
        }
    }
}

async fn writer(url: &str, ttl_ms: u64, first_id: i64) {
    let options = RemoteOptions::default()
        .timeout(Duration::from_millis(ttl_ms / 3))
        .lease(LeaseOptions::default().with_ttl(Duration::from_millis(ttl_ms)));
    let backend = match LibSqlBackend::open_remote_with(url, "", options).await {
        Ok(b) => b,
        Err(e) => return say(format!("ERR {} {e}", kind(&e))),
    };
    say("OPEN".to_owned());
    let mut full = backend.load_session().await.unwrap().unwrap_or_else(SessionData::default);
    for id in first_id.. {
        let change = Change::UpsertPeer(Peer::new(id, PeerKind::User, id * 5));
        full.apply(&change);
        match backend.persist(std::slice::from_ref(&change), &full).await {
            Ok(()) => say(format!("ACK {id}")),
            Err(e) => {
                let e = SessionError::from_boxed(e, "libsql");
                return say(format!("ERR {} {e}", kind(&e)));
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The id range of session `name` (`s<k>`): peers and the channel of session k are
/// `k * 1_000_000 + ...`, so a row that crossed into another session is seen by its id.
fn base(name: &str) -> i64 {
    name.trim_start_matches('s').parse::<i64>().unwrap() * 1_000_000
}

async fn open_named(target: &str, name: &str) -> Result<LibSqlBackend, SessionError> {
    match target.split_once(':') {
        Some(("remote", url)) => {
            // 50 owners of one database write at once, each waiting its turn on the server's
            // one writer: a longer bound per call than the default (and a lease that outlives it).
            let options = RemoteOptions::default()
                .session(name)
                .timeout(Duration::from_secs(20))
                .lease(LeaseOptions::default().with_ttl(Duration::from_secs(120)));
            LibSqlBackend::open_remote_with(url, "", options).await
        }
        Some(("local", path)) => LibSqlBackend::open_local_named(path, name).await,
        _ => panic!("unknown target {target}"),
    }
}

async fn named(target: &str, names: &str, writes: i64, parallel: usize) {
    let mut backends = Vec::new();
    for name in names.split(',') {
        match open_named(target, name).await {
            Ok(b) => backends.push((name.to_owned(), std::sync::Arc::new(b))),
            Err(e) => return say(format!("ERR {name} {} {e}", kind(&e))),
        }
    }
    say("OPEN".to_owned());
    wait_for_line().await;
    let mut writers = Vec::new();
    let turns = std::sync::Arc::new(tokio::sync::Semaphore::new(parallel));
    for (name, backend) in &backends {
        let (name, backend) = (name.clone(), std::sync::Arc::clone(backend));
        let turns = std::sync::Arc::clone(&turns);
        writers.push(tokio::spawn(async move {
            let _turn = turns.acquire_owned().await.unwrap();
            let b = base(&name);
            let mut full = backend.load_session().await.unwrap().unwrap_or_default();
            for i in 0..writes {
                let changes = [
                    Change::UpsertPeer(Peer::new(b + i, PeerKind::User, b + i)),
                    Change::UpdateState(session_core::UpdateStateChange::Channel {
                        id: b,
                        pts: i32::try_from(i).unwrap(),
                    }),
                ];
                full.apply_all(&changes);
                // As the store does: a call that timed out (it may or may not have committed)
                // is sent again with the same changes, which are idempotent. Only an `Ok` is
                // acknowledged; the parent counts the retries.
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    let (began, wall) = (std::time::Instant::now(), std::time::SystemTime::now());
                    let result = backend.persist(&changes, &full).await;
                    slow(&name, i, began, wall, &result);
                    match result {
                        Ok(()) => {
                            say(format!("ACK {name} {i}"));
                            // An account writes now and then, not in a tight loop.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            break;
                        }
                        Err(e) => {
                            let e = SessionError::from_boxed(e, "libsql");
                            if matches!(e, SessionError::Unavailable { .. }) && attempts < 5 {
                                say(format!("RETRY {name} {i} {e}"));
                                continue;
                            }
                            return say(format!("ERR {name} {} {e}", kind(&e)));
                        }
                    }
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    for (_, backend) in backends {
        backend.close().await.unwrap();
    }
    say("DONE".to_owned());
}

/// A call that took more than a second, on stderr with its wall-clock start (to line it up with
/// the server's log): the fleet test's evidence of where a stall sat.
fn slow(
    name: &str,
    i: i64,
    began: std::time::Instant,
    wall: std::time::SystemTime,
    result: &Result<(), session_core::BoxError>,
) {
    let took = began.elapsed();
    if took > Duration::from_secs(1) {
        let since = wall.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let outcome = match result {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        eprintln!(
            "SLOW pid={} {name} write {i}: started {}.{:03} took {took:?}: {outcome}",
            std::process::id(),
            since.as_secs(),
            since.subsec_millis()
        );
    }
}

/// Waits for the parent's next line without blocking the runtime: the backends' lease renewals
/// and the HTTP client's connection tasks keep running while a child waits, as in a real owner.
async fn wait_for_line() {
    let _ = tokio::task::spawn_blocking(|| std::io::stdin().lock().lines().next()).await;
}
