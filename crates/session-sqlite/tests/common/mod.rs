//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The read-only fixtures written by the real libraries.
pub fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures"))
}

/// Where `cargo xtask setup` installs the external tools.
pub fn tools() -> PathBuf {
    std::env::var_os("LAYER_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/tools")))
}

/// The Python interpreter of one of the tool virtualenvs; fails (never skips) when missing.
pub fn python(venv: &str) -> PathBuf {
    let python = tools().join(venv).join("bin").join("python");
    assert!(
        python.is_file(),
        "{} is missing: run `cargo xtask setup` to install the real libraries the interop tests use",
        python.display()
    );
    python
}

/// Runs a checked-in Python script with a venv's interpreter and parses the JSON it prints.
pub fn run_python(venv: &str, script: &str, args: &[String]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("py").join(script);
    let output = Command::new(python(venv))
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{venv} {} failed ({}):\n{}\n{stdout}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let line =
        stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON from {venv}: {stdout}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON from {venv}: {e}: {line}"))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Re-executes this test binary running only `test` (with `--nocapture`), with `env` set.
pub fn child(test: &str, env: &[(&str, &str)]) -> Command {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The text after `marker` in a line of a child's output. libtest prints `test <name> ... `
/// without a newline before the test's own output, so a marker may not start the line.
pub fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|i| line[i + marker.len()..].trim())
}
