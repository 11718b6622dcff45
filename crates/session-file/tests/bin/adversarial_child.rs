//! The child process of `tests/adversarial.rs`, a program of its own: a test that played a
//! child's part when an environment variable was set passed, doing nothing, in every normal run.
//!
//! `session-file-adversarial-child MODE PATH [START_AT]`:
//! - `try`: tries to open PATH and prints `opened`, `locked PID` or `error ...`.
//! - `race`: at START_AT (ns since the epoch) races for `RACES` fresh locks in turn (PATH is their
//!   prefix), printing `race I owner PID` or `race I <outcome>` for each, then `done`; holds what
//!   it won until stdin closes.
//! - `hold`: opens PATH, prints `holding PID` and holds the lock until stdin closes.

#[path = "adversarial_shared.rs"]
mod shared;

use std::io::Write;
use std::path::{Path, PathBuf};

use session_file::BinaryFileBackend;
use shared::{now_nanos, outcome, RACES};

/// The file of race `i` (PATH is the prefix).
fn race_path(prefix: &Path, i: usize) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(format!("-{i}.session"));
    PathBuf::from(name)
}

/// Spins until the wall clock reaches `at` (ns since the epoch), so that racing processes
/// started milliseconds apart contend within microseconds.
fn wait_until(at: u128) {
    while now_nanos() < at {
        std::hint::spin_loop();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().expect("mode");
    let path = PathBuf::from(args.next().expect("path"));
    let start_at = args.next();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        match mode.as_str() {
            // Try to open; say what happened.
            "try" => println!("{}", outcome(BinaryFileBackend::open(&path).await)),
            // Race for RACES fresh locks in turn, starting at one instant (racing children run
            // in near lockstep); hold what was won until stdin closes.
            "race" => {
                wait_until(start_at.expect("start instant").parse().expect("nanoseconds"));
                let mut won = Vec::new();
                for i in 0..RACES {
                    match BinaryFileBackend::open(race_path(&path, i)).await {
                        Ok(backend) => {
                            println!("race {i} owner {}", std::process::id());
                            won.push(backend);
                        }
                        other => println!("race {i} {}", outcome(other)),
                    }
                }
                println!("done");
                std::io::stdout().flush().expect("flush");
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
                drop(won);
            }
            // Hold the lock until stdin closes.
            "hold" => {
                let backend = BinaryFileBackend::open(&path).await.expect("child open");
                println!("holding {}", std::process::id());
                std::io::stdout().flush().expect("flush");
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
                drop(backend);
            }
            other => panic!("unknown child mode {other}"),
        }
    });
}
