//! The sealing key of a command (encryption at rest): from `--key-file PATH` or the
//! environment, never from an argument (other users of the machine read the process list).
//!
//! A key file or variable holds either a raw key (64 hexadecimal characters) or a passphrase
//! (anything else; its key is derived with Argon2id and the salt stored beside the data). Key
//! material lives in zeroized memory: the text read is wiped once the key is made, and no
//! message names it (the keyring's `Debug` shows key ids only).

use std::path::Path;

use session_core::{KdfParams, Keyring, Passphrase, SealingKey, SessionError};
use zeroize::Zeroizing;

use crate::error::{CliError, CliResult};
use crate::location::shown_path;

/// The environment variable holding the key (read when `--key-file` is not given).
pub const KEY_ENV: &str = "LAYER_SESSION_KEY";
/// The environment variable holding the new key of `rekey` (when `--new-key-file` is not given).
pub const NEW_KEY_ENV: &str = "LAYER_SESSION_NEW_KEY";

/// The largest key file read (a passphrase is short; this only bounds a mistaken path).
const KEY_FILE_LIMIT: u64 = 64 << 10;

/// A key as given: a raw key or a passphrase. `Debug` shows neither.
#[derive(Clone)]
pub enum Key {
    /// 64 hexadecimal characters.
    Raw(SealingKey),
    /// Anything else.
    Passphrase(Passphrase),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Raw(k) => write!(f, "Key::Raw({:?})", k.id()),
            Key::Passphrase(_) => f.write_str("Key::Passphrase(<hidden>)"),
        }
    }
}

impl Key {
    /// The keyring that seals and opens with this key.
    pub fn keyring(&self) -> Keyring {
        match self {
            Key::Raw(k) => Keyring::new(k.clone()),
            Key::Passphrase(p) => Keyring::from_passphrase(p.clone(), KdfParams::default()),
        }
    }

    /// The keyring of a rotation: seals with `self`, opens what `old` sealed too.
    pub fn rotating_from(&self, old: &Key) -> Keyring {
        let ring = self.keyring();
        match old {
            Key::Raw(k) => ring.with_old_key(k.clone()),
            Key::Passphrase(p) => ring.with_old_passphrase(p.clone()),
        }
    }
}

/// The keyring of `--key-file` (`flag` names the option in messages), else of the variable
/// `env`; `None` when neither is given.
pub fn keyring(file: Option<&Path>, env: &str, flag: &str) -> CliResult<Option<Keyring>> {
    Ok(key(file, env, flag)?.map(|k| k.keyring()))
}

/// The key of `--key-file`, else of the variable `env`; `None` when neither is given.
pub fn key(file: Option<&Path>, env: &str, flag: &str) -> CliResult<Option<Key>> {
    if let Some(path) = file {
        let text = read_key_file(path, flag)?;
        return parse(&text, &format!("{flag} {}", shown_path(path))).map(Some);
    }
    match std::env::var_os(env) {
        None => Ok(None),
        Some(value) => {
            let Ok(value) = value.into_string().map(Zeroizing::new) else {
                return Err(CliError::usage(format!("{env}: is not valid UTF-8")));
            };
            parse(&value, env).map(Some)
        }
    }
}

/// A raw key (64 hex characters) or a passphrase, one trailing newline stripped.
fn parse(text: &str, what: &str) -> CliResult<Key> {
    let text = text.strip_suffix('\n').map_or(text, |t| t.strip_suffix('\r').unwrap_or(t));
    if text.is_empty() {
        return Err(CliError::usage(format!("{what}: is empty (a key is 64 hexadecimal characters or a passphrase)")));
    }
    if SealingKey::is_hex_key(text) {
        let key = SealingKey::from_hex(text).map_err(|e| CliError::usage(format!("{what}: {e}")))?;
        return Ok(Key::Raw(key));
    }
    Ok(Key::Passphrase(Passphrase::new(text.as_bytes().to_vec())))
}

/// The content of a key file: a regular file, private to its owner (a key readable by others
/// is a key given away: refused, as ssh refuses such a private key), at most 64 KiB.
fn read_key_file(path: &Path, flag: &str) -> CliResult<Zeroizing<String>> {
    let shown = format!("{flag} {}", shown_path(path));
    let mut file =
        session_core::fs::open_nonblocking(path, false).map_err(|e| CliError::usage(format!("{shown}: {e}")))?;
    let meta = file.metadata().map_err(|e| CliError::usage(format!("{shown}: {e}")))?;
    if !meta.is_file() {
        return Err(CliError::usage(format!("{shown}: is not a regular file")));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CliError::usage(format!(
                "{shown}: is readable or writable by others (mode {mode:03o}); a key file must be private \
                 to its owner: chmod 600 it"
            )));
        }
    }
    let bytes = Zeroizing::new(
        crate::guard::read_bounded(&mut file, KEY_FILE_LIMIT, &shown).map_err(|e| CliError::usage(e.message))?,
    );
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(_) => {
            Err(CliError::usage(format!("{shown}: is not text (a key is 64 hexadecimal characters or a passphrase)")))
        }
    }
}

/// A sealing error of the source `shown`, with how to give the key (`Sealed`), or what to check
/// (`WrongKey`); any other error as it is. Exit code 2, as every read error.
pub fn source_error(shown: &str, e: &SessionError) -> CliError {
    CliError::source(shown, describe(e))
}

/// [`source_error`]'s text.
pub fn describe(e: &SessionError) -> String {
    match e {
        SessionError::Sealed { .. } => format!(
            "{e}; a key is needed: set {KEY_ENV} or pass --key-file PATH (a raw key as 64 hexadecimal characters, or a passphrase)"
        ),
        SessionError::WrongKey { .. } => {
            format!("{e}; the key given ({KEY_ENV} or --key-file) is not the one it was sealed with")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_keys_and_passphrases_are_told_apart_and_never_shown() {
        let hex = "0f".repeat(32);
        let ring = parse(&format!("{hex}\n"), "t").expect("hex key").keyring();
        assert_eq!(ring.known_ids(), vec![SealingKey::from_hex(&hex).expect("hex").id()]);
        let key = parse("Correct-Horse-Distinctive-Passphrase\n", "t").expect("passphrase");
        assert!(!format!("{key:?}").contains("Distinctive"));
        let pass = key.keyring();
        // A passphrase's key depends on the stored salt: no id before a derivation.
        assert!(pass.known_ids().is_empty());
        assert!(!format!("{pass:?}").contains("Distinctive"));
        assert_eq!(parse("\n", "t").err().map(|e| e.code), Some(crate::error::EXIT_USAGE));
    }
}
