//! Where the sessions live and how their tables come to be: one PostgreSQL schema (namespace)
//! holding session-sql's tables in PostgreSQL's dialect (every named session of the database,
//! keyed by its id) and the leases; the read-only check that a database is ours (run before anything is written), and the
//! migrations, run under an advisory lock so that two clients never migrate at once.

use session_core::SessionError;
use session_sql::dialect::{Dialect, SCHEMA_TABLE};
use session_sql::{SessionId, Statement, APPLICATION_ID};

use crate::db::{cells, execute, query, Access, Db};

/// The PostgreSQL schema (namespace) the tables live in unless `PostgresOptions::schema` says
/// otherwise: a schema of their own keeps them apart from an application's tables in
/// `public`.
pub const DEFAULT_SCHEMA: &str = "layer_session";

/// `schema` as a quoted identifier (checked names hold no quote).
pub(crate) fn quoted(schema: &str) -> String {
    format!("\"{schema}\"")
}

/// Serializes setup work (schema and table creation, migrations) on this database.
pub(crate) async fn lock(tx: &deadpool_postgres::Transaction<'_>, db: &Db) -> Result<(), SessionError> {
    tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({APPLICATION_ID})")).await.map_err(|e| db.map(e))
}

/// What a session's schema holds: its tables, and our schema version (0: none).
pub(crate) async fn inspect(
    tx: &deadpool_postgres::Transaction<'_>,
    db: &Db,
    schema: &str,
) -> Result<(u32, Vec<String>), SessionError> {
    let rows = tx
        .query("SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = $1", &[&schema])
        .await
        .map_err(|e| db.map(e))?;
    let tables: Vec<String> = rows.iter().filter_map(|r| r.try_get::<_, String>(0).ok()).collect();
    if !tables.iter().any(|t| t == SCHEMA_TABLE) {
        return Ok((0, tables));
    }
    let rows = tx
        .query(&format!("SELECT application_id, version FROM {}.{SCHEMA_TABLE} WHERE id = 0", quoted(schema)), &[])
        .await
        .map_err(|e| db.map(e))?;
    let foreign = || {
        SessionError::invalid(
            format!("session database {}", db.resource),
            format!("its {SCHEMA_TABLE} table is not layer-client's"),
        )
    };
    let row = rows.first().ok_or_else(foreign)?;
    let (app, version) = match cells(row, &db.resource)?.as_slice() {
        [session_sql::SqlValueRef::Integer(a), session_sql::SqlValueRef::Integer(v)] => (*a, *v),
        _ => return Err(foreign()),
    };
    if app != i64::from(APPLICATION_ID) {
        return Err(foreign());
    }
    Ok((u32::try_from(version).map_err(|_| foreign())?, tables))
}

/// Refuses a schema that holds tables of someone else and not ours.
fn refuse_foreign(db: &Db, version: u32, tables: &[String]) -> Result<(), SessionError> {
    if version != 0 {
        return Ok(());
    }
    let foreign: Vec<&str> =
        tables.iter().map(String::as_str).filter(|t| !session_sql::lease::TABLES.contains(t)).collect();
    if foreign.is_empty() {
        return Ok(());
    }
    Err(SessionError::invalid(
        format!("session database {}", db.resource),
        format!("the schema holds other tables ({}) and no layer-client schema", foreign.join(", ")),
    ))
}

/// Reads (writes nothing) whether the schema is one this build may use: ours at a version it
/// knows, or empty or missing.
pub(crate) async fn check(db: &Db, schema: &str) -> Result<(), SessionError> {
    let (version, tables) = db.transaction(Access::Read, async |tx| inspect(tx, db, schema).await).await?;
    refuse_foreign(db, version, &tables)?;
    session_sql::migrations_from(version).map(drop)
}

/// Brings the schema to the current version and registers session `name`, in one transaction;
/// returns the session's id and the migration done (from, to).
pub(crate) async fn migrate(
    db: &Db,
    schema: &str,
    name: &str,
) -> Result<(SessionId, Option<(u32, u32)>), SessionError> {
    db.transaction(Access::Write, async |tx| {
        lock(tx, db).await?;
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", quoted(schema))).await.map_err(|e| db.map(e))?;
        let (version, tables) = inspect(tx, db, schema).await?;
        refuse_foreign(db, version, &tables)?;
        let mut reached = None;
        for (to, sql) in session_sql::migrations_from(version)? {
            tx.batch_execute(&Dialect::Postgres.translate(sql)).await.map_err(|e| db.map(e))?;
            for (table, q) in session_sql::backfill_queries(to) {
                let rows = query(tx, db, &Statement { sql: q, params: Vec::new() }).await?;
                for row in &rows {
                    let st = session_sql::backfill_statement(*table, &cells(row, &db.resource)?)?;
                    execute(tx, db, &st).await?;
                }
            }
            if let Some(sums) = session_sql::backfill_sums(to) {
                execute(tx, db, &Statement { sql: sums, params: Vec::new() }).await?;
            }
            tx.batch_execute(&Dialect::Postgres.set_version_sql(to)).await.map_err(|e| db.map(e))?;
            reached = Some((version, to));
        }
        // Under the advisory lock: no concurrent registration can take the same id.
        let [register, id] = session_sql::register_session(name)?;
        execute(tx, db, &register).await?;
        let rows = query(tx, db, &id).await?;
        let row = rows.first().ok_or_else(|| SessionError::corrupt(&db.resource, "sessions: the name vanished"))?;
        let sid = session_sql::session_id(&db.resource, &cells(row, &db.resource)?)?;
        Ok((sid, reached))
    })
    .await
}
