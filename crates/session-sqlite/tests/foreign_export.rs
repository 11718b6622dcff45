//! Files we export are opened by the real Telethon, Pyrogram, pyrofork and kurigram (run from the
//! virtualenvs `cargo xtask setup` installs), which read back the values we wrote; and our own
//! importer reads them back too.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use session_core::{
    AuthKey, Change, DcOption, Peer, PeerKind, SelfUser, SessionData, SessionError, UpdateState, UpdateStateChange,
};
use session_sqlite::foreign::{self, ForeignFormat};

fn key() -> AuthKey {
    let mut bytes = [0u8; 256];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::try_from((i * 7 + 3) % 256).expect("byte");
    }
    AuthKey::new(bytes)
}

/// A session with one peer of every kind, channels, user and api_id.
fn session(bot: bool) -> SessionData {
    let mut s = SessionData::default();
    s.apply(&Change::SetApiId(Some(94575)));
    s.apply(&Change::SetDc(DcOption::new(4, "149.154.167.91:443".parse().expect("addr")).with_auth_key(Some(key()))));
    s.apply(&Change::SetDc(DcOption::new(2, "149.154.167.51:443".parse().expect("addr"))));
    s.apply(&Change::SetHomeDc(4));
    s.apply(&Change::SetUser(Some(SelfUser::new(7_000_000_001, bot))));
    let mut state = UpdateState::new(4242, 17, 1_700_000_500, 33);
    state.channels.insert(1_234_567_890, 999);
    state.channels.insert(2_000_000_001, 5);
    s.apply(&Change::UpdateState(UpdateStateChange::All(state)));
    for peer in peers() {
        s.apply(&Change::UpsertPeer(peer));
    }
    // A "min" peer is never exported: its hash is only valid where it was seen.
    s.apply(&Change::UpsertPeer(Peer::new(555, PeerKind::User, 1).with_min(true)));
    s
}

fn peers() -> Vec<Peer> {
    vec![
        Peer::new(123_456_789, PeerKind::User, 1_234_567_890_123_456_789)
            .with_usernames(vec!["Alice_Dev".into(), "alice_alt".into()])
            .with_phone(Some("15551230001".into())),
        Peer::new(5_000_000_001, PeerKind::Bot, -4_321_098_765_432_109_876)
            .with_usernames(vec!["devhelper_bot".into()]),
        Peer::new(987_654_321, PeerKind::BasicGroup, 0),
        Peer::new(1_234_567_890, PeerKind::Broadcast, -7_000_000_000_000_000_007)
            .with_usernames(vec!["devnews".into()]),
        Peer::new(2_000_000_001, PeerKind::Megagroup, i64::MAX),
        Peer::new(2_000_000_002, PeerKind::Channel, i64::MIN),
    ]
}

fn marked_args() -> Vec<String> {
    peers().iter().map(|p| p.key().marked().to_string()).collect()
}

fn check_peers(read: &Value) {
    for p in peers() {
        let marked = p.key().marked().to_string();
        let got = &read["peers"][&marked];
        assert_eq!(got["id"].as_i64(), Some(p.id), "{marked}: {read}");
        assert_eq!(got["access_hash"].as_i64(), Some(p.access_hash), "{marked}: {read}");
        let kind = match p.kind.class() {
            session_core::PeerClass::User => "user",
            session_core::PeerClass::Chat => "chat",
            session_core::PeerClass::Channel => "channel",
        };
        assert_eq!(got["kind"].as_str(), Some(kind), "{marked}");
    }
}

fn check_common(read: &Value, s: &SessionData) {
    let home = s.home().expect("home");
    assert_eq!(read["dc_id"].as_i64(), Some(i64::from(s.home_dc)), "{read}");
    assert_eq!(read["auth_key"].as_str(), Some(common::hex(key().as_bytes()).as_str()), "{read}");
    assert_eq!(read["user_id"].as_i64(), s.user.map(|u| u.id), "{read}");
    if let Some(address) = read.get("server_address") {
        assert_eq!(address.as_str(), Some(home.addr.ip().to_string().as_str()), "{read}");
        assert_eq!(read["port"].as_u64(), Some(u64::from(home.addr.port())), "{read}");
    }
    check_peers(read);
}

fn states(read: &Value) -> BTreeMap<String, (i64, i64)> {
    read["update_states"]
        .as_object()
        .expect("update states")
        .iter()
        .map(|(k, v)| (k.clone(), (v["pts"].as_i64().unwrap_or(-1), v["date"].as_i64().unwrap_or(-1))))
        .collect()
}

async fn export(s: &SessionData, format: ForeignFormat, dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.session"));
    foreign::export(s, format, &path).await.unwrap_or_else(|e| panic!("export {format}: {e}"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "exported file is not private");
    }
    path
}

/// Our importer reads an export back as the same session, less what the format cannot hold.
async fn round_trip(path: &Path, format: ForeignFormat, s: &SessionData) -> SessionData {
    let back = foreign::import(path).await.expect("import our export");
    assert_eq!(back.format, format);
    let b = back.session;
    assert_eq!(b.home_dc, s.home_dc);
    assert_eq!(b.home().map(|o| (o.addr, o.auth_key.clone())), s.home().map(|o| (o.addr, o.auth_key.clone())));
    assert_eq!(b.peers.len(), peers().len(), "min peer left out, every other one kept");
    for p in peers() {
        let got = b.peers.get(p.key()).expect("peer");
        assert_eq!(got.access_hash, p.access_hash);
    }
    b
}

#[tokio::test]
async fn telethon_opens_what_we_export() {
    let dir = tempfile::tempdir().expect("dir");
    let s = session(false);
    let path = export(&s, ForeignFormat::Telethon, dir.path(), "telethon").await;
    let back = round_trip(&path, ForeignFormat::Telethon, &s).await;
    assert_eq!(back.updates, s.updates);
    let alice = back.peers.get(peers()[0].key()).expect("alice");
    assert_eq!(alice.usernames, vec!["alice_dev".to_owned()], "Telethon keeps one lowercase username");
    assert_eq!(alice.phone.as_deref(), Some("15551230001"));

    let mut args = vec![path.display().to_string()];
    args.extend(marked_args());
    let read = common::run_python("venv-telethon", "read_telethon.py", &args);
    check_common(&read, &s);
    let st = states(&read);
    assert_eq!(st.get("0"), Some(&(4242, 1_700_000_500)), "{read}");
    assert_eq!(st.get("1234567890").map(|v| v.0), Some(999), "{read}");
    assert_eq!(st.len(), 3, "{read}");
}

#[tokio::test]
async fn telethon_opens_an_export_of_the_imported_fixture() {
    let dir = tempfile::tempdir().expect("dir");
    let fixture = common::fixtures().join("telethon").join("telethon-sqlite.session");
    let imported = foreign::import(&fixture).await.expect("import").session;
    let path = dir.path().join("again.session");
    foreign::export(&imported, ForeignFormat::Telethon, &path).await.expect("export");
    let read =
        common::run_python("venv-telethon", "read_telethon.py", &[path.display().to_string(), "-1001234567890".into()]);
    assert_eq!(read["server_address"].as_str(), Some("149.154.167.51"));
    assert_eq!(read["port"].as_i64(), Some(443));
    assert_eq!(read["user_id"].as_i64(), Some(111_222_333));
    assert_eq!(read["peers"]["-1001234567890"]["access_hash"].as_i64(), Some(-7_000_000_000_000_000_007));
    assert_eq!(foreign::import(&path).await.expect("re-import").session, imported, "Telethon round trip is exact");
}

async fn pyrogram_family(format: ForeignFormat, venv: &str, version: i64) {
    let dir = tempfile::tempdir().expect("dir");
    let s = session(true);
    let path = export(&s, format, dir.path(), "exported").await;
    let back = round_trip(&path, format, &s).await;
    assert_eq!((back.api_id, back.test_mode, back.user), (s.api_id, s.test_mode, s.user));
    let alice = back.peers.get(peers()[0].key()).expect("alice");
    match format {
        ForeignFormat::Pyrogram => assert_eq!(alice.usernames, vec!["alice_dev".to_owned()]),
        _ => assert_eq!(alice.usernames, vec!["alice_dev".to_owned(), "alice_alt".to_owned()]),
    }
    for p in peers() {
        // Pyrogram's types: "channel" (a broadcast, or a channel of unknown subtype) and "supergroup".
        let kind = match p.kind {
            PeerKind::Channel => PeerKind::Broadcast,
            PeerKind::Gigagroup => PeerKind::Megagroup,
            k => k,
        };
        assert_eq!(back.peers.get(p.key()).map(|b| b.kind), Some(kind), "Pyrogram keeps the subtype");
    }
    if format != ForeignFormat::Pyrogram {
        assert_eq!(back.updates, s.updates);
    }

    let mut args = vec![dir.path().display().to_string(), "exported".to_owned()];
    args.extend(marked_args());
    let read = common::run_python(venv, "read_pyrogram.py", &args);
    check_common(&read, &s);
    assert_eq!(read["version"].as_i64(), Some(version), "{read}");
    assert_eq!(read["api_id"].as_i64(), Some(94575), "{read}");
    assert_eq!(read["test_mode"].as_bool(), Some(false), "{read}");
    assert_eq!(read["is_bot"].as_bool(), Some(true), "{read}");
    if format == ForeignFormat::Kurigram {
        assert_eq!(read["server_address"].as_str(), Some("149.154.167.91"), "{read}");
    }
    if format != ForeignFormat::Pyrogram {
        let st = states(&read);
        assert_eq!(st.get("0").map(|v| v.0), Some(4242), "{read}");
        assert_eq!(st.get("-1001234567890").map(|v| v.0), Some(999), "{read}");
    }
}

#[tokio::test]
async fn pyrogram_opens_what_we_export() {
    pyrogram_family(ForeignFormat::Pyrogram, "venv-pyrogram", 3).await;
}

#[tokio::test]
async fn pyrofork_opens_what_we_export() {
    pyrogram_family(ForeignFormat::Pyrofork, "venv-pyrofork", 4).await;
}

#[tokio::test]
async fn kurigram_opens_what_we_export() {
    pyrogram_family(ForeignFormat::Kurigram, "venv-kurigram", 7).await;
}

#[tokio::test]
async fn export_never_replaces_a_file_and_needs_a_home_dc() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("taken.session");
    std::fs::write(&path, b"precious").expect("write");
    let err = foreign::export(&session(false), ForeignFormat::Telethon, &path).await.expect_err("exists");
    assert!(
        matches!(&err, SessionError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).expect("read"), b"precious");
    let empty = dir.path().join("empty.session");
    let err = foreign::export(&SessionData::default(), ForeignFormat::Pyrogram, &empty).await.expect_err("no DC");
    assert!(matches!(err, SessionError::Invalid { .. }), "{err}");
    assert!(!empty.exists(), "a failed export leaves no file");
    let err = foreign::export(&session(false), ForeignFormat::Mtcute, dir.path().join("m.session"))
        .await
        .expect_err("mtcute");
    assert!(matches!(err, SessionError::Invalid { .. }), "{err}");
}
