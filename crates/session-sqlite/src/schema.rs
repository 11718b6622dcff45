//! Moved to [`session_sql`], kept for 0.6: the driver-free SQL layer (migrations, statement
//! plans, row decoding, value types) now lives in its own crate, which every SQL backend depends
//! on. Import from `session_sql`; this path is removed in the release after 0.6.

pub use session_sql::*;
