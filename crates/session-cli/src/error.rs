//! The one error type of the tool: a one-line message and the exit code it maps to.

use std::fmt;

use session_core::SessionError;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: bad command line (unknown option, malformed source or destination).
pub const EXIT_USAGE: u8 = 1;
/// Exit code: the source cannot be read, or it is damaged (also: `verify` found a problem).
pub const EXIT_SOURCE: u8 = 2;
/// Exit code: the destination cannot be written (exists without `--force`, held by another
/// program, cannot hold a value it requires, I/O error).
pub const EXIT_DEST: u8 = 3;
/// Exit code: the conversion would drop data and `--allow-lossy` was not given.
pub const EXIT_LOSSY: u8 = 4;

/// What went wrong, already phrased for the user: one line naming the file and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// The process exit code ([`EXIT_USAGE`], [`EXIT_SOURCE`], [`EXIT_DEST`], [`EXIT_LOSSY`]).
    pub code: u8,
    /// The message, without a trailing newline.
    pub message: String,
}

impl CliError {
    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        Self { code: EXIT_USAGE, message: message.into() }
    }

    /// The source `what` cannot be read or is damaged.
    pub fn source(what: impl fmt::Display, reason: impl fmt::Display) -> Self {
        Self { code: EXIT_SOURCE, message: one_line(format!("{what}: {reason}")) }
    }

    /// The destination `what` cannot be written.
    pub fn dest(what: impl fmt::Display, reason: impl fmt::Display) -> Self {
        Self { code: EXIT_DEST, message: one_line(format!("{what}: {reason}")) }
    }

    /// The conversion to `what` would drop `dropped`.
    pub fn lossy(what: impl fmt::Display, dropped: &[String]) -> Self {
        Self {
            code: EXIT_LOSSY,
            message: one_line(format!(
                "{what}: refusing a lossy conversion (would drop: {}); pass --allow-lossy to convert anyway",
                dropped.join("; ")
            )),
        }
    }

    /// A [`SessionError`] while reading the source `what`.
    pub fn from_source_error(what: impl fmt::Display, e: &SessionError) -> Self {
        Self::source(what, e)
    }

    /// A [`SessionError`] while writing the destination `what`.
    pub fn from_dest_error(what: impl fmt::Display, e: &SessionError) -> Self {
        Self::dest(what, e)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// Folds a multi-line message (SQLite and I/O errors sometimes carry newlines) into one line.
fn one_line(s: String) -> String {
    if s.contains('\n') {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        s
    }
}

/// Shorthand for results of the tool.
pub type CliResult<T> = Result<T, CliError>;
