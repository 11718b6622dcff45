#![doc = include_str!("../README.md")]

pub mod b64;
pub mod binary;
pub mod carries;
pub mod detect;
pub mod ferogram;
pub mod gramjs;
pub mod layer05;
pub mod mtcute;
pub mod pyrogram;
pub mod reader;
pub mod sqlite;
pub mod string_format;
pub mod telethon;

pub use binary::LegacyFormat;
pub use carries::Carries;
pub use detect::{detect_sqlite, detect_string, export_sqlite, export_string, import_sqlite, import_string};
pub use sqlite::ForeignFormat;
pub use string_format::{Imported, StringFormat};

/// The model these codecs read into and write from.
pub use session_core;
