//! Reading a source: detect its format and load it, never taking an owner lock and never
//! writing to it.

use std::io::Read;
use std::path::Path;

use session_core::{Keyring, SessionData, SessionError};
use session_file::StoredFormat;
use session_interop::binary::{self as legacy, LegacyFormat};
use session_interop::ForeignFormat;
use session_interop::StringFormat;
use session_sqlite::foreign;
use session_sqlite::read_only::{self, ReadOnly};

use crate::blocking;
use crate::error::{CliError, CliResult};
use crate::format::Format;
use crate::gramjs_store;
use crate::guard;
use crate::location::{shown_path, Family, ServerKind, ServerSession, Source};
use crate::server;

/// A session read from a source.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The session.
    pub data: SessionData,
    /// The format it was in.
    pub format: Format,
    /// Problems that did not stop the read (a torn, unacknowledged last record).
    pub warnings: Vec<String>,
    /// Remarks that are not problems (torn tails an owner already cut and kept).
    pub notes: Vec<String>,
    /// Informational values the importer could not keep and dropped (a Pyrogram-family api_id
    /// above `i32::MAX`): shown by `inspect` and `convert` as warnings, a note for `verify` (the
    /// session itself is whole).
    pub dropped: Vec<String>,
    /// The layout version read from the source itself (our SQLite schema version), which wins
    /// over the format's own.
    pub version: Option<u32>,
    /// The source is sealed (encrypted at rest) and was opened with the key given.
    pub sealed: bool,
}

impl Loaded {
    /// Everything `inspect` and `convert` show as a warning: problems, then dropped values.
    pub fn shown_warnings(&self) -> impl Iterator<Item = &String> {
        self.warnings.iter().chain(&self.dropped)
    }

    fn new(data: SessionData, format: Format) -> Self {
        Self {
            data,
            format,
            warnings: Vec::new(),
            notes: Vec::new(),
            dropped: Vec::new(),
            version: None,
            sealed: false,
        }
    }

    /// The layout version of what was read.
    pub fn version(&self) -> Option<u32> {
        self.version.or(self.format.version())
    }
}

/// The largest string session read (a file or standard input): strings hold one DC and no
/// peers, a few KiB at most.
pub const STRING_LIMIT: u64 = 1 << 20;
/// The largest session file (our log, layer/ferogram files) read: a million cached peers take
/// well under a tenth of this.
pub const FILE_LIMIT: u64 = 1 << 30;
/// The largest SQLite session file read.
pub const SQLITE_LIMIT: u64 = 4 << 30;

/// Options for reading.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Token for remote libSQL databases.
    pub token: Option<String>,
    /// Run the storage's own full integrity check where it has one (SQLite `integrity_check`).
    pub integrity_check: bool,
    /// The api_id to record when the source has none (Pyrogram formats require one).
    pub api_id: Option<i32>,
    /// The key sealed sources are opened with (`LAYER_SESSION_KEY` or `--key-file`). Without
    /// one a sealed source is refused, saying a key is needed.
    pub keys: Option<Keyring>,
}

/// Reads `source`.
pub async fn read(source: &Source, options: &ReadOptions) -> CliResult<Loaded> {
    let shown = source.to_string();
    let loaded = match source {
        Source::Literal { text, family } => {
            import_string_with(text, Some(*family), options.keys.as_ref()).map_err(|e| CliError::source(&shown, e))?
        }
        Source::Stdin { family } => {
            let family = *family;
            let text = blocking(move || {
                let bytes = guard::read_bounded(&mut std::io::stdin().lock(), STRING_LIMIT, "<stdin>")?;
                String::from_utf8(bytes).map_err(|_| CliError::source("<stdin>", "is not text (a string session is)"))
            })
            .await?;
            import_string_with(&text, family, options.keys.as_ref()).map_err(|e| CliError::source(&shown, e))?
        }
        Source::Path { path, family } => {
            let path = path.clone();
            let family = *family;
            let check = options.integrity_check;
            let keys = options.keys.clone();
            blocking(move || read_path(&path, family, check, keys.as_ref())).await?
        }
        Source::Remote { url } => {
            let token = options.token.as_deref().unwrap_or("");
            let url = crate::location::remote_url(url);
            let remote = session_libsql::RemoteOptions::default().timeout(server::call_timeout()?);
            // Reading takes no lease: a running owner is left alone, and nothing is written.
            let snapshot = session_libsql::LibSqlBackend::read_remote(&url, token, &remote, options.keys.as_ref())
                .await
                .map_err(|e| crate::keys::source_error(&shown, &e))?
                .ok_or_else(|| CliError::source(&shown, "the database holds no session"))?;
            let mut loaded = Loaded::new(snapshot.data, Format::LibsqlRemote);
            loaded.sealed = snapshot.sealed_with.is_some();
            loaded
        }
        Source::Server(server) => read_server(server, &shown, options.keys.as_ref()).await?,
    };
    let mut loaded = loaded;
    if loaded.data.api_id.is_none() {
        loaded.data.api_id = options.api_id;
    }
    Ok(loaded)
}

/// Reads a PostgreSQL or Redis session without its lease (see `server::read`).
async fn read_server(server: &ServerSession, shown: &str, keys: Option<&Keyring>) -> CliResult<Loaded> {
    let describe = |e: &SessionError| CliError::source(shown, server::describe(server, e, server::Purpose::Read));
    let (data, sealed_with) = server::read(server, keys)
        .await?
        .map_err(|e| describe(&e))?
        .ok_or_else(|| CliError::source(shown, format!("holds no session named {:?}", server.session())))?;
    let format = match server.kind {
        ServerKind::Postgres => Format::Postgres,
        ServerKind::Redis => Format::Redis,
    };
    let mut loaded = Loaded::new(data, format);
    loaded.sealed = sealed_with.is_some();
    Ok(loaded)
}

fn family_matches(family: Option<Family>, format: Format) -> bool {
    let Some(family) = family else { return true };
    match (family, format) {
        (Family::File, Format::File | Format::Legacy(_)) => true,
        (Family::Sqlite, Format::Sqlite | Format::ForeignSqlite(_)) => true,
        (Family::Libsql, Format::Sqlite | Format::LibsqlLocal) => true,
        (Family::String, Format::String(_) | Format::NativeString(_)) => true,
        (Family::Telethon, Format::String(StringFormat::Telethon) | Format::ForeignSqlite(ForeignFormat::Telethon)) => {
            true
        }
        (
            Family::Pyrogram | Family::Pyrofork | Family::Kurigram,
            Format::String(StringFormat::Pyrogram | StringFormat::PyrogramLegacy | StringFormat::PyrogramLegacyU32),
        ) => true,
        (Family::Pyrogram, Format::ForeignSqlite(ForeignFormat::Pyrogram)) => true,
        (Family::Pyrofork, Format::ForeignSqlite(ForeignFormat::Pyrofork)) => true,
        (Family::Kurigram, Format::ForeignSqlite(ForeignFormat::Kurigram)) => true,
        (Family::Gramjs, Format::String(StringFormat::GramJs) | Format::GramjsStore) => true,
        (Family::Mtcute, Format::String(StringFormat::MtcuteV3) | Format::ForeignSqlite(ForeignFormat::Mtcute)) => true,
        (Family::Layer, Format::Legacy(f) | Format::NativeString(f)) => f.version() <= 3,
        (Family::Ferogram, Format::Legacy(_) | Format::NativeString(_)) => true,
        (Family::Ferogram, Format::String(StringFormat::FerogramCompactV1 | StringFormat::FerogramCompactV2)) => true,
        _ => false,
    }
}

fn check_family(what: &str, family: Option<Family>, loaded: Loaded) -> CliResult<Loaded> {
    if family_matches(family, loaded.format) {
        Ok(loaded)
    } else {
        let prefix = family.map_or("", Family::prefix);
        Err(CliError::source(what, format!("is a {}, not what the `{prefix}` prefix names", loaded.format)))
    }
}

/// Reads a string session of any supported format.
pub fn import_string(text: &str, family: Option<Family>) -> CliResult<Loaded> {
    import_string_with(text, family, None)
}

/// [`import_string`] with the key a sealed string (`Le1.`) is opened with.
pub fn import_string_with(text: &str, family: Option<Family>, keys: Option<&Keyring>) -> CliResult<Loaded> {
    if session_string::is_sealed(text) {
        let decoded = match keys {
            Some(keys) => session_string::decode_sealed(text, keys),
            None => session_string::decode(text),
        };
        let data = decoded.map_err(|e| crate::keys::source_error("string session", &e))?;
        let mut loaded = Loaded::new(data, Format::String(StringFormat::Full));
        loaded.sealed = true;
        return check_family("string session", family, loaded);
    }
    let imported =
        session_string::foreign::import_with_warnings(text).map_err(|e| CliError::source("string session", e))?;
    let format = match imported.format {
        StringFormat::LayerClient | StringFormat::Ferogram => {
            native_version(text).map_or(Format::String(imported.format), Format::NativeString)
        }
        f => Format::String(f),
    };
    // Values the importer dropped (a Pyrogram api_id above i32::MAX) are shown, never silent.
    let mut loaded = Loaded::new(imported.session, format);
    loaded.dropped = imported.warnings;
    check_family("string session", family, loaded)
}

fn native_version(text: &str) -> Option<LegacyFormat> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine;
    let engine = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let bytes = engine.decode(text.trim()).ok()?;
    legacy::decode(&bytes).ok().map(|l| l.format)
}

/// Refuses what is not a regular file or a folder (a FIFO, a device, a socket): reading one
/// would block forever or never end.
fn kind_check(path: &Path, meta: &std::fs::Metadata) -> CliResult<()> {
    let ft = meta.file_type();
    if ft.is_file() || ft.is_dir() {
        return Ok(());
    }
    let what = kind_name(&ft);
    Err(CliError::source(shown_path(path), format!("is {what}, not a session file; refusing to read it")))
}

fn kind_name(ft: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    let _ = ft;
    "not a regular file"
}

fn too_large(path: &Path, len: u64, limit: u64, what: &str) -> CliResult<()> {
    if len > limit {
        return Err(CliError::source(
            shown_path(path),
            format!("is {len} bytes, larger than any {what} ({} at most); refusing to read it", guard::size(limit)),
        ));
    }
    Ok(())
}

fn read_path(path: &Path, family: Option<Family>, integrity_check: bool, keys: Option<&Keyring>) -> CliResult<Loaded> {
    let shown = shown_path(path);
    let meta = std::fs::metadata(path).map_err(|e| CliError::source(&shown, e))?;
    kind_check(path, &meta)?;
    if meta.is_dir() {
        if !gramjs_store::is_store(path) {
            return Err(CliError::source(
                &shown,
                "is a folder but not a GramJS StoreSession (to convert every session in a folder, give a destination folder)",
            ));
        }
        let data = gramjs_store::import(path).map_err(|e| CliError::source(&shown, e))?;
        return check_family(&shown, family, Loaded::new(data, Format::GramjsStore));
    }
    // Non-blocking: a FIFO swapped in after the look above opens at once instead of waiting
    // for a writer, and the look at what was opened refuses it.
    let mut file = session_core::fs::open_nonblocking(path, false).map_err(|e| CliError::source(&shown, e))?;
    let meta = file.metadata().map_err(|e| CliError::source(&shown, e))?;
    kind_check(path, &meta)?;
    if meta.is_dir() {
        return Err(CliError::source(&shown, "changed into a folder while it was read"));
    }
    let mut head = [0u8; 16];
    let n = read_up_to(&mut file, &mut head).map_err(|e| CliError::source(&shown, e))?;
    if head[..n].starts_with(read_only::SQLITE_HEADER) {
        too_large(path, meta.len(), SQLITE_LIMIT, "SQLite session")?;
        drop(file);
        let loaded = read_sqlite(path, family, integrity_check, keys)?;
        return check_family(&shown, family, loaded);
    }
    too_large(path, meta.len(), FILE_LIMIT, "session file")?;
    if meta.len() <= STRING_LIMIT {
        let mut bytes = head[..n].to_vec();
        let rest = guard::read_bounded(&mut file, STRING_LIMIT, &shown)?;
        bytes.extend_from_slice(&rest);
        let text_like = String::from_utf8(bytes).ok().filter(|s| crate::location::looks_like_string(s));
        if let Some(text) = text_like {
            let loaded = import_string_with(&text, family, keys).map_err(|e| CliError::source(&shown, e.message))?;
            return Ok(loaded);
        }
    }
    drop(file);
    let snapshot = match keys {
        Some(keys) => session_file::read_snapshot_with_key(path, keys),
        None => session_file::read_snapshot(path),
    }
    .map_err(|e| crate::keys::source_error(&shown, &e))?;
    let Some(snapshot) = snapshot else {
        return Err(CliError::source(&shown, "the file is empty: it holds no session"));
    };
    let format = match snapshot.format {
        StoredFormat::Legacy(f) => Format::Legacy(f),
        _ => Format::File,
    };
    let mut loaded = Loaded::new(snapshot.data, format);
    loaded.sealed = snapshot.sealed_with.is_some();
    if let Some(at) = snapshot.torn_at {
        let what = snapshot
            .torn
            .map(|(len, kind)| format!("{len} bytes, {}", kind.describe()))
            .unwrap_or_else(|| "its length unknown".to_owned());
        // The torn record lies beyond the owner's high-water mark (or no mark survives): it was
        // never acknowledged. Damage below the mark is refused as corrupt by read_snapshot.
        let acknowledged = match snapshot.acknowledged_len {
            Some(mark) => format!("the owner acknowledged the log up to byte {mark}"),
            None => "no high-water mark survives for this file".to_owned(),
        };
        loaded.warnings.push(format!(
            "a torn last record starts at byte {at} ({what}; {acknowledged}, so it was never \
             acknowledged); the owner keeps a copy of it and cuts it on its next open"
        ));
    }
    for copy in &snapshot.torn_copies {
        loaded.notes.push(format!("an earlier torn tail of this file was cut and kept at {}", shown_path(copy)));
    }
    check_family(&shown, family, loaded)
}

fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn read_sqlite(
    path: &Path,
    family: Option<Family>,
    integrity_check: bool,
    keys: Option<&Keyring>,
) -> CliResult<Loaded> {
    let shown = shown_path(path);
    let source_err = |e: SessionError| CliError::source(&shown, e);
    let mut db = ReadOnly::open(path).map_err(source_err)?.with_name(&shown);
    let check = |db: &ReadOnly| -> CliResult<()> {
        if integrity_check {
            let problems = db.integrity_check().map_err(source_err)?;
            if !problems.is_empty() {
                return Err(CliError::source(
                    &shown,
                    format!("SQLite integrity check failed: {}", problems.join("; ")),
                ));
            }
        }
        Ok(())
    };
    match db.kind().map_err(source_err)? {
        read_only::Kind::Ours => {
            check(&db)?;
            let format = if family == Some(Family::Libsql) { Format::LibsqlLocal } else { Format::Sqlite };
            // With a key the reader opens a sealed database itself: no lock, nothing written.
            let snapshot = match keys {
                Some(keys) => db.load_with_key(keys),
                None => db.load(),
            }
            .map_err(|e| crate::keys::source_error(&shown, &e))?;
            let snapshot = snapshot.ok_or_else(|| CliError::source(&shown, "the database holds no session"))?;
            let mut loaded = Loaded::new(snapshot.data, format);
            loaded.version = Some(snapshot.version);
            loaded.sealed = snapshot.sealed_with.is_some();
            Ok(loaded)
        }
        read_only::Kind::Empty => Err(CliError::source(&shown, "the database is empty: it holds no session")),
        read_only::Kind::Foreign => {
            check(&db)?;
            drop(db);
            let imported = foreign::import_blocking(path).map_err(source_err)?;
            let mut loaded = Loaded::new(imported.session, Format::ForeignSqlite(imported.format));
            loaded.dropped = imported.warnings;
            Ok(loaded)
        }
    }
}
