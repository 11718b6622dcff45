//! The stored codes of peer kinds and id spaces: thin wrappers over the one table in
//! `session-core` ([`PeerKind::code`], [`PeerClass::code`]), typed as SQL integers.

use session_core::{PeerClass, PeerKind};

/// The stored code of a peer's id space.
pub fn class_code(class: PeerClass) -> i64 {
    i64::from(class.code())
}

/// The stored code of a peer kind: [`PeerKind::code`] (the one table, kept in `session-core`).
pub fn kind_code(kind: PeerKind) -> i64 {
    i64::from(kind.code())
}

pub(crate) fn kind_from_code(code: i64) -> Option<PeerKind> {
    u8::try_from(code).ok().and_then(PeerKind::from_code)
}

pub(crate) fn class_from_code(code: i64) -> Option<PeerClass> {
    u8::try_from(code).ok().and_then(PeerClass::from_code)
}
