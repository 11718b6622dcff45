//! Keys for encryption at rest: a 32-byte [`SealingKey`] given directly or derived from a
//! [`Passphrase`] with Argon2id, its public [`KeyId`], and the [`Keyring`] a backend is given
//! (one key to seal with, any number to open with).
//!
//! Key bytes, derived keys and passphrases live in zeroized memory and are never printed:
//! `Debug` shows the key id only, and no error names anything but the key id.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use aes_gcm_siv::Aes256GcmSiv;
use blake2::digest::consts::U8;
use blake2::digest::Mac;
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{KeyInit, OsRng};
use chacha20poly1305::{Key, XChaCha20Poly1305};
use zeroize::Zeroizing;

use crate::error::SessionError;
use crate::key_id::{KeyId, KEY_ID_LEN};

/// Length of a [`SealingKey`] in bytes.
pub const KEY_LEN: usize = 32;
/// Length of the salt of a passphrase derivation.
pub const SALT_LEN: usize = 16;

/// What the key id is a MAC of (under the key): a constant, so the id names the key and the key
/// cannot be recovered from it.
const KEY_ID_LABEL: &[u8] = b"layer-session key id v1";

/// Argon2id cost parameters of a passphrase derivation. Recorded with the sealed data
/// ([`KdfRecord`]) so that they can change in later versions without losing older data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// OWASP's Argon2id recommendation (19 MiB, 2 passes, 1 lane): tens of milliseconds.
    fn default() -> Self {
        KdfParams { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 }
    }
}

/// The most memory a stored derivation may ask for (1 GiB): stored parameters are input, and a
/// damaged or hostile file must not make the reader allocate without bound.
const MAX_MEMORY_KIB: u32 = 1 << 20;
const MAX_ITERATIONS: u32 = 64;
const MAX_PARALLELISM: u32 = 16;

impl KdfParams {
    fn argon2(&self) -> Result<argon2::Argon2<'static>, SessionError> {
        if self.memory_kib > MAX_MEMORY_KIB || self.iterations > MAX_ITERATIONS || self.parallelism > MAX_PARALLELISM {
            return Err(SessionError::invalid(
                "key derivation parameters",
                format!(
                    "{} KiB, {} passes, {} lanes exceed the limits ({MAX_MEMORY_KIB} KiB, {MAX_ITERATIONS}, {MAX_PARALLELISM})",
                    self.memory_kib, self.iterations, self.parallelism
                ),
            ));
        }
        let params = argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(KEY_LEN))
            .map_err(|e| SessionError::invalid("key derivation parameters", e.to_string()))?;
        Ok(argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params))
    }
}

/// How a key was derived from a passphrase: algorithm, parameters and salt. Not secret; stored
/// beside the data sealed with the key, so that the passphrase alone opens it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KdfRecord {
    /// Argon2id costs.
    pub params: KdfParams,
    /// Random salt, fresh for each derivation.
    pub salt: [u8; SALT_LEN],
}

/// Algorithm tag of [`KdfRecord::to_bytes`]: Argon2id, version 0x13.
const KDF_ARGON2ID_13: u8 = 1;

impl KdfRecord {
    /// Length of [`KdfRecord::to_bytes`].
    pub const ENCODED_LEN: usize = 1 + 4 + 4 + 4 + SALT_LEN;

    /// A record with a fresh random salt.
    pub fn generate(params: KdfParams) -> KdfRecord {
        let mut salt = [0u8; SALT_LEN];
        OsRng.fill_bytes(&mut salt);
        KdfRecord { params, salt }
    }

    /// `algorithm (1) | memory KiB (u32 LE) | passes (u32 LE) | lanes (u32 LE) | salt (16)`.
    pub fn to_bytes(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[0] = KDF_ARGON2ID_13;
        out[1..5].copy_from_slice(&self.params.memory_kib.to_le_bytes());
        out[5..9].copy_from_slice(&self.params.iterations.to_le_bytes());
        out[9..13].copy_from_slice(&self.params.parallelism.to_le_bytes());
        out[13..].copy_from_slice(&self.salt);
        out
    }

    /// Reads [`KdfRecord::to_bytes`]; `None` for another length or an unknown algorithm.
    pub fn from_bytes(bytes: &[u8]) -> Option<KdfRecord> {
        if bytes.len() != Self::ENCODED_LEN || bytes[0] != KDF_ARGON2ID_13 {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&bytes[13..]);
        Some(KdfRecord {
            params: KdfParams { memory_kib: u32_at(1), iterations: u32_at(5), parallelism: u32_at(9) },
            salt,
        })
    }
}

/// A passphrase, kept in zeroized memory and never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// Takes the passphrase's bytes (UTF-8 text as it is; nothing is trimmed here).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Passphrase {
        Passphrase(Zeroizing::new(bytes.into()))
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<hidden>)")
    }
}

/// A 32-byte sealing key (AES-256-GCM-SIV; XChaCha20-Poly1305 for envelopes of version 1).
/// Zeroized on drop; `Debug` shows its [`KeyId`] only.
#[derive(Clone)]
pub struct SealingKey {
    /// The AEADs under this key, built once (they hold the key's only copies, and zeroize them
    /// on drop), rather than once per sealed value. Boxed: AES-256's key schedules take about a
    /// kilobyte, which would otherwise sit in every value holding a key.
    siv: Box<Aes256GcmSiv>,
    /// Opens envelopes of version 1, written by earlier builds.
    xchacha: Box<XChaCha20Poly1305>,
    id: KeyId,
    kdf: Option<KdfRecord>,
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingKey").field("id", &self.id).field("derived", &self.kdf.is_some()).finish()
    }
}

impl SealingKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> SealingKey {
        Self::with_kdf(Zeroizing::new(bytes), None)
    }

    /// A key written as 64 hexadecimal characters (either case; surrounding whitespace, such as
    /// the newline at the end of a key file, is ignored).
    pub fn from_hex(hex: &str) -> Result<SealingKey, SessionError> {
        let hex = hex.trim().as_bytes();
        let bad = || SessionError::invalid("sealing key", format!("expected {} hexadecimal characters", 2 * KEY_LEN));
        if hex.len() != 2 * KEY_LEN {
            return Err(bad());
        }
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let nibble = |c: u8| (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(h), Some(l)) => bytes[i] = (h << 4) | l,
                _ => return Err(bad()),
            }
        }
        Ok(Self::with_kdf(bytes, None))
    }

    /// True when `text` looks like a raw key (exactly 64 hexadecimal characters after trimming)
    /// rather than a passphrase: how a key file is told apart.
    pub fn is_hex_key(text: &str) -> bool {
        let t = text.trim();
        t.len() == 2 * KEY_LEN && t.bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// A fresh random key from the operating system's generator.
    pub fn generate() -> SealingKey {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(bytes.as_mut());
        Self::with_kdf(bytes, None)
    }

    /// Derives the key of `passphrase` under `record` (Argon2id). Deterministic: the same
    /// passphrase and record give the same key. Blocking and deliberately slow (tens of
    /// milliseconds at the default costs): call it off the async runtime.
    pub fn derive(passphrase: &Passphrase, record: &KdfRecord) -> Result<SealingKey, SessionError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        record
            .params
            .argon2()?
            .hash_password_into(&passphrase.0, &record.salt, bytes.as_mut())
            .map_err(|e| SessionError::invalid("key derivation", e.to_string()))?;
        Ok(Self::with_kdf(bytes, Some(*record)))
    }

    fn with_kdf(bytes: Zeroizing<[u8; KEY_LEN]>, kdf: Option<KdfRecord>) -> SealingKey {
        let mut mac = <blake2::Blake2bMac<U8> as Mac>::new_from_slice(bytes.as_ref())
            .unwrap_or_else(|_| unreachable!("BLAKE2b takes keys up to 64 bytes"));
        mac.update(KEY_ID_LABEL);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&mac.finalize().into_bytes());
        let siv = Box::new(
            <Aes256GcmSiv as aes_gcm_siv::KeyInit>::new_from_slice(bytes.as_ref())
                .unwrap_or_else(|_| unreachable!("AES-256-GCM-SIV takes a 32-byte key")),
        );
        let xchacha = Box::new(XChaCha20Poly1305::new(Key::from_slice(bytes.as_ref())));
        SealingKey { siv, xchacha, id: KeyId(id), kdf }
    }

    /// The key's public id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// How the key was derived from a passphrase, if it was (stored beside what it seals).
    pub fn kdf(&self) -> Option<&KdfRecord> {
        self.kdf.as_ref()
    }

    pub(crate) fn siv(&self) -> &Aes256GcmSiv {
        &self.siv
    }

    pub(crate) fn xchacha(&self) -> &XChaCha20Poly1305 {
        &self.xchacha
    }
}

/// One entry of a [`Keyring`]: a key, or a passphrase whose key depends on the stored salt.
#[derive(Clone)]
enum Entry {
    Key(Arc<SealingKey>),
    Passphrase { passphrase: Passphrase, params: KdfParams },
}

/// The keys a backend seals and opens with: one to seal with, any number of older ones to open
/// what they sealed (rotation: add the new key first and the old one after it; each value is
/// re-sealed with the new key the next time it is written).
///
/// A passphrase entry derives its key lazily: the key that opens data is derived with the salt
/// and parameters stored beside it, and the sealing key of a passphrase reuses the salt of the
/// data already stored ([`Keyring::sealing_key`]) so that one passphrase keeps one key id.
/// Derived keys are cached for the keyring's life. `Debug` shows key ids only.
pub struct Keyring {
    primary: Entry,
    older: Vec<Entry>,
    /// Keys derived so far: (index of the entry, 0 for the primary), record, key. Shared by
    /// clones, so a backend that keeps a clone does not derive a passphrase's key again.
    derived: Arc<Mutex<Vec<Derived>>>,
}

/// A key derived from a passphrase entry of a [`Keyring`]: (index of the entry, 0 for the
/// primary), the record it was derived under, the key.
type Derived = (usize, KdfRecord, Arc<SealingKey>);

impl Clone for Keyring {
    fn clone(&self) -> Self {
        Keyring { primary: self.primary.clone(), older: self.older.clone(), derived: Arc::clone(&self.derived) }
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |e: &Entry| match e {
            Entry::Key(k) => k.id.to_string(),
            Entry::Passphrase { .. } => "passphrase".to_owned(),
        };
        f.debug_struct("Keyring")
            .field("seals_with", &show(&self.primary))
            .field("opens_with", &self.older.iter().map(show).collect::<Vec<_>>())
            .finish()
    }
}

impl From<SealingKey> for Keyring {
    fn from(key: SealingKey) -> Self {
        Keyring::new(key)
    }
}

impl Keyring {
    /// A keyring that seals (and opens) with `key`.
    pub fn new(key: SealingKey) -> Keyring {
        Keyring { primary: Entry::Key(Arc::new(key)), older: Vec::new(), derived: Arc::default() }
    }

    /// A keyring that seals with the key of `passphrase` (Argon2id with `params` when it
    /// derives a new one) and opens whatever that passphrase sealed, under any stored salt.
    pub fn from_passphrase(passphrase: Passphrase, params: KdfParams) -> Keyring {
        Keyring { primary: Entry::Passphrase { passphrase, params }, older: Vec::new(), derived: Arc::default() }
    }

    /// Adds a key that opens, but never seals (an older key during a rotation).
    pub fn with_old_key(mut self, key: SealingKey) -> Keyring {
        self.older.push(Entry::Key(Arc::new(key)));
        self
    }

    /// Adds a passphrase that opens, but never seals.
    pub fn with_old_passphrase(mut self, passphrase: Passphrase) -> Keyring {
        self.older.push(Entry::Passphrase { passphrase, params: KdfParams::default() });
        self
    }

    /// The key new data is sealed with. For a raw key, that key. For a passphrase: the key
    /// derived with `stored` (the derivation recorded beside the data already in the store)
    /// when it has this keyring's parameters and yields a key; otherwise a key under a fresh
    /// salt, derived once per keyring. Blocking when it derives (see [`SealingKey::derive`]).
    pub fn sealing_key(&self, stored: Option<&KdfRecord>) -> Result<Arc<SealingKey>, SessionError> {
        match &self.primary {
            Entry::Key(k) => Ok(Arc::clone(k)),
            Entry::Passphrase { passphrase, params } => {
                if let Some(record) = stored.filter(|r| r.params == *params) {
                    return self.derived(0, passphrase, record);
                }
                let mut cache = self.derived.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some((_, _, k)) = cache.iter().find(|(i, r, _)| *i == 0 && r.params == *params) {
                    return Ok(Arc::clone(k));
                }
                let record = KdfRecord::generate(*params);
                let key = Arc::new(SealingKey::derive(passphrase, &record)?);
                cache.push((0, record, Arc::clone(&key)));
                Ok(key)
            }
        }
    }

    /// The key named `id`, if this keyring holds it. `kdf` is the derivation stored beside the
    /// data (if any): passphrase entries derive with it (blocking) to find their key.
    pub fn opening_key(&self, id: KeyId, kdf: Option<&KdfRecord>) -> Result<Option<Arc<SealingKey>>, SessionError> {
        for entry in std::iter::once(&self.primary).chain(&self.older) {
            if let Entry::Key(k) = entry {
                if k.id == id {
                    return Ok(Some(Arc::clone(k)));
                }
            }
        }
        if let Some((_, _, k)) =
            self.derived.lock().unwrap_or_else(PoisonError::into_inner).iter().find(|(_, _, k)| k.id == id)
        {
            return Ok(Some(Arc::clone(k)));
        }
        let Some(record) = kdf else { return Ok(None) };
        for (index, entry) in std::iter::once(&self.primary).chain(&self.older).enumerate() {
            if let Entry::Passphrase { passphrase, .. } = entry {
                let key = self.derived(index, passphrase, record)?;
                if key.id == id {
                    return Ok(Some(key));
                }
            }
        }
        Ok(None)
    }

    /// The ids of the raw keys this keyring holds, and of the keys derived so far.
    pub fn known_ids(&self) -> Vec<KeyId> {
        let mut ids: Vec<KeyId> = std::iter::once(&self.primary)
            .chain(&self.older)
            .filter_map(|e| match e {
                Entry::Key(k) => Some(k.id),
                Entry::Passphrase { .. } => None,
            })
            .collect();
        ids.extend(self.derived.lock().unwrap_or_else(PoisonError::into_inner).iter().map(|(_, _, k)| k.id));
        ids
    }

    /// The key of entry `index` (a passphrase) under `record`, derived once per keyring.
    fn derived(
        &self,
        index: usize,
        passphrase: &Passphrase,
        record: &KdfRecord,
    ) -> Result<Arc<SealingKey>, SessionError> {
        let cached = |cache: &[Derived]| {
            cache.iter().find(|(i, r, _)| *i == index && r == record).map(|(_, _, k)| Arc::clone(k))
        };
        if let Some(k) = cached(&self.derived.lock().unwrap_or_else(PoisonError::into_inner)) {
            return Ok(k);
        }
        // Derived without the lock held: it takes tens of milliseconds.
        let key = Arc::new(SealingKey::derive(passphrase, record)?);
        let mut cache = self.derived.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(k) = cached(&cache) {
            return Ok(k);
        }
        cache.push((index, *record, Arc::clone(&key)));
        Ok(key)
    }
}
