//! The remote mode: session-sql's schema on a libSQL server, over Hrana (HTTP) with the `libsql`
//! crate's remote client.
//!
//! Where each part lives: [`url`] checks the URL and hides credentials; [`transport`] holds the
//! one connection, the per-call timeout and the batch call; [`migrate`] brings the schema up to
//! date on open; [`write`] is the write path (a plan as one transaction, one HTTP request);
//! [`inline`] turns a plan's parameterised statements into the SQL text a batch carries;
//! [`load`] is the read path, in pages; [`pipeline`] its one-request protobuf read; [`list`] lists a database's named sessions; [`errors`]
//! maps the client's errors to `SessionError`; [`seal`] checks and makes a sealed database.

mod errors;
mod inline;
mod known;
mod lease;
mod list;
mod load;
mod migrate;
mod pipeline;
mod seal;
mod transport;
mod url;
mod write;

use std::time::Duration;

use tokio::sync::Mutex;

pub use lease::LibSqlLeases;
pub(crate) use url::shown_url;
#[cfg(feature = "local")]
pub(crate) use write::Step;

/// The auxiliary tables: a counter every write transaction through this crate increments, and
/// a random history id every write of this build draws anew, so that an embedded replica can
/// tell "nobody else wrote" from "pull again" with one read. The counter alone does not identify
/// what the server holds: a server restored from a backup and written to again reaches the same
/// number with other contents; the pair does (see [`READ_GENERATION`]). Neither is part of the
/// session schema (a local SQLite file has none). A server written by an older build that only
/// counts still changes the pair on each of its writes.
pub(crate) const GENERATION_TABLE: &str = "write_generation";
/// The history id beside the counter (its own table, so a database of an older build gains it
/// with `CREATE TABLE IF NOT EXISTS`, no column migration).
pub(crate) const HISTORY_TABLE: &str = "write_history";

pub(crate) const CREATE_GENERATION: &str = "CREATE TABLE IF NOT EXISTS write_generation \
     (id INTEGER PRIMARY KEY CHECK (id = 0), value INTEGER NOT NULL);\n\
     INSERT INTO write_generation (id, value) VALUES (0, 0) ON CONFLICT (id) DO NOTHING;\n\
     CREATE TABLE IF NOT EXISTS write_history \
     (id INTEGER PRIMARY KEY CHECK (id = 0), history INTEGER NOT NULL, previous INTEGER NOT NULL);\n\
     INSERT INTO write_history (id, history, previous) VALUES (0, random() & 4611686018427387903, 0) \
     ON CONFLICT (id) DO NOTHING;\n";

/// The generation: the counter and the history id combined (bitwise exclusive or, written with
/// `|`, `&` and `-`, which SQLite has; both are non-negative, so nothing overflows).
macro_rules! generation_of {
    () => {
        "(SELECT (g.value | h.history) - (g.value & h.history) \
         FROM write_generation AS g, write_history AS h WHERE g.id = 0 AND h.id = 0)"
    };
}

/// The bump every write transaction ends with: remembers the generation it starts from, draws a
/// new history id (62 random bits) and counts.
pub(crate) const BUMP_GENERATION: &str = concat!(
    "UPDATE write_history SET previous = ",
    generation_of!(),
    " WHERE id = 0;\n\
     UPDATE write_history SET history = random() & 4611686018427387903 WHERE id = 0;\n\
     UPDATE write_generation SET value = value + 1 WHERE id = 0;\n"
);
/// The generation now, and the one the last write of this build started from.
pub(crate) const READ_GENERATION: &str =
    concat!("SELECT ", generation_of!(), ", (SELECT previous FROM write_history WHERE id = 0)");

/// How long one call may take before the server counts as unreachable: well inside the lease's
/// default time to live (30 s), so that a frozen server is noticed long before the lease could
/// expire.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's generation (its counter and history id combined) after a write, or as of a load.
pub(crate) type Generation = i64;

pub(crate) struct Remote {
    // One connection (one HTTP client with its pool); calls are serialized on it.
    conn: Mutex<libsql::Connection>,
    /// The client the connection was made by, shared with the lease's connection
    /// ([`Remote::sibling`]): building one loads the system's TLS roots.
    db: std::sync::Arc<libsql::Database>,
    /// The URL without credentials, for messages.
    pub(crate) resource: String,
    timeout: Duration,
    /// The id of the session this connection reads and writes (`session_sql::SessionId`; the
    /// default session's until [`Remote::register`] names another).
    pub(crate) sid: session_sql::SessionId,
    /// How this session's rows are sealed (`None`: a plain database); see [`seal`].
    pub(crate) seal: Option<session_sql::Sealer>,
    /// What this owner knows of the stored rows ([`known`]); held by a persist from its plan to
    /// its answer, so that plans follow one another.
    known: tokio::sync::Mutex<known::KnownRows>,
    /// The load's protobuf read of a plain `http://` server (`None`: read through the client).
    pipeline: Option<std::sync::Arc<pipeline::Pipeline>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("resource", &self.resource).finish_non_exhaustive()
    }
}
