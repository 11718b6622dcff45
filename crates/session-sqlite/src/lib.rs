#![doc = include_str!("../README.md")]

mod backend;
pub mod schema;

pub use backend::SqliteBackend;
