//! The versioned binary codec: every stored form of a whole session is these bytes.
//!
//! Layout (little-endian):
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | magic `LYSS` |
//! | 2 | format version ([`FORMAT_VERSION`]) |
//! | 8 | payload length |
//! | 4 | CRC-32 (IEEE) of the version, the length and the payload |
//! | n | postcard payload |
//!
//! Decoding checks the magic, refuses a newer version by name, checks that the length matches
//! the input exactly and that the checksum holds, and only then parses the payload; so any
//! truncation or flipped bit is an error, and no allocation is sized by an unverified length.

use crate::error::{Result, SessionError};
use crate::model::SessionData;

/// Magic bytes at the start of every encoded session.
pub const MAGIC: [u8; 4] = *b"LYSS";

/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u16 = 1;

/// Size of the header before the payload.
pub const HEADER_LEN: usize = 4 + 2 + 8 + 4;

const WHAT: &str = "session bytes";

/// Encodes a session.
pub fn encode(data: &SessionData) -> Result<Vec<u8>> {
    // The payload is serialized right after room for the header, which is filled in last: the
    // payload is never copied, and the buffer is sized for the peers up front.
    let mut out = Vec::with_capacity(HEADER_LEN + 1024 + data.peers.encoded_len_hint());
    out.resize(HEADER_LEN, 0);
    let mut out = postcard::serialize_with_flavor(data, VecFlavor(out))
        .map_err(|e| SessionError::invalid("session", format!("cannot encode: {e}")))?;
    fill_header(&mut out, FORMAT_VERSION);
    Ok(out)
}

/// A postcard output that appends to a `Vec` it was given (possibly already holding bytes).
struct VecFlavor(Vec<u8>);

impl postcard::ser_flavors::Flavor for VecFlavor {
    type Output = Vec<u8>;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// Writes the header into the first [`HEADER_LEN`] bytes of `out`, for the payload after them.
fn fill_header(out: &mut [u8], version: u16) {
    let (header, payload) = out.split_at_mut(HEADER_LEN);
    header[..4].copy_from_slice(&MAGIC);
    header[4..6].copy_from_slice(&version.to_le_bytes());
    header[6..14].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    header[14..].copy_from_slice(&checksum(version, payload).to_le_bytes());
}

#[cfg(test)]
fn frame(version: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0; HEADER_LEN];
    out.extend_from_slice(payload);
    fill_header(&mut out, version);
    out
}

fn checksum(version: u16, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&version.to_le_bytes());
    h.update(&(payload.len() as u64).to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// True when `bytes` start like an encoded session (magic bytes), whatever their version.
pub fn looks_like_session(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// Decodes a session. Never panics; see the module docs for what is checked.
pub fn decode(bytes: &[u8]) -> Result<SessionData> {
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or_else(|| SessionError::corrupt(WHAT, format!("{} bytes is shorter than the header", bytes.len())))?;
    if header[..4] != MAGIC {
        return Err(SessionError::corrupt(WHAT, "missing magic bytes"));
    }
    let version = u16::from_le_bytes([header[4], header[5]]);
    if version > FORMAT_VERSION {
        return Err(SessionError::UnsupportedVersion {
            what: "session codec",
            found: u32::from(version),
            supported: u32::from(FORMAT_VERSION),
        });
    }
    if version == 0 {
        return Err(SessionError::corrupt(WHAT, "format version 0 does not exist"));
    }
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&header[6..14]);
    let declared = u64::from_le_bytes(len_bytes);
    let payload = &bytes[HEADER_LEN..];
    if declared != payload.len() as u64 {
        return Err(SessionError::corrupt(
            WHAT,
            format!("payload length {declared} does not match the {} bytes present", payload.len()),
        ));
    }
    let stored = u32::from_le_bytes([header[14], header[15], header[16], header[17]]);
    if stored != checksum(version, payload) {
        return Err(SessionError::corrupt(WHAT, "checksum mismatch"));
    }
    let (data, rest) = postcard::take_from_bytes::<SessionData>(payload)
        .map_err(|e| SessionError::corrupt(WHAT, format!("payload does not parse: {e}")))?;
    if !rest.is_empty() {
        return Err(SessionError::corrupt(WHAT, format!("{} trailing bytes after the payload", rest.len())));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_version_is_refused_by_name() {
        let mut bytes = frame(FORMAT_VERSION + 1, b"whatever");
        let err = decode(&bytes).expect_err("newer");
        assert!(matches!(err, SessionError::UnsupportedVersion { found: 2, supported: 1, .. }), "{err}");
        assert!(err.to_string().contains('2') && err.to_string().contains('1'));
        bytes.truncate(3);
        assert!(matches!(decode(&bytes), Err(SessionError::Corrupt { .. })));
    }
}
