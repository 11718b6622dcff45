//! `layer-session` over TLS and with the URL parameters of issue 18, against real servers whose
//! certificates come from a throwaway CA made here (rcgen): PostgreSQL with `sslmode=` and
//! `sslrootcert=` (only TLS connections admitted by its `pg_hba.conf`, so a success is a TLS
//! success) and `schema=`; Redis over `rediss://` (the system roots, here `SSL_CERT_FILE`) and
//! `prefix=`. A wrong CA is refused quickly with a message that says so, never with a password.

mod common;
#[path = "../../session-postgres/tests/support/mod.rs"]
mod pg;
#[path = "../../session-redis/tests/support/mod.rs"]
mod rd;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{s, tool};
use session_core::SessionBackend;

const REDIS_PASSWORD: &str = "rEdis-Tls-Pw-5c2e-distinctive";

/// A CA, a server certificate it signed for `localhost` (not for 127.0.0.1), and another CA.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let key = KeyPair::generate().expect("key");
            let cert = params.self_signed(&key).expect("self-signed");
            (cert, key)
        };
        let (ca_cert, ca_key) = ca("layer-session test CA");
        let (wrong, _) = ca("some other CA");
        let server_key = KeyPair::generate().expect("key");
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .signed_by(&server_key, &ca_cert, &ca_key)
            .expect("signed");
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).expect("write");
        write("ca.pem", ca_cert.pem());
        write("wrong.pem", wrong.pem());
        write("server.crt", server.pem());
        write("server.key", server_key.serialize_pem());
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Runs the tool with a 5 s call timeout and `env`; (exit code, stdout, stderr, elapsed). No
/// password shows in what it printed.
fn run_env(args: &[&str], env: &[(&str, &Path)]) -> (i32, String, String, Duration) {
    let started = Instant::now();
    let mut cmd = tool();
    cmd.env("LAYER_SESSION_TIMEOUT", "5");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.args(args).output().expect("runs");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    for secret in [pg::PASSWORD, REDIS_PASSWORD] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "a password in the output of {args:?}");
    }
    (out.status.code().unwrap_or(-1), stdout, stderr, started.elapsed())
}

fn run(args: &[&str]) -> (i32, String, String, Duration) {
    run_env(args, &[])
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

fn sample(dir: &Path) -> (PathBuf, session_core::SessionData) {
    let path = dir.join("src.session");
    let data = session_testkit::sample_session(50);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let b = session_file::BinaryFileBackend::open(&path).await.expect("open");
        b.save_session(&data).await.expect("save");
        b.close().await.expect("close");
    });
    (path, data)
}

fn read_file(path: &Path) -> session_core::SessionData {
    session_file::read_snapshot(path).expect("read back").expect("a session").data
}

/// An admin connection over the server's unix socket (not subject to the TCP rules).
async fn admin(pg: &pg::Postgres) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.expect("admin connect");
    tokio::spawn(connection);
    client
}

/// Turns TLS on with the PKI's server certificate, and admits TCP clients over TLS only.
fn postgres_with_tls(pki: &Pki) -> pg::Postgres {
    let pg = pg::Postgres::start();
    let (cert, key) = (pg.dir.path().join("server.crt"), pg.dir.path().join("server.key"));
    std::fs::copy(pki.path("server.crt"), &cert).expect("copy cert");
    std::fs::copy(pki.path("server.key"), &key).expect("copy key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let hba = pg.dir.path().join("data/pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
    let rules: String = rules
        .lines()
        .map(|l| if l.starts_with("host ") { l.replacen("host ", "hostssl ", 1) } else { l.to_owned() } + "\n")
        .collect();
    std::fs::write(&hba, rules).expect("write pg_hba.conf");
    if is_root() {
        let ok = std::process::Command::new("chown")
            .arg("nobody")
            .args([&cert, &key, &hba])
            .status()
            .expect("chown")
            .success();
        assert!(ok, "chown of the server's TLS files failed");
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let c = admin(&pg).await;
        for sql in [
            format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
            format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
            "ALTER SYSTEM SET ssl = 'on'".to_owned(),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            c.batch_execute(&sql).await.expect("configure TLS");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let on: String = admin(&pg).await.query_one("SHOW ssl", &[]).await.expect("show ssl").get(0);
            if on == "on" {
                break;
            }
            assert!(Instant::now() < deadline, "PostgreSQL did not turn TLS on");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    pg
}

#[test]
fn postgres_over_tls_with_sslmode_sslrootcert_and_a_schema() {
    let pki = Pki::new();
    let pg = postgres_with_tls(&pki);
    let work = tempfile::tempdir().expect("tempdir");
    let (src, data) = sample(work.path());
    let ca = pki.path("ca.pem");
    let wrong = pki.path("wrong.pem");
    let base =
        |host: &str, query: &str| format!("postgres://layer:{}@{host}:{}/postgres?{query}", pg::PASSWORD, pg.port);
    let full = format!("sslmode=verify-full&sslrootcert={}", ca.display());

    // verify-full with the right CA: written, read, listed, and read back whole.
    let url = format!("{}#tls", base("localhost", &full));
    let (code, _, err, _) = run(&["convert", s(&src), &url]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err, _) = run(&["inspect", &url]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("PostgreSQL"), "{out}");
    let (code, out, err, _) = run(&["list", &base("localhost", &full)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"tls\": stored"), "{out}");
    let back = work.path().join("back.session");
    let (code, _, err, _) = run(&["convert", &url, s(&back)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(read_file(&back), data, "the session changed on its way through PostgreSQL over TLS");

    // A wrong CA, or a name the certificate does not carry: refused at once, saying why.
    let refused = [
        base("localhost", &format!("sslmode=verify-full&sslrootcert={}", wrong.display())),
        base("localhost", &format!("sslmode=verify-ca&sslrootcert={}", wrong.display())),
        // libpq's rule: `require` with a root certificate checks the chain.
        base("localhost", &format!("sslmode=require&sslrootcert={}", wrong.display())),
        base("127.0.0.1", &full),
        // The system's roots do not hold the throwaway CA.
        base("localhost", "sslmode=verify-full"),
    ];
    for url in &refused {
        for (command, want) in [("inspect", 2), ("list", 2)] {
            let location = if command == "list" { url.clone() } else { format!("{url}#tls") };
            let (code, _, err, elapsed) = run(&[command, &location]);
            assert_eq!(code, want, "{command} {url}: {err}");
            assert!(err.contains("the TLS connection was refused: the server's certificate is not trusted"), "{err}");
            assert!(elapsed < Duration::from_secs(4), "{command} took {elapsed:?} to refuse a certificate");
        }
        let (code, _, err, _) = run(&["convert", "--force", s(&src), &format!("{url}#tls")]);
        assert_eq!(code, 3, "{err}");
        assert!(err.contains("the TLS connection was refused"), "{err}");
    }

    // verify-ca checks the chain only (the address is not in the certificate); require checks
    // nothing but still encrypts (the server admits TLS only); disable is turned away.
    for query in [format!("sslmode=verify-ca&sslrootcert={}", ca.display()), "sslmode=require".to_owned()] {
        let (code, _, err, _) = run(&["inspect", &format!("{}#tls", base("127.0.0.1", &query))]);
        assert_eq!(code, 0, "{query}: {err}");
    }
    let (code, _, err, _) = run(&["inspect", &format!("{}#tls", base("127.0.0.1", "sslmode=disable"))]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refused the credentials"), "{err}");
    let (code, _, err, _) = run(&["inspect", &format!("{}#tls", base("127.0.0.1", "sslmode=sometimes"))]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("sslmode=sometimes is not one of"), "{err}");

    // schema=: the session lives in that schema, and list of the default schema does not see it.
    let in_bots = format!("{}#in-bots", base("localhost", &format!("{full}&schema=bots")));
    let (code, _, err, _) = run(&["convert", s(&src), &in_bots]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err, _) = run(&["list", &base("localhost", &format!("{full}&schema=bots"))]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"in-bots\": stored") && !out.contains("\"tls\""), "{out}");
    let (code, out, err, _) = run(&["list", &base("localhost", &full)]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("in-bots"), "{out}");
    let (code, _, err, _) = run(&["inspect", &in_bots]);
    assert_eq!(code, 0, "{err}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let tables: i64 = rt.block_on(async {
        admin(&pg)
            .await
            .query_one("SELECT count(*) FROM pg_tables WHERE schemaname = 'bots' AND tablename = 'sessions'", &[])
            .await
            .expect("query")
            .get(0)
    });
    assert_eq!(tables, 1, "the session's tables are not in schema bots");
}

/// Sends RESP commands to the plain port (with AUTH); the raw answer.
fn resp(port: u16, commands: &[&[&str]]) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
    let mut request = Vec::new();
    let mut all: Vec<&[&str]> = vec![&["AUTH", REDIS_PASSWORD]];
    all.extend_from_slice(commands);
    all.push(&["QUIT"]);
    for command in all {
        request.extend_from_slice(format!("*{}\r\n", command.len()).as_bytes());
        for arg in command {
            request.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
    }
    stream.write_all(&request).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer
}

#[test]
fn redis_over_tls_with_a_key_prefix() {
    let pki = Pki::new();
    let redis = rd::Redis::start(rd::Config {
        persistence: rd::Persistence::Durable,
        password: Some(REDIS_PASSWORD.to_owned()),
        tcp: true,
    });
    let tls_port = rd::free_port();
    let (cert, key, ca) = (pki.path("server.crt"), pki.path("server.key"), pki.path("ca.pem"));
    let (cert, key, ca) = (cert.display().to_string(), key.display().to_string(), ca.display().to_string());
    let port = tls_port.to_string();
    let answer = resp(
        redis.port,
        &[
            &["CONFIG", "SET", "tls-cert-file", &cert],
            &["CONFIG", "SET", "tls-key-file", &key],
            &["CONFIG", "SET", "tls-ca-cert-file", &ca],
            &["CONFIG", "SET", "tls-auth-clients", "no"],
            &["CONFIG", "SET", "tls-port", &port],
        ],
    );
    assert_eq!(answer.matches("+OK").count(), 7, "redis-server did not turn TLS on: {answer}");
    let work = tempfile::tempdir().expect("tempdir");
    let (src, data) = sample(work.path());
    let trusted = [("SSL_CERT_FILE", pki.path("ca.pem"))];
    let trusted: Vec<(&str, &Path)> = trusted.iter().map(|(k, v)| (*k, v.as_path())).collect();
    let wrong = [("SSL_CERT_FILE", pki.path("wrong.pem"))];
    let wrong: Vec<(&str, &Path)> = wrong.iter().map(|(k, v)| (*k, v.as_path())).collect();
    let server = format!("rediss://:{REDIS_PASSWORD}@localhost:{tls_port}/?prefix=bots:");
    let url = format!("{server}#r1");

    let (code, _, err, _) = run_env(&["convert", s(&src), &url], &trusted);
    assert_eq!(code, 0, "{err}");
    let (code, out, err, _) = run_env(&["inspect", &url], &trusted);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Redis"), "{out}");
    let back = work.path().join("back.session");
    let (code, _, err, _) = run_env(&["convert", &url, s(&back)], &trusted);
    assert_eq!(code, 0, "{err}");
    assert_eq!(read_file(&back), data, "the session changed on its way through Redis over TLS");
    // prefix=: the keys carry it, and list sees the session under it only.
    let answer = resp(redis.port, &[&["EXISTS", "bots:{r1}:s"], &["EXISTS", "layer-session:{r1}:s"]]);
    assert!(answer.contains(":1\r\n:0\r\n"), "the session is not under the prefix: {answer}");
    let (code, out, err, _) = run_env(&["list", &server], &trusted);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"r1\": stored"), "{out}");
    let (code, out, err, _) = run_env(&["list", &server.replace("?prefix=bots:", "")], &trusted);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("r1"), "{out}");

    // A CA that did not sign the server's certificate: refused at once, saying why.
    for (args, want) in [(vec!["inspect", url.as_str()], 2), (vec!["convert", "--force", s(&src), url.as_str()], 3)] {
        let (code, _, err, elapsed) = run_env(&args, &wrong);
        assert_eq!(code, want, "{err}");
        assert!(err.contains("the TLS connection was refused: the server's certificate is not trusted"), "{err}");
        assert!(elapsed < Duration::from_secs(4), "{:?} took {elapsed:?} to refuse a certificate", args[0]);
    }
}
