//! The session-testkit conformance suite, the lease checks and one owner per session, on a real
//! PostgreSQL server (one per test binary run, many named sessions in it).

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use session_core::{BoxError, Change, Peer, PeerKind, SessionBackend, SessionError};
use session_postgres::{PostgresBackend, PostgresLeases, PostgresOptions};
use session_testkit::{run_all, Harness};
use support::Postgres;

struct Sessions {
    pg: Postgres,
    next: AtomicUsize,
}

fn options(name: &str) -> PostgresOptions {
    PostgresOptions::new().session(name).call_timeout(Duration::from_secs(30)).wait_for_owner(Duration::from_secs(5))
}

#[session_core::async_trait]
impl Harness for Sessions {
    type Backend = PostgresBackend;

    async fn fresh(&self) -> Result<PostgresBackend, BoxError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(options(&format!("s{n}")).open(&self.pg.url()).await?)
    }

    async fn reopen(&self, old: Arc<PostgresBackend>) -> Result<Arc<PostgresBackend>, BoxError> {
        let name = old.session().to_owned();
        drop(old);
        Ok(Arc::new(options(&name).open(&self.pg.url()).await?))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_suite() {
    run_all(&Sessions { pg: Postgres::start(), next: AtomicUsize::new(0) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_store_passes_the_lease_checks() {
    let pg = Postgres::start();
    let url = pg.url();
    session_testkit::lease::run_lease_checks("pg-", |name| {
        let url = url.clone();
        async move { Arc::new(PostgresLeases::connect(&url, &name, Duration::from_secs(5)).unwrap()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backends_on_one_session_have_one_owner() {
    let pg = Postgres::start();
    let opts = PostgresOptions::new().session("shared");
    let (unix, tcp) = (pg.url(), pg.tcp_url());
    let (a, b) = tokio::join!(opts.open(&unix), opts.open(&tcp));
    let (owner, refused) = match (a, b) {
        (Ok(owner), Err(e)) | (Err(e), Ok(owner)) => (owner, e),
        (a, b) => panic!("not exactly one owner: {:?} / {:?}", a.map(drop), b.map(drop)),
    };
    match refused {
        SessionError::Locked { holder: Some(h), expires_in: Some(_), .. } => {
            assert_eq!(h, session_core::LeaseHolder::decode(&h.encode()).unwrap());
            assert_eq!(h.pid, std::process::id());
        }
        other => panic!("the second open was not Locked naming the holder: {other:?}"),
    }
    // Another session of the same database is independent.
    let other = PostgresOptions::new().session("other").open(&pg.url()).await.unwrap();
    let mut data = session_core::SessionData::default();
    let change = Change::UpsertPeer(Peer::new(5, PeerKind::User, 55));
    data.apply_all(std::slice::from_ref(&change));
    owner.persist(std::slice::from_ref(&change), &data).await.unwrap();
    assert!(other.load_session().await.unwrap().is_none(), "a row crossed into another session");
    // session-sql's listing, translated, runs on PostgreSQL: both names, each with its holder.
    let admin = tokio_postgres_admin(&pg).await;
    admin.batch_execute("SET search_path = layer_session").await.unwrap();
    let list = session_sql::dialect::Dialect::Postgres.translate(session_sql::LIST_SESSIONS_WITH_LEASES);
    let rows = admin.query(list.as_ref(), &[]).await.unwrap();
    let listed: Vec<(String, bool)> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, Option<String>>(2).is_some()))
        .filter(|(n, _)| n != "default")
        .collect();
    assert_eq!(listed, [("other".to_owned(), true), ("shared".to_owned(), true)]);
    // Closing hands over at once.
    owner.close().await.unwrap();
    let next = opts.open(&pg.url()).await.unwrap();
    assert_eq!(next.load_session().await.unwrap().unwrap().peers.access_hash(session_core::PeerKey::user(5)), Some(55));
}

/// A superseded owner's write is refused by the server's fence and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_owner_cannot_write() {
    let pg = Postgres::start();
    let ttl = session_core::LeaseOptions::default().with_ttl(Duration::from_secs(2));
    let old = PostgresOptions::new().session("s").lease(ttl).open(&pg.url()).await.unwrap();
    let mut data = session_core::SessionData::default();
    let first = Change::UpsertPeer(Peer::new(1, PeerKind::User, 1));
    data.apply_all(std::slice::from_ref(&first));
    old.persist(std::slice::from_ref(&first), &data).await.unwrap();
    // Take the lease over behind the old owner's back: expire it on the server, as a paused
    // owner's lease would.
    let client = tokio_postgres_admin(&pg).await;
    client
        .batch_execute("UPDATE layer_session.layer_session_leases SET expires_ms = 0 WHERE name = 's'")
        .await
        .unwrap();
    let new = PostgresOptions::new().session("s").open(&pg.url()).await.unwrap();
    assert!(new.lease_token() > old.lease_token());
    let second = Change::UpsertPeer(Peer::new(2, PeerKind::User, 2));
    data.apply_all(std::slice::from_ref(&second));
    let err = old.persist(std::slice::from_ref(&second), &data).await.unwrap_err();
    assert!(
        matches!(SessionError::from_boxed(err, "postgres"), SessionError::LeaseLost { .. }),
        "the superseded write was not LeaseLost"
    );
    let stored = new.load_session().await.unwrap().unwrap();
    assert_eq!(stored.peers.len(), 1, "the superseded owner's write reached the server");
    assert!(matches!(old.lease().unwrap().borrow().clone(), session_core::LeaseStatus::Lost { .. }));
}

async fn tokio_postgres_admin(pg: &Postgres) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// Twenty races of two backends opening one session (over the socket and over TCP): exactly one
/// owner each time, the other `Locked` naming it; closing hands the session over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_opens_have_exactly_one_owner() {
    let pg = Postgres::start();
    let (unix, tcp) = (pg.url(), pg.tcp_url());
    for round in 0..20 {
        let opts = PostgresOptions::new().session(&format!("race{}", round % 3));
        let (a, b) = tokio::join!(opts.open(&unix), opts.open(&tcp));
        let (owner, refused) = match (a, b) {
            (Ok(owner), Err(e)) | (Err(e), Ok(owner)) => (owner, e),
            (a, b) => panic!("round {round}: not exactly one owner: {:?} / {:?}", a.map(drop), b.map(drop)),
        };
        assert!(matches!(refused, SessionError::Locked { holder: Some(_), .. }), "round {round}: {refused:?}");
        owner.close().await.unwrap();
    }
}
