//! The servers the remote rows of the benches talk to: a `redis-server` and a PostgreSQL cluster
//! from Debian's packages (what `cargo xtask setup` installs), each started in a temporary folder
//! as the backends' own tests start theirs, and stopped when dropped.
//!
//! Both are configured as those tests configure them, durable: Redis with `appendonly yes` and
//! `appendfsync always` (each acknowledged write fsynced), PostgreSQL with its defaults (`fsync`
//! and `synchronous_commit` on), so their rows compare with SQLite's fsync per commit. A missing
//! server makes [`RedisServer::start`] or [`PostgresServer::start`] fail with the reason.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` on a unix socket in a temporary folder.
pub struct RedisServer {
    child: Child,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` from `PATH` and waits until it answers.
    pub fn start() -> Result<RedisServer, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
        let d = dir.path();
        let conf = format!(
            "port 0\nunixsocket {}\nunixsocketperm 700\ndir {}\nlogfile {}\ndaemonize no\n\
             appendonly yes\nappendfsync always\nsave \"\"\n",
            d.join("redis.sock").display(),
            d.display(),
            d.join("redis.log").display(),
        );
        std::fs::write(d.join("redis.conf"), conf).map_err(|e| format!("redis.conf: {e}"))?;
        let child = Command::new("redis-server")
            .arg(d.join("redis.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server ({e}): install it with `cargo xtask setup`"))?;
        let mut server = RedisServer { child, dir };
        let sock = server.dir.path().join("redis.sock");
        server.wait(|| ping(&sock), "redis-server")?;
        Ok(server)
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.dir.path().join("redis.sock").display())
    }

    fn wait(&mut self, ready: impl Fn() -> bool, what: &str) -> Result<(), String> {
        wait_for(&mut self.child, self.dir.path(), "redis.log", ready, what)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `PING` over the socket; true on `+PONG` (not `-LOADING`).
fn ping(sock: &Path) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(sock) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 64];
    s.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok() && matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// A PostgreSQL cluster (`initdb`, then `postgres`) in a temporary folder, listening on a unix
/// socket there; run as `nobody` when this process is root (PostgreSQL refuses root).
pub struct PostgresServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

/// The superuser's password (the server listens on a unix socket in a private folder only).
const PG_PASSWORD: &str = "bench-only-password";

impl PostgresServer {
    /// Creates the cluster and starts the server from the newest `/usr/lib/postgresql/*/bin`.
    pub fn start() -> Result<PostgresServer, String> {
        let dir = tempfile::Builder::new().prefix("pg").tempdir().map_err(|e| format!("temporary folder: {e}"))?;
        let d = dir.path();
        std::fs::write(d.join("pw"), PG_PASSWORD).map_err(|e| format!("password file: {e}"))?;
        if is_root() {
            let ok = Command::new("chown").arg("-R").arg("nobody").arg(d).status().is_ok_and(|s| s.success());
            if !ok {
                return Err("chown of the server's folder to nobody failed".into());
            }
        }
        let out = as_server_user(pg_bin("initdb")?)
            .arg("-D")
            .arg(d.join("data"))
            .args(["-U", "layer", "--auth=scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C"])
            .arg(format!("--pwfile={}", d.join("pw").display()))
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        // Only for the socket's name (.s.PGSQL.<port>): TCP is off.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("free port: {e}"))?
            .port();
        let log = std::fs::File::create(d.join("log")).map_err(|e| format!("log: {e}"))?;
        let child = as_server_user(pg_bin("postgres")?)
            .arg("-D")
            .arg(d.join("data"))
            .args(["-c", "listen_addresses=", "-c", "shared_buffers=64MB", "-p"])
            .arg(port.to_string())
            .arg("-k")
            .arg(d)
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("postgres: {e}"))?;
        let mut server = PostgresServer { child: Some(child), dir, port };
        let sock = server.dir.path().join(format!(".s.PGSQL.{port}"));
        let Some(child) = server.child.as_mut() else { return Err("postgres did not start".into()) };
        wait_for(child, server.dir.path(), "log", || sock.exists(), "postgres")?;
        // The socket exists once it listens; recovery of a fresh cluster ends a moment later.
        std::thread::sleep(Duration::from_millis(300));
        Ok(server)
    }

    /// A key=value connection string over the unix socket.
    pub fn url(&self) -> String {
        format!(
            "host={} port={} user=layer password={PG_PASSWORD} dbname=postgres",
            self.dir.path().display(),
            self.port
        )
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // The postmaster's pid, from its pid file: `runuser` in between would not pass a kill
        // on; SIGQUIT ends the postmaster and its backends at once.
        let pid = std::fs::read_to_string(self.dir.path().join("data").join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u32>().ok()));
        if let Some(pid) = pid {
            let _ = Command::new("kill").args(["-QUIT", &pid.to_string()]).stderr(Stdio::null()).status();
        }
        if let Some(mut child) = self.child.take() {
            if pid.is_none() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

fn pg_bin(name: &str) -> Result<PathBuf, String> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(Result::ok).map(|e| e.path().join("bin").join(name)).filter(|p| p.exists()).collect())
        .unwrap_or_default();
    found.sort();
    found.pop().ok_or_else(|| {
        format!("PostgreSQL's {name} is not under /usr/lib/postgresql/*/bin: install it with `cargo xtask setup`")
    })
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

fn as_server_user(program: PathBuf) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Waits up to 30 s for `ready`, failing early (with the server's log) if the process exits.
fn wait_for(child: &mut Child, dir: &Path, log: &str, ready: impl Fn() -> bool, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
            return Err(format!("{what} exited at start ({status}): {log}"));
        }
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{what} was not ready within 30 s"))
}
