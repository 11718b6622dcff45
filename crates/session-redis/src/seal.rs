//! Encryption at rest: what `session_core::seal` gives a third-party backend, applied to the
//! values of the session hash.
//!
//! A sealed session has `format` `2` and a `seal` field (the marker, plain: it names the key and,
//! for a passphrase, how its key was derived). Every other non-empty value is a
//! `session_core::seal` envelope, sealed one by one so that one change still costs the fields
//! it touches:
//!
//! | field | value |
//! | --- | --- |
//! | `meta`, `dc:ID:FLAGS`, `c:ID` | an envelope of the plain value, bound to the key prefix, the session name and the field |
//! | `p:BB` | records as in a plain bucket (the peer's 9-byte key and a length, plain, so the Lua script can merge them), each value an envelope bound to the prefix, session, field and the peer's key |
//!
//! The marker:
//!
//! ```text
//! version (1) | key id (8) | KDF record length (u8) | KDF record (0, or 29: Argon2id costs and salt) |
//! FNV-1a 64 (u64 LE) of everything before
//! ```
//!
//! Every value of a session is sealed with the marker's key: a backend whose keyring seals with
//! another key (a rotation, or a plain session opened with a key) rewrites the whole session,
//! marker included, in its first write. So a value naming another key is damage, never a
//! rotation in progress.
//!
//! Why a checksum in the marker: with a passphrase, a damaged salt derives another key, which
//! would otherwise read as `WrongKey`; the checksum makes it `Corrupt`. It is FNV-1a (a few lines,
//! here) rather than a CRC crate because this crate, as a third party's would, depends on
//! `session-core` and its Redis client only.

use std::sync::Arc;

use crate::keys::SEALED_FORMAT;
use session_core::seal::{self, Binding};
use session_core::{KdfRecord, KeyId, Keyring, SealingKey, SessionError, KEY_ID_LEN};

/// The marker layout this build writes and reads.
const MARKER_VERSION: u8 = 1;
const CHECK_LEN: usize = 8;
/// What every value's binding starts with.
const CONTEXT: &str = "redis-session-field";

/// The `seal` field of a session, read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Marker {
    pub key_id: KeyId,
    pub kdf: Option<KdfRecord>,
}

impl Marker {
    fn of(key: &SealingKey) -> Marker {
        Marker { key_id: key.id(), kdf: key.kdf().copied() }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let kdf = self.kdf.map(|k| k.to_bytes());
        let kdf: &[u8] = kdf.as_ref().map_or(&[], |k| k.as_slice());
        let mut out = Vec::with_capacity(1 + KEY_ID_LEN + 1 + kdf.len() + CHECK_LEN);
        out.push(MARKER_VERSION);
        out.extend_from_slice(&self.key_id.0);
        out.push(u8::try_from(kdf.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(kdf);
        let check = fnv1a(&out);
        out.extend_from_slice(&check.to_le_bytes());
        out
    }

    /// Reads a marker; the reason when it is damaged (or of a newer version: `Err(Ok(..))`).
    pub(crate) fn decode(bytes: &[u8]) -> Result<Marker, Result<SessionError, String>> {
        fn damaged<T>(why: &str) -> Result<T, Result<SessionError, String>> {
            Err(Err(format!("the `seal` field is damaged: {why}")))
        }
        let Some((body, check)) = bytes.split_last_chunk::<CHECK_LEN>() else {
            return damaged("too short");
        };
        if fnv1a(body) != u64::from_le_bytes(*check) {
            return damaged("its checksum does not match");
        }
        let Some((&version, rest)) = body.split_first() else { return damaged("empty") };
        if version > MARKER_VERSION {
            return Err(Ok(SessionError::UnsupportedVersion {
                what: "Redis session seal marker",
                found: u32::from(version),
                supported: u32::from(MARKER_VERSION),
            }));
        }
        if version == 0 {
            return damaged("version 0 does not exist");
        }
        let (Some(id), Some((&kdf_len, kdf))) =
            (rest.get(..KEY_ID_LEN), rest.get(KEY_ID_LEN..).and_then(<[u8]>::split_first))
        else {
            return damaged("too short");
        };
        if usize::from(kdf_len) != kdf.len() {
            return damaged("its KDF record has another length than it says");
        }
        let kdf = match kdf_len {
            0 => None,
            _ => match KdfRecord::from_bytes(kdf) {
                Some(k) => Some(k),
                None => return damaged("an unknown key derivation"),
            },
        };
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(id);
        Ok(Marker { key_id: KeyId(key_id), kdf })
    }
}

/// 64-bit FNV-1a: a checksum against damage (not a MAC; see the module doc).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Seals and opens the values of one session with one key (the marker's).
#[derive(Clone)]
pub(crate) struct Sealer {
    key: Arc<SealingKey>,
    marker: Marker,
    /// The binding's first parts: the context, the key prefix and the session name.
    base: Binding,
    resource: String,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("key_id", &self.marker.key_id).finish_non_exhaustive()
    }
}

impl Sealer {
    pub(crate) fn new(key: Arc<SealingKey>, prefix: &str, session: &str, resource: &str) -> Sealer {
        let marker = Marker::of(&key);
        Sealer { key, marker, base: Binding::new(CONTEXT).part(prefix).session(session), resource: resource.to_owned() }
    }

    pub(crate) fn key_id(&self) -> KeyId {
        self.marker.key_id
    }

    fn binding(&self, field: &[u8], peer: Option<&[u8]>) -> Binding {
        let b = self.base.clone().row(field);
        match peer {
            Some(p) => b.part(b"peer").part(p),
            None => b,
        }
    }

    pub(crate) fn seal(&self, field: &[u8], peer: Option<&[u8]>, plain: &[u8]) -> Result<Vec<u8>, SessionError> {
        seal::seal(&self.key, &self.binding(field, peer), plain)
    }

    pub(crate) fn open(
        &self,
        field: &[u8],
        peer: Option<&[u8]>,
        sealed: &[u8],
    ) -> Result<impl std::ops::Deref<Target = Vec<u8>>, SessionError> {
        // Every value of a session is sealed with its marker's key (module doc): another key
        // id is a value brought in from elsewhere, not a key this keyring lacks.
        if let Some(id) = seal::key_id_of(sealed).filter(|id| *id != self.marker.key_id) {
            return Err(SessionError::corrupt(
                self.resource.clone(),
                format!(
                    "field {:?} is sealed with key {id}, not the session's key {}: it was brought in from elsewhere",
                    String::from_utf8_lossy(field),
                    self.marker.key_id
                ),
            ));
        }
        seal::open_with(&self.key, &self.resource, &self.binding(field, peer), sealed)
    }

    /// The marker's value, to store in the `seal` field.
    pub(crate) fn marker(&self) -> Vec<u8> {
        self.marker.encode()
    }

    /// The `format` value of a sealed session.
    pub(crate) fn format() -> Vec<u8> {
        SEALED_FORMAT.to_string().into_bytes()
    }
}

/// The key that opens a session sealed as `marker` says, from `keys` (blocking when a passphrase
/// is derived: call it on the blocking pool). `WrongKey` when the keyring lacks it.
pub(crate) fn opening_key(keys: &Keyring, marker: &Marker, resource: &str) -> Result<Arc<SealingKey>, SessionError> {
    keys.opening_key(marker.key_id, marker.kdf.as_ref())?
        .ok_or_else(|| SessionError::WrongKey { resource: resource.to_owned(), key_id: marker.key_id })
}

/// Runs `f` on the blocking pool (key derivation, sealing or opening many values), keeping the
/// error kind.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, SessionError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, SessionError> + Send + 'static,
{
    let span = tracing::Span::current();
    match tokio::task::spawn_blocking(move || span.in_scope(f)).await {
        Ok(r) => r,
        Err(e) => Err(SessionError::Backend { backend: "redis".to_owned(), source: Box::new(e) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::KdfParams;

    #[test]
    fn markers_round_trip_and_every_flip_is_refused() {
        let plain = Marker { key_id: KeyId([7; 8]), kdf: None };
        let derived =
            Marker { key_id: KeyId([9; 8]), kdf: Some(KdfRecord { params: KdfParams::default(), salt: [3; 16] }) };
        for m in [plain, derived] {
            let bytes = m.encode();
            assert!(matches!(Marker::decode(&bytes), Ok(d) if d == m));
            for i in 0..bytes.len() {
                for bit in 0..8 {
                    let mut bad = bytes.clone();
                    bad[i] ^= 1 << bit;
                    assert!(matches!(Marker::decode(&bad), Err(Err(_))), "flip of byte {i} bit {bit} was accepted");
                }
            }
            for cut in 0..bytes.len() {
                assert!(Marker::decode(&bytes[..cut]).is_err(), "cut at {cut} was accepted");
            }
        }
    }

    #[test]
    fn values_open_only_where_they_were_sealed() {
        let key = Arc::new(SealingKey::generate());
        let s = Sealer::new(key.clone(), "p:", "a", "test");
        let v = s.seal(b"meta", None, b"hello").expect("seal");
        assert_eq!(s.open(b"meta", None, &v).expect("seal").as_slice(), b"hello");
        fn corrupt<T>(r: Result<T, SessionError>) -> bool {
            matches!(r, Err(SessionError::Corrupt { .. }))
        }
        assert!(corrupt(s.open(b"dc:2:0", None, &v)));
        assert!(corrupt(Sealer::new(key.clone(), "p:", "b", "test").open(b"meta", None, &v)));
        assert!(corrupt(Sealer::new(key.clone(), "q:", "a", "test").open(b"meta", None, &v)));
        let p = s.seal(b"p:ab", Some(&[1; 9]), b"x").expect("seal");
        assert!(corrupt(s.open(b"p:ab", Some(&[2; 9]), &p)));
        let other = Sealer::new(Arc::new(SealingKey::generate()), "p:", "a", "test");
        assert!(corrupt(s.open(b"meta", None, &other.seal(b"meta", None, b"x").expect("seal"))));
    }
}
