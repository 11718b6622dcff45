#![doc = include_str!("../README.md")]

mod backend;
mod chunks;
pub mod foreign;
pub mod schema;

pub use backend::{Durability, SqliteBackend};
