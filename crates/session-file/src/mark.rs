//! The high-water mark: how a log cut short at a record boundary is told from a log that never
//! grew further.
//!
//! A log truncated exactly between two records reads as a perfectly valid, older session: no
//! checksum can notice what is missing. So the owner records, beside the log, how far it had
//! acknowledged it: after every append's fdatasync returns, a one-line note in the owner lock
//! file (`<session>.lock`, after the pid):
//!
//! ```text
//! log-mark 1 <snapshot end> <snapshot crc> <acknowledged length> <crc of the line so far>
//! ```
//!
//! The note is written with one `pwrite` and no fsync. Since it is written only after the data
//! it describes is durable, whatever version of it reaches the disk describes durable data:
//! after a power cut it can only be behind the log, never ahead. (Behind is safe: the check is
//! weaker, never wrong.) A process that dies keeps its page cache, so after `kill -9` the mark
//! is exact.
//!
//! A mark belongs to one generation of the file: the snapshot record's end and checksum name
//! it. A save or compaction replaces the file (temp file, rename); before the rename the owner
//! writes the new generation's mark, with the new file's length, and fsyncs the lock file. So a
//! mark on disk either names the generation on disk, with a length it reached, or names another
//! generation and is ignored. (Two generations can have identical snapshots; the durable mark
//! written before the rename is the new file's length, which is the snapshot's, and no file of
//! that generation is shorter.)
//!
//! On open, with a mark of the file's generation: a log shorter than the mark lost acknowledged
//! records (`Corrupt`, copy kept), and an unreadable record that starts below the mark is
//! damage to an acknowledged record, never a torn append. Without a usable mark (no lock file,
//! another generation, the mark lost in a power cut) an unreadable last record is cut as a torn
//! append: the only case where a flipped bit in the last record can go unnoticed as damage, and
//! even then its bytes are kept and the cut is reported.

use crate::log::Parsed;

const TAG: &str = "log-mark 1";

/// The acknowledged length of one generation of a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mark {
    pub snapshot_end: u64,
    pub snapshot_crc: u32,
    pub len: u64,
}

impl Mark {
    /// The mark of a log whose first `len` bytes are acknowledged.
    pub fn of(parsed_end: u64, parsed_crc: u32, len: u64) -> Mark {
        Mark { snapshot_end: parsed_end, snapshot_crc: parsed_crc, len }
    }

    /// The note's text. Fixed width, so that rewriting it never changes the lock file's length.
    pub fn encode(&self) -> String {
        let body = format!("{TAG} {:020} {:08x} {:020}", self.snapshot_end, self.snapshot_crc, self.len);
        let check = crc32fast::hash(body.as_bytes());
        format!("{body} {check:08x}")
    }

    /// Reads a note; `None` for anything that is not a whole, intact mark.
    pub fn decode(note: &str) -> Option<Mark> {
        let (body, check) = note.trim().rsplit_once(' ')?;
        if u32::from_str_radix(check, 16).ok()? != crc32fast::hash(body.as_bytes()) {
            return None;
        }
        let mut fields = body.strip_prefix(TAG)?.split_whitespace();
        let snapshot_end = fields.next()?.parse().ok()?;
        let snapshot_crc = u32::from_str_radix(fields.next()?, 16).ok()?;
        let len = fields.next()?.parse().ok()?;
        fields.next().is_none().then_some(Mark { snapshot_end, snapshot_crc, len })
    }

    /// Whether this mark names the generation `parsed` was read from.
    fn names(&self, parsed: &Parsed) -> bool {
        self.snapshot_end == parsed.snapshot_end && self.snapshot_crc == parsed.snapshot_crc
    }

    /// Checks a parsed log against this mark: why it is damage, if it is.
    pub fn check(&self, parsed: &Parsed) -> Result<(), String> {
        if !self.names(parsed) {
            return Ok(());
        }
        if let Some(torn) = parsed.torn {
            if torn.at < self.len {
                return Err(format!(
                    "the record at offset {} is {}, and the owner had acknowledged the log up to byte {}: \
                     an acknowledged record is damaged, not a torn append",
                    torn.at,
                    torn.kind.describe(),
                    self.len
                ));
            }
        } else if parsed.valid_len < self.len {
            return Err(format!(
                "the log ends at byte {}, but its owner had acknowledged {} bytes: acknowledged records were cut off",
                parsed.valid_len, self.len
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_round_trips_and_any_damage_unmakes_it() {
        let mark = Mark { snapshot_end: 1234, snapshot_crc: 0xdead_beef, len: 99_999 };
        let text = mark.encode();
        assert_eq!(Mark::decode(&text), Some(mark));
        for i in 0..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[i] = if bytes[i] == b'7' { b'8' } else { b'7' };
            let damaged = String::from_utf8(bytes).expect("ascii");
            assert_eq!(Mark::decode(&damaged), None, "{damaged}");
        }
        assert_eq!(Mark::decode(""), None);
        assert_eq!(Mark::decode("12345"), None);
    }
}
