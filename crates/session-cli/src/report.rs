//! The `inspect` report: JSON (a stable interface, see the crate docs) and text.

use std::fmt::Write as _;
use std::net::SocketAddr;

use serde_json::{json, Value};
use session_core::{DcFlags, SessionData};

use crate::format::Format;
use crate::read::Loaded;

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn or_null<T: Into<Value>>(carried: bool, v: Option<T>) -> Value {
    match (carried, v) {
        (true, Some(v)) => v.into(),
        _ => Value::Null,
    }
}

/// The version of the `inspect --json` layout. 2: 64-bit values (user, peer and channel ids,
/// access hashes, auth key ids) are strings, which jq and JavaScript read without rounding.
pub const JSON_SCHEMA_VERSION: u32 = 2;

/// A 64-bit value as a JSON string (JSON numbers lose precision above 2^53 in most readers).
fn wide(v: impl std::fmt::Display) -> Value {
    Value::String(v.to_string())
}

/// The JSON report of a loaded session. Auth keys (`auth_key_hex`) only with `reveal_secrets`.
pub fn json(loaded: &Loaded, source: &str, reveal_secrets: bool) -> Value {
    let data = &loaded.data;
    let carries = loaded.format.carries();
    let dcs: Vec<Value> = data
        .dcs
        .values()
        .map(|o| {
            let (ipv4, ipv6) = match o.addr {
                SocketAddr::V4(a) => (Value::from(a.ip().to_string()), Value::Null),
                SocketAddr::V6(a) => (Value::Null, Value::from(a.ip().to_string())),
            };
            let (ipv4, ipv6, port) = if carries.address {
                (ipv4, ipv6, Value::from(o.addr.port()))
            } else {
                (Value::Null, Value::Null, Value::Null)
            };
            let mut dc = json!({
                "id": o.id,
                "ipv4": ipv4,
                "ipv6": ipv6,
                "port": port,
                "flags": o.flags.0,
                "media_only": o.flags.contains(DcFlags::MEDIA_ONLY),
                "home": o.id == data.home_dc,
                "auth_key_id": o.auth_key.as_ref().map(|k| wide(k.key_id())),
            });
            if reveal_secrets {
                dc["auth_key_hex"] = o.auth_key.as_ref().map(|k| hex(k.as_bytes())).into();
            }
            dc
        })
        .collect();
    let u = &data.updates;
    let update_state = if carries.update_state {
        json!({"pts": u.pts, "qts": u.qts, "date": u.date, "seq": u.seq})
    } else {
        Value::Null
    };
    let channels = if carries.channels {
        Value::Array(u.channels.iter().map(|(id, pts)| json!({"id": wide(id), "pts": pts})).collect())
    } else {
        Value::Null
    };
    let (peers, peer_counts) = if carries.peers {
        let peers = data
            .peers
            .iter()
            .map(|p| {
                json!({
                    "id": wide(p.id),
                    "kind": p.kind.as_str(),
                    "access_hash": wide(p.access_hash),
                    "min": p.min,
                    "usernames": p.usernames,
                    "phone": p.phone,
                })
            })
            .collect();
        let counts: serde_json::Map<String, Value> =
            data.peers.count_by_kind().into_iter().map(|(k, n)| (k.as_str().to_owned(), Value::from(n))).collect();
        (Value::Array(peers), Value::Object(counts))
    } else {
        (Value::Null, Value::Null)
    };
    json!({
        "schema_version": JSON_SCHEMA_VERSION,
        "source": source,
        "format": loaded.format.id(),
        "format_name": loaded.format.describe(),
        "format_version": loaded.version(),
        "sealed": loaded.sealed,
        "home_dc": if data.home_dc == 0 { Value::Null } else { Value::from(data.home_dc) },
        "dcs": dcs,
        "user_id": or_null(carries.user, data.user.map(|u| wide(u.id))),
        "is_bot": or_null(carries.bot, data.user.map(|u| u.bot)),
        "test_mode": or_null(carries.test_mode, Some(data.test_mode)),
        "api_id": or_null(carries.api_id, data.api_id),
        "update_state": update_state,
        "channels": channels,
        "peer_count": if carries.peers { Value::from(data.peers.len()) } else { Value::Null },
        "peer_counts": peer_counts,
        "peers": peers,
        "min_contexts": data.min_contexts.len(),
        "has_future_auth_token": data.future_auth_token.is_some(),
        "warnings": loaded.shown_warnings().collect::<Vec<_>>(),
    })
}

fn show<T: std::fmt::Display>(carried: bool, v: Option<T>) -> String {
    match (carried, v) {
        (false, _) => "not stored by this format".into(),
        (true, None) => "none".into(),
        (true, Some(v)) => v.to_string(),
    }
}

/// The text report (no peers listed, counts by kind).
pub fn text(loaded: &Loaded, source: &str, reveal_secrets: bool) -> String {
    let data: &SessionData = &loaded.data;
    let format: Format = loaded.format;
    let c = format.carries();
    let mut s = String::new();
    let version = loaded.version().map(|v| format!(" (version {v})")).unwrap_or_default();
    let _ = writeln!(s, "source:      {source}");
    let _ = writeln!(s, "format:      {} [{}]{version}", format.describe(), format.id());
    if loaded.sealed {
        let _ = writeln!(s, "sealed:      yes (encrypted at rest, opened with the key given)");
    }
    let _ = writeln!(s, "home DC:     {}", if data.home_dc == 0 { "none".into() } else { data.home_dc.to_string() });
    let _ = writeln!(s, "DCs:         {}", data.dcs.len());
    for o in data.dcs.values() {
        let addr = if c.address { o.addr.to_string() } else { "(address not stored)".into() };
        let key = match &o.auth_key {
            Some(k) if reveal_secrets => format!("auth key {}", hex(k.as_bytes())),
            Some(k) => format!("auth key id {}", k.key_id()),
            None => "no auth key".into(),
        };
        let home = if o.id == data.home_dc { " (home)" } else { "" };
        let _ = writeln!(s, "  DC {}{home}: {addr} flags {:#x}, {key}", o.id, o.flags.0);
    }
    let _ = writeln!(s, "user id:     {}", show(c.user, data.user.map(|u| u.id)));
    let _ = writeln!(s, "bot:         {}", show(c.bot, data.user.map(|u| u.bot)));
    let _ = writeln!(s, "test mode:   {}", show(c.test_mode, Some(data.test_mode)));
    let _ = writeln!(s, "api_id:      {}", show(c.api_id, data.api_id));
    let u = &data.updates;
    let state = format!("pts {} qts {} date {} seq {}", u.pts, u.qts, u.date, u.seq);
    let _ = writeln!(s, "updates:     {}", show(c.update_state, Some(state)));
    if c.channels {
        let _ = writeln!(s, "channels:    {}", u.channels.len());
        for (id, pts) in &u.channels {
            let _ = writeln!(s, "  channel {id}: pts {pts}");
        }
    } else {
        let _ = writeln!(s, "channels:    not stored by this format");
    }
    if c.peers {
        let counts = data.peers.count_by_kind();
        let by_kind: Vec<String> = counts.iter().map(|(k, n)| format!("{} {n}", k.as_str())).collect();
        let detail = if by_kind.is_empty() { String::new() } else { format!(" ({})", by_kind.join(", ")) };
        let _ = writeln!(s, "peers:       {}{detail}", data.peers.len());
    } else {
        let _ = writeln!(s, "peers:       not stored by this format");
    }
    if !data.min_contexts.is_empty() {
        let _ = writeln!(s, "min-peer contexts: {}", data.min_contexts.len());
    }
    if data.future_auth_token.is_some() {
        let _ = writeln!(s, "future auth token: present");
    }
    for w in loaded.shown_warnings() {
        let _ = writeln!(s, "warning:     {w}");
    }
    s
}
