//! What a lease-free read of a stored session returns: the server backends' read-only looks
//! (`LibSqlBackend::read_remote`, `PostgresOptions::read_session`, `RedisOptions::read_session`)
//! share this one type under their own names.

use crate::key_id::KeyId;
use crate::model::SessionData;

/// A session as one committed write left it, read without owning it, and whether it was sealed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionSnapshot {
    /// The session.
    pub data: SessionData,
    /// The id of the key the stored session is sealed with (`None`: stored in clear).
    pub sealed_with: Option<KeyId>,
}

impl SessionSnapshot {
    /// A snapshot of `data`, sealed with `sealed_with` (if any) where it is stored.
    pub fn new(data: SessionData, sealed_with: Option<KeyId>) -> SessionSnapshot {
        SessionSnapshot { data, sealed_with }
    }
}
