//! Failures on a real PostgreSQL server: wrong password, server down, a server of another kind
//! on the port, a database that is not ours (typed errors in bounded time, nothing written);
//! the server killed with SIGKILL and restarted around persists (all-or-nothing, an error for
//! whatever was not committed); no secret in any span, event, error or `Debug`.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::time::{Duration, Instant};

use session_core::{Change, Peer, PeerKind, SessionBackend, SessionData, SessionError};
use session_postgres::{PostgresBackend, PostgresOptions};
use session_testkit::capture::{self, secret_changes, Secrets};
use support::{free_port, Postgres, PASSWORD};

fn quick() -> PostgresOptions {
    PostgresOptions::new().call_timeout(Duration::from_secs(3))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_down_and_foreign_servers_are_typed_errors_in_bounded_time() {
    let pg = Postgres::start();
    // Wrong password.
    let start = Instant::now();
    let e = quick().open(&pg.tcp_url().replace(PASSWORD, "wr0ng")).await.unwrap_err();
    assert!(matches!(e, SessionError::Unauthorized { .. }), "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // Nobody listening.
    let start = Instant::now();
    let down = format!("postgres://layer:{PASSWORD}@127.0.0.1:{}/postgres", free_port());
    let e = quick().open(&down).await.unwrap_err();
    assert!(matches!(e, SessionError::Unavailable { .. }), "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // A server of another kind: answers with HTTP, or says nothing at all.
    for answer in [Some(&b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"[..]), None] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut s, _)) = listener.accept().await {
                if let Some(answer) = answer {
                    use tokio::io::AsyncWriteExt as _;
                    let _ = s.write_all(answer).await;
                }
                held.push(s);
            }
        });
        let start = Instant::now();
        let e = quick().open(&format!("postgres://layer:{PASSWORD}@127.0.0.1:{port}/postgres")).await.unwrap_err();
        assert!(matches!(e, SessionError::Invalid { .. } | SessionError::Unavailable { .. }), "{answer:?}: {e:?}");
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
        server.abort();
    }
    // A malformed URL is Invalid, and does not echo the password.
    let e = quick().open("postgres://layer:pw@[::1:bad/x").await.unwrap_err();
    assert!(matches!(e, SessionError::Invalid { .. }) && !e.to_string().contains("pw@"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_that_is_not_ours_is_refused_before_anything_is_written() {
    let pg = Postgres::start();
    let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute("CREATE SCHEMA app; CREATE TABLE app.users (id int)").await.unwrap();
    let e = quick().schema("app").open(&pg.url()).await.unwrap_err();
    assert!(matches!(e, SessionError::Invalid { .. }), "{e:?}");
    let tables = client
        .query("SELECT tablename::text FROM pg_tables WHERE schemaname = 'app'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>();
    assert_eq!(tables, ["users"], "the open wrote into a schema that is not ours");
}

/// SIGKILL to the whole server while persists run, then a restart: every persist either
/// returned Ok and is there whole, or returned an error; no persist is there in part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_persist_is_all_or_nothing() {
    let rounds: usize = std::env::var("LAYER_SOAK_PG_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let mut pg = Postgres::start();
    let url = pg.url();
    let b = PostgresOptions::new()
        .call_timeout(Duration::from_secs(5))
        .lease(session_core::LeaseOptions::default().with_ttl(Duration::from_secs(60)))
        .open(&url)
        .await
        .unwrap();
    let mut data = SessionData::default();
    let mut acknowledged = 0i64;
    let mut next = 0i64;
    for round in 0..rounds {
        // Each persist writes a batch of 200 peers with ids next..next+200: a partial batch would
        // show as a count that is not a multiple of 200.
        let killer = {
            let delay = Duration::from_millis(30 + 40 * u64::try_from(round).unwrap());
            tokio::spawn(async move { tokio::time::sleep(delay).await })
        };
        let mut errors = 0;
        let mut attempts = 0;
        let mut killed = false;
        while attempts < 40 {
            attempts += 1;
            if !killed && killer.is_finished() {
                pg.kill();
                killed = true;
            }
            let changes: Vec<Change> =
                (next..next + 200).map(|i| Change::UpsertPeer(Peer::new(i, PeerKind::User, i))).collect();
            let mut attempt = data.clone();
            attempt.apply_all(&changes);
            match b.persist(&changes, &attempt).await {
                Ok(()) => {
                    data = attempt;
                    next += 200;
                    acknowledged = next;
                }
                Err(e) => {
                    let e = SessionError::from_boxed(e, "postgres");
                    assert!(matches!(e, SessionError::Unavailable { .. }), "{e:?}");
                    errors += 1;
                    // The batch may or may not have committed: it is retried with the same ids.
                    if errors > 1 {
                        break;
                    }
                }
            }
        }
        assert!(killed && errors > 0, "round {round}: the kill did not interrupt the persists");
        pg.launch();
        let reopened = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match b.load_session().await {
                    Ok(d) => break d,
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
        .await
        .unwrap()
        .unwrap();
        let n = i64::try_from(reopened.peers.len()).unwrap();
        assert_eq!(n % 200, 0, "round {round}: a persist is there in part ({n} peers)");
        assert!(n >= acknowledged, "round {round}: an acknowledged persist was lost ({n} < {acknowledged})");
        assert!(n <= acknowledged + 200, "round {round}: more than one unacknowledged batch ({n})");
        // Continue from what is stored (an unacknowledged batch that committed counts).
        data = reopened;
        next = n;
        acknowledged = n;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_name_the_calls_and_hold_no_secret() {
    let capture = capture::install();
    let _serial = capture.lock().await;
    let pg = Postgres::start();
    let url = pg.tcp_url();
    let mut secrets = Secrets::new();
    secrets.text("the URL password", PASSWORD).text("a refused password", "wr0ng-Pa55");
    let b = PostgresOptions::new().session("observed").open(&url).await.unwrap();
    let changes = secret_changes(21, 30);
    let mut data = SessionData::default();
    data.apply_all(&changes);
    secrets.session(&data);
    b.persist(&changes, &data).await.unwrap();
    b.save_session(&data).await.unwrap();
    assert_eq!(b.load_session().await.unwrap().as_ref(), Some(&data));
    let debug = format!("{b:?}");
    let e1 = PostgresBackend::open(&url.replace(PASSWORD, "wr0ng-Pa55")).await.unwrap_err();
    let e2 = PostgresOptions::new().session("observed").open(&url).await.unwrap_err();
    assert!(matches!(e1, SessionError::Unauthorized { .. }) && matches!(e2, SessionError::Locked { .. }));
    b.delete().await.unwrap();
    b.close().await.unwrap();
    let log = capture.take();
    let t = "session_postgres";
    log.expect_span(t, "open", &[("backend", Some("postgres"))]);
    for name in ["load", "save", "persist", "delete"] {
        log.expect_span(t, name, &[("backend", Some("postgres"))]);
    }
    log.assert_no_secret(&secrets);
    for text in [debug, format!("{e1} {e1:?}"), format!("{e2} {e2:?}")] {
        assert_eq!(secrets.find_in(&text), None, "a secret in {text}");
    }
}
