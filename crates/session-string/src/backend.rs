//! [`StringSessionBackend`]: a session kept in a string that the caller stores wherever it likes.

use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use session_core::{codec, BoxError, Change, KeyId, Keyring, SessionBackend, SessionData, SessionError};
use tokio::sync::watch;
use tracing::field::Empty;
use tracing::Span;

use crate::foreign::{self, StringFormat};
use crate::ours;

/// A session held in memory and mirrored into a string.
///
/// Create it from the string you stored (an empty string means "no session yet"), hand it to a
/// [`session_core::SessionStore`] like any backend, and re-save [`current`](Self::current)
/// whenever it changes: [`subscribe`](Self::subscribe) returns a watch channel that is told about
/// every new string. Nothing is written anywhere else, so a session survives a restart only if
/// the caller re-saves the latest string.
///
/// The string is always this crate's full form (`L1.…`, see the crate docs), which keeps
/// everything (every DC, peers, update state) with no size limit. [`new`](Self::new) also accepts
/// the compact form and every foreign string that [`foreign::import`] reads (Telethon, Pyrogram,
/// GramJS, mtcute, ...); [`current`](Self::current) then returns the same session in our full
/// form.
///
/// An invalid string is not treated as "no session": `load` returns the error (so a client does
/// not start a fresh login and lose the account), [`current`](Self::current) keeps returning the
/// string as given, and only an explicit `save`/`save_session`/`delete` replaces it.
///
/// With a key ([`new_sealed`](Self::new_sealed)) the string is the sealed form (`Le1.…`,
/// [`crate::encode_sealed`]): encrypted, so it can be stored where others can read it.
pub struct StringSessionBackend {
    state: Mutex<State>,
    tx: watch::Sender<String>,
    keys: Option<Keyring>,
}

struct State {
    data: Option<SessionData>,
    /// Why the initial string could not be read (kept until something replaces it).
    broken: Option<Broken>,
    format: Option<StringFormat>,
    /// The published string is older than `data`: nobody was subscribed when it changed, so it
    /// is encoded when someone asks ([`StringSessionBackend::current`], `subscribe`). This keeps a
    /// change O(change) instead of a re-encoding of the whole session per flush.
    stale: bool,
}

/// A stored copy of the decode error (`SessionError` is not `Clone`).
enum Broken {
    Invalid { what: String, reason: String },
    Corrupt { resource: String, reason: String },
    Version { what: &'static str, found: u32, supported: u32 },
    Sealed { resource: String, key_id: Option<KeyId> },
    WrongKey { resource: String, key_id: KeyId },
}

impl Broken {
    fn from_error(e: &SessionError) -> Broken {
        match e {
            SessionError::Invalid { what, reason } => Broken::Invalid { what: what.clone(), reason: reason.clone() },
            SessionError::Corrupt { resource, reason, .. } => {
                Broken::Corrupt { resource: resource.clone(), reason: reason.clone() }
            }
            SessionError::UnsupportedVersion { what, found, supported } => {
                Broken::Version { what, found: *found, supported: *supported }
            }
            SessionError::Sealed { resource, key_id } => Broken::Sealed { resource: resource.clone(), key_id: *key_id },
            SessionError::WrongKey { resource, key_id } => {
                Broken::WrongKey { resource: resource.clone(), key_id: *key_id }
            }
            other => Broken::Invalid { what: "string session".to_owned(), reason: other.to_string() },
        }
    }

    fn to_error(&self) -> SessionError {
        match self {
            Broken::Invalid { what, reason } => SessionError::invalid(what.clone(), reason.clone()),
            Broken::Corrupt { resource, reason } => SessionError::corrupt(resource.clone(), reason.clone()),
            Broken::Version { what, found, supported } => {
                SessionError::UnsupportedVersion { what, found: *found, supported: *supported }
            }
            Broken::Sealed { resource, key_id } => SessionError::Sealed { resource: resource.clone(), key_id: *key_id },
            Broken::WrongKey { resource, key_id } => {
                SessionError::WrongKey { resource: resource.clone(), key_id: *key_id }
            }
        }
    }
}

impl StringSessionBackend {
    /// A backend over `s`: empty (or only whitespace) for no session yet, our full or compact
    /// string, or any foreign string [`foreign::import`] reads.
    ///
    /// Never fails: an invalid string is reported by `load` / [`error`](Self::error).
    ///
    /// A compact or foreign string is converted at once: [`current`](Self::current) is already
    /// our full form, but receivers are only told about later changes, so save `current()` right
    /// after `new` to migrate the stored string immediately.
    pub fn new(s: &str) -> Self {
        Self::with_keys(s, None)
    }

    /// A backend over `s` whose strings are sealed with `keys` ([`crate::encode_sealed`]).
    ///
    /// `s` may be a sealed string (opened with `keys`: a key they lack is
    /// [`SessionError::WrongKey`], reported by `load` / [`error`](Self::error) like any invalid
    /// string), or any string [`new`](Self::new) accepts, which is then sealed:
    /// [`current`](Self::current) is already the sealed form. Blocking when a passphrase's key
    /// is derived (once per keyring): call it off the async runtime.
    pub fn new_sealed(s: &str, keys: Keyring) -> Self {
        Self::with_keys(s, Some(keys))
    }

    fn with_keys(s: &str, keys: Option<Keyring>) -> Self {
        let read = |s: &str| match &keys {
            Some(keys) if crate::ours::is_sealed(s) => {
                crate::ours::decode_sealed(s, keys).map(|d| (d, StringFormat::Full))
            }
            _ => foreign::import(s),
        };
        let (state, initial) = if s.trim().is_empty() {
            (State { data: None, broken: None, format: None, stale: false }, String::new())
        } else {
            match read(s) {
                // The string is not kept: `current` encodes the session again when asked (our
                // full form is deterministic, so our own full string comes back unchanged, and
                // anything else comes back as the full form). A million-peer string is not held
                // twice in memory.
                Ok((data, format)) => {
                    (State { data: Some(data), broken: None, format: Some(format), stale: true }, String::new())
                }
                Err(e) => (
                    State { data: None, broken: Some(Broken::from_error(&e)), format: None, stale: false },
                    s.to_owned(),
                ),
            }
        };
        let (tx, _) = watch::channel(initial);
        Self { state: Mutex::new(state), tx, keys }
    }

    /// A backend holding `data` (its string is [`current`](Self::current)).
    pub fn from_session(data: &SessionData) -> Result<Self, SessionError> {
        let s = ours::encode_full(data)?;
        let (tx, _) = watch::channel(s);
        let state = State { data: Some(data.clone()), broken: None, format: Some(StringFormat::Full), stale: false };
        Ok(Self { state: Mutex::new(state), tx, keys: None })
    }

    /// The latest string: our full form of the session, empty when there is none (or, while the
    /// initial string is invalid, that string unchanged).
    pub fn current(&self) -> String {
        let mut state = self.lock();
        self.refresh(&mut state);
        self.tx.borrow().clone()
    }

    /// A receiver that is told every time [`current`](Self::current) changes; the value it holds
    /// is the new string. Re-save it from a task to make the session survive restarts.
    pub fn subscribe(&self) -> watch::Receiver<String> {
        let mut state = self.lock();
        self.refresh(&mut state);
        self.tx.subscribe()
    }

    /// Encodes the published string if it is behind the session.
    fn refresh(&self, state: &mut State) {
        if !state.stale {
            return;
        }
        let s = match &state.data {
            Some(d) => match self.encode(d) {
                Ok(s) => s,
                Err(e) => {
                    // Encoding into memory does not fail in practice; if it ever did, the last
                    // published string stays (the session is still in memory and retried on the
                    // next call) rather than an empty one that would read as "no session".
                    tracing::warn!(error = %e, "cannot encode the string session");
                    return;
                }
            },
            None => String::new(),
        };
        state.stale = false;
        self.send(s);
    }

    /// Publishes the session's string now when someone listens, or marks it stale.
    fn publish_data(&self, state: &mut State) -> Result<(), SessionError> {
        if self.tx.receiver_count() == 0 {
            state.stale = true;
            return Ok(());
        }
        let s = match &state.data {
            Some(d) => self.encode(d)?,
            None => String::new(),
        };
        // Its length only: the string holds the auth key.
        tracing::debug!(bytes = s.len(), receivers = self.tx.receiver_count(), "published a new string session");
        state.stale = false;
        self.send(s);
        Ok(())
    }

    /// The string form of `data`: sealed when this backend has keys, else our full form.
    fn encode(&self, data: &SessionData) -> Result<String, SessionError> {
        match &self.keys {
            Some(keys) => ours::encode_sealed(data, keys),
            None => ours::encode_full(data),
        }
    }

    /// The id of the key the strings are sealed with (`None`: not sealed). Blocking the first
    /// time for a passphrase (its key is derived).
    pub fn sealed_with(&self) -> Option<KeyId> {
        self.keys.as_ref().and_then(|k| k.sealing_key(None).ok()).map(|k| k.id())
    }

    /// The session in compact form (home DC, its key, user, test mode); see
    /// [`crate::encode_compact`] for when this fails. Never sealed, even with a key: it is an
    /// explicit export of the plain key.
    pub fn compact(&self) -> Result<String, SessionError> {
        let state = self.lock();
        match &state.data {
            Some(data) => ours::encode_compact(data),
            None => Err(SessionError::invalid("layer compact string session", "there is no session to export")),
        }
    }

    /// What the initial string was (our full or compact form, or a foreign format), when it was
    /// read successfully; after a save it is [`StringFormat::Full`].
    pub fn format(&self) -> Option<StringFormat> {
        self.lock().format
    }

    /// Why the initial string could not be read, while it has not been replaced.
    pub fn error(&self) -> Option<SessionError> {
        self.lock().broken.as_ref().map(Broken::to_error)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every write under the lock is a single assignment after the fallible work is done, so a
        // poisoned lock still holds a consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the session and publishes its string (`None`: no session, empty string).
    fn publish(&self, state: &mut State, data: Option<SessionData>) -> Result<(), SessionError> {
        // An empty session (after a log-out) is "no session": the string becomes empty too.
        let data = data.filter(|d| !d.is_empty());
        state.data = data;
        state.broken = None;
        state.format = state.data.as_ref().map(|_| StringFormat::Full);
        self.publish_data(state)
    }

    fn send(&self, s: String) {
        self.tx.send_if_modified(|current| {
            if *current == s {
                false
            } else {
                *current = s;
                true
            }
        });
    }
}

impl fmt::Debug for StringSessionBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never show the string: it holds the auth key.
        let state = self.lock();
        f.debug_struct("StringSessionBackend")
            .field("has_session", &state.data.is_some())
            .field("invalid", &state.broken.is_some())
            .field("stale", &state.stale)
            .field("sealed", &self.keys.is_some())
            .finish()
    }
}

fn boxed(e: SessionError) -> BoxError {
    Box::new(e)
}

/// Runs `op` inside `span`, recording `elapsed_us` (the clock is read only when the span is
/// enabled) and why it failed. Everything here is in memory: the span shows the cost of the
/// string's encoding, which is O(session) whenever someone listens.
fn timed<T>(span: &Span, op: impl FnOnce() -> Result<T, SessionError>) -> Result<T, BoxError> {
    let start = (!span.is_disabled()).then(std::time::Instant::now);
    let result = span.in_scope(op);
    if let Some(start) = start {
        span.record("elapsed_us", u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
        if let Err(e) = &result {
            // Errors name what was wrong with a string, never the string (see `foreign`).
            span.in_scope(|| tracing::debug!(error = %e, "failed"));
        }
    }
    result.map_err(boxed)
}

/// The span of one call.
macro_rules! span {
    ($name:literal $(, $field:ident = $value:expr)*) => {
        tracing::debug_span!($name, backend = "string", $($field = $value,)* elapsed_us = Empty)
    };
}

#[async_trait]
impl SessionBackend for StringSessionBackend {
    async fn load(&self) -> Result<Option<Vec<u8>>, BoxError> {
        let span = span!("load", peers = Empty, bytes = Empty);
        timed(&span, || {
            let state = self.lock();
            if let Some(broken) = &state.broken {
                return Err(broken.to_error());
            }
            match &state.data {
                Some(data) => {
                    let bytes = codec::encode(data)?;
                    span.record("peers", data.peers.len());
                    span.record("bytes", bytes.len());
                    Ok(Some(bytes))
                }
                None => Ok(None),
            }
        })
    }

    async fn save(&self, data: &[u8]) -> Result<(), BoxError> {
        let span = span!("save", bytes = data.len());
        timed(&span, || {
            let decoded = if data.is_empty() { None } else { Some(codec::decode(data)?) };
            let mut state = self.lock();
            self.publish(&mut state, decoded)
        })
    }

    async fn delete(&self) -> Result<(), BoxError> {
        let span = span!("delete");
        timed(&span, || {
            let mut state = self.lock();
            self.publish(&mut state, None)
        })
    }

    fn name(&self) -> &str {
        "string"
    }

    async fn load_session(&self) -> Result<Option<SessionData>, BoxError> {
        let span = span!("load", peers = Empty);
        timed(&span, || {
            let state = self.lock();
            if let Some(broken) = &state.broken {
                return Err(broken.to_error());
            }
            if let Some(data) = &state.data {
                span.record("peers", data.peers.len());
            }
            Ok(state.data.clone())
        })
    }

    async fn save_session(&self, data: &SessionData) -> Result<(), BoxError> {
        let span = span!("save", peers = data.peers.len());
        timed(&span, || {
            let mut state = self.lock();
            self.publish(&mut state, Some(data.clone()))
        })
    }

    async fn persist(&self, changes: &[Change], _full: &SessionData) -> Result<(), BoxError> {
        let span = span!("persist", changes = changes.len());
        timed(&span, || self.persist_now(changes))
    }
}

impl StringSessionBackend {
    fn persist_now(&self, changes: &[Change]) -> Result<(), SessionError> {
        let mut state = self.lock();
        if let Some(broken) = &state.broken {
            // Applying changes to "nothing" would silently replace the session the user gave.
            return Err(broken.to_error());
        }
        // Apply in place; the string is encoded once per call when someone is subscribed, and
        // otherwise only when `current` asks. If encoding fails, the changes stay applied in
        // memory and the caller retries them (they are idempotent); the published string is only
        // replaced by a complete encoding.
        let data = state.data.get_or_insert_with(SessionData::default);
        data.apply_all(changes);
        if data.is_empty() {
            // Logged out: no session, empty string.
            state.data = None;
            state.format = None;
        } else {
            state.format = Some(StringFormat::Full);
        }
        self.publish_data(&mut state)
    }
}
