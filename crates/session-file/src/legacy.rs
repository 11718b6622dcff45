//! layer-client 0.5 and ferogram session files, versions 1 to 8.
//!
//! Moved to [`session_interop`] (reading: [`session_interop::binary`]; writing:
//! [`session_interop::layer05`] and [`session_interop::ferogram`]); these names are kept for
//! 0.6 so that existing imports keep compiling, and will be removed in 0.7. The backend still
//! opens such files in place (see [`crate::BinaryFileBackend::open`]).

pub use session_interop::binary::{decode, LegacyFormat, LegacySession, MAX_PLAUSIBLE_DC_ID, MAX_PLAUSIBLE_HOME_DC};
pub use session_interop::ferogram::encode_ferogram_v8;
pub use session_interop::layer05::encode_layer_v3;
