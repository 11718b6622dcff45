//! The lease, in SQL: one row per named session, the database's clock, and a fence that makes a
//! write transaction fail when its owner's token is no longer current.
//!
//! | table | key | holds |
//! | --- | --- | --- |
//! | `layer_session_leases` | `name` | `token` (fencing token, +1 on every new owner), `holder` ([`LeaseHolder::encode`], NULL once released), `expires_ms` (Unix milliseconds by the database's clock) |
//! | `layer_session_fence` | — | never a row: its `CHECK (ok = 1)` is what [`fence`] trips |
//!
//! The tables are created by the first acquire (`CREATE TABLE IF NOT EXISTS`, in the same
//! transaction), so a database written before leases existed needs no migration, and readers that
//! know nothing of leases (older builds, the sqlite3 shell) are not disturbed.
//!
//! Time is the database's, never a client's: every expiry is computed inside the statement
//! ([`NOW_MS`]), so two clients whose clocks disagree still agree on who holds the lease.
//!
//! # Driving it
//!
//! - Acquire: run [`acquire`] in one transaction. Its last statement returns one row
//!   (`token`, `ttl_ms`) when the lease was taken, none when it is held; then run
//!   [`holder_query`] and build the `Locked` error with [`locked`].
//! - Renew: [`renew`] returns one row (`token`, `ttl_ms`), or none: [`lost`].
//! - Renew many (the leases of many sessions of one database, one statement): [`renew_many`]
//!   returns a row (`name`, `token`, `ttl_ms`) per lease it renewed; [`grants`] matches them to
//!   the renewals, and a renewal without a row is [`lost`].
//! - Release: [`release`].
//! - Write: make [`fence`] the first statement of every write transaction. When the token is no
//!   longer current it fails with a CHECK constraint error ([`is_fence_violation`] recognizes the
//!   message); the driver rolls the transaction back and reports `LeaseLost`.

use std::time::Duration;

use session_core::{LeaseGrant, LeaseHolder, SessionError};

use crate::value::{SqlValue, SqlValueRef, Statement};

/// The name of the session the documented calls open (`open_local(path)`, `open_remote(url,
/// token)`, a `.db` path in `Config`).
pub const DEFAULT_SESSION: &str = "default";

macro_rules! now_ms {
    () => {
        "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
    };
}
pub(crate) use now_ms;

/// The database's clock in Unix milliseconds, as an SQL expression (SQLite and libSQL: stable
/// within one statement).
pub const NOW_MS: &str = now_ms!();

/// The tables of the lease (beside the session schema; not part of a session).
pub const TABLES: [&str; 2] = ["layer_session_leases", "layer_session_fence"];

/// Creates the lease tables when they are missing.
pub const CREATE_LEASES: &str = "CREATE TABLE IF NOT EXISTS layer_session_leases (\
    name TEXT PRIMARY KEY NOT NULL, token INTEGER NOT NULL, holder TEXT, expires_ms INTEGER NOT NULL)";

/// Creates the fence table when it is missing.
pub const CREATE_FENCE: &str =
    "CREATE TABLE IF NOT EXISTS layer_session_fence (ok INTEGER NOT NULL CONSTRAINT layer_session_fence CHECK (ok = 1))";

/// Takes the lease when it is free, released or expired; returns `token`, `ttl_ms` when taken.
pub const ACQUIRE: &str = concat!(
    "INSERT INTO layer_session_leases (name, token, holder, expires_ms) \
    VALUES (?1, 1, ?2, ",
    now_ms!(),
    " + ?3) \
    ON CONFLICT (name) DO UPDATE SET token = layer_session_leases.token + 1, holder = excluded.holder, \
    expires_ms = excluded.expires_ms \
    WHERE layer_session_leases.holder IS NULL \
    OR layer_session_leases.expires_ms <= ",
    now_ms!(),
    " \
    RETURNING token, expires_ms - ",
    now_ms!()
);

/// The holder of a lease and the milliseconds it has left.
pub const HOLDER: &str = concat!(
    "SELECT holder, expires_ms - ",
    now_ms!(),
    " \
    FROM layer_session_leases WHERE name = ?1"
);

/// Extends the lease of a token that is still current; returns `token`, `ttl_ms`.
pub const RENEW: &str = concat!(
    "UPDATE layer_session_leases \
    SET expires_ms = ",
    now_ms!(),
    " + ?3 \
    WHERE name = ?1 AND token = ?2 AND holder IS NOT NULL \
    RETURNING token, expires_ms - ",
    now_ms!()
);

/// Extends the leases of many sessions in one statement: `?1` is a JSON object mapping each
/// session's name to its token, `?2` the time to live in milliseconds; returns `name`, `token`,
/// `ttl_ms` for every lease still current (one primary-key lookup each).
pub const RENEW_MANY: &str = concat!(
    "UPDATE layer_session_leases \
    SET expires_ms = ",
    now_ms!(),
    " + ?2 \
    FROM (SELECT key AS renew_name, value AS renew_token FROM json_each(?1)) AS renewals \
    WHERE layer_session_leases.name = renewals.renew_name AND layer_session_leases.token = renewals.renew_token \
    AND layer_session_leases.holder IS NOT NULL \
    RETURNING name, token, expires_ms - ",
    now_ms!()
);

/// Ends the lease of a token that is still current.
pub const RELEASE: &str = concat!(
    "UPDATE layer_session_leases \
    SET holder = NULL, expires_ms = ",
    now_ms!(),
    " \
    WHERE name = ?1 AND token = ?2"
);

/// Fails (CHECK constraint `layer_session_fence`) unless the token is the session's current one;
/// inserts nothing when it is.
pub const FENCE: &str = "INSERT INTO layer_session_fence (ok) SELECT 0 WHERE NOT EXISTS \
    (SELECT 1 FROM layer_session_leases WHERE name = ?1 AND token = ?2 AND holder IS NOT NULL)";

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

fn stmt(sql: &'static str, params: Vec<SqlValue>) -> Statement {
    Statement { sql, params }
}

fn token_value(token: u64) -> SqlValue {
    SqlValue::Integer(i64::try_from(token).unwrap_or(i64::MAX))
}

/// The statements of an acquire, to run in one transaction; the last returns the grant's row.
pub fn acquire(name: &str, holder: &LeaseHolder, ttl: Duration) -> Vec<Statement> {
    vec![
        stmt(CREATE_LEASES, Vec::new()),
        stmt(CREATE_FENCE, Vec::new()),
        stmt(
            ACQUIRE,
            vec![SqlValue::Text(name.to_owned()), SqlValue::Text(holder.encode()), SqlValue::Integer(millis(ttl))],
        ),
    ]
}

/// The query that tells who holds a lease an acquire could not take.
pub fn holder_query(name: &str) -> Statement {
    stmt(HOLDER, vec![SqlValue::Text(name.to_owned())])
}

/// The renewal of `token`.
pub fn renew(name: &str, token: u64, ttl: Duration) -> Statement {
    stmt(RENEW, vec![SqlValue::Text(name.to_owned()), token_value(token), SqlValue::Integer(millis(ttl))])
}

/// The renewal of many sessions' leases in one statement ([`RENEW_MANY`]): `renewals` are
/// (session name, token) pairs, each name at most once.
pub fn renew_many<'a>(renewals: impl IntoIterator<Item = (&'a str, u64)>, ttl: Duration) -> Statement {
    let map: serde_json::Map<String, serde_json::Value> = renewals
        .into_iter()
        .map(|(name, token)| (name.to_owned(), serde_json::Value::from(i64::try_from(token).unwrap_or(i64::MAX))))
        .collect();
    let json = serde_json::Value::Object(map).to_string();
    stmt(RENEW_MANY, vec![SqlValue::Text(json), SqlValue::Integer(millis(ttl))])
}

/// Matches the rows [`RENEW_MANY`] returned to the renewals sent: one result per renewal, in
/// order; a renewal without a row (its token is no longer current) is [`lost`]. `resource(name)`
/// names a session in errors.
pub fn grants<'r>(
    renewals: &[(&str, u64)],
    rows: impl IntoIterator<Item = &'r [SqlValueRef<'r>]>,
    resource: impl Fn(&str) -> String,
) -> Vec<Result<LeaseGrant, SessionError>> {
    let mut renewed = std::collections::HashMap::new();
    for row in rows {
        if let [SqlValueRef::Text(name), token, ttl] = row {
            renewed.insert(*name, grant(&resource(name), &[*token, *ttl]));
        }
    }
    renewals
        .iter()
        .map(|(name, token)| match renewed.remove(name) {
            Some(Ok(g)) if g.token == *token => Ok(g),
            Some(Err(e)) => Err(e),
            _ => Err(lost(&resource(name), *token)),
        })
        .collect()
}

/// The release of `token`.
pub fn release(name: &str, token: u64) -> Statement {
    stmt(RELEASE, vec![SqlValue::Text(name.to_owned()), token_value(token)])
}

/// The fence: the first statement of every write transaction of the owner of `token`.
pub fn fence(name: &str, token: u64) -> Statement {
    stmt(FENCE, vec![SqlValue::Text(name.to_owned()), token_value(token)])
}

/// Whether a driver's error message is the fence tripping (the token is no longer current).
pub fn is_fence_violation(message: &str) -> bool {
    message.contains("layer_session_fence")
}

/// Reads the row [`ACQUIRE`] or [`RENEW`] returned.
pub fn grant(resource: &str, row: &[SqlValueRef<'_>]) -> Result<LeaseGrant, SessionError> {
    match row {
        [SqlValueRef::Integer(token), SqlValueRef::Integer(ttl_ms)] => Ok(LeaseGrant {
            token: u64::try_from(*token)
                .map_err(|_| SessionError::corrupt(resource, format!("lease token {token} is negative")))?,
            ttl: Duration::from_millis(u64::try_from(*ttl_ms).unwrap_or(0)),
        }),
        _ => Err(SessionError::corrupt(resource, "the lease row does not have the expected columns")),
    }
}

/// The `Locked` error for the row [`HOLDER`] returned (or for no row: a lease held by someone
/// this build cannot name).
pub fn locked(resource: &str, row: Option<&[SqlValueRef<'_>]>) -> SessionError {
    let (holder, left) = match row {
        Some([holder, SqlValueRef::Integer(left)]) => {
            let holder = match holder {
                SqlValueRef::Text(t) => LeaseHolder::decode(t),
                _ => None,
            };
            (holder, Some(Duration::from_millis(u64::try_from(*left).unwrap_or(0))))
        }
        _ => (None, None),
    };
    SessionError::Locked { resource: resource.to_owned(), pid: None, holder, expires_in: left }
}

/// The `LeaseLost` error of a renewal that found no current lease for its token, or of a write
/// the fence stopped.
pub fn lost(resource: &str, token: u64) -> SessionError {
    SessionError::LeaseLost {
        resource: resource.to_owned(),
        reason: format!("token {token} is no longer current: another owner took the session over"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_uses_the_database_clock() {
        for sql in [ACQUIRE, HOLDER, RENEW, RENEW_MANY, RELEASE] {
            assert!(sql.contains(NOW_MS), "{sql}");
        }
        assert!(is_fence_violation("CHECK constraint failed: layer_session_fence"));
        assert!(!is_fence_violation("UNIQUE constraint failed: peers.id"));
    }

    #[test]
    fn rows_decode() {
        let g = grant("r", &[SqlValueRef::Integer(7), SqlValueRef::Integer(1500)]).expect("grant");
        assert_eq!((g.token, g.ttl), (7, Duration::from_millis(1500)));
        assert!(grant("r", &[SqlValueRef::Integer(-1), SqlValueRef::Integer(1)]).is_err());
        assert!(grant("r", &[SqlValueRef::Null]).is_err());
        let h = LeaseHolder::current();
        let enc = h.encode();
        match locked("r", Some(&[SqlValueRef::Text(&enc), SqlValueRef::Integer(2000)])) {
            SessionError::Locked { holder: Some(got), expires_in: Some(left), .. } => {
                assert_eq!(got, h);
                assert_eq!(left, Duration::from_secs(2));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(locked("r", None), SessionError::Locked { holder: None, .. }));
    }

    #[test]
    fn renew_many_sends_names_as_json_and_matches_rows_by_name() {
        let st = renew_many([("a\"b", 3), ("c", 9)], Duration::from_secs(2));
        assert_eq!(st.sql, RENEW_MANY);
        assert_eq!(st.params[0], SqlValue::Text(r#"{"a\"b":3,"c":9}"#.to_owned()));
        assert_eq!(st.params[1], SqlValue::Integer(2000));
        // Rows come in any order; "x" was not renewed (taken over), "c" came back with another token.
        let rows = [
            vec![SqlValueRef::Text("c"), SqlValueRef::Integer(8), SqlValueRef::Integer(1000)],
            vec![SqlValueRef::Text("a"), SqlValueRef::Integer(1), SqlValueRef::Integer(1000)],
        ];
        let got = grants(&[("a", 1), ("x", 2), ("c", 9)], rows.iter().map(Vec::as_slice), |n| format!("db#{n}"));
        assert_eq!(got[0].as_ref().expect("a").token, 1);
        assert!(matches!(&got[1], Err(SessionError::LeaseLost { resource, .. }) if resource == "db#x"));
        assert!(matches!(&got[2], Err(SessionError::LeaseLost { .. })));
    }
}
