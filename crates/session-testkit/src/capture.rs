//! A `tracing` subscriber that records every span, every recorded field and every event at
//! TRACE, and checks that no secret appears in any of them.
//!
//! Backends run their blocking work on tokio's blocking pool, where a thread-local default
//! subscriber is not seen: [`install`] sets a process-wide one (once per test binary), and
//! [`Capture::lock`] serialises the tests of a binary that read it.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use session_core::{AuthKey, Change, DcOption, SelfUser, SessionData};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One span as created, with every field recorded on it later merged in.
#[derive(Clone, Debug)]
pub struct SpanRecord {
    /// The span's name.
    pub name: &'static str,
    /// Its target (the module that made it).
    pub target: &'static str,
    /// Its level.
    pub level: Level,
    /// Fields in the order they were recorded (a field recorded twice appears twice).
    pub fields: Vec<(String, String)>,
    /// The name of the span it was created in, if any.
    pub parent: Option<&'static str>,
}

impl SpanRecord {
    /// The last value recorded for `field`.
    pub fn field(&self, field: &str) -> Option<&str> {
        self.fields.iter().rev().find(|(n, _)| n == field).map(|(_, v)| v.as_str())
    }
}

/// One event.
#[derive(Clone, Debug)]
pub struct EventRecord {
    /// Its target.
    pub target: &'static str,
    /// Its level.
    pub level: Level,
    /// Its fields, `message` included.
    pub fields: Vec<(String, String)>,
    /// The name of the span it happened in, if any.
    pub span: Option<&'static str>,
}

impl EventRecord {
    /// The value of `field`.
    pub fn field(&self, field: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == field).map(|(_, v)| v.as_str())
    }

    /// The event's message.
    pub fn message(&self) -> &str {
        self.field("message").unwrap_or_default()
    }
}

/// Everything captured since the last [`Capture::take`].
#[derive(Clone, Debug, Default)]
pub struct Captured {
    /// Spans, in creation order.
    pub spans: Vec<SpanRecord>,
    /// Events, in order.
    pub events: Vec<EventRecord>,
}

impl Captured {
    /// The spans named `name` whose target starts with `target`.
    pub fn spans(&self, target: &str, name: &str) -> Vec<&SpanRecord> {
        self.spans.iter().filter(|s| s.name == name && s.target.starts_with(target)).collect()
    }

    /// The first span named `name` (target starting with `target`) that has every field of
    /// `fields`, each with the value given (`None`: any value). Panics listing what was captured
    /// when there is none.
    pub fn expect_span(&self, target: &str, name: &str, fields: &[(&str, Option<&str>)]) -> &SpanRecord {
        let found = self.spans(target, name).into_iter().find(|s| {
            fields.iter().all(|(f, want)| match (s.field(f), want) {
                (Some(v), Some(w)) => v == *w,
                (Some(_), None) => true,
                (None, _) => false,
            })
        });
        match found {
            Some(s) => s,
            None => panic!(
                "no span {target}::{name} with fields {fields:?}; spans of that name: {:#?}\nall span names: {:?}",
                self.spans(target, name),
                self.spans.iter().map(|s| format!("{}::{}", s.target, s.name)).collect::<HashSet<_>>()
            ),
        }
    }

    /// The first event whose message contains `message` (target starting with `target`) and
    /// that has every field of `fields` (`None`: any value). Panics listing the events when
    /// there is none.
    pub fn expect_event(&self, target: &str, message: &str, fields: &[(&str, Option<&str>)]) -> &EventRecord {
        let found = self.events.iter().find(|e| {
            e.target.starts_with(target)
                && e.message().contains(message)
                && fields.iter().all(|(f, want)| match (e.field(f), want) {
                    (Some(v), Some(w)) => v == *w,
                    (Some(_), None) => true,
                    (None, _) => false,
                })
        });
        match found {
            Some(e) => e,
            None => panic!("no event {target}: {message:?} with fields {fields:?}; events: {:#?}", self.events),
        }
    }

    /// Every span name, field name, field value and event as one text, one item per line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for s in &self.spans {
            out.push_str(s.name);
            out.push('\n');
            for (n, v) in &s.fields {
                out.push_str(n);
                out.push('\n');
                out.push_str(v);
                out.push('\n');
            }
        }
        for e in &self.events {
            for (n, v) in &e.fields {
                out.push_str(n);
                out.push('\n');
                out.push_str(v);
                out.push('\n');
            }
        }
        out
    }

    /// Panics naming the secret and the record when any form of any secret of `secrets`
    /// appears anywhere in what was captured.
    pub fn assert_no_secret(&self, secrets: &Secrets) {
        for s in &self.spans {
            let mut all = vec![s.name.to_owned()];
            all.extend(s.fields.iter().flat_map(|(n, v)| [n.clone(), v.clone()]));
            for text in all {
                if let Some(hit) = secrets.find_in(&text) {
                    panic!("span {}::{} shows {hit}: {text:?}", s.target, s.name);
                }
            }
        }
        for e in &self.events {
            for (n, v) in &e.fields {
                for text in [n, v] {
                    if let Some(hit) = secrets.find_in(text) {
                        panic!("event {} ({:?}) shows {hit}: {text:?}", e.target, e.message());
                    }
                }
            }
        }
    }
}

/// Secrets to look for, each in every form a log line could show it in.
///
/// Bytes (auth keys, future auth tokens) are looked for as lower- and upper-case hex, standard
/// and URL-safe base64 (padded or not), `{:?}` of a byte slice (`12, 250, ...`) and lossy UTF-8;
/// strings (tokens, string sessions) as they are. Any window of [`Secrets::WINDOW`] characters of
/// a form counts, so a part of a secret (a prefix of a key in hex, a slice of a string) is caught
/// too.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    /// Window length → (window → which secret).
    windows: HashMap<usize, HashMap<String, String>>,
}

impl Secrets {
    /// The length of the windows looked for (16 hex digits are 8 bytes of a key).
    pub const WINDOW: usize = 16;

    /// No secrets yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Looks for `bytes`, named `what` in failures, in every form.
    pub fn bytes(&mut self, what: &str, bytes: &[u8]) -> &mut Self {
        let lower: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.text(&format!("{what} (hex)"), &lower);
        self.text(&format!("{what} (HEX)"), &lower.to_ascii_uppercase());
        // Base64 of a slice that starts on a multiple of 3 bytes is a part of the whole's.
        for engine in [&STANDARD, &URL_SAFE] {
            self.text(&format!("{what} (base64)"), &engine.encode(bytes));
        }
        for start in (0..bytes.len()).step_by(3) {
            let part = bytes.get(start..).unwrap_or_default();
            for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                self.text(&format!("{what} (base64 from byte {start})"), &engine.encode(part));
            }
        }
        let list: Vec<String> = bytes.iter().map(u8::to_string).collect();
        // A window of a decimal list is longer: short runs of small numbers are common.
        self.text_with(&format!("{what} (byte list)"), &list.join(", "), 2 * Self::WINDOW);
        let lossy = String::from_utf8_lossy(bytes);
        if lossy.chars().filter(|c| *c != char::REPLACEMENT_CHARACTER).count() >= Self::WINDOW {
            self.text(&format!("{what} (lossy UTF-8)"), &lossy);
        }
        self
    }

    /// Looks for every auth key and the future auth token of `data`.
    pub fn session(&mut self, data: &SessionData) -> &mut Self {
        for dc in data.dcs.values() {
            if let Some(key) = &dc.auth_key {
                self.bytes(&format!("auth key of DC {}", dc.id), key.as_bytes());
            }
        }
        if let Some(token) = &data.future_auth_token {
            self.bytes("future auth token", token);
        }
        self
    }

    /// Looks for the string `s`, named `what` in failures.
    pub fn text(&mut self, what: &str, s: &str) -> &mut Self {
        self.text_with(what, s, Self::WINDOW)
    }

    fn text_with(&mut self, what: &str, s: &str, window: usize) -> &mut Self {
        let chars: Vec<char> = s.chars().collect();
        let set = self.windows.entry(window).or_default();
        if chars.len() <= window {
            if !s.is_empty() {
                set.insert(s.to_owned(), what.to_owned());
            }
            return self;
        }
        for w in chars.windows(window) {
            let w: String = w.iter().collect();
            // A window of one repeated character (padding, zero bytes) says nothing.
            if w.chars().collect::<HashSet<_>>().len() > 2 {
                set.entry(w).or_insert_with(|| what.to_owned());
            }
        }
        self
    }

    /// The first secret found in `text`, described.
    pub fn find_in(&self, text: &str) -> Option<String> {
        let chars: Vec<char> = text.chars().collect();
        for (len, set) in &self.windows {
            if chars.len() < *len {
                if let Some(what) = set.get(text) {
                    return Some(what.clone());
                }
                continue;
            }
            for w in chars.windows(*len) {
                let w: String = w.iter().collect();
                if let Some(what) = set.get(&w) {
                    return Some(format!("{what}: {w:?}"));
                }
            }
        }
        None
    }
}

/// Changes that log a session in with random auth keys on DCs 1 to 5, a random future auth
/// token, a user, and `peers` peers. The keys come from
/// `seed`, so that a test's secrets are not the suite's sample keys.
pub fn secret_changes(seed: u64, peers: u64) -> Vec<Change> {
    let mut rng = crate::Rng::new(seed);
    let mut random = |n: usize| -> Vec<u8> { (0..n).map(|_| rng.next_u64().to_le_bytes()[3]).collect() };
    let mut changes = Vec::new();
    for dc in 1..=5 {
        let mut key = [0u8; 256];
        key.copy_from_slice(&random(256));
        let addr = std::net::SocketAddr::from(([149, 154, 167, 50 + u8::try_from(dc).unwrap_or(0)], 443));
        changes.push(Change::SetDc(DcOption::new(dc, addr).with_auth_key(Some(AuthKey::new(key)))));
    }
    changes.push(Change::SetHomeDc(2));
    changes.push(Change::SetUser(Some(SelfUser::new(777_000_111, false))));
    changes.push(Change::SetFutureAuthToken(Some(random(48))));
    let mut rng = crate::Rng::new(seed ^ 0x9E37);
    changes.extend((0..peers).map(|n| Change::UpsertPeer(crate::sample_peer(n, &mut rng))));
    changes
}

struct LiveSpan {
    index: usize,
}

#[derive(Default)]
struct State {
    captured: Captured,
    /// Span id → index into `captured.spans` (`usize::MAX` once taken away by `take`).
    live: HashMap<u64, LiveSpan>,
    names: HashMap<u64, &'static str>,
}

/// The process-wide capturing subscriber.
pub struct Capture {
    state: Mutex<State>,
    next: AtomicU64,
    tests: tokio::sync::Mutex<()>,
}

thread_local! {
    static STACK: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capture").finish_non_exhaustive()
    }
}

/// Installs the capturing subscriber as the global default (once per process) and returns it.
/// Panics if another global subscriber was installed first.
pub fn install() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::new(Capture {
            state: Mutex::new(State::default()),
            next: AtomicU64::new(1),
            tests: tokio::sync::Mutex::new(()),
        }));
        if tracing::subscriber::set_global_default(Forward(capture)).is_err() {
            panic!("another global tracing subscriber is installed: the capture would see nothing");
        }
        capture
    })
}

impl Capture {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serialises the tests of one binary that read the capture (a failed test does not
    /// poison it for the others). Clears what was captured before.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        let guard = self.tests.lock().await;
        drop(self.take());
        guard
    }

    /// Everything captured since the last call. Fields recorded later on a span returned here
    /// are not seen.
    pub fn take(&self) -> Captured {
        let mut state = self.state();
        for live in state.live.values_mut() {
            live.index = usize::MAX;
        }
        std::mem::take(&mut state.captured)
    }
}

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // Display and Debug both: either could leak.
        self.0.push((field.name().to_owned(), format!("{value} / {value:?}")));
    }
}

struct Forward(&'static Capture);

impl Forward {
    fn current(&self) -> Option<u64> {
        STACK.with(|s| s.borrow().last().copied())
    }
}

impl Subscriber for Forward {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.0.next.fetch_add(1, Ordering::Relaxed);
        let mut fields = Fields(Vec::new());
        attrs.record(&mut fields);
        let parent = if attrs.is_contextual() { self.current() } else { attrs.parent().map(Id::into_u64) };
        let meta = attrs.metadata();
        let mut state = self.0.state();
        let parent = parent.and_then(|p| state.names.get(&p).copied());
        let index = state.captured.spans.len();
        state.captured.spans.push(SpanRecord {
            name: meta.name(),
            target: meta.target(),
            level: *meta.level(),
            fields: fields.0,
            parent,
        });
        state.live.insert(id, LiveSpan { index });
        state.names.insert(id, meta.name());
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut fields = Fields(Vec::new());
        values.record(&mut fields);
        let mut state = self.0.state();
        let Some(index) = state.live.get(&span.into_u64()).map(|l| l.index) else { return };
        if let Some(s) = state.captured.spans.get_mut(index) {
            s.fields.extend(fields.0);
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        let span = if event.is_contextual() { self.current() } else { event.parent().map(Id::into_u64) };
        let meta = event.metadata();
        let mut state = self.0.state();
        let span = span.and_then(|p| state.names.get(&p).copied());
        state.captured.events.push(EventRecord { target: meta.target(), level: *meta.level(), fields: fields.0, span });
    }

    fn enter(&self, span: &Id) {
        STACK.with(|s| s.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &Id) {
        STACK.with(|s| {
            let mut s = s.borrow_mut();
            if let Some(at) = s.iter().rposition(|id| *id == span.into_u64()) {
                s.remove(at);
            }
        });
    }
}
