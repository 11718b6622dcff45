//! A real PostgreSQL server per test: `initdb` and `postgres` from Debian's package (found under
//! /usr/lib/postgresql/*/bin), run in a temporary folder as an unprivileged user when the tests
//! run as root (PostgreSQL refuses root), listening on a unix socket in that folder and on
//! 127.0.0.1 with a free port, with password authentication; killed (the whole process group)
//! when dropped. A missing PostgreSQL fails the test with the reason; it never passes.

#![allow(dead_code, clippy::unwrap_used)]

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The password of the test servers' superuser `layer`.
pub const PASSWORD: &str = "s3cr3t-pg-password-Zq8";

pub struct Postgres {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn bin(name: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin").join(name)).filter(|p| p.exists()).collect())
        .unwrap_or_default();
    found.sort();
    match found.pop() {
        Some(p) => p,
        None => panic!(
            "PostgreSQL's {name} is not installed under /usr/lib/postgresql/*/bin: the PostgreSQL tests need a real \
             server; install it with `cargo xtask setup` (Debian's postgresql package)"
        ),
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

/// `cmd` as the unprivileged user when running as root.
fn command(program: PathBuf) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = tempfile::Builder::new().prefix("pg").tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::write(dir.path().join("pw"), PASSWORD).unwrap();
        if is_root() {
            let ok = Command::new("chown").arg("-R").arg("nobody").arg(dir.path()).status().unwrap().success();
            assert!(ok, "chown of the server's folder to nobody failed");
        }
        let out = command(bin("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "layer", "--auth=scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C"])
            .arg(format!("--pwfile={}", dir.path().join("pw").display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut pg = Postgres { child: None, dir, port: free_port() };
        pg.launch();
        pg
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// A key=value connection string over the unix socket.
    pub fn url(&self) -> String {
        format!(
            "host={} port={} user=layer password={PASSWORD} dbname=postgres",
            self.socket_dir().display(),
            self.port
        )
    }

    /// A postgres:// URL over TCP.
    pub fn tcp_url(&self) -> String {
        format!("postgres://layer:{PASSWORD}@127.0.0.1:{}/postgres", self.port)
    }

    pub fn launch(&mut self) {
        let data = self.dir.path().join("data");
        let child = command(bin("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=100", "-c", "shared_buffers=16MB"])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("log")).map(Stdio::from).unwrap_or(Stdio::null()))
            .process_group(0)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let sock = self.dir.path().join(format!(".s.PGSQL.{}", self.port));
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
                panic!("postgres exited at start ({status}): {log}");
            }
            if sock.exists() && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                // Past the socket: accepting connections (not "starting up") is checked by the
                // clients' own retries; give recovery a moment.
                std::thread::sleep(Duration::from_millis(100));
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("postgres did not listen within 30 s");
    }

    /// The postmaster and its children (each backend calls setsid(): they are not in the
    /// postmaster's process group).
    fn pids(&self) -> Vec<u32> {
        let pid_file = self.dir.path().join("data").join("postmaster.pid");
        let Some(postmaster) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
        else {
            return Vec::new();
        };
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if ppid.and_then(|p| p.parse::<u32>().ok()) == Some(postmaster) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Sends `signal` (`STOP`, `CONT`, `KILL`) to every process of the server.
    pub fn signal(&self, signal: &str) {
        let pids = self.pids();
        assert!(!pids.is_empty(), "no server process to signal");
        let mut cmd = Command::new("kill");
        cmd.arg(format!("-{signal}")).arg("--");
        for pid in pids {
            cmd.arg(pid.to_string());
        }
        let _ = cmd.stderr(Stdio::null()).status();
        // `runuser` stops itself when its child stops: it must go on too, or it never reaps
        // the postmaster.
        if signal != "STOP" {
            if let Some(child) = &self.child {
                let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).stderr(Stdio::null()).status();
            }
        }
    }

    /// SIGKILL to every process of the server (postmaster and backends), then waits for them.
    pub fn kill(&mut self) {
        let pids = self.pids();
        if !pids.is_empty() {
            self.signal("KILL");
        }
        let Some(mut child) = self.child.take() else { return };
        if pids.is_empty() {
            let _ = child.kill();
        }
        // `runuser` reaps the postmaster and exits: no zombie keeps its pid (a restart would
        // take it for a live postmaster).
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        for pid in pids {
            while std::path::Path::new(&format!("/proc/{pid}/stat")).exists()
                && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z")
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
    }
}
