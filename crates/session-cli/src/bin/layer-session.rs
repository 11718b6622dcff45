//! `layer-session`: inspect, convert and verify sessions (see the crate README).

use std::process::ExitCode;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    ExitCode::from(runtime.block_on(session_cli::run(std::env::args_os(), &mut out, &mut err)))
}
