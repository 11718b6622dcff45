//! The read path: the session and its generation in one snapshot. A session that fits one
//! response (the common case) is one transactional batch, one request (over protobuf on a plain
//! `http://` server, see [`super::pipeline`]); a larger one is read in
//! one read transaction: the small tables in one batch, the large ones in pages of JSON the
//! server builds, and the peer chunks (blobs) a few per request.

use session_core::{SessionData, SessionError};
use session_sql::{SessionRows, SqlValueRef, Table, LOAD_PEER_CHUNKS_AFTER, LOAD_QUERIES};

use tokio::time::Instant;

use super::errors::too_large;
use super::inline::inline;
use super::pipeline::{malformed, Answer, Read};
use super::transport::{collect, value_ref};
use super::{Generation, Remote, GENERATION_TABLE, READ_GENERATION};

/// A one-batch load's answer, in the form it came in.
enum Fetched {
    Protobuf(Answer),
    Json(Vec<Vec<Vec<libsql::Value>>>),
}

impl Remote {
    /// The stored session and the generation it belongs to, read in one transaction: one
    /// request when it fits one response ([`Remote::load_in_one_batch`]), else in pages.
    ///
    /// Large tables come back as one JSON text per page built by the server
    /// (`json_group_array`), which is several times cheaper to move and decode than Hrana's
    /// per-value encoding.
    pub(crate) async fn load(&self) -> Result<(Option<SessionData>, Generation), SessionError> {
        if let Some(loaded) = self.load_in_one_batch().await? {
            return Ok(loaded);
        }
        self.load_in_pages().await
    }

    /// The whole load as one transactional batch (one request, one snapshot): the generation,
    /// the small tables, the first page of each large table and of the chunks. `None` when a
    /// page came back full (there may be more rows), too large for the server's response limit,
    /// or the server withheld the batch's rows: [`Remote::load_in_pages`] reads it then.
    ///
    /// A session of up to [`CHUNKS_PER_PAGE`] chunks (131,072 peers written by a full save)
    /// and [`PAGE_ROWS`] overlay rows loads in this one request, where the paged read takes
    /// seven (`BEGIN`, a batch, four pages, `COMMIT`), each a round trip and a new stream.
    async fn load_in_one_batch(&self) -> Result<Option<(Option<SessionData>, Generation)>, SessionError> {
        let small: Vec<(Table, &str)> =
            LOAD_QUERIES.iter().copied().filter(|(t, _)| !is_large(*t) && !is_blobs(*t)).collect();
        let mut later: Vec<Table> = Vec::new();
        let mut statements = vec![READ_GENERATION.to_owned()];
        for (_, q) in &small {
            statements.push(self.bound(q)?);
        }
        for (table, q) in LOAD_QUERIES {
            if is_blobs(table) {
                let mut sql = String::new();
                inline(
                    &mut sql,
                    &session_sql::Statement {
                        sql: LOAD_PEER_CHUNKS_AFTER,
                        params: vec![
                            session_sql::SqlValue::Integer(self.sid),
                            session_sql::SqlValue::Integer(-1),
                            session_sql::SqlValue::Integer(CHUNKS_PER_PAGE),
                        ],
                    },
                )?;
                statements.push(sql);
            } else if is_large(table) {
                let Some(page) = self.json_page(q, PAGE_ROWS, 0)? else {
                    return Ok(None);
                };
                statements.push(page);
            } else {
                continue;
            }
            later.push(table);
        }
        // Held (when free) through the read, so that no persist of this owner lands between
        // the snapshot and what is learnt from it.
        let mut known = self.known.try_lock().ok();
        let Some(fetched) = self.fetch(&statements).await? else {
            return Ok(None);
        };
        let sets: Vec<Vec<Vec<SqlValueRef<'_>>>> = match &fetched {
            Fetched::Protobuf(answer) => answer.sets().map_err(|e| malformed(&self.resource, &e))?,
            Fetched::Json(sets) => {
                sets.iter().map(|rows| rows.iter().map(|row| row.iter().map(value_ref).collect()).collect()).collect()
            }
        };
        if sets.len() != 1 + small.len() + later.len() {
            return Ok(None);
        }
        let (first, rest) = sets.split_at(1);
        let (small_sets, later_sets) = rest.split_at(small.len());
        // Complete only when no page came back full.
        for (table, rows) in later.iter().zip(later_sets) {
            let full = if is_blobs(*table) {
                rows.len() >= usize::try_from(CHUNKS_PER_PAGE).unwrap_or(usize::MAX)
            } else {
                match rows.first().and_then(|row| row.first()) {
                    Some(SqlValueRef::Integer(n)) => u64::try_from(*n).unwrap_or(u64::MAX) >= PAGE_ROWS,
                    _ => true,
                }
            };
            if full {
                return Ok(None);
            }
        }
        let generation = match first.first().and_then(|rows| rows.first()).and_then(|row| row.first()) {
            Some(SqlValueRef::Integer(v)) => *v,
            Some(_) => {
                return Err(SessionError::corrupt(&self.resource, format!("{GENERATION_TABLE}: not an integer")))
            }
            None => return Ok(None),
        };
        let mut out = SessionRows::new(self.resource.clone()).with_seal(self.seal.clone());
        let mut session_row = false;
        for ((table, _), rows) in small.iter().zip(small_sets) {
            for row in rows {
                out.row(*table, row)?;
                session_row |= *table == Table::Session;
            }
        }
        let (mut removals, mut ranges) = (false, Vec::new());
        for (table, rows) in later.iter().zip(later_sets) {
            if is_blobs(*table) {
                for row in rows {
                    out.row(*table, row)?;
                    ranges.push(session_sql::chunk_range(&self.resource, row.get(2..6).unwrap_or_default())?);
                }
            } else {
                let Some(row) = rows.first() else {
                    return Ok(None);
                };
                let n = self.json_rows(*table, row, &mut out)?;
                removals |= *table == Table::PeerRemovals && n > 0;
            }
        }
        let data = out.finish()?;
        if let Some(known) = &mut known {
            known.loaded(session_row, removals, ranges);
        }
        Ok(Some((data, generation)))
    }

    /// Runs the reads of `statements` as one transactional batch (one request, one snapshot):
    /// over protobuf where the server takes it ([`super::pipeline`]), else through the libsql client.
    /// `None` when an answer would exceed the server's response limit or the server withheld
    /// the rows. Waiting for the connection, both attempts and everything between count against
    /// one call timeout.
    async fn fetch(&self, statements: &[String]) -> Result<Option<Fetched>, SessionError> {
        let deadline = Instant::now() + self.timeout;
        if let Some(pipeline) = self.pipeline.as_ref().filter(|p| p.usable()) {
            // Held so that the read queues behind this connection's other calls, as theirs do.
            let held = self.lock_until(deadline).await?;
            let read = pipeline.read(statements, deadline, &self.resource).await;
            drop(held);
            match read? {
                Read::Answer(answer) => return Ok(Some(Fetched::Protobuf(answer))),
                Read::TooLarge => return Ok(None),
                Read::Unsupported => {}
            }
        }
        let Some(sets) = self.read_batch_until(deadline, &statements.join(";\n")).await? else {
            return Ok(None);
        };
        // Rows withheld (a server may): read in pages.
        Ok(sets.into_iter().collect::<Option<Vec<_>>>().map(Fetched::Json))
    }

    /// The paged read, in one interactive read transaction. Round trips: `BEGIN`, one batch for
    /// the generation and the small tables, one request per page of [`PAGE_ROWS`] peers (and
    /// channels) and of [`CHUNKS_PER_PAGE`] chunks, `COMMIT`.
    async fn load_in_pages(&self) -> Result<(Option<SessionData>, Generation), SessionError> {
        let conn = self.lock().await?;
        self.timed(&conn, async {
            let tx = conn.transaction().await.map_err(|e| self.map(e))?;
            let mut out = SessionRows::new(self.resource.clone()).with_seal(self.seal.clone());
            let small: Vec<(Table, &str)> =
                LOAD_QUERIES.iter().copied().filter(|(t, _)| !is_large(*t) && !is_blobs(*t)).collect();
            let mut sql = String::from(READ_GENERATION);
            for (_, q) in &small {
                sql.push_str(";\n");
                sql.push_str(&self.bound(q)?);
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
                    let queries = small.iter().map(|(_, q)| self.bound(q)).collect::<Result<Vec<_>, _>>()?;
                    for q in std::iter::once(READ_GENERATION.to_owned()).chain(queries) {
                        let rows = tx.query(&q, ()).await.map_err(|e| self.map(e))?;
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
            for (table, q) in LOAD_QUERIES {
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
        table: Table,
        query: &'static str,
        out: &mut SessionRows,
    ) -> Result<(), SessionError> {
        if select_columns(query).is_none() {
            return self.load_plain(tx, table, query, out).await;
        }
        let mut offset: u64 = 0;
        let mut page: u64 = PAGE_ROWS;
        loop {
            let Some(sql) = self.json_page(query, page, offset)? else {
                return self.load_plain(tx, table, query, out).await;
            };
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
            let refs: Vec<SqlValueRef<'_>> = row.iter().map(value_ref).collect();
            let n = self.json_rows(table, &refs, out)?;
            if n < page {
                return Ok(());
            }
            offset += n;
        }
    }

    /// The query of one page of `query`'s rows as one JSON text built by the server (`None`:
    /// the query is not a plain column list).
    fn json_page(&self, query: &'static str, page: u64, offset: u64) -> Result<Option<String>, SessionError> {
        let Some(columns) = select_columns(query) else {
            return Ok(None);
        };
        let bound = self.bound(query)?;
        Ok(Some(format!(
            "SELECT count(*), json_group_array(json_array({})) FROM ({bound} LIMIT {page} OFFSET {offset})",
            columns.join(", ")
        )))
    }

    /// Hands the rows of a page [`Remote::json_page`] read (its one row: the count and the JSON
    /// text) to `out`; returns the count.
    fn json_rows(&self, table: Table, row: &[SqlValueRef<'_>], out: &mut SessionRows) -> Result<u64, SessionError> {
        let (Some(SqlValueRef::Integer(n)), Some(SqlValueRef::Text(json))) = (row.first(), row.get(1)) else {
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
        Ok(u64::try_from(*n).unwrap_or(0))
    }

    /// Reads `peer_chunks` a few rows per request (blobs travel as base64, so a million peers
    /// would exceed the server's response limit in one), keyed by position. A page the server
    /// finds too large is halved; a single chunk still too large is read in pieces.
    async fn load_chunk_pages(
        &self,
        tx: &libsql::Transaction,
        table: Table,
        out: &mut SessionRows,
    ) -> Result<(), SessionError> {
        let mut after: i64 = -1;
        let mut page: i64 = CHUNKS_PER_PAGE;
        loop {
            let rows = match tx.query(LOAD_PEER_CHUNKS_AFTER, libsql::params![self.sid, after, page]).await {
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
        table: Table,
        after: i64,
        out: &mut SessionRows,
    ) -> Result<Option<i64>, SessionError> {
        let rows = tx
            .query(
                "SELECT pos, peers, lo_class, lo_id, hi_class, hi_id, crc, length(data), sealed FROM peer_chunks \
                 WHERE sid = ?1 AND pos > ?2 ORDER BY pos LIMIT 1",
                libsql::params![self.sid, after],
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
                .query(
                    "SELECT substr(data, ?1, ?2) FROM peer_chunks WHERE sid = ?3 AND pos = ?4",
                    libsql::params![from, piece, self.sid, pos],
                )
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
            column(8),
            column(6),
        ];
        out.row(table, &row)?;
        Ok(Some(pos))
    }

    /// A load query with this connection's session id written in for its `?1` (batches and
    /// the paged reads take SQL text only).
    fn bound(&self, query: &'static str) -> Result<String, SessionError> {
        let mut sql = String::new();
        inline(
            &mut sql,
            &session_sql::Statement { sql: query, params: vec![session_sql::SqlValue::Integer(self.sid)] },
        )?;
        Ok(sql)
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
        table: Table,
        query: &str,
        out: &mut SessionRows,
    ) -> Result<(), SessionError> {
        let rows = tx.query(query, libsql::params![self.sid]).await.map_err(|e| self.map(e))?;
        for row in collect(rows).await.map_err(|e| self.map(e))? {
            let refs: Vec<SqlValueRef<'_>> = row.iter().map(value_ref).collect();
            out.row(table, &refs)?;
        }
        Ok(())
    }
}

/// Rows per page of a large table: about 60 bytes of JSON per peer, far below sqld's default
/// 10 MB response limit (a page that still exceeds it is halved and asked again).
const PAGE_ROWS: u64 = 20_000;

/// The tables read in pages: those that grow with the session and hold no blobs (JSON carries
/// integers and text exactly, but not blobs).
fn is_large(table: Table) -> bool {
    matches!(table, Table::Peers | Table::PeerRemovals | Table::Channels)
}

/// The table of blobs that grows with the session, read in pages of its own.
fn is_blobs(table: Table) -> bool {
    matches!(table, Table::PeerChunks)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_queries_have_plain_column_lists() {
        let counts: Vec<Option<usize>> = LOAD_QUERIES.iter().map(|(_, q)| select_columns(q).map(|c| c.len())).collect();
        assert_eq!(counts, vec![Some(18), Some(10), Some(4), Some(9), Some(9), Some(3), Some(6)]);
    }
}
