//! The 256-byte MTProto authorization key, redacted in `Debug` and zeroized on drop.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha1::{Digest, Sha1};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of an MTProto authorization key in bytes.
pub const AUTH_KEY_LEN: usize = 256;

/// An MTProto authorization key.
///
/// The key is the only secret a session holds that lets anyone act as the logged-in account, so
/// this type never prints it: `Debug` shows the 64-bit key id (what Telegram itself uses to name
/// a key) and the memory is overwritten with zeros when the value is dropped.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct AuthKey(Box<[u8; AUTH_KEY_LEN]>);

impl AuthKey {
    /// Wraps 256 key bytes.
    pub fn new(bytes: [u8; AUTH_KEY_LEN]) -> Self {
        Self(Box::new(bytes))
    }

    /// Copies a key from a slice, returning `None` unless it is exactly 256 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: [u8; AUTH_KEY_LEN] = bytes.try_into().ok()?;
        Some(Self::new(array))
    }

    /// The raw key bytes. Handle with care: whoever holds them can act as the account.
    pub fn as_bytes(&self) -> &[u8; AUTH_KEY_LEN] {
        &self.0
    }

    /// The key id: the low 64 bits of SHA-1 of the key (bytes 12..20, little-endian), as
    /// MTProto defines it.
    pub fn key_id(&self) -> i64 {
        let digest = Sha1::digest(self.0.as_slice());
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[12..20]);
        i64::from_le_bytes(id)
    }

    /// True when every byte is zero, which several libraries use to mean "no key".
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthKey(id={:#018x})", self.key_id())
    }
}

impl Serialize for AuthKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0.as_slice())
    }
}

impl<'de> Deserialize<'de> for AuthKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl serde::de::Visitor<'_> for KeyVisitor {
            type Value = AuthKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{AUTH_KEY_LEN} bytes of auth key")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<AuthKey, E> {
                AuthKey::from_slice(v).ok_or_else(|| E::invalid_length(v.len(), &self))
            }
        }
        deserializer.deserialize_bytes(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_key_bytes() {
        let key = AuthKey::new([0xAB; AUTH_KEY_LEN]);
        let shown = format!("{key:?}");
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
        assert!(shown.contains(&format!("{:#018x}", key.key_id())));
    }

    #[test]
    fn key_id_matches_reference_fixture() {
        // layer-v3-dev.session, DC 1: key is a 64-byte pattern repeated 4 times.
        let pattern = "781d9db5f3e09425cb541f42a06c99ab667df26d5fec1cfeca8a9cccc04f873c";
        let mut bytes = [0u8; AUTH_KEY_LEN];
        for (i, b) in bytes.iter_mut().enumerate() {
            let j = (i % 32) * 2;
            *b = u8::from_str_radix(&pattern[j..j + 2], 16).unwrap_or_default();
        }
        assert_eq!(AuthKey::new(bytes).key_id(), -473881777590285471);
    }
}
