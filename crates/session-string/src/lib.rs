#![doc = include_str!("../README.md")]

mod b64;
mod backend;
pub mod foreign;
mod ours;
mod reader;

pub use backend::StringSessionBackend;
pub use foreign::StringFormat;
pub use ours::{decode, encode_compact, encode_full, COMPACT_PREFIX, FULL_PREFIX, STRING_VERSION};
