//! `encrypt`, `decrypt` and `rekey`: a stored session of ours sealed, unsealed or sealed again
//! under a new key, in place.
//!
//! Local files (our log, SQLite and libSQL databases, string files) are rewritten whole: under
//! the owner lock, the session is written with the new key into a private staging folder beside
//! it, fsync'ed, read back with the new key and compared, then renamed over the original and the
//! folder fsync'ed. A kill at any instant leaves the original (old key) or the new file (new
//! key), never a mix and never less, and no bytes under the old key (or in clear) linger in the
//! new file's free pages. Server sessions (PostgreSQL, Redis, a libSQL server) use their
//! backends' own rotation: opened with the new key and the old one, the session is written
//! again under the new key in the backend's transaction, then read back with the new key alone.

use std::io::Write;
use std::path::{Path, PathBuf};

use session_core::{Keyring, SessionBackend, SessionData, SessionError};
use session_file::BinaryFileBackend;
use session_sqlite::read_only::ReadOnly;
use session_sqlite::SqliteBackend;
use session_string::StringFormat;

use crate::blocking;
use crate::error::{CliError, CliResult, EXIT_OK};
use crate::format::Format;
use crate::guard;
use crate::keys::Key;
use crate::location::{self, shown_path, ServerSession, Source};
use crate::read::{self, ReadOptions};
use crate::server;

/// What to do.
#[derive(Debug)]
pub enum Change {
    /// Seal a plain session with the key.
    Encrypt(Key),
    /// Unseal a session sealed with the key.
    Decrypt(Key),
    /// Seal a session sealed with `old` again with `new`.
    Rekey {
        /// The key it is sealed with now.
        old: Key,
        /// The key it is sealed with afterwards.
        new: Key,
    },
}

impl Change {
    fn verb(&self) -> &'static str {
        match self {
            Change::Encrypt(_) => "encrypted",
            Change::Decrypt(_) => "decrypted",
            Change::Rekey { .. } => "rekeyed",
        }
    }

    /// The key the session is read with now (encrypt: its key, which reads a plain session too,
    /// and tells one already sealed with it).
    fn reading(&self) -> Keyring {
        match self {
            Change::Encrypt(k) | Change::Decrypt(k) => k.keyring(),
            Change::Rekey { old, .. } => old.keyring(),
        }
    }

    /// The key it is written with (`None`: in clear).
    fn writing(&self) -> Option<Keyring> {
        match self {
            Change::Encrypt(k) => Some(k.keyring()),
            Change::Decrypt(_) => None,
            Change::Rekey { new, .. } => Some(new.keyring()),
        }
    }

    /// Refuses what the session's state makes meaningless.
    fn check(&self, shown: &str, sealed: bool) -> CliResult<()> {
        match (self, sealed) {
            (Change::Encrypt(_), true) => {
                Err(CliError::source(shown, "is already sealed with this key (to change its key, use `rekey`)"))
            }
            (Change::Decrypt(_) | Change::Rekey { .. }, false) => {
                Err(CliError::source(shown, "is not sealed (to seal it, use `encrypt`)"))
            }
            _ => Ok(()),
        }
    }
}

/// The kind of local file rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Local {
    File,
    Sqlite,
    String,
}

/// Runs `change` on the session at `location`.
pub async fn run(location: &str, change: Change, token: Option<String>, out: &mut dyn Write) -> CliResult<u8> {
    let src = location::parse_source(location)?;
    let shown = src.to_string();
    match &src {
        Source::Path { path, .. } => local(&src, path, &change).await?,
        Source::Server(server) => remote_server(server, &change).await?,
        Source::Remote { url } => remote_libsql(url, token.as_deref().unwrap_or(""), &change, &shown).await?,
        Source::Literal { .. } | Source::Stdin { .. } => {
            return Err(CliError::usage(format!(
                "{shown}: {} works in place on a stored session; to seal a string, convert it with a key \
                 (`layer-session convert {shown} -` with {} set)",
                change.verb(),
                crate::keys::KEY_ENV
            )))
        }
    }
    let _ = writeln!(out, "{} {shown}", change.verb());
    Ok(EXIT_OK)
}

fn reading_options(keys: Keyring) -> ReadOptions {
    ReadOptions { keys: Some(keys), ..ReadOptions::default() }
}

async fn local(src: &Source, path: &Path, change: &Change) -> CliResult<()> {
    let shown = shown_path(path);
    let loaded = read::read(src, &reading_options(change.reading())).await?;
    let kind = match loaded.format {
        Format::File => Local::File,
        Format::Sqlite | Format::LibsqlLocal => Local::Sqlite,
        Format::String(StringFormat::Full | StringFormat::Compact) => Local::String,
        Format::Legacy(_) => {
            return Err(CliError::source(
                &shown,
                "is a layer-client 0.5 / ferogram file, which cannot be sealed: convert it into one of ours \
                 with the key (`layer-session convert OLD NEW.session`)",
            ))
        }
        other => {
            return Err(CliError::source(
                &shown,
                format!(
                    "is a {}; only our own files, databases and strings can be sealed (convert it into one \
                     of ours with the key)",
                    other.describe()
                ),
            ))
        }
    };
    change.check(&shown, loaded.sealed)?;
    if kind == Local::Sqlite {
        prepare_sqlite(path, change, loaded.sealed).await?;
    }
    // From here on, under the owner lock: no owner writes while the file is replaced.
    let p = path.to_path_buf();
    let lock = blocking(move || guard::DestLock::acquire(&p)).await?;
    if kind == Local::Sqlite {
        let wal = guard::sibling(path, "-wal");
        if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            return Err(CliError::dest(
                &shown,
                "was written by another program while this command ran (its -wal is not empty); run it again",
            ));
        }
    }
    // Read again under the lock: exactly what is replaced.
    let data = read::read(src, &reading_options(change.reading())).await?.data;
    let real = session_core::fs::resolve(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = match real.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = real.file_name().ok_or_else(|| CliError::dest(&shown, "names no file"))?.to_owned();
    let d = dir.clone();
    let stage = blocking(move || {
        guard::Stage::new(&d)
            .map_err(|e| CliError::dest(shown_path(&d), format!("cannot create a staging folder: {e}")))
    })
    .await?;
    let staged = stage.path().join(&name);
    write_staged(kind, &staged, &data, change.writing(), &shown).await?;
    // Read back with the new key alone (or none) before anything is replaced.
    let back_options = ReadOptions { keys: change.writing(), ..ReadOptions::default() };
    let back = read::read(&Source::Path { path: staged.clone(), family: None }, &back_options)
        .await
        .map_err(|e| CliError::dest(&shown, format!("the rewritten session does not read back: {}", e.message)))?;
    if back.sealed != change.writing().is_some() || !crate::diff::dropped(&data, &back.data).is_empty() {
        return Err(CliError::dest(&shown, "the rewritten session does not read back as it was; nothing replaced"));
    }
    blocking(move || {
        stage.failpoint();
        if kind == Local::Sqlite {
            // No -wal holds anything (checked under the lock): a stale -shm or empty -wal must
            // not be paired with the new database.
            for suffix in ["-wal", "-shm"] {
                match std::fs::remove_file(guard::sibling(&real, suffix)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(CliError::dest(&shown, format!("cannot remove its {suffix}: {e}")))
                    }
                    _ => {}
                }
            }
        }
        std::fs::rename(&staged, &real).map_err(|e| CliError::dest(&shown, e))?;
        session_core::fs::sync_dir(&dir).map_err(|e| CliError::dest(&shown, e))?;
        drop(stage);
        lock.release();
        Ok(())
    })
    .await
}

/// Folds a database's `-wal` into it (its backend does on close) so that the file renamed over
/// it has no `-wal` to be paired with, and refuses a database holding several sessions (it is
/// sealed whole, and this command rewrites its default session).
async fn prepare_sqlite(path: &Path, change: &Change, sealed: bool) -> CliResult<()> {
    let shown = shown_path(path);
    let p = path.to_path_buf();
    let others = blocking(move || {
        let db = ReadOnly::open(&p).map_err(|e| CliError::source(shown_path(&p), e))?;
        let sessions = db.sessions().map_err(|e| CliError::source(shown_path(&p), e))?;
        Ok(sessions.into_iter().filter(|s| s.stored && s.name != "default").count())
    })
    .await?;
    if others > 0 {
        return Err(CliError::source(
            &shown,
            format!(
                "holds {others} named session(s) beside the default one; a database is sealed whole, so \
                 convert each session into a database of its own first"
            ),
        ));
    }
    let lock_existed = guard::lock_file_exists(path);
    let backend = if sealed {
        SqliteBackend::open_with_key(path, change.reading()).await
    } else {
        SqliteBackend::open(path).await
    }
    .map_err(|e| guard::held(path, &e))?;
    let closed = backend.close().await.map_err(|e| CliError::dest(&shown, e));
    guard::remove_created_lock_file(path, lock_existed);
    closed
}

async fn write_staged(
    kind: Local,
    staged: &Path,
    data: &SessionData,
    keys: Option<Keyring>,
    shown: &str,
) -> CliResult<()> {
    let fail = |e: SessionError| CliError::dest(shown, format!("cannot write the rewritten session: {e}"));
    match kind {
        Local::File => {
            let backend = match keys {
                Some(keys) => BinaryFileBackend::open_with_key(staged.to_path_buf(), keys).await,
                None => BinaryFileBackend::open(staged.to_path_buf()).await,
            }
            .map_err(fail)?;
            backend.save_session(data).await.map_err(|e| fail(SessionError::from_boxed(e, "file")))?;
        }
        Local::Sqlite => {
            let backend = match keys {
                Some(keys) => SqliteBackend::open_with_key(staged, keys).await,
                None => SqliteBackend::open(staged).await,
            }
            .map_err(fail)?;
            let saved = backend.save_session(data).await.map_err(|e| fail(SessionError::from_boxed(e, "sqlite")));
            backend.close().await.map_err(fail)?;
            saved?;
        }
        Local::String => {
            let (data, staged, shown) = (data.clone(), staged.to_path_buf(), shown.to_owned());
            blocking(move || {
                let text = match &keys {
                    Some(keys) => session_string::encode_sealed(&data, keys),
                    None => session_string::encode_full(&data),
                }
                .map_err(|e| CliError::dest(&shown, e))?;
                let mut file = session_core::fs::private_options()
                    .write(true)
                    .create_new(true)
                    .open(&staged)
                    .map_err(|e| CliError::dest(&shown, e))?;
                file.write_all(format!("{text}\n").as_bytes()).map_err(|e| CliError::dest(&shown, e))?;
                file.sync_all().map_err(|e| CliError::dest(&shown, e))
            })
            .await?;
            return Ok(());
        }
    }
    // The backends fsync what they acknowledge; the file itself once more before the rename.
    let (staged, shown) = (staged.to_path_buf(), shown.to_owned());
    blocking(move || std::fs::File::open(&staged).and_then(|f| f.sync_all()).map_err(|e| CliError::dest(&shown, e)))
        .await
}

/// A PostgreSQL or Redis session: the backend's rotation under its lease.
async fn remote_server(server: &ServerSession, change: &Change) -> CliResult<()> {
    let shown = server.to_string();
    let purpose = server::Purpose::Write;
    let describe = |e: &SessionError| CliError::dest(&shown, server::describe(server, e, purpose));
    let keys = match change {
        Change::Decrypt(_) => {
            return Err(CliError::usage(format!(
                "{shown}: decrypt works on local files; convert the session into a file with the key, \
                 then back into the server without one"
            )))
        }
        Change::Encrypt(k) => {
            // Plain? Opened without a key, a sealed session is refused before anything is written.
            let plain = server::open(server, purpose, None).await?;
            match plain {
                Ok(opened) => opened.close().await.map_err(|e| describe(&e))?,
                Err(SessionError::Sealed { .. }) => return change.check(&shown, true),
                Err(e) => return Err(describe(&e)),
            }
            k.keyring()
        }
        Change::Rekey { old, new } => new.rotating_from(old),
    };
    rewrite_server(server, keys, &describe).await?;
    // Read back with the new key alone.
    let new = change.writing();
    let opened = server::open(server, purpose, new).await?.map_err(|e| describe(&e))?;
    let loaded = opened.backend().load_session().await;
    let closed = opened.close().await;
    loaded.map_err(|e| describe(&SessionError::from_boxed(e, "server")))?;
    closed.map_err(|e| describe(&e))
}

async fn rewrite_server(
    server: &ServerSession,
    keys: Keyring,
    describe: &dyn Fn(&SessionError) -> CliError,
) -> CliResult<()> {
    let opened = server::open(server, server::Purpose::Write, Some(keys)).await?.map_err(|e| describe(&e))?;
    let backend = opened.backend();
    let written = match backend.load_session().await {
        Err(e) => Err(describe(&SessionError::from_boxed(e, backend.name()))),
        Ok(None) => Err(CliError::source(server.to_string(), format!("holds no session named {:?}", server.session()))),
        // Written whole: every value sealed again with the new key.
        Ok(Some(data)) => {
            backend.save_session(&data).await.map_err(|e| describe(&SessionError::from_boxed(e, backend.name())))
        }
    };
    let closed = opened.close().await.map_err(|e| describe(&e));
    written?;
    closed
}

/// A libSQL server: its backend seals (or re-seals) at open in one fenced transaction.
async fn remote_libsql(url: &str, token: &str, change: &Change, shown: &str) -> CliResult<()> {
    let url = location::remote_url(url);
    let fail = |e: &SessionError| CliError::dest(shown, crate::keys::describe(e));
    let keys = match change {
        Change::Decrypt(_) => {
            return Err(CliError::usage(format!(
                "{shown}: decrypt works on local files; convert the session into a file with the key, \
                 then back into the server without one"
            )))
        }
        Change::Encrypt(k) => {
            match session_libsql::LibSqlBackend::open_remote(&url, token).await {
                Ok(b) => b.close().await.map_err(|e| fail(&SessionError::from_boxed(e, "libsql")))?,
                Err(SessionError::Sealed { .. }) => return change.check(shown, true),
                Err(e) => return Err(fail(&e)),
            }
            k.keyring()
        }
        Change::Rekey { old, new } => new.rotating_from(old),
    };
    let backend = session_libsql::LibSqlBackend::open_remote_with_key(&url, token, Default::default(), keys)
        .await
        .map_err(|e| fail(&e))?;
    let written = match backend.load_session().await {
        Ok(Some(data)) => backend.save_session(&data).await,
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    let closed = backend.close().await;
    written.map_err(|e| fail(&SessionError::from_boxed(e, "libsql")))?;
    closed.map_err(|e| fail(&SessionError::from_boxed(e, "libsql")))?;
    let Some(new) = change.writing() else { return Ok(()) };
    let check = session_libsql::LibSqlBackend::open_remote_with_key(&url, token, Default::default(), new)
        .await
        .map_err(|e| fail(&e))?;
    let loaded = check.load_session().await;
    let _ = check.close().await;
    loaded.map(|_| ()).map_err(|e| fail(&SessionError::from_boxed(e, "libsql")))
}
