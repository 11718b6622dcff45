//! `inspect`, `verify` and `list` of a server session while its owner runs (issue 16): reading
//! never uses the session's keys against Telegram, so it takes no lease. On a real libSQL server
//! (sqld), PostgreSQL and Redis: the owner is another process (`session-cli-holder owner`) that
//! holds the lease and persists batches of 1,000 peers the whole time (added, then removed); the
//! tool reads and exits 0, every read sees a batch whole or not at all, and the owner keeps its
//! lease (same token) and keeps writing. Reading an empty database or server creates nothing.

mod common;
#[path = "../../session-postgres/tests/support/mod.rs"]
mod pg;
#[path = "../../session-redis/tests/support/mod.rs"]
mod rd;
#[path = "../../session-libsql/tests/support/mod.rs"]
mod sqld;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::{s, tool};
use session_core::SessionBackend;

/// The holder program (`tests/bin/holder.rs`).
const HOLDER: &str = env!("CARGO_BIN_EXE_session-cli-holder");
/// Peers of the session the owner starts from.
const BASE_PEERS: usize = 300;
const REDIS_PASSWORD: &str = "rEdis-Pw-0wned-distinctive";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// Runs the tool; (exit code, stdout, stderr). No password shows in what it printed.
fn run(args: &[&str]) -> (i32, String, String) {
    run_key(None, args)
}

/// [`run`] with `LAYER_SESSION_KEY` set to `key` (unset for `None`).
fn run_key(key: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = tool();
    cmd.env("LAYER_SESSION_TIMEOUT", "5").env_remove("LAYER_SESSION_KEY");
    if let Some(key) = key {
        cmd.env("LAYER_SESSION_KEY", key);
    }
    let out = cmd.args(args).output().expect("runs");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    for secret in [pg::PASSWORD, REDIS_PASSWORD] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "a password in the output of {args:?}");
    }
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// The owner process: holds the session's lease and persists batches of 1,000 peers.
struct Owner {
    child: Child,
    out: BufReader<ChildStdout>,
    token: u64,
}

impl Owner {
    fn start(kind: &str, url: &str, name: &str) -> Owner {
        Owner::start_key(kind, url, name, None)
    }

    /// [`Owner::start`] of a session sealed with the raw key `key`.
    fn start_key(kind: &str, url: &str, name: &str, key: Option<&str>) -> Owner {
        let mut cmd = Command::new(HOLDER);
        cmd.env_remove("LAYER_SESSION_KEY");
        if let Some(key) = key {
            cmd.env("LAYER_SESSION_KEY", key);
        }
        let mut child = cmd
            .args(["owner", kind, url, name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the owner");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("owner's first line");
        let token = line
            .strip_prefix("owner-ready ")
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("the owner did not start: {line:?}"));
        assert!(token > 0, "the owner holds no lease");
        Owner { child, out, token }
    }

    /// (token now, batches persisted, persists that failed).
    fn status(&mut self) -> (u64, u64, u64) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"status\n").and_then(|()| stdin.flush()).expect("ask the owner");
        let mut line = String::new();
        self.out.read_line(&mut line).expect("owner's answer");
        let n: Vec<u64> = line.split_whitespace().skip(1).filter_map(|w| w.parse().ok()).collect();
        match n.as_slice() {
            [token, batches, errors] => (*token, *batches, *errors),
            _ => panic!("unexpected owner answer {line:?}"),
        }
    }

    /// Waits until the owner has persisted more than `batches` batches.
    fn wait_past(&mut self, batches: u64) -> (u64, u64, u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = self.status();
            if st.1 > batches {
                return st;
            }
            assert!(Instant::now() < deadline, "the owner wrote nothing for 30 s: {st:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes its stdin: it stops writing, hands the lease back and must exit 0.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        let _ = self.out.read_to_string(&mut rest);
        let status = self.child.wait().expect("owner exits");
        assert!(status.success(), "the owner failed: {status}");
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A session of `BASE_PEERS` peers as our log file.
fn sample(rt: &tokio::runtime::Runtime, dir: &Path) -> std::path::PathBuf {
    let path = dir.join("src.session");
    rt.block_on(async {
        let b = session_file::BinaryFileBackend::open(&path).await.expect("open");
        b.save_session(&session_testkit::sample_session(BASE_PEERS)).await.expect("save");
        b.close().await.expect("close");
    });
    path
}

/// A count of peers is the start's, or the start's plus one whole batch of 1,000 (the owner
/// adds 1,000 peers in one persist and removes them in the next): never a part of a batch.
fn whole(count: usize, what: &str) {
    assert!(
        count == BASE_PEERS || count == BASE_PEERS + 1000,
        "{what}: {count} peers is neither {BASE_PEERS} nor {BASE_PEERS} + 1,000: a read saw part of a persist"
    );
}

/// The whole check against one server. `cli` is the session's location for the tool, `list`
/// the database's, `direct` reads the peers count through the backend's read-only open.
fn reads_while_owned(owner: &mut Owner, name: &str, cli: &str, list: &str, direct: &dyn Fn() -> Option<usize>) {
    reads_while_owned_key(owner, None, name, cli, list, direct, 30);
}

/// [`reads_while_owned`] of a session sealed with `key` (the tool reads it with the key).
fn reads_while_owned_key(
    owner: &mut Owner,
    key: Option<&str>,
    name: &str,
    cli: &str,
    list: &str,
    direct: &dyn Fn() -> Option<usize>,
    rounds: usize,
) {
    let (_, before, _) = owner.wait_past(0);
    let mut seen = BTreeSet::new();
    for _ in 0..3 {
        let (code, out, err) = run_key(key, &["inspect", "--json", cli]);
        assert_eq!(code, 0, "inspect of an owned session: {err}");
        let json: serde_json::Value = serde_json::from_str(&out).expect("json");
        let count = usize::try_from(json["peer_count"].as_u64().expect("peer_count")).expect("count");
        whole(count, "inspect");
        assert_eq!(json["sealed"].as_bool(), Some(key.is_some()), "{json}");
        seen.insert(count);
        let (code, out, err) = run_key(key, &["verify", cli]);
        assert_eq!(code, 0, "verify of an owned session: {out}{err}");
        assert!(out.starts_with("ok: "), "{out}");
    }
    let (code, out, err) = run(&["list", list]);
    assert_eq!(code, 0, "list: {err}");
    let line =
        out.lines().find(|l| l.contains(&format!("{name:?}: stored; held by"))).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains(&format!("pid {} ", owner.pid())), "list does not name the owner: {out}");
    for _ in 0..rounds {
        let count = direct().expect("the read-only open found the session");
        whole(count, "read-only open");
        seen.insert(count);
    }
    let (token, after, errors) = owner.wait_past(before + 2);
    assert_eq!(token, owner.token, "the owner's lease changed hands while the tool read");
    assert_eq!(errors, 0, "the owner's writes failed while the tool read");
    assert!(after > before, "the owner stopped writing");
    // The reads overlapped the writes: they saw the session both with and without the batch.
    assert_eq!(seen.len(), 2, "every read saw the same state ({seen:?}): the reads did not overlap the persists");
}

#[test]
fn libsql_server_inspect_verify_and_list_while_the_owner_writes() {
    let rt = runtime();
    let work = tempfile::tempdir().expect("tempdir");
    let server = sqld::Sqld::start(&work.path().join("server"), None);
    // The tool's libSQL server locations name the database's default session.
    let cli = server.url().replacen("http://", "libsql+http://", 1);
    let (code, _, err) = run(&["convert", s(&sample(&rt, work.path())), &cli]);
    assert_eq!(code, 0, "{err}");
    let mut owner = Owner::start("libsql", &server.url(), "default");
    let url = server.url();
    let direct = || {
        rt.block_on(session_libsql::LibSqlBackend::read_remote(&url, "", &Default::default(), None))
            .expect("read")
            .map(|s| s.data.peers.len())
    };
    reads_while_owned(&mut owner, "default", &cli, &cli, &direct);
    owner.stop();
}

#[test]
fn postgres_inspect_verify_and_list_while_the_owner_writes() {
    let rt = runtime();
    let work = tempfile::tempdir().expect("tempdir");
    let pg = pg::Postgres::start();
    let cli = format!("{}#owned", pg.tcp_url());
    let (code, _, err) = run(&["convert", s(&sample(&rt, work.path())), &cli]);
    assert_eq!(code, 0, "{err}");
    let mut owner = Owner::start("postgres", &pg.tcp_url(), "owned");
    let url = pg.tcp_url();
    let direct = || {
        let options = session_postgres::PostgresOptions::new().session("owned");
        rt.block_on(options.read_session(&url, None)).expect("read").map(|s| s.data.peers.len())
    };
    reads_while_owned(&mut owner, "owned", &cli, &pg.tcp_url(), &direct);
    owner.stop();
}

#[test]
fn redis_inspect_verify_and_list_while_the_owner_writes() {
    let rt = runtime();
    let work = tempfile::tempdir().expect("tempdir");
    let redis = rd::Redis::start(rd::Config {
        persistence: rd::Persistence::Durable,
        password: Some(REDIS_PASSWORD.to_owned()),
        tcp: true,
    });
    let cli = format!("{}#owned", redis.url());
    let (code, _, err) = run(&["convert", s(&sample(&rt, work.path())), &cli]);
    assert_eq!(code, 0, "{err}");
    let mut owner = Owner::start("redis", &redis.url(), "owned");
    let url = redis.url();
    let direct = || {
        let options = session_redis::RedisOptions::new().session("owned");
        rt.block_on(options.read_session(&url)).expect("read").map(|s| s.data.peers.len())
    };
    reads_while_owned(&mut owner, "owned", &cli, &redis.url(), &direct);
    owner.stop();
}

/// The rows (first column, as text) of the last of `statements` on sqld's default database,
/// over its HTTP API (not through our client).
fn sqld_exec(url: &str, statements: &[&str]) -> Vec<String> {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut requests: Vec<serde_json::Value> =
        statements.iter().map(|sql| serde_json::json!({"type": "execute", "stmt": {"sql": sql}})).collect();
    requests.push(serde_json::json!({"type": "close"}));
    let body = serde_json::json!({ "requests": requests }).to_string();
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to sqld");
    let request = format!(
        "POST /v2/pipeline HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let (head, json) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // A chunked body: the JSON is the text between the first `{` and the last `}`.
    let json = &json[json.find('{').expect("json")..=json.rfind('}').expect("json")];
    let value: serde_json::Value = serde_json::from_str(json).expect("json");
    let last = &value["results"][statements.len() - 1];
    assert_eq!(last["type"], "ok", "sqld refused a statement: {value}");
    last["response"]["result"]["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|row| match &row[0] {
            serde_json::Value::Object(v) => {
                v.get("value").map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            }
            _ => None,
        })
        .collect()
}

fn sqld_tables(url: &str) -> Vec<String> {
    sqld_exec(url, &["SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"])
}

/// `DBSIZE` over RESP (with AUTH), not through our client.
fn redis_dbsize(port: u16, password: &str) -> i64 {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
    let request =
        format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n*1\r\n$6\r\nDBSIZE\r\n*1\r\n$4\r\nQUIT\r\n", password.len());
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer
        .lines()
        .find_map(|l| l.strip_prefix(':').and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no DBSIZE in {answer:?}"))
}

#[test]
fn reading_an_empty_database_or_server_creates_nothing() {
    let rt = runtime();
    let work = tempfile::tempdir().expect("tempdir");

    let server = sqld::Sqld::start(&work.path().join("server"), None);
    let cli = server.url().replacen("http://", "libsql+http://", 1);
    let (code, _, err) = run(&["inspect", &cli]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("holds no session"), "{err}");
    let (code, _, err) = run(&["verify", &cli]);
    assert_eq!(code, 2, "{err}");
    let (code, out, err) = run(&["list", &cli]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0 sessions"), "{out}");
    assert_eq!(sqld_tables(&server.url()), Vec::<String>::new(), "reading created tables on the server");

    let pg = pg::Postgres::start();
    for (command, location) in [
        ("inspect", format!("{}#nobody", pg.tcp_url())),
        ("verify", format!("{}?schema=elsewhere#nobody", pg.tcp_url())),
    ] {
        let (code, _, err) = run(&[command, &location]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("holds no session named \"nobody\""), "{err}");
    }
    let (code, _, err) = run(&["list", &pg.tcp_url()]);
    assert_eq!(code, 0, "{err}");
    let created = rt.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(&pg.tcp_url(), tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);
        let rows = client
            .query(
                "SELECT nspname::text FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN \
                 ('information_schema', 'public') UNION ALL SELECT schemaname::text || '.' || tablename::text \
                 FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
                &[],
            )
            .await
            .expect("query");
        rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>()
    });
    assert_eq!(created, Vec::<String>::new(), "reading created a schema or tables on the server");

    let redis = rd::Redis::start(rd::Config {
        persistence: rd::Persistence::Volatile,
        password: Some(REDIS_PASSWORD.to_owned()),
        tcp: true,
    });
    let (code, _, err) = run(&["inspect", &format!("{}#nobody", redis.url())]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("holds no session named \"nobody\""), "{err}");
    let (code, _, err) = run(&["list", &redis.url()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(redis_dbsize(redis.port, REDIS_PASSWORD), 0, "reading wrote keys on the server");
}

/// A database of an older schema is reported as such by a read, never migrated by it.
#[test]
fn an_older_schema_is_reported_and_left_as_it_is() {
    let rt = runtime();
    let work = tempfile::tempdir().expect("tempdir");

    let server = sqld::Sqld::start(&work.path().join("server"), None);
    sqld_exec(&server.url(), &["CREATE TABLE peers (id INTEGER PRIMARY KEY)", "PRAGMA user_version = 1"]);
    let cli = server.url().replacen("http://", "libsql+http://", 1);
    let (code, _, err) = run(&["inspect", &cli]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("its schema is version 1, older than this build's"), "{err}");
    assert_eq!(sqld_exec(&server.url(), &["PRAGMA user_version"]), ["1"], "the read migrated the database");
    assert_eq!(sqld_tables(&server.url()), ["peers"], "the read created tables");

    let pg = pg::Postgres::start();
    let version = |schema: &str| -> (i64, i64) {
        rt.block_on(async {
            let (c, connection) = tokio_postgres::connect(&pg.tcp_url(), tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(connection);
            let tables: i64 = c
                .query_one("SELECT count(*) FROM pg_tables WHERE schemaname = $1", &[&schema])
                .await
                .expect("tables")
                .get(0);
            let v: i64 = c
                .query_one(&format!("SELECT version FROM {schema}.layer_session_schema WHERE id = 0"), &[])
                .await
                .expect("version")
                .get(0);
            (tables, v)
        })
    };
    rt.block_on(async {
        let (c, connection) = tokio_postgres::connect(&pg.tcp_url(), tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);
        c.batch_execute(&format!(
            "CREATE SCHEMA old; CREATE TABLE old.layer_session_schema (id INTEGER PRIMARY KEY, application_id BIGINT, \
             version BIGINT); INSERT INTO old.layer_session_schema VALUES (0, {}, 2)",
            0x4C59_5353
        ))
        .await
        .expect("an old schema");
    });
    let (code, _, err) = run(&["inspect", &format!("{}?schema=old#x", pg.tcp_url())]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("its schema is version 2, older than this build's"), "{err}");
    assert_eq!(version("old"), (1, 2), "the read migrated the schema or created tables");
}

/// A raw sealing key (64 hex characters).
const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// Sealed sessions are read with the key while their owner (opened with the same key) writes;
/// without the key a read is refused as sealed, and the owner is not disturbed either way.
#[test]
fn sealed_sessions_are_read_with_the_key_while_the_owner_writes() {
    use session_core::{Keyring, SealingKey};
    let rt = runtime();
    let work = tempfile::tempdir().expect("tempdir");
    let src = sample(&rt, work.path());
    let keys = || Keyring::new(SealingKey::from_hex(KEY).expect("key"));

    let server = sqld::Sqld::start(&work.path().join("server"), None);
    let pg = pg::Postgres::start();
    let redis = rd::Redis::start(rd::Config {
        persistence: rd::Persistence::Durable,
        password: Some(REDIS_PASSWORD.to_owned()),
        tcp: true,
    });
    let libsql_cli = server.url().replacen("http://", "libsql+http://", 1);
    let cases = [
        ("libsql", server.url(), "default", libsql_cli.clone(), libsql_cli.clone()),
        ("postgres", pg.tcp_url(), "sealed", format!("{}#sealed", pg.tcp_url()), pg.tcp_url()),
        ("redis", redis.url(), "sealed", format!("{}#sealed", redis.url()), redis.url()),
    ];
    for (kind, url, name, cli, list) in &cases {
        let (code, _, err) = run_key(Some(KEY), &["convert", s(&src), cli]);
        assert_eq!(code, 0, "{kind}: {err}");
        let mut owner = Owner::start_key(kind, url, name, Some(KEY));
        let direct = || -> Option<usize> {
            let found = match *kind {
                "libsql" => rt
                    .block_on(session_libsql::LibSqlBackend::read_remote(url, "", &Default::default(), Some(&keys())))
                    .expect("read")
                    .map(|s| (s.data.peers.len(), s.sealed_with)),
                "postgres" => rt
                    .block_on(session_postgres::PostgresOptions::new().session(name).read_session(url, Some(&keys())))
                    .expect("read")
                    .map(|s| (s.data.peers.len(), s.sealed_with)),
                _ => rt
                    .block_on(session_redis::RedisOptions::new().session(*name).key(keys()).read_session(url))
                    .expect("read")
                    .map(|s| (s.data.peers.len(), s.sealed_with)),
            };
            found.map(|(peers, sealed)| {
                assert_eq!(sealed, Some(SealingKey::from_hex(KEY).expect("key").id()), "{kind}: not read as sealed");
                peers
            })
        };
        reads_while_owned_key(&mut owner, Some(KEY), name, cli, list, &direct, 12);
        let (code, _, err) = run_key(None, &["inspect", cli]);
        assert_eq!(code, 2, "{kind}: a sealed session read without the key: {err}");
        assert!(err.to_lowercase().contains("sealed"), "{kind}: {err}");
        let (token, _, errors) = owner.status();
        assert_eq!((token, errors), (owner.token, 0), "{kind}: the owner was disturbed");
        owner.stop();
    }
}
