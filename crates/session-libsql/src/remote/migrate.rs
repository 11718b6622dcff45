//! Bringing a server's schema up to date when a client opens it: the migrations of session-sql,
//! without the pragma a libSQL server refuses, with the checksum backfill of version 3 run as one
//! interactive transaction, and the generation tables the embedded replica reads.

use session_core::SessionError;
use session_sql::{SealRecord, SqlValueRef};
use tracing::field::Empty;
use tracing::{Instrument as _, Span};

use super::inline::inline_all;
use super::transport::{collect, value_ref};
use super::{Remote, CREATE_GENERATION, GENERATION_TABLE, HISTORY_TABLE};

impl Remote {
    /// Reads (writes nothing) whether the database is one this build may use: ours at a version
    /// it knows, or empty. Run before anything is written to it, the lease included. Returns
    /// what it read (the schema version and the tables), for [`Remote::setup`].
    pub(crate) async fn check(&self) -> Result<Checked, SessionError> {
        let (version, tables, seal) = self.inspect_with_seal().await?;
        self.refuse_foreign(version, &tables)?;
        session_sql::migrations_from(version).map(drop)?;
        Ok(Checked { version, tables, seal })
    }

    /// [`Remote::inspect`] and the seal record, from one snapshot in one request, so that an
    /// open of a database whose schema is current reads no more before its load. A database
    /// without the `seal` table (empty, older, not ours) fails that batch as a whole: it is
    /// inspected alone then, and its record (if a migration adds the table) read after setup.
    async fn inspect_with_seal(&self) -> Result<(u32, Vec<String>, Option<Option<SealRecord>>), SessionError> {
        let sql = format!("{INSPECT};\n{}", session_sql::LOAD_SEAL);
        let sets = match self.read_batch(&sql).await {
            Ok(Some(sets)) => sets,
            // An SQL error (no such table): nothing else is wrong with the server.
            Ok(None) | Err(SessionError::Backend { .. }) => {
                let (version, tables) = self.inspect().await?;
                return Ok((version, tables, None));
            }
            Err(e) => return Err(e),
        };
        let Some((version, tables)) = inspected(&sets) else {
            let (version, tables) = self.inspect_one_by_one().await?;
            return Ok((version, tables, None));
        };
        let seal = match sets.get(2) {
            Some(Some(rows)) => match rows.first() {
                None => Some(None),
                Some(row) => {
                    let refs: Vec<SqlValueRef<'_>> = row.iter().map(value_ref).collect();
                    Some(Some(SealRecord::from_row(&self.resource, &refs)?))
                }
            },
            // Rows withheld: read after setup.
            _ => None,
        };
        Ok((version, tables, seal))
    }

    fn refuse_foreign(&self, version: u32, tables: &[String]) -> Result<(), SessionError> {
        if version != 0 {
            return Ok(());
        }
        let foreign: Vec<&str> = tables
            .iter()
            .map(String::as_str)
            .filter(|t| {
                *t != GENERATION_TABLE
                    && *t != HISTORY_TABLE
                    && !session_sql::lease::TABLES.contains(t)
                    && !t.starts_with("sqlite_")
            })
            .collect();
        if foreign.is_empty() {
            return Ok(());
        }
        Err(SessionError::invalid(
            format!("session database {}", self.resource),
            format!("it holds other tables ({}) and no layer-client schema; use an empty database", foreign.join(", ")),
        ))
    }

    /// Brings the schema up to date. `checked`: what [`Remote::check`] read at this open. When
    /// it found the schema up to date, nothing is read again: a schema this build finds current
    /// changes only by a newer build's migration, which may as well come just after this
    /// open, so a second read after the lease would buy nothing but a round trip.
    ///
    /// Returns the seal record [`Remote::check`] read when nothing was migrated (`None`: read it
    /// now, [`Remote::check_seal`]).
    pub(crate) async fn setup(&self, checked: Checked) -> Result<Option<Option<SealRecord>>, SessionError> {
        let Checked { version, tables, seal } = checked;
        if session_sql::migrations_from(version)?.next().is_none()
            && [GENERATION_TABLE, HISTORY_TABLE].iter().all(|g| tables.iter().any(|t| t == g))
        {
            return Ok(seal);
        }
        // Two clients may migrate at once: the loser's transaction fails and rolls back, and the
        // next round sees the winner's version.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (version, tables) = self.inspect().await?;
            self.refuse_foreign(version, &tables)?;
            let to = session_sql::migrations_from(version)?.last().map(|(t, _)| t);
            let migrate = match to {
                Some(to) => tracing::info_span!(
                    "migrate",
                    backend = "libsql-remote",
                    url = %self.resource,
                    from = version,
                    to,
                    elapsed_us = Empty
                ),
                None => Span::none(),
            };
            let start = (!migrate.is_disabled()).then(std::time::Instant::now);
            let migrated = |ok: bool| {
                if let (Some(start), Some(to), true) = (start, to, ok) {
                    migrate.record("elapsed_us", crate::trace::micros(start));
                    migrate.in_scope(|| {
                        tracing::info!(url = %self.resource, from = version, to, "migrated the session schema");
                    });
                }
            };
            if version > 0
                && session_sql::migrations_from(version)?.any(|(t, _)| !session_sql::backfill_queries(t).is_empty())
            {
                let result = self.migrate_with_backfill(version).instrument(migrate.clone()).await;
                migrated(result.is_ok());
                match result {
                    Ok(()) => return Ok(None),
                    Err(SessionError::Backend { .. }) if attempts < 3 => continue,
                    Err(e) => return Err(e),
                }
            }
            let mut sql = String::new();
            for (target, migration) in session_sql::migrations_from(version)? {
                sql.push_str(&portable_migration(migration));
                sql.push_str(";\n");
                sql.push_str(&session_sql::set_version_sql(target));
                sql.push_str(";\n");
            }
            // A database of an older build has the counter but not the history id: created here.
            if sql.is_empty() && [GENERATION_TABLE, HISTORY_TABLE].iter().all(|g| tables.iter().any(|t| t == g)) {
                return Ok(None);
            }
            sql.push_str(CREATE_GENERATION);
            let result = self.batch(&sql).instrument(migrate.clone()).await;
            migrated(result.is_ok());
            match result {
                Ok(_) => return Ok(None),
                Err(SessionError::Backend { .. }) if attempts < 3 => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Migrates a database that may hold rows, in one interactive transaction: a step whose new
    /// columns need values computed from the rows (the checksums of version 3) reads them and
    /// writes those values before the step's version is recorded.
    async fn migrate_with_backfill(&self, version: u32) -> Result<(), SessionError> {
        let conn = self.lock().await?;
        self.timed(&conn, async {
            let tx = conn.transaction().await.map_err(|e| self.map(e))?;
            for (target, migration) in session_sql::migrations_from(version)? {
                tx.execute_batch(&portable_migration(migration)).await.map_err(|e| self.map(e))?;
                for (table, query) in session_sql::backfill_queries(target) {
                    let rows = tx.query(query, ()).await.map_err(|e| self.map(e))?;
                    let mut plan = Vec::new();
                    for row in collect(rows).await.map_err(|e| self.map(e))? {
                        let refs: Vec<SqlValueRef<'_>> = row.iter().map(value_ref).collect();
                        plan.push(session_sql::backfill_statement(*table, &refs)?);
                    }
                    let mut sql = String::new();
                    inline_all(&mut sql, plan.into_iter())?;
                    if !sql.is_empty() {
                        tx.execute_batch(&sql).await.map_err(|e| self.map(e))?;
                    }
                }
                if let Some(sql) = session_sql::backfill_sums(target) {
                    tx.execute_batch(sql).await.map_err(|e| self.map(e))?;
                }
                tx.execute_batch(&session_sql::set_version_sql(target)).await.map_err(|e| self.map(e))?;
            }
            tx.execute_batch(CREATE_GENERATION).await.map_err(|e| self.map(e))?;
            tx.commit().await.map_err(|e| self.map(e))?;
            Ok(())
        })
        .await
    }

    /// `PRAGMA user_version` and the tables, from one snapshot: one request (a transactional
    /// batch), where an interactive transaction took four (`BEGIN`, two queries, `COMMIT`).
    pub(crate) async fn inspect(&self) -> Result<(u32, Vec<String>), SessionError> {
        let sets = self.read_batch(INSPECT).await?.unwrap_or_default();
        match inspected(&sets) {
            Some(read) => Ok(read),
            None => self.inspect_one_by_one().await,
        }
    }

    /// [`Remote::inspect`] in an interactive read transaction (a statement per request).
    async fn inspect_one_by_one(&self) -> Result<(u32, Vec<String>), SessionError> {
        let conn = self.lock().await?;
        self.timed(&conn, self.inspect_in(&conn)).await
    }

    async fn inspect_in(&self, conn: &libsql::Connection) -> Result<(u32, Vec<String>), SessionError> {
        let tx = conn.transaction().await.map_err(|e| self.map(e))?;
        let mut version = 0;
        let mut rows = tx.query("PRAGMA user_version", ()).await.map_err(|e| self.map(e))?;
        if let Some(row) = rows.next().await.map_err(|e| self.map(e))? {
            if let libsql::Value::Integer(v) = row.get_value(0).map_err(|e| self.map(e))? {
                version = u32::try_from(v).unwrap_or(u32::MAX);
            }
        }
        let mut tables = Vec::new();
        let mut rows = tx.query(TABLES, ()).await.map_err(|e| self.map(e))?;
        while let Some(row) = rows.next().await.map_err(|e| self.map(e))? {
            if let libsql::Value::Text(name) = row.get_value(0).map_err(|e| self.map(e))? {
                tables.push(name);
            }
        }
        tx.commit().await.map_err(|e| self.map(e))?;
        Ok((version, tables))
    }
}

/// What [`Remote::check`] read: the schema version and the tables.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) version: u32,
    pub(crate) tables: Vec<String>,
    /// The seal record read in the same snapshot (`None`: not read, the database had no `seal`
    /// table or withheld the rows).
    pub(crate) seal: Option<Option<SealRecord>>,
}

/// The schema version and the tables from the first two answers of [`INSPECT`]. `None` when
/// the server withheld the rows: `PRAGMA user_version` always answers a row, but batches ask
/// for none, so the reads are made one by one then.
fn inspected(sets: &[Option<Vec<Vec<libsql::Value>>>]) -> Option<(u32, Vec<String>)> {
    let version = sets.first()?.as_ref()?.first()?.first()?;
    let version = match version {
        libsql::Value::Integer(v) => u32::try_from(*v).unwrap_or(u32::MAX),
        _ => 0,
    };
    let tables = sets
        .get(1)
        .and_then(Option::as_ref)
        .into_iter()
        .flatten()
        .filter_map(|row| match row.first() {
            Some(libsql::Value::Text(name)) => Some(name.clone()),
            _ => None,
        })
        .collect();
    Some((version, tables))
}

/// The database's tables, by name.
const TABLES: &str = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name";
/// What [`Remote::inspect`] reads, as one batch.
const INSPECT: &str = "PRAGMA user_version;\nSELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name";

/// The migration without `PRAGMA application_id = ...`: libSQL servers refuse to set it (only
/// `user_version` may be written over Hrana), so a remote database is recognised by its
/// `user_version` and tables instead.
fn portable_migration(sql: &str) -> String {
    sql.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.to_ascii_lowercase().starts_with("pragma application_id"))
        .collect::<Vec<_>>()
        .join(";\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_without_application_id() {
        let sql = portable_migration(session_sql::MIGRATIONS[0]);
        assert!(!sql.to_ascii_lowercase().contains("application_id"));
        assert!(sql.contains("CREATE TABLE peers"));
    }
}
