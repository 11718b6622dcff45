#![doc = include_str!("../README.md")]
#![cfg(target_os = "linux")]

mod disk;
mod fs;
mod model;

pub use disk::Disk;
pub use fs::OpStats;
pub use model::{LossMode, SECTOR};
