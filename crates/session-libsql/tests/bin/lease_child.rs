//! The other process of `tests/lease.rs`: an owner of a remote session on a real sqld.
//!
//! `race <url>`: opens the session and prints `OWNER <token> <pid>` or `LOCKED <message>`, then
//! waits for a line (or the end) on stdin and closes (releasing the lease).
//! `writer <url> <ttl_ms> <first_id>`: opens with that lease time to live, then caches peer
//! after peer (`first_id`, `first_id + 1`, ...), printing `ACK <id>` after each acknowledged
//! write; on the first error prints `ERR <kind>` and exits.

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
            let _ = std::io::stdin().lock().lines().next();
            backend.close().await.unwrap();
        }
        Err(e) => {
            say(format!("{} {e}", kind(&e).to_uppercase()));
            let _ = std::io::stdin().lock().lines().next();
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
