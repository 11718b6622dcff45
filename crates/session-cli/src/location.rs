//! Parsing of sources and destinations: paths with auto-detection, or explicit prefixes.

use std::fmt;
use std::path::{Path, PathBuf};

use session_interop::{ForeignFormat, LegacyFormat, StringFormat};

use crate::error::{CliError, CliResult};

/// The family a prefix names (`telethon:` covers the Telethon string and `.session` file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `file:`: our log file, or a layer/ferogram binary file.
    File,
    /// `sqlite:`: our SQLite database, or another library's SQLite file.
    Sqlite,
    /// `libsql:`: a local libSQL database.
    Libsql,
    /// `string:`: any string session.
    String,
    /// `telethon:`.
    Telethon,
    /// `pyrogram:`.
    Pyrogram,
    /// `pyrofork:`.
    Pyrofork,
    /// `kurigram:`.
    Kurigram,
    /// `gramjs:`.
    Gramjs,
    /// `mtcute:`.
    Mtcute,
    /// `layer:`: layer-client 0.5 files and strings.
    Layer,
    /// `ferogram:`: ferogram files and strings.
    Ferogram,
}

const PREFIXES: [(&str, Family); 12] = [
    ("file:", Family::File),
    ("sqlite:", Family::Sqlite),
    ("libsql:", Family::Libsql),
    ("string:", Family::String),
    ("telethon:", Family::Telethon),
    ("pyrogram:", Family::Pyrogram),
    ("pyrofork:", Family::Pyrofork),
    ("kurigram:", Family::Kurigram),
    ("gramjs:", Family::Gramjs),
    ("mtcute:", Family::Mtcute),
    ("layer:", Family::Layer),
    ("ferogram:", Family::Ferogram),
];

impl Family {
    /// The prefix as written on the command line.
    pub fn prefix(self) -> &'static str {
        PREFIXES.iter().find(|(_, f)| *f == self).map_or("", |(p, _)| p)
    }
}

/// Where a session is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file or folder, the format detected from its content (restricted to `family` if a
    /// prefix named one).
    Path {
        /// The path.
        path: PathBuf,
        /// The prefix's family.
        family: Option<Family>,
    },
    /// A string session given on the command line (`string:TEXT`, `telethon:TEXT`, ...).
    Literal {
        /// The string.
        text: String,
        /// The prefix's family.
        family: Family,
    },
    /// A string session on standard input (`-`, `string:-`).
    Stdin {
        /// The prefix's family, if any.
        family: Option<Family>,
    },
    /// A remote libSQL database (`libsql://...`, `libsql+http://...`, `libsql+https://...`).
    Remote {
        /// The URL as given.
        url: String,
    },
    /// A named session in a PostgreSQL database or on a Redis server (`postgres://...#NAME`,
    /// `redis://...#NAME`).
    Server(ServerSession),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Path { path, .. } => f.write_str(&shown_path(path)),
            Source::Literal { family, .. } => write!(f, "{}<string>", family.prefix()),
            Source::Stdin { .. } => f.write_str("<stdin>"),
            Source::Remote { url } => f.write_str(&redact_url(url)),
            Source::Server(server) => fmt::Display::fmt(server, f),
        }
    }
}

/// The kind of database server a [`ServerSession`] lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// PostgreSQL (`postgres://`, `postgresql://`): `session_postgres::PostgresBackend`.
    Postgres,
    /// Redis (`redis://`, `rediss://`, `redis+unix://`): `session_redis::RedisBackend`.
    Redis,
}

const SERVER_SCHEMES: [(&str, ServerKind); 5] = [
    ("postgres://", ServerKind::Postgres),
    ("postgresql://", ServerKind::Postgres),
    ("redis://", ServerKind::Redis),
    ("rediss://", ServerKind::Redis),
    ("redis+unix://", ServerKind::Redis),
];

/// How a PostgreSQL location asks for TLS (`sslmode=` in its URL, with libpq's meanings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SslMode {
    /// No `sslmode`, or `disable`: no TLS (as before this parameter was read).
    #[default]
    Disable,
    /// `allow` or `prefer`: TLS when the server offers it, its certificate not checked.
    Prefer,
    /// `require`: TLS or nothing, the certificate not checked (checked against `sslrootcert`
    /// when one is given, as libpq does: then it is `verify-ca`).
    Require,
    /// `verify-ca`: TLS, the certificate chain checked against the roots, not the host name.
    VerifyCa,
    /// `verify-full`: TLS, the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// The `sslmode` tokio-postgres is given (it knows `disable`, `prefer` and `require`; the
    /// certificate checks are the connector's).
    fn driver(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
        }
    }
}

/// A named session on a database server: the URL to connect with (which may carry a password)
/// and the session's name (`#NAME` after the URL; the backend's default session without one).
///
/// Query parameters of the URL that are ours, not the driver's, are taken out of the URL the
/// driver gets: `schema=` (PostgreSQL: the schema the tables live in), `sslmode=` and
/// `sslrootcert=` (PostgreSQL TLS, see [`SslMode`]), `prefix=` (Redis: the key prefix).
///
/// Its `Debug` and `Display` never show the password: only [`ServerSession::connect_url`] does,
/// and it is handed to the driver only.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerSession {
    /// What kind of server.
    pub kind: ServerKind,
    /// The URL for the driver: without the `#NAME` and without our parameters, credentials
    /// included.
    url: String,
    /// `schema=` (PostgreSQL).
    schema: Option<String>,
    /// `prefix=` (Redis).
    prefix: Option<String>,
    /// `sslmode=` (PostgreSQL).
    ssl: SslMode,
    /// `sslrootcert=` (PostgreSQL): the roots a certificate is checked against.
    root_cert: Option<PathBuf>,
    /// The session's name, if one was given.
    pub name: Option<String>,
    /// The URL as messages show it (passwords replaced by `***`).
    shown: String,
    /// The passwords the URL carries (as written and percent-decoded), scrubbed from every
    /// message the tool prints.
    secrets: Vec<String>,
}

impl ServerSession {
    /// Parses `arg` if it is a PostgreSQL or Redis URL; `None` when its scheme is another.
    pub fn parse(arg: &str) -> Option<CliResult<ServerSession>> {
        let kind = SERVER_SCHEMES.iter().find(|(p, _)| starts_with_ignore_case(arg, p)).map(|(_, k)| *k)?;
        Some(Self::parse_kind(arg, kind))
    }

    fn parse_kind(arg: &str, kind: ServerKind) -> CliResult<ServerSession> {
        let (url, name) = split_name(arg);
        let (shown, secrets) = redact_server_url(url);
        let name = match name {
            None => None,
            Some(raw) => {
                let name = percent_decode(raw);
                if name.is_empty() || name.chars().any(char::is_control) {
                    return Err(CliError::usage(format!(
                        "{shown}#...: a session name after `#` must be 1 or more characters, none of them control characters"
                    )));
                }
                Some(name)
            }
        };
        let host_end = url.split_once("://").map_or("", |(_, rest)| rest);
        if host_end.is_empty() && kind == ServerKind::Postgres {
            return Err(CliError::usage(format!("{shown}: names no server")));
        }
        let mut server = ServerSession {
            kind,
            url: String::new(),
            name,
            shown,
            secrets,
            schema: None,
            prefix: None,
            ssl: SslMode::Disable,
            root_cert: None,
        };
        server.url = server.take_params(url)?;
        Ok(server)
    }

    /// Takes our query parameters out of `url` (kept in `self`) and gives the URL the driver
    /// reads. Values are percent-decoded; an unknown value of ours is a usage error.
    fn take_params(&mut self, url: &str) -> CliResult<String> {
        // The query starts after the user info (a password may hold a raw `?`).
        let start = url.find("://").map_or(0, |i| i + 3);
        let after_userinfo = url[start..].rfind('@').map_or(start, |i| start + i + 1);
        let Some(q) = url[after_userinfo..].find('?') else {
            return Ok(url.to_owned());
        };
        let (base, query) = (&url[..after_userinfo + q], &url[after_userinfo + q + 1..]);
        let mut kept: Vec<String> = Vec::new();
        let mut ssl_given = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(raw);
            let shown = &self.shown;
            let given = |value: String| {
                if value.is_empty() {
                    Err(CliError::usage(format!("{shown}: `{key}=` needs a value")))
                } else {
                    Ok(value)
                }
            };
            match (self.kind, key) {
                (ServerKind::Postgres, "schema") => self.schema = Some(given(value)?),
                (ServerKind::Postgres, "sslrootcert") => self.root_cert = Some(given(value)?.into()),
                (ServerKind::Postgres, "sslmode") => {
                    self.ssl = SslMode::parse(&value).ok_or_else(|| {
                        CliError::usage(format!(
                            "{}: sslmode={value} is not one of disable, allow, prefer, require, verify-ca, verify-full",
                            self.shown
                        ))
                    })?;
                    ssl_given = true;
                }
                (ServerKind::Redis, "prefix") => self.prefix = Some(given(value)?),
                _ => kept.push(pair.to_owned()),
            }
        }
        // libpq: a root certificate given makes `require` check the chain (`verify-ca`).
        if self.ssl == SslMode::Require && self.root_cert.is_some() {
            self.ssl = SslMode::VerifyCa;
        }
        if ssl_given {
            kept.push(format!("sslmode={}", self.ssl.driver()));
        }
        Ok(if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) })
    }

    /// The PostgreSQL schema the URL names (`schema=`), if it names one.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The Redis key prefix the URL names (`prefix=`), if it names one.
    pub fn key_prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    /// The TLS the URL asks for (`sslmode=`, PostgreSQL).
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl
    }

    /// The roots certificates are checked against (`sslrootcert=`, PostgreSQL), when given.
    pub fn root_cert(&self) -> Option<&Path> {
        self.root_cert.as_deref()
    }

    /// The URL to connect with, credentials included: for the driver only, never for a message.
    pub fn connect_url(&self) -> &str {
        &self.url
    }

    /// The session's name, or the backend's default session.
    pub fn session(&self) -> &str {
        match (&self.name, self.kind) {
            (Some(name), _) => name,
            (None, ServerKind::Postgres) => session_postgres::DEFAULT_SESSION,
            (None, ServerKind::Redis) => session_redis::DEFAULT_SESSION,
        }
    }

    /// The server's URL as messages show it (passwords replaced by `***`, no `#NAME`).
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    /// The passwords the URL carries, to scrub from messages.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }
}

impl fmt::Display for ServerSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.shown, self.session())
    }
}

impl fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSession")
            .field("kind", &self.kind)
            .field("url", &self.shown)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The passwords of every PostgreSQL or Redis URL anywhere in `arg` (`--json=postgres://...`
/// included, which a command-line parser may quote back in an error).
pub fn secrets_in(arg: &str) -> Vec<String> {
    let lower = arg.to_ascii_lowercase();
    let mut out = Vec::new();
    for (scheme, _) in SERVER_SCHEMES {
        for (at, _) in lower.match_indices(scheme) {
            // Whatever else is wrong with the URL (a bad parameter), its password is found.
            let (url, _) = split_name(&arg[at..]);
            out.extend(redact_server_url(url).1);
        }
    }
    out
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// Splits `URL#NAME`. The `#` that starts the name is the first one after the user info (after
/// the last `@`), so that a password holding a raw `#` is never taken for a name (and printed).
fn split_name(arg: &str) -> (&str, Option<&str>) {
    let start = arg.find("://").map_or(0, |i| i + 3);
    let after_userinfo = arg[start..].rfind('@').map_or(start, |i| start + i + 1);
    match arg[after_userinfo..].find('#') {
        Some(i) => (&arg[..after_userinfo + i], Some(&arg[after_userinfo + i + 1..])),
        None => (arg, None),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn secret_param(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "password", "passwd", "pwd", "token", "secret", "sslpassword", "auth"].iter().any(|k| key.contains(k))
}

/// A server URL with every password replaced by `***` (the user info's password, or the whole
/// user info when it has no `:`, and query parameters such as `password=` or `pass=`), and the
/// passwords it held (as written and percent-decoded).
pub fn redact_server_url(url: &str) -> (String, Vec<String>) {
    let mut secrets = Vec::new();
    let mut keep = |s: &str| {
        if !s.is_empty() {
            for v in [s.to_owned(), percent_decode(s)] {
                if !secrets.contains(&v) {
                    secrets.push(v);
                }
            }
        }
    };
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    // The user info ends at the last `@` (a raw `@`, `/` or `?` in a password stays hidden).
    let (userinfo, hostpart) = match rest.rfind('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let mut shown = String::with_capacity(url.len());
    if !scheme.is_empty() {
        shown.push_str(scheme);
        shown.push_str("://");
    }
    if let Some(userinfo) = userinfo {
        match userinfo.split_once(':') {
            Some((user, password)) => {
                keep(password);
                shown.push_str(user);
                shown.push_str(":***@");
            }
            None => {
                // `redis://secret@host`: Redis clients read a lone user info as the password.
                keep(userinfo);
                shown.push_str("***@");
            }
        }
    }
    match hostpart.split_once('?') {
        Some((before, query)) => {
            shown.push_str(before);
            shown.push('?');
            let parts: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) if secret_param(k) => {
                        keep(v);
                        format!("{k}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            shown.push_str(&parts.join("&"));
        }
        None => shown.push_str(hostpart),
    }
    (shown, secrets)
}

/// Pieces of this many characters or more are looked at (15 bytes of base64).
const SECRET_RUN: usize = 20;

fn base64_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "+=_-".contains(c)
}

fn class(c: char) -> u8 {
    if c.is_ascii_lowercase() {
        0
    } else if c.is_ascii_uppercase() {
        1
    } else if c.is_ascii_digit() {
        2
    } else {
        3
    }
}

/// True when `text` holds a run of base64 characters long enough to be (part of) a string
/// session, a key or a token: at least [`SECRET_RUN`] characters in which the kind of character
/// (lowercase, uppercase, digit) changes between neighbours at least 45 times in 100. Random
/// base64 changes about 62 times in 100; words joined into a file name
/// (`MyTelegramBotSessionBackup2024`: 33) change far less.
pub fn secret_like(text: &str) -> bool {
    text.split(|c: char| !base64_char(c)).any(|piece| {
        let chars: Vec<char> = piece.chars().collect();
        if chars.len() < SECRET_RUN {
            return false;
        }
        let pairs: Vec<(u8, u8)> =
            chars.windows(2).map(|w| (class(w[0]), class(w[1]))).filter(|(a, b)| *a != 3 && *b != 3).collect();
        let changes = pairs.iter().filter(|(a, b)| a != b).count();
        pairs.len() + 1 >= SECRET_RUN && changes * 20 >= pairs.len() * 9
    })
}

/// An argument as messages may show it: whole, unless it looks like a secret (a string session
/// given where a path was expected, a mistyped prefix), which is never echoed.
pub fn shown_arg(text: &str) -> String {
    if secret_like(text) {
        format!("<an argument of {} characters that looks like a session string or token (not shown)>", text.len())
    } else {
        text.to_owned()
    }
}

/// A path as messages show it (see [`shown_arg`]).
pub fn shown_path(path: &Path) -> String {
    shown_arg(&path.display().to_string())
}

/// Every secret-looking word of a message replaced (the last guard before anything is printed
/// on stderr: whatever a library put into an error, no key, token or string gets out).
pub fn redact_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if secret_like(word) {
            out.push_str("<hidden>");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() || "\"'`()[]{}<>,;".contains(c) {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn is_remote(s: &str) -> bool {
    ["libsql://", "libsql+http://", "libsql+https://"].iter().any(|p| s.starts_with(p))
}

/// The URL `LibSqlBackend::open_remote` takes: `libsql+http://` and `libsql+https://` become
/// `http://` and `https://`; `libsql://` (HTTPS) stays.
pub fn remote_url(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("libsql+http://") {
        format!("http://{rest}")
    } else if let Some(rest) = url.strip_prefix("libsql+https://") {
        format!("https://{rest}")
    } else {
        url.to_owned()
    }
}

/// A URL without any credentials it carries (`user:pass@`, `?authToken=`).
pub fn redact_url(url: &str) -> String {
    let no_query = url.split('?').next().unwrap_or(url);
    match no_query.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => no_query.to_owned(),
        },
        None => no_query.to_owned(),
    }
}

/// Refuses a libSQL URL that carries a password or token: they belong in the token (`--token`,
/// `--token-file`, `LAYER_SESSION_LIBSQL_TOKEN`), and the message shows the URL without them.
fn no_credentials(url: &str) -> CliResult<()> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.contains('@') || url.contains('?') {
        return Err(CliError::usage(format!(
            "{}: credentials belong in the token (--token-file, LAYER_SESSION_LIBSQL_TOKEN or --token), not in the URL",
            redact_url(url)
        )));
    }
    Ok(())
}

fn split_prefix(s: &str) -> Option<(Family, &str)> {
    PREFIXES.iter().find_map(|(p, f)| s.strip_prefix(p).map(|rest| (*f, rest)))
}

/// Parses a source argument.
pub fn parse_source(arg: &str) -> CliResult<Source> {
    if arg.is_empty() {
        return Err(CliError::usage("the source is empty"));
    }
    if is_remote(arg) {
        no_credentials(arg)?;
        return Ok(Source::Remote { url: arg.to_owned() });
    }
    if let Some(server) = ServerSession::parse(arg) {
        return Ok(Source::Server(server?));
    }
    if arg == "-" {
        return Ok(Source::Stdin { family: None });
    }
    let Some((family, rest)) = split_prefix(arg) else {
        return Ok(Source::Path { path: PathBuf::from(arg), family: None });
    };
    if rest.is_empty() {
        return Err(CliError::usage(format!("`{arg}`: a path or string must follow the prefix")));
    }
    if rest == "-" {
        return Ok(Source::Stdin { family: Some(family) });
    }
    if family == Family::String {
        return Ok(Source::Literal { text: rest.to_owned(), family });
    }
    let string_family = matches!(
        family,
        Family::Telethon
            | Family::Pyrogram
            | Family::Pyrofork
            | Family::Kurigram
            | Family::Gramjs
            | Family::Mtcute
            | Family::Layer
            | Family::Ferogram
    );
    if string_family && !Path::new(rest).exists() && looks_like_string(rest) {
        return Ok(Source::Literal { text: rest.to_owned(), family });
    }
    Ok(Source::Path { path: PathBuf::from(rest), family: Some(family) })
}

/// True when `s` could be a string session: base64 of either alphabet (with our `L1.` /
/// `Lc1.` prefixes), at least 100 characters (every format holds a 256-byte key, so the
/// shortest is about 350), and not ending like a file name.
pub fn looks_like_string(s: &str) -> bool {
    let t = s.trim();
    let file_like = Path::new(t).extension().is_some_and(|e| e.len() <= 8);
    t.len() >= 100 && !file_like && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/-_=.".contains(&b))
}

/// How a string destination is delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StringOut {
    /// Printed on standard output.
    Stdout,
    /// Written into a text file.
    File(PathBuf),
}

/// Where a session is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    /// Our log file.
    File(PathBuf),
    /// Our SQLite database.
    Sqlite(PathBuf),
    /// A local libSQL database.
    Libsql(PathBuf),
    /// A remote libSQL database.
    Remote(String),
    /// A named session in a PostgreSQL database or on a Redis server.
    Server(ServerSession),
    /// A layer-client v3 or ferogram v8 binary file.
    Legacy(PathBuf, LegacyFormat),
    /// Another library's SQLite file.
    ForeignSqlite(PathBuf, ForeignFormat),
    /// A GramJS StoreSession folder.
    GramjsStore(PathBuf),
    /// A string session.
    String(StringFormat, StringOut),
}

impl Dest {
    /// The path the destination occupies, if it is a local one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Dest::File(p)
            | Dest::Sqlite(p)
            | Dest::Libsql(p)
            | Dest::Legacy(p, _)
            | Dest::ForeignSqlite(p, _)
            | Dest::GramjsStore(p)
            | Dest::String(_, StringOut::File(p)) => Some(p),
            Dest::Remote(_) | Dest::Server(_) | Dest::String(_, StringOut::Stdout) => None,
        }
    }
}

impl fmt::Display for Dest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dest::Remote(url) => f.write_str(&redact_url(url)),
            Dest::Server(server) => fmt::Display::fmt(server, f),
            Dest::String(_, StringOut::Stdout) => f.write_str("<stdout>"),
            other => match other.path() {
                Some(p) => f.write_str(&shown_path(p)),
                None => f.write_str("<destination>"),
            },
        }
    }
}

fn wants_string(rest: &str) -> Option<StringOut> {
    if rest.is_empty() || rest == "-" {
        Some(StringOut::Stdout)
    } else if Path::new(rest).extension().is_some_and(|e| e == "txt") {
        Some(StringOut::File(PathBuf::from(rest)))
    } else {
        None
    }
}

/// Parses a destination argument (see the crate docs for the table).
pub fn parse_dest(arg: &str) -> CliResult<Dest> {
    if arg.is_empty() {
        return Err(CliError::usage("the destination is empty"));
    }
    if is_remote(arg) {
        no_credentials(arg)?;
        return Ok(Dest::Remote(arg.to_owned()));
    }
    if let Some(server) = ServerSession::parse(arg) {
        return Ok(Dest::Server(server?));
    }
    let Some((family, rest)) = split_prefix(arg) else {
        if let Some(out) = wants_string(arg) {
            return Ok(Dest::String(StringFormat::Full, out));
        }
        let path = PathBuf::from(arg);
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        return Ok(match ext.as_str() {
            "db" | "sqlite" | "sqlite3" => Dest::Sqlite(path),
            _ => Dest::File(path),
        });
    };
    let string = wants_string(rest);
    let path = PathBuf::from(rest);
    let need_path = |what: &str| CliError::usage(format!("`{arg}`: {what} needs a path after the prefix"));
    Ok(match family {
        Family::File => Dest::File(if rest.is_empty() { return Err(need_path("file:")) } else { path }),
        Family::Sqlite => Dest::Sqlite(if rest.is_empty() { return Err(need_path("sqlite:")) } else { path }),
        Family::Libsql => Dest::Libsql(if rest.is_empty() { return Err(need_path("libsql:")) } else { path }),
        Family::String => match string {
            Some(out) => Dest::String(StringFormat::Full, out),
            None => Dest::String(StringFormat::Full, StringOut::File(path)),
        },
        Family::Telethon => match string {
            Some(out) => Dest::String(StringFormat::Telethon, out),
            None => Dest::ForeignSqlite(path, ForeignFormat::Telethon),
        },
        Family::Pyrogram => match string {
            Some(out) => Dest::String(StringFormat::Pyrogram, out),
            None => Dest::ForeignSqlite(path, ForeignFormat::Pyrogram),
        },
        Family::Pyrofork => match string {
            Some(out) => Dest::String(StringFormat::Pyrogram, out),
            None => Dest::ForeignSqlite(path, ForeignFormat::Pyrofork),
        },
        Family::Kurigram => match string {
            Some(out) => Dest::String(StringFormat::Pyrogram, out),
            None => Dest::ForeignSqlite(path, ForeignFormat::Kurigram),
        },
        Family::Gramjs => match string {
            Some(out) => Dest::String(StringFormat::GramJs, out),
            None => Dest::GramjsStore(path),
        },
        Family::Mtcute => match string {
            Some(out) => Dest::String(StringFormat::MtcuteV3, out),
            None => {
                return Err(CliError::usage(format!(
                    "`{}`: mtcute's SQLite storage is read, not written; write an mtcute string with `mtcute:-` or `mtcute:FILE.txt`",
                    shown_arg(arg)
                )))
            }
        },
        Family::Layer => match string {
            Some(out) => Dest::String(StringFormat::LayerClient, out),
            None => Dest::Legacy(path, LegacyFormat::LayerV3),
        },
        Family::Ferogram => match string {
            Some(out) => Dest::String(StringFormat::Ferogram, out),
            None => Dest::Legacy(path, LegacyFormat::FerogramV8),
        },
    })
}

/// The destination for one file of a batch conversion into the folder `dir`, whose argument
/// was `arg` (its prefix decides the format), for a source file whose name without extension
/// is `stem`.
pub fn batch_dest(arg: &str, dir: &Path, stem: &str) -> CliResult<Dest> {
    let family = split_prefix(arg).map(|(f, _)| f);
    let (ext, prefix) = match family {
        None | Some(Family::File) => ("session", "file:"),
        Some(Family::Sqlite) => ("db", "sqlite:"),
        Some(Family::Libsql) => ("db", "libsql:"),
        Some(Family::String) => ("txt", "string:"),
        Some(Family::Mtcute) => ("txt", "mtcute:"),
        Some(Family::Gramjs) => ("", "gramjs:"),
        Some(f) => ("session", f.prefix()),
    };
    let name = if ext.is_empty() { stem.to_owned() } else { format!("{stem}.{ext}") };
    let path = dir.join(name);
    let Some(path) = path.to_str() else {
        return Err(CliError::usage(format!("{}: the path is not valid UTF-8", shown_path(&path))));
    };
    parse_dest(&format!("{prefix}{path}"))
}

/// The folder a batch destination argument names (its prefix stripped).
pub fn batch_dir(arg: &str) -> PathBuf {
    PathBuf::from(split_prefix(arg).map_or(arg, |(_, rest)| rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_by_prefix() {
        assert_eq!(parse_source("-"), Ok(Source::Stdin { family: None }));
        assert_eq!(parse_source("string:-"), Ok(Source::Stdin { family: Some(Family::String) }));
        assert_eq!(parse_source("string:1AAAA"), Ok(Source::Literal { text: "1AAAA".into(), family: Family::String }));
        assert_eq!(
            parse_source("telethon:/no/such/file.session"),
            Ok(Source::Path { path: "/no/such/file.session".into(), family: Some(Family::Telethon) })
        );
        let s = "1".to_owned() + &"A".repeat(360);
        assert_eq!(parse_source(&format!("telethon:{s}")), Ok(Source::Literal { text: s, family: Family::Telethon }));
        assert_eq!(parse_source("a.session"), Ok(Source::Path { path: "a.session".into(), family: None }));
        assert!(matches!(parse_source("libsql+http://127.0.0.1:8080"), Ok(Source::Remote { .. })));
        assert_eq!(parse_source("sqlite:").map_err(|e| e.code), Err(crate::error::EXIT_USAGE));
    }

    #[test]
    fn destinations_by_prefix_and_extension() {
        assert_eq!(parse_dest("out.db"), Ok(Dest::Sqlite("out.db".into())));
        assert_eq!(parse_dest("out.session"), Ok(Dest::File("out.session".into())));
        assert_eq!(parse_dest("-"), Ok(Dest::String(StringFormat::Full, StringOut::Stdout)));
        assert_eq!(parse_dest("out.txt"), Ok(Dest::String(StringFormat::Full, StringOut::File("out.txt".into()))));
        assert_eq!(
            parse_dest("telethon:t.session"),
            Ok(Dest::ForeignSqlite("t.session".into(), ForeignFormat::Telethon))
        );
        assert_eq!(parse_dest("telethon:-"), Ok(Dest::String(StringFormat::Telethon, StringOut::Stdout)));
        assert_eq!(parse_dest("gramjs:store"), Ok(Dest::GramjsStore("store".into())));
        assert_eq!(parse_dest("layer:l.session"), Ok(Dest::Legacy("l.session".into(), LegacyFormat::LayerV3)));
        assert_eq!(parse_dest("ferogram:-"), Ok(Dest::String(StringFormat::Ferogram, StringOut::Stdout)));
        assert_eq!(parse_dest("mtcute:m.session").map_err(|e| e.code), Err(crate::error::EXIT_USAGE));
        assert_eq!(batch_dest("sqlite:out", Path::new("out"), "a"), Ok(Dest::Sqlite(Path::new("out").join("a.db"))));
        assert_eq!(batch_dest("out", Path::new("out"), "a"), Ok(Dest::File(Path::new("out").join("a.session"))));
    }

    #[test]
    fn secrets_are_told_from_file_names() {
        let string = "1ApWapzMBu3bSi7ql45c-gjKgzADNVvpadQaqy_9ZsuaYZb0pySscL1J3ILWM-3q_9-4pVWu0CSFA8gc5Sc";
        assert!(secret_like(string));
        assert!(secret_like(&format!("telethn:{string}")));
        assert!(secret_like("eyJhbGciOiJFZERTQSJ9.eyJpYXQiOjE3MDAwMDAwMDAsImlkIjoic2VjcmV0In0.sig"));
        for name in [
            "my_session_2024_Backup_File.session",
            "/home/user/Bots/Sessions/Main-Bot-2.session",
            "a.db",
            "MyTelegramBotSessionBackup2024.session",
            "/tmp/.tmpAb3dEf/ferogram-v8-dev.session",
            "550e8400-e29b-41d4-a716-446655440000.session",
        ] {
            assert!(!secret_like(name), "{name}");
            assert_eq!(shown_arg(name), name);
        }
        assert!(!redact_message(&format!("error: x: {string}")).contains("gjKgzADNVvpadQaqy"));
    }

    #[test]
    fn server_urls_name_a_session_and_never_show_their_password() {
        let pw = "Pw-9c1e-distinctive";
        let Ok(Source::Server(pg)) =
            parse_source(&format!("postgres://bot:{pw}@db.example:5432/app?sslmode=prefer#my%20bot"))
        else {
            panic!("a postgres:// source")
        };
        assert_eq!(pg.kind, ServerKind::Postgres);
        assert_eq!(pg.session(), "my bot");
        assert_eq!(pg.connect_url(), format!("postgres://bot:{pw}@db.example:5432/app?sslmode=prefer"));
        assert_eq!(pg.to_string(), "postgres://bot:***@db.example:5432/app?sslmode=prefer#my bot");
        for text in [format!("{pg:?}"), format!("{:?}", parse_dest(&format!("postgresql://u:{pw}@h/db")))] {
            assert!(!text.contains(pw), "{text}");
        }
        // A raw `#` in the password is not a name; the password stays hidden.
        let Ok(Dest::Server(raw)) = parse_dest(&format!("redis://:{pw}#x@127.0.0.1:6379/0#s1")) else {
            panic!("a redis:// destination")
        };
        assert_eq!((raw.kind, raw.session()), (ServerKind::Redis, "s1"));
        assert!(!raw.to_string().contains(pw), "{raw}");
        let Ok(Source::Server(q)) = parse_source(&format!("redis+unix:///run/redis.sock?pass={pw}")) else {
            panic!("a redis+unix:// source")
        };
        assert_eq!(q.session(), "default");
        assert_eq!(q.to_string(), "redis+unix:///run/redis.sock?pass=***#default");
        assert_eq!(secrets_in(&format!("--json=POSTGRES://u:{pw}@h/db")), [pw]);
        let Ok(Source::Server(lone)) = parse_source(&format!("rediss://{pw}@h")) else { panic!("rediss://") };
        assert_eq!(lone.to_string(), "rediss://***@h#default");
        assert!(lone.secrets().iter().any(|s| s == pw));
        assert_eq!(parse_source("postgres://h/db#").map_err(|e| e.code), Err(crate::error::EXIT_USAGE));
    }

    #[test]
    fn our_url_parameters_are_taken_out_for_the_driver() {
        let pw = "Pw-41ab-distinctive";
        let Ok(Source::Server(pg)) = parse_source(&format!(
            "postgres://u:{pw}@db.example/app?connect_timeout=3&schema=bots&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem#b1"
        )) else {
            panic!("a postgres:// source")
        };
        assert_eq!(pg.connect_url(), format!("postgres://u:{pw}@db.example/app?connect_timeout=3&sslmode=require"));
        assert_eq!((pg.schema(), pg.ssl_mode(), pg.session()), (Some("bots"), SslMode::VerifyFull, "b1"));
        assert_eq!(pg.root_cert(), Some(Path::new("/etc/ca.pem")));
        assert!(!pg.to_string().contains(pw), "{pg}");
        // libpq: `require` with a root certificate checks the chain.
        let Ok(Source::Server(req)) = parse_source("postgres://h/db?sslmode=require&sslrootcert=ca.pem") else {
            panic!("a postgres:// source")
        };
        assert_eq!((req.ssl_mode(), req.connect_url()), (SslMode::VerifyCa, "postgres://h/db?sslmode=require"));
        let Ok(Source::Server(plain)) = parse_source("postgres://h/db") else { panic!("a postgres:// source") };
        assert_eq!(
            (plain.ssl_mode(), plain.schema(), plain.connect_url()),
            (SslMode::Disable, None, "postgres://h/db")
        );
        let Ok(Dest::Server(rd)) = parse_dest(&format!("rediss://:{pw}@cache:6380/0?prefix=bots%3A#r")) else {
            panic!("a rediss:// destination")
        };
        assert_eq!(
            (rd.key_prefix(), rd.connect_url()),
            (Some("bots:"), format!("rediss://:{pw}@cache:6380/0").as_str())
        );
        // A `prefix=` is PostgreSQL's own business (passed on), `schema=` Redis's.
        let Ok(Source::Server(other)) = parse_source("redis://h?schema=x") else { panic!("a redis:// source") };
        assert_eq!((other.key_prefix(), other.connect_url()), (None, "redis://h?schema=x"));
        for bad in ["postgres://h/db?sslmode=sometimes", "postgres://h/db?schema=", "redis://h?prefix="] {
            assert_eq!(parse_source(bad).map_err(|e| e.code), Err(crate::error::EXIT_USAGE), "{bad}");
        }
        // The password is found even in a URL whose parameters are wrong.
        assert_eq!(secrets_in(&format!("postgres://u:{pw}@h/db?sslmode=bad")), [pw]);
    }

    #[test]
    fn urls_lose_their_credentials_and_prefixes() {
        assert_eq!(redact_url("libsql://user:secret@db.example.com?authToken=x"), "libsql://***@db.example.com");
        assert_eq!(remote_url("libsql+http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(remote_url("libsql+https://h"), "https://h");
        assert_eq!(remote_url("libsql://h"), "libsql://h");
    }
}
