//! Runnable examples of layer-client sessions (see the `[[example]]` targets), and the book's
//! chapters compiled as doc tests so that every snippet users copy keeps working.

#[doc = include_str!("../docs/src/store.md")]
pub mod book_store {}

#[doc = include_str!("../docs/src/custom-backend.md")]
pub mod book_custom_backend {}

#[doc = include_str!("../docs/src/converting.md")]
pub mod book_converting {}
