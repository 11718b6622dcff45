//! The lease of a session on the server (`session_sql::lease`'s statements over Hrana), on a
//! connection of its own: a renewal never waits behind a large write of this process, and a
//! write never waits behind a renewal.
//!
//! The leases of every session this process owns in one database (same URL, same token) form
//! one batch group: `session_core`'s shared renewer renews them all with one statement
//! ([`lease::renew_many`]) in one HTTP request per interval, through any one of them.

use std::time::Duration;

use async_trait::async_trait;
use session_core::{LeaseBatch, LeaseGrant, LeaseHolder, LeaseStore, Renewal, SessionError};
use session_sql::{lease, Statement};

use super::inline::inline_all;
use super::transport::value_ref;
use super::Remote;

/// A statement that changes nothing but takes the database's write lock (SQLite begins the write
/// transaction of an `UPDATE` before it looks at its `WHERE`): the first of every lease
/// transaction, see [`LibSqlLeases::write`].
const TAKE_WRITE_LOCK: &str = "UPDATE layer_session_leases SET token = token WHERE 0";

/// One session's lease on a libSQL server: the [`LeaseStore`] that [`LibSqlBackend`](crate::LibSqlBackend)'s
/// remote and replica modes hold through a [`session_core::Lease`]. Public for tools that look
/// at or manage leases (and for third-party conformance runs); a backend takes its own.
#[derive(Debug)]
pub struct LibSqlLeases {
    remote: Remote,
    name: String,
    /// The batch group: the URL and a digest of the token (two tokens may grant different
    /// rights, so their leases are not renewed through one another's connection).
    group: String,
}

impl LibSqlLeases {
    /// Connects (a connection of its own) to the lease of session `name` on the server at `url`
    /// (URL and token as for [`LibSqlBackend::open_remote`](crate::LibSqlBackend::open_remote));
    /// every call fails with [`SessionError::Unavailable`] after `timeout`.
    pub async fn connect(url: &str, auth_token: &str, timeout: Duration, name: &str) -> Result<Self, SessionError> {
        let remote = Remote::connect(url, auth_token, timeout).await?;
        Ok(Self::over(remote, auth_token, name))
    }

    /// The lease of session `name` on a connection of its own beside `beside` (same server,
    /// token and client; see [`Remote::sibling`]).
    pub(crate) fn beside(
        beside: &Remote,
        auth_token: &str,
        timeout: Duration,
        name: &str,
    ) -> Result<Self, SessionError> {
        Ok(Self::over(beside.sibling(timeout)?, auth_token, name))
    }

    fn over(remote: Remote, auth_token: &str, name: &str) -> Self {
        let group = {
            use std::hash::{Hash as _, Hasher as _};
            let mut digest = std::collections::hash_map::DefaultHasher::new();
            auth_token.hash(&mut digest);
            format!("libsql:{}:{:016x}", remote.resource, digest.finish())
        };
        LibSqlLeases { remote, name: name.to_owned(), group }
    }

    /// Runs `statements` as one write transaction; every row of the last statement.
    async fn run_all(&self, statements: Vec<Statement>) -> Result<Vec<Vec<libsql::Value>>, SessionError> {
        Ok(self.write(statements).await?.unwrap_or_default())
    }

    /// Runs `statements` as one write transaction; the first row of the last statement, converted.
    async fn run<T>(
        &self,
        statements: Vec<Statement>,
        read: impl FnOnce(&[session_sql::SqlValueRef<'_>]) -> T,
    ) -> Result<Option<T>, SessionError> {
        let rows = self.write(statements).await?;
        Ok(rows.and_then(|rows| rows.into_iter().next()).map(|row| {
            let refs: Vec<_> = row.iter().map(value_ref).collect();
            read(&refs)
        }))
    }

    /// Runs `statements` (which change the lease table) as one transaction that takes the
    /// database's write lock at its first statement ([`TAKE_WRITE_LOCK`]). A lease transaction
    /// otherwise starts with `CREATE TABLE IF NOT EXISTS`, a read once the table exists, and
    /// sqld 0.24 answers a transaction that read before it waited for the write lock with
    /// `SQLITE_BUSY` whenever another writer committed meanwhile; such an answer leaves the
    /// connection's place in sqld's queue of writers behind it, and when that place comes up
    /// after the connection closed, sqld hands the write lock to nobody and every writer of
    /// the database waits (README, "Known problems"). A transaction whose first statement
    /// writes is retried inside sqld instead (SQLite's busy handler, same connection).
    async fn write(&self, statements: Vec<Statement>) -> Result<Option<Vec<Vec<libsql::Value>>>, SessionError> {
        let lock = Statement { sql: TAKE_WRITE_LOCK, params: Vec::new() };
        let mut sql = String::new();
        inline_all(&mut sql, std::iter::once(lock).chain(statements.iter().cloned()))?;
        match self.remote.batch(&sql).await {
            // A database without the lease table (its first acquire): the statements create it,
            // their first one (a `CREATE TABLE`) then being the write.
            Err(e) if e.to_string().contains("no such table") => {
                let mut sql = String::new();
                inline_all(&mut sql, statements.into_iter())?;
                self.remote.batch(&sql).await
            }
            result => result,
        }
    }
}

#[async_trait]
impl LeaseStore for LibSqlLeases {
    fn resource(&self) -> String {
        format!("{}#{}", self.remote.resource, self.name)
    }

    async fn acquire(&self, holder: &LeaseHolder, ttl: Duration) -> Result<LeaseGrant, SessionError> {
        let resource = self.resource();
        if let Some(grant) =
            self.run(lease::acquire(&self.name, holder, ttl), |row| lease::grant(&resource, row)).await?
        {
            return grant;
        }
        // A read: no write lock taken.
        let mut sql = String::new();
        inline_all(&mut sql, std::iter::once(lease::holder_query(&self.name)))?;
        let row = self.remote.batch(&sql).await?.and_then(|rows| rows.into_iter().next());
        let held = row.map(|row| {
            let refs: Vec<_> = row.iter().map(value_ref).collect();
            lease::locked(&resource, Some(&refs))
        });
        Err(held.unwrap_or_else(|| lease::locked(&resource, None)))
    }

    async fn renew(&self, token: u64, ttl: Duration) -> Result<LeaseGrant, SessionError> {
        let resource = self.resource();
        let statements =
            vec![Statement { sql: lease::CREATE_LEASES, params: Vec::new() }, lease::renew(&self.name, token, ttl)];
        match self.run(statements, |row| lease::grant(&resource, row)).await? {
            Some(grant) => grant,
            None => Err(lease::lost(&resource, token)),
        }
    }

    async fn release(&self, token: u64) -> Result<(), SessionError> {
        let statements =
            vec![Statement { sql: lease::CREATE_LEASES, params: Vec::new() }, lease::release(&self.name, token)];
        self.run(statements, |_| ()).await.map(drop)
    }

    fn batch(&self) -> Option<LeaseBatch> {
        Some(LeaseBatch { group: self.group.clone(), session: self.name.clone() })
    }

    /// One statement, one HTTP request, for every lease of the group.
    async fn renew_many(
        &self,
        renewals: &[Renewal],
        ttl: Duration,
    ) -> Result<Vec<Result<LeaseGrant, SessionError>>, SessionError> {
        let pairs: Vec<(&str, u64)> = renewals.iter().map(|r| (r.session.as_str(), r.token)).collect();
        let statements = vec![
            Statement { sql: lease::CREATE_LEASES, params: Vec::new() },
            lease::renew_many(pairs.iter().copied(), ttl),
        ];
        let rows = self.run_all(statements).await?;
        let refs: Vec<Vec<_>> = rows.iter().map(|row| row.iter().map(value_ref).collect()).collect();
        let base = &self.remote.resource;
        Ok(lease::grants(&pairs, refs.iter().map(Vec::as_slice), |name| format!("{base}#{name}")))
    }
}
