//! GramJS `StoreSession` folders on disk: listing and reading the field files, and creating a
//! new folder of private files. What the files mean is [`session_interop::gramjs`].

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use session_core::fs::private_options;
use session_core::{SessionData, SessionError};
use session_interop::gramjs::{self, FIELD_LIMIT};

/// True when `dir` holds the files of a StoreSession (`...%3AauthKey` or `...%3AdcId`).
pub fn is_store(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    let names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    gramjs::is_store(names.iter().map(String::as_str))
}

/// Reads a StoreSession folder (without writing anything).
pub fn import(dir: &Path) -> Result<SessionData, SessionError> {
    let resource = dir.display().to_string();
    let mut files = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| SessionError::io(&resource, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SessionError::io(&resource, e))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else { continue };
        if gramjs::split_name(file_name).is_none() {
            continue;
        }
        let text = read_field(&entry.path())?;
        files.insert(file_name.to_owned(), text.into_bytes());
    }
    gramjs::decode(&resource, &files)
}

/// One field file: a regular file of bounded size (a FIFO or device would block or never end).
fn read_field(path: &Path) -> Result<String, SessionError> {
    use std::io::Read;
    let resource = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| SessionError::io(&resource, e))?;
    if !meta.is_file() {
        return Err(SessionError::invalid(resource, "is not a regular file"));
    }
    let file = session_core::fs::open_nonblocking(path, false).map_err(|e| SessionError::io(&resource, e))?;
    let meta = file.metadata().map_err(|e| SessionError::io(&resource, e))?;
    if !meta.is_file() {
        return Err(SessionError::invalid(resource, "is not a regular file"));
    }
    let mut text = String::new();
    file.take(FIELD_LIMIT + 1).read_to_string(&mut text).map_err(|e| SessionError::io(&resource, e))?;
    if text.len() as u64 > FIELD_LIMIT {
        return Err(SessionError::invalid(resource, format!("is larger than {FIELD_LIMIT} bytes")));
    }
    Ok(text)
}

/// Writes `data` as a new StoreSession folder `dir` (which must not exist); the session name
/// is the folder's name, as GramJS's `new StoreSession(name)` uses it.
///
/// Only the home DC (address, port, key) and the peers (marked id, hash, first username,
/// phone) fit; min peers are left out (their hashes are only valid in context).
pub fn export(data: &SessionData, dir: &Path) -> Result<(), SessionError> {
    let resource = dir.display().to_string();
    let name = dir.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        SessionError::invalid(format!("GramJS StoreSession {resource}"), "the folder name is not valid UTF-8")
    })?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let files = gramjs::encode(data, name, now, &resource)?;
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| SessionError::io(&resource, e))?;
    for (file_name, content) in files {
        let path = dir.join(file_name);
        let mut file = private_options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| SessionError::io(path.display().to_string(), e))?;
        file.write_all(&content)
            .and_then(|()| file.sync_all())
            .map_err(|e| SessionError::io(path.display().to_string(), e))?;
    }
    session_core::fs::sync_dir(dir)
}
