//! Loading: the queries that read a session (of the current schema, or of an older one a
//! reader that does not migrate meets), and [`SessionRows`], which rebuilds the session from
//! their rows, checking every value, every row's checksum and every table's sum.

use std::net::{IpAddr, SocketAddr};

use session_core::{
    AuthKey, DcFlags, DcKey, DcOption, MinPeerContext, Peer, PeerCache, PeerKey, SelfUser, SessionData, SessionError,
    SortedPeers, UpdateState,
};

use crate::checksum::row_crc;
use crate::chunks;
use crate::codes::{class_code, class_from_code, kind_from_code};
use crate::migrations::{
    LOAD_CHANNELS_V2, LOAD_DCS_V2, LOAD_MIN_CONTEXTS_V2, LOAD_PEERS_V2, LOAD_PEER_CHUNKS_V2, LOAD_PEER_REMOVALS_V2,
    LOAD_QUERIES_V3, LOAD_QUERIES_V4, LOAD_SESSION_V2, SCHEMA_VERSION,
};
use crate::seal::{decode_values, Sealer};
use crate::table::{Table, SUMMED};
use crate::value::SqlValueRef;

/// The session row: its values, its `sealed` text (NULL in a plain database), its `crc`, then
/// the sums of the other tables.
///
/// Every load query takes the session's id (see [`SESSION_ID`](crate::SESSION_ID)) as `?1`.
/// Each row of a table with values to seal ([`Table::sealable`]) ends with `sealed, crc`.
pub const LOAD_SESSION: &str = "SELECT home_dc, user_id, user_bot, test_mode, api_id, pts, qts, date, seq, \
     future_auth_token, sealed, crc, dcs_sum, channels_sum, chunks_sum, peers_sum, removals_sum, contexts_sum \
     FROM session WHERE sid = ?1";
/// Every DC option.
pub const LOAD_DCS: &str =
    "SELECT id, key_flags, flags, ip, port, auth_key, server_salt, time_offset, sealed, crc FROM dcs WHERE sid = ?1";
/// Every channel's pts.
pub const LOAD_CHANNELS: &str = "SELECT id, pts, sealed, crc FROM channels WHERE sid = ?1";
/// The peer chunks, in order.
pub const LOAD_PEER_CHUNKS: &str = "SELECT pos, peers, lo_class, lo_id, hi_class, hi_id, data, sealed, crc \
     FROM peer_chunks WHERE sid = ?1 ORDER BY pos";
/// The peer chunks after position `?2`, at most `?3` of them, in order (a driver that reads
/// them in pages).
pub const LOAD_PEER_CHUNKS_AFTER: &str = "SELECT pos, peers, lo_class, lo_id, hi_class, hi_id, data, sealed, crc \
     FROM peer_chunks WHERE sid = ?1 AND pos > ?2 ORDER BY pos LIMIT ?3";
/// The key range of every chunk (first and last key), in order: a driver that keeps them knows
/// which removed keys need a `peer_removals` row ([`Known::chunk_ranges`](crate::Known::chunk_ranges)).
pub const LOAD_CHUNK_RANGES: &str =
    "SELECT lo_class, lo_id, hi_class, hi_id FROM peer_chunks WHERE sid = ?1 ORDER BY pos";
/// Every peer written since the chunks, in key order.
pub const LOAD_PEERS: &str = "SELECT class, id, kind, access_hash, min, usernames, phone, sealed, crc FROM peers \
     WHERE sid = ?1 ORDER BY class, id";
/// Every peer removed since the chunks, in key order.
pub const LOAD_PEER_REMOVALS: &str = "SELECT class, id, crc FROM peer_removals WHERE sid = ?1 ORDER BY class, id";
/// The "min" contexts, in order.
pub const LOAD_MIN_CONTEXTS: &str =
    "SELECT pos, user_id, peer_id, msg_id, sealed, crc FROM min_contexts WHERE sid = ?1 ORDER BY pos";

/// The queries that load a session from a database at schema `version`, in the order of
/// [`LOAD_QUERIES`] (a reader that does not migrate, such as a read-only inspection, may meet an
/// older database: it gets the queries of that version, without the tables it lacks). Hand the
/// rows to a [`SessionRows::at_version`] of the same version. From version 4 on every query
/// takes the session's id as `?1`; before, a database holds one session and they take none.
pub fn load_queries(version: u32) -> impl Iterator<Item = (Table, &'static str)> {
    let old = [
        (Table::Session, LOAD_SESSION_V2),
        (Table::Dcs, LOAD_DCS_V2),
        (Table::Channels, LOAD_CHANNELS_V2),
        (Table::PeerChunks, LOAD_PEER_CHUNKS_V2),
        (Table::Peers, LOAD_PEERS_V2),
        (Table::PeerRemovals, LOAD_PEER_REMOVALS_V2),
        (Table::MinContexts, LOAD_MIN_CONTEXTS_V2),
    ];
    let queries = match version {
        5.. => LOAD_QUERIES,
        4 => LOAD_QUERIES_V4,
        3 => LOAD_QUERIES_V3,
        _ => old,
    };
    queries.into_iter().filter(move |(t, _)| t.since() <= version)
}

/// The queries that load a session, in the order to run them (all in one read transaction),
/// with the table each row belongs to. The peer tables come in the order [`SessionRows`] needs:
/// chunks, then the rows over them, then the removals.
pub const LOAD_QUERIES: [(Table, &str); 7] = [
    (Table::Session, LOAD_SESSION),
    (Table::Dcs, LOAD_DCS),
    (Table::Channels, LOAD_CHANNELS),
    (Table::PeerChunks, LOAD_PEER_CHUNKS),
    (Table::Peers, LOAD_PEERS),
    (Table::PeerRemovals, LOAD_PEER_REMOVALS),
    (Table::MinContexts, LOAD_MIN_CONTEXTS),
];

/// The queries that read the peer cache (and the session row, whose sums check it), for
/// [`SessionRows::finish_peers`].
pub const LOAD_PEER_QUERIES: [(Table, &str); 4] = [
    (Table::Session, LOAD_SESSION),
    (Table::PeerChunks, LOAD_PEER_CHUNKS),
    (Table::Peers, LOAD_PEERS),
    (Table::PeerRemovals, LOAD_PEER_REMOVALS),
];

/// Decodes a row of [`LOAD_CHUNK_RANGES`]: the first and last key of a chunk.
pub fn chunk_range(resource: &str, row: &[SqlValueRef<'_>]) -> Result<(PeerKey, PeerKey), SessionError> {
    let bad = || SessionError::corrupt(resource, "peer_chunks: a key range that is not two keys");
    let key = |class: SqlValueRef<'_>, id: SqlValueRef<'_>| match (class, id) {
        (SqlValueRef::Integer(c), SqlValueRef::Integer(id)) => class_from_code(c).map(|c| PeerKey::new(c, id)),
        _ => None,
    };
    match row {
        [lc, li, hc, hi] => match (key(*lc, *li), key(*hc, *hi)) {
            (Some(lo), Some(hi)) if lo <= hi => Ok((lo, hi)),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// Rebuilds a session from the rows of [`LOAD_QUERIES`].
///
/// Every value is checked: a wrong type, an out-of-range number, a key that is not 256 bytes or
/// an unknown code is a [`SessionError::Corrupt`] naming the table and column, never a silently
/// altered session. From schema version 3 on, every row's checksum is checked as it is added,
/// and [`finish`](SessionRows::finish) checks the sums of the session row against the rows
/// (see the [crate docs](crate)).
pub struct SessionRows {
    resource: String,
    version: u32,
    present: bool,
    /// A row of any table but `session` was added.
    other_rows: bool,
    data: SessionData,
    /// The peers of `peer_chunks`.
    chunked: SortedPeers,
    /// The rows of `peers`.
    overlay: Vec<Peer>,
    removals: Vec<PeerKey>,
    /// The sums of the rows' checksums, per table of [`SUMMED`].
    sums: [u32; 6],
    /// The sums the session row holds.
    stored_sums: Option<[i64; 6]>,
    /// How this session's sealed rows open (`None`: the database is plain).
    seal: Option<Sealer>,
}

// By hand: the rows read so far hold auth keys and the future auth token, which `Debug` of the
// builder must never print.
impl std::fmt::Debug for SessionRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRows")
            .field("resource", &self.resource)
            .field("version", &self.version)
            .field("present", &self.present)
            .finish_non_exhaustive()
    }
}

impl SessionRows {
    /// An empty builder for rows of the current schema ([`LOAD_QUERIES`]); `resource` names the
    /// database in errors.
    pub fn new(resource: impl Into<String>) -> Self {
        Self::at_version(resource, SCHEMA_VERSION)
    }

    /// An empty builder for rows read by the [`load_queries`] of a database at schema `version`
    /// (before version 3 rows carry no checksums, and none is checked).
    pub fn at_version(resource: impl Into<String>, version: u32) -> Self {
        Self {
            resource: resource.into(),
            version,
            present: false,
            other_rows: false,
            data: SessionData::default(),
            chunked: SortedPeers::default(),
            overlay: Vec::new(),
            removals: Vec::new(),
            sums: [0; 6],
            stored_sums: None,
            seal: None,
        }
    }

    /// Opens sealed rows with `seal` (the [`Sealer`] of this session of a sealed database):
    /// every row with values to seal must then be sealed (a row in clear is
    /// [`SessionError::Corrupt`]: someone wrote it behind the seal). Without it, a sealed row is
    /// [`SessionError::Sealed`].
    pub fn with_seal(mut self, seal: Option<Sealer>) -> Self {
        self.seal = seal;
        self
    }

    /// Adds one row of `table`.
    pub fn row(&mut self, table: Table, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        let (values, sealed) = self.verify(table, row)?;
        let sealable = self.version >= 5 && table.sealable();
        match sealed {
            None if sealable && self.seal.is_some() => Err(SessionError::corrupt(
                &self.resource,
                format!("{}: a row in clear in a sealed database (written behind the seal)", table.name()),
            )),
            None => self.add(table, values),
            Some(text) => {
                let from = table.sealed_from();
                let clear = values.get(..from).unwrap_or_default();
                let Some(seal) = &self.seal else {
                    return Err(SessionError::Sealed {
                        resource: self.resource.clone(),
                        key_id: crate::seal::key_id_of_text(text),
                    });
                };
                let mut opened = seal.open_row(&self.resource, table, clear, text)?;
                // The opened values of a peer row or chunk go into the session's peer cache,
                // which holds them unwiped for as long as the session lives: wiping this copy
                // protects nothing and was a byte-by-byte pass over every peer of a sealed load.
                // The rows that hold keys (a DC's auth key, the session's token) are wiped.
                let unwiped: Vec<u8>;
                let plain: &[u8] = if matches!(table, Table::PeerChunks | Table::Peers) {
                    unwiped = std::mem::take(&mut *opened);
                    &unwiped
                } else {
                    &opened
                };
                let opened = decode_values(plain, table.values(self.version) - from).ok_or_else(|| {
                    SessionError::corrupt(&self.resource, format!("{}.sealed: not the values of a row", table.name()))
                })?;
                let mut merged = Vec::with_capacity(table.values(self.version));
                merged.extend_from_slice(clear);
                merged.extend(opened);
                self.add(table, &merged)
            }
        }
    }

    fn add(&mut self, table: Table, values: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        match table {
            Table::Session => self.session_row(values),
            Table::Dcs => self.dc_row(values),
            Table::Channels => self.channel_row(values),
            Table::PeerChunks => self.chunk_row(values),
            Table::Peers => self.peer_row(values),
            Table::PeerRemovals => self.removal_row(values),
            Table::MinContexts => self.min_context_row(values),
        }
    }

    /// Checks the row's shape and (from version 3 on) its checksum, and counts it in its
    /// table's sum. Returns its values and (from version 5 on) its `sealed` text.
    fn verify<'r, 'v>(
        &mut self,
        table: Table,
        row: &'r [SqlValueRef<'v>],
    ) -> Result<(&'r [SqlValueRef<'v>], Option<&'v str>), SessionError> {
        let n = table.values(self.version);
        let bad = |reason: String| SessionError::corrupt(&self.resource, format!("{}: {reason}", table.name()));
        if table != Table::Session {
            self.other_rows = true;
        }
        if self.version < 3 {
            return if row.len() == n {
                Ok((row, None))
            } else {
                Err(bad(format!("{} columns instead of {n}", row.len())))
            };
        }
        let sealed_col = usize::from(self.version >= 5 && table.sealable());
        let extra = if table == Table::Session { 1 + SUMMED.len() } else { 1 };
        if row.len() != n + sealed_col + extra {
            return Err(bad(format!("{} columns instead of {}", row.len(), n + sealed_col + extra)));
        }
        let (stored, rest) = row.split_at(n + sealed_col);
        let values = &stored[..n];
        let sealed = match stored.get(n) {
            None | Some(SqlValueRef::Null) => None,
            Some(SqlValueRef::Text(t)) => Some(*t),
            Some(_) => return Err(bad("sealed is not text".into())),
        };
        let crc = match rest.first() {
            Some(SqlValueRef::Integer(c)) => u32::try_from(*c).map_err(|_| bad("crc out of range".into()))?,
            _ => return Err(bad("crc is not an integer".into())),
        };
        // A NULL `sealed` is not covered: rows of version 4 keep their checksums.
        let covered = if sealed.is_some() { stored } else { values };
        if i64::from(crc) != row_crc(table, covered) {
            return Err(bad("a row does not match its checksum".into()));
        }
        match table.sum_index() {
            Some(i) => self.sums[i] = self.sums[i].wrapping_add(crc),
            None => {
                if self.stored_sums.is_some() {
                    return Err(bad("two session rows".into()));
                }
                let mut sums = [0i64; 6];
                for (slot, v) in sums.iter_mut().zip(rest.iter().skip(1)) {
                    *slot = match v {
                        SqlValueRef::Integer(v) => *v,
                        _ => return Err(bad("a checksum sum is not an integer".into())),
                    };
                }
                self.stored_sums = Some(sums);
            }
        }
        Ok((values, sealed))
    }

    /// Checks the session row's sums of `tables` against the rows added.
    fn check_sums(&self, tables: &[Table]) -> Result<(), SessionError> {
        let Some(stored) = self.stored_sums else {
            return Ok(());
        };
        for table in tables {
            let Some(i) = table.sum_index() else { continue };
            if stored[i] != i64::from(self.sums[i]) {
                return Err(SessionError::corrupt(
                    &self.resource,
                    format!("{}: rows are missing or were added (their checksums do not add up)", table.name()),
                ));
            }
        }
        Ok(())
    }

    /// Adds a row of `peer_chunks` (rows must come before those of `peers`).
    fn chunk_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        let data_at = if self.version >= 3 { 6 } else { 2 };
        let (count, data) = {
            let c = Cols::new(self, "peer_chunks", row, row.len())?;
            let count = usize::try_from(c.i64(1, "peers")?).map_err(|_| c.bad("peers", "negative"))?;
            (count, c.opt_blob(data_at, "data")?.ok_or_else(|| c.bad("data", "NULL"))?)
        };
        chunks::decode(data, count, &mut self.chunked)
            .map_err(|reason| SessionError::corrupt(&self.resource, format!("peer_chunks.data: {reason}")))
    }

    /// Adds a row of [`LOAD_PEER_REMOVALS`].
    fn removal_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        let c = Cols::new(self, "peer_removals", row, 2)?;
        let class = class_from_code(c.i64(0, "class")?).ok_or_else(|| c.bad("class", "unknown id space"))?;
        let id = c.i64(1, "id")?;
        self.removals.push(PeerKey::new(class, id));
        Ok(())
    }

    /// Adds the row of [`LOAD_SESSION`].
    fn session_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        let c = Cols::new(self, "session", row, 10)?;
        let home_dc = c.i32(0, "home_dc")?;
        let user_id = c.opt_i64(1, "user_id")?;
        let user_bot = c.opt_bool(2, "user_bot")?;
        let test_mode = c.bool(3, "test_mode")?;
        let api_id = c.opt_i32(4, "api_id")?;
        let (pts, qts, date, seq) = (c.i32(5, "pts")?, c.i32(6, "qts")?, c.i32(7, "date")?, c.i32(8, "seq")?);
        let token = c.opt_blob(9, "future_auth_token")?.map(<[u8]>::to_vec);
        self.present = true;
        let d = &mut self.data;
        d.home_dc = home_dc;
        d.user = user_id.map(|id| SelfUser::new(id, user_bot.unwrap_or(false)));
        d.test_mode = test_mode;
        d.api_id = api_id;
        let channels = std::mem::take(&mut d.updates.channels);
        d.updates = UpdateState::new(pts, qts, date, seq);
        d.updates.channels = channels;
        d.future_auth_token = token;
        Ok(())
    }

    /// Adds a row of [`LOAD_DCS`].
    fn dc_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        let c = Cols::new(self, "dcs", row, 8)?;
        let id = c.i32(0, "id")?;
        let key_flags = c.u32(1, "key_flags")?;
        let flags = DcFlags(c.u32(2, "flags")?);
        let ip: IpAddr = c.text(3, "ip")?.parse().map_err(|_| c.bad("ip", "not an IP address"))?;
        let port = c.u16(4, "port")?;
        let key = match c.opt_blob(5, "auth_key")? {
            None => None,
            Some(bytes) => Some(AuthKey::from_slice(bytes).ok_or_else(|| c.bad("auth_key", "not 256 bytes"))?),
        };
        let salt = c.i64(6, "server_salt")?;
        let offset = c.i32(7, "time_offset")?;
        let option =
            DcOption::new(id, SocketAddr::new(ip, port)).with_flags(flags).with_auth_key(key).with_salt(salt, offset);
        if option.key() != (DcKey { id, flags: DcFlags(key_flags) }) {
            return Err(c.bad("key_flags", "does not match the flags and address"));
        }
        self.data.dcs.insert(option.key(), option);
        Ok(())
    }

    /// Adds a row of [`LOAD_CHANNELS`].
    fn channel_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        let c = Cols::new(self, "channels", row, 2)?;
        let (id, pts) = (c.i64(0, "id")?, c.i32(1, "pts")?);
        self.data.updates.channels.insert(id, pts);
        Ok(())
    }

    /// Adds a row of [`LOAD_PEERS`].
    fn peer_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        let c = Cols::new(self, "peers", row, 7)?;
        let class = c.i64(0, "class")?;
        let id = c.i64(1, "id")?;
        let kind = kind_from_code(c.i64(2, "kind")?).ok_or_else(|| c.bad("kind", "unknown peer kind"))?;
        if class_code(kind.class()) != class {
            return Err(c.bad("class", "does not match the peer kind"));
        }
        let access_hash = c.i64(3, "access_hash")?;
        let min = c.bool(4, "min")?;
        let usernames = match c.opt_text(5, "usernames")? {
            None => Vec::new(),
            Some(json) => serde_json::from_str::<Vec<String>>(json)
                .map_err(|e| c.bad("usernames", &format!("not a JSON list of strings: {e}")))?,
        };
        let phone = c.opt_text(6, "phone")?.map(str::to_owned);
        self.overlay.push(Peer::new(id, kind, access_hash).with_min(min).with_usernames(usernames).with_phone(phone));
        Ok(())
    }

    /// Adds a row of [`LOAD_MIN_CONTEXTS`].
    fn min_context_row(&mut self, row: &[SqlValueRef<'_>]) -> Result<(), SessionError> {
        // From version 3 on the row starts with its position (under the checksum).
        let at = usize::from(self.version >= 3);
        let c = Cols::new(self, "min_contexts", row, 3 + at)?;
        let context = MinPeerContext::new(c.i64(at, "user_id")?, c.i64(at + 1, "peer_id")?, c.i32(at + 2, "msg_id")?);
        self.data.min_contexts.push(context);
        Ok(())
    }

    /// The session, or `None` when nothing is stored (no `session` row and no other row).
    ///
    /// [`SessionError::Corrupt`] when rows are stored without the session row, or (version 3
    /// on) when a table's rows do not add up to the sum the session row holds: a row went
    /// missing, or one was added, behind the schema's back.
    pub fn finish(mut self) -> Result<Option<SessionData>, SessionError> {
        if !self.present {
            if self.other_rows {
                return Err(SessionError::corrupt(
                    &self.resource,
                    "session: the row is missing while other tables hold rows (DC options, keys, peers)",
                ));
            }
            return Ok(None);
        }
        self.check_sums(&SUMMED)?;
        let chunked = std::mem::take(&mut self.chunked);
        self.data.peers = Self::build_peers(chunked, std::mem::take(&mut self.overlay), &self.removals);
        Ok(Some(self.data))
    }

    /// The peer cache alone, from the rows of [`LOAD_PEER_QUERIES`]; when the session row was
    /// among them, its sums of the peer tables are checked.
    pub fn finish_peers(self) -> Result<PeerCache, SessionError> {
        self.check_sums(&[Table::PeerChunks, Table::Peers, Table::PeerRemovals])?;
        Ok(Self::build_peers(self.chunked, self.overlay, &self.removals))
    }

    fn build_peers(chunked: SortedPeers, overlay: Vec<Peer>, removals: &[PeerKey]) -> PeerCache {
        let mut cache = if chunked.is_empty() {
            // No chunks (a version 1 database, or rows only): build from the rows in bulk.
            overlay.into_iter().collect()
        } else {
            // Rows replace the chunked peer of the same key.
            let mut cache = chunked.finish();
            for peer in overlay {
                cache.insert(peer);
            }
            cache
        };
        for key in removals {
            cache.remove(*key);
        }
        cache
    }
}

struct Cols<'r, 'v> {
    resource: &'r str,
    table: &'static str,
    row: &'r [SqlValueRef<'v>],
}

impl<'r, 'v> Cols<'r, 'v> {
    fn new(
        rows: &'r SessionRows,
        table: &'static str,
        row: &'r [SqlValueRef<'v>],
        n: usize,
    ) -> Result<Self, SessionError> {
        let cols = Self { resource: &rows.resource, table, row };
        if row.len() != n {
            return Err(cols.bad("*", &format!("{} columns instead of {n}", row.len())));
        }
        Ok(cols)
    }

    fn bad(&self, column: &str, reason: &str) -> SessionError {
        SessionError::corrupt(self.resource, format!("{}.{column}: {reason}", self.table))
    }

    fn get(&self, i: usize) -> SqlValueRef<'v> {
        self.row.get(i).copied().unwrap_or(SqlValueRef::Null)
    }

    fn opt_i64(&self, i: usize, column: &str) -> Result<Option<i64>, SessionError> {
        match self.get(i) {
            SqlValueRef::Null => Ok(None),
            SqlValueRef::Integer(v) => Ok(Some(v)),
            _ => Err(self.bad(column, "not an integer")),
        }
    }

    fn i64(&self, i: usize, column: &str) -> Result<i64, SessionError> {
        self.opt_i64(i, column)?.ok_or_else(|| self.bad(column, "NULL"))
    }

    fn opt_i32(&self, i: usize, column: &str) -> Result<Option<i32>, SessionError> {
        self.opt_i64(i, column)?.map(|v| i32::try_from(v).map_err(|_| self.bad(column, "out of range"))).transpose()
    }

    fn i32(&self, i: usize, column: &str) -> Result<i32, SessionError> {
        i32::try_from(self.i64(i, column)?).map_err(|_| self.bad(column, "out of range"))
    }

    fn u32(&self, i: usize, column: &str) -> Result<u32, SessionError> {
        u32::try_from(self.i64(i, column)?).map_err(|_| self.bad(column, "out of range"))
    }

    fn u16(&self, i: usize, column: &str) -> Result<u16, SessionError> {
        u16::try_from(self.i64(i, column)?).map_err(|_| self.bad(column, "out of range"))
    }

    fn opt_bool(&self, i: usize, column: &str) -> Result<Option<bool>, SessionError> {
        match self.opt_i64(i, column)? {
            None => Ok(None),
            Some(0) => Ok(Some(false)),
            Some(1) => Ok(Some(true)),
            Some(_) => Err(self.bad(column, "not 0 or 1")),
        }
    }

    fn bool(&self, i: usize, column: &str) -> Result<bool, SessionError> {
        self.opt_bool(i, column)?.ok_or_else(|| self.bad(column, "NULL"))
    }

    fn opt_text(&self, i: usize, column: &str) -> Result<Option<&'v str>, SessionError> {
        match self.get(i) {
            SqlValueRef::Null => Ok(None),
            SqlValueRef::Text(v) => Ok(Some(v)),
            _ => Err(self.bad(column, "not text")),
        }
    }

    fn text(&self, i: usize, column: &str) -> Result<&'v str, SessionError> {
        self.opt_text(i, column)?.ok_or_else(|| self.bad(column, "NULL"))
    }

    fn opt_blob(&self, i: usize, column: &str) -> Result<Option<&'v [u8]>, SessionError> {
        match self.get(i) {
            SqlValueRef::Null => Ok(None),
            SqlValueRef::Blob(v) => Ok(Some(v)),
            _ => Err(self.bad(column, "not a blob")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{compact_plan, peer_params, removal_params, INSERT_CHUNK};
    use crate::value::{SqlValue, Statement};
    use session_core::PeerKind;

    /// The row [`LOAD_PEER_CHUNKS`] reads back for a chunk insert: every column, crc last.
    fn chunk_row_of(st: &Statement) -> Vec<SqlValueRef<'_>> {
        plain_row(&st.params[1..])
    }

    /// A plain row's values and crc as a load query of version 5 reads them (`sealed` NULL).
    fn plain_row(params: &[SqlValue]) -> Vec<SqlValueRef<'_>> {
        let mut row: Vec<SqlValueRef<'_>> = params.iter().map(SqlValue::as_ref).collect();
        row.insert(row.len() - 1, SqlValueRef::Null);
        row
    }

    #[test]
    fn peers_are_chunks_then_rows_over_them_minus_removals() {
        let chunked: PeerCache = (0..10_000).map(|i| Peer::new(i, PeerKind::User, i * 3)).collect();
        let mut rows = SessionRows::new("test");
        let mut chunks = 0;
        for st in compact_plan(0, &chunked).filter(|st| st.sql == INSERT_CHUNK) {
            rows.row(Table::PeerChunks, &chunk_row_of(&st)).expect("chunk");
            let range: Vec<SqlValueRef<'_>> = st.params[3..7].iter().map(SqlValue::as_ref).collect();
            let (lo, hi) = chunk_range("test", &range).expect("range");
            assert_eq!(hi.id - lo.id + 1, i64::try_from(chunks::CHUNK_PEERS).unwrap_or(0).min(10_000 - lo.id));
            chunks += 1;
        }
        assert_eq!(chunks, 10_000usize.div_ceil(chunks::CHUNK_PEERS));
        let over = Peer::new(5, PeerKind::Bot, -5).with_usernames(vec!["x".into()]);
        let refs: Vec<SqlValue> = peer_params(&over);
        rows.row(Table::Peers, &plain_row(&refs)).expect("row");
        let removal = removal_params(PeerKey::user(9_999));
        rows.row(Table::PeerRemovals, &removal.iter().map(SqlValue::as_ref).collect::<Vec<_>>()).expect("removal");
        let peers = rows.finish_peers().expect("no session row: no sums to check");
        assert_eq!(peers.len(), 9_999);
        assert_eq!(peers.get(PeerKey::user(5)), Some(over));
        assert_eq!(peers.access_hash(PeerKey::user(9_998)), Some(9_998 * 3));
        assert_eq!(peers.get(PeerKey::user(9_999)), None);
    }

    #[test]
    fn a_damaged_chunk_is_corrupt() {
        let chunked: PeerCache = (0..100).map(|i| Peer::new(i, PeerKind::User, i)).collect();
        let mut st = compact_plan(0, &chunked).find(|st| st.sql == INSERT_CHUNK).expect("a chunk");
        if let Some(SqlValue::Blob(b)) = st.params.get_mut(7) {
            b[20] ^= 4;
        }
        let err = SessionRows::new("t").row(Table::PeerChunks, &chunk_row_of(&st)).expect_err("damaged");
        assert!(matches!(err, SessionError::Corrupt { .. }) && err.to_string().contains("peer_chunks"), "{err}");
        // With the row's checksum made to match, the blob's own checksum still catches it.
        let values: Vec<SqlValueRef<'_>> = st.params[1..8].iter().map(SqlValue::as_ref).collect();
        let crc = row_crc(Table::PeerChunks, &values);
        let mut row = values.clone();
        row.push(SqlValueRef::Null);
        row.push(SqlValueRef::Integer(crc));
        let err = SessionRows::new("t").row(Table::PeerChunks, &row).expect_err("damaged blob");
        assert!(err.to_string().contains("peer_chunks.data"), "{err}");
    }

    #[test]
    fn bad_values_are_corrupt_not_defaults() {
        let mut rows = SessionRows::new("test");
        let key = [0u8; 10];
        let row = [
            SqlValueRef::Integer(2),
            SqlValueRef::Integer(0),
            SqlValueRef::Integer(0),
            SqlValueRef::Text("149.154.167.51"),
            SqlValueRef::Integer(443),
            SqlValueRef::Blob(&key),
            SqlValueRef::Integer(0),
            SqlValueRef::Integer(0),
        ];
        let err = rows.dc_row(&row).expect_err("short key");
        assert!(matches!(err, SessionError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("dcs.auth_key"), "{err}");
        let peer = [
            SqlValueRef::Integer(0),
            SqlValueRef::Integer(5),
            SqlValueRef::Integer(99),
            SqlValueRef::Integer(0),
            SqlValueRef::Integer(0),
            SqlValueRef::Null,
            SqlValueRef::Null,
        ];
        assert!(matches!(rows.peer_row(&peer), Err(SessionError::Corrupt { .. })));
        assert!(matches!(rows.finish(), Ok(None)));
    }
}
