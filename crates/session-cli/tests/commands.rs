//! `layer-session` commands: lossy refusals, exit codes, reading a session a running program
//! holds, batch conversion, verify and export-string.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{copy_fixtures, inspect, run, s, tool};

fn fixture(dir: &Path, rel: &str) -> PathBuf {
    dir.join(rel)
}

#[test]
fn lossy_conversions_are_refused_with_exit_4_and_allowed_with_the_flag() {
    let dir = copy_fixtures();
    let out = tempfile::tempdir().expect("tempdir");
    let cases = [
        // Peers, update state and the user into a Telethon string.
        ("telethon/telethon-sqlite.session", "telethon:-", "cached"),
        // Three DC entries into a one-DC string.
        ("layer/layer-v3-dev.session", "telethon:-", "DC option"),
        // A bot user and api_id into GramJS, which holds neither.
        ("pyrogram/pyrogram-bot-string.txt", "gramjs:-", "logged-in user"),
        // Min contexts, basic groups and a token into layer v3.
        ("ferogram/ferogram-v8-dev.session", "layer:-", "min-peer context"),
        // Peer subtypes into Telethon's SQLite, which has none.
        ("ferogram/ferogram-v8-dev.session", "file-then-telethon", "subtype"),
    ];
    for (i, (src, dest, dropped)) in cases.into_iter().enumerate() {
        let src = fixture(dir.path(), src);
        let dest = if dest == "file-then-telethon" {
            format!("telethon:{}", s(&out.path().join(format!("{i}.session"))))
        } else {
            dest.to_owned()
        };
        let (code, stdout, err) = run(&["convert", s(&src), &dest]);
        assert_eq!(code, 4, "{} -> {dest} must be refused: {err}", src.display());
        assert!(stdout.is_empty(), "nothing is written when refused");
        assert!(err.contains(dropped), "the refusal names what would be dropped ({dropped}): {err}");
        assert!(err.contains("--allow-lossy"), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        if let Some((_, path)) = dest.split_once(':').filter(|(_, p)| *p != "-") {
            assert!(!Path::new(path).exists(), "a refused conversion leaves no file");
        }
        let (code, stdout, err) = run(&["convert", "--allow-lossy", s(&src), &dest]);
        assert_eq!(code, 0, "{} -> {dest} with --allow-lossy: {err}", src.display());
        assert!(err.contains("dropped") && err.contains(dropped), "says what was dropped: {err}");
        if dest.ends_with(":-") {
            assert!(!stdout.trim().is_empty(), "the string is printed");
        }
    }
}

#[test]
fn our_formats_take_everything_without_a_lossy_refusal() {
    let dir = copy_fixtures();
    let out = tempfile::tempdir().expect("tempdir");
    let src = fixture(dir.path(), "ferogram/ferogram-v8-dev.session");
    for (i, dest) in ["file:a.session", "sqlite:a.db", "string:a.txt", "ferogram:b.session"].iter().enumerate() {
        let (prefix, name) = dest.split_once(':').expect("prefix");
        let dest = format!("{prefix}:{}", s(&out.path().join(format!("{i}{name}"))));
        let (code, _, err) = run(&["convert", s(&src), &dest]);
        assert_eq!(code, 0, "{dest}: {err}");
        assert!(!err.contains("dropped"), "{err}");
    }
}

#[test]
fn exit_codes_for_usage_corrupt_sources_and_existing_destinations() {
    let dir = copy_fixtures();
    let out = tempfile::tempdir().expect("tempdir");
    // Usage.
    for args in [vec![], vec!["frobnicate"], vec!["inspect"], vec!["convert", "x"], vec!["inspect", "--bogus", "x"]] {
        let (code, _, _) = run(&args);
        assert_eq!(code, 1, "{args:?}");
    }
    let (code, _, _) = run(&["convert", "x", "mtcute:out.session"]);
    assert_eq!(code, 1, "mtcute storage is not written");
    let (code, _, _) = run(&["export-string", "--compact", "--format", "telethon", "x"]);
    assert_eq!(code, 1);
    let (code, help, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(help.contains("inspect") && help.contains("convert") && help.contains("verify"));

    // Unreadable or corrupt sources.
    let missing = out.path().join("missing.session");
    let (code, _, err) = run(&["inspect", s(&missing)]);
    assert_eq!(code, 2);
    assert!(err.contains("missing.session"), "names the file: {err}");
    let garbage = out.path().join("garbage.session");
    std::fs::write(&garbage, [0xEEu8; 300]).expect("write");
    let (code, _, err) = run(&["inspect", s(&garbage)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("garbage.session") && err.trim_end().lines().count() == 1, "{err}");
    let ours = out.path().join("ours.session");
    let src = fixture(dir.path(), "layer/layer-v3-dev.session");
    assert_eq!(run(&["convert", s(&src), &format!("file:{}", s(&ours))]).0, 0);
    let mut bytes = std::fs::read(&ours).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let flipped = out.path().join("flipped.session");
    std::fs::write(&flipped, &bytes).expect("write");
    for cmd in ["inspect", "verify"] {
        let (code, _, err) = run(&[cmd, s(&flipped)]);
        assert_eq!(code, 2, "{cmd} of a flipped byte: {err}");
        assert!(err.contains("flipped.session") && err.contains("corrupt"), "{err}");
    }
    let sqlite = out.path().join("ours.db");
    assert_eq!(run(&["convert", s(&src), &format!("sqlite:{}", s(&sqlite))]).0, 0);
    let mut db = std::fs::read(&sqlite).expect("read");
    db.truncate(db.len() / 3 + 100);
    let cut = out.path().join("cut.db");
    std::fs::write(&cut, &db).expect("write");
    let (code, _, err) = run(&["verify", s(&cut)]);
    assert_eq!(code, 2, "a truncated database fails verify: {err}");
    let (code, _, err) = run(&["inspect", "string:notasession"]);
    assert_eq!(code, 2, "{err}");

    // Existing destinations.
    let before = std::fs::read(&ours).expect("read");
    let other = fixture(dir.path(), "telethon/telethon-sqlite.session");
    let (code, _, err) = run(&["convert", s(&other), &format!("file:{}", s(&ours))]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("ours.session") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&ours).expect("read"), before, "not overwritten");
    for dest in [format!("sqlite:{}", s(&sqlite)), format!("telethon:{}", s(&sqlite)), format!("string:{}", s(&ours))] {
        let (code, _, err) = run(&["convert", s(&other), &dest]);
        assert_eq!(code, 3, "{dest}: {err}");
    }
    let (code, _, err) = run(&["convert", "--force", s(&other), &format!("file:{}", s(&ours))]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(inspect(s(&ours))["user_id"], "111222333", "--force replaced it");
    // A destination that needs a value the source lacks.
    let (code, _, err) = run(&["convert", s(&other), "pyrogram:-"]);
    assert_eq!(code, 3, "Pyrogram strings need an api_id: {err}");
    let (code, out_text, err) = run(&["convert", "--allow-lossy", "--api-id", "12345", s(&other), "pyrogram:-"]);
    assert_eq!(code, 0, "{err}");
    let back = inspect(&format!("string:{}", out_text.trim()));
    assert_eq!(back["api_id"], 12345);
    assert_eq!(back["user_id"], "111222333");
}

/// The holder program (`tests/bin/holder.rs`): opens a session with our backend, taking the
/// owner lock, says `READY` and holds it until its stdin closes.
const HOLDER: &str = env!("CARGO_BIN_EXE_session-cli-holder");
const READY: &str = "holder-is-ready";

fn hold(kind: &str, path: &Path) -> Child {
    let mut child = Command::new(HOLDER)
        .arg(kind)
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn holder");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains(READY) => break,
            Some(Ok(_)) => continue,
            other => panic!("holder did not start: {other:?}"),
        }
    }
    // Keep reading, so that the holder never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    child
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| {
            let e = e.expect("e");
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = if name.ends_with("-shm") { Vec::new() } else { std::fs::read(e.path()).unwrap_or_default() };
            (name, bytes)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn inspect_and_verify_read_a_session_a_running_program_holds() {
    let dir = copy_fixtures();
    let work = tempfile::tempdir().expect("tempdir");
    let src = fixture(dir.path(), "ferogram/ferogram-v8-dev.session");
    let expected = inspect(s(&src));
    for (kind, name) in [("file", "held.session"), ("sqlite", "held.db")] {
        let path = work.path().join(name);
        assert_eq!(run(&["convert", s(&src), &format!("{kind}:{}", s(&path))]).0, 0);
        let mut child = hold(kind, &path);
        let before = listing(work.path());
        let got = inspect(s(&path));
        assert_eq!(got["dcs"], expected["dcs"], "{kind}: the held session reads in full");
        assert_eq!(got["peers"], expected["peers"]);
        assert_eq!(got["channels"], expected["channels"]);
        let (code, out, err) = run(&["verify", s(&path)]);
        assert_eq!(code, 0, "{kind}: verify of a held session: {err}");
        assert!(out.contains("ok"), "{out}");
        assert_eq!(listing(work.path()), before, "{kind}: inspect and verify wrote nothing");
        // Writing it is refused: the owner holds it.
        let (code, _, err) = run(&["convert", "--force", s(&src), &format!("{kind}:{}", s(&path))]);
        assert_eq!(code, 3, "{kind}: {err}");
        assert!(err.contains("held by a running program"), "{err}");
        drop(child.stdin.take());
        let status = child.wait().expect("holder exits");
        assert!(status.success());
    }
}

#[test]
fn batch_converts_a_folder_and_summarises_failures() {
    let dir = copy_fixtures();
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("in");
    std::fs::create_dir(&src).expect("mkdir");
    for rel in [
        "telethon/telethon-sqlite.session",
        "pyrogram/pyrogram-file.session",
        "layer/layer-v3-dev.session",
        "mtcute/mtcute-string.txt",
    ] {
        let from = dir.path().join(rel);
        std::fs::copy(&from, src.join(from.file_name().expect("name"))).expect("copy");
    }
    let store = src.join("gramjs-store");
    std::fs::create_dir(&store).expect("mkdir");
    for e in std::fs::read_dir(dir.path().join("gramjs/gramjs-store")).expect("store") {
        let e = e.expect("e");
        std::fs::copy(e.path(), store.join(e.file_name())).expect("copy");
    }
    std::fs::write(src.join("broken.session"), b"\x07 definitely not a session").expect("write");
    let out = work.path().join("out");
    let (code, stdout, err) = run(&["convert", s(&src), &format!("sqlite:{}", s(&out))]);
    assert_eq!(code, 2, "the first failure is a corrupt source: {stdout} {err}");
    assert!(stdout.contains("5 converted, 1 failed"), "{stdout}");
    assert!(stdout.contains("broken.session"), "{stdout}");
    for name in ["telethon-sqlite", "pyrogram-file", "layer-v3-dev", "mtcute-string", "gramjs-store"] {
        let db = out.join(format!("{name}.db"));
        let got = inspect(s(&db));
        assert_eq!(got["format"], "sqlite", "{name}");
        assert!(got["home_dc"].as_i64().is_some(), "{name}");
    }
    // Again: every destination exists now.
    let (code, stdout, _) = run(&["convert", s(&src), &format!("sqlite:{}", s(&out))]);
    assert_ne!(code, 0);
    assert!(stdout.contains("0 converted, 6 failed"), "{stdout}");
    // Into Telethon files, lossy allowed.
    let tele = work.path().join("tele");
    let (_, stdout, _) = run(&["convert", "--allow-lossy", s(&src), &format!("telethon:{}", s(&tele))]);
    assert!(stdout.contains("5 converted, 1 failed"), "{stdout}");
    assert_eq!(inspect(s(&tele.join("layer-v3-dev.session")))["format"], "telethon-sqlite");
}

#[test]
fn export_string_in_every_format_reads_back() {
    let dir = copy_fixtures();
    let src = fixture(dir.path(), "kurigram/kurigram-file.session");
    let original = inspect(s(&src));
    let home_key = original["dcs"][0]["auth_key_hex"].clone();
    for format in ["ours", "telethon", "pyrogram", "gramjs", "mtcute", "layer", "ferogram", "ferogram-compact"] {
        let (code, out, err) = run(&["export-string", "--format", format, s(&src)]);
        assert_eq!(code, 0, "{format}: {err}");
        let back = inspect(&format!("string:{}", out.trim()));
        let key = back["dcs"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["id"] == original["home_dc"]))
            .map(|d| d["auth_key_hex"].clone());
        assert_eq!(key, Some(home_key.clone()), "{format}: the home key survives");
        if format != "ours" {
            assert!(err.contains("does not hold"), "{format}: says what the string lacks: {err}");
        }
    }
    let (code, out, _) = run(&["export-string", "--compact", s(&src)]);
    assert_eq!(code, 0);
    assert!(out.starts_with("Lc1."), "{out}");
    let back = inspect(&format!("string:{}", out.trim()));
    assert_eq!(back["user_id"], original["user_id"]);
    // A string on stdin.
    let full = run(&["export-string", s(&src)]).1;
    let assert = tool().args(["inspect", "--json", "-"]).write_stdin(full).assert().success();
    let json: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).expect("json");
    assert_eq!(json["peers"], original["peers"]);
    assert_eq!(json["format"], "string");
}

#[test]
fn gramjs_store_folder_export_matches_what_gramjs_writes() {
    let dir = copy_fixtures();
    let work = tempfile::tempdir().expect("tempdir");
    let fixture_store = fixture(dir.path(), "gramjs/gramjs-store");
    let ours = work.path().join("s.session");
    assert_eq!(run(&["convert", s(&fixture_store), s(&ours)]).0, 0);
    let out = work.path().join("gramjs-store");
    let (code, _, err) = run(&["convert", s(&ours), &format!("gramjs:{}", s(&out))]);
    assert_eq!(code, 0, "{err}");
    for e in std::fs::read_dir(&fixture_store).expect("fixture") {
        let e = e.expect("e");
        let name = e.file_name();
        let want: serde_json::Value = serde_json::from_slice(&std::fs::read(e.path()).expect("read")).expect("json");
        let got: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(&name)).expect("file written")).expect("json");
        match (want.as_array(), got.as_array()) {
            // Entity rows: everything but the display name and the write time.
            (Some(w), Some(g)) => assert_eq!(w[..4], g[..4], "{name:?}"),
            _ => assert_eq!(want, got, "{name:?}"),
        }
    }
    assert_eq!(std::fs::read_dir(&out).expect("out").count(), std::fs::read_dir(&fixture_store).expect("in").count());
}

#[test]
fn verify_reports_a_torn_tail() {
    let dir = copy_fixtures();
    let work = tempfile::tempdir().expect("tempdir");
    let path = work.path().join("s.session");
    let src = fixture(dir.path(), "layer/layer-v2-dev.session");
    assert_eq!(run(&["convert", s(&src), &format!("file:{}", s(&path))]).0, 0);
    assert_eq!(run(&["verify", s(&path)]).0, 0);
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
    f.write_all(&[2, 200, 0, 0, 0, 0, 0, 0, 0, 1, 2]).expect("append");
    drop(f);
    let (code, _, err) = run(&["verify", s(&path)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("torn"), "{err}");
    assert!(err.contains("incomplete") && err.contains("never acknowledged"), "{err}");
    // inspect still shows the acknowledged state, with the warning.
    let got = inspect(s(&path));
    assert_eq!(got["home_dc"], 4);
    assert!(!got["warnings"].as_array().expect("warnings").is_empty());
    // The owner's next open cuts the tail and keeps it; verify is clean again and names the copy.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let owner = session_file::BinaryFileBackend::open(&path).await.expect("the owner opens, cutting the tail");
        drop(owner);
    });
    let (code, out, err) = run(&["verify", s(&path)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("torn tail") && out.contains("kept at"), "{out}");
}
