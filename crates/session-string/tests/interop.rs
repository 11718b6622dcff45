//! Round trip through the real libraries: Telethon, Pyrogram, kurigram, pyrofork (PyPI), GramJS
//! and mtcute (npm) each load the strings we export, offline, and report what they read
//! (scripts in `tests/interop/`). The tools are installed by `cargo xtask setup` into
//! `target/tools` (or `$LAYER_TOOLS`); when they are missing this test fails.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use session_core::{dc_table, AuthKey, DcFlags, DcOption, SelfUser, SessionData};
use session_string::foreign::{self, StringFormat};

fn workspace() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).to_path_buf()
}

fn tools() -> PathBuf {
    std::env::var_os("LAYER_TOOLS").map(PathBuf::from).unwrap_or_else(|| workspace().join("target").join("tools"))
}

fn script(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop")).join(name)
}

fn require(path: &Path) -> &Path {
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask setup` to install the libraries the interop test needs",
        path.display()
    );
    path
}

/// Runs a reader script over `strings` and returns one JSON object per string.
fn read_with(program: &Path, script_name: &str, strings: &[String]) -> Vec<Value> {
    let node_modules = tools().join("node").join("node_modules");
    if program.is_absolute() {
        require(program);
    }
    let output = Command::new(program)
        .arg(script(script_name))
        .args(strings)
        .env("LAYER_NODE_MODULES", &node_modules)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}): run `cargo xtask setup`", program.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{} {script_name} failed ({}):\n{stdout}\n{}",
        program.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let values: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{script_name}: bad JSON {l}: {e}")))
        .collect();
    assert_eq!(values.len(), strings.len(), "{script_name}: one line per string expected:\n{stdout}");
    values
}

fn key(seed: u8) -> AuthKey {
    let mut bytes = [0u8; 256];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = seed.wrapping_mul(73).wrapping_add(u8::try_from(i).unwrap().wrapping_mul(29)) ^ 0x5a;
    }
    AuthKey::new(bytes)
}

fn session(dc: i32, addr: &str, key_seed: u8, user: Option<SelfUser>, api_id: Option<i32>, test: bool) -> SessionData {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut data = SessionData::default();
    data.home_dc = dc;
    let option = DcOption::new(dc, addr).with_auth_key(Some(key(key_seed)));
    data.dcs.insert(option.key(), option);
    data.user = user;
    data.api_id = api_id;
    data.test_mode = test;
    data
}

fn sessions() -> Vec<SessionData> {
    let mut with_media =
        session(2, "149.154.167.51:443", 1, Some(SelfUser::new(5_000_000_001, true)), Some(12345), false);
    let media = DcOption::new(2, "149.154.167.222:443".parse().unwrap()).with_flags(DcFlags::MEDIA_ONLY);
    with_media.dcs.insert(media.key(), media);
    vec![
        with_media,
        session(4, "[2001:67c:4e8:f004::a]:443", 2, Some(SelfUser::new(111_222_333, false)), Some(777), false),
        session(2, "149.154.167.40:443", 3, Some(SelfUser::new(42, false)), Some(1), true),
        session(1, "149.154.175.53:80", 4, Some(SelfUser::new(4_000_000_000, true)), Some(2_000_000_000), false),
    ]
}

fn hex(data: &SessionData) -> String {
    data.auth_key(data.home_dc).unwrap().as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn home(data: &SessionData) -> SocketAddr {
    data.home().unwrap().addr
}

fn export_all(format: StringFormat) -> (Vec<SessionData>, Vec<String>) {
    let mut sessions = sessions();
    if format == StringFormat::PyrogramLegacyU32 {
        // That layout holds 32-bit user ids only (exporting others is an error, tested below).
        sessions.retain(|s| s.user.is_some_and(|u| u32::try_from(u.id).is_ok()));
        assert!(sessions.len() >= 2);
    }
    let strings = sessions.iter().map(|s| foreign::export(s, format).unwrap()).collect();
    (sessions, strings)
}

#[test]
fn telethon_reads_our_telethon_strings() {
    let (sessions, strings) = export_all(StringFormat::Telethon);
    let python = tools().join("venv-telethon").join("bin").join("python");
    for (data, read) in sessions.iter().zip(read_with(&python, "telethon_read.py", &strings)) {
        assert_eq!(read["dc"], data.home_dc, "{read}");
        assert_eq!(read["address"], home(data).ip().to_string(), "{read}");
        assert_eq!(read["port"], home(data).port(), "{read}");
        assert_eq!(read["auth_key_hex"], hex(data), "{read}");
    }
}

#[test]
fn gramjs_reads_our_gramjs_and_telethon_strings() {
    let node = PathBuf::from("node");
    require(&tools().join("node").join("node_modules").join("telegram"));
    for format in [StringFormat::GramJs, StringFormat::Telethon] {
        let (sessions, strings) = export_all(format);
        for (data, read) in sessions.iter().zip(read_with(&node, "gramjs_read.mjs", &strings)) {
            assert_eq!(read["dc"], data.home_dc, "{format}: {read}");
            // GramJS shows a packed IPv6 address (Telethon's) in its own spelling.
            let ip: std::net::IpAddr = read["address"].as_str().unwrap().parse().unwrap();
            assert_eq!(ip, home(data).ip(), "{format}: {read}");
            assert_eq!(read["port"], home(data).port(), "{format}: {read}");
            assert_eq!(read["auth_key_hex"], hex(data), "{format}: {read}");
        }
    }
}

#[test]
fn mtcute_reads_our_mtcute_strings() {
    let node = PathBuf::from("node");
    require(&tools().join("node").join("node_modules").join("@mtcute").join("core"));
    let (sessions, strings) = export_all(StringFormat::MtcuteV3);
    for (data, read) in sessions.iter().zip(read_with(&node, "mtcute_read.mjs", &strings)) {
        assert_eq!(read["dc"], data.home_dc, "{read}");
        assert_eq!(read["address"], home(data).ip().to_string(), "{read}");
        assert_eq!(read["port"], home(data).port(), "{read}");
        assert_eq!(read["ipv6"], home(data).is_ipv6(), "{read}");
        assert_eq!(read["test_mode"], data.test_mode, "{read}");
        let user = data.user.unwrap();
        assert_eq!(read["user_id"], user.id, "{read}");
        assert_eq!(read["is_bot"], user.bot, "{read}");
        assert_eq!(read["auth_key_hex"], hex(data), "{read}");
        let media = data.dcs.values().find(|o| o.flags.contains(DcFlags::MEDIA_ONLY));
        match media {
            Some(m) => {
                assert_eq!(read["media"]["address"], m.addr.ip().to_string(), "{read}");
                assert_eq!(read["media"]["media_only"], true, "{read}");
            }
            None => assert!(read["media"].is_null(), "{read}"),
        }
    }
}

fn check_pyrogram_family(venv: &str) {
    let python = tools().join(venv).join("bin").join("python");
    for format in [StringFormat::Pyrogram, StringFormat::PyrogramLegacy, StringFormat::PyrogramLegacyU32] {
        let (sessions, strings) = export_all(format);
        for (data, read) in sessions.iter().zip(read_with(&python, "pyrogram_read.py", &strings)) {
            let user = data.user.unwrap();
            assert_eq!(read["dc"], data.home_dc, "{venv} {format}: {read}");
            assert_eq!(read["test_mode"], data.test_mode, "{venv} {format}: {read}");
            assert_eq!(read["auth_key_hex"], hex(data), "{venv} {format}: {read}");
            assert_eq!(read["user_id"], user.id, "{venv} {format}: {read}");
            assert_eq!(read["is_bot"], user.bot, "{venv} {format}: {read}");
            match format {
                StringFormat::Pyrogram => assert_eq!(read["api_id"], data.api_id.unwrap(), "{venv}: {read}"),
                _ => assert!(read["api_id"].is_null(), "{venv} {format}: {read}"),
            }
            if let (Some(address), StringFormat::Pyrogram) = (read.get("address"), format) {
                // kurigram maps the DC id to its own address table, as we map it to ours.
                let ours = dc_table::address(data.home_dc, data.test_mode).unwrap();
                assert_eq!(address, &Value::from(ours.ip().to_string()), "{venv}: {read}");
            }
        }
    }
}

#[test]
fn pyrogram_reads_our_pyrogram_strings() {
    check_pyrogram_family("venv-pyrogram");
}

#[test]
fn kurigram_reads_our_pyrogram_strings() {
    check_pyrogram_family("venv-kurigram");
}

#[test]
fn pyrofork_reads_our_pyrogram_strings() {
    check_pyrogram_family("venv-pyrofork");
}

#[test]
fn what_a_format_cannot_hold_is_an_error_naming_it() {
    let mut data = sessions().remove(0);
    data.api_id = None;
    let err = foreign::export(&data, StringFormat::Pyrogram).unwrap_err().to_string();
    assert!(err.contains("api_id"), "{err}");
    let err = foreign::export(&data, StringFormat::PyrogramLegacyU32).unwrap_err().to_string();
    assert!(err.contains("32 bits"), "{err}");
    data.user = None;
    let err = foreign::export(&data, StringFormat::PyrogramLegacy).unwrap_err().to_string();
    assert!(err.contains("user"), "{err}");
    data.dcs.clear();
    for format in StringFormat::ALL {
        if matches!(format, StringFormat::Full | StringFormat::LayerClient | StringFormat::Ferogram) {
            // These hold the whole session, whatever it is.
            continue;
        }
        let err = foreign::export(&data, format).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("home DC") || err.contains("DC 2"), "{format}: {err}");
    }
}
