//! Helpers shared by the CLI tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

/// The read-only fixtures of other libraries' sessions.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures");

/// A private copy of the whole fixtures folder (SQLite must never open the read-only originals).
pub fn copy_fixtures() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(Path::new(FIXTURES), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixtures") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
            let mut perms = std::fs::metadata(&target).expect("meta").permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&target, perms).expect("chmod");
        }
    }
}

/// Every artifact (with its expected values) under `root`.
pub fn artifacts(root: &Path) -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(root).expect("root").map(|e| e.expect("entry").path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    for dir in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).expect("dir").map(|e| e.expect("e").path()).collect();
        files.sort();
        for f in files {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if !name.ends_with(".expected.json") {
                continue;
            }
            let expected: Value = serde_json::from_str(&std::fs::read_to_string(&f).expect("read")).expect("json");
            let artifact = expected["artifact"].as_str().expect("artifact name").trim_end_matches('/');
            out.push((dir.join(artifact), expected));
        }
    }
    out
}

/// The tool.
pub fn tool() -> Command {
    Command::cargo_bin("layer-session").expect("binary built")
}

/// Runs the tool, returning (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = tool().args(args).output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `inspect --json --reveal-secrets`, which must succeed.
pub fn inspect(source: &str) -> Value {
    let (code, out, err) = run(&["inspect", "--json", "--reveal-secrets", source]);
    assert_eq!(code, 0, "inspect {source} failed: {err}");
    serde_json::from_str(&out).expect("inspect prints JSON")
}

/// A path as a `&str` (the temp dirs are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Differences between `a` and `b` in every field `a` has a value for (`null` in `a`: the
/// source format cannot hold the field, so anything in `b` is fine). Format names and the
/// source are ignored.
pub fn differences(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    const SKIP: [&str; 5] = ["source", "format", "format_name", "format_version", "warnings"];
    match a {
        Value::Null => {}
        Value::Object(map) => {
            for (k, v) in map {
                if SKIP.contains(&k.as_str()) {
                    continue;
                }
                differences(v, b.get(k).unwrap_or(&Value::Null), &format!("{path}.{k}"), out);
            }
        }
        Value::Array(items) => match b.as_array() {
            Some(other) if other.len() == items.len() => {
                for (i, (x, y)) in items.iter().zip(other).enumerate() {
                    differences(x, y, &format!("{path}[{i}]"), out);
                }
            }
            _ => out.push(format!("{path}: {} items, read back as {b}", items.len())),
        },
        _ => {
            if a != b {
                out.push(format!("{path}: {a} read back as {b}"));
            }
        }
    }
}
