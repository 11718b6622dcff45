//! Every SQLite `.session` artifact under `fixtures/` imports with exactly the values its
//! `.expected.json` lists, and importing never changes the source file.

mod common;

use std::net::SocketAddr;

use serde_json::Value;
use session_core::{dc_table, DcFlags, DcKey, PeerKey, PeerKind, SessionData};
use session_sqlite::foreign::{self, ForeignFormat};

fn expected(dir: &str, name: &str) -> Value {
    let path = common::fixtures().join(dir).join(format!("{name}.expected.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("expected.json parses")
}

fn kind_from(name: &str) -> PeerKind {
    match name {
        "user" => PeerKind::User,
        "bot" => PeerKind::Bot,
        "chat" => PeerKind::BasicGroup,
        "channel" => PeerKind::Broadcast,
        "supergroup" => PeerKind::Megagroup,
        other => panic!("unknown source_type {other}"),
    }
}

async fn import_fixture(dir: &str, name: &str, format: ForeignFormat) -> (SessionData, Value) {
    let path = common::fixtures().join(dir).join(format!("{name}.session"));
    let before = std::fs::read(&path).expect("fixture");
    assert_eq!(foreign::detect(&path).await.expect("detect"), format);
    let imported = foreign::import(&path).await.unwrap_or_else(|e| panic!("import {name}: {e}"));
    assert_eq!(imported.format, format);
    assert_eq!(std::fs::read(&path).expect("fixture"), before, "import changed the source file");
    let mut wal = path.clone().into_os_string();
    wal.push("-wal");
    assert!(!std::path::Path::new(&wal).exists(), "import left a -wal beside the source");
    (imported.session, expected(dir, name))
}

fn check(s: &SessionData, e: &Value, subtypes: bool) {
    let dc = e["dc_id"].as_i64().expect("dc_id");
    assert_eq!(i64::from(s.home_dc), dc, "home DC");
    let home = s.home().expect("home option");
    let key = home.auth_key.as_ref().expect("auth key");
    assert_eq!(common::hex(key.as_bytes()), e["auth_key_hex"].as_str().expect("key hex"), "auth key");
    assert_eq!(key.key_id(), e["auth_key_id_i64"].as_i64().expect("key id"));
    let test_mode = e["test_mode"].as_bool();
    assert_eq!(s.test_mode, test_mode.unwrap_or(false), "test mode");
    match (e["server_address"].as_str(), e["port"].as_u64()) {
        (Some(ip), Some(port)) => assert_eq!(home.addr, format!("{ip}:{port}").parse::<SocketAddr>().expect("addr")),
        // Pyrogram stores no address: the published one for the DC.
        _ => assert_eq!(Some(home.addr), dc_table::address(s.home_dc, s.test_mode), "published address"),
    }
    let user = s.user.expect("user");
    assert_eq!(user.id, e["user_id"].as_i64().expect("user_id"));
    assert_eq!(user.bot, e["is_bot"].as_bool().unwrap_or(false), "is_bot");
    assert_eq!(s.api_id.map(i64::from), e["api_id"].as_i64(), "api_id");

    let peers = e["peers"].as_array().expect("peers");
    assert_eq!(s.peers.len(), peers.len(), "peer count");
    for p in peers {
        let marked = p["id"].as_i64().expect("id");
        let key = PeerKey::from_marked(marked);
        assert_eq!(key.marked(), marked);
        let got = s.peers.get(key).unwrap_or_else(|| panic!("peer {marked} missing"));
        assert_eq!(got.id, p["bare_id"].as_i64().expect("bare id"));
        assert_eq!(got.access_hash, p["access_hash"].as_i64().expect("hash"), "hash of {marked}");
        let kind = if subtypes {
            kind_from(p["source_type"].as_str().expect("source_type"))
        } else {
            match p["type"].as_str().expect("type") {
                "user" => PeerKind::User,
                "chat" => PeerKind::BasicGroup,
                "channel" => PeerKind::Channel,
                other => panic!("unknown type {other}"),
            }
        };
        assert_eq!(got.kind, kind, "kind of {marked}");
        let mut names: Vec<String> = match (&p["usernames"], &p["username"]) {
            (Value::Array(list), _) => list.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            (_, Value::String(u)) => vec![u.clone()],
            _ => Vec::new(),
        };
        if let Value::Array(extra) = &p["extra_usernames"] {
            names.extend(extra.iter().filter_map(|v| v.as_str().map(str::to_owned)));
        }
        assert_eq!(got.usernames, names, "usernames of {marked}");
        assert_eq!(got.phone.as_deref(), p["phone"].as_str(), "phone of {marked}");
        assert!(!got.min);
    }

    match &e["update_state"] {
        Value::Null => assert_eq!(s.updates, Default::default(), "no update state stored"),
        st => {
            let u = &s.updates;
            let field = |k: &str| st[k].as_i64().map(|v| i32::try_from(v).expect("i32"));
            assert_eq!(
                (Some(u.pts), Some(u.qts), Some(u.date), Some(u.seq)),
                (field("pts"), field("qts"), field("date"), field("seq"))
            );
        }
    }
    let channels: std::collections::BTreeMap<i64, i32> = e["channel_update_states"]
        .as_array()
        .expect("channels")
        .iter()
        .map(|c| (c["channel_id"].as_i64().expect("id"), i32::try_from(c["pts"].as_i64().expect("pts")).expect("pts")))
        .collect();
    assert_eq!(s.updates.channels, channels, "channel pts");
}

#[tokio::test]
async fn telethon_fixture_imports_exactly() {
    let (s, e) = import_fixture("telethon", "telethon-sqlite", ForeignFormat::Telethon).await;
    check(&s, &e, false);
    assert_eq!(s.dcs.len(), 1);
}

#[tokio::test]
async fn pyrogram_fixture_imports_exactly() {
    let (s, e) = import_fixture("pyrogram", "pyrogram-file", ForeignFormat::Pyrogram).await;
    check(&s, &e, true);
}

#[tokio::test]
async fn pyrofork_fixture_imports_exactly() {
    let (s, e) = import_fixture("pyrofork", "pyrofork-file", ForeignFormat::Pyrofork).await;
    check(&s, &e, true);
}

#[tokio::test]
async fn kurigram_fixture_imports_exactly() {
    let (s, e) = import_fixture("kurigram", "kurigram-file", ForeignFormat::Kurigram).await;
    check(&s, &e, true);
}

#[tokio::test]
async fn mtcute_fixture_imports_exactly() {
    let (s, e) = import_fixture("mtcute", "mtcute-sqlite", ForeignFormat::Mtcute).await;
    check(&s, &e, true);
    let media = &e["media_dc"];
    let dc = i32::try_from(media["id"].as_i64().expect("id")).expect("dc");
    let option = s.dcs.get(&DcKey { id: dc, flags: DcFlags::MEDIA_ONLY }).expect("media option");
    let addr: SocketAddr = format!("{}:{}", media["ip"].as_str().expect("ip"), media["port"]).parse().expect("addr");
    assert_eq!(option.addr, addr);
    assert!(option.flags.contains(DcFlags::MEDIA_ONLY));
    assert_eq!(s.dcs.len(), 2, "main and media options");
}

#[tokio::test]
async fn our_own_database_and_other_files_are_not_mistaken_for_foreign_sessions() {
    let dir = tempfile::tempdir().expect("dir");
    let ours = dir.path().join("ours.db");
    let backend = session_sqlite::SqliteBackend::open(&ours).await.expect("open");
    drop(backend);
    let err = foreign::import(&ours).await.expect_err("ours is not foreign");
    assert!(matches!(err, session_core::SessionError::Invalid { .. }), "{err}");
    let text = dir.path().join("text.session");
    std::fs::write(&text, b"not sqlite at all, just some text that is long enough to be a header.....").expect("write");
    let err = foreign::import(&text).await.expect_err("garbage");
    assert!(matches!(err, session_core::SessionError::Corrupt { .. }), "{err}");
}

#[tokio::test]
async fn changes_still_in_the_wal_are_imported() {
    let dir = tempfile::tempdir().expect("dir");
    let live = dir.path().join("live.session");
    std::fs::copy(common::fixtures().join("mtcute").join("mtcute-sqlite.session"), &live).expect("copy");
    // A writer that has not checkpointed yet: the new pts exists only in live.session-wal.
    let writer = rusqlite::Connection::open(&live).expect("open");
    writer.execute_batch("PRAGMA wal_autocheckpoint = 0;").expect("no checkpoint");
    writer
        .execute("UPDATE key_value SET value = ?1 WHERE key = 'updates_pts'", [777_777i32.to_le_bytes().to_vec()])
        .expect("update");
    let mut wal = live.clone().into_os_string();
    wal.push("-wal");
    assert!(std::fs::metadata(&wal).expect("wal").len() > 0);
    let before = std::fs::read(&live).expect("read");
    let imported = foreign::import(&live).await.expect("import");
    assert_eq!(imported.session.updates.pts, 777_777, "the WAL was not read");
    assert_eq!(std::fs::read(&live).expect("read"), before, "import changed the source");
    drop(writer);
}

/// Pyrogram, kurigram and pyrofork store `api_id` as given and read back a value above
/// `i32::MAX` (their artifacts under `*/api-id-above-i32/` hold 3,000,000,000). The import keeps
/// the auth key, user, peers and update state exactly, drops the api_id (Telegram's is a signed
/// 32-bit int) and says so in `warnings`. Before, the whole file was refused.
#[tokio::test]
async fn pyrogram_family_api_id_above_i32_imports_with_a_warning() {
    for (lib, format) in [
        ("pyrogram", ForeignFormat::Pyrogram),
        ("kurigram", ForeignFormat::Kurigram),
        ("pyrofork", ForeignFormat::Pyrofork),
    ] {
        let dir = format!("{lib}/api-id-above-i32");
        let name = format!("{lib}-api-id-above-i32");
        let path = common::fixtures().join(&dir).join(format!("{name}.session"));
        let imported = foreign::import(&path).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(imported.format, format, "{name}");
        let mut e = expected(&dir, &name);
        let api_id = e["api_id"].as_i64().expect("api_id");
        assert!(api_id > i64::from(i32::MAX), "{name}: the artifact's api_id {api_id} is above i32::MAX");
        assert_eq!(imported.warnings.len(), 1, "{name}: {:?}", imported.warnings);
        assert!(imported.warnings[0].contains(&api_id.to_string()), "{name}: {:?}", imported.warnings);
        // Everything else exactly as the library reads it back; api_id not kept.
        e["api_id"] = Value::Null;
        check(&imported.session, &e, true);
        assert_eq!(imported.session.api_id, None, "{name}");
    }
}

#[tokio::test]
async fn an_api_id_that_fits_gives_no_warning() {
    for (lib, format) in [
        ("pyrogram", ForeignFormat::Pyrogram),
        ("kurigram", ForeignFormat::Kurigram),
        ("pyrofork", ForeignFormat::Pyrofork),
    ] {
        let path = common::fixtures().join(lib).join(format!("{lib}-file.session"));
        let imported = foreign::import(&path).await.unwrap_or_else(|e| panic!("{lib}: {e}"));
        assert_eq!((imported.format, imported.warnings.len()), (format, 0), "{lib}: {:?}", imported.warnings);
    }
}
