//! The SQLite rows of issue 19 in a loop, for profilers and for a quick sealed/plain ratio:
//! the bench's 1,000-peer flush (1,000 new peers upserted, timed; removed again, untimed), one
//! new peer at a time, or open + load, on `plain`, `sealed` or `both` backends (alternating
//! rounds), in a folder given (`/dev/shm` takes the fsync out) or a temporary one.
//!
//! `cargo run --release -p session-bench --example sqlite_probe -- <flush|one|load> <peers> <rounds> [plain|sealed|both] [folder]`
//!
//! Prints the median and the quartiles of each side's times and the median of the per-round
//! ratios (each round times both sides back to back).

use std::path::Path;
use std::time::{Duration, Instant};

use session_core::{Change, Keyring, SealingKey, SessionBackend, SessionData};
use session_sqlite::SqliteBackend;

async fn open(path: &Path, sealed: bool) -> Result<SqliteBackend, session_core::BoxError> {
    Ok(if sealed {
        SqliteBackend::open_with_key(path, Keyring::new(SealingKey::from_bytes([0x42; 32]))).await?
    } else {
        SqliteBackend::open(path).await?
    })
}

/// One timed operation on `b` (holding `full`), `k` counting the new peers used so far.
async fn step(
    op: &str,
    b: &mut Option<SqliteBackend>,
    path: &Path,
    sealed: bool,
    full: &mut SessionData,
    k: u64,
) -> Result<Duration, session_core::BoxError> {
    let backend = b.as_ref().ok_or("no backend")?;
    Ok(match op {
        "flush" => {
            let add: Vec<Change> = (k..k + 1000).map(|i| Change::UpsertPeer(session_bench::new_peer(i))).collect();
            let t = Instant::now();
            full.apply_all(&add);
            backend.persist(&add, full).await?;
            let e = t.elapsed();
            let remove: Vec<Change> =
                (k..k + 1000).map(|i| Change::RemovePeer(session_bench::new_peer(i).key())).collect();
            full.apply_all(&remove);
            backend.persist(&remove, full).await?;
            e
        }
        "one" => {
            let t = Instant::now();
            for i in k..k + 100 {
                let c = [Change::UpsertPeer(session_bench::new_peer(i))];
                full.apply_all(&c);
                backend.persist(&c, full).await?;
            }
            let e = t.elapsed() / 100;
            let remove: Vec<Change> =
                (k..k + 100).map(|i| Change::RemovePeer(session_bench::new_peer(i).key())).collect();
            full.apply_all(&remove);
            backend.persist(&remove, full).await?;
            e
        }
        _ => {
            drop(b.take());
            let t = Instant::now();
            let backend = open(path, sealed).await?;
            let loaded = backend.load_session().await?.map_or(0, |d| d.peers.len());
            let e = t.elapsed();
            if loaded != full.peers.len() {
                return Err("a load lost peers".into());
            }
            *b = Some(backend);
            e
        }
    })
}

/// (first quartile, median, third quartile), as the report computes them.
fn quartiles(v: &[f64]) -> (f64, f64, f64) {
    session_bench::report::PairedRatio::of(v).map_or((f64::NAN, f64::NAN, f64::NAN), |p| (p.q1, p.median, p.q3))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), session_core::BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let op = args.first().cloned().unwrap_or_else(|| "flush".into());
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let which = args.get(3).cloned().unwrap_or_else(|| "both".into());
    let temp = tempfile::tempdir_in(args.get(4).map_or_else(std::env::temp_dir, Into::into))?;
    let sides: Vec<bool> = match which.as_str() {
        "plain" => vec![false],
        "sealed" => vec![true],
        _ => vec![false, true],
    };
    let data = session_bench::session(n);
    let mut held = Vec::new();
    for &sealed in &sides {
        let path = temp.path().join(if sealed { "sealed.db" } else { "plain.db" });
        let b = open(&path, sealed).await?;
        b.save_session(&data).await?;
        held.push((Some(b), path, sealed, data.clone(), Vec::new()));
    }
    let mut ratios = Vec::new();
    let mut k = 0u64;
    for round in 0..rounds {
        let mut times = [0.0f64; 2];
        for j in 0..held.len() {
            // Alternate which side goes first.
            let i = if round % 2 == 0 { j } else { held.len() - 1 - j };
            let (b, path, sealed, full, ts) = &mut held[i];
            let e = step(&op, b, path, *sealed, full, k).await?.as_secs_f64() * 1e6;
            ts.push(e);
            times[i] = e;
        }
        k += 1000;
        if held.len() == 2 {
            ratios.push(times[1] / times[0]);
        }
    }
    for (_, _, sealed, _, ts) in &held {
        let (q1, m, q3) = quartiles(ts);
        println!(
            "{op} {n} {}: median {m:.1} µs (quartiles {q1:.1} / {q3:.1}) over {rounds} rounds",
            if *sealed { "sealed" } else { "plain" }
        );
    }
    if !ratios.is_empty() {
        let (q1, m, q3) = quartiles(&ratios);
        println!("sealed / plain per round: median {m:.3} (quartiles {q1:.3} / {q3:.3})");
    }
    Ok(())
}
