//! mtcute: its version 3 string session and its `SqliteStorage` file (`@mtcute/node`).

pub(crate) mod sqlite;
pub(crate) mod string;
