//! The public name of a sealing key ([`KeyId`]): in a module of its own so that the errors,
//! which name it, and the keys, which return errors, do not import each other.

use std::fmt;

/// Length of a [`KeyId`] in bytes.
pub const KEY_ID_LEN: usize = 8;

/// The public name of a key: the first 8 bytes of BLAKE2b-MAC(key, a constant label).
///
/// Stored beside every sealed value so that the right key of a `Keyring` is picked, and so
/// that a value sealed with a key the keyring lacks is told from damage
/// (`SessionError::WrongKey`). It reveals nothing of the key; two keys share an id with
/// probability 2^-64.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}
