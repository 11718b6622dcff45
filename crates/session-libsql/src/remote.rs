//! The remote side: session-sql's schema on a libSQL server, over Hrana (HTTP) with the
//! `libsql` crate's remote client.

use std::fmt::Write as _;
use std::time::Duration;

use session_core::{SessionData, SessionError};
use session_sql::{self as schema, SessionRows, SqlValue, SqlValueRef, Statement};
use tokio::sync::Mutex;
use tracing::field::Empty;
use tracing::instrument::WithSubscriber as _;
use tracing::{Dispatch, Instrument as _, Span};

/// The auxiliary table: a counter every write transaction through this crate increments, so
/// that an embedded replica can tell "nobody else wrote" from "pull again" with one read.
/// It is not part of the session schema (a local SQLite file has none).
pub(crate) const GENERATION_TABLE: &str = "write_generation";

const CREATE_GENERATION: &str = "CREATE TABLE IF NOT EXISTS write_generation \
     (id INTEGER PRIMARY KEY CHECK (id = 0), value INTEGER NOT NULL);\n\
     INSERT INTO write_generation (id, value) VALUES (0, 0) ON CONFLICT (id) DO NOTHING;\n";
const BUMP_GENERATION: &str = "UPDATE write_generation SET value = value + 1 WHERE id = 0;\n";
const READ_GENERATION: &str = "SELECT value FROM write_generation WHERE id = 0";

/// How long one call may take before the server counts as unreachable.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The server's generation counter after a write, or as of a load.
pub(crate) type Generation = i64;

pub(crate) struct Remote {
    // One connection (one HTTP client with its pool); calls are serialized on it.
    conn: Mutex<libsql::Connection>,
    _db: libsql::Database,
    /// The URL without credentials, for messages.
    pub(crate) resource: String,
    timeout: Duration,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("resource", &self.resource).finish_non_exhaustive()
    }
}

/// The URL as messages and logs show it: without `user:password@` and without the query
/// (which may carry `authToken=`).
pub(crate) fn shown_url(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or_default();
    match no_query.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => no_query.to_owned(),
        },
        None => no_query.to_owned(),
    }
}

/// Checks the URL and gives the one the HTTP client uses (`libsql://` is HTTPS).
pub(crate) fn http_url(url: &str) -> Result<String, SessionError> {
    let shown = shown_url(url);
    let bad = |reason: &str| SessionError::invalid("libSQL URL", format!("{shown:?}: {reason}"));
    let (scheme, rest) =
        url.split_once("://").ok_or_else(|| bad("no scheme (expected libsql://, https:// or http://)"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if host.contains('@') {
        return Err(bad("credentials belong in the auth token, not in the URL"));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "libsql" | "https" => Ok(format!("https://{rest}")),
        "http" => Ok(format!("http://{rest}")),
        other => Err(bad(&format!("unsupported scheme {other:?} (expected libsql://, https:// or http://)"))),
    }
}

impl Remote {
    /// Connects and brings the schema up to date (one round trip when it already is).
    pub(crate) async fn open(url: &str, auth_token: &str, timeout: Duration) -> Result<Remote, SessionError> {
        let http = http_url(url)?;
        let resource = http.split(['?', '#']).next().unwrap_or_default().to_owned();
        let db = libsql::Builder::new_remote(http, auth_token.to_owned())
            .build()
            .with_subscriber(Dispatch::none())
            .await
            .map_err(|e| map_error(e, &resource))?;
        let conn = tracing::dispatcher::with_default(&Dispatch::none(), || db.connect())
            .map_err(|e| map_error(e, &resource))?;
        let remote = Remote { conn: Mutex::new(conn), _db: db, resource, timeout };
        remote.setup().await?;
        Ok(remote)
    }

    async fn timed<T>(
        &self,
        conn: &libsql::Connection,
        f: impl std::future::Future<Output = Result<T, SessionError>>,
    ) -> Result<T, SessionError> {
        // The libsql client logs every SQL text it sends at TRACE, and a write's text carries the
        // auth keys as literals (see `inline`): its own events are silenced for our calls, so
        // that no subscriber, at any level, ever sees a key. Ours are emitted outside.
        let result = match tokio::time::timeout(self.timeout, f.with_subscriber(Dispatch::none())).await {
            Ok(r) => r,
            Err(_) => Err(SessionError::Unavailable {
                resource: self.resource.clone(),
                source: format!("no answer within {:?}", self.timeout).into(),
            }),
        };
        if result.is_err() {
            // Forget any half-open Hrana stream, so the next call starts clean.
            conn.reset().with_subscriber(Dispatch::none()).await;
        }
        result
    }

    async fn setup(&self) -> Result<(), SessionError> {
        // Two clients may migrate at once: the loser's transaction fails and rolls back, and the
        // next round sees the winner's version.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (version, tables) = self.inspect().await?;
            if version == 0 {
                let foreign: Vec<&String> =
                    tables.iter().filter(|t| t.as_str() != GENERATION_TABLE && !t.starts_with("sqlite_")).collect();
                if !foreign.is_empty() {
                    let names: Vec<&str> = foreign.iter().map(|s| s.as_str()).collect();
                    return Err(SessionError::invalid(
                        format!("session database {}", self.resource),
                        format!(
                            "it holds other tables ({}) and no layer-client schema; use an empty database",
                            names.join(", ")
                        ),
                    ));
                }
            }
            let to = schema::migrations_from(version)?.last().map(|(t, _)| t);
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
            if version > 0 && schema::migrations_from(version)?.any(|(t, _)| !schema::backfill_queries(t).is_empty()) {
                let result = self.migrate_with_backfill(version).instrument(migrate.clone()).await;
                migrated(result.is_ok());
                match result {
                    Ok(()) => return Ok(()),
                    Err(SessionError::Backend { .. }) if attempts < 3 => continue,
                    Err(e) => return Err(e),
                }
            }
            let mut sql = String::new();
            for (target, migration) in schema::migrations_from(version)? {
                sql.push_str(&portable_migration(migration));
                sql.push_str(";\n");
                sql.push_str(&schema::set_version_sql(target));
                sql.push_str(";\n");
            }
            if sql.is_empty() && tables.iter().any(|t| t == GENERATION_TABLE) {
                return Ok(());
            }
            sql.push_str(CREATE_GENERATION);
            let result = self.batch(&sql).instrument(migrate.clone()).await;
            migrated(result.is_ok());
            match result {
                Ok(_) => return Ok(()),
                Err(SessionError::Backend { .. }) if attempts < 3 => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Migrates a database that may hold rows, in one interactive transaction: a step whose new
    /// columns need values computed from the rows (the checksums of version 3) reads them and
    /// writes those values before the step's version is recorded.
    async fn migrate_with_backfill(&self, version: u32) -> Result<(), SessionError> {
        let conn = self.conn.lock().await;
        self.timed(&conn, async {
            let tx = conn.transaction().await.map_err(|e| self.map(e))?;
            for (target, migration) in schema::migrations_from(version)? {
                tx.execute_batch(&portable_migration(migration)).await.map_err(|e| self.map(e))?;
                for (table, query) in schema::backfill_queries(target) {
                    let rows = tx.query(query, ()).await.map_err(|e| self.map(e))?;
                    let mut plan = Vec::new();
                    for row in collect(rows).await.map_err(|e| self.map(e))? {
                        let refs: Vec<SqlValueRef<'_>> = row.iter().map(value_ref).collect();
                        plan.push(schema::backfill_statement(*table, &refs)?);
                    }
                    let mut sql = String::new();
                    inline_all(&mut sql, plan.into_iter())?;
                    if !sql.is_empty() {
                        tx.execute_batch(&sql).await.map_err(|e| self.map(e))?;
                    }
                }
                if let Some(sql) = schema::backfill_sums(target) {
                    tx.execute_batch(sql).await.map_err(|e| self.map(e))?;
                }
                tx.execute_batch(&schema::set_version_sql(target)).await.map_err(|e| self.map(e))?;
            }
            tx.execute_batch(CREATE_GENERATION).await.map_err(|e| self.map(e))?;
            tx.commit().await.map_err(|e| self.map(e))?;
            Ok(())
        })
        .await
    }

    /// `PRAGMA user_version` and the tables, from one snapshot.
    async fn inspect(&self) -> Result<(u32, Vec<String>), SessionError> {
        let conn = self.conn.lock().await;
        self.timed(&conn, async {
            let tx = conn.transaction().await.map_err(|e| self.map(e))?;
            let mut version = 0;
            let mut rows = tx.query("PRAGMA user_version", ()).await.map_err(|e| self.map(e))?;
            if let Some(row) = rows.next().await.map_err(|e| self.map(e))? {
                if let libsql::Value::Integer(v) = row.get_value(0).map_err(|e| self.map(e))? {
                    version = u32::try_from(v).unwrap_or(u32::MAX);
                }
            }
            let mut tables = Vec::new();
            let mut rows = tx
                .query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name", ())
                .await
                .map_err(|e| self.map(e))?;
            while let Some(row) = rows.next().await.map_err(|e| self.map(e))? {
                if let libsql::Value::Text(name) = row.get_value(0).map_err(|e| self.map(e))? {
                    tables.push(name);
                }
            }
            tx.commit().await.map_err(|e| self.map(e))?;
            Ok((version, tables))
        })
        .await
    }

    /// Runs `sql` (several statements) as one transaction: all or nothing. Returns the rows of
    /// the last statement, when the server sent them.
    async fn batch(&self, sql: &str) -> Result<Option<Vec<Vec<libsql::Value>>>, SessionError> {
        let conn = self.conn.lock().await;
        self.timed(&conn, async {
            let mut results = conn.execute_transactional_batch(sql).await.map_err(|e| self.map(e))?;
            let mut last = None;
            while let Some(rows) = results.next_stmt_row() {
                last = rows;
            }
            match last {
                Some(rows) => Ok(Some(collect(rows).await.map_err(|e| self.map(e))?)),
                None => Ok(None),
            }
        })
        .await
    }

    /// Runs `plan` in one transaction (one HTTP request), bumping the generation with it.
    /// Returns the generation the write produced when the server reported it (see
    /// [`Remote::generation`] otherwise).
    pub(crate) async fn write(
        &self,
        plan: impl Iterator<Item = Statement>,
    ) -> Result<Option<Generation>, SessionError> {
        let mut sql = String::new();
        inline_all(&mut sql, plan)?;
        sql.push_str(BUMP_GENERATION);
        sql.push_str(READ_GENERATION);
        // The SQL text carries the rows' values (keys included): its size is logged, never it.
        tracing::debug!(bytes = sql.len(), "sending one write transaction");
        let rows = self.batch(&sql).await?;
        // Batches ask for no rows; sqld sends them anyway. A server that does not gives `None`,
        // and the caller reads the counter separately.
        Ok(rows.and_then(|rows| match rows.first().and_then(|r| r.first()) {
            Some(libsql::Value::Integer(v)) => Some(*v),
            _ => None,
        }))
    }

    /// The server's generation counter now (the embedded replica's check for other writers).
    #[cfg(feature = "local")]
    pub(crate) async fn generation(&self) -> Result<Generation, SessionError> {
        let conn = self.conn.lock().await;
        self.timed(&conn, async {
            let mut rows = conn.query(READ_GENERATION, ()).await.map_err(|e| self.map(e))?;
            let row = rows.next().await.map_err(|e| self.map(e))?;
            match row.map(|r| r.get_value(0)).transpose().map_err(|e| self.map(e))? {
                Some(libsql::Value::Integer(v)) => Ok(v),
                _ => Err(SessionError::corrupt(&self.resource, format!("{GENERATION_TABLE}: no counter row"))),
            }
        })
        .await
    }

    /// The stored session and the generation it belongs to, read in one transaction.
    ///
    /// Round trips: `BEGIN`, one batch for the generation and the small tables, one request per
    /// page of [`PAGE_ROWS`] peers (and channels), `COMMIT`. Pages come back as one JSON text per
    /// page built by the server (`json_group_array`), which is several times cheaper to move and
    /// decode than Hrana's per-value encoding.
    pub(crate) async fn load(&self) -> Result<(Option<SessionData>, Generation), SessionError> {
        let conn = self.conn.lock().await;
        self.timed(&conn, async {
            let tx = conn.transaction().await.map_err(|e| self.map(e))?;
            let mut out = SessionRows::new(self.resource.clone());
            let small: Vec<(schema::Table, &str)> =
                schema::LOAD_QUERIES.iter().copied().filter(|(t, _)| !is_large(*t) && !is_blobs(*t)).collect();
            let mut sql = String::from(READ_GENERATION);
            for (_, q) in &small {
                sql.push_str(";\n");
                sql.push_str(q);
            }
            let mut results = tx.execute_batch(&sql).await.map_err(|e| self.map(e))?;
            let mut sets = Vec::new();
            while let Some(rows) = results.next_stmt_row() {
                sets.push(match rows {
                    Some(rows) => Some(collect(rows).await.map_err(|e| self.map(e))?),
                    None => None,
                });
            }
            let generation = match sets.first().and_then(|s| s.as_ref()).and_then(|rows| rows.first()) {
                Some(row) => match row.first() {
                    Some(libsql::Value::Integer(v)) => *v,
                    _ => {
                        return Err(SessionError::corrupt(
                            &self.resource,
                            format!("{GENERATION_TABLE}: not an integer"),
                        ))
                    }
                },
                // The counter row always exists: no row means the server withheld the rows of the
                // batch (it may: batches ask for none). Read each query on its own instead.
                None => {
                    sets.clear();
                    for q in std::iter::once(READ_GENERATION).chain(small.iter().map(|(_, q)| *q)) {
                        let rows = tx.query(q, ()).await.map_err(|e| self.map(e))?;
                        sets.push(Some(collect(rows).await.map_err(|e| self.map(e))?));
                    }
                    match sets.first().and_then(|s| s.as_ref()).and_then(|r| r.first()).and_then(|r| r.first()) {
                        Some(libsql::Value::Integer(v)) => *v,
                        _ => {
                            return Err(SessionError::corrupt(
                                &self.resource,
                                format!("{GENERATION_TABLE}: no counter row"),
                            ))
                        }
                    }
                }
            };
            if sets.len() != small.len() + 1 {
                return Err(SessionError::Backend {
                    backend: "libsql".to_owned(),
                    source: format!("the server answered {} of {} queries", sets.len(), small.len() + 1).into(),
                });
            }
            for ((table, _), rows) in small.iter().zip(sets.iter().skip(1)) {
                for row in rows.iter().flatten() {
                    let refs: Vec<SqlValueRef<'_>> = row.iter().map(value_ref).collect();
                    out.row(*table, &refs)?;
                }
            }
            // In the order of `LOAD_QUERIES`: chunks before the peer rows over them.
            for (table, q) in schema::LOAD_QUERIES {
                if is_blobs(table) {
                    self.load_chunk_pages(&tx, table, &mut out).await?;
                } else if is_large(table) {
                    self.load_pages(&tx, table, q, &mut out).await?;
                }
            }
            tx.commit().await.map_err(|e| self.map(e))?;
            Ok((out.finish()?, generation))
        })
        .await
    }

    /// Reads a possibly large table in pages of JSON built by the server.
    async fn load_pages(
        &self,
        tx: &libsql::Transaction,
        table: schema::Table,
        query: &str,
        out: &mut SessionRows,
    ) -> Result<(), SessionError> {
        let Some(columns) = select_columns(query) else {
            return self.load_plain(tx, table, query, out).await;
        };
        let mut offset: u64 = 0;
        let mut page: u64 = PAGE_ROWS;
        loop {
            let sql = format!(
                "SELECT count(*), json_group_array(json_array({})) FROM ({query} LIMIT {page} OFFSET {offset})",
                columns.join(", ")
            );
            let rows = match tx.execute_batch(&sql).await {
                Ok(mut results) => match results.next_stmt_row().flatten() {
                    Some(rows) => collect(rows).await.map_err(|e| self.map(e))?,
                    None => Vec::new(),
                },
                Err(e) if too_large(&e) && page > 1 => {
                    page /= 2;
                    continue;
                }
                Err(e) => return Err(self.map(e)),
            };
            // An aggregate always returns one row; none means the server withheld batch rows.
            let Some(row) = rows.first() else {
                return self.load_plain(tx, table, query, out).await;
            };
            let (Some(libsql::Value::Integer(n)), Some(libsql::Value::Text(json))) = (row.first(), row.get(1)) else {
                return Err(SessionError::corrupt(&self.resource, "a page of rows that is not JSON text"));
            };
            let decoded: Vec<Vec<serde_json::Value>> = serde_json::from_str(json)
                .map_err(|e| SessionError::corrupt(&self.resource, format!("a page of rows: {e}")))?;
            let bad = || SessionError::corrupt(&self.resource, "a page of rows with a value JSON cannot carry exactly");
            let mut refs = [SqlValueRef::Null; 16];
            for values in &decoded {
                if values.len() > refs.len() {
                    return Err(SessionError::corrupt(&self.resource, "a row with too many columns"));
                }
                for (slot, v) in refs.iter_mut().zip(values) {
                    *slot = json_ref(v).ok_or_else(bad)?;
                }
                out.row(table, refs.get(..values.len()).unwrap_or_default())?;
            }
            let n = u64::try_from(*n).unwrap_or(0);
            if n < page {
                return Ok(());
            }
            offset += n;
        }
    }

    /// Reads `peer_chunks` a few rows per request (blobs travel as base64, so a million peers
    /// would exceed the server's response limit in one), keyed by position. A page the server
    /// finds too large is halved; a single chunk still too large is read in pieces.
    async fn load_chunk_pages(
        &self,
        tx: &libsql::Transaction,
        table: schema::Table,
        out: &mut SessionRows,
    ) -> Result<(), SessionError> {
        let mut after: i64 = -1;
        let mut page: i64 = CHUNKS_PER_PAGE;
        loop {
            let rows = match tx.query(schema::LOAD_PEER_CHUNKS_AFTER, libsql::params![after, page]).await {
                Ok(rows) => collect(rows).await,
                Err(e) => Err(e),
            };
            let rows = match rows {
                Ok(rows) => rows,
                Err(e) if too_large(&e) && page > 1 => {
                    page /= 2;
                    continue;
                }
                Err(e) if too_large(&e) => {
                    match self.load_chunk_in_pieces(tx, table, after, out).await? {
                        Some(pos) => after = pos,
                        None => return Ok(()),
                    }
                    continue;
                }
                Err(e) => return Err(self.map(e)),
            };
            for row in &rows {
                let refs: Vec<SqlValueRef<'_>> = row.iter().map(value_ref).collect();
                out.row(table, &refs)?;
                after = self.next_pos(row.first(), after)?;
            }
            if rows.len() < usize::try_from(page).unwrap_or(usize::MAX) {
                return Ok(());
            }
        }
    }

    /// Reads the first chunk after `after` in pieces small enough for the server's response
    /// limit. Returns its position (`None`: there is no such chunk).
    async fn load_chunk_in_pieces(
        &self,
        tx: &libsql::Transaction,
        table: schema::Table,
        after: i64,
        out: &mut SessionRows,
    ) -> Result<Option<i64>, SessionError> {
        let rows = tx
            .query(
                "SELECT pos, peers, lo_class, lo_id, hi_class, hi_id, crc, length(data) FROM peer_chunks \
                 WHERE pos > ?1 ORDER BY pos LIMIT 1",
                libsql::params![after],
            )
            .await
            .map_err(|e| self.map(e))?;
        let rows = collect(rows).await.map_err(|e| self.map(e))?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let pos = self.next_pos(row.first(), after)?;
        let (Some(peers), Some(libsql::Value::Integer(len))) = (row.get(1), row.get(7)) else {
            return Err(SessionError::corrupt(&self.resource, "peer_chunks.data: not a blob"));
        };
        let mut data = Vec::with_capacity(usize::try_from(*len).unwrap_or(0));
        let mut piece: i64 = 16 * 1024;
        while i64::try_from(data.len()).unwrap_or(i64::MAX) < *len {
            let from = i64::try_from(data.len()).unwrap_or(i64::MAX) + 1;
            let result = match tx
                .query("SELECT substr(data, ?1, ?2) FROM peer_chunks WHERE pos = ?3", libsql::params![from, piece, pos])
                .await
            {
                Ok(rows) => collect(rows).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(rows) => match rows.first().and_then(|r| r.first()) {
                    Some(libsql::Value::Blob(b)) if !b.is_empty() => data.extend_from_slice(b),
                    _ => {
                        return Err(SessionError::corrupt(&self.resource, "peer_chunks.data: shorter than its length"))
                    }
                },
                Err(e) if too_large(&e) && piece > 256 => piece /= 2,
                Err(e) => return Err(self.map(e)),
            }
        }
        let column = |i: usize| row.get(i).map_or(SqlValueRef::Null, value_ref);
        let row = [
            SqlValueRef::Integer(pos),
            value_ref(peers),
            column(2),
            column(3),
            column(4),
            column(5),
            SqlValueRef::Blob(&data),
            column(6),
        ];
        out.row(table, &row)?;
        Ok(Some(pos))
    }

    fn next_pos(&self, pos: Option<&libsql::Value>, after: i64) -> Result<i64, SessionError> {
        match pos {
            Some(libsql::Value::Integer(pos)) if *pos > after => Ok(*pos),
            _ => Err(SessionError::corrupt(&self.resource, "peer_chunks.pos: not increasing")),
        }
    }

    /// Reads a table row by row (Hrana's cursor): slower, but asks nothing of the server.
    async fn load_plain(
        &self,
        tx: &libsql::Transaction,
        table: schema::Table,
        query: &str,
        out: &mut SessionRows,
    ) -> Result<(), SessionError> {
        let rows = tx.query(query, ()).await.map_err(|e| self.map(e))?;
        for row in collect(rows).await.map_err(|e| self.map(e))? {
            let refs: Vec<SqlValueRef<'_>> = row.iter().map(value_ref).collect();
            out.row(table, &refs)?;
        }
        Ok(())
    }

    fn map(&self, e: libsql::Error) -> SessionError {
        map_error(e, &self.resource)
    }
}

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

/// Rows per page of a large table: about 60 bytes of JSON per peer, far below sqld's default
/// 10 MB response limit (a page that still exceeds it is halved and asked again).
const PAGE_ROWS: u64 = 20_000;

/// The tables read in pages: those that grow with the session and hold no blobs (JSON carries
/// integers and text exactly, but not blobs).
fn is_large(table: schema::Table) -> bool {
    matches!(table, schema::Table::Peers | schema::Table::PeerRemovals | schema::Table::Channels)
}

/// The server refused to send a response over its size limit.
fn too_large(e: &libsql::Error) -> bool {
    e.to_string().contains("RESPONSE_TOO_LARGE")
}

/// The table of blobs that grows with the session, read in pages of its own.
fn is_blobs(table: schema::Table) -> bool {
    matches!(table, schema::Table::PeerChunks)
}

/// Chunks per request: up to 4,096 peers each, about 2 MB of blob per page at most (about
/// 3 MB as base64).
const CHUNKS_PER_PAGE: i64 = 32;

/// The column names of a `SELECT a, b, c FROM ...` query, when it has that simple shape.
fn select_columns(query: &str) -> Option<Vec<&str>> {
    let list = query.strip_prefix("SELECT ")?.split_once(" FROM ")?.0;
    let columns: Vec<&str> = list.split(',').map(str::trim).collect();
    columns
        .iter()
        .all(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_'))
        .then_some(columns)
}

fn json_ref(v: &serde_json::Value) -> Option<SqlValueRef<'_>> {
    Some(match v {
        serde_json::Value::Null => SqlValueRef::Null,
        serde_json::Value::String(s) => SqlValueRef::Text(s),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValueRef::Integer(i),
            None => SqlValueRef::Real(n.as_f64()?),
        },
        _ => return None,
    })
}

async fn collect(mut rows: libsql::Rows) -> Result<Vec<Vec<libsql::Value>>, libsql::Error> {
    let mut out = Vec::new();
    while let Some(row) = rows.next().await? {
        let mut values = Vec::with_capacity(usize::try_from(row.column_count()).unwrap_or(0));
        for i in 0..row.column_count() {
            values.push(row.get_value(i)?);
        }
        out.push(values);
    }
    Ok(out)
}

fn value_ref(v: &libsql::Value) -> SqlValueRef<'_> {
    match v {
        libsql::Value::Null => SqlValueRef::Null,
        libsql::Value::Integer(i) => SqlValueRef::Integer(*i),
        libsql::Value::Real(f) => SqlValueRef::Real(*f),
        libsql::Value::Text(t) => SqlValueRef::Text(t),
        libsql::Value::Blob(b) => SqlValueRef::Blob(b),
    }
}

/// Most rows one multi-row `VALUES` statement carries (SQLite's default statement limit is
/// 1,000,000 bytes; 500 DC rows with their keys stay far below it).
const MERGE_ROWS: usize = 500;

/// A statement whose text is `head (tuple) tail` with one `VALUES (...)` tuple of parameters:
/// consecutive statements with the same text become one `head (t1), (t2), ... tail`, which
/// SQLite runs row by row in order (an upsert's `ON CONFLICT` applies to each row as it would
/// to each statement). Fewer statements to parse and prepare, on both sides.
fn split_values(sql: &'static str) -> Option<(&'static str, &'static str, &'static str)> {
    let at = sql.find(" VALUES (")? + " VALUES ".len();
    let close = at + sql.get(at..)?.find(')')?;
    let (head, tuple, tail) = (sql.get(..at)?, sql.get(at..=close)?, sql.get(close + 1..)?);
    if tail.contains(" VALUES ") || tuple.get(1..)?.contains('(') {
        return None;
    }
    Some((head, tuple, tail))
}

/// Appends the statements of `plan`, merging runs of the same `INSERT ... VALUES` statement.
pub(crate) fn inline_all(out: &mut String, plan: impl Iterator<Item = Statement>) -> Result<(), SessionError> {
    let mut run: Vec<Statement> = Vec::new();
    for statement in plan {
        if let Some(first) = run.first() {
            if std::ptr::eq(first.sql, statement.sql) {
                run.push(statement);
                continue;
            }
            flush_run(out, &mut run)?;
        }
        if split_values(statement.sql).is_some() {
            run.push(statement);
        } else {
            inline(out, &statement)?;
            out.push_str(";\n");
        }
    }
    flush_run(out, &mut run)
}

/// Runs at least this long whose values JSON carries exactly are sent as one JSON text.
const JSON_MIN_ROWS: usize = 16;
/// The size after which a JSON text is closed and a new statement started.
const JSON_BYTES: usize = 512 * 1024;

/// Writes a run of the same `INSERT ... VALUES` statement (see [`split_values`]).
///
/// Long runs of integers and text become `INSERT ... SELECT json_extract(value, '$[0]'), ...
/// FROM json_each('<rows as JSON>') WHERE true <tail>`: the rows travel as one string literal,
/// which the client's SQL parser and the server read at memory speed, instead of thousands of
/// tokens. `json_each` walks the array in order, so rows are inserted (and upserted) in the
/// order of the plan. Other runs become multi-row `VALUES`.
fn flush_run(out: &mut String, run: &mut Vec<Statement>) -> Result<(), SessionError> {
    let Some(sql) = run.first().map(|s| s.sql) else {
        return Ok(());
    };
    let Some((head, tuple, tail)) = split_values(sql) else {
        for statement in run.drain(..) {
            inline(out, &statement)?;
            out.push_str(";\n");
        }
        return Ok(());
    };
    let positions = tuple_params(tuple);
    let insert = head.strip_suffix("VALUES ");
    if let (true, Some(positions), Some(insert)) = (run.len() >= JSON_MIN_ROWS, positions, insert) {
        if run.iter().all(|s| s.params.iter().all(json_exact)) {
            let select: Vec<String> = positions.iter().map(|i| format!("json_extract(value, '$[{i}]')")).collect();
            let select = select.join(", ");
            let mut rows = run.drain(..).peekable();
            while rows.peek().is_some() {
                out.push_str(insert);
                out.push_str("SELECT ");
                out.push_str(&select);
                out.push_str(" FROM json_each('[");
                let start = out.len();
                let mut first = true;
                while out.len() - start < JSON_BYTES {
                    let Some(row) = rows.next() else { break };
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    json_row(out, &row.params);
                }
                out.push_str("]') WHERE true");
                out.push_str(tail);
                out.push_str(";\n");
            }
            return Ok(());
        }
    }
    for chunk in run.chunks(MERGE_ROWS) {
        out.push_str(head);
        for (i, row) in chunk.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            inline(out, &Statement { sql: tuple, params: row.params.clone() })?;
        }
        out.push_str(tail);
        out.push_str(";\n");
    }
    run.clear();
    Ok(())
}

/// The 0-based parameter index of each element of a `(?1, ?2, ...)` tuple, when every element
/// is a parameter.
fn tuple_params(tuple: &str) -> Option<Vec<usize>> {
    let inner = tuple.strip_prefix('(')?.strip_suffix(')')?;
    inner.split(',').map(|p| p.trim().strip_prefix('?')?.parse::<usize>().ok()?.checked_sub(1)).collect()
}

/// Whether SQLite's JSON functions give this value back exactly, with its type.
fn json_exact(v: &SqlValue) -> bool {
    match v {
        SqlValue::Null | SqlValue::Integer(_) => true,
        SqlValue::Text(t) => !t.contains('\0'),
        SqlValue::Real(_) | SqlValue::Blob(_) => false,
    }
}

/// Appends `[v1, v2, ...]` as JSON, inside a SQL string literal (`'` doubled).
fn json_row(out: &mut String, params: &[SqlValue]) {
    out.push('[');
    for (i, v) in params.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match v {
            SqlValue::Integer(n) => {
                let _ = write!(out, "{n}");
            }
            SqlValue::Text(t) => {
                let json = serde_json::Value::String(t.clone()).to_string();
                out.push_str(&json.replace('\'', "''"));
            }
            _ => out.push_str("null"),
        }
    }
    out.push(']');
}

/// Appends `statement` with its parameters written as SQL literals.
///
/// The libsql client sends a parameterised statement per round trip; a batch (one request, one
/// transaction) only takes SQL text. Parameters are therefore inlined: integers in decimal,
/// blobs as `X'..'`, text quoted with `''` (or as a cast blob when it holds a NUL). The SQL
/// texts of the schema contain no string literals, so every `?N` outside quotes is a parameter.
pub(crate) fn inline(out: &mut String, statement: &Statement) -> Result<(), SessionError> {
    let sql = statement.sql;
    let mut chars = sql.char_indices().peekable();
    let mut in_quote = false;
    while let Some((i, c)) = chars.next() {
        if in_quote {
            out.push(c);
            if c == '\'' {
                in_quote = false;
            }
            continue;
        }
        match c {
            '\'' => {
                in_quote = true;
                out.push(c);
            }
            '?' => {
                let start = i + 1;
                let mut end = start;
                while let Some(&(j, d)) = chars.peek() {
                    if !d.is_ascii_digit() {
                        break;
                    }
                    end = j + d.len_utf8();
                    chars.next();
                }
                let index: usize = sql.get(start..end).and_then(|n| n.parse().ok()).ok_or_else(|| {
                    SessionError::invalid("statement", format!("a parameter without a number in {sql:?}"))
                })?;
                let value = index.checked_sub(1).and_then(|i| statement.params.get(i)).ok_or_else(|| {
                    SessionError::invalid("statement", format!("parameter ?{index} is missing in {sql:?}"))
                })?;
                literal(out, value);
            }
            _ => out.push(c),
        }
    }
    Ok(())
}

fn literal(out: &mut String, value: &SqlValue) {
    match value {
        SqlValue::Null => out.push_str("NULL"),
        // `-9223372036854775808` would be read as minus a number that does not fit.
        SqlValue::Integer(i64::MIN) => out.push_str("(-9223372036854775807 - 1)"),
        SqlValue::Integer(v) if *v < 0 => {
            let _ = write!(out, "({v})");
        }
        SqlValue::Integer(v) => {
            let _ = write!(out, "{v}");
        }
        SqlValue::Real(v) if v.is_finite() => {
            let _ = write!(out, "{v:e}");
        }
        SqlValue::Real(_) => out.push_str("NULL"),
        SqlValue::Text(t) if t.contains('\0') => {
            out.push_str("CAST(");
            hex_blob(out, t.as_bytes());
            out.push_str(" AS TEXT)");
        }
        SqlValue::Text(t) => {
            out.push('\'');
            for c in t.chars() {
                if c == '\'' {
                    out.push('\'');
                }
                out.push(c);
            }
            out.push('\'');
        }
        SqlValue::Blob(b) => hex_blob(out, b),
    }
}

fn hex_blob(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2 + 3);
    out.push_str("X'");
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out.push('\'');
}

/// Maps a libsql client error to the kind a caller acts on. The client reports transport and
/// HTTP failures as text only (its error types are private), so the text is what is matched.
pub(crate) fn map_error(e: libsql::Error, resource: &str) -> SessionError {
    let text = e.to_string();
    let transport = matches!(e, libsql::Error::ConnectionFailed(_))
        || text.contains("http error")
        || text.contains("stream closed")
        || text.contains("Received an invalid baton");
    let status = http_status(&text);
    let source: session_core::BoxError = Box::new(e);
    match status {
        Some(401 | 403) => SessionError::Unauthorized { resource: resource.to_owned(), source },
        Some(408 | 429 | 500..=599) => SessionError::Unavailable { resource: resource.to_owned(), source },
        _ if transport => SessionError::Unavailable { resource: resource.to_owned(), source },
        _ => SessionError::Backend { backend: "libsql".to_owned(), source },
    }
}

fn http_status(text: &str) -> Option<u16> {
    let (_, rest) = text.split_once("status=")?;
    rest.get(..3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_round_trip_through_sql_text() {
        let st = Statement {
            sql: "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?10, ?1)",
            params: vec![
                SqlValue::Integer(i64::MIN),
                SqlValue::Text("it's".into()),
                SqlValue::Blob(vec![0, 255]),
                SqlValue::Null,
                SqlValue::Text("a\0b".into()),
                SqlValue::Integer(-5),
                SqlValue::Null,
                SqlValue::Null,
                SqlValue::Null,
                SqlValue::Integer(7),
            ],
        };
        let mut out = String::new();
        inline(&mut out, &st).expect("inline");
        assert_eq!(
            out,
            "INSERT INTO t VALUES ((-9223372036854775807 - 1), 'it''s', X'00ff', NULL, 7, (-9223372036854775807 - 1))"
        );
        let missing = Statement { sql: "SELECT ?2", params: vec![SqlValue::Null] };
        assert!(matches!(inline(&mut String::new(), &missing), Err(SessionError::Invalid { .. })));
    }

    #[test]
    fn runs_of_the_same_insert_are_merged_in_order() {
        const UPSERT: &str = "INSERT INTO t (a, b) VALUES (?1, ?2) ON CONFLICT (a) DO UPDATE SET b = excluded.b";
        const DELETE: &str = "DELETE FROM t WHERE a = ?1";
        let st = |sql, a: i64| Statement { sql, params: vec![SqlValue::Integer(a), SqlValue::Integer(a * 10)] };
        let mut out = String::new();
        inline_all(&mut out, [st(UPSERT, 1), st(UPSERT, 2), st(DELETE, 1), st(UPSERT, 3)].into_iter()).expect("inline");
        assert_eq!(
            out,
            "INSERT INTO t (a, b) VALUES (1, 10), (2, 20) ON CONFLICT (a) DO UPDATE SET b = excluded.b;\n\
             DELETE FROM t WHERE a = 1;\n\
             INSERT INTO t (a, b) VALUES (3, 30) ON CONFLICT (a) DO UPDATE SET b = excluded.b;\n"
        );
        let blob = |a: i64| Statement { sql: UPSERT, params: vec![SqlValue::Integer(a), SqlValue::Blob(vec![1])] };
        let mut out = String::new();
        inline_all(&mut out, (0..1200).map(blob)).expect("inline");
        assert_eq!(out.matches("INSERT").count(), 3, "at most {MERGE_ROWS} rows per statement");
        // Long runs of integers and text travel as JSON.
        let text = |a: i64| Statement { sql: UPSERT, params: vec![SqlValue::Integer(a), SqlValue::Text("o'k".into())] };
        let mut out = String::new();
        inline_all(&mut out, (0..20).map(text)).expect("inline");
        assert!(
            out.starts_with(
                "INSERT INTO t (a, b) SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') \
                 FROM json_each('[[0,\"o''k\"],[1,\"o''k\"],"
            ),
            "{out}"
        );
        assert!(out.ends_with("]') WHERE true ON CONFLICT (a) DO UPDATE SET b = excluded.b;\n"), "{out}");
        // Statements that are not one `VALUES` tuple are left alone.
        assert!(split_values("INSERT INTO t SELECT ?1 WHERE NOT EXISTS (SELECT 1)").is_none());
    }

    #[test]
    fn load_queries_have_plain_column_lists() {
        let counts: Vec<Option<usize>> =
            schema::LOAD_QUERIES.iter().map(|(_, q)| select_columns(q).map(|c| c.len())).collect();
        assert_eq!(counts, vec![Some(17), Some(9), Some(3), Some(8), Some(8), Some(3), Some(5)]);
    }

    #[test]
    fn urls() {
        assert_eq!(http_url("libsql://db-org.turso.io").ok().as_deref(), Some("https://db-org.turso.io"));
        assert_eq!(http_url("https://h:8080/x").ok().as_deref(), Some("https://h:8080/x"));
        assert_eq!(http_url("http://127.0.0.1:1").ok().as_deref(), Some("http://127.0.0.1:1"));
        for bad in ["db.turso.io", "ws://h", "https://", "https://user:pw@h"] {
            assert!(matches!(http_url(bad), Err(SessionError::Invalid { .. })), "{bad}");
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(http_status("Hrana: `api error: `status=401 Unauthorized, body=x``"), Some(401));
        assert_eq!(http_status("no status"), None);
    }

    #[test]
    fn migration_without_application_id() {
        let sql = portable_migration(schema::MIGRATIONS[0]);
        assert!(!sql.to_ascii_lowercase().contains("application_id"));
        assert!(sql.contains("CREATE TABLE peers"));
    }
}
