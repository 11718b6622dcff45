//! The named sessions of a database (schema version 4): the `sessions` table maps each name to
//! the small integer id that keys every row of that session, and the listing of a database's
//! sessions with their lease.
//!
//! | table | key | holds |
//! | --- | --- | --- |
//! | `sessions` | `id` | `name` (unique). `default` ([`DEFAULT_SESSION`](crate::lease::DEFAULT_SESSION)) is id 0, made by the migration to version 4 (it holds the session of an older database). |
//!
//! A name is registered once and keeps its id for good (a deleted session keeps its name): the
//! id is what every statement of a plan takes as `?1`, so the rows of two sessions never meet.

use std::time::Duration;

use session_core::{LeaseHolder, SessionError};

use crate::lease::DEFAULT_SESSION;
use crate::value::{SqlValue, SqlValueRef, Statement};

/// The id of a named session in its database: the `sid` column of every row, the `?1` of every
/// statement a plan makes. Read it with [`register_session`] and [`session_id`].
pub type SessionId = i64;

/// The id of [`DEFAULT_SESSION`] in every database (the migration to version 4 gives it 0).
pub const DEFAULT_SESSION_ID: SessionId = 0;

/// Records a session name (nothing when it is known already), with the next free id. The id is
/// computed in the statement rather than left to `INTEGER PRIMARY KEY`, so the text means the
/// same on every engine the statements are translated to (a concurrent registration that took
/// the same id fails on the key, and the driver runs it again).
pub const REGISTER_SESSION: &str = "INSERT INTO sessions (id, name) SELECT coalesce(max(id), 0) + 1, ?1 \
     FROM sessions WHERE true ON CONFLICT (name) DO NOTHING";

/// The id of the session named `?1`.
pub const SESSION_ID: &str = "SELECT id FROM sessions WHERE name = ?1";

/// Every session of a database without lease tables: `name`, whether a session is stored
/// (1 or 0), and two NULLs where [`LIST_SESSIONS_WITH_LEASES`] has the lease.
pub const LIST_SESSIONS: &str = "SELECT s.name, \
     CASE WHEN EXISTS (SELECT 1 FROM session WHERE sid = s.id) THEN 1 ELSE 0 END, NULL, NULL \
     FROM sessions AS s ORDER BY s.name";

/// Every session of a database with lease tables (`layer_session_leases` exists), and every
/// name with a lease but no rows yet: `name`, stored (1 or 0), the lease's holder (NULL when
/// there is none or it was released) and the milliseconds it has left.
pub const LIST_SESSIONS_WITH_LEASES: &str = concat!(
    "SELECT n.name, CASE WHEN EXISTS \
     (SELECT 1 FROM sessions AS s JOIN session AS r ON r.sid = s.id WHERE s.name = n.name) THEN 1 ELSE 0 END, \
     l.holder, CASE WHEN l.holder IS NULL THEN NULL ELSE l.expires_ms - ",
    crate::lease::now_ms!(),
    " END \
     FROM (SELECT name FROM sessions UNION SELECT name FROM layer_session_leases) AS n \
     LEFT JOIN layer_session_leases AS l ON l.name = n.name ORDER BY n.name"
);

/// The statements that register `name` (run them in a write transaction, after the migrations);
/// the last one returns the session's id ([`session_id`] reads it).
pub fn register_session(name: &str) -> Result<[Statement; 2], SessionError> {
    check_name(name)?;
    let name = SqlValue::Text(name.to_owned());
    Ok([Statement::new(REGISTER_SESSION, vec![name.clone()]), Statement::new(SESSION_ID, vec![name])])
}

/// Reads the row of [`SESSION_ID`].
pub fn session_id(resource: &str, row: &[SqlValueRef<'_>]) -> Result<SessionId, SessionError> {
    match row {
        [SqlValueRef::Integer(id)] => Ok(*id),
        _ => Err(SessionError::corrupt(resource, "sessions.id: not an integer")),
    }
}

/// Refuses a session name that is empty, longer than 255 bytes or holds a control character
/// (names appear in lock file names, messages and the CLI's listing).
pub fn check_name(name: &str) -> Result<(), SessionError> {
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(SessionError::invalid(
            "session name",
            format!("{name:?}: a name is 1 to 255 bytes without control characters"),
        ));
    }
    Ok(())
}

/// Whether `name` is the session the documented calls open.
pub fn is_default(name: &str) -> bool {
    name == DEFAULT_SESSION
}

/// One session of a database, as [`LIST_SESSIONS`] or [`LIST_SESSIONS_WITH_LEASES`] read it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The session's name.
    pub name: String,
    /// Whether a session is stored under the name (a name stays registered after a delete).
    pub stored: bool,
    /// Who holds the session's lease, when one is held (even if expired: see `expires_in`).
    pub holder: Option<LeaseHolder>,
    /// How long the holder's lease has left (`Some(ZERO)`: expired, anyone may take it).
    pub expires_in: Option<Duration>,
}

impl SessionInfo {
    /// Reads a row of [`LIST_SESSIONS`] or [`LIST_SESSIONS_WITH_LEASES`].
    pub fn from_row(resource: &str, row: &[SqlValueRef<'_>]) -> Result<SessionInfo, SessionError> {
        let bad = || SessionError::corrupt(resource, "sessions: a listing row of another shape");
        let [SqlValueRef::Text(name), SqlValueRef::Integer(stored), holder, left] = row else {
            return Err(bad());
        };
        let holder = match holder {
            SqlValueRef::Text(t) => LeaseHolder::decode(t),
            _ => None,
        };
        let expires_in = match (left, &holder) {
            (SqlValueRef::Integer(ms), Some(_)) => Some(Duration::from_millis(u64::try_from(*ms).unwrap_or(0))),
            _ => None,
        };
        Ok(SessionInfo { name: (*name).to_owned(), stored: *stored != 0, holder, expires_in })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::NOW_MS;

    #[test]
    fn names_are_checked_and_listing_rows_decode() {
        assert!(register_session("alice").is_ok());
        for bad in ["", "a\nb", &"x".repeat(256)] {
            assert!(matches!(register_session(bad), Err(SessionError::Invalid { .. })), "{bad:?}");
        }
        let h = LeaseHolder::current();
        let enc = h.encode();
        let row =
            [SqlValueRef::Text("bob"), SqlValueRef::Integer(1), SqlValueRef::Text(&enc), SqlValueRef::Integer(1500)];
        let info = SessionInfo::from_row("r", &row).expect("row");
        assert_eq!(info.name, "bob");
        assert!(info.stored);
        assert_eq!(info.holder, Some(h));
        assert_eq!(info.expires_in, Some(Duration::from_millis(1500)));
        let row = [SqlValueRef::Text("c"), SqlValueRef::Integer(0), SqlValueRef::Null, SqlValueRef::Null];
        let info = SessionInfo::from_row("r", &row).expect("row");
        assert_eq!((info.stored, info.holder, info.expires_in), (false, None, None));
        assert!(SessionInfo::from_row("r", &[SqlValueRef::Null]).is_err());
        assert!(LIST_SESSIONS_WITH_LEASES.contains(NOW_MS));
    }
}
