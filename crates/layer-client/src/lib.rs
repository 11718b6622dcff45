#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod adapter;
mod client;
mod error;
mod guard;
mod health;
mod ownership;
pub mod session_backend;

/// Message text formatting (features `markdown` and `html`): text with entities to and from
/// Markdown or HTML, for `InputMessage` and `Message`.
#[cfg(any(feature = "markdown", feature = "html"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "markdown", feature = "html"))))]
pub mod parsers {
    #[cfg(feature = "html")]
    #[cfg_attr(docsrs, doc(cfg(feature = "html")))]
    pub use grammers_client::parsers::{generate_html_message, parse_html_message};
    #[cfg(feature = "markdown")]
    #[cfg_attr(docsrs, doc(cfg(feature = "markdown")))]
    pub use grammers_client::parsers::{generate_markdown_message, parse_markdown_message};
}
mod updates;

pub use client::{Client, ClientBuilder, Config, ShutdownHandle, DEFAULT_SESSION_PATH};
pub use error::ClientError;
pub use health::SessionHealth;
pub use updates::Updates;

/// The grammers crates underneath, for the API beyond sessions and sign-in.
pub use grammers_client as grammers;
pub use grammers_client::client::{LoginToken, PasswordToken};
pub use grammers_client::peer::User;

/// The session data model, store and errors (`session-core`).
pub use session_core as core;
pub use session_core::{FlushPolicy, SessionError, SessionStore};
