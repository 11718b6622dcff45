//! Writing a destination: every non-native format is written to a staging place first and read
//! back, so that what it drops is known exactly before anything replaces the destination.

use std::io::Write;
use std::path::{Path, PathBuf};

use session_core::{Keyring, PeerKind, SessionBackend, SessionData, SessionError};
use session_file::BinaryFileBackend;
use session_interop::binary::{self as legacy, LegacyFormat};
use session_interop::{ferogram, layer05, ForeignFormat, StringFormat};
use session_libsql::LibSqlBackend;
use session_sqlite::foreign;
use session_sqlite::SqliteBackend;

use crate::blocking;
use crate::diff;
use crate::error::{CliError, CliResult};
use crate::gramjs_store;
use crate::guard;
use crate::location::{shown_path, Dest, ServerSession, StringOut};
use crate::server;

/// How to write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Replace an existing destination.
    pub force: bool,
    /// Write even when the destination cannot hold everything (what is dropped is returned).
    pub allow_lossy: bool,
    /// Auth token for a remote libSQL database.
    pub token: Option<String>,
    /// Seal our destinations (file, SQLite, libSQL, our string, PostgreSQL, Redis) with this
    /// key. Foreign formats cannot hold ciphertext: they are written in clear (the command
    /// warns).
    pub keys: Option<Keyring>,
}

impl WriteOptions {
    /// Whether `dest` keeps the session sealed with [`WriteOptions::keys`] (false without a key,
    /// and for the formats of other libraries, which hold no ciphertext).
    pub fn seals(&self, dest: &Dest) -> bool {
        self.keys.is_some() && holds_ciphertext(dest)
    }
}

/// Whether `dest` is one of ours, which can be sealed.
pub fn holds_ciphertext(dest: &Dest) -> bool {
    match dest {
        Dest::File(_) | Dest::Sqlite(_) | Dest::Libsql(_) | Dest::Remote(_) | Dest::Server(_) => true,
        Dest::String(format, _) => *format == StringFormat::Full,
        Dest::Legacy(..) | Dest::ForeignSqlite(..) | Dest::GramjsStore(_) => false,
    }
}

/// Writes `data` to `dest`. Returns what the destination could not hold (empty unless
/// `allow_lossy`; otherwise a lossy conversion fails with exit code 4 and writes nothing).
///
/// Every local destination is written under its owner lock (the one the backends take): a
/// session that a running program holds is refused, never replaced.
pub async fn write(data: &SessionData, dest: &Dest, options: &WriteOptions) -> CliResult<Vec<String>> {
    let shown = dest.to_string();
    if let Some(path) = dest.path() {
        if std::fs::symlink_metadata(path).is_ok() && !options.force {
            return Err(CliError::dest(&shown, "already exists (pass --force to replace it)"));
        }
    }
    match dest {
        Dest::File(path) => {
            let lock_existed = prepare_backend_dest(path).await?;
            let backend = match &options.keys {
                None => BinaryFileBackend::open(path.clone()).await,
                Some(keys) => BinaryFileBackend::open_with_key(path.clone(), keys.clone()).await,
            }
            .map_err(|e| backend_err(path, &e))?;
            let saved = save(&backend, data, &shown).await;
            guard::remove_created_lock_file(path, lock_existed);
            saved?;
            Ok(Vec::new())
        }
        Dest::Sqlite(path) => {
            let lock_existed = prepare_backend_dest(path).await?;
            let backend = match &options.keys {
                None => SqliteBackend::open(path).await,
                Some(keys) => SqliteBackend::open_with_key(path, keys.clone()).await,
            }
            .map_err(|e| backend_err(path, &e))?;
            let saved = save(&backend, data, &shown).await;
            // Closed (its -wal and -shm folded away) while it still holds the lock, whose file
            // goes last.
            let closed = backend.close().await.map_err(|e| CliError::dest(&shown, e));
            guard::remove_created_lock_file(path, lock_existed);
            saved?;
            closed?;
            Ok(Vec::new())
        }
        Dest::Libsql(path) => {
            let lock_existed = prepare_backend_dest(path).await?;
            let backend = match &options.keys {
                None => LibSqlBackend::open_local(path).await,
                Some(keys) => LibSqlBackend::open_local_with_key(path, keys.clone()).await,
            }
            .map_err(|e| backend_err(path, &e))?;
            let saved = save(&backend, data, &shown).await;
            guard::remove_created_lock_file(path, lock_existed);
            saved?;
            Ok(Vec::new())
        }
        Dest::Remote(url) => {
            let url = crate::location::remote_url(url);
            let token = options.token.as_deref().unwrap_or("");
            let backend = match &options.keys {
                None => LibSqlBackend::open_remote(&url, token).await,
                Some(keys) => LibSqlBackend::open_remote_with_key(&url, token, Default::default(), keys.clone()).await,
            }
            .map_err(|e| CliError::dest(&shown, crate::keys::describe(&e)))?;
            let existing = backend
                .load_session()
                .await
                .map_err(|e| CliError::dest(&shown, SessionError::from_boxed(e, backend.name())))?;
            if existing.is_some() && !options.force {
                let _ = backend.close().await;
                return Err(CliError::dest(&shown, "already holds a session (pass --force to replace it)"));
            }
            let saved = save(&backend, data, &shown).await;
            // Hand the session's lease back now: the next owner (the bot this session is for)
            // must not wait for it to expire.
            let closed =
                backend.close().await.map_err(|e| CliError::dest(&shown, SessionError::from_boxed(e, "libsql")));
            saved?;
            closed?;
            Ok(Vec::new())
        }
        Dest::Server(server) => {
            write_server(server, data, options, &shown).await?;
            Ok(Vec::new())
        }
        Dest::String(format, out) => {
            let (text, dropped) = match (&options.keys, *format) {
                (Some(keys), StringFormat::Full) => {
                    let (data, keys) = (data.clone(), keys.clone());
                    // Blocking: a passphrase's key is derived (Argon2id).
                    blocking(move || sealed_string(&data, &keys).map_err(|e| e.named("string"))).await?
                }
                _ => string(data, *format, options.allow_lossy).map_err(|e| e.named(&shown))?,
            };
            match out {
                StringOut::Stdout => {
                    let mut stdout = std::io::stdout().lock();
                    writeln!(stdout, "{text}").map_err(|e| CliError::dest(&shown, e))?;
                }
                StringOut::File(path) => {
                    let path = path.clone();
                    let bytes = format!("{text}\n").into_bytes();
                    blocking(move || replace_file(&path, &bytes)).await?;
                }
            }
            Ok(dropped)
        }
        Dest::Legacy(path, format) => {
            let (bytes, dropped) = legacy_bytes(data, *format, options.allow_lossy).map_err(|e| e.named(&shown))?;
            let path = path.clone();
            blocking(move || replace_file(&path, &bytes)).await?;
            Ok(dropped)
        }
        Dest::ForeignSqlite(path, format) => {
            let (path, format, data, allow) = (path.clone(), *format, data.clone(), options.allow_lossy);
            blocking(move || staged(&path, &data, allow, |p, d| foreign_stage(p, d, format))).await
        }
        Dest::GramjsStore(path) => {
            let (path, data, allow) = (path.clone(), data.clone(), options.allow_lossy);
            blocking(move || staged(&path, &data, allow, gramjs_stage)).await
        }
    }
}

/// Writes into a PostgreSQL or Redis session under its lease, taken as every owner takes it: a
/// session a running program holds is refused (exit 3, naming the holder), and the lease is
/// handed back when the write is done, so that the session's next owner starts at once.
async fn write_server(
    server: &ServerSession,
    data: &SessionData,
    options: &WriteOptions,
    shown: &str,
) -> CliResult<()> {
    let purpose = server::Purpose::Write;
    let describe = |e: &SessionError| CliError::dest(shown, server::describe(server, e, purpose));
    let opened = server::open(server, purpose, options.keys.clone()).await?.map_err(|e| describe(&e))?;
    let backend = opened.backend();
    let existing = backend.load_session().await.map_err(|e| describe(&SessionError::from_boxed(e, backend.name())));
    let written = match existing {
        Err(e) => Err(e),
        Ok(Some(_)) if !options.force => {
            Err(CliError::dest(shown, "already holds a session of this name (pass --force to replace it)"))
        }
        Ok(_) => backend.save_session(data).await.map_err(|e| describe(&SessionError::from_boxed(e, backend.name()))),
    };
    let closed = opened.close().await.map_err(|e| describe(&e));
    written?;
    closed
}

fn backend_err(path: &Path, e: &SessionError) -> CliError {
    guard::held(path, e)
}

/// Before one of our backends opens `path` (it takes the owner lock itself): refuses a held
/// destination, and makes an existing one private, so that the backend (and SQLite's `-wal` and
/// `-shm`, which take the database file's mode) writes nothing readable by others. Returns
/// whether the lock file existed before this run.
async fn prepare_backend_dest(path: &Path) -> CliResult<bool> {
    let path = path.to_path_buf();
    blocking(move || {
        let existed = guard::lock_file_exists(&path);
        let lock = guard::DestLock::acquire(&path)?;
        guard::tighten(&path).map_err(|e| CliError::dest(shown_path(&path), format!("cannot make it private: {e}")))?;
        // The backend takes the lock again right away; if someone takes it in between, the
        // backend is refused just the same.
        lock.release();
        Ok(existed)
    })
    .await
}

async fn save(backend: &dyn SessionBackend, data: &SessionData, shown: &str) -> CliResult<()> {
    backend.save_session(data).await.map_err(|e| CliError::dest(shown, SessionError::from_boxed(e, backend.name())))
}

/// A problem found while producing the destination's content, named later.
#[derive(Debug)]
pub enum Staging {
    /// The format cannot hold something it requires, or an I/O error.
    Failed(String),
    /// Lossy and not allowed.
    Lossy(Vec<String>),
}

impl Staging {
    fn named(self, shown: &str) -> CliError {
        match self {
            Staging::Failed(reason) => CliError::dest(shown, reason),
            Staging::Lossy(dropped) => CliError::lossy(shown, &dropped),
        }
    }
}

fn failed(e: impl std::fmt::Display) -> Staging {
    Staging::Failed(e.to_string())
}

fn check(before: &SessionData, after: &SessionData, allow_lossy: bool) -> Result<Vec<String>, Staging> {
    let dropped = diff::dropped(before, after);
    if dropped.is_empty() || allow_lossy {
        Ok(dropped)
    } else {
        Err(Staging::Lossy(dropped))
    }
}

/// The session as it is about to be written in `format`: what the format refuses outright
/// (rather than dropping on its own) taken out, so that the read-back comparison names it and
/// `--allow-lossy` decides.
fn fit(data: &SessionData, format: LegacyFormat) -> SessionData {
    let mut fitted = data.clone();
    if format == LegacyFormat::LayerV3 {
        fitted.min_contexts.clear();
        fitted.future_auth_token = None;
        fitted.peers =
            data.peers.iter().filter(|p| !matches!(p.kind, PeerKind::BasicGroup | PeerKind::Community)).collect();
    }
    fitted
}

/// The string of `data` in `format`, and what it drops.
pub fn string(data: &SessionData, format: StringFormat, allow_lossy: bool) -> Result<(String, Vec<String>), Staging> {
    let source = match format {
        StringFormat::LayerClient => fit(data, LegacyFormat::LayerV3),
        _ => data.clone(),
    };
    let text = session_string::foreign::export(&source, format).map_err(|e| {
        let hint = if data.api_id.is_none() && e.to_string().contains("api_id") { " (pass --api-id)" } else { "" };
        Staging::Failed(format!("{e}{hint}"))
    })?;
    let (back, _) = session_string::foreign::import(&text)
        .map_err(|e| failed(format!("the written string does not read back: {e}")))?;
    Ok((text, check(data, &back, allow_lossy)?))
}

/// Our full string sealed with `keys` (`Le1.`), read back with them before it is used.
pub fn sealed_string(data: &SessionData, keys: &Keyring) -> Result<(String, Vec<String>), Staging> {
    let text = session_string::encode_sealed(data, keys).map_err(failed)?;
    let back = session_string::decode_sealed(&text, keys)
        .map_err(|e| failed(format!("the written string does not read back: {e}")))?;
    Ok((text, check(data, &back, false)?))
}

fn legacy_bytes(
    data: &SessionData,
    format: LegacyFormat,
    allow_lossy: bool,
) -> Result<(Vec<u8>, Vec<String>), Staging> {
    let source = fit(data, format);
    let bytes = match format {
        LegacyFormat::LayerV3 => layer05::encode_layer_v3(&source),
        _ => ferogram::encode_ferogram_v8(&source),
    }
    .map_err(failed)?;
    let back = legacy::decode(&bytes).map_err(|e| failed(format!("the written file does not read back: {e}")))?;
    Ok((bytes, check(data, &back.data, allow_lossy)?))
}

/// Writes `bytes` to `path`: under the destination's owner lock, through a private staging
/// folder beside it, fsync and rename.
fn replace_file(path: &Path, bytes: &[u8]) -> CliResult<()> {
    let shown = shown_path(path);
    let lock = guard::DestLock::acquire(path)?;
    let path = &real_path(path);
    let dir = parent(path);
    let stage = guard::Stage::new(&dir)
        .map_err(|e| CliError::dest(&shown, format!("cannot create a staging folder in {}: {e}", shown_path(&dir))))?;
    let staged = stage.path().join("session");
    let mut file = session_core::fs::private_options()
        .write(true)
        .create_new(true)
        .open(&staged)
        .map_err(|e| CliError::dest(&shown, e))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| CliError::dest(&shown, e))?;
    drop(file);
    stage.failpoint();
    std::fs::rename(&staged, path).map_err(|e| CliError::dest(&shown, e))?;
    session_core::fs::sync_dir(&dir).map_err(|e| CliError::dest(&shown, e))?;
    drop(stage);
    lock.release();
    Ok(())
}

/// The file a destination name reaches (symlinks and `..` resolved), the one its owner lock
/// guards: the new content replaces it, not a symlink to it.
fn real_path(path: &Path) -> PathBuf {
    session_core::fs::resolve(path).unwrap_or_else(|_| path.to_path_buf())
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes into a private staging folder beside `path` with `stage` (which returns what reads
/// back), then moves the result over `path`, all under the destination's owner lock.
fn staged(
    path: &Path,
    data: &SessionData,
    allow_lossy: bool,
    stage_fn: impl FnOnce(&Path, &SessionData) -> Result<SessionData, SessionError>,
) -> CliResult<Vec<String>> {
    let shown = shown_path(path);
    let lock = guard::DestLock::acquire(path)?;
    let path = &real_path(path);
    let dir = parent(path);
    let name = path.file_name().ok_or_else(|| CliError::dest(&shown, "names no file"))?;
    let stage = guard::Stage::new(&dir)
        .map_err(|e| CliError::dest(&shown, format!("cannot create a staging folder in {}: {e}", shown_path(&dir))))?;
    let staged = stage.path().join(name);
    let back = stage_fn(&staged, data).map_err(|e| CliError::dest(&shown, e))?;
    let dropped = check(data, &back, allow_lossy).map_err(|e| e.named(&shown))?;
    stage.failpoint();
    if staged.is_dir() && path.is_dir() {
        std::fs::remove_dir_all(path).map_err(|e| CliError::dest(&shown, format!("cannot replace: {e}")))?;
    }
    std::fs::rename(&staged, path).map_err(|e| CliError::dest(&shown, e))?;
    session_core::fs::sync_dir(&dir).map_err(|e| CliError::dest(&shown, e))?;
    drop(stage);
    lock.release();
    Ok(dropped)
}

fn foreign_stage(path: &Path, data: &SessionData, format: ForeignFormat) -> Result<SessionData, SessionError> {
    foreign::export_blocking(data, format, path)?;
    Ok(foreign::import_blocking(path)?.session)
}

fn gramjs_stage(path: &Path, data: &SessionData) -> Result<SessionData, SessionError> {
    gramjs_store::export(data, path)?;
    gramjs_store::import(path)
}
