//! Repository rules that plain `cargo test` enforces: every dependency of every crate is
//! explained in DEPS.md, and no library code blocks the async runtime (binaries' `main` may enter
//! a runtime they own).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn manifests() -> Vec<PathBuf> {
    let mut out = vec![root().join("examples/Cargo.toml"), root().join("xtask/Cargo.toml")];
    for entry in std::fs::read_dir(root().join("crates")).expect("crates/") {
        let manifest = entry.expect("entry").path().join("Cargo.toml");
        if manifest.is_file() {
            out.push(manifest);
        }
    }
    out
}

/// Dependency names declared in a manifest's dependency tables.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line.ends_with("dependencies]");
            continue;
        }
        if !in_deps || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split(['=', '.']).next().unwrap_or_default().trim();
        if !name.is_empty() {
            names.push(name.to_owned());
        }
    }
    names
}

#[test]
fn every_dependency_is_explained_in_deps_md() {
    let deps_md = std::fs::read_to_string(root().join("DEPS.md")).expect("DEPS.md");
    let mut missing = Vec::new();
    for manifest in manifests() {
        let text = std::fs::read_to_string(&manifest).expect("manifest");
        for name in dependencies(&text) {
            if !deps_md.contains(&format!("`{name}`")) {
                missing.push(format!("{name} ({})", manifest.display()));
            }
        }
    }
    assert!(missing.is_empty(), "dependencies without a line in DEPS.md: {missing:#?}");
}

#[test]
fn library_code_never_blocks_the_runtime() {
    let mut offenders = Vec::new();
    for manifest in manifests() {
        let src = manifest.parent().expect("crate dir").join("src");
        let mut stack = vec![src];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries {
                let path = entry.expect("entry").path();
                // A binary's `main` may own a runtime and enter it; library code never may.
                if path.is_dir() && !path.ends_with("bin") {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("main.rs") {
                    let text = std::fs::read_to_string(&path).expect("source");
                    for (i, line) in text.lines().enumerate() {
                        if line.contains("block_on(") || line.contains(".blocking_lock()") {
                            offenders.push(format!("{}:{}", path.display(), i + 1));
                        }
                    }
                }
            }
        }
    }
    assert!(offenders.is_empty(), "blocking calls in library code: {offenders:#?}");
}
