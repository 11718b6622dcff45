//! The on-disk layout of a session log: header, snapshot record, change records, and how a
//! damaged record is told from a torn append.
//!
//! A record at the end of the log that cannot be read is one of:
//!
//! - **incomplete**: fewer bytes remain than a frame, or than the length its frame states. Only
//!   an append that never finished leaves this (a crash, or a power cut before the fdatasync);
//! - **complete but failing its checksum**: its length says every byte is there, yet the CRC
//!   does not match. A flipped bit does this; so does a power cut that kept some of the
//!   record's sectors and not others (the file's length can reach the disk before all of its
//!   data). The bytes alone cannot tell these apart.
//!
//! [`parse`] reports both as a [`Torn`] candidate with its [`TornKind`]; the caller decides with
//! the high-water mark ([`crate::mark`]): a candidate that starts below the length the owner had
//! acknowledged is damage, never cut. A bad record followed by a valid one is always damage.

use session_core::{codec, Change, SessionData, SessionError};

/// Magic bytes at the start of a session log.
pub(crate) const MAGIC: [u8; 4] = *b"LYSF";
/// The log layout version this build writes and the newest it reads.
pub(crate) const FILE_VERSION: u16 = 1;
/// magic, file version, model version, CRC-32 of the previous 8 bytes.
pub(crate) const HEADER_LEN: usize = 4 + 2 + 2 + 4;
/// kind, payload length (u64), CRC-32 of kind, length and payload.
pub(crate) const FRAME_LEN: usize = 1 + 8 + 4;
const KIND_SNAPSHOT: u8 = 1;
const KIND_CHANGES: u8 = 2;

/// Why a log could not be read.
#[derive(Debug)]
pub(crate) enum ParseError {
    /// The bytes are damaged (reason).
    Corrupt(String),
    /// A newer format, or another error that is not damage.
    Other(SessionError),
}

/// Why the end of a log could not be read as a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TornKind {
    /// Fewer bytes than a record frame, or than the length the frame states.
    Incomplete,
    /// Every byte the frame's length asks for is there, but the checksum fails.
    BadChecksum,
}

impl TornKind {
    /// A short description for messages.
    pub fn describe(self) -> &'static str {
        match self {
            TornKind::Incomplete => "incomplete (fewer bytes than its length)",
            TornKind::BadChecksum => "complete but failing its checksum",
        }
    }
}

/// An unreadable tail of a log: where it starts, how long it is, what is wrong with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Torn {
    pub at: u64,
    pub len: u64,
    pub kind: TornKind,
}

/// A log that was read.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub data: SessionData,
    /// Length of header plus snapshot record.
    pub snapshot_end: u64,
    /// The snapshot record's checksum: with `snapshot_end`, the identity of this file's
    /// generation (a compaction or save starts a new one).
    pub snapshot_crc: u32,
    /// Length of the readable prefix (everything up to the last good record).
    pub valid_len: u64,
    /// The unreadable tail after `valid_len`, if there is one.
    pub torn: Option<Torn>,
}

fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&FILE_VERSION.to_le_bytes());
    h[6..8].copy_from_slice(&codec::FORMAT_VERSION.to_le_bytes());
    let crc = crc32fast::hash(&h[..8]);
    h[8..12].copy_from_slice(&crc.to_le_bytes());
    h
}

fn record_crc(kind: u8, len: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[kind]);
    hasher.update(&len.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Fills in the frame of a record whose payload follows `FRAME_LEN` placeholder bytes.
fn seal(kind: u8, record: &mut [u8]) {
    let (frame, payload) = record.split_at_mut(FRAME_LEN);
    let len = payload.len() as u64;
    frame[0] = kind;
    frame[1..9].copy_from_slice(&len.to_le_bytes());
    frame[9..13].copy_from_slice(&record_crc(kind, len, payload).to_le_bytes());
}

/// A whole new log file: header and a snapshot record holding `codec_bytes`.
pub(crate) fn snapshot_file(codec_bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + FRAME_LEN + codec_bytes.len());
    out.extend_from_slice(&header());
    out.extend_from_slice(&[0u8; FRAME_LEN]);
    out.extend_from_slice(codec_bytes);
    seal(KIND_SNAPSHOT, &mut out[HEADER_LEN..]);
    out
}

/// The stored checksum of the snapshot record of a log (0 when the log is too short to hold
/// one): with the snapshot's end, the identity of the log's generation.
pub(crate) fn snapshot_crc(log: &[u8]) -> u32 {
    match log.get(HEADER_LEN + 9..HEADER_LEN + FRAME_LEN) {
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

/// One change record, ready to append.
pub(crate) fn change_record(changes: &[Change]) -> Result<Vec<u8>, SessionError> {
    let mut record = postcard::to_extend(changes, vec![0u8; FRAME_LEN])
        .map_err(|e| SessionError::invalid("session changes", format!("cannot encode: {e}")))?;
    seal(KIND_CHANGES, &mut record);
    Ok(record)
}

/// What starts at an offset of the log.
enum At<'a> {
    /// A complete record with a valid checksum: kind and payload.
    Record(u8, &'a [u8]),
    Bad(TornKind),
}

/// The record at `pos`. The stated length is only compared with what the file holds, never
/// used to allocate: a huge length is an incomplete record, not a huge buffer.
fn read_at(bytes: &[u8], pos: usize) -> At<'_> {
    let Some(frame) = pos.checked_add(FRAME_LEN).and_then(|end| bytes.get(pos..end)) else {
        return At::Bad(TornKind::Incomplete);
    };
    let kind = frame[0];
    let mut len = [0u8; 8];
    len.copy_from_slice(&frame[1..9]);
    let len = u64::from_le_bytes(len);
    let stored = u32::from_le_bytes([frame[9], frame[10], frame[11], frame[12]]);
    let start = pos + FRAME_LEN;
    let Some(payload) =
        usize::try_from(len).ok().and_then(|l| start.checked_add(l)).and_then(|end| bytes.get(start..end))
    else {
        return At::Bad(TornKind::Incomplete);
    };
    if record_crc(kind, len, payload) == stored {
        At::Record(kind, payload)
    } else {
        At::Bad(TornKind::BadChecksum)
    }
}

/// The frame at `pos`, if a complete record with a valid checksum starts there.
fn record_at(bytes: &[u8], pos: usize) -> Option<(u8, &[u8])> {
    match read_at(bytes, pos) {
        At::Record(kind, payload) => Some((kind, payload)),
        At::Bad(_) => None,
    }
}

/// Reads a log. Damage to the header or snapshot, a record that fails to decode although its
/// checksum holds, or a bad record followed by a good one is corruption; a bad record with
/// nothing valid after it may be a torn append and is reported in [`Parsed::torn`] (the caller
/// checks it against the high-water mark before treating it as one).
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed, ParseError> {
    let corrupt = |reason: String| ParseError::Corrupt(reason);
    let head = bytes
        .get(..HEADER_LEN)
        .ok_or_else(|| corrupt(format!("{} bytes is shorter than the file header", bytes.len())))?;
    if head[..4] != MAGIC {
        return Err(corrupt("the file header's magic bytes are damaged".into()));
    }
    let stored = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if crc32fast::hash(&head[..8]) != stored {
        return Err(corrupt("the file header's checksum does not match".into()));
    }
    let version = u16::from_le_bytes([head[4], head[5]]);
    if version > FILE_VERSION {
        return Err(ParseError::Other(SessionError::UnsupportedVersion {
            what: "session log file",
            found: u32::from(version),
            supported: u32::from(FILE_VERSION),
        }));
    }
    let model = u16::from_le_bytes([head[6], head[7]]);
    if model > codec::FORMAT_VERSION {
        return Err(ParseError::Other(SessionError::UnsupportedVersion {
            what: "session codec",
            found: u32::from(model),
            supported: u32::from(codec::FORMAT_VERSION),
        }));
    }
    if version == 0 || model == 0 {
        return Err(corrupt("the file header names version 0, which does not exist".into()));
    }

    let (kind, snapshot) = record_at(bytes, HEADER_LEN)
        .ok_or_else(|| corrupt("the snapshot record is damaged (bad checksum or length)".into()))?;
    if kind != KIND_SNAPSHOT {
        return Err(corrupt(format!("the first record has kind {kind}, not a snapshot")));
    }
    let mut data = match codec::decode(snapshot) {
        Ok(d) => d,
        Err(e @ SessionError::UnsupportedVersion { .. }) => return Err(ParseError::Other(e)),
        Err(e) => return Err(corrupt(format!("the snapshot does not decode: {e}"))),
    };
    let snapshot_end = HEADER_LEN + FRAME_LEN + snapshot.len();
    let mut pos = snapshot_end;
    let mut torn = None;
    while pos < bytes.len() {
        match read_at(bytes, pos) {
            At::Record(KIND_CHANGES, payload) => {
                let changes: Vec<Change> = postcard::from_bytes(payload).map_err(|e| {
                    corrupt(format!("the change record at offset {pos} has a valid checksum but does not decode: {e}"))
                })?;
                data.apply_all(&changes);
                pos += FRAME_LEN + payload.len();
            }
            At::Record(kind, _) => return Err(corrupt(format!("the record at offset {pos} has unknown kind {kind}"))),
            At::Bad(kind) => {
                if let Some(next) =
                    (pos + 1..bytes.len()).find(|p| bytes[*p] == KIND_CHANGES && record_at(bytes, *p).is_some())
                {
                    return Err(corrupt(format!(
                        "the record at offset {pos} is damaged and a valid record follows at offset {next}"
                    )));
                }
                torn = Some(Torn { at: pos as u64, len: (bytes.len() - pos) as u64, kind });
                break;
            }
        }
    }
    Ok(Parsed {
        data,
        snapshot_end: snapshot_end as u64,
        snapshot_crc: snapshot_crc(bytes),
        valid_len: pos as u64,
        torn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::{Peer, PeerKind};

    #[test]
    fn records_append_and_tail_is_dropped() {
        let mut bytes = snapshot_file(&codec::encode(&SessionData::default()).expect("encode"));
        let first = change_record(&[Change::SetHomeDc(2)]).expect("record");
        bytes.extend_from_slice(&first);
        let acknowledged = bytes.len();
        let second = change_record(&[Change::UpsertPeer(Peer::new(1, PeerKind::User, 5))]).expect("record");
        for cut in 1..second.len() {
            let mut torn = bytes.clone();
            torn.extend_from_slice(&second[..cut]);
            let parsed = parse(&torn).expect("torn tail is not corruption");
            assert_eq!(parsed.valid_len, acknowledged as u64);
            let torn = parsed.torn.expect("torn");
            assert_eq!((torn.at, torn.kind), (acknowledged as u64, TornKind::Incomplete));
            assert_eq!(parsed.data.home_dc, 2);
            assert!(parsed.data.peers.is_empty());
        }
        bytes.extend_from_slice(&second);
        let parsed = parse(&bytes).expect("complete");
        assert_eq!(parsed.torn, None);
        assert_eq!(parsed.data.peers.len(), 1);
        // A flipped bit inside the complete last record is not an incomplete append.
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let torn = parse(&bytes).expect("parsed").torn.expect("bad last record");
        assert_eq!((torn.at, torn.kind), (acknowledged as u64, TornKind::BadChecksum));
    }

    #[test]
    fn damaged_record_followed_by_a_good_one_is_corruption() {
        let mut bytes = snapshot_file(&codec::encode(&SessionData::default()).expect("encode"));
        let at = bytes.len();
        bytes.extend_from_slice(&change_record(&[Change::SetHomeDc(2)]).expect("record"));
        bytes.extend_from_slice(&change_record(&[Change::SetHomeDc(3)]).expect("record"));
        // Damage the length field of the first change record: its end moves, yet the second
        // record is still found.
        bytes[at + 3] ^= 0x40;
        assert!(matches!(parse(&bytes), Err(ParseError::Corrupt(_))));
    }
}
