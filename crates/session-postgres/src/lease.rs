//! The lease of a session on the server: session-sql's lease statements in PostgreSQL's dialect
//! (the server's `clock_timestamp()`), on a pool of its own so that a renewal never waits behind a
//! large write of this process.
//!
//! The leases of every session this process owns in one database and schema form one batch
//! group: `session_core`'s shared renewer renews them all with one statement per interval
//! ([`RENEW_MANY`], PostgreSQL's own text of `session_sql::lease::RENEW_MANY`).

use std::time::Duration;

use session_core::async_trait;
use session_core::{LeaseBatch, LeaseGrant, LeaseHolder, LeaseStore, Renewal, SessionError};
use session_sql::{lease, SqlValue};

use crate::db::{cells, connect, execute, query, Access, Db, Tls};
use crate::schema;

/// `session_sql::lease::RENEW_MANY` in PostgreSQL's words: `$1` maps each session's name to its
/// token (a JSON object), `$2` is the time to live in milliseconds; one row per lease renewed.
const RENEW_MANY: &str = "UPDATE layer_session_leases AS l \
    SET expires_ms = CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT) + $2 \
    FROM jsonb_each_text(CAST($1 AS text)::jsonb) AS r(renew_name, renew_token) \
    WHERE l.name = r.renew_name AND l.token = CAST(r.renew_token AS BIGINT) AND l.holder IS NOT NULL \
    RETURNING l.name, l.token, l.expires_ms - CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)";

/// One session's lease on a PostgreSQL server: the [`LeaseStore`] a
/// `PostgresBackend` holds through a [`session_core::Lease`]. Public
/// for tools that look at or manage leases (and for conformance runs); a backend takes its own.
#[derive(Debug)]
pub struct PostgresLeases {
    db: Db,
    name: String,
    schema: String,
    /// The batch group: the server, database and user (the resource), the schema, and a digest
    /// of the whole URL (a password may grant other rights).
    group: String,
}

impl PostgresLeases {
    /// Connects (a pool of one connection of its own) to the lease of session `name` in the
    /// database at `url`, in the default schema (`layer_session`), as a backend would; every
    /// call fails with [`SessionError::Unavailable`] after `timeout`.
    pub fn connect(url: &str, name: &str, timeout: Duration) -> Result<Self, SessionError> {
        Self::with(url, name, schema::DEFAULT_SCHEMA, timeout, tokio_postgres::NoTls)
    }

    pub(crate) fn with<T>(url: &str, name: &str, schema: &str, timeout: Duration, tls: T) -> Result<Self, SessionError>
    where
        T: Tls,
        T::Stream: Sync + Send,
        T::TlsConnect: Sync + Send,
        <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio_postgres::Socket>>::Future: Send,
    {
        let db = connect(url, name, schema, timeout, tls, 1)?;
        let group = {
            use std::hash::{Hash as _, Hasher as _};
            let mut digest = std::collections::hash_map::DefaultHasher::new();
            url.hash(&mut digest);
            format!("postgres:{}:{schema}:{:016x}", db.resource, digest.finish())
        };
        Ok(PostgresLeases { db, name: name.to_owned(), schema: schema.to_owned(), group })
    }
}

#[async_trait]
impl LeaseStore for PostgresLeases {
    fn resource(&self) -> String {
        self.db.resource.clone()
    }

    async fn acquire(&self, holder: &LeaseHolder, ttl: Duration) -> Result<LeaseGrant, SessionError> {
        let db = &self.db;
        // The outcome (granted or `Locked`) is returned after the commit: the tables exist
        // either way.
        db.transaction(Access::Write, async |tx| {
            // Creating the schema and the lease tables is serialized with every other setup of
            // this database: two racing `CREATE ... IF NOT EXISTS` may both try.
            schema::lock(tx, db).await?;
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", schema::quoted(&self.schema)))
                .await
                .map_err(|e| db.map(e))?;
            let mut statements = lease::acquire(&self.name, holder, ttl);
            let take = statements.pop().ok_or_else(|| db.unavailable("no acquire statement"))?;
            for st in &statements {
                execute(tx, db, st).await?;
            }
            let rows = query(tx, db, &take).await?;
            Ok(match rows.first() {
                Some(row) => lease::grant(&db.resource, &cells(row, &db.resource)?),
                None => {
                    let rows = query(tx, db, &lease::holder_query(&self.name)).await?;
                    match rows.first() {
                        Some(row) => Err(lease::locked(&db.resource, Some(&cells(row, &db.resource)?))),
                        None => Err(lease::locked(&db.resource, None)),
                    }
                }
            })
        })
        .await?
    }

    async fn renew(&self, token: u64, ttl: Duration) -> Result<LeaseGrant, SessionError> {
        let db = &self.db;
        db.transaction(Access::Write, async |tx| {
            let rows = query(tx, db, &lease::renew(&self.name, token, ttl)).await?;
            match rows.first() {
                Some(row) => lease::grant(&db.resource, &cells(row, &db.resource)?),
                None => Err(lease::lost(&db.resource, token)),
            }
        })
        .await
    }

    async fn release(&self, token: u64) -> Result<(), SessionError> {
        let db = &self.db;
        db.transaction(Access::Write, async |tx| execute(tx, db, &lease::release(&self.name, token)).await.map(drop))
            .await
    }

    fn batch(&self) -> Option<LeaseBatch> {
        Some(LeaseBatch { group: self.group.clone(), session: self.name.clone() })
    }

    /// One statement, one round trip, for every lease of the group.
    async fn renew_many(
        &self,
        renewals: &[Renewal],
        ttl: Duration,
    ) -> Result<Vec<Result<LeaseGrant, SessionError>>, SessionError> {
        let db = &self.db;
        let pairs: Vec<(&str, u64)> = renewals.iter().map(|r| (r.session.as_str(), r.token)).collect();
        let statement = lease::renew_many(pairs.iter().copied(), ttl);
        let (Some(SqlValue::Text(json)), Some(SqlValue::Integer(ttl_ms))) =
            (statement.params.first(), statement.params.get(1))
        else {
            return Err(db.unavailable("renew_many: unexpected parameters"));
        };
        db.transaction(Access::Write, async |tx| {
            let rows = tx.query(RENEW_MANY, &[json, ttl_ms]).await.map_err(|e| db.map(e))?;
            let cells: Vec<Vec<_>> = rows.iter().map(|row| cells(row, &db.resource)).collect::<Result<_, _>>()?;
            Ok(lease::grants(&pairs, cells.iter().map(Vec::as_slice), |_| db.resource.clone()))
        })
        .await
    }
}
