//! GramJS `StoreSession` folders (node-localstorage) as contents, without the folder: one file
//! per key, named `encodeURIComponent("<session name>:<field>")`, each holding JSON. The caller
//! (the `layer-session` tool) lists and reads the folder, or creates it and writes the files.
//!
//! Keys: `dcId` (number), `serverAddress` (string), `port` (number), `authKey` (a Node Buffer as
//! `{"type":"Buffer","data":[...]}`), and one key per cached entity, the marked peer id, whose
//! value is `[markedId, accessHash, username, phone, name, date]` (all strings or null).
//! Nothing else is stored: no user, bot flag, test mode, api_id or update state. GramJS's
//! `StringSession` has the Telethon shape and lives in [`crate::telethon`].

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde_json::Value;
use session_core::{AuthKey, DcOption, Peer, PeerClass, PeerKey, PeerKind, SessionData, SessionError};

/// `:` as `encodeURIComponent` writes it, between the session name and the field.
pub const SEP: &str = "%3A";

/// The largest field file a reader should accept (each holds one JSON value; a key is about
/// 1 KiB).
pub const FIELD_LIMIT: u64 = 1 << 20;

/// The session name and field of a StoreSession file name; `None` for files that are not
/// fields (a reader skips them without reading them).
pub fn split_name(file_name: &str) -> Option<(&str, &str)> {
    file_name.split_once(SEP)
}

/// True when these file names are those of a StoreSession (one ends in `%3AauthKey` or
/// `%3AdcId`).
pub fn is_store<'a>(file_names: impl IntoIterator<Item = &'a str>) -> bool {
    file_names.into_iter().any(|name| name.ends_with("%3AauthKey") || name.ends_with("%3AdcId"))
}

fn err(resource: &str, reason: impl Into<String>) -> SessionError {
    SessionError::invalid(format!("GramJS StoreSession {resource}"), reason)
}

/// Reads the session from a folder's field files (file name to contents; files that
/// [`split_name`] does not accept are ignored). `resource` names the folder in errors.
pub fn decode(resource: &str, files: &BTreeMap<String, Vec<u8>>) -> Result<SessionData, SessionError> {
    let mut fields: BTreeMap<&str, BTreeMap<&str, Value>> = BTreeMap::new();
    for (file_name, bytes) in files {
        let Some((session, field)) = split_name(file_name) else { continue };
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| err(resource, format!("{file_name} is not JSON: {e}")))?;
        fields.entry(session).or_default().insert(field, value);
    }
    let sessions: Vec<_> = fields.iter().filter(|(_, f)| f.contains_key("authKey") || f.contains_key("dcId")).collect();
    let (name, f) = match sessions.as_slice() {
        [one] => *one,
        [] => return Err(err(resource, "no `<name>%3AdcId` or `<name>%3AauthKey` file")),
        _ => return Err(err(resource, "the folder holds more than one session")),
    };
    let dc_id = f
        .get("dcId")
        .and_then(Value::as_i64)
        .and_then(|d| i32::try_from(d).ok())
        .ok_or_else(|| err(resource, format!("{name}{SEP}dcId is missing or not a DC id")))?;
    let address = f
        .get("serverAddress")
        .and_then(Value::as_str)
        .ok_or_else(|| err(resource, format!("{name}{SEP}serverAddress is missing or not a string")))?;
    let ip: IpAddr =
        address.parse().map_err(|_| err(resource, format!("serverAddress {address:?} is not an IP address")))?;
    let port = f
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| err(resource, format!("{name}{SEP}port is missing or not a port")))?;
    let key = match f.get("authKey") {
        None | Some(Value::Null) => None,
        Some(v) => Some(buffer(v).ok_or_else(|| err(resource, "authKey is not a 256-byte Node Buffer"))?),
    };
    let option = DcOption::new(dc_id, SocketAddr::new(ip, port)).with_auth_key(key.filter(|k| !k.is_zero()));
    let mut data = SessionData::default();
    data.home_dc = dc_id;
    data.dcs.insert(option.key(), option);
    let mut peers = Vec::new();
    for (field, value) in f {
        let Ok(marked) = field.parse::<i64>() else { continue };
        peers.push(entity(marked, value).ok_or_else(|| err(resource, format!("entity {field} is not a GramJS row")))?);
    }
    data.peers = peers.into_iter().collect();
    Ok(data)
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

/// The field files (file name, contents) of a StoreSession holding `data` under the session
/// `name` (GramJS's `new StoreSession(name)` uses the folder's name). `now_ms` (Unix
/// milliseconds) is the entities' date; `resource` names the folder in errors.
///
/// Only the home DC (address, port, key) and the peers (marked id, hash, first username,
/// phone) fit; min peers are left out (their hashes are only valid in context).
pub fn encode(
    data: &SessionData,
    name: &str,
    now_ms: u128,
    resource: &str,
) -> Result<Vec<(String, Vec<u8>)>, SessionError> {
    let home = data.home().ok_or_else(|| err(resource, "cannot export: the session has no home DC address"))?;
    let mut files: Vec<(String, String)> = vec![
        ("dcId".into(), data.home_dc.to_string()),
        ("serverAddress".into(), Value::String(home.addr.ip().to_string()).to_string()),
        ("port".into(), home.addr.port().to_string()),
    ];
    if let Some(key) = &home.auth_key {
        let bytes: Vec<Value> = key.as_bytes().iter().map(|b| Value::from(*b)).collect();
        files.push(("authKey".into(), serde_json::json!({"type": "Buffer", "data": bytes}).to_string()));
    }
    let now = now_ms.to_string();
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
    Ok(files.into_iter().map(|(field, content)| (format!("{name}{SEP}{field}"), content.into_bytes())).collect())
}
