#![doc = include_str!("../README.md")]

mod batch;
mod cli;
mod diff;
mod error;
mod format;
mod gramjs_store;
mod guard;
mod keys;
mod list;
mod location;
mod read;
mod report;
mod reseal;
mod server;
#[cfg(feature = "tls")]
mod tls;
mod verify;
mod write;

pub use cli::{run, Cli, Command, StringKind};
pub use diff::dropped;
pub use error::{CliError, CliResult, EXIT_DEST, EXIT_LOSSY, EXIT_OK, EXIT_SOURCE, EXIT_USAGE};
pub use format::{Carries, Format};
pub use keys::{KEY_ENV, NEW_KEY_ENV};
pub use list::{list as list_sessions, Listed};
pub use location::{parse_dest, parse_source, Dest, Family, ServerKind, ServerSession, Source, SslMode, StringOut};
pub use read::{import_string, import_string_with, read, Loaded, ReadOptions};
pub use report::{hex, json as inspect_json, text as inspect_text};
pub use server::{DEFAULT_TIMEOUT as SERVER_TIMEOUT, TIMEOUT_ENV};
pub use verify::{check as verify_session, Findings};
pub use write::{write, WriteOptions};

/// GramJS `StoreSession` folders: import and export.
pub mod gramjs {
    pub use crate::gramjs_store::{export, import, is_store};
}

/// Runs blocking work (file and SQLite I/O) on tokio's blocking pool.
pub(crate) async fn blocking<T, F>(f: F) -> CliResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> CliResult<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(CliError::usage(format!("internal error: a blocking task failed: {e}"))),
    }
}
