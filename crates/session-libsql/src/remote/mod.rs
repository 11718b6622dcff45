//! The remote mode: session-sql's schema on a libSQL server, over Hrana (HTTP) with the `libsql`
//! crate's remote client.
//!
//! Where each part lives: [`url`] checks the URL and hides credentials; [`transport`] holds the
//! one connection, the per-call timeout and the batch call; [`migrate`] brings the schema up to
//! date on open; [`write`] is the write path (a plan as one transaction, one HTTP request);
//! [`inline`] turns a plan's parameterised statements into the SQL text a batch carries;
//! [`load`] is the read path, in pages; [`list`] lists a database's named sessions; [`errors`]
//! maps the client's errors to `SessionError`.

mod errors;
mod inline;
mod lease;
mod list;
mod load;
mod migrate;
mod transport;
mod url;
mod write;

use std::time::Duration;

use tokio::sync::Mutex;

pub use lease::LibSqlLeases;
pub(crate) use url::shown_url;

/// The auxiliary table: a counter every write transaction through this crate increments, so
/// that an embedded replica can tell "nobody else wrote" from "pull again" with one read.
/// It is not part of the session schema (a local SQLite file has none).
pub(crate) const GENERATION_TABLE: &str = "write_generation";

pub(crate) const CREATE_GENERATION: &str = "CREATE TABLE IF NOT EXISTS write_generation \
     (id INTEGER PRIMARY KEY CHECK (id = 0), value INTEGER NOT NULL);\n\
     INSERT INTO write_generation (id, value) VALUES (0, 0) ON CONFLICT (id) DO NOTHING;\n";
pub(crate) const BUMP_GENERATION: &str = "UPDATE write_generation SET value = value + 1 WHERE id = 0;\n";
pub(crate) const READ_GENERATION: &str = "SELECT value FROM write_generation WHERE id = 0";

/// How long one call may take before the server counts as unreachable: well inside the lease's
/// default time to live (30 s), so that a frozen server is noticed long before the lease could
/// expire.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's generation counter after a write, or as of a load.
pub(crate) type Generation = i64;

pub(crate) struct Remote {
    // One connection (one HTTP client with its pool); calls are serialized on it.
    conn: Mutex<libsql::Connection>,
    _db: libsql::Database,
    /// The URL without credentials, for messages.
    pub(crate) resource: String,
    timeout: Duration,
    /// The id of the session this connection reads and writes (`session_sql::SessionId`; the
    /// default session's until [`Remote::register`] names another).
    pub(crate) sid: session_sql::SessionId,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("resource", &self.resource).finish_non_exhaustive()
    }
}
