//! What the child (`tests/bin/adversarial_child.rs`) and its parent (`tests/adversarial.rs`)
//! share: the number of lock races, the clock, the one-line outcome of an open.

use session_core::SessionError;
use session_file::BinaryFileBackend;

/// How many locks the racing children race for, one after the other.
pub const RACES: usize = 25;

/// Wall-clock nanoseconds since the epoch (the racing children's common start).
pub fn now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos()
}

/// What an open attempt came to, as one line.
pub fn outcome(result: Result<BinaryFileBackend, SessionError>) -> String {
    match result {
        Ok(_) => "opened".into(),
        Err(SessionError::Locked { pid, .. }) => format!("locked {}", pid.unwrap_or(0)),
        Err(e) => format!("error {e}"),
    }
}
