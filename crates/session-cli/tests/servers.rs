//! `layer-session` against real PostgreSQL and Redis servers (Debian's `postgresql` and
//! `redis-server`, installed by `cargo xtask setup`), started per test by the backends' own test
//! support: round trips that keep every field, the lease a write takes and hands back, typed
//! errors in bounded time, and no password from a URL in anything the tool prints.

mod common;
#[path = "../../session-postgres/tests/support/mod.rs"]
mod pg;
#[path = "../../session-redis/tests/support/mod.rs"]
mod rd;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{s, tool};
use session_core::{SessionBackend, SessionData};
use session_file::BinaryFileBackend;
use session_postgres::PostgresOptions;
use session_redis::RedisOptions;

/// The Redis test server's password.
const REDIS_PASSWORD: &str = "rEdis-Pw-4b7e1d-distinctive";
/// A wrong password, distinctive enough to be found in any output.
const WRONG: &str = "Wr0ng-Pw-7f3a9c-distinctive";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// Runs the tool with a short call timeout; returns (exit code, stdout, stderr, elapsed), and
/// checks that no password appears in what it printed.
fn run(args: &[&str]) -> (i32, String, String, Duration) {
    let started = Instant::now();
    let out = tool().env("LAYER_SESSION_TIMEOUT", "2").args(args).output().expect("runs");
    let elapsed = started.elapsed();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    for secret in [pg::PASSWORD, REDIS_PASSWORD, WRONG] {
        assert!(!stdout.contains(secret), "a password in stdout of {:?}: {stdout}", args.first());
        assert!(!stderr.contains(secret), "a password in stderr of {:?}: {stderr}", args.first());
    }
    (out.status.code().unwrap_or(-1), stdout, stderr, elapsed)
}

/// A session with every field set and 300 cached peers, written as our log file at `path`.
fn write_sample(rt: &tokio::runtime::Runtime, path: &Path) -> SessionData {
    let data = session_testkit::sample_session(300);
    rt.block_on(async {
        let backend = BinaryFileBackend::open(path).await.expect("open file");
        backend.save_session(&data).await.expect("save");
    });
    data
}

fn read_file(path: &Path) -> SessionData {
    session_file::read_snapshot(path).expect("read back").expect("a session").data
}

fn redis() -> rd::Redis {
    rd::Redis::start(rd::Config {
        persistence: rd::Persistence::Durable,
        password: Some(REDIS_PASSWORD.to_owned()),
        tcp: true,
    })
}

#[test]
fn file_to_postgres_to_redis_to_file_keeps_the_session() {
    let rt = runtime();
    let pg = pg::Postgres::start();
    let redis = redis();
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("src.session");
    let data = write_sample(&rt, &src);
    let pg_url = format!("{}#bot-a", pg.tcp_url());
    let redis_url = format!("{}#bot-a", redis.url());

    let (code, _, err, _) = run(&["convert", s(&src), &pg_url]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("postgres://layer:***@127.0.0.1"), "{err}");
    assert!(err.contains("#bot-a"), "{err}");
    let (code, out, err, _) = run(&["inspect", &pg_url]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("PostgreSQL") && out.contains("#bot-a"), "{out}");
    let (code, out, err, _) = run(&["inspect", "--json", &pg_url]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(json["format"], "postgres");
    let (code, out, err, _) = run(&["verify", &pg_url.replacen("postgres://", "postgresql://", 1)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("300 peers"), "{out}");

    let (code, _, err, _) = run(&["convert", &pg_url, &redis_url]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err, _) = run(&["inspect", "--json", &redis_url]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(json["format"], "redis");
    assert!(json.to_string().contains("redis://:***@127.0.0.1"), "{json}");

    let back = work.path().join("back.session");
    let (code, _, err, _) = run(&["convert", &redis_url, s(&back)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(read_file(&back), data, "the session changed on its way through PostgreSQL and Redis");

    // An existing session is replaced only with --force; other names are other sessions.
    for url in [&pg_url, &redis_url] {
        let (code, _, err, _) = run(&["convert", s(&src), url]);
        assert_eq!(code, 3, "{err}");
        assert!(err.contains("already holds a session"), "{err}");
        let (code, _, err, _) = run(&["convert", "--force", s(&src), url]);
        assert_eq!(code, 0, "{err}");
        let other = url.replace("#bot-a", "#bot-b");
        let (code, _, err, _) = run(&["inspect", &other]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("holds no session named \"bot-b\""), "{err}");
        let default = url.replace("#bot-a", "");
        let (code, _, err, _) = run(&["inspect", &default]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("holds no session named \"default\""), "{err}");
    }
    // A folder of sessions converts into a folder, never into one server session.
    let (code, _, err, _) = run(&["convert", s(work.path()), &pg_url]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("converts into a folder"), "{err}");
    // A string export reads from a server too.
    let (code, out, err, _) = run(&["export-string", &redis_url]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("L1."), "{out}");
}

#[test]
fn a_session_held_by_a_running_owner_is_refused_and_the_lease_is_handed_back() {
    let rt = runtime();
    let pg = pg::Postgres::start();
    let redis = redis();
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("src.session");
    let data = write_sample(&rt, &src);
    let me = format!("pid {}", std::process::id());

    // PostgreSQL: a backend of this process holds session "held".
    let holder = rt.block_on(PostgresOptions::new().session("held").open(&pg.tcp_url())).expect("holder opens");
    let pg_url = format!("{}#held", pg.tcp_url());
    let (code, _, err, _) = run(&["convert", "--force", s(&src), &pg_url]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("is held by a running program") && err.contains(&me), "{err}");
    // Reading takes no lease (tests/read_while_owned.rs): the holder has stored nothing yet.
    let (code, _, err, _) = run(&["inspect", &pg_url]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("holds no session named \"held\""), "{err}");
    rt.block_on(holder.close()).expect("holder closes");
    drop(holder);
    let (code, _, err, _) = run(&["convert", s(&src), &pg_url]);
    assert_eq!(code, 0, "{err}");
    // The tool handed its lease back: an owner that does not wait opens the session at once.
    let owner = rt.block_on(PostgresOptions::new().session("held").open(&pg.tcp_url())).expect("lease handed back");
    assert_eq!(rt.block_on(owner.load_session()).expect("load"), Some(data.clone()));
    rt.block_on(owner.close()).expect("close");
    drop(owner);
    let (code, _, err, _) = run(&["inspect", &pg_url]);
    assert_eq!(code, 0, "{err}");
    let owner = rt.block_on(PostgresOptions::new().session("held").open(&pg.tcp_url())).expect("read hands back");
    rt.block_on(owner.close()).expect("close");
    drop(owner);

    // Redis: the same.
    let holder = rt.block_on(RedisOptions::new().session("held").open(&redis.url())).expect("holder opens");
    let redis_url = format!("{}#held", redis.url());
    let (code, _, err, _) = run(&["convert", "--force", s(&src), &redis_url]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("is held by a running program") && err.contains(&me), "{err}");
    rt.block_on(holder.close()).expect("holder closes");
    drop(holder);
    let (code, _, err, _) = run(&["convert", s(&src), &redis_url]);
    assert_eq!(code, 0, "{err}");
    let owner = rt.block_on(RedisOptions::new().session("held").open(&redis.url())).expect("lease handed back");
    assert_eq!(rt.block_on(owner.load_session()).expect("load"), Some(data));
    rt.block_on(owner.close()).expect("close");
}

#[test]
fn unreachable_refusing_and_foreign_servers_are_typed_errors_in_bounded_time() {
    let rt = runtime();
    let pg = pg::Postgres::start();
    let redis = redis();
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("src.session");
    write_sample(&rt, &src);
    let down = pg::free_port();
    // Accepts connections (the kernel does, into the backlog) and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent = listener.local_addr().expect("addr").port();

    // Answers every connection with an HTTP error and closes it.
    let http = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let web = http.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in http.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = std::io::Write::write_all(&mut stream, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let cases = [
        (format!("postgres://layer:{WRONG}@127.0.0.1:{}/postgres#x", pg.port), "refused the credentials"),
        (format!("postgres://layer:{WRONG}@127.0.0.1:{down}/postgres#x"), "cannot be reached"),
        (format!("postgres://layer:{WRONG}@127.0.0.1:{silent}/postgres#x"), "did not answer in time"),
        // Redis waits for the end of a line that PostgreSQL's startup message never sends.
        (format!("postgres://layer:{WRONG}@127.0.0.1:{}/postgres#x", redis.port), "did not answer in time"),
        (format!("postgres://layer:{WRONG}@127.0.0.1:{web}/postgres#x"), "is a PostgreSQL server listening there?"),
        (format!("redis://:{WRONG}@127.0.0.1:{}#x", redis.port), "refused the credentials"),
        (format!("redis://default:{WRONG}@127.0.0.1:{}#x", redis.port), "refused the credentials"),
        (format!("redis://:{WRONG}@127.0.0.1:{down}#x"), "cannot be reached"),
        (format!("redis://:{WRONG}@127.0.0.1:{silent}#x"), "did not answer in time"),
        (format!("redis://:{WRONG}@127.0.0.1:{}#x", pg.port), "is a Redis server listening there?"),
        (format!("redis://:{WRONG}@127.0.0.1:{web}#x"), "does not answer as a Redis server"),
        // TLS to a plain port: the server waits for a command that the handshake never sends.
        (format!("rediss://:{WRONG}@127.0.0.1:{}#x", redis.port), "did not answer in time"),
    ];
    let mut bad = Vec::new();
    for (url, expected) in &cases {
        for (args, want) in [(vec!["inspect", url.as_str()], 2), (vec!["convert", "--force", s(&src), url.as_str()], 3)]
        {
            let (code, _, err, elapsed) = run(&args);
            // Three calls at most (connect, check, lease), each bounded by 2 s, and the start.
            let ok = code == want
                && err.contains(expected)
                && err.contains(":***@127.0.0.1")
                && elapsed < Duration::from_secs(10)
                && err.lines().count() == 1;
            if !ok {
                bad.push(format!("{} (exit {code}, {elapsed:?}, wanted {expected:?}): {err}", args[0]));
            }
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
    // A URL where the parser expected no value is quoted back by it: without the password.
    let url = format!("postgres://layer:{WRONG}@127.0.0.1:{}/postgres", pg.port);
    let (code, _, err, _) = run(&["inspect", &format!("--json={url}"), "x"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("postgres://layer:***@127.0.0.1"), "{err}");
    drop(listener);
}

#[test]
fn list_shows_the_named_sessions_and_who_holds_them() {
    let rt = runtime();
    let pg = pg::Postgres::start();
    let redis = redis();
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("src.session");
    write_sample(&rt, &src);
    let me = format!("pid {}", std::process::id());

    // A SQLite file with two named sessions.
    let db = work.path().join("many.db");
    rt.block_on(async {
        for name in ["alpha", "beta"] {
            let b = session_sqlite::SqliteBackend::open_named(&db, name).await.expect("open");
            b.save_session(&session_testkit::sample_session(3)).await.expect("save");
            b.close().await.expect("close");
        }
    });
    let (code, out, err, _) = run(&["list", s(&db)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("3 sessions") && out.contains("\"alpha\": stored") && out.contains("\"beta\": stored"),
        "{out}"
    );
    // `default` is registered in every database of the SQL schema, stored or not.
    assert!(out.contains("\"default\": nothing stored; not held"), "{out}");

    for base in [pg.tcp_url(), redis.url()] {
        for name in ["a", "b"] {
            let (code, _, err, _) = run(&["convert", s(&src), &format!("{base}#{name}")]);
            assert_eq!(code, 0, "{err}");
        }
        // A running owner of session "c", which stores nothing yet.
        let holder: Box<dyn SessionBackend> = if base.starts_with("postgres") {
            Box::new(rt.block_on(PostgresOptions::new().session("c").open(&base)).expect("holder"))
        } else {
            Box::new(rt.block_on(RedisOptions::new().session("c").open(&base)).expect("holder"))
        };
        let (code, out, err, _) = run(&["list", &format!("{base}#ignored")]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("\"a\": stored; not held") && out.contains("\"b\": stored; not held"), "{out}");
        assert!(out.contains("\"c\": nothing stored; held by ") && out.contains(&me), "{out}");
        assert!(out.contains(":***@127.0.0.1"), "{out}");
        let (code, out, err, _) = run(&["list", "--json", &base]);
        assert_eq!(code, 0, "{err}");
        let json: serde_json::Value = serde_json::from_str(&out).expect("json");
        let sessions = json["sessions"].as_array().expect("sessions");
        // PostgreSQL's schema registers `default` too.
        let listed: Vec<&serde_json::Value> = sessions.iter().filter(|v| v["name"] != "default").collect();
        let names: Vec<&str> = listed.iter().filter_map(|v| v["name"].as_str()).collect();
        assert_eq!(names, ["a", "b", "c"], "{json}");
        let left = listed[2]["expires_in_ms"].as_u64().expect("the holder's lease has an expiry");
        assert!(left > 0 && left <= 30_000, "{left}");
        assert!(listed[0]["holder"].is_null(), "{json}");
        rt.block_on(holder.close()).expect("close");
    }
    // Where nothing is listed: our log file (one session).
    let (code, _, err, _) = run(&["list", s(&src)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a SQLite database"), "{err}");
}

#[test]
fn a_redis_that_keeps_nothing_on_disk_is_refused_as_a_destination_and_read_as_a_source() {
    let rt = runtime();
    let redis = rd::Redis::start(rd::Config { persistence: rd::Persistence::Volatile, password: None, tcp: false });
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("src.session");
    let data = write_sample(&rt, &src);
    let url = format!("{}#v", redis.url());

    let (code, _, err, _) = run(&["convert", s(&src), &url]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("appendonly"), "the reason is named: {err}");
    // Nothing was written, and the lease was handed back.
    let owner = rt
        .block_on(RedisOptions::new().session("v").allow_volatile(true).open(&redis.url()))
        .expect("the refused write left no lease behind");
    assert_eq!(rt.block_on(owner.load_session()).expect("load"), None);
    rt.block_on(owner.save_session(&data)).expect("save");
    rt.block_on(owner.close()).expect("close");
    drop(owner);

    let back = work.path().join("back.session");
    let (code, _, err, _) = run(&["convert", &url, s(&back)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(read_file(&back), data);
}
