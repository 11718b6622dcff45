//! ferogram: its binary session written in the v8 layout (reading every version is
//! [`crate::binary`]) and its compact `StringSession` (versions 1 and 2).

pub(crate) mod binary;
pub(crate) mod string;

pub use binary::encode_ferogram_v8;
