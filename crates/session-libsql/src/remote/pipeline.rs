//! The load's own request: a read batch sent as one Hrana `/v3-protobuf/pipeline` request (a new
//! stream, the batch, the stream's close), answered in protobuf and decoded here without copies.
//!
//! Why not the libsql client: it speaks Hrana over JSON alone, where a blob travels as base64
//! text the server encodes and the client decodes value by value (a 100,000-peer session is
//! about 1 MB of peer chunks: 1.34 MB of base64 JSON, some 4-5 ms of server time and 2-3 ms of
//! parsing on loopback). Over protobuf a blob is its bytes, and the rows borrow the answer.
//!
//! Only the few messages a read batch needs are encoded and decoded, by hand (field numbers from
//! libsql's `libsql-hrana` crate, `proto.rs`): the decoder borrows every text and blob from the
//! answer, checks each length against what is left of it, and allocates only per row and value
//! it has actually read, so a hostile answer is an error, never a panic or a large allocation.
//! Plain `http://` servers only: an `https://` one is read through the libsql client (its TLS
//! connector is not shared with us).

use std::sync::atomic::{AtomicBool, Ordering};

use hyper::body::HttpBody as _;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use session_core::SessionError;
use session_sql::SqlValueRef;
use tokio::time::Instant;

/// The largest answer read (sqld's own limit on a whole response is far below: 32 MB by
/// default); a larger one is an error before anything past it is buffered.
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// The HTTP client and address of one server's protobuf pipeline.
pub(crate) struct Pipeline {
    client: hyper::Client<hyper::client::HttpConnector, hyper::Body>,
    uri: hyper::Uri,
    auth: HeaderValue,
    /// Set when the server does not know the route (an older sqld, a proxy that passes only
    /// `/v3/`): every later read goes through the libsql client.
    refused: AtomicBool,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

/// How a read batch came back.
#[derive(Debug)]
pub(crate) enum Read {
    /// The answer; [`Answer::sets`] decodes it.
    Answer(Answer),
    /// The server refused a statement's rows as over its response limit: read in pages instead.
    TooLarge,
    /// The server does not serve this route: read through the libsql client instead.
    Unsupported,
}

impl Pipeline {
    /// The pipeline of the server at `http_url` (as [`super::url::http_url`] gives it), or
    /// `None` where the libsql client is used instead: TLS, a URL with a query, a token that
    /// cannot be a header.
    pub(crate) fn new(http_url: &str, auth_token: &str) -> Option<Pipeline> {
        let rest = http_url.strip_prefix("http://")?;
        if rest.contains(['?', '#']) {
            return None;
        }
        let uri = format!("http://{}/v3-protobuf/pipeline", rest.trim_end_matches('/')).parse().ok()?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {auth_token}")).ok()?;
        auth.set_sensitive(true);
        let mut tcp = hyper::client::HttpConnector::new();
        tcp.set_nodelay(true);
        Some(Pipeline { client: hyper::Client::builder().build(tcp), uri, auth, refused: AtomicBool::new(false) })
    }

    /// Whether reads should still be tried here (the server has not refused the route).
    pub(crate) fn usable(&self) -> bool {
        !self.refused.load(Ordering::Relaxed)
    }

    /// Runs `statements` (reads) as one transaction on a new stream, in one request, which ends
    /// by `deadline`. A connection the server had closed is tried again once (a read changes
    /// nothing).
    pub(crate) async fn read(
        &self,
        statements: &[String],
        deadline: Instant,
        resource: &str,
    ) -> Result<Read, SessionError> {
        let body = encode_read_batch(statements);
        let mut retried = false;
        loop {
            let sent = tokio::time::timeout_at(deadline, self.send(body.clone(), resource)).await;
            match sent {
                Err(_) => {
                    return Err(SessionError::Unavailable {
                        resource: resource.to_owned(),
                        source: "no answer to the read within the call's timeout".into(),
                    })
                }
                Ok(Err(Sent::Transport(e))) if !retried => {
                    tracing::debug!(error = %e, "a read met a closed connection, retrying on a new one");
                    retried = true;
                }
                Ok(Err(Sent::Transport(e))) => {
                    return Err(SessionError::Unavailable { resource: resource.to_owned(), source: e.into() })
                }
                Ok(Err(Sent::Status(404 | 405 | 415))) => {
                    self.refused.store(true, Ordering::Relaxed);
                    return Ok(Read::Unsupported);
                }
                Ok(Err(Sent::Status(status))) => return Err(status_error(status, resource)),
                Ok(Err(Sent::Failed(e))) => return Err(e),
                Ok(Ok(answer)) => {
                    let answer = Answer::new(answer, statements.len()).map_err(|e| malformed(resource, &e))?;
                    return Ok(match answer.check(resource)? {
                        Some(()) => Read::Answer(answer),
                        None => Read::TooLarge,
                    });
                }
            }
        }
    }

    async fn send(&self, body: Vec<u8>, resource: &str) -> Result<Vec<u8>, Sent> {
        let request = hyper::Request::post(self.uri.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .body(hyper::Body::from(body))
            .map_err(|e| Sent::Failed(SessionError::invalid(format!("libSQL URL {resource}"), e.to_string())))?;
        let response = self.client.request(request).await.map_err(|e| {
            if e.is_parse() || e.is_parse_status() {
                // Not an HTTP answer at all: no retry helps.
                Sent::Failed(SessionError::Backend {
                    backend: "libsql".to_owned(),
                    source: format!("the server's answer to a read is not HTTP: {e}").into(),
                })
            } else {
                Sent::Transport(e.to_string())
            }
        })?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(Sent::Status(status));
        }
        read_body(response.into_body(), MAX_ANSWER).await.map_err(|e| match e {
            BodyError::Transport(e) => Sent::Transport(e),
            BodyError::TooLong => Sent::Failed(SessionError::Backend {
                backend: "libsql".to_owned(),
                source: format!("the server's answer to a read exceeds {MAX_ANSWER} bytes").into(),
            }),
        })
    }
}

enum Sent {
    /// The request or the answer did not make it (connection refused, reset, closed).
    Transport(String),
    /// An answer other than 200.
    Status(u16),
    Failed(SessionError),
}

#[derive(Debug)]
enum BodyError {
    Transport(String),
    TooLong,
}

/// The whole body, refused (before it is buffered) past `max` bytes.
async fn read_body(mut body: hyper::Body, max: usize) -> Result<Vec<u8>, BodyError> {
    // A Content-Length past the limit is refused before anything is read.
    let hint = body.size_hint();
    if hint.lower() > u64::try_from(max).unwrap_or(u64::MAX) {
        return Err(BodyError::TooLong);
    }
    let mut out = Vec::with_capacity(usize::try_from(hint.lower()).unwrap_or(0).min(max));
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| BodyError::Transport(e.to_string()))?;
        if chunk.len() > max - out.len() {
            return Err(BodyError::TooLong);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn status_error(status: u16, resource: &str) -> SessionError {
    let source = format!("the server answered a read with HTTP status {status}").into();
    match status {
        401 | 403 => SessionError::Unauthorized { resource: resource.to_owned(), source },
        408 | 429 | 500..=599 => SessionError::Unavailable { resource: resource.to_owned(), source },
        _ => SessionError::Backend { backend: "libsql".to_owned(), source },
    }
}

pub(crate) fn malformed(resource: &str, what: &Malformed) -> SessionError {
    SessionError::Backend {
        backend: "libsql".to_owned(),
        source: format!("the server's answer to a read at {resource} is not a Hrana pipeline answer: {}", what.0)
            .into(),
    }
}

/// What is wrong with an answer (for the error's text).
#[derive(Debug, PartialEq)]
pub(crate) struct Malformed(&'static str);

// ---- the request ------------------------------------------------------------------------------

/// `PipelineReqBody { requests: [Batch(BEGIN; statements...; COMMIT; ROLLBACK unless committed),
/// Close] }` on a new stream (no baton): each statement runs only if the one before succeeded,
/// so every read sees the snapshot the first one opened.
fn encode_read_batch(statements: &[String]) -> Vec<u8> {
    let mut steps = Vec::new();
    let step = |out: &mut Vec<u8>, condition: Option<Vec<u8>>, sql: &str, want_rows: bool| {
        let mut stmt = Vec::with_capacity(sql.len() + 8);
        put_bytes(&mut stmt, 1, sql.as_bytes());
        put_varint_field(&mut stmt, 5, u64::from(want_rows));
        let mut step = Vec::with_capacity(stmt.len() + 16);
        if let Some(condition) = condition {
            put_bytes(&mut step, 1, &condition);
        }
        put_bytes(&mut step, 2, &stmt);
        put_bytes(out, 1, &step);
    };
    // BatchCond { ok = step }
    let ok = |index: usize| {
        let mut c = Vec::new();
        put_varint_field(&mut c, 1, u64::try_from(index).unwrap_or(u64::MAX));
        c
    };
    step(&mut steps, None, "BEGIN", false);
    for (i, sql) in statements.iter().enumerate() {
        step(&mut steps, Some(ok(i)), sql, true);
    }
    let commit = statements.len() + 1;
    step(&mut steps, Some(ok(statements.len())), "COMMIT", false);
    // BatchCond { not = BatchCond { ok = commit } }
    let mut not = Vec::new();
    put_bytes(&mut not, 3, &ok(commit));
    step(&mut steps, Some(not), "ROLLBACK", false);

    let mut batch_req = Vec::with_capacity(steps.len() + 8);
    put_bytes(&mut batch_req, 1, &steps); // BatchStreamReq.batch
    let mut out = Vec::with_capacity(batch_req.len() + 16);
    let mut request = Vec::with_capacity(batch_req.len() + 8);
    put_bytes(&mut request, 3, &batch_req); // StreamRequest.batch
    put_bytes(&mut out, 2, &request); // PipelineReqBody.requests
    let mut close = Vec::new();
    put_bytes(&mut close, 1, &[]); // StreamRequest.close
    put_bytes(&mut out, 2, &close);
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(low_byte(v) | 0x80);
        v >>= 7;
    }
    out.push(low_byte(v));
}

fn low_byte(v: u64) -> u8 {
    v.to_le_bytes()[0] & 0x7f
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    put_varint(out, u64::from(field) << 3);
    put_varint(out, v);
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, u64::try_from(bytes.len()).unwrap_or(u64::MAX));
    out.extend_from_slice(bytes);
}

// ---- the answer -------------------------------------------------------------------------------

/// A decoded answer to [`encode_read_batch`]: the body, and where each step's result lies in it.
#[derive(Debug)]
pub(crate) struct Answer {
    body: Vec<u8>,
    /// Per step (BEGIN, the statements, COMMIT, ROLLBACK): the byte range of its `StmtResult`.
    results: Vec<Option<(usize, usize)>>,
    /// Per step: the range of its `Error`.
    errors: Vec<Option<(usize, usize)>>,
    /// The stream's own error, when the batch did not run at all.
    stream_error: Option<(usize, usize)>,
}

/// One statement's rows, each a list of values borrowed from the answer.
pub(crate) type Rows<'a> = Vec<Vec<SqlValueRef<'a>>>;

impl Answer {
    /// Finds the batch's step results in `body` (the answer to a batch of `statements` reads);
    /// rows are decoded by [`Answer::sets`].
    fn new(body: Vec<u8>, statements: usize) -> Result<Answer, Malformed> {
        let steps = statements + 3;
        let mut results = vec![None; steps];
        let mut errors = vec![None; steps];
        let mut stream_error = None;
        // PipelineRespBody: the first of `results` (3) is the batch's.
        let mut first = None;
        let mut r = Reader::new(&body, 0);
        while let Some((field, value)) = r.field()? {
            if field == 3 {
                first.get_or_insert(value.bytes()?);
            }
        }
        let (start, end) = first.ok_or(Malformed("no result for the batch"))?;
        // StreamResult: ok (1) = StreamResponse, error (2) = Error.
        let mut response = None;
        let mut r = Reader::new(&body[start..end], start);
        while let Some((field, value)) = r.field()? {
            match field {
                1 => response = Some(value.bytes()?),
                2 => stream_error = Some(value.bytes()?),
                _ => {}
            }
        }
        if stream_error.is_none() {
            let (start, end) = response.ok_or(Malformed("an empty stream result"))?;
            // StreamResponse: batch (3) = BatchStreamResp { result (1) = BatchResult }.
            let batch = only(&body, (start, end), 3)?.ok_or(Malformed("the stream answered no batch"))?;
            let result = only(&body, batch, 1)?.ok_or(Malformed("a batch answer without its result"))?;
            // BatchResult: step_results (1) and step_errors (2), maps from the step's index.
            let mut r = Reader::new(&body[result.0..result.1], result.0);
            while let Some((field, value)) = r.field()? {
                let into = match field {
                    1 => &mut results,
                    2 => &mut errors,
                    _ => continue,
                };
                let (start, end) = value.bytes()?;
                let (mut key, mut entry) = (0u64, None);
                let mut e = Reader::new(&body[start..end], start);
                while let Some((field, value)) = e.field()? {
                    match field {
                        1 => key = value.varint()?,
                        2 => entry = Some(value.bytes()?),
                        _ => {}
                    }
                }
                let slot = usize::try_from(key)
                    .ok()
                    .and_then(|k| into.get_mut(k))
                    .ok_or(Malformed("a result for a step the batch does not have"))?;
                // A map entry without its value is the value's default: an empty message.
                *slot = Some(entry.unwrap_or((end, end)));
            }
        }
        Ok(Answer { body, results, errors, stream_error })
    }

    /// `Some(())` when every statement ran; `None` when the server refused one's rows as over
    /// its response limit; else the error it reported.
    fn check(&self, resource: &str) -> Result<Option<()>, SessionError> {
        let text = |range: (usize, usize)| -> Result<String, SessionError> {
            let (mut message, mut code) = ("", "");
            let mut r = Reader::new(&self.body[range.0..range.1], range.0);
            while let Some((field, value)) = r.field().map_err(|e| malformed(resource, &e))? {
                match field {
                    1 => message = value.text(&self.body).map_err(|e| malformed(resource, &e))?,
                    2 => code = value.text(&self.body).map_err(|e| malformed(resource, &e))?,
                    _ => {}
                }
            }
            Ok(format!("{code}: {message}"))
        };
        let error = |text: String| {
            if text.contains("RESPONSE_TOO_LARGE") {
                return None;
            }
            let source = format!("the server refused a read: {text}").into();
            Some(if text.contains("STREAM_EXPIRED") || text.contains("database is locked") {
                SessionError::Unavailable { resource: resource.to_owned(), source }
            } else {
                SessionError::Backend { backend: "libsql".to_owned(), source }
            })
        };
        if let Some(range) = self.stream_error {
            return match error(text(range)?) {
                Some(e) => Err(e),
                None => Ok(None),
            };
        }
        // The statements' own errors first (a later step fails only because an earlier did).
        if let Some(range) = self.errors.iter().flatten().next() {
            return match error(text(*range)?) {
                Some(e) => Err(e),
                None => Ok(None),
            };
        }
        let statements = self.results.len() - 3;
        if self.results.iter().skip(1).take(statements).any(Option::is_none) {
            return Err(malformed(resource, &Malformed("a statement without a result and without an error")));
        }
        Ok(Some(()))
    }

    /// Every statement's rows, in order, borrowed from the answer.
    pub(crate) fn sets(&self) -> Result<Vec<Rows<'_>>, Malformed> {
        let statements = self.results.len().saturating_sub(3);
        let mut sets = Vec::with_capacity(statements);
        for result in self.results.iter().skip(1).take(statements) {
            let (start, end) = result.ok_or(Malformed("a statement without a result"))?;
            sets.push(self.rows((start, end))?);
        }
        Ok(sets)
    }

    /// The rows of the `StmtResult` at `range`: `rows` (2), each `Row { values (1) }`.
    fn rows(&self, range: (usize, usize)) -> Result<Rows<'_>, Malformed> {
        let body = &self.body;
        let mut rows = Vec::new();
        let mut r = Reader::new(&body[range.0..range.1], range.0);
        while let Some((field, value)) = r.field()? {
            if field != 2 {
                continue;
            }
            let (start, end) = value.bytes()?;
            let mut row = Vec::new();
            let mut v = Reader::new(&body[start..end], start);
            while let Some((field, value)) = v.field()? {
                if field == 1 {
                    let (start, end) = value.bytes()?;
                    row.push(decode_value(body, (start, end))?);
                }
            }
            rows.push(row);
        }
        Ok(rows)
    }
}

/// The one `Value` at `range`: null (1), integer (2, zigzag), float (3), text (4), blob (5).
fn decode_value(body: &[u8], range: (usize, usize)) -> Result<SqlValueRef<'_>, Malformed> {
    let mut out = None;
    let mut r = Reader::new(&body[range.0..range.1], range.0);
    while let Some((field, value)) = r.field()? {
        out = Some(match (field, value) {
            (1, Field::Bytes(..)) => SqlValueRef::Null,
            (2, Field::Varint(v)) => SqlValueRef::Integer(((v >> 1) as i64) ^ -((v & 1) as i64)),
            (3, Field::Fixed64(v)) => SqlValueRef::Real(f64::from_bits(v)),
            (4, value @ Field::Bytes(..)) => SqlValueRef::Text(value.text(body)?),
            (5, Field::Bytes(start, end)) => SqlValueRef::Blob(&body[start..end]),
            (1..=5, _) => return Err(Malformed("a value of the wrong wire type")),
            _ => continue,
        });
    }
    out.ok_or(Malformed("a value of no known type"))
}

/// The last field `want` of the message at `range`, as a byte range (`None`: absent).
fn only(body: &[u8], range: (usize, usize), want: u32) -> Result<Option<(usize, usize)>, Malformed> {
    let mut found = None;
    let mut r = Reader::new(&body[range.0..range.1], range.0);
    while let Some((field, value)) = r.field()? {
        if field == want {
            found = Some(value.bytes()?);
        }
    }
    Ok(found)
}

/// One field's value: varints and fixed-width numbers as read, length-delimited ones as the
/// byte range they occupy in the whole body.
#[derive(Debug, Clone, Copy)]
enum Field {
    Varint(u64),
    Fixed64(u64),
    Fixed32,
    Bytes(usize, usize),
}

impl Field {
    fn bytes(self) -> Result<(usize, usize), Malformed> {
        match self {
            Field::Bytes(start, end) => Ok((start, end)),
            _ => Err(Malformed("a message field of the wrong wire type")),
        }
    }

    fn varint(self) -> Result<u64, Malformed> {
        match self {
            Field::Varint(v) => Ok(v),
            _ => Err(Malformed("a number field of the wrong wire type")),
        }
    }

    fn text(self, body: &[u8]) -> Result<&str, Malformed> {
        let (start, end) = self.bytes()?;
        std::str::from_utf8(&body[start..end]).map_err(|_| Malformed("text that is not UTF-8"))
    }
}

/// Reads the fields of one message (a slice of the body starting at `offset`).
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    offset: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], offset: usize) -> Self {
        Reader { buf, pos: 0, offset }
    }

    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self.buf.get(self.pos).ok_or(Malformed("a truncated number"))?;
            self.pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Malformed("a number longer than ten bytes"))
    }

    fn take(&mut self, n: usize) -> Result<usize, Malformed> {
        if n > self.buf.len() - self.pos {
            return Err(Malformed("a field longer than what is left of its message"));
        }
        let start = self.pos;
        self.pos += n;
        Ok(start)
    }

    /// The next field and its number; `None` at the end of the message.
    fn field(&mut self) -> Result<Option<(u32, Field)>, Malformed> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| Malformed("a field number out of range"))?;
        if number == 0 {
            return Err(Malformed("field number 0"));
        }
        let value = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                let at = self.take(8)?;
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[at..at + 8]);
                Field::Fixed64(u64::from_le_bytes(b))
            }
            2 => {
                let len = usize::try_from(self.varint()?).unwrap_or(usize::MAX);
                let at = self.take(len)?;
                Field::Bytes(self.offset + at, self.offset + at + len)
            }
            5 => {
                self.take(4)?;
                Field::Fixed32
            }
            _ => return Err(Malformed("a group or an unknown wire type")),
        };
        Ok(Some((number, value)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// What sqld sends for a batch of `sets` (BEGIN, the statements, COMMIT; ROLLBACK skipped),
    /// then the close's answer.
    fn answer_of(sets: &[Vec<Vec<Value>>], step_error: Option<(u32, &str)>) -> Vec<u8> {
        let mut batch_result = Vec::new();
        let mut entry = |key: usize, result: &[u8], field: u32| {
            let mut e = Vec::new();
            put_varint_field(&mut e, 1, u64::try_from(key).unwrap());
            put_bytes(&mut e, 2, result);
            put_bytes(&mut batch_result, field, &e);
        };
        entry(0, &[], 1);
        for (i, rows) in sets.iter().enumerate() {
            let mut result = Vec::new();
            put_bytes(&mut result, 1, b"\x0a\x01c"); // a column named "c"
            for row in rows {
                let mut r = Vec::new();
                for v in row {
                    put_bytes(&mut r, 1, &v.encode());
                }
                put_bytes(&mut result, 2, &r);
            }
            put_varint_field(&mut result, 3, 0);
            result.extend_from_slice(&[0x41, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]); // query_duration_ms 1.0
            entry(i + 1, &result, 1);
        }
        if let Some((step, message)) = step_error {
            let mut e = Vec::new();
            put_bytes(&mut e, 1, message.as_bytes());
            put_bytes(&mut e, 2, b"SQLITE_ERROR");
            entry(usize::try_from(step).unwrap(), &e, 2);
        } else {
            entry(sets.len() + 1, &[], 1);
        }
        let mut batch_resp = Vec::new();
        put_bytes(&mut batch_resp, 1, &batch_result);
        let mut response = Vec::new();
        put_bytes(&mut response, 3, &batch_resp);
        let mut result = Vec::new();
        put_bytes(&mut result, 1, &response);
        let mut out = Vec::new();
        put_bytes(&mut out, 3, &result);
        let mut close = Vec::new();
        put_bytes(&mut close, 1, &[]);
        let mut closed = Vec::new();
        put_bytes(&mut closed, 1, &close);
        put_bytes(&mut out, 3, &closed);
        out
    }

    #[derive(Clone, Debug, PartialEq)]
    enum Value {
        Null,
        Int(i64),
        Real(f64),
        Text(String),
        Blob(Vec<u8>),
    }

    impl Value {
        fn encode(&self) -> Vec<u8> {
            let mut v = Vec::new();
            match self {
                Value::Null => put_bytes(&mut v, 1, &[]),
                Value::Int(i) => put_varint_field(&mut v, 2, u64::from_le_bytes(((i << 1) ^ (i >> 63)).to_le_bytes())),
                Value::Real(f) => {
                    v.push(0x19);
                    v.extend_from_slice(&f.to_bits().to_le_bytes());
                }
                Value::Text(t) => put_bytes(&mut v, 4, t.as_bytes()),
                Value::Blob(b) => put_bytes(&mut v, 5, b),
            }
            v
        }

        fn of(v: &SqlValueRef<'_>) -> Value {
            match *v {
                SqlValueRef::Null => Value::Null,
                SqlValueRef::Integer(i) => Value::Int(i),
                SqlValueRef::Real(f) => Value::Real(f),
                SqlValueRef::Text(t) => Value::Text(t.to_owned()),
                SqlValueRef::Blob(b) => Value::Blob(b.to_vec()),
            }
        }
    }

    fn sample() -> Vec<Vec<Vec<Value>>> {
        vec![
            vec![vec![Value::Int(7), Value::Int(-1)]],
            vec![],
            vec![
                vec![Value::Null, Value::Int(i64::MIN), Value::Int(i64::MAX), Value::Real(-2.5)],
                vec![Value::Text("peer é".to_owned()), Value::Blob(vec![0, 1, 255]), Value::Blob(Vec::new())],
            ],
        ]
    }

    fn decoded(body: Vec<u8>, statements: usize) -> Result<Vec<Vec<Vec<Value>>>, String> {
        let answer = Answer::new(body, statements).map_err(|e| e.0.to_owned())?;
        match answer.check("test") {
            Ok(Some(())) => {}
            Ok(None) => return Err("too large".to_owned()),
            Err(e) => return Err(e.to_string()),
        }
        let sets = answer.sets().map_err(|e| e.0.to_owned())?;
        Ok(sets.iter().map(|rows| rows.iter().map(|row| row.iter().map(Value::of).collect()).collect()).collect())
    }

    #[test]
    fn an_answer_decodes_to_its_rows() {
        let sets = sample();
        assert_eq!(decoded(answer_of(&sets, None), sets.len()), Ok(sets));
    }

    #[test]
    fn step_errors_are_errors_and_a_response_limit_is_too_large() {
        let sets = sample();
        let e = decoded(answer_of(&sets[..1], Some((2, "no such table: peers"))), 2).unwrap_err();
        assert!(e.contains("no such table"), "{e}");
        let e = decoded(answer_of(&sets[..1], Some((2, "RESPONSE_TOO_LARGE: over the limit"))), 2).unwrap_err();
        assert_eq!(e, "too large");
    }

    #[test]
    fn the_request_is_the_batch_sqld_expects() {
        let body = encode_read_batch(&["SELECT 1".to_owned(), "SELECT 2".to_owned()]);
        // Two requests: the batch (BEGIN, two reads, COMMIT, ROLLBACK) and the close.
        let mut r = Reader::new(&body, 0);
        let mut requests = Vec::new();
        while let Some((field, value)) = r.field().unwrap() {
            assert_eq!(field, 2);
            requests.push(value.bytes().unwrap());
        }
        assert_eq!(requests.len(), 2);
        let batch_req = only(&body, requests[0], 3).unwrap().unwrap();
        let batch = only(&body, batch_req, 1).unwrap().unwrap();
        let mut r = Reader::new(&body[batch.0..batch.1], batch.0);
        let mut sqls = Vec::new();
        while let Some((_, step)) = r.field().unwrap() {
            let stmt = only(&body, step.bytes().unwrap(), 2).unwrap().unwrap();
            let sql = only(&body, stmt, 1).unwrap().unwrap();
            sqls.push(std::str::from_utf8(&body[sql.0..sql.1]).unwrap().to_owned());
        }
        assert_eq!(sqls, ["BEGIN", "SELECT 1", "SELECT 2", "COMMIT", "ROLLBACK"]);
        assert!(only(&body, requests[1], 1).unwrap().is_some(), "the second request closes the stream");
    }

    #[test]
    fn every_truncation_is_an_error_or_a_prefix_never_a_panic() {
        let sets = sample();
        let body = answer_of(&sets, None);
        for cut in 0..body.len() {
            // A cut at a field boundary of the outer message may still decode (the close's
            // answer missing); anything else must be an error.
            if let Ok(got) = decoded(body[..cut].to_vec(), sets.len()) {
                assert_eq!(got, sets, "a truncated answer decoded to other rows at {cut}");
            }
        }
    }

    #[test]
    fn corrupted_answers_are_errors_never_panics() {
        let sets = sample();
        let body = answer_of(&sets, None);
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut errors = 0;
        for _ in 0..20_000 {
            let mut b = body.clone();
            for _ in 0..1 + next() % 4 {
                let at = usize::try_from(next() % u64::try_from(b.len()).unwrap()).unwrap();
                b[at] = next().to_le_bytes()[0];
            }
            errors += usize::from(decoded(b, sets.len()).is_err());
        }
        assert!(errors > 1_000, "only {errors} of 20,000 corrupted answers were refused");
        // Random bytes that are no protobuf at all.
        for len in [0, 1, 7, 100, 4096] {
            let b: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
            assert!(decoded(b, 3).is_err());
        }
    }

    #[test]
    fn hostile_lengths_and_types_are_refused_without_allocating() {
        // PipelineRespBody.results with a length of 2^62: refused before anything is read.
        let mut b = vec![0x1a];
        put_varint(&mut b, 1 << 62);
        assert_eq!(Answer::new(b, 1).unwrap_err(), Malformed("a field longer than what is left of its message"));
        // An eleven-byte varint.
        let b = [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Answer::new(b.to_vec(), 1).unwrap_err(), Malformed("a number longer than ten bytes"));
        // results as a varint instead of a message.
        assert_eq!(Answer::new(vec![0x18, 0x01], 1).unwrap_err(), Malformed("a message field of the wrong wire type"));
        // A group.
        assert_eq!(Answer::new(vec![0x1b], 1).unwrap_err(), Malformed("a group or an unknown wire type"));
        // A value whose integer comes as a blob.
        let mut v = Vec::new();
        put_bytes(&mut v, 2, b"12");
        let mut body = Vec::new();
        put_bytes(&mut body, 1, &v);
        assert_eq!(decode_value(&body, (2, body.len())).unwrap_err(), Malformed("a value of the wrong wire type"));
        // Text that is not UTF-8.
        let mut v = Vec::new();
        put_bytes(&mut v, 4, &[0xff, 0xfe]);
        assert_eq!(decode_value(&v, (0, v.len())).unwrap_err(), Malformed("text that is not UTF-8"));
        // A result for a step the batch does not have.
        let sets = sample();
        let mut body = answer_of(&sets, None);
        assert!(decoded(body.clone(), 1).is_err());
        // Nothing at all.
        body.clear();
        assert_eq!(Answer::new(body, 1).unwrap_err(), Malformed("no result for the batch"));
    }

    #[test]
    fn a_stream_error_is_an_error() {
        let mut error = Vec::new();
        put_bytes(&mut error, 1, b"stream gone");
        put_bytes(&mut error, 2, b"STREAM_EXPIRED");
        let mut result = Vec::new();
        put_bytes(&mut result, 2, &error);
        let mut body = Vec::new();
        put_bytes(&mut body, 3, &result);
        let e = decoded(body, 1).unwrap_err();
        assert!(e.contains("STREAM_EXPIRED"), "{e}");
    }

    /// A server on 127.0.0.1 that answers the first request of every connection with
    /// `response`, or never answers (`None`).
    async fn server(response: Option<Vec<u8>>) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let response = response.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    let _ = stream.read(&mut buf).await;
                    match response {
                        Some(r) => {
                            let _ = stream.write_all(&r).await;
                        }
                        None => tokio::time::sleep(std::time::Duration::from_secs(60)).await,
                    }
                });
            }
        });
        format!("http://{addr}")
    }

    fn http(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!("HTTP/1.1 {status}\r\n{headers}Connection: close\r\n\r\n").into_bytes();
        r.extend_from_slice(body);
        r
    }

    async fn read_from(url: &str, timeout_ms: u64) -> (Result<Read, SessionError>, std::time::Duration) {
        let pipeline = Pipeline::new(url, "t").unwrap();
        let started = std::time::Instant::now();
        let deadline = Instant::now() + std::time::Duration::from_millis(timeout_ms);
        let r = pipeline.read(&["SELECT 1".to_owned()], deadline, "test").await;
        (r, started.elapsed())
    }

    #[tokio::test]
    async fn hostile_http_answers_are_typed_errors() {
        let sets = vec![vec![vec![Value::Int(1)]]];
        let good = answer_of(&sets, None);
        let with_length = |body: &[u8]| http("200 OK", &format!("Content-Length: {}\r\n", body.len()), body);
        // The good answer decodes (the fake server is right).
        let (r, _) = read_from(&server(Some(with_length(&good))).await, 5_000).await;
        match r {
            Ok(Read::Answer(a)) => assert_eq!(a.sets().unwrap()[0][0][0], SqlValueRef::Integer(1)),
            other => panic!("{other:?}"),
        }
        type Expect = fn(&Result<Read, SessionError>) -> bool;
        let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
            ("truncated", with_length(&good[..good.len() / 2]), |r| matches!(r, Err(SessionError::Backend { .. }))),
            ("not protobuf", with_length(b"{\"baton\":null,\"results\":[]}"), |r| {
                matches!(r, Err(SessionError::Backend { .. }))
            }),
            // Announces 1 TiB: refused before it is buffered.
            ("huge length", http("200 OK", "Content-Length: 1099511627776\r\n", &good), |r| {
                matches!(r, Err(SessionError::Backend { .. }))
            }),
            ("shorter than announced", http("200 OK", "Content-Length: 100000\r\n", &good), |r| {
                matches!(r, Err(SessionError::Unavailable { .. }))
            }),
            ("500", http("500 Internal Server Error", "Content-Length: 2\r\n", &[0xff, 0xfe]), |r| {
                matches!(r, Err(SessionError::Unavailable { .. }))
            }),
            ("401", http("401 Unauthorized", "Content-Length: 0\r\n", b""), |r| {
                matches!(r, Err(SessionError::Unauthorized { .. }))
            }),
            ("404", http("404 Not Found", "Content-Length: 0\r\n", b""), |r| matches!(r, Ok(Read::Unsupported))),
            ("400", http("400 Bad Request", "Content-Length: 0\r\n", b""), |r| {
                matches!(r, Err(SessionError::Backend { .. }))
            }),
            ("not http", b"\x00\x01\x02 not http at all\r\n\r\n".to_vec(), |r| {
                matches!(r, Err(SessionError::Backend { .. }))
            }),
        ];
        for (name, response, ok) in cases {
            let (r, took) = read_from(&server(Some(response)).await, 5_000).await;
            assert!(ok(&r), "{name}: {r:?}");
            assert!(took < std::time::Duration::from_secs(4), "{name}: {took:?}");
        }
    }

    #[tokio::test]
    async fn a_frozen_server_is_bounded_by_the_deadline() {
        let (r, took) = read_from(&server(None).await, 300).await;
        assert!(matches!(r, Err(SessionError::Unavailable { .. })), "{r:?}");
        assert!(took >= std::time::Duration::from_millis(290) && took < std::time::Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn only_plain_http_urls_without_a_query_get_a_pipeline() {
        assert!(Pipeline::new("http://127.0.0.1:8080", "").is_some());
        assert_eq!(Pipeline::new("http://h:1/db/", "").unwrap().uri.to_string(), "http://h:1/db/v3-protobuf/pipeline");
        assert!(Pipeline::new("https://h", "").is_none());
        assert!(Pipeline::new("http://h?tls=0", "").is_none());
        assert!(Pipeline::new("http://h", "bad\ntoken").is_none());
    }
}
