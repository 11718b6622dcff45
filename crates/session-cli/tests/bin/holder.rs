//! The holder child process of `tests/commands.rs` and `tests/read_while_owned.rs`, a program of
//! its own: a test that played the child when an environment variable was set passed, doing
//! nothing, in every normal run.
//!
//! `session-cli-holder KIND PATH`: opens the session at PATH with our backend (KIND `file`, or
//! `sqlite`, which it also writes once so that the database is in WAL with a live `-wal` file),
//! taking the owner lock; prints `holder-is-ready` and holds it until its stdin closes.
//!
//! `session-cli-holder owner KIND URL NAME [TOKEN]`: a running owner of a server session (KIND
//! `libsql`, `postgres` or `redis`): opens session NAME (taking its lease), prints
//! `owner-ready TOKEN` (the lease's fencing token) and then persists batches of 1,000 peers (added,
//! then removed again), one persist each, until its stdin closes. Each line on stdin is answered with
//! `owner TOKEN BATCHES ERRORS` (the token now, batches persisted, persists that failed); at the
//! end it closes the backend (handing the lease back). With `LAYER_SESSION_KEY` (a raw key), the
//! session is opened sealed with it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use session_core::{Change, LeaseStatus, Peer, PeerKey, PeerKind, SessionBackend, SessionData};

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().expect("kind");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    if kind == "owner" {
        let kind = args.next().expect("backend kind");
        let url = args.next().expect("url");
        let name = args.next().expect("session name");
        let token = args.next().unwrap_or_default();
        rt.block_on(owner(&kind, &url, &name, &token));
        return;
    }
    let path = args.next().expect("path");
    rt.block_on(async {
        let held: Box<dyn std::any::Any> = match kind.as_str() {
            "file" => Box::new(session_file::BinaryFileBackend::open(PathBuf::from(&path)).await.expect("open file")),
            _ => {
                let b = session_sqlite::SqliteBackend::open(&path).await.expect("open sqlite");
                // Write once so that the database is in WAL with a live -wal file.
                let data = b.load_session().await.expect("load").expect("a session");
                b.save_session(&data).await.expect("save");
                Box::new(b)
            }
        };
        println!("holder-is-ready");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        drop(held);
    });
}

/// The lease token a backend holds now (0: none held).
type TokenOf = Box<dyn Fn() -> u64 + Send + Sync>;

async fn owner(kind: &str, url: &str, name: &str, auth_token: &str) {
    // A sealed session is owned with the raw key (64 hex characters) of LAYER_SESSION_KEY.
    let keys = std::env::var("LAYER_SESSION_KEY")
        .ok()
        .map(|hex| session_core::Keyring::new(session_core::SealingKey::from_hex(&hex).expect("a raw key")));
    let (backend, token_of): (Arc<dyn SessionBackend>, TokenOf) = match kind {
        "libsql" => {
            let options = session_libsql::RemoteOptions::default().session(name);
            let opened = match keys {
                Some(keys) => session_libsql::LibSqlBackend::open_remote_with_key(url, auth_token, options, keys).await,
                None => session_libsql::LibSqlBackend::open_remote_with(url, auth_token, options).await,
            };
            let b = Arc::new(opened.expect("open"));
            let watch = b.lease().expect("a remote backend holds a lease");
            let token = Box::new(move || match &*watch.borrow() {
                LeaseStatus::Held { token, .. } => *token,
                _ => 0,
            });
            (b, token)
        }
        "postgres" => {
            let options = session_postgres::PostgresOptions::new().session(name);
            let opened = match keys {
                Some(keys) => options.open_with_key(url, keys).await,
                None => options.open(url).await,
            };
            let b = Arc::new(opened.expect("open"));
            let held = b.clone();
            (b, Box::new(move || held.lease_token()))
        }
        _ => {
            let mut options = session_redis::RedisOptions::new().session(name);
            if let Some(keys) = keys {
                options = options.key(keys);
            }
            let b = Arc::new(options.open(url).await.expect("open"));
            let held = b.clone();
            (
                b,
                Box::new(move || match held.lease_handle().status() {
                    LeaseStatus::Held { token, .. } => token,
                    _ => 0,
                }),
            )
        }
    };
    let mut data: SessionData = backend.load_session().await.expect("load").expect("a stored session");
    println!("owner-ready {}", token_of());
    let batches = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let writer = {
        let (backend, batches, errors) = (backend.clone(), batches.clone(), errors.clone());
        tokio::spawn(async move {
            // Odd batches add 1,000 peers, even ones remove them again: the session stays
            // small, and every committed state holds the start's peers or those plus 1,000.
            for k in 0i64.. {
                let changes: Vec<Change> = (0..1000i64)
                    .map(|i| {
                        let id = 5_000_000_000 + i;
                        if k % 2 == 0 {
                            Change::UpsertPeer(Peer::new(id, PeerKind::User, k ^ i))
                        } else {
                            Change::RemovePeer(PeerKey::user(id))
                        }
                    })
                    .collect();
                for c in &changes {
                    data.apply(c);
                }
                match backend.persist(&changes, &data).await {
                    Ok(()) => batches.fetch_add(1, Ordering::SeqCst),
                    Err(_) => errors.fetch_add(1, Ordering::SeqCst),
                };
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let lines = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            println!("owner {} {} {}", token_of(), batches.load(Ordering::SeqCst), errors.load(Ordering::SeqCst));
            line.clear();
        }
    });
    let _ = lines.await;
    writer.abort();
    let _ = writer.await;
    backend.close().await.expect("close hands the lease back");
}
