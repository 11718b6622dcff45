//! `layer-session`: inspect, convert and verify sessions (see the crate README).

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    ExitCode::from(session_cli::run(std::env::args_os(), &mut out, &mut err).await)
}
