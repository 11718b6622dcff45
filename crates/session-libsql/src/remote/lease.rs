//! The lease of a session on the server (`session_sql::lease`'s statements over Hrana), on a
//! connection of its own: a renewal never waits behind a large write of this process, and a
//! write never waits behind a renewal.

use std::time::Duration;

use async_trait::async_trait;
use session_core::{LeaseGrant, LeaseHolder, LeaseStore, SessionError};
use session_sql::{lease, Statement};

use super::inline::inline_all;
use super::transport::value_ref;
use super::Remote;

/// One session's lease on a libSQL server: the [`LeaseStore`] that [`LibSqlBackend`](crate::LibSqlBackend)'s
/// remote and replica modes hold through a [`session_core::Lease`]. Public for tools that look
/// at or manage leases (and for third-party conformance runs); a backend takes its own.
#[derive(Debug)]
pub struct LibSqlLeases {
    remote: Remote,
    name: String,
}

impl LibSqlLeases {
    /// Connects (a connection of its own) to the lease of session `name` on the server at `url`
    /// (URL and token as for [`LibSqlBackend::open_remote`](crate::LibSqlBackend::open_remote));
    /// every call fails with [`SessionError::Unavailable`] after `timeout`.
    pub async fn connect(url: &str, auth_token: &str, timeout: Duration, name: &str) -> Result<Self, SessionError> {
        Ok(LibSqlLeases { remote: Remote::connect(url, auth_token, timeout).await?, name: name.to_owned() })
    }

    /// Runs `statements` as one transaction; the first row of the last statement, converted.
    async fn run<T>(
        &self,
        statements: Vec<Statement>,
        read: impl FnOnce(&[session_sql::SqlValueRef<'_>]) -> T,
    ) -> Result<Option<T>, SessionError> {
        let mut sql = String::new();
        inline_all(&mut sql, statements.into_iter())?;
        let rows = self.remote.batch(&sql).await?;
        Ok(rows.and_then(|rows| rows.into_iter().next()).map(|row| {
            let refs: Vec<_> = row.iter().map(value_ref).collect();
            read(&refs)
        }))
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
        let held = self.run(vec![lease::holder_query(&self.name)], |row| lease::locked(&resource, Some(row))).await?;
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
}
