#![doc = include_str!("../README.md")]

mod backend;
pub mod foreign;
pub mod schema;

pub use backend::{Durability, SqliteBackend};
