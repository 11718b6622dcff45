//! Load of 1,000,000 cached peers: time, and resident memory per peer.
//!
//! `bench-memory` prepares each backend's store in a child process, then loads it in a fresh
//! child process and reads `VmRSS` from `/proc/self/status` before and after, so that nothing
//! of the preparation is counted. Results go to `<out>/facts/memory.json` for the report.
//!
//! The figure is what a client holds after startup: the backend (with whatever it keeps, e.g.
//! the string backend's string) plus the loaded session, and whatever the allocator kept from the
//! load's temporary buffers (RSS does not shrink when small blocks are freed).

use std::process::Command;
use std::time::Instant;

use session_bench::{out_dir, peak_rss_bytes, rss_bytes, session, write_fact};
use session_core::{SessionBackend, SessionData};

const PEERS: usize = 1_000_000;
const BACKENDS: [&str; 3] = ["file", "sqlite", "string"];

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), session_core::BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (backend, path) = (args.get(1).cloned().unwrap_or_default(), args.get(2).cloned().unwrap_or_default());
    match args.first().map(String::as_str) {
        Some("prepare") => prepare(&backend, &path).await,
        Some("measure") => measure(&backend, &path).await,
        // The parent only starts children and waits for them: off the runtime's thread.
        _ => tokio::task::spawn_blocking(parent).await?,
    }
}

fn parent() -> Result<(), session_core::BoxError> {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let mut results = Vec::new();
    for backend in BACKENDS {
        let path = dir.path().join(format!("{backend}.store"));
        let path = path.to_string_lossy().into_owned();
        let status = Command::new(&exe).args(["prepare", backend, &path]).status()?;
        if !status.success() {
            return Err(format!("preparing {backend} failed: {status}").into());
        }
        let out = Command::new(&exe).args(["measure", backend, &path]).output()?;
        if !out.status.success() {
            return Err(format!("measuring {backend} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        eprintln!("{v}");
        results.push(v);
    }
    let fact = serde_json::json!({
        "peers": PEERS,
        "method": "VmRSS delta from /proc/self/status in a fresh process, around open + load_session",
        "backends": results,
    });
    write_fact("memory", &fact)?;
    eprintln!("written to {}", out_dir().join("facts/memory.json").display());
    Ok(())
}

async fn prepare(backend: &str, path: &str) -> Result<(), session_core::BoxError> {
    let data = session(PEERS);
    match backend {
        "file" => session_file::BinaryFileBackend::open(path).await?.save_session(&data).await?,
        "sqlite" => session_sqlite::SqliteBackend::open(path).await?.save_session(&data).await?,
        "string" => std::fs::write(path, session_string::encode_full(&data)?)?,
        other => return Err(format!("unknown backend {other}").into()),
    }
    Ok(())
}

async fn measure(backend: &str, path: &str) -> Result<(), session_core::BoxError> {
    // The string is read before the baseline: the caller already holds it (an env var).
    let string = if backend == "string" { std::fs::read_to_string(path)? } else { String::new() };
    let before = rss_bytes().ok_or("no VmRSS")?;
    let start = Instant::now();
    let (b, data): (Box<dyn SessionBackend>, Option<SessionData>) = match backend {
        "file" => {
            let b = session_file::BinaryFileBackend::open(path).await?;
            let d = b.load_session().await?;
            (Box::new(b), d)
        }
        "sqlite" => {
            let b = session_sqlite::SqliteBackend::open(path).await?;
            let d = b.load_session().await?;
            (Box::new(b), d)
        }
        "string" => {
            let b = session_string::StringSessionBackend::new(&string);
            let d = b.load_session().await?;
            (Box::new(b), d)
        }
        other => return Err(format!("unknown backend {other}").into()),
    };
    let secs = start.elapsed().as_secs_f64();
    let with_backend = rss_bytes().ok_or("no VmRSS")?;
    let peers = data.as_ref().map_or(0, |d| d.peers.len());
    let per_peer = |after: u64| after.saturating_sub(before) as f64 / peers.max(1) as f64;
    let v = serde_json::json!({
        "backend": backend,
        "peers": peers,
        "load_seconds": secs,
        "rss_before": before,
        "rss_after": with_backend,
        "rss_bytes_per_peer": per_peer(with_backend),
        "peak_rss": peak_rss_bytes(),
    });
    drop((b, data));
    println!("{v}");
    Ok(())
}
