//! The jobs that keep the repository publishable and self-contained: the packaging check, the
//! minimum Rust version check, the default-features build, the clone-alone run and the fixture
//! regeneration. Kept apart from `main.rs`, which the other jobs share.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::{cargo, root, run, setup};

/// The crates published to crates.io, in dependency order (each after what it depends on).
pub const PUBLISHED: [&str; 12] = [
    "session-core",
    "session-testkit",
    "session-interop",
    "session-file",
    "session-string",
    "session-sql",
    "session-sqlite",
    "session-libsql",
    "session-redis",
    "session-postgres",
    "layer-client",
    "session-cli",
];

/// The checks `cargo xtask test` adds for publishing: the default-features build, the libSQL
/// backend's remote mode alone, the declared minimum Rust version, and `cargo package` of every
/// published crate.
pub fn release_checks(env: &[(&str, &str)]) -> Result<(), String> {
    // Every CI step above builds with --all-features; a feature-gated `use` missing its gate only
    // shows without them.
    cargo(&["check", "--workspace", "--all-targets"], env)?;
    // The libSQL remote mode alone: no session-sqlite, no C SQLite (DEPS.md, session-libsql).
    cargo(&["check", "-p", "session-libsql", "--no-default-features"], env)?;
    msrv()?;
    package(false)
}

/// `cargo package` of every published crate. Cargo resolves the workspace siblings from a local
/// overlay of the packages it has just built (so crates that depend on unpublished siblings
/// package before those are on crates.io). `verify` also builds each package from its tarball:
/// a file outside the crate that the library needs shows there.
pub fn package(verify: bool) -> Result<(), String> {
    let mut args = vec!["package", "--allow-dirty", "--locked"];
    if verify {
        forget_unpacked_siblings()?;
    } else {
        args.push("--no-verify");
    }
    for name in PUBLISHED {
        args.extend(["-p", name]);
    }
    let started = Instant::now();
    cargo(&args, &[])?;
    eprintln!("cargo package: {} crates in {:.0?}", PUBLISHED.len(), started.elapsed());
    Ok(())
}

/// Cargo unpacks each sibling it verifies against into `registry/src/<overlay>/<name>-<version>`
/// and, when that folder exists from an earlier run, reuses it without unpacking the new tarball:
/// a second `cargo xtask package` at the same version then verifies against the sources of the
/// first (a false failure when an API was added since, a false pass when one was removed).
/// It also keeps the build of such a copy: the unpacked files carry their tarball's old
/// modification times, so the compiled sibling of the earlier run looks fresh. Removing our
/// crates' unpacked copies and the fingerprints of their registry builds makes every run verify
/// what it just packaged.
fn forget_unpacked_siblings() -> Result<(), String> {
    forget_registry_builds()?;
    let manifest = read(&root().join("Cargo.toml"))?;
    let ours = manifest_field(&manifest, "version").ok_or("no version in the root Cargo.toml")?;
    let registries = match registry_src() {
        Ok(dirs) => dirs,
        // Nothing unpacked yet (a fresh CARGO_HOME): nothing stale either.
        Err(_) => return Ok(()),
    };
    for registry in registries {
        for name in PUBLISHED {
            let unpacked = registry.join(format!("{name}-{ours}"));
            if unpacked.is_dir() {
                std::fs::remove_dir_all(&unpacked)
                    .map_err(|e| format!("cannot remove the stale {}: {e}", unpacked.display()))?;
            }
        }
    }
    Ok(())
}

/// Removes the fingerprints of our crates built from an unpacked registry copy (their dep-info
/// names a path under `registry/src`), so cargo rebuilds them from the fresh copy.
fn forget_registry_builds() -> Result<(), String> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"));
    let profile = target.join("debug");
    let Ok(entries) = std::fs::read_dir(profile.join("deps")) else {
        return Ok(()); // nothing built yet
    };
    for entry in entries.filter_map(Result::ok) {
        let file = entry.file_name();
        let Some(stem) = file.to_str().and_then(|f| f.strip_suffix(".d")) else { continue };
        let Some(name) = PUBLISHED.iter().find(|n| {
            stem.strip_prefix(&n.replace('-', "_")).is_some_and(|rest| rest.starts_with('-') && rest.len() == 17)
        }) else {
            continue;
        };
        let from_registry = std::fs::read_to_string(entry.path()).is_ok_and(|d| d.contains("/registry/src/-"));
        if from_registry {
            let hash = &stem[stem.len() - 16..];
            let fingerprint = profile.join(".fingerprint").join(format!("{name}-{hash}"));
            if fingerprint.is_dir() {
                std::fs::remove_dir_all(&fingerprint)
                    .map_err(|e| format!("cannot remove the stale {}: {e}", fingerprint.display()))?;
            }
        }
    }
    Ok(())
}

/// The declared `rust-version` must be one the whole build can honour: no locked dependency may
/// declare a newer one. Our own code is held to it by clippy's `incompatible_msrv` (on in the
/// clippy step, which denies warnings): a standard library API newer than `rust-version` fails.
/// Only one toolchain is installed here, so this is the check instead of a build with 1.89.
pub fn msrv() -> Result<(), String> {
    let manifest = read(&root().join("Cargo.toml"))?;
    let ours = manifest_field(&manifest, "rust-version").ok_or("no rust-version in the root Cargo.toml")?;
    let ours_v = version(ours).ok_or_else(|| format!("rust-version {ours} is not a version"))?;
    let lock = read(&root().join("Cargo.lock"))?;
    let registry = registry_src()?;
    let (mut checked, mut too_new) = (0, Vec::new());
    for (name, ver) in locked_registry_packages(&lock) {
        let Some(manifest) =
            registry.iter().map(|r| r.join(format!("{name}-{ver}")).join("Cargo.toml")).find(|p| p.is_file())
        else {
            continue; // not built on this platform, so never downloaded
        };
        checked += 1;
        let text = read(&manifest)?;
        let declared = manifest_field(&text, "rust-version");
        if let Some(declared) = declared {
            if version(declared).is_some_and(|d| d > ours_v) {
                too_new.push(format!("{name} {ver} needs Rust {declared}"));
            }
        }
    }
    if checked == 0 {
        return Err("no dependency source found in the cargo registry; build first".to_owned());
    }
    eprintln!("rust-version {ours}: {checked} locked dependencies checked");
    if too_new.is_empty() {
        Ok(())
    } else {
        Err(format!("dependencies newer than rust-version {ours}: {}", too_new.join(", ")))
    }
}

/// The first `key = "value"` line of a manifest (the package's own fields come before any
/// table that could repeat the key).
fn manifest_field<'a>(manifest: &'a str, key: &str) -> Option<&'a str> {
    manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix(key)?.trim_start().strip_prefix('=').map(|v| v.trim().trim_matches('"')))
}

fn version(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

fn locked_registry_packages(lock: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for block in lock.split("[[package]]") {
        let field = |k: &str| {
            block.lines().find_map(|l| l.strip_prefix(&format!("{k} = "))).map(|v| v.trim_matches('"').to_owned())
        };
        if let (Some(name), Some(ver), Some(source)) = (field("name"), field("version"), field("source")) {
            if source.starts_with("registry+") {
                out.push((name, ver));
            }
        }
    }
    out
}

fn registry_src() -> Result<Vec<PathBuf>, String> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let src = home.join("registry").join("src");
    let entries = std::fs::read_dir(&src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    Ok(entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect())
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The test binaries that read repository files (fixtures, docs, READMEs), per package.
const CLONE_TESTS: [(&str, &[&str]); 6] = [
    ("session-string", &["fixtures", "detect", "api_id_above_i32"]),
    ("session-sqlite", &["foreign_import", "foreign_export"]),
    ("session-file", &["legacy_fixtures", "legacy_golden"]),
    ("session-cli", &["fixtures", "api_id_warning"]),
    ("layer-client", &["public_surface"]),
    ("xtask", &["repository"]),
];

/// `clone`: `git clone` of this repository's HEAD into an empty temporary folder (nothing beside
/// it), then the tests that read fixtures, docs and other repository files, run there. Fails if
/// any of them needs something outside the repository. Uncommitted changes are not in the clone.
pub fn clone_run() -> Result<(), String> {
    let tools = setup()?;
    let base = std::env::temp_dir().join(format!("layer-clone-{}", std::process::id()));
    if base.exists() {
        std::fs::remove_dir_all(&base).map_err(|e| format!("cannot clear {}: {e}", base.display()))?;
    }
    std::fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
    let repo = base.join("repo");
    let started = Instant::now();
    let result = (|| {
        run(Command::new("git").arg("clone").arg("--quiet").arg("--no-local").arg(root()).arg(&repo))?;
        // Its own target dir: cargo's build hashes do not depend on where a workspace lives, so
        // a shared target dir hands the clone test binaries built here, whose
        // `env!("CARGO_MANIFEST_DIR")` still points into this checkout (seen: they read a
        // deleted clone's paths). The price is a full build.
        let target = base.join("target");
        let mut failed = Vec::new();
        for (package, tests) in CLONE_TESTS {
            let mut test = Command::new(env!("CARGO"));
            test.current_dir(&repo).env("CARGO_TARGET_DIR", &target).env("LAYER_TOOLS", &tools).args([
                "test",
                "--locked",
                "--all-features",
                "-p",
                package,
            ]);
            for t in tests {
                test.args(["--test", t]);
            }
            if let Err(e) = run(&mut test) {
                failed.push(e);
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("\n"))
        }
    })();
    let elapsed = started.elapsed();
    // The clone and its build go whatever the outcome.
    let _ = std::fs::remove_dir_all(&base);
    result?;
    eprintln!("clone alone: the fixture-reading tests pass in a bare clone ({elapsed:.0?}, build included)");
    Ok(())
}

/// Python libraries: (venv under the tools dir, generator script, its argument).
const PYTHON_GENERATORS: [(&str, &str, &str); 4] = [
    ("venv-telethon", "telethon_family.py", "telethon"),
    ("venv-pyrogram", "pyrogram_family.py", "pyrogram"),
    ("venv-kurigram", "pyrogram_family.py", "kurigram"),
    ("venv-pyrofork", "pyrogram_family.py", "pyrofork"),
];

/// `fixtures [--write]`: regenerates the artifacts the real libraries can write again into
/// `target/fixtures-new`, each `.expected.json` from the library reading its own artifact back,
/// and compares them by value with `fixtures/` (`fixtures/generate/compare.py`). The libraries
/// stamp clocks into their files (and some write in hash-map order), so the committed files stay
/// byte-identical unless `--write` replaces them with the new ones.
pub fn fixtures(args: &[&str]) -> Result<(), String> {
    let write = args.contains(&"--write");
    let tools = setup()?;
    let out = root().join("target").join("fixtures-new");
    if out.exists() {
        std::fs::remove_dir_all(&out).map_err(|e| format!("cannot clear {}: {e}", out.display()))?;
    }
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let scripts = root().join("fixtures").join("generate");
    for (venv, script, lib) in PYTHON_GENERATORS {
        let python = tools.join(venv).join("bin").join("python");
        run(Command::new(python).arg(scripts.join(script)).arg(lib).arg(&out))?;
    }
    run(Command::new("node").arg(scripts.join("node_family.mjs")).arg(tools.join("node")).arg(&out))?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let compared = run(Command::new(&python).arg(scripts.join("compare.py")).arg(root().join("fixtures")).arg(&out));
    if write {
        copy_tree(&out, &root().join("fixtures"))?;
        eprintln!("fixtures: the regenerated artifacts replace the committed ones");
        return Ok(());
    }
    compared.map_err(|e| {
        format!(
            "{e}\nthe libraries' artifacts differ from fixtures/ (`cargo xtask fixtures --write` takes the new ones)"
        )
    })
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let entries = std::fs::read_dir(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", from.display()))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)
                .map_err(|e| format!("cannot copy {} to {}: {e}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}
