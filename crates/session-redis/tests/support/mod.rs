//! A real `redis-server` per test (or per test binary): started in a temporary folder with a
//! known configuration, on a unix socket (or 127.0.0.1 with a free port), killed when dropped.
//! A missing `redis-server` fails the test with the reason; it never passes.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the server keeps data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// `appendonly yes`, `appendfsync always`: nothing acknowledged is lost.
    Durable,
    /// `appendonly no`, `save ""`: nothing on disk.
    Volatile,
}

/// What to start.
#[derive(Clone, Debug)]
pub struct Config {
    pub persistence: Persistence,
    pub password: Option<String>,
    pub tcp: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { persistence: Persistence::Durable, password: None, tcp: false }
    }
}

pub struct Redis {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub port: u16,
}

fn binary() -> &'static str {
    "redis-server"
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Redis {
    pub fn start(config: Config) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let port = if config.tcp { free_port() } else { 0 };
        let mut r = Redis { child: None, dir, config, port };
        r.launch();
        r
    }

    pub fn durable() -> Redis {
        Redis::start(Config::default())
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    pub fn url(&self) -> String {
        if self.config.tcp {
            match &self.config.password {
                Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.port),
                None => format!("redis://127.0.0.1:{}", self.port),
            }
        } else {
            match &self.config.password {
                Some(pw) => format!("redis+unix://{}?pass={pw}", self.socket().display()),
                None => format!("redis+unix://{}", self.socket().display()),
            }
        }
    }

    fn write_config(&self) -> PathBuf {
        let d = self.dir.path();
        let mut conf = format!(
            "port {}\nbind 127.0.0.1\nunixsocket {}\nunixsocketperm 700\ndir {}\nlogfile {}\ndaemonize no\n",
            self.port,
            self.socket().display(),
            d.display(),
            d.join("redis.log").display(),
        );
        match self.config.persistence {
            Persistence::Durable => conf.push_str("appendonly yes\nappendfsync always\nsave \"\"\n"),
            Persistence::Volatile => conf.push_str("appendonly no\nsave \"\"\n"),
        }
        if let Some(pw) = &self.config.password {
            conf.push_str(&format!("requirepass {pw}\n"));
        }
        let path = d.join("redis.conf");
        std::fs::write(&path, conf).unwrap();
        path
    }

    fn launch(&mut self) {
        let conf = self.write_config();
        let _ = std::fs::remove_file(self.socket());
        let child = match Command::new(binary()).arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn() {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot start redis-server ({e}): the Redis tests need a real server; \
                 install it with `cargo xtask setup` (Debian's redis-server package)"
            ),
        };
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
                panic!("redis-server exited at start ({status}): {log}");
            }
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not answer PING within 20 s");
    }

    /// PING over the socket (with AUTH when a password is set); true on +PONG (not -LOADING).
    fn ping(&self) -> bool {
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(self.socket()) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut req = Vec::new();
        if let Some(pw) = &self.config.password {
            req.extend_from_slice(format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{pw}\r\n", pw.len()).as_bytes());
        }
        req.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        if s.write_all(&req).is_err() {
            return false;
        }
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.ends_with(b"\r\n") && (got.windows(5).any(|w| w == b"+PONG") || got.starts_with(b"-")) {
                break;
            }
        }
        got.windows(5).any(|w| w == b"+PONG")
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same folder (its AOF) and address.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGSTOP / SIGCONT: a frozen server.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().unwrap();
        assert!(status.success(), "kill -{sig} failed");
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-CONT").arg(c.id().to_string()).status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
