//! Sealed rows (encryption at rest, schema version 5): each row's personal values sealed with
//! [`session_core::seal`] into its `sealed` column, and the database's seal record.
//!
//! A database is sealed or plain as a whole. The `seal` table holds one row when it is sealed:
//! the [`KeyId`] of the key new values are sealed with and, for a passphrase, its derivation
//! record ([`KdfRecord`]: Argon2id costs and salt). A driver reads it at open
//! ([`LOAD_SEAL`], [`SealRecord::from_row`]) and hands it to [`open_seal`], which decides:
//! no record and no key, plain as before; a record and no key, [`SessionError::Sealed`]; a
//! record whose key the keyring lacks, [`SessionError::WrongKey`]; a keyring and no record, a
//! database to seal (see [`DbSeal::is_new`]).
//!
//! In a sealed row every value but the ones its table is keyed by (session id, DC id and flags,
//! channel id, peer class and id, chunk position, count and key range, context position) is
//! replaced by a fixed placeholder (0, empty or NULL, the same for every row), and the values
//! themselves are serialized (a type byte and the value, each) and sealed into `sealed` as
//! base64 text (text, not a blob, so that a run of rows travels in one JSON parameter as plain
//! rows do).
//! The seal's binding is the context `sql-row`, the session's name, the table's name and every
//! value of the row left in clear: a sealed value copied to another row, table or named
//! session does not open.
//!
//! Row checksums (`crc`) cover what is stored: the clear values, the placeholders and the
//! `sealed` text (a NULL `sealed` is left out, so rows written before version 5 keep theirs).
//! A checksum over the plaintext would be stored in clear beside the ciphertext and give away
//! 32 bits of every row's secret values to anyone who can guess them (a phone number, an
//! access hash of a known peer); over the stored bytes it says nothing the bytes do not.
//! The seal's tag authenticates each value, the checksums and sums keep telling damage and
//! missing rows apart from a wrong key exactly as in a plain database.

use std::fmt;
use std::sync::Arc;

use session_core::seal::{self, Binding};
use session_core::{KdfRecord, KeyId, Keyring, SealingKey, SessionError, KEY_ID_LEN};
use zeroize::Zeroizing;

use crate::table::Table;
use crate::value::{SqlValue, SqlValueRef, Statement};

/// The seal record of the database (no row: the database is plain).
pub const LOAD_SEAL: &str = "SELECT key_id, kdf FROM seal WHERE id = 0";
/// Writes the seal record ([`DbSeal::record_statement`]).
pub const WRITE_SEAL: &str = "INSERT INTO seal (id, key_id, kdf) VALUES (0, ?1, ?2) \
     ON CONFLICT (id) DO UPDATE SET key_id = excluded.key_id, kdf = excluded.kdf";
/// How many sessions other than `?1` hold a session row (a database is sealed whole: a
/// driver seals a plain one only when no other session has rows in clear).
pub const OTHER_STORED_SESSIONS: &str = "SELECT count(*) FROM session WHERE sid <> ?1";

/// The `sealed` text's alphabet: standard base64 without padding, canonical (a text whose
/// unused trailing bits are set is refused). SIMD: a load of 100,000 sealed peers spent as long
/// in a scalar base64 decoder as in the cipher.
const BASE64: base64_simd::Base64 = base64_simd::STANDARD_NO_PAD;
const CONTEXT: &str = "sql-row";

/// What the `seal` table records: the key new values are sealed with, and how it was derived
/// from a passphrase (if it was). Not secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealRecord {
    /// The id of the key new values are sealed with.
    pub key_id: KeyId,
    /// The passphrase derivation of that key, if it came from a passphrase.
    pub kdf: Option<KdfRecord>,
}

impl SealRecord {
    /// Reads a row of [`LOAD_SEAL`]: `key_id` as 16 hexadecimal characters, `kdf` as the hex of
    /// [`KdfRecord::to_bytes`] or NULL. Anything else is [`SessionError::Corrupt`].
    pub fn from_row(resource: &str, row: &[SqlValueRef<'_>]) -> Result<SealRecord, SessionError> {
        let bad = |what: &str| SessionError::corrupt(resource, format!("seal: {what}"));
        let [key_id, kdf] = row else { return Err(bad("not two columns")) };
        let SqlValueRef::Text(key_id) = key_id else { return Err(bad("key_id is not text")) };
        let id = from_hex(key_id).filter(|b| b.len() == KEY_ID_LEN).ok_or_else(|| bad("key_id is not a key id"))?;
        let mut bytes = [0u8; KEY_ID_LEN];
        bytes.copy_from_slice(&id);
        let kdf = match kdf {
            SqlValueRef::Null => None,
            SqlValueRef::Text(t) => Some(
                from_hex(t)
                    .and_then(|b| KdfRecord::from_bytes(&b))
                    .ok_or_else(|| bad("kdf is not a known key derivation"))?,
            ),
            _ => return Err(bad("kdf is not text")),
        };
        Ok(SealRecord { key_id: KeyId(bytes), kdf })
    }

    /// The statement that stores this record.
    pub fn statement(&self) -> Statement {
        let kdf = self.kdf.map_or(SqlValue::Null, |k| SqlValue::Text(to_hex(&k.to_bytes())));
        Statement::new(WRITE_SEAL, vec![SqlValue::Text(to_hex(&self.key_id.0)), kdf])
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

/// The sealing of one database: the keyring, the key new values are sealed with, and the
/// record stored (or to store). Made by [`open_seal`]; [`DbSeal::session`] gives the
/// [`Sealer`] of one named session. `Debug` shows the key id only.
pub struct DbSeal {
    keys: Keyring,
    key: Arc<SealingKey>,
    stored: Option<SealRecord>,
}

impl fmt::Debug for DbSeal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbSeal").field("key_id", &self.key.id()).field("stored", &self.stored).finish()
    }
}

/// Decides how a database is opened from its seal record (`stored`, read with [`LOAD_SEAL`])
/// and the keys the application gave (`None`: opened without a key).
///
/// - no record, no keys: `Ok(None)`, a plain database as before;
/// - a record, no keys: [`SessionError::Sealed`] naming its key id;
/// - a record whose key the keyring does not hold: [`SessionError::WrongKey`];
/// - otherwise the database's [`DbSeal`]; with no record, [`DbSeal::is_new`] is true and the
///   driver must store [`DbSeal::record_statement`] (sealing what is stored first).
///
/// Blocking for a passphrase (Argon2id, once per keyring): call it off the async runtime.
pub fn open_seal(
    resource: &str,
    stored: Option<SealRecord>,
    keys: Option<&Keyring>,
) -> Result<Option<Arc<DbSeal>>, SessionError> {
    let Some(keys) = keys else {
        return match stored {
            None => Ok(None),
            Some(r) => Err(SessionError::Sealed { resource: resource.to_owned(), key_id: Some(r.key_id) }),
        };
    };
    if let Some(r) = &stored {
        if keys.opening_key(r.key_id, r.kdf.as_ref())?.is_none() {
            return Err(SessionError::WrongKey { resource: resource.to_owned(), key_id: r.key_id });
        }
    }
    let key = keys.sealing_key(stored.and_then(|r| r.kdf).as_ref())?;
    Ok(Some(Arc::new(DbSeal { keys: keys.clone(), key, stored })))
}

impl DbSeal {
    /// The record for the key this seals with.
    pub fn record(&self) -> SealRecord {
        SealRecord { key_id: self.key.id(), kdf: self.key.kdf().copied() }
    }

    /// No record was stored: the database was plain (or new) and becomes sealed once the
    /// driver stores [`DbSeal::record_statement`].
    pub fn is_new(&self) -> bool {
        self.stored.is_none()
    }

    /// The stored record differs from [`DbSeal::record`] (no record, or a rotation to a new
    /// key): the driver stores [`DbSeal::record_statement`].
    pub fn needs_record(&self) -> bool {
        self.stored != Some(self.record())
    }

    /// The statement that stores [`DbSeal::record`].
    pub fn record_statement(&self) -> Statement {
        self.record().statement()
    }

    /// The id of the key new values are sealed with.
    pub fn key_id(&self) -> KeyId {
        self.key.id()
    }

    /// The sealer of the session called `name`.
    pub fn session(self: &Arc<Self>, name: &str) -> Sealer {
        Sealer { db: Arc::clone(self), session: Arc::from(name) }
    }
}

/// Seals and opens the rows of one named session of a sealed database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Sealer {
    db: Arc<DbSeal>,
    session: Arc<str>,
}

impl Sealer {
    /// The name the rows are bound to.
    pub fn session_name(&self) -> &str {
        &self.session
    }

    /// The database's sealing.
    pub fn db(&self) -> &Arc<DbSeal> {
        &self.db
    }

    fn binding<'v>(&self, table: Table, clear: impl IntoIterator<Item = SqlValueRef<'v>>) -> Binding {
        self.binding_with(table, clear, &mut Vec::with_capacity(32))
    }

    /// [`Sealer::binding`], serializing the clear values in `key` (a buffer reused by the caller).
    fn binding_with<'v>(
        &self,
        table: Table,
        clear: impl IntoIterator<Item = SqlValueRef<'v>>,
        key: &mut Vec<u8>,
    ) -> Binding {
        key.clear();
        for v in clear {
            encode_value(key, v);
        }
        Binding::new(CONTEXT).session(&self.session).part(table.name()).row(&key[..])
    }

    /// The envelope of the values `secret` of a row of `table` whose clear values are `clear`,
    /// with `scratch` reused between calls (the serialized values, wiped when it drops).
    pub(crate) fn seal_values<'v>(
        &self,
        table: Table,
        clear: impl IntoIterator<Item = SqlValueRef<'v>>,
        secret: impl IntoIterator<Item = SqlValueRef<'v>>,
        scratch: &mut SealScratch,
    ) -> Result<Vec<u8>, SessionError> {
        scratch.plain.clear();
        for v in secret {
            encode_value(&mut scratch.plain, v);
        }
        let binding = self.binding_with(table, clear, &mut scratch.key);
        seal::seal(&self.db.key, &binding, &scratch.plain)
    }

    /// The stored form of a row of `table` whose values (in the order of its load query) are
    /// `values`: the clear values, the placeholders, then the `sealed` text. A table with
    /// nothing to seal keeps its values.
    pub(crate) fn seal_row(&self, table: Table, mut values: Vec<SqlValue>) -> Result<Vec<SqlValue>, SessionError> {
        let from = table.sealed_from();
        let placeholders = table.placeholders();
        if placeholders.is_empty() {
            return Ok(values);
        }
        let (clear, secret) = values.split_at(from.min(values.len()));
        let sealed = self.seal_values(
            table,
            clear.iter().map(SqlValue::as_ref),
            secret.iter().map(SqlValue::as_ref),
            &mut SealScratch::default(),
        )?;
        // The replaced values may be secrets (an auth key): wiped, not just dropped.
        for v in values.drain(from..) {
            if let SqlValue::Blob(b) = v {
                drop(Zeroizing::new(b));
            }
        }
        values.reserve(placeholders.len() + 1);
        values.extend(placeholders.iter().cloned());
        values.push(SqlValue::Text(BASE64.encode_to_string(&sealed)));
        Ok(values)
    }

    /// Opens the `sealed` text of a row of `table` whose clear values are `clear` (its first
    /// [`Table::sealed_from`] values), giving the serialized values ([`decode_values`]).
    pub(crate) fn open_row(
        &self,
        resource: &str,
        table: Table,
        clear: &[SqlValueRef<'_>],
        sealed: &str,
    ) -> Result<Zeroizing<Vec<u8>>, SessionError> {
        let bytes = BASE64
            .decode_to_vec(sealed)
            .map_err(|_| SessionError::corrupt(resource, format!("{}.sealed: not base64", table.name())))?;
        let binding = self.binding(table, clear.iter().copied());
        match seal::key_id_of(&bytes) {
            Some(id) if id == self.db.key.id() => seal::open_with(&self.db.key, resource, &binding, &bytes),
            _ => self.db.keys.open(self.db.stored.and_then(|r| r.kdf).as_ref(), resource, &binding, &bytes),
        }
    }
}

/// Buffers a run of seals reuses: the serialized values (wiped on drop: they may be secrets)
/// and the serialized clear values of the binding.
#[derive(Default)]
pub(crate) struct SealScratch {
    plain: Zeroizing<Vec<u8>>,
    key: Vec<u8>,
}

/// Appends the `sealed` text of an envelope (what [`Sealer::seal_row`] stores) to `out`.
pub(crate) fn append_sealed_text(envelope: &[u8], out: &mut String) {
    BASE64.encode_append(envelope, out);
}

/// The key id a `sealed` text names, if it can be read (for [`SessionError::Sealed`]).
pub(crate) fn key_id_of_text(sealed: &str) -> Option<KeyId> {
    BASE64.decode_to_vec(sealed).ok().and_then(|b| seal::key_id_of(&b))
}

/// Appends one value: a type byte, then an integer or float as 8 bytes little-endian, text and
/// blobs as a 4-byte little-endian length and their bytes.
fn encode_value(out: &mut Vec<u8>, v: SqlValueRef<'_>) {
    let mut bytes = |tag: u8, b: &[u8]| {
        out.push(tag);
        out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(b);
    };
    match v {
        SqlValueRef::Null => out.push(0),
        SqlValueRef::Integer(i) => {
            out.push(1);
            out.extend_from_slice(&i.to_le_bytes());
        }
        SqlValueRef::Real(f) => {
            out.push(2);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        SqlValueRef::Text(t) => bytes(3, t.as_bytes()),
        SqlValueRef::Blob(b) => bytes(4, b),
    }
}

/// Reads exactly `count` values written by [`encode_value`]; `None` if the bytes hold
/// anything else (an opened seal holds what was sealed, so this is damage only in a build
/// that disagrees with itself).
pub(crate) fn decode_values(mut bytes: &[u8], count: usize) -> Option<Vec<SqlValueRef<'_>>> {
    let mut out = Vec::with_capacity(count);
    while let Some((&tag, rest)) = bytes.split_first() {
        let (value, rest) = match tag {
            0 => (SqlValueRef::Null, rest),
            1 | 2 => {
                let (n, rest) = rest.split_first_chunk::<8>()?;
                let v = if tag == 1 {
                    SqlValueRef::Integer(i64::from_le_bytes(*n))
                } else {
                    SqlValueRef::Real(f64::from_bits(u64::from_le_bytes(*n)))
                };
                (v, rest)
            }
            3 | 4 => {
                let (len, rest) = rest.split_first_chunk::<4>()?;
                let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
                let (b, rest) = (rest.get(..len)?, rest.get(len..)?);
                let v = if tag == 3 { SqlValueRef::Text(std::str::from_utf8(b).ok()?) } else { SqlValueRef::Blob(b) };
                (v, rest)
            }
            _ => return None,
        };
        out.push(value);
        bytes = rest;
    }
    (out.len() == count).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::{KdfParams, Passphrase};

    fn sealer(key: u8, name: &str) -> Sealer {
        let keys = Keyring::new(SealingKey::from_bytes([key; 32]));
        open_seal("t", None, Some(&keys)).expect("seal").expect("sealed").session(name)
    }

    fn peer_row() -> Vec<SqlValue> {
        vec![
            SqlValue::Integer(0),
            SqlValue::Integer(42),
            SqlValue::Integer(1),
            SqlValue::Integer(i64::MIN),
            SqlValue::Integer(0),
            SqlValue::Text("[\"alice\"]".into()),
            SqlValue::Text("+15550100".into()),
        ]
    }

    fn refs(values: &[SqlValue]) -> Vec<SqlValueRef<'_>> {
        values.iter().map(SqlValue::as_ref).collect()
    }

    #[test]
    fn a_row_round_trips_and_leaves_only_its_keys_in_clear() {
        let s = sealer(1, "a");
        let stored = s.seal_row(Table::Peers, peer_row()).expect("seal");
        assert_eq!(stored.len(), 8);
        assert_eq!(&stored[..2], &peer_row()[..2]);
        assert_eq!(&stored[2..7], Table::Peers.placeholders());
        let SqlValue::Text(text) = &stored[7] else { panic!("{stored:?}") };
        assert!(!text.contains("alice"));
        let plain = s.open_row("t", Table::Peers, &refs(&stored[..2]), text).expect("opens");
        let values = decode_values(&plain, 5).expect("decodes");
        assert_eq!(values, refs(&peer_row()[2..]));
    }

    #[test]
    fn a_moved_value_or_another_key_does_not_open() {
        let s = sealer(1, "a");
        let stored = s.seal_row(Table::Peers, peer_row()).expect("seal");
        let SqlValue::Text(text) = &stored[7] else { panic!() };
        let other_row = [SqlValueRef::Integer(0), SqlValueRef::Integer(43)];
        assert!(matches!(s.open_row("t", Table::Peers, &other_row, text), Err(SessionError::Corrupt { .. })));
        let other_session = sealer(1, "b");
        let key = refs(&stored[..2]);
        assert!(matches!(other_session.open_row("t", Table::Peers, &key, text), Err(SessionError::Corrupt { .. })));
        assert!(matches!(s.open_row("t", Table::Channels, &key, text), Err(SessionError::Corrupt { .. })));
        let other_key = sealer(2, "a");
        assert!(matches!(other_key.open_row("t", Table::Peers, &key, text), Err(SessionError::WrongKey { .. })));
        assert_eq!(key_id_of_text(text), Some(s.db().key_id()));
    }

    #[test]
    fn the_record_decides_how_a_database_opens() {
        let keys = Keyring::new(SealingKey::from_bytes([7; 32]));
        assert!(open_seal("t", None, None).expect("plain").is_none());
        let seal = open_seal("t", None, Some(&keys)).expect("new").expect("sealed");
        assert!(seal.is_new() && seal.needs_record());
        let record = seal.record();
        let st = record.statement();
        let back = SealRecord::from_row("t", &refs(&st.params)).expect("reads");
        assert_eq!(back, record);
        assert!(
            matches!(open_seal("t", Some(record), None), Err(SessionError::Sealed { key_id: Some(id), .. }) if id == record.key_id)
        );
        let wrong = Keyring::new(SealingKey::from_bytes([8; 32]));
        assert!(
            matches!(open_seal("t", Some(record), Some(&wrong)), Err(SessionError::WrongKey { key_id, .. }) if key_id == record.key_id)
        );
        let again = open_seal("t", Some(record), Some(&keys)).expect("opens").expect("sealed");
        assert!(!again.is_new() && !again.needs_record());
        // Rotation: the new key seals, the old one still opens; the record moves on.
        let rotated = Keyring::new(SealingKey::from_bytes([8; 32])).with_old_key(SealingKey::from_bytes([7; 32]));
        let r = open_seal("t", Some(record), Some(&rotated)).expect("opens").expect("sealed");
        assert!(r.needs_record() && !r.is_new());
        for bad in [
            vec![SqlValueRef::Text("zz"), SqlValueRef::Null],
            vec![SqlValueRef::Integer(1), SqlValueRef::Null],
            vec![SqlValueRef::Text("0011"), SqlValueRef::Null],
            vec![SqlValueRef::Text("0011223344556677"), SqlValueRef::Text("01")],
        ] {
            assert!(matches!(SealRecord::from_row("t", &bad), Err(SessionError::Corrupt { .. })), "{bad:?}");
        }
    }

    #[test]
    fn a_passphrase_keeps_its_stored_salt() {
        let params = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };
        let keys = Keyring::from_passphrase(Passphrase::new("hunter2"), params);
        let seal = open_seal("t", None, Some(&keys)).expect("new").expect("sealed");
        let record = seal.record();
        assert!(record.kdf.is_some());
        let st = record.statement();
        let back = SealRecord::from_row("t", &refs(&st.params)).expect("reads");
        let fresh = Keyring::from_passphrase(Passphrase::new("hunter2"), params);
        let again = open_seal("t", Some(back), Some(&fresh)).expect("opens").expect("sealed");
        assert!(!again.needs_record());
        let wrong = Keyring::from_passphrase(Passphrase::new("hunter3"), params);
        assert!(matches!(open_seal("t", Some(back), Some(&wrong)), Err(SessionError::WrongKey { .. })));
    }

    #[test]
    fn sealed_text_is_canonical_unpadded_standard_base64() {
        // What databases written before hold: the standard alphabet, no padding.
        assert_eq!(BASE64.encode_to_string([0u8, 1, 2, 3, 0xfb, 0xff]), "AAECA/v/");
        assert_eq!(BASE64.encode_to_string([0xffu8]), "/w");
        assert_eq!(BASE64.decode_to_vec("/w").ok(), Some(vec![0xff]));
        // Padding, a URL-safe character, and set trailing bits are not what is written: damage.
        for bad in ["/w==", "_w", "/x"] {
            assert!(BASE64.decode_to_vec(bad).is_err(), "{bad}");
        }
        let s = sealer(1, "a");
        let stored = s.seal_row(Table::Peers, peer_row()).expect("seal");
        let SqlValue::Text(text) = &stored[7] else { panic!("{stored:?}") };
        let mut padded = text.clone();
        padded.push('=');
        assert!(matches!(
            s.open_row("t", Table::Peers, &refs(&stored[..2]), &padded),
            Err(SessionError::Corrupt { .. })
        ));
    }

    #[test]
    fn serialized_values_are_exact_and_damage_is_refused() {
        let values = [
            SqlValueRef::Null,
            SqlValueRef::Integer(i64::MIN),
            SqlValueRef::Real(1.5),
            SqlValueRef::Text("é\0"),
            SqlValueRef::Blob(&[0, 1, 2]),
        ];
        let mut out = Vec::new();
        for v in values {
            encode_value(&mut out, v);
        }
        assert_eq!(decode_values(&out, 5).as_deref(), Some(&values[..]));
        assert!(decode_values(&out, 4).is_none());
        for len in 0..out.len() {
            assert!(decode_values(&out[..len], 5).is_none(), "cut at {len}");
        }
    }
}
