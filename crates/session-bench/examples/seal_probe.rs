//! Where the time of sealing goes: one seal and one open of a peer-row-sized value, its parts
//! (a nonce from the operating system, base64), and a 1,000-peer flush and one new peer on
//! SQLite and the file backend, sealed beside plain in the same run (alternating rounds, best
//! of each, so that a loaded machine skews both sides alike).
//!
//! `cargo run --release -p session-bench --example seal_probe [rounds] [only this backend]`

use std::time::{Duration, Instant};

use base64::Engine as _;
use session_core::seal::{self, Binding};
use session_core::{Change, Keyring, SealingKey, SessionBackend};

/// Nanoseconds per call of `f`, best of `rounds` rounds of `iters` calls.
fn per_call(rounds: usize, iters: u32, mut f: impl FnMut()) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        best = best.min(t.elapsed());
    }
    best.as_nanos() as f64 / f64::from(iters)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), session_core::BoxError> {
    let rounds: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(7);
    // `only`: run one backend's rounds (by name), for a profiler.
    let only = std::env::args().nth(2);
    if std::env::args().nth(3).as_deref() == Some("load") {
        return load(rounds, only.as_deref()).await;
    }
    let key = SealingKey::from_bytes([7; 32]);
    let binding = Binding::new("sql-row").session("").part("peers").row([0u8; 18]);
    let plain = [0x5Au8; 64];
    let sealed = seal::seal(&key, &binding, &plain)?;
    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
    let text = b64.encode(&sealed);
    println!("value {} bytes, sealed {} bytes, base64 {} chars", plain.len(), sealed.len(), text.len());
    let iters = if only.is_some() { 1 } else { 20_000 };
    let seal_ns = per_call(rounds, iters, || {
        std::hint::black_box(seal::seal(&key, &binding, std::hint::black_box(&plain)).expect("seal"));
    });
    let open_ns = per_call(rounds, iters, || {
        std::hint::black_box(seal::open_with(&key, "p", &binding, std::hint::black_box(&sealed)).expect("open"));
    });
    let mut nonce = [0u8; 24];
    let nonce_ns = per_call(rounds, iters, || {
        seal::random_bytes(std::hint::black_box(&mut nonce));
    });
    let binding_ns = per_call(rounds, iters, || {
        std::hint::black_box(Binding::new("sql-row").session("").part("peers").row(std::hint::black_box([0u8; 18])));
    });
    let enc_ns = per_call(rounds, iters, || {
        std::hint::black_box(b64.encode(std::hint::black_box(&sealed)));
    });
    let dec_ns = per_call(rounds, iters, || {
        std::hint::black_box(b64.decode(std::hint::black_box(&text)).expect("base64"));
    });
    println!(
        "per call: seal {seal_ns:.0} ns, open {open_ns:.0} ns, OS nonce {nonce_ns:.0} ns, binding {binding_ns:.0} ns, base64 encode {enc_ns:.0} ns, decode {dec_ns:.0} ns"
    );

    let dir = tempfile::tempdir()?;
    let n = 1_000;
    let data = session_bench::session(n);
    let keys = Keyring::new(SealingKey::from_bytes([9; 32]));
    let sqlite = session_sqlite::SqliteBackend::open(dir.path().join("plain.db")).await?;
    let sqlite_sealed =
        session_sqlite::SqliteBackend::open_with_key(dir.path().join("sealed.db"), keys.clone()).await?;
    let file = session_file::BinaryFileBackend::open(dir.path().join("plain.session")).await?;
    let file_sealed = session_file::BinaryFileBackend::open_with_key(dir.path().join("sealed.session"), keys).await?;
    let backends: [(&str, &dyn SessionBackend); 4] =
        [("sqlite", &sqlite), ("sqlite_sealed", &sqlite_sealed), ("file", &file), ("file_sealed", &file_sealed)];
    let mut fulls = Vec::new();
    for (_, b) in &backends {
        b.save_session(&data).await?;
        fulls.push(data.clone());
    }
    let mut flush = [Duration::MAX; 4];
    let mut one = [Duration::MAX; 4];
    let mut counter = 0u64;
    for _ in 0..rounds {
        for (i, (name, b)) in backends.iter().enumerate() {
            if only.as_deref().is_some_and(|o| o != *name) {
                continue;
            }
            let full = &mut fulls[i];
            let add: Vec<Change> =
                (counter..counter + 1000).map(|k| Change::UpsertPeer(session_bench::new_peer(k))).collect();
            let t = Instant::now();
            full.apply_all(&add);
            b.persist(&add, full).await?;
            flush[i] = flush[i].min(t.elapsed());
            let remove: Vec<Change> =
                (counter..counter + 1000).map(|k| Change::RemovePeer(session_bench::new_peer(k).key())).collect();
            full.apply_all(&remove);
            b.persist(&remove, full).await?;
            let t = Instant::now();
            for k in counter..counter + 50 {
                let c = [Change::UpsertPeer(session_bench::new_peer(k))];
                full.apply_all(&c);
                b.persist(&c, full).await?;
            }
            one[i] = one[i].min(t.elapsed() / 50);
            let remove: Vec<Change> =
                (counter..counter + 50).map(|k| Change::RemovePeer(session_bench::new_peer(k).key())).collect();
            full.apply_all(&remove);
            b.persist(&remove, full).await?;
        }
        counter += 1000;
    }
    for (i, (name, _)) in backends.iter().enumerate() {
        println!("{name}: 1,000-peer flush {:?}, one new peer {:?}", flush[i], one[i]);
    }
    for (plain, sealed) in [(0, 1), (2, 3)] {
        println!(
            "{} sealed/plain: flush {:.2}x, one peer {:.2}x",
            backends[plain].0,
            flush[sealed].as_secs_f64() / flush[plain].as_secs_f64(),
            one[sealed].as_secs_f64() / one[plain].as_secs_f64()
        );
    }
    Ok(())
}

/// `seal_probe <rounds> <backend or all> load`: open and load 100,000 peers, sealed beside
/// plain, alternating.
async fn load(rounds: usize, only: Option<&str>) -> Result<(), session_core::BoxError> {
    let dir = tempfile::tempdir()?;
    let data = session_bench::session(100_000);
    let keys = Keyring::new(SealingKey::from_bytes([9; 32]));
    let names = ["sqlite", "sqlite_sealed", "file", "file_sealed"];
    let open = async |name: &str| -> Result<Box<dyn SessionBackend>, session_core::BoxError> {
        let path = dir.path().join(name);
        let b: Box<dyn SessionBackend> = match name {
            "sqlite" => Box::new(session_sqlite::SqliteBackend::open(path).await?),
            "sqlite_sealed" => Box::new(session_sqlite::SqliteBackend::open_with_key(path, keys.clone()).await?),
            "file" => Box::new(session_file::BinaryFileBackend::open(path).await?),
            _ => Box::new(session_file::BinaryFileBackend::open_with_key(path, keys.clone()).await?),
        };
        Ok(b)
    };
    for name in names {
        open(name).await?.save_session(&data).await?;
    }
    let mut best = [Duration::MAX; 4];
    for _ in 0..rounds {
        for (i, name) in names.iter().enumerate() {
            if only.is_some_and(|o| o != "all" && o != *name) {
                continue;
            }
            let t = Instant::now();
            let b = open(name).await?;
            let loaded = b.load_session().await?.map_or(0, |d| d.peers.len());
            best[i] = best[i].min(t.elapsed());
            assert_eq!(loaded, 100_000);
        }
    }
    for (i, name) in names.iter().enumerate() {
        println!("{name}: open + load of 100,000 peers {:?}", best[i]);
    }
    Ok(())
}
