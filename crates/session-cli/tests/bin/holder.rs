//! The holder child process of `tests/commands.rs`, a program of its own: a test that played the
//! child when an environment variable was set passed, doing nothing, in every normal run.
//!
//! `session-cli-holder KIND PATH`: opens the session at PATH with our backend (KIND `file`, or
//! anything else for SQLite, which it also writes once so that the database is in WAL with a
//! live `-wal` file), taking the owner lock; prints `holder-is-ready` and holds it until its
//! stdin closes.

use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().expect("kind");
    let path = args.next().expect("path");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let held: Box<dyn std::any::Any> = match kind.as_str() {
            "file" => Box::new(session_file::BinaryFileBackend::open(PathBuf::from(&path)).await.expect("open file")),
            _ => {
                use session_core::SessionBackend;
                let b = session_sqlite::SqliteBackend::open(&path).await.expect("open sqlite");
                // Write once so that the database is in WAL with a live -wal file.
                let data = b.load_session().await.expect("load").expect("a session");
                b.save_session(&data).await.expect("save");
                Box::new(b)
            }
        };
        println!("holder-is-ready");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        drop(held);
    });
}
