#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod adapter;
mod client;
mod error;
mod guard;
mod health;
pub mod session_backend;
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
