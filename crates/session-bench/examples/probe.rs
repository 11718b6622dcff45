//! A loop over one operation, for profilers (`perf record target/release/examples/probe ...`).
//!
//! `probe <file-load|sqlite-load|string-roundtrip|file-persist> <peers> <repeats>`

use std::time::Instant;

use session_core::{Change, SessionBackend};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), session_core::BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let op = args.first().map(String::as_str).unwrap_or("file-load");
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let repeats: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir()?;
    let data = session_bench::session(n);
    {
        let start = Instant::now();
        match op {
            "file-load" => {
                let path = dir.path().join("s.session");
                session_file::BinaryFileBackend::open(&path).await?.save_session(&data).await?;
                let start = Instant::now();
                for _ in 0..repeats {
                    let b = session_file::BinaryFileBackend::open(&path).await?;
                    let t = Instant::now();
                    let d = b.load_session().await?;
                    eprintln!("open {:?}, load_session {:?}", t - start, t.elapsed());
                    assert_eq!(d.map(|d| d.peers.len()), Some(n));
                }
            }
            "sqlite-load" => {
                let path = dir.path().join("s.db");
                session_sqlite::SqliteBackend::open(&path).await?.save_session(&data).await?;
                for _ in 0..repeats {
                    let b = session_sqlite::SqliteBackend::open(&path).await?;
                    assert_eq!(b.load_session().await?.map(|d| d.peers.len()), Some(n));
                }
            }
            "string-roundtrip" => {
                for _ in 0..repeats {
                    let t = Instant::now();
                    let s = session_string::encode_full(&data)?;
                    let e = t.elapsed();
                    let d = session_string::decode(&s)?;
                    eprintln!("encode {e:?}, decode {:?}, {} chars", t.elapsed() - e, s.len());
                    assert_eq!(d.peers.len(), n);
                }
            }
            "file-persist" => {
                let b = session_file::BinaryFileBackend::open(dir.path().join("p.session")).await?;
                let mut full = data.clone();
                b.save_session(&full).await?;
                for k in 0..repeats as u64 {
                    let c = [Change::UpsertPeer(session_bench::new_peer(k))];
                    full.apply_all(&c);
                    b.persist(&c, &full).await?;
                }
            }
            other => return Err(format!("unknown op {other}").into()),
        }
        eprintln!("{op} x{repeats}: {:?}", start.elapsed());
    }
    Ok(())
}
