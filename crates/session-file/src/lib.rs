#![doc = include_str!("../README.md")]

mod backend;
#[doc(hidden)]
pub mod failpoint;
pub mod legacy;
mod log;
mod snapshot;

pub use backend::{BinaryFileBackend, COMPACT_FACTOR, COMPACT_FLOOR};
pub use snapshot::{read_snapshot, Snapshot, StoredFormat};
