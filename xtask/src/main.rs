//! `cargo xtask <job>`: the repository's tasks, with no dependencies beyond std.
//!
//! - `test`: everything CI runs (format check, clippy with `-D warnings`, every test with every
//!   feature, doc tests), after installing what the tests need.
//! - `demo`: the README's first command.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let job = args.first().map(String::as_str).unwrap_or("help");
    let result = match job {
        "test" => test(),
        "demo" => cargo(&["run", "--quiet", "-p", "layer-examples", "--example", "quickstart"]),
        _ => {
            eprintln!("usage: cargo xtask <test|demo>");
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

fn cargo(args: &[&str]) -> Result<(), String> {
    run(Command::new(env!("CARGO")).args(args))
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
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"])?;
    cargo(&["test", "--workspace", "--all-features", "--no-fail-fast"])?;
    cargo(&["run", "--quiet", "-p", "layer-examples", "--example", "custom_backend"])?;
    Ok(())
}
