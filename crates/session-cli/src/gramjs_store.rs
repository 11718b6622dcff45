//! GramJS `StoreSession` folders (node-localstorage): one file per key, named
//! `encodeURIComponent("<session name>:<field>")`, each holding JSON.
//!
//! Keys: `dcId` (number), `serverAddress` (string), `port` (number), `authKey` (a Node Buffer as
//! `{"type":"Buffer","data":[...]}`), and one key per cached entity, the marked peer id, whose
//! value is `[markedId, accessHash, username, phone, name, date]` (all strings or null).
//! Nothing else is stored: no user, bot flag, test mode, api_id or update state.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use session_core::fs::private_options;
use session_core::{AuthKey, DcOption, Peer, PeerClass, PeerKey, PeerKind, SessionData, SessionError};

const SEP: &str = "%3A";

/// True when `dir` holds the files of a StoreSession (`...%3AauthKey` or `...%3AdcId`).
pub fn is_store(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.ends_with("%3AauthKey") || name.ends_with("%3AdcId")
    })
}

fn err(dir: &Path, reason: impl Into<String>) -> SessionError {
    SessionError::invalid(format!("GramJS StoreSession {}", dir.display()), reason)
}

/// Reads a StoreSession folder (without writing anything).
pub fn import(dir: &Path) -> Result<SessionData, SessionError> {
    let resource = dir.display().to_string();
    let mut fields: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| SessionError::io(&resource, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SessionError::io(&resource, e))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else { continue };
        let Some((session, field)) = file_name.split_once(SEP) else { continue };
        let text = read_field(&entry.path())?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| err(dir, format!("{file_name} is not JSON: {e}")))?;
        fields.entry(session.to_owned()).or_default().insert(field.to_owned(), value);
    }
    let sessions: Vec<_> = fields.iter().filter(|(_, f)| f.contains_key("authKey") || f.contains_key("dcId")).collect();
    let (name, f) = match sessions.as_slice() {
        [one] => *one,
        [] => return Err(err(dir, "no `<name>%3AdcId` or `<name>%3AauthKey` file")),
        _ => return Err(err(dir, "the folder holds more than one session")),
    };
    let dc_id = f
        .get("dcId")
        .and_then(Value::as_i64)
        .and_then(|d| i32::try_from(d).ok())
        .ok_or_else(|| err(dir, format!("{name}{SEP}dcId is missing or not a DC id")))?;
    let address = f
        .get("serverAddress")
        .and_then(Value::as_str)
        .ok_or_else(|| err(dir, format!("{name}{SEP}serverAddress is missing or not a string")))?;
    let ip: IpAddr =
        address.parse().map_err(|_| err(dir, format!("serverAddress {address:?} is not an IP address")))?;
    let port = f
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| err(dir, format!("{name}{SEP}port is missing or not a port")))?;
    let key = match f.get("authKey") {
        None | Some(Value::Null) => None,
        Some(v) => Some(buffer(v).ok_or_else(|| err(dir, "authKey is not a 256-byte Node Buffer"))?),
    };
    let option = DcOption::new(dc_id, SocketAddr::new(ip, port)).with_auth_key(key.filter(|k| !k.is_zero()));
    let mut data = SessionData::default();
    data.home_dc = dc_id;
    data.dcs.insert(option.key(), option);
    let mut peers = Vec::new();
    for (field, value) in f {
        let Ok(marked) = field.parse::<i64>() else { continue };
        peers.push(entity(marked, value).ok_or_else(|| err(dir, format!("entity {field} is not a GramJS row")))?);
    }
    data.peers = peers.into_iter().collect();
    Ok(data)
}

/// The largest file of a StoreSession read (each holds one JSON value; a key is about 1 KiB).
const FIELD_LIMIT: u64 = 1 << 20;

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

fn buffer(v: &Value) -> Option<AuthKey> {
    let bytes: Vec<u8> = v
        .get("data")?
        .as_array()?
        .iter()
        .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
        .collect::<Option<_>>()?;
    AuthKey::from_slice(&bytes)
}

fn entity(marked: i64, v: &Value) -> Option<Peer> {
    let row = v.as_array()?;
    let text = |i: usize| row.get(i).and_then(Value::as_str);
    let hash: i64 = match row.get(1)? {
        Value::String(s) => s.parse().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    let key = PeerKey::from_marked(marked);
    let kind = match key.class {
        PeerClass::User => PeerKind::User,
        PeerClass::Chat => PeerKind::BasicGroup,
        PeerClass::Channel => PeerKind::Channel,
    };
    let usernames = text(2).map(|u| vec![u.to_owned()]).unwrap_or_default();
    Some(Peer::new(key.id, kind, hash).with_usernames(usernames).with_phone(text(3).map(str::to_owned)))
}

/// Writes `data` as a new StoreSession folder `dir` (which must not exist); the session name
/// is the folder's name, as GramJS's `new StoreSession(name)` uses it.
///
/// Only the home DC (address, port, key) and the peers (marked id, hash, first username,
/// phone) fit; min peers are left out (their hashes are only valid in context).
pub fn export(data: &SessionData, dir: &Path) -> Result<(), SessionError> {
    let resource = dir.display().to_string();
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| err(dir, "the folder name is not valid UTF-8"))?
        .to_owned();
    let home = data.home().ok_or_else(|| err(dir, "cannot export: the session has no home DC address"))?;
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| SessionError::io(&resource, e))?;
    let mut files: Vec<(String, String)> = vec![
        ("dcId".into(), data.home_dc.to_string()),
        ("serverAddress".into(), Value::String(home.addr.ip().to_string()).to_string()),
        ("port".into(), home.addr.port().to_string()),
    ];
    if let Some(key) = &home.auth_key {
        let bytes: Vec<Value> = key.as_bytes().iter().map(|b| Value::from(*b)).collect();
        files.push(("authKey".into(), serde_json::json!({"type": "Buffer", "data": bytes}).to_string()));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()).to_string();
    for peer in data.peers.iter().filter(|p| !p.min) {
        let marked = peer.key().marked().to_string();
        let row = serde_json::json!([
            marked,
            peer.access_hash.to_string(),
            peer.usernames.first().map(|u| u.to_lowercase()),
            peer.phone,
            Value::Null,
            now,
        ]);
        files.push((marked, row.to_string()));
    }
    for (field, content) in files {
        let path = dir.join(format!("{name}{SEP}{field}"));
        let mut file = private_options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| SessionError::io(path.display().to_string(), e))?;
        file.write_all(content.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| SessionError::io(path.display().to_string(), e))?;
    }
    session_core::fs::sync_dir(dir)
}
