//! Sealing: authenticated encryption of stored values (AES-256-GCM-SIV, RustCrypto), each
//! bound to where it belongs.
//!
//! A sealed value is an envelope:
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | envelope version ([`ENVELOPE_VERSION`]) |
//! | 8 | [`KeyId`] of the key that sealed it |
//! | 12 | random nonce |
//! | n + 16 | ciphertext and tag |
//!
//! Version 2 (written) is AES-256-GCM-SIV with a 12-byte nonce; version 1, still opened, is
//! XChaCha20-Poly1305 with a 24-byte nonce (earlier builds wrote it). AES-256-GCM-SIV because
//! a sealed value is short (a row, a record) and the cost of sealing one is the cost of a
//! flush: on x86-64 with AES-NI it seals a 64-byte value in about a quarter of the time
//! RustCrypto's XChaCha20-Poly1305 takes (whose Poly1305 pays a fixed price per message), and it
//! resists nonce misuse: two values sealed under one nonce reveal only whether they are equal,
//! where a repeated nonce in a Poly1305 or GCM construction gives the authentication key away.
//!
//! The associated data is a constant label, the version and key id bytes, and a [`Binding`]:
//! the parts that say where the value belongs (session name, DC id, row key, file generation
//! and offset). The binding is not stored: the reader rebuilds it from where it found the value,
//! so a value copied to another row, session or offset does not open.
//!
//! Errors, decided so that a wrong key is never taken for damage and damage never for a wrong
//! key:
//! - the envelope names a key id the keyring does not hold: [`SessionError::WrongKey`] (the
//!   id is a MAC of the key, so a keyring that holds the key recognises the id);
//! - the keyring holds the named key and the tag fails: [`SessionError::Corrupt`]. With the
//!   right key, the tag fails only if the bytes changed or the value was moved (its binding
//!   differs); which one cannot be told, and both mean the stored data is not what was sealed;
//! - an envelope too short to hold its header and tag, or of an unknown version:
//!   [`SessionError::Corrupt`] / [`SessionError::UnsupportedVersion`].
//!
//! Cost: a value is sealed on every write of a row or record, so one seal is kept to the AEAD
//! itself. The ciphers are built once per key ([`SealingKey`] holds them, zeroized on drop), the
//! associated data is assembled on the stack, and nonces come from a ChaCha20 generator
//! (RustCrypto's `ChaCha20Rng`) seeded once from the operating system instead of one
//! `getrandom` call per value (see [`fresh_nonce`] for why that is as safe).
//!
//! A long value (a file's whole snapshot) is where a copy or a slow wipe costs as much as a
//! cipher pass: [`seal_append`] seals straight into the caller's buffer, and [`open_into`]
//! opens into one the caller provides (one plaintext assembled from several envelopes, opened
//! on several threads, or one buffer reused). Wipe such a `Zeroizing<Vec<u8>>` by `clear()`ing
//! it before it drops: `zeroize` then clears the whole allocation as spare capacity with one
//! `memset` and a barrier, where it wipes a vector's elements one volatile byte at a time
//! (several times slower than the cipher's authentication pass over the same bytes).

use std::sync::{Mutex, PoisonError};

use chacha20::rand_core::{Rng as _, SeedableRng as _};
use chacha20::ChaCha20Rng;
use chacha20poly1305::aead::rand_core::RngCore as _;
// Two generations of RustCrypto's `aead` traits: aes-gcm-siv 0.12 (whose POLYVAL processes
// eight blocks at a time, 2.5 times the speed of 0.11's on a long value here) implements 0.6,
// chacha20poly1305 0.10 (version 1 envelopes) 0.5.
use aes_gcm_siv::aead::AeadInOut as _;
use chacha20poly1305::aead::{AeadInPlace as _, OsRng};
use chacha20poly1305::{Tag, XNonce};
type SivNonce = aes_gcm_siv::Nonce;
type SivTag = aes_gcm_siv::Tag;
use zeroize::Zeroizing;

use crate::error::SessionError;
use crate::key::{KdfRecord, Keyring, SealingKey};
use crate::key_id::{KeyId, KEY_ID_LEN};

/// The envelope layout this build writes (AES-256-GCM-SIV); it also opens version 1
/// (XChaCha20-Poly1305).
pub const ENVELOPE_VERSION: u8 = 2;
const NONCE_LEN: usize = 12;
/// The nonce of a version 1 envelope (XChaCha20-Poly1305).
const V1_NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes of envelope header before the ciphertext.
pub const ENVELOPE_HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
/// How many bytes sealing adds to a value.
pub const OVERHEAD: usize = ENVELOPE_HEADER_LEN + TAG_LEN;

/// The header length of an envelope of `version` (one this build opens).
fn header_len(version: u8) -> usize {
    1 + KEY_ID_LEN + if version == 1 { V1_NONCE_LEN } else { NONCE_LEN }
}
const AAD_LABEL: &[u8] = b"layer-session seal v1\0";

/// Where a sealed value belongs, as the associated data of its seal: a context naming the kind
/// of place (`"file-record"`, `"sql-row"`, `"string"`, ...) and parts (session name, DC id, row
/// key, ...). Each part is length-prefixed, so `("ab", "c")` and `("a", "bc")` differ.
///
/// Sealing and opening must build the same binding; anything that changes between them (a
/// different row, session or offset) makes the value fail to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding(Vec<u8>);

impl Binding {
    /// A binding for values of the kind `context`.
    pub fn new(context: &str) -> Binding {
        Binding(Vec::with_capacity(64)).part(context)
    }

    /// Adds a part.
    pub fn part(mut self, bytes: impl AsRef<[u8]>) -> Binding {
        let bytes = bytes.as_ref();
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(bytes);
        self
    }

    /// Adds the session's name (or another identifier of the session in its store).
    pub fn session(self, name: &str) -> Binding {
        self.part(b"session").part(name)
    }

    /// Adds a DC id.
    pub fn dc(self, id: i32) -> Binding {
        self.part(b"dc").part(id.to_le_bytes())
    }

    /// Adds a row or record key.
    pub fn row(self, key: impl AsRef<[u8]>) -> Binding {
        self.part(b"row").part(key)
    }

    /// The encoded parts.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Associated data up to this long is assembled on the stack (a binding of the SQL backends
/// is about 60 bytes); a longer one goes to the heap.
const AAD_INLINE: usize = 256;

/// Calls `f` with the associated data of an envelope whose header starts `header`: the label,
/// the version and key id bytes, the binding.
fn with_aad<T>(header: &[u8], binding: &Binding, f: impl FnOnce(&[u8]) -> T) -> T {
    let parts: [&[u8]; 3] = [AAD_LABEL, &header[..1 + KEY_ID_LEN], &binding.0];
    let len = parts.iter().map(|p| p.len()).sum::<usize>();
    let mut inline = [0u8; AAD_INLINE];
    let mut heap = Vec::new();
    let buf = if len <= AAD_INLINE {
        &mut inline[..len]
    } else {
        heap.resize(len, 0);
        &mut heap[..]
    };
    let mut at = 0;
    for p in parts {
        buf[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    f(buf)
}

/// The generator nonces are drawn from, and the process that seeded it.
struct NonceSource {
    rng: ChaCha20Rng,
    pid: u32,
}

static NONCES: Mutex<Option<NonceSource>> = Mutex::new(None);

/// Fills `out` with a fresh nonce: the next bytes of a ChaCha20 generator seeded with 32 bytes
/// from the operating system, once per process.
///
/// Why this is as good as asking the operating system each time: the nonce is what keeps two
/// seals under one key apart, and AES-256-GCM-SIV asks less of it than most (a repeat reveals
/// only whether the two values are equal, and its bounds for random 96-bit nonces allow far
/// more values than a session ever seals). A ChaCha20 stream under a secret random seed is indistinguishable from random
/// bytes, which is what the bound assumes. The one way its output can repeat is a copy of its
/// state: a `fork` gives the child the parent's generator, and both would then draw the same
/// nonces. So the generator remembers the process id that seeded it and is seeded again in any
/// other process (a forked child always has another id than the parent it was copied from).
fn fresh_nonce(out: &mut [u8; NONCE_LEN]) {
    let pid = std::process::id();
    let mut slot = NONCES.lock().unwrap_or_else(PoisonError::into_inner);
    let source = match &mut *slot {
        Some(source) if source.pid == pid => source,
        slot => {
            let mut seed = Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(seed.as_mut());
            slot.insert(NonceSource { rng: ChaCha20Rng::from_seed(*seed), pid })
        }
    };
    source.rng.fill_bytes(out);
}

/// Seals `plaintext` with `key`, bound to `binding`, under a fresh random nonce.
pub fn seal(key: &SealingKey, binding: &Binding, plaintext: &[u8]) -> Result<Vec<u8>, SessionError> {
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    seal_append(key, binding, plaintext, &mut out)?;
    Ok(out)
}

/// [`seal`], appending the envelope to `out` (which may already hold a frame or other
/// envelopes) instead of returning a new buffer: a long value is then copied once, not twice.
/// On error `out` is as it was.
pub fn seal_append(
    key: &SealingKey,
    binding: &Binding,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), SessionError> {
    let start = out.len();
    out.reserve(OVERHEAD + plaintext.len());
    out.push(ENVELOPE_VERSION);
    out.extend_from_slice(&key.id().0);
    let mut nonce = [0u8; NONCE_LEN];
    fresh_nonce(&mut nonce);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let (header, body) = out[start..].split_at_mut(ENVELOPE_HEADER_LEN);
    let sealed =
        with_aad(header, binding, |aad| key.siv().encrypt_inout_detached(&SivNonce::from(nonce), aad, body.into()));
    match sealed {
        Ok(tag) => {
            out.extend_from_slice(&tag);
            Ok(())
        }
        Err(_) => {
            // The plaintext was copied in: wipe it before giving the buffer back.
            zeroize::Zeroize::zeroize(&mut out[start..]);
            out.truncate(start);
            Err(SessionError::invalid("sealed value", "too long to seal"))
        }
    }
}

/// Fills `out` with random bytes from the operating system (salts, file ids).
pub fn random_bytes(out: &mut [u8]) {
    OsRng.fill_bytes(out);
}

/// The key id an envelope names, if `sealed` is long enough to hold one and of a known version.
pub fn key_id_of(sealed: &[u8]) -> Option<KeyId> {
    let version = *sealed.first()?;
    if !(1..=ENVELOPE_VERSION).contains(&version) || sealed.len() < header_len(version) + TAG_LEN {
        return None;
    }
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&sealed[1..1 + KEY_ID_LEN]);
    Some(KeyId(id))
}

/// How many bytes of plaintext an envelope holds, if `sealed` is long enough to be one and of a
/// known version (the length is not authenticated until the envelope opens).
pub fn opened_len(sealed: &[u8]) -> Option<usize> {
    key_id_of(sealed)?;
    Some(sealed.len() - header_len(sealed[0]) - TAG_LEN)
}

/// Checks an envelope's frame and returns the key id it names.
fn frame(resource: &str, sealed: &[u8]) -> Result<KeyId, SessionError> {
    let version = sealed.first().copied().unwrap_or(ENVELOPE_VERSION);
    let least = header_len(version) + TAG_LEN;
    if sealed.len() < least {
        return Err(SessionError::corrupt(
            resource,
            format!("a sealed value of {} bytes is shorter than its {least}-byte envelope", sealed.len()),
        ));
    }
    if sealed[0] > ENVELOPE_VERSION {
        return Err(SessionError::UnsupportedVersion {
            what: "sealed value envelope",
            found: u32::from(sealed[0]),
            supported: u32::from(ENVELOPE_VERSION),
        });
    }
    key_id_of(sealed).ok_or_else(|| SessionError::corrupt(resource, "a sealed value has envelope version 0"))
}

/// Opens an envelope with `key`, which must be the key it names (else
/// [`SessionError::WrongKey`]). `resource` names the store in errors.
pub fn open_with(
    key: &SealingKey,
    resource: &str,
    binding: &Binding,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SessionError> {
    frame(resource, sealed)?;
    let mut plain = Zeroizing::new(vec![0u8; sealed.len() - header_len(sealed[0]) - TAG_LEN]);
    open_into(key, resource, binding, sealed, &mut plain)?;
    Ok(plain)
}

/// [`open_with`], writing the plaintext into `out`, which must be exactly as long as it
/// ([`SessionError::Corrupt`] otherwise: the envelope is not the length its place says). For a
/// caller that assembles one plaintext from several envelopes (opened on several threads) or
/// reuses one buffer. On any error `out` holds no plaintext (the cipher re-encrypts a value
/// whose tag fails); the caller still owns wiping `out` after a success.
pub fn open_into(
    key: &SealingKey,
    resource: &str,
    binding: &Binding,
    sealed: &[u8],
    out: &mut [u8],
) -> Result<(), SessionError> {
    let id = frame(resource, sealed)?;
    if id != key.id() {
        return Err(SessionError::WrongKey { resource: resource.to_owned(), key_id: id });
    }
    let (header, rest) = sealed.split_at(header_len(sealed[0]));
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    if ciphertext.len() != out.len() {
        return Err(SessionError::corrupt(
            resource,
            format!("a sealed value holds {} bytes where {} were expected", ciphertext.len(), out.len()),
        ));
    }
    out.copy_from_slice(ciphertext);
    let nonce = &header[1 + KEY_ID_LEN..];
    with_aad(header, binding, |aad| {
        if header[0] == 1 {
            key.xchacha().decrypt_in_place_detached(XNonce::from_slice(nonce), aad, out, Tag::from_slice(tag)).is_ok()
        } else {
            match (<&SivNonce>::try_from(nonce), <&SivTag>::try_from(tag)) {
                (Ok(nonce), Ok(tag)) => key.siv().decrypt_inout_detached(nonce, aad, (&mut *out).into(), tag).is_ok(),
                _ => false,
            }
        }
    })
    .then_some(())
    .ok_or_else(|| {
        SessionError::corrupt(
            resource,
            format!(
                "a value sealed with key {id} does not authenticate: its bytes were changed, or it was moved from another place"
            ),
        )
    })
}

impl Keyring {
    /// Seals `plaintext` with this keyring's sealing key ([`Keyring::sealing_key`] with
    /// `stored`, the derivation recorded in the store, if any).
    pub fn seal(
        &self,
        stored: Option<&KdfRecord>,
        binding: &Binding,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SessionError> {
        seal(&*self.sealing_key(stored)?, binding, plaintext)
    }

    /// Opens an envelope with whichever key of this keyring it names (`kdf`: the derivation
    /// stored beside it, for passphrase entries). [`SessionError::WrongKey`] when the keyring
    /// holds no such key; [`SessionError::Corrupt`] when it does and the value does not
    /// authenticate (see the module docs).
    pub fn open(
        &self,
        kdf: Option<&KdfRecord>,
        resource: &str,
        binding: &Binding,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SessionError> {
        let id = frame(resource, sealed)?;
        let key = self
            .opening_key(id, kdf)?
            .ok_or_else(|| SessionError::WrongKey { resource: resource.to_owned(), key_id: id })?;
        open_with(&key, resource, binding, sealed)
    }
}
