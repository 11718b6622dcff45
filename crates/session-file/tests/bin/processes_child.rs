//! The child process of `tests/processes.rs`, a program of its own: a test that played a child's
//! part when an environment variable was set passed, doing nothing, in every normal run.
//!
//! `session-file-processes-child MODE PATH START`:
//! - `writer`: opens PATH and writes step after step from START on, printing `ack N` once the
//!   flush of step N returned (an acknowledged change), until it is killed.
//! - `owner`: the same (after `ready PID`), until a line or EOF on stdin; then `done`.
//! - `second`: tries to open PATH and prints `locked PID`, `opened` or `error ...`.
//! - `modes`: writes and saves PATH, prints the mode of every temporary file it made
//!   (`temp 600`) and where the copy of a damaged file was kept (`preserved PATH`).

#[path = "processes_steps.rs"]
mod steps;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use session_core::{Change, SessionBackend, SessionData, SessionError, UpdateStateChange};
use session_file::failpoint::Failpoints;
use session_file::BinaryFileBackend;
use steps::peer;

fn changes(i: u64) -> Vec<Change> {
    vec![
        Change::UpsertPeer(peer(i)),
        Change::UpdateState(UpdateStateChange::Primary { pts: i32::try_from(i).expect("pts"), date: 1, seq: 2 }),
    ]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().expect("mode");
    let path = PathBuf::from(args.next().expect("path"));
    let start: u64 = args.next().expect("start").parse().expect("start number");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        match mode.as_str() {
            "writer" | "owner" => {
                let stop = Arc::new(AtomicBool::new(false));
                if mode == "owner" {
                    let stop = Arc::clone(&stop);
                    std::thread::spawn(move || {
                        let mut line = String::new();
                        let _ = std::io::stdin().read_line(&mut line);
                        stop.store(true, Ordering::SeqCst);
                    });
                }
                let backend = BinaryFileBackend::open(&path).await.expect("child open");
                let mut full = backend.load_session().await.expect("child load").unwrap_or_default();
                println!("ready {}", std::process::id());
                let mut i = start;
                while !stop.load(Ordering::SeqCst) {
                    let mut batch = changes(i);
                    if i.is_multiple_of(7) {
                        // A large record (the same peers again): a kill can land in the middle of
                        // its write and leave a torn tail.
                        batch.extend((i.saturating_sub(400)..i).map(|j| Change::UpsertPeer(peer(j))));
                    }
                    full.apply_all(&batch);
                    if i.is_multiple_of(97) {
                        backend.save_session(&full).await.expect("child save");
                    } else {
                        backend.persist(&batch, &full).await.expect("child persist");
                    }
                    // Printed only once the flush returned: an acknowledged change.
                    println!("ack {i}");
                    std::io::stdout().flush().expect("flush");
                    i += 1;
                }
                println!("done");
            }
            "second" => match BinaryFileBackend::open(&path).await {
                Err(SessionError::Locked { pid, .. }) => println!("locked {}", pid.map_or(0, |p| p)),
                Ok(_) => println!("opened"),
                Err(e) => println!("error {e}"),
            },
            "modes" => {
                let failpoints = Failpoints::new();
                let backend =
                    BinaryFileBackend::open_with_failpoints(&path, Arc::clone(&failpoints)).await.expect("open");
                let mut full = SessionData::default();
                for i in 0..3 {
                    let batch = changes(i);
                    full.apply_all(&batch);
                    backend.persist(&batch, &full).await.expect("persist");
                }
                backend.save_session(&full).await.expect("save");
                for mode in failpoints.temp_modes() {
                    println!("temp {mode:o}");
                }
                // A damaged file: its preserved copy must be private too.
                let damaged = path.with_file_name("damaged.session");
                std::fs::write(&damaged, b"LYSF this is not a session").expect("write damaged");
                match BinaryFileBackend::open(&damaged).await {
                    Err(SessionError::Corrupt { preserved_at: Some(copy), .. }) => {
                        println!("preserved {}", copy.display())
                    }
                    other => println!("unexpected {other:?}"),
                }
            }
            other => panic!("unknown child mode {other}"),
        }
    });
}
