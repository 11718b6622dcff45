//! The tables of the schema, as loaded rows name them.

use crate::value::SqlValue;

/// Which table a loaded row comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// `session`.
    Session,
    /// `dcs`.
    Dcs,
    /// `channels`.
    Channels,
    /// `peer_chunks` (since version 2).
    PeerChunks,
    /// `peers`.
    Peers,
    /// `peer_removals` (since version 2).
    PeerRemovals,
    /// `min_contexts`.
    MinContexts,
}

impl Table {
    /// The schema version that created the table.
    pub fn since(self) -> u32 {
        match self {
            Table::PeerChunks | Table::PeerRemovals => 2,
            _ => 1,
        }
    }

    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Session => "session",
            Table::Dcs => "dcs",
            Table::Channels => "channels",
            Table::PeerChunks => "peer_chunks",
            Table::Peers => "peers",
            Table::PeerRemovals => "peer_removals",
            Table::MinContexts => "min_contexts",
        }
    }

    /// The byte that starts every checksum of the table's rows, so that a row read from another
    /// table (a damaged page pointer) never passes as one of this table's.
    pub(crate) fn tag(self) -> u8 {
        match self {
            Table::Session => 1,
            Table::Dcs => 2,
            Table::Channels => 3,
            Table::PeerChunks => 4,
            Table::Peers => 5,
            Table::PeerRemovals => 6,
            Table::MinContexts => 7,
        }
    }

    /// Values a row of the table's load query holds (before its `crc`), at schema `version`.
    pub(crate) fn values(self, version: u32) -> usize {
        match (self, version >= 3) {
            (Table::Session, _) => 10,
            (Table::Dcs, _) => 8,
            (Table::Channels | Table::PeerRemovals, _) => 2,
            (Table::PeerChunks, true) => 7,
            (Table::PeerChunks, false) => 3,
            (Table::Peers, _) => 7,
            (Table::MinContexts, true) => 4,
            (Table::MinContexts, false) => 3,
        }
    }

    /// The index of the table's sum among the sums of the session row (`None`: the session).
    pub(crate) fn sum_index(self) -> Option<usize> {
        match self {
            Table::Session => None,
            Table::Dcs => Some(0),
            Table::Channels => Some(1),
            Table::PeerChunks => Some(2),
            Table::Peers => Some(3),
            Table::PeerRemovals => Some(4),
            Table::MinContexts => Some(5),
        }
    }
}

impl Table {
    /// The index of the first value (in the order of the table's load query) a sealed row
    /// seals: the values before it are the ones the table is keyed by, left in clear (see
    /// [`crate::seal`]). Equal to the number of values when nothing is sealed.
    pub fn sealed_from(self) -> usize {
        match self {
            Table::Session => 0,
            Table::Dcs => 2,
            Table::Channels => 1,
            Table::PeerChunks => 6,
            Table::Peers => 2,
            Table::PeerRemovals => 2,
            Table::MinContexts => 1,
        }
    }

    /// What a sealed row stores in place of each sealed value: the same for every row (so the
    /// placeholders tell nothing), NULL where the column may be NULL, else 0, `''` or `X''`.
    pub(crate) fn placeholders(self) -> &'static [SqlValue] {
        const Z: SqlValue = SqlValue::Integer(0);
        const N: SqlValue = SqlValue::Null;
        static SESSION: [SqlValue; 10] = [Z, N, N, Z, N, Z, Z, Z, Z, N];
        static DCS: [SqlValue; 6] = [Z, SqlValue::Text(String::new()), Z, N, Z, Z];
        static CHANNELS: [SqlValue; 1] = [Z];
        static CHUNKS: [SqlValue; 1] = [SqlValue::Blob(Vec::new())];
        static PEERS: [SqlValue; 5] = [Z, Z, Z, N, N];
        static CONTEXTS: [SqlValue; 3] = [Z, Z, Z];
        match self {
            Table::Session => &SESSION,
            Table::Dcs => &DCS,
            Table::Channels => &CHANNELS,
            Table::PeerChunks => &CHUNKS,
            Table::Peers => &PEERS,
            Table::PeerRemovals => &[],
            Table::MinContexts => &CONTEXTS,
        }
    }

    /// Whether the table's rows have values to seal (and a `sealed` column, since version 5).
    pub fn sealable(self) -> bool {
        self != Table::PeerRemovals
    }
}

/// The tables whose rows the session row's sums cover, in the order of its sum columns.
pub(crate) const SUMMED: [Table; 6] =
    [Table::Dcs, Table::Channels, Table::PeerChunks, Table::Peers, Table::PeerRemovals, Table::MinContexts];
