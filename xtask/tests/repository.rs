//! The repository stands alone: no file reads or links anything outside it, the published
//! crates' sources include nothing from outside their own folder (so `cargo package` ships what
//! they need), and each backend's README example needs that backend alone.
//!
//! `cargo xtask clone` runs the fixture-reading tests in a real clone with nothing beside it;
//! this is the cheap check that runs with every `cargo test`.

use std::path::{Component, Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is one level below the root").to_path_buf()
}

/// Text files of the repository that could name a path: sources, manifests, docs, workflows,
/// generator scripts. Build output, installed tools and git's own files are not the repository.
fn files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if path.is_dir() {
                if !matches!(name, "target" | ".git" | "node_modules" | "__pycache__") {
                    stack.push(path);
                }
            } else if ["rs", "toml", "yml", "yaml", "md", "py", "mjs", "js", "sh", "json"]
                .iter()
                .any(|ext| path.extension().is_some_and(|e| e == *ext))
                && !name.ends_with(".expected.json")
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// `path` with `.` and `..` applied, or `None` if it climbs above the filesystem root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

/// The nearest folder at or above `file` holding a Cargo.toml (what `CARGO_MANIFEST_DIR` is).
fn manifest_dir(file: &Path) -> PathBuf {
    let mut dir = file.parent().expect("file in a folder").to_path_buf();
    loop {
        if dir.join("Cargo.toml").is_file() || dir == root() {
            return dir;
        }
        if !dir.pop() {
            return root();
        }
    }
}

/// Every relative path in `text` that climbs with `..`, and whether it hangs off the crate's
/// folder: a leading `/` is how a path is appended to `CARGO_MANIFEST_DIR`. Other relative paths
/// (Markdown links, `include_str!`, manifests' `path =`) are relative to the file's folder.
fn climbing_paths(text: &str) -> Vec<(String, bool)> {
    let is_path = |c: char| c.is_ascii_alphanumeric() || "._/-%".contains(c);
    let mut out = Vec::new();
    let mut token = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if is_path(c) {
            token.push(c);
            continue;
        }
        let (rel, from_manifest) = match token.strip_prefix('/') {
            Some(t) if t.starts_with("..") => (t, true),
            _ => (token.as_str(), false),
        };
        // A bare `..` names no file (prose such as "a `..` path"); `a/..` and `../x` do.
        let climbs = rel.contains("../") || (rel.ends_with("..") && rel != "..");
        if !rel.starts_with('/') && climbs && !rel.contains("...") {
            out.push((rel.to_owned(), from_manifest));
        }
        token.clear();
    }
    out
}

fn escapes(file: &Path, rel: &str, from_manifest: bool) -> bool {
    let base = if from_manifest { manifest_dir(file) } else { file.parent().expect("parent").to_path_buf() };
    let rel = rel.trim_end_matches(['.', '/']);
    let rel = if rel.is_empty() { ".." } else { rel };
    normalize(&base.join(rel)).is_none_or(|p| !p.starts_with(root()))
}

#[test]
fn no_file_names_a_path_outside_the_repository() {
    let all = files();
    assert!(all.len() > 50, "only {} files found under {}", all.len(), root().display());
    let mut bad = Vec::new();
    for file in &all {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        let shown = file.strip_prefix(root()).unwrap_or(file).display().to_string();
        for (rel, from_manifest) in climbing_paths(&text) {
            if escapes(file, &rel, from_manifest) {
                bad.push(format!("{shown}: {rel}"));
            }
        }
        // The old home of the fixtures and design notes, beside the checkout.
        for outside in ["shared/fixtures", "shared/DESIGN", "/work/shared"] {
            if text.contains(outside) && !shown.ends_with("repository.rs") {
                bad.push(format!("{shown}: names {outside}"));
            }
        }
    }
    assert!(bad.is_empty(), "paths that leave the repository:\n{}", bad.join("\n"));
}

/// `include_str!`/`include_bytes!` in a published crate's `src/` must stay inside the crate:
/// `cargo package` ships only the crate's folder, so anything else breaks the published build.
#[test]
fn published_sources_include_only_their_own_files() {
    let mut bad = Vec::new();
    for file in files() {
        let shown = file.strip_prefix(root()).unwrap_or(&file).display().to_string();
        if !(shown.starts_with("crates/") && shown.contains("/src/") && shown.ends_with(".rs")) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("source");
        for marker in ["include_str!(\"", "include_bytes!(\""] {
            for (at, _) in text.match_indices(marker) {
                let rest = &text[at + marker.len()..];
                let rel = &rest[..rest.find('"').unwrap_or(0)];
                let krate = manifest_dir(&file);
                let resolved = normalize(&file.parent().expect("parent").join(rel));
                if resolved.is_none_or(|p| !p.starts_with(&krate)) {
                    bad.push(format!("{shown}: {rel}"));
                }
            }
        }
    }
    assert!(bad.is_empty(), "published sources including files outside their crate:\n{}", bad.join("\n"));
}

/// The first example of each backend's README (a doc test of the crate) names only that crate:
/// `session_core` and its types come through the backend's re-exports.
#[test]
fn each_backend_readme_example_needs_that_backend_alone() {
    for krate in ["session-file", "session-string", "session-sqlite", "session-libsql"] {
        let readme = std::fs::read_to_string(root().join("crates").join(krate).join("README.md")).expect("README");
        let start = readme.find("```rust").unwrap_or_else(|| panic!("{krate}: no rust example"));
        let body = &readme[start..];
        let body = &body[..body[3..].find("```").map_or(body.len(), |e| e + 3)];
        let own = krate.replace('-', "_");
        let mut bad = Vec::new();
        for line in body.lines() {
            let code = line.trim_start_matches('#').trim();
            if let Some(path) = code.strip_prefix("use ") {
                if !(path.starts_with(&format!("{own}::")) || path.starts_with("std::")) {
                    bad.push(code.to_owned());
                }
            }
            // `session_core::` only as the backend's re-export (`<backend>::session_core::`).
            for (at, _) in code.match_indices("session_core::") {
                if !code[..at].ends_with(&format!("{own}::")) {
                    bad.push(code.to_owned());
                }
            }
        }
        assert!(bad.is_empty(), "{krate}'s README example names other crates: {bad:#?}");
    }
}

/// The scanner finds climbing paths in every form a file writes them, and leaves prose alone.
/// (The planted paths are built at run time: written out here, this file would fail the scan.)
#[test]
fn climbing_paths_are_found_and_prose_is_not() {
    let up = ["..", "..", ".."].join("/");
    let text = format!(
        r#"concat!(env!("CARGO_MANIFEST_DIR"), "/{up}/outside/x") see {up}/elsewhere/y, docs/{dots} and a `{dots}` path"#,
        dots = "..",
    );
    let found = climbing_paths(&text);
    let rels: Vec<&str> = found.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(rels, [format!("{up}/outside/x"), format!("{up}/elsewhere/y"), "docs/..".to_owned()]);
    assert!(found[0].1, "a path appended to CARGO_MANIFEST_DIR hangs off the crate");
    let readme = root().join("README.md");
    assert!(escapes(&readme, &format!("{up}/outside/x"), false));
    assert!(!escapes(&readme, "docs/..", false));
}
