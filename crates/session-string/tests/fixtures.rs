//! Every string artifact under `fixtures/` imports with exactly the values of its
//! `.expected.json`, is detected as its format, and re-exports byte-identically.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;
use session_core::{DcFlags, DcKey, PeerClass, PeerKey, SessionData};
use session_string::foreign::{self, StringFormat};

fn fixtures_dir() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures")).to_path_buf()
}

/// Every `*.txt` artifact (string sessions) with its expected JSON.
fn string_fixtures() -> Vec<(PathBuf, String, Value)> {
    let mut out = Vec::new();
    let dir = fixtures_dir();
    let libs = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for lib in libs {
        let lib = lib.unwrap().path();
        if !lib.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&lib).unwrap() {
            let path = f.unwrap().path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let Some(stem) = name.strip_suffix(".txt") else { continue };
            let expected_path = lib.join(format!("{stem}.expected.json"));
            let expected: Value = serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
            assert_eq!(expected["artifact_kind"], "string", "{name}");
            out.push((path.clone(), std::fs::read_to_string(&path).unwrap(), expected));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn expected_format(expected: &Value, text: &str) -> StringFormat {
    let format = expected["format"].as_str().unwrap();
    match format {
        "telethon.StringSession" => StringFormat::Telethon,
        "gramjs.StringSession" => StringFormat::GramJs,
        "mtcute.string_session_v3" => StringFormat::MtcuteV3,
        "layer.v3" => StringFormat::LayerClient,
        "ferogram.v8" => StringFormat::Ferogram,
        "ferogram.compact.v2" => StringFormat::FerogramCompactV2,
        f if f.ends_with(".session_string") => match text.trim().len() {
            362 => StringFormat::Pyrogram,
            356 => StringFormat::PyrogramLegacy,
            351 => StringFormat::PyrogramLegacyU32,
            n => panic!("Pyrogram string of {n} characters"),
        },
        other => panic!("fixture format {other} has no StringFormat"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn key_hex(data: &SessionData, key: DcKey) -> Option<String> {
    data.dcs.get(&key).and_then(|o| o.auth_key.as_ref()).map(|k| hex(k.as_bytes()))
}

fn ip(v: &Value) -> IpAddr {
    v.as_str().unwrap().parse().unwrap()
}

/// Fixtures with one DC described at the top level (Telethon, GramJS, Pyrogram, mtcute).
fn check_top_level(name: &str, data: &SessionData, e: &Value) {
    let dc = i32::try_from(e["dc_id"].as_i64().unwrap()).unwrap();
    assert_eq!(data.home_dc, dc, "{name}: home DC");
    let home = data.home().unwrap_or_else(|| panic!("{name}: no home DC option"));
    assert_eq!(home.id, dc, "{name}");
    match e["server_address"].as_str() {
        Some(addr) => {
            assert_eq!(home.addr.ip(), addr.parse::<IpAddr>().unwrap(), "{name}: address");
            assert_eq!(i64::from(home.addr.port()), e["port"].as_i64().unwrap(), "{name}: port");
            assert_eq!(home.addr.is_ipv6(), e["ipv6"].as_bool().unwrap(), "{name}: ipv6");
        }
        None => {
            // Pyrogram: no address in the string; the published one for the DC is used.
            let test = e["test_mode"].as_bool().unwrap_or(false);
            assert_eq!(Some(home.addr), session_core::dc_table::address(dc, test), "{name}: published address");
        }
    }
    assert_eq!(
        home.auth_key.as_ref().map(|k| hex(k.as_bytes())).as_deref(),
        e["auth_key_hex"].as_str(),
        "{name}: auth key"
    );
    assert_eq!(home.auth_key.as_ref().map(|k| k.key_id()), e["auth_key_id_i64"].as_i64(), "{name}: key id");
    match e["user_id"].as_i64() {
        Some(id) => {
            let user = data.user.unwrap_or_else(|| panic!("{name}: no user"));
            assert_eq!(user.id, id, "{name}: user id");
            assert_eq!(Some(user.bot), e["is_bot"].as_bool(), "{name}: bot");
        }
        None => assert_eq!(data.user, None, "{name}: user"),
    }
    assert_eq!(data.test_mode, e["test_mode"].as_bool().unwrap_or(false), "{name}: test mode");
    assert_eq!(data.api_id.map(i64::from), e["api_id"].as_i64(), "{name}: api_id");
    if let Some(media) = e.get("media_dc").filter(|m| !m.is_null()) {
        let id = i32::try_from(media["id"].as_i64().unwrap()).unwrap();
        let flags = if media["ipv6"].as_bool().unwrap() { DcFlags(3) } else { DcFlags::MEDIA_ONLY };
        let option = data.dcs.get(&DcKey { id, flags }).unwrap_or_else(|| panic!("{name}: no media DC"));
        assert_eq!(option.addr.ip(), ip(&media["ip"]), "{name}: media address");
        assert_eq!(i64::from(option.addr.port()), media["port"].as_i64().unwrap(), "{name}: media port");
        assert!(option.flags.contains(DcFlags::MEDIA_ONLY), "{name}");
    }
    let options = 1 + usize::from(e.get("media_dc").is_some_and(|m| !m.is_null()));
    assert_eq!(data.dcs.len(), options, "{name}: DC options");
    assert!(data.peers.is_empty() && data.updates == Default::default(), "{name}: nothing else");
}

/// Fixtures listing DCs under `dcs[]` (layer-client and ferogram strings).
fn check_dcs(name: &str, data: &SessionData, e: &Value) {
    assert_eq!(i64::from(data.home_dc), e["home_dc"].as_i64().unwrap(), "{name}: home DC");
    let dcs = e["dcs"].as_array().unwrap();
    assert_eq!(data.dcs.len(), dcs.len(), "{name}: DC options");
    for d in dcs {
        let id = i32::try_from(d["dc_id"].as_i64().unwrap()).unwrap();
        let flags = DcFlags(u32::try_from(d["flags"].as_u64().unwrap()).unwrap());
        let option = data
            .dcs
            .get(&DcKey { id, flags: flags.identity() })
            .unwrap_or_else(|| panic!("{name}: no DC {id} flags {flags:?}"));
        assert_eq!(option.addr.ip(), ip(&d["address"]), "{name}: DC {id} address");
        assert_eq!(i64::from(option.addr.port()), d["port"].as_i64().unwrap(), "{name}: DC {id} port");
        assert_eq!(option.addr.is_ipv6(), d["ipv6"].as_bool().unwrap(), "{name}: DC {id}");
        assert_eq!(key_hex(data, option.key()).as_deref(), d["auth_key_hex"].as_str(), "{name}: DC {id} key");
        assert_eq!(option.server_salt, d["first_salt"].as_i64().unwrap(), "{name}: DC {id} salt");
        assert_eq!(i64::from(option.time_offset), d["time_offset"].as_i64().unwrap(), "{name}: DC {id} offset");
        assert_eq!(option.flags.0 & 31, flags.0, "{name}: DC {id} flags");
    }
    let state = &e["update_state"];
    let u = &data.updates;
    assert_eq!(
        [u.pts, u.qts, u.date, u.seq].map(i64::from),
        ["pts", "qts", "date", "seq"].map(|k| state[k].as_i64().unwrap()),
        "{name}: update state"
    );
    let channels = e["channels"].as_array().unwrap();
    assert_eq!(u.channels.len(), channels.len(), "{name}: channels");
    for c in channels {
        let id = c["id"].as_i64().unwrap();
        assert_eq!(u.channels.get(&id).map(|p| i64::from(*p)), c["pts"].as_i64(), "{name}: channel {id}");
    }
    let peers = e["peers"].as_array().unwrap();
    assert_eq!(data.peers.len(), peers.len(), "{name}: peers");
    for p in peers {
        let id = p["id"].as_i64().unwrap();
        let class = match p["kind"].as_str().unwrap() {
            "user" => PeerClass::User,
            "channel" => PeerClass::Channel,
            "chat" => PeerClass::Chat,
            other => panic!("{name}: peer kind {other}"),
        };
        let peer = data.peers.get(PeerKey::new(class, id)).unwrap_or_else(|| panic!("{name}: no peer {id}"));
        assert_eq!(peer.access_hash, p["access_hash"].as_i64().unwrap(), "{name}: peer {id} hash");
    }
    if let Some(min) = e["min_peers"].as_array() {
        assert_eq!(data.min_contexts.len(), min.len(), "{name}: min contexts");
        for (m, c) in min.iter().zip(&data.min_contexts) {
            assert_eq!(c.user_id, m["user_id"].as_i64().unwrap(), "{name}");
            assert_eq!(c.peer_id, m["peer_id"].as_i64().unwrap(), "{name}");
            assert_eq!(i64::from(c.msg_id), m["msg_id"].as_i64().unwrap(), "{name}");
        }
    }
    assert_eq!(
        data.future_auth_token.as_deref().map(hex).as_deref(),
        e["future_auth_token_hex"].as_str(),
        "{name}: future auth token"
    );
    if let Some(compact) = e.get("compact") {
        let user = data.user.unwrap_or_else(|| panic!("{name}: no user"));
        assert_eq!(user.id, compact["user_id"].as_i64().unwrap(), "{name}: user id");
    }
}

#[test]
fn every_string_fixture_imports_exactly() {
    let fixtures = string_fixtures();
    assert!(fixtures.len() >= 15, "only {} string fixtures found", fixtures.len());
    for (path, text, expected) in &fixtures {
        let name = path.file_name().unwrap().to_string_lossy();
        let format = expected_format(expected, text);
        assert_eq!(foreign::detect(text).map_err(|e| e.to_string()), Ok(format), "{name}: detect");
        let (data, got) = foreign::import(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, format, "{name}");
        if expected.get("dcs").is_some() {
            check_dcs(&name, &data, expected);
        } else {
            check_top_level(&name, &data, expected);
        }
    }
}

#[test]
fn every_string_fixture_reexports_byte_identically() {
    for (path, text, expected) in string_fixtures() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let format = expected_format(&expected, &text);
        let (data, _) = foreign::import(&text).unwrap();
        let again = foreign::export(&data, format).unwrap_or_else(|e| panic!("{name}: export: {e}"));
        if matches!(format, StringFormat::LayerClient | StringFormat::Ferogram) {
            // layer-client and ferogram write DCs and peers in hash-map order, so their own output
            // is not deterministic: same length, and the same session when read back.
            assert_eq!(again.len(), text.trim().len(), "{name}: re-export length differs");
            assert_eq!(foreign::import(&again).unwrap(), (data.clone(), format), "{name}: re-export differs");
        } else {
            assert_eq!(again, text.trim(), "{name}: re-export differs");
        }
        // And through our own forms, nothing is lost.
        let full = session_string::encode_full(&data).unwrap();
        assert_eq!(session_string::decode(&full).unwrap(), data, "{name}: full round trip");
    }
}

#[test]
fn compact_form_keeps_what_it_promises() {
    for (path, text, _) in string_fixtures() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (data, _) = foreign::import(&text).unwrap();
        if data.auth_key(data.home_dc).is_none() {
            continue;
        }
        let compact = session_string::encode_compact(&data).unwrap();
        assert!(compact.len() <= 400, "{name}: compact string is {} characters", compact.len());
        let back = session_string::decode(&compact).unwrap();
        assert_eq!(back.home_dc, data.home_dc, "{name}");
        assert_eq!(back.home().map(|o| o.addr), data.home().map(|o| o.addr), "{name}");
        assert_eq!(back.auth_key(back.home_dc), data.auth_key(data.home_dc), "{name}");
        assert_eq!(back.user, data.user, "{name}");
        assert_eq!(back.test_mode, data.test_mode, "{name}");
        assert_eq!(foreign::detect(&compact).unwrap(), StringFormat::Compact);
    }
}
