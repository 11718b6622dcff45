#![doc = include_str!("../README.md")]

pub mod b64;
pub mod binary;
pub mod ferogram;
pub mod layer05;
pub mod reader;

/// The model these codecs read into and write from.
pub use session_core;
