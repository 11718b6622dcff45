//! `layer-session` with encryption at rest: the key from `LAYER_SESSION_KEY` or `--key-file`,
//! sealed destinations and sources (our file, SQLite and string), `encrypt`/`decrypt`/`rekey`,
//! typed messages for a missing or wrong key, no key ever printed, foreign formats written in
//! clear only with the key and a warning, and `rekey` killed with SIGKILL at random instants.

mod common;
#[path = "../../session-postgres/tests/support/mod.rs"]
mod pg;
#[path = "../../session-redis/tests/support/mod.rs"]
mod rd;
#[path = "../../session-libsql/tests/support/mod.rs"]
mod sqld;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{s, tool};
use session_core::{SessionBackend, SessionData};
use session_file::BinaryFileBackend;

/// Two raw keys (64 hex characters).
const K1: &str = "5e3a1f0c9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
const K2: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
/// A passphrase distinctive enough to be found in any output.
const PASSPHRASE: &str = "Tr0mbone-Glacier-Distinctive-4412";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// Runs the tool with `LAYER_SESSION_KEY` set to `key` (unset for `None`) and no new key;
/// returns (exit code, stdout, stderr) after checking that no key material was printed.
fn run_with(key: Option<&str>, new_key: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = tool();
    cmd.env_remove("LAYER_SESSION_KEY").env_remove("LAYER_SESSION_NEW_KEY");
    if let Some(k) = key {
        cmd.env("LAYER_SESSION_KEY", k);
    }
    if let Some(k) = new_key {
        cmd.env("LAYER_SESSION_NEW_KEY", k);
    }
    let out = cmd.args(args).output().expect("runs");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    for secret in [K1, K2, PASSPHRASE, &K1.to_uppercase()] {
        // Any 16 characters of a key or passphrase: never in what the tool prints.
        for start in (0..=secret.len() - 16).step_by(4) {
            let piece = &secret[start..start + 16];
            assert!(!stdout.contains(piece), "key material in stdout of {args:?}: {stdout}");
            assert!(!stderr.contains(piece), "key material in stderr of {args:?}: {stderr}");
        }
    }
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// A session with every field set and 50 cached peers, its auth keys and future auth token
/// pseudo-random (the test kit's keys count up byte by byte, so their windows include text such
/// as `12345678`, which ids stored in clear by design may hold), written as our plain log file.
fn write_sample(path: &Path) -> SessionData {
    let mut data = session_testkit::sample_session(50);
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut random = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state.to_le_bytes()[3]
    };
    for dc in data.dcs.values_mut() {
        if dc.auth_key.is_some() {
            let mut bytes = [0u8; 256];
            bytes.iter_mut().for_each(|b| *b = random());
            dc.auth_key = Some(session_core::AuthKey::new(bytes));
        }
    }
    if let Some(token) = &mut data.future_auth_token {
        token.iter_mut().for_each(|b| *b = random());
    }
    runtime().block_on(async {
        let backend = BinaryFileBackend::open(path).await.expect("open file");
        backend.save_session(&data).await.expect("save");
    });
    data
}

fn read_plain(path: &Path) -> SessionData {
    session_file::read_snapshot(path).expect("read back").expect("a session").data
}

/// Every 8-byte window of every auth key and of the future auth token.
fn secrets(data: &SessionData) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dc in data.dcs.values() {
        if let Some(key) = &dc.auth_key {
            out.extend(key.as_bytes().windows(8).map(<[u8]>::to_vec));
        }
    }
    if let Some(token) = &data.future_auth_token {
        out.extend(token.windows(8).map(<[u8]>::to_vec));
    }
    assert!(out.len() > 200, "the sample holds auth keys");
    out
}

/// Fails when any file in `dir` whose name starts with `stem` (the file, its -wal, -shm,
/// lock) holds an 8-byte window of a secret.
fn assert_no_secret(dir: &Path, stem: &str, data: &SessionData) {
    let windows = secrets(data);
    let mut looked = 0;
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if !name.starts_with(stem) || !path.is_file() {
            continue;
        }
        looked += 1;
        let bytes = std::fs::read(&path).expect("read");
        for w in bytes.windows(8) {
            assert!(!windows.iter().any(|s| s == w), "{name} holds 8 bytes of an auth key or token");
        }
    }
    assert!(looked > 0, "no file {stem}* in {}", dir.display());
}

#[test]
fn plain_to_sealed_to_plain_keeps_every_field_and_stores_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("plain.session");
    let data = write_sample(&src);
    // The check can fail: the plain source holds the keys.
    let plain_bytes = std::fs::read(&src).expect("read");
    assert!(secrets(&data).iter().any(|w| plain_bytes.windows(8).any(|b| b == w.as_slice())));
    for dest in ["sealed.session", "sealed.db", "sealed.txt"] {
        let sealed = dir.path().join(dest);
        let (code, _, err) = run_with(Some(K1), None, &["convert", s(&src), s(&sealed)]);
        assert_eq!(code, 0, "{dest}: {err}");
        assert_no_secret(dir.path(), dest, &data);
        let (code, out, err) = run_with(Some(K1), None, &["verify", s(&sealed)]);
        assert_eq!(code, 0, "verify {dest}: {out}{err}");
        let (code, out, err) = run_with(Some(K1), None, &["inspect", "--json", s(&sealed)]);
        assert_eq!(code, 0, "inspect {dest}: {err}");
        let json: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(json["sealed"], true, "{dest}");
        let (code, out, _) = run_with(None, None, &["inspect", "--json", s(&src)]);
        assert_eq!(code, 0);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&out).expect("json")["sealed"], false);
        if dest.ends_with(".db") {
            // The names, leases and whether a session is stored are not sealed.
            let (code, out, err) = run_with(None, None, &["list", s(&sealed)]);
            assert_eq!(code, 0, "list needs no key: {err}");
            assert!(out.contains("\"default\": stored"), "{out}");
        }
        // Back to plain with the key: every field kept.
        let back = dir.path().join(format!("back-{dest}.session"));
        let (code, _, err) =
            run_with(Some(K1), None, &["convert", "--decrypt", s(&sealed), &format!("file:{}", s(&back))]);
        assert_eq!(code, 0, "{dest} back: {err}");
        let (code, _, err) = run_with(None, None, &["convert", s(&back), &format!("file:{}.2", s(&back))]);
        assert_eq!(code, 0, "the plain copy reads without a key: {err}");
        assert_eq!(read_plain(&back), data, "{dest}: plain -> sealed -> plain");
    }
    // In place: encrypt, then decrypt; each kind of file.
    for (name, convert_to) in [("inplace.session", "file:"), ("inplace.db", "sqlite:"), ("inplace.txt", "string:")] {
        let path = dir.path().join(name);
        let (code, _, err) = run_with(None, None, &["convert", s(&src), &format!("{convert_to}{}", s(&path))]);
        assert_eq!(code, 0, "{name}: {err}");
        let (code, out, err) = run_with(Some(K1), None, &["encrypt", s(&path)]);
        assert_eq!((code, out.trim()), (0, format!("encrypted {}", s(&path)).as_str()), "{name}: {err}");
        assert_no_secret(dir.path(), name, &data);
        let (code, _, err) = run_with(None, None, &["inspect", s(&path)]);
        assert_eq!(code, 2, "{name} is sealed now: {err}");
        let (code, _, err) = run_with(Some(K1), None, &["decrypt", s(&path)]);
        assert_eq!(code, 0, "{name}: {err}");
        let back = dir.path().join(format!("{name}.back"));
        let (code, _, err) = run_with(None, None, &["convert", s(&path), &format!("file:{}", s(&back))]);
        assert_eq!(code, 0, "{name} is plain again: {err}");
        assert_eq!(read_plain(&back), data, "{name}: encrypt then decrypt");
        assert!(!dir.path().join(format!("{name}.lock")).exists(), "{name}: no lock file left behind");
    }
}

#[test]
fn a_missing_or_wrong_key_is_a_typed_error_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("plain.session");
    write_sample(&src);
    for dest in ["s.session", "s.db", "s.txt"] {
        let sealed = dir.path().join(dest);
        let (code, _, err) = run_with(Some(K1), None, &["convert", s(&src), s(&sealed)]);
        assert_eq!(code, 0, "{err}");
        let before = std::fs::read(&sealed).expect("read");
        for command in ["inspect", "verify", "export-string"] {
            let (code, out, err) = run_with(None, None, &[command, s(&sealed)]);
            assert_eq!(code, 2, "{command} {dest} without a key: {err}");
            assert!(out.is_empty(), "{out}");
            assert!(err.contains("is sealed") && err.contains("a key is needed"), "{command} {dest}: {err}");
            assert!(err.contains("LAYER_SESSION_KEY") && err.contains("--key-file"), "{err}");
            let (code, _, err) = run_with(Some(K2), None, &[command, s(&sealed)]);
            assert_eq!(code, 2, "{command} {dest} with the wrong key: {err}");
            assert!(err.contains("wrong key") && err.contains("not the one it was sealed with"), "{err}");
            assert!(!err.contains("orrupt"), "a wrong key is not damage: {err}");
            assert!(!err.contains("layer-session-read"), "the private copy is not named: {err}");
        }
        let out = dir.path().join(format!("{dest}.out.session"));
        let (code, _, err) = run_with(Some(K2), None, &["convert", s(&sealed), s(&out)]);
        assert_eq!(code, 2, "{err}");
        assert!(!out.exists(), "nothing written");
        for command in ["decrypt", "rekey"] {
            let (code, _, err) = run_with(Some(K2), Some(K1), &[command, s(&sealed)]);
            assert_eq!(code, 2, "{command} with the wrong key: {err}");
            assert!(err.contains("wrong key"), "{err}");
        }
        let (code, _, err) = run_with(None, None, &["decrypt", s(&sealed)]);
        assert_eq!(code, 1, "decrypt without a key is a usage error: {err}");
        assert!(err.contains("needs the key"), "{err}");
        let (code, _, err) = run_with(Some(K1), None, &["rekey", s(&sealed)]);
        assert_eq!(code, 1, "rekey without a new key: {err}");
        assert!(err.contains("LAYER_SESSION_NEW_KEY"), "{err}");
        assert_eq!(std::fs::read(&sealed).expect("read"), before, "{dest}: the sealed bytes are untouched");
    }
}

#[test]
fn key_files_must_be_private_and_no_key_is_ever_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("plain.session");
    let data = write_sample(&src);
    let key_file = dir.path().join("pass.key");
    let new_key_file = dir.path().join("new.key");
    std::fs::write(&key_file, format!("{PASSPHRASE}\n")).expect("write key");
    std::fs::write(&new_key_file, format!("{K2}\n")).expect("write key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let (code, _, err) = run_with(None, None, &["inspect", "--key-file", s(&key_file), s(&src)]);
        assert_eq!(code, 1, "a key file others can read is refused: {err}");
        assert!(err.contains("chmod 600"), "{err}");
        for f in [&key_file, &new_key_file] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
    }
    let sealed = dir.path().join("p.db");
    let kf = s(&key_file);
    // Every command that reads or writes with the passphrase (run_with checks the output).
    let steps: Vec<(Option<&str>, Vec<&str>, i32)> = vec![
        (None, vec!["convert", "--key-file", kf, s(&src), s(&sealed)], 0),
        (None, vec!["inspect", "--key-file", kf, "--reveal-secrets", s(&sealed)], 0),
        (None, vec!["verify", "--key-file", kf, s(&sealed)], 0),
        (None, vec!["inspect", s(&sealed)], 2),
        (Some(K1), vec!["inspect", s(&sealed)], 2),
        (None, vec!["rekey", "--key-file", kf, "--new-key-file", s(&new_key_file), s(&sealed)], 0),
        (None, vec!["inspect", "--key-file", kf, s(&sealed)], 2),
        (None, vec!["inspect", "--key-file", s(&new_key_file), s(&sealed)], 0),
    ];
    for (env_key, args, expected) in steps {
        let (code, _, err) = run_with(env_key, None, &args);
        assert_eq!(code, expected, "{args:?}: {err}");
    }
    assert_no_secret(dir.path(), "p.db", &data);
    // The passphrase's bytes are not stored either.
    let bytes = std::fs::read(&sealed).expect("read");
    assert!(!bytes.windows(PASSPHRASE.len()).any(|w| w == PASSPHRASE.as_bytes()));
    // A key given as an argument is not an option at all.
    let (code, _, _) = run_with(None, None, &["inspect", "--key", K1, s(&sealed)]);
    assert_eq!(code, 1, "--key is no option");
}

#[test]
fn a_sealed_session_goes_into_a_foreign_format_only_with_the_key_and_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("plain.session");
    write_sample(&src);
    let sealed = dir.path().join("sealed.session");
    assert_eq!(run_with(Some(K1), None, &["convert", s(&src), s(&sealed)]).0, 0);
    let telethon = dir.path().join("t.session");
    let dests = [format!("telethon:{}", s(&telethon)), "pyrogram:-".to_owned(), "gramjs:-".to_owned()];
    for dest in &dests {
        let (code, out, err) = run_with(None, None, &["convert", "--allow-lossy", "--api-id", "7", s(&sealed), dest]);
        assert_eq!(code, 2, "{dest} without the key: {err}");
        assert!(out.is_empty() && err.contains("a key is needed"), "{err}");
        if dest.starts_with("telethon:") {
            assert!(!telethon.exists(), "nothing written without the key");
        }
        let (code, out, err) =
            run_with(Some(K1), None, &["convert", "--allow-lossy", "--api-id", "7", s(&sealed), dest]);
        assert_eq!(code, 0, "{dest} with the key: {err}");
        assert!(err.contains("UNENCRYPTED"), "{dest}: the output is said to be unencrypted: {err}");
        if dest.ends_with('-') {
            assert!(!out.trim().is_empty(), "the string is printed");
        }
    }
    assert!(telethon.exists());
    // A folder: our files sealed, a foreign format warned once.
    let folder = dir.path().join("in");
    std::fs::create_dir(&folder).expect("mkdir");
    std::fs::copy(&sealed, folder.join("a.session")).expect("copy");
    let (code, out, err) = run_with(Some(K1), None, &["convert", s(&folder), s(&dir.path().join("ours"))]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("UNENCRYPTED"), "{err}");
    let (code, _, err) = run_with(None, None, &["inspect", s(&dir.path().join("ours/a.session"))]);
    assert_eq!(code, 2, "sealed in the batch too: {err}");
    let dest = format!("telethon:{}", s(&dir.path().join("theirs")));
    let (code, out, err) = run_with(Some(K1), None, &["convert", "--allow-lossy", s(&folder), &dest]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(err.matches("UNENCRYPTED").count(), 1, "{err}");
    let (code, out, err) = run_with(Some(K1), None, &["export-string", "--format", "telethon", s(&sealed)]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("UNENCRYPTED") && !out.is_empty(), "{err}");
    // Our own string with the key stays sealed, and reads back with it.
    let (code, out, err) = run_with(Some(K1), None, &["export-string", s(&sealed)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Le1."), "a sealed string: {}", &out[..8.min(out.len())]);
    assert!(!err.contains("UNENCRYPTED"), "{err}");
    let (code, _, err) = run_with(Some(K1), None, &["inspect", &format!("string:{}", out.trim())]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn encrypt_decrypt_and_rekey_refuse_a_held_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("held.session");
    write_sample(&path);
    let before = std::fs::read(&path).expect("read");
    let lock = session_core::fs::OwnerLock::acquire(&path).expect("hold it");
    let (code, _, err) = run_with(Some(K1), None, &["encrypt", s(&path)]);
    assert_eq!(code, 3, "a held session is refused: {err}");
    assert!(err.contains("held by a running program"), "{err}");
    assert_eq!(std::fs::read(&path).expect("read"), before);
    drop(lock);
    assert_eq!(run_with(Some(K1), None, &["encrypt", s(&path)]).0, 0);
    let lock = session_core::fs::OwnerLock::acquire(&path).expect("hold it");
    let sealed = std::fs::read(&path).expect("read");
    for command in ["rekey", "decrypt"] {
        let (code, _, err) = run_with(Some(K1), Some(K2), &[command, s(&path)]);
        assert_eq!(code, 3, "{command}: {err}");
    }
    assert_eq!(std::fs::read(&path).expect("read"), sealed);
    drop(lock);
}

/// Which of `keys` opens `path` now, and the session it reads (converted into a plain file).
fn opened_by(path: &Path, keys: [&str; 2], out: &Path) -> (usize, SessionData) {
    let mut opened = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let args = ["convert", "--decrypt", "--force", s(path), &format!("file:{}", s(out))];
        let (code, _, err) = run_with(Some(key), None, &args);
        match code {
            0 => opened.push((i, read_plain(out))),
            2 => assert!(err.contains("wrong key"), "neither read nor a wrong key: {err}"),
            _ => panic!("exit {code}: {err}"),
        }
    }
    assert_eq!(opened.len(), 1, "exactly one key opens the session");
    opened.pop().expect("one")
}

#[test]
fn rekey_killed_at_any_instant_leaves_the_session_under_the_old_or_the_new_key() {
    // LAYER_SOAK_REKEY_KILLS (cargo xtask soak) runs more kills.
    let rounds: usize = std::env::var("LAYER_SOAK_REKEY_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_layer-session"));
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("plain.session");
    let data = write_sample(&src);
    let check_out = dir.path().join("check.session");
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    for name in ["k.session", "k.db"] {
        let path = dir.path().join(name);
        assert_eq!(run_with(Some(K1), None, &["convert", s(&src), s(&path)]).0, 0);
        let keys = [K1, K2];
        let mut current = 0;
        // One whole run, timed: kills land anywhere in [0, 1.2 x its duration).
        let started = Instant::now();
        assert_eq!(run_with(Some(keys[0]), Some(keys[1]), &["rekey", s(&path)]).0, 0);
        let full = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX).max(1000) * 6 / 5;
        current = 1 - current;
        let mut window = full;
        let (mut killed, mut finished, mut killed_after) = (0, 0, 0);
        for round in 0..rounds {
            let (old, new) = (keys[current], keys[1 - current]);
            let mut child = Command::new(&bin)
                .args(["rekey", s(&path)])
                .env("LAYER_SESSION_KEY", old)
                .env("LAYER_SESSION_NEW_KEY", new)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn");
            std::thread::sleep(Duration::from_micros(next(window)));
            // SIGKILL (kill -9); an already finished child is reaped either way.
            let _ = child.kill();
            let status = child.wait().expect("wait");
            if status.success() {
                finished += 1;
            } else {
                killed += 1;
            }
            let (now, read) = opened_by(&path, [keys[0], keys[1]], &check_out);
            assert_eq!(read, data, "{name} round {round}: the session changed");
            if status.success() {
                assert_eq!(keys[now], new, "{name} round {round}: a finished rekey leaves the new key");
            } else if keys[now] == new {
                killed_after += 1;
            }
            // The window follows the moment of the replacement (a loaded machine runs slower
            // than the timed run): longer after a kill before it, shorter after one past it, so
            // kills keep landing on both sides and around the rename itself.
            window = if keys[now] == new { window * 9 / 10 } else { window * 5 / 4 }.max(1000);
            current = now;
        }
        // The kills land on both sides of the replacement, or the loop proves nothing.
        assert!(killed > killed_after, "{name}: no run was killed before it replaced the file");
        assert!(finished + killed_after > 0, "{name}: no run got as far as replacing the file");
        eprintln!(
            "{name}: {rounds} rounds, {killed} killed ({killed_after} of them after the replacement), \
             {finished} finished, full run {full} us, last window {window} us"
        );
    }
}

/// Every file under `dir` (recursively) scanned for an 8-byte window of a secret; returns the
/// bytes read.
fn scan_tree(dir: &Path, data: &SessionData) -> usize {
    let windows: std::collections::HashSet<Vec<u8>> = secrets(data).into_iter().collect();
    // The data directory is tens of MiB: a table of the windows' first two bytes spares the
    // hash of almost every position (this runs unoptimized).
    let mut heads = vec![false; 1 << 16];
    for w in &windows {
        heads[usize::from(w[0]) << 8 | usize::from(w[1])] = true;
    }
    let mut seen = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                seen += bytes.len();
                for (at, w) in bytes.windows(8).enumerate() {
                    if !heads[usize::from(w[0]) << 8 | usize::from(w[1])] {
                        continue;
                    }
                    assert!(
                        !windows.contains(w),
                        "{} holds 8 bytes of a secret at {at}: {:?}",
                        path.display(),
                        String::from_utf8_lossy(&bytes[at.saturating_sub(40)..(at + 48).min(bytes.len())])
                    );
                }
            }
        }
    }
    seen
}

#[test]
fn postgres_and_redis_sessions_are_sealed_rekeyed_and_read_back() {
    let pg = pg::Postgres::start();
    let redis = rd::Redis::start(rd::Config {
        persistence: rd::Persistence::Durable,
        password: Some("rEdis-Pw-keys-distinctive".to_owned()),
        tcp: true,
    });
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("src.session");
    let data = write_sample(&src);
    // The scan can fail: the plain source holds the keys.
    assert!(std::panic::catch_unwind(|| scan_tree(work.path(), &data)).is_err(), "the plain file is seen");
    let urls = [format!("{}#sealed", pg.tcp_url()), format!("{}#sealed", redis.url())];
    for url in &urls {
        let (code, _, err) = run_with(Some(K1), None, &["convert", s(&src), url]);
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = run_with(None, None, &["inspect", url]);
        assert_eq!(code, 2, "without the key: {err}");
        assert!(err.contains("a key is needed"), "{err}");
        let (code, _, err) = run_with(Some(K2), None, &["inspect", url]);
        assert_eq!(code, 2, "with the wrong key: {err}");
        assert!(err.contains("wrong key"), "{err}");
        let (code, out, err) = run_with(Some(K1), Some(K2), &["rekey", url]);
        assert_eq!(code, 0, "rekey: {err}");
        assert!(out.starts_with("rekeyed"), "{out}");
        let (code, _, err) = run_with(Some(K1), None, &["inspect", url]);
        assert_eq!(code, 2, "the old key no longer opens it: {err}");
        let back = work.path().join("back.session");
        let args = ["convert", "--decrypt", "--force", url.as_str(), s(&back)];
        let (code, _, err) = run_with(Some(K2), None, &args);
        assert_eq!(code, 0, "{err}");
        assert_eq!(read_plain(&back), data, "{url}: the session changed");
    }
    // Nothing written so far was in clear: no window of a key in Redis's files or in
    // PostgreSQL's data directory (its WAL included).
    assert!(scan_tree(redis.dir(), &data) > 0, "Redis's files were read");
    assert!(scan_tree(&pg.socket_dir().join("data"), &data) > 1 << 20, "the data directory was read");
    // A plain server session encrypted in place (PostgreSQL seals a database whole: a fresh one).
    let pg_plain = pg::Postgres::start();
    for url in [format!("{}#plain", pg_plain.tcp_url()), format!("{}#plain", redis.url())] {
        let plain = url;
        let (code, _, err) = run_with(None, None, &["convert", s(&src), &plain]);
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = run_with(Some(K1), None, &["encrypt", &plain]);
        assert_eq!(code, 0, "encrypt: {err}");
        let (code, _, err) = run_with(None, None, &["inspect", &plain]);
        assert_eq!(code, 2, "sealed now: {err}");
        let (code, _, err) = run_with(Some(K1), None, &["encrypt", &plain]);
        assert_eq!(code, 2, "already sealed: {err}");
        let (code, _, err) = run_with(Some(K1), None, &["decrypt", &plain]);
        assert_eq!(code, 1, "decrypt of a server session is refused with its reason: {err}");
    }
}

#[test]
fn a_libsql_server_session_is_sealed_rekeyed_and_read_back() {
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("src.session");
    let data = write_sample(&src);
    let server_dir = work.path().join("server");
    let server = sqld::Sqld::start(&server_dir, None);
    let url = server.url().replacen("http://", "libsql+http://", 1);
    let (code, _, err) = run_with(Some(K1), None, &["convert", s(&src), &url]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run_with(None, None, &["inspect", &url]);
    assert_eq!(code, 2, "without the key: {err}");
    assert!(err.contains("a key is needed"), "{err}");
    let (code, _, err) = run_with(Some(K2), None, &["verify", &url]);
    assert_eq!(code, 2, "with the wrong key: {err}");
    assert!(err.contains("wrong key"), "{err}");
    let (code, _, err) = run_with(Some(K1), Some(K2), &["rekey", &url]);
    assert_eq!(code, 0, "rekey: {err}");
    let (code, _, err) = run_with(Some(K1), None, &["inspect", &url]);
    assert_eq!(code, 2, "the old key no longer opens it: {err}");
    let back = work.path().join("back.session");
    let (code, _, err) = run_with(Some(K2), None, &["convert", "--decrypt", &url, s(&back)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(read_plain(&back), data);
    // sqld's own files (database, WAL) hold no window of a key.
    assert!(scan_tree(&server_dir, &data) > 0, "sqld's files were read");
    drop(server);
    // A plain database encrypted in place.
    let plain_dir = work.path().join("plain-server");
    let server = sqld::Sqld::start(&plain_dir, None);
    let url = server.url().replacen("http://", "libsql+http://", 1);
    assert_eq!(run_with(None, None, &["convert", s(&src), &url]).0, 0);
    let (code, _, err) = run_with(Some(K1), None, &["encrypt", &url]);
    assert_eq!(code, 0, "encrypt: {err}");
    let (code, _, err) = run_with(None, None, &["inspect", &url]);
    assert_eq!(code, 2, "sealed now: {err}");
    assert_eq!(run_with(Some(K1), None, &["inspect", &url]).0, 0);
}

#[test]
fn rekey_killed_with_the_new_file_staged_keeps_the_old_key_and_the_next_run_completes() {
    use std::io::BufRead;
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_layer-session"));
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("plain.session");
    let data = write_sample(&src);
    let check_out = dir.path().join("check.session");
    for name in ["f.session", "f.db", "f.txt"] {
        let path = dir.path().join(name);
        assert_eq!(run_with(Some(K1), None, &["convert", s(&src), s(&path)]).0, 0);
        let mut child = Command::new(&bin)
            .args(["rekey", s(&path)])
            .env("LAYER_SESSION_KEY", K1)
            .env("LAYER_SESSION_NEW_KEY", K2)
            .env("LAYER_SESSION_FAILPOINT", "pause-after-stage")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let mut line = String::new();
        std::io::BufReader::new(stderr).read_line(&mut line).expect("read");
        assert!(line.contains("failpoint: paused"), "{name}: {line}");
        // The new file is written, fsync'ed and read back: the instant before the rename.
        let staged = staging_folders(dir.path());
        assert_eq!(staged.len(), 1, "{name}: one staging folder");
        child.kill().expect("kill");
        child.wait().expect("wait");
        let (now, read) = opened_by(&path, [K1, K2], &check_out);
        assert_eq!((now, &read), (0, &data), "{name}: killed before the rename, the old key opens it");
        let (code, _, err) = run_with(Some(K1), Some(K2), &["rekey", s(&path)]);
        assert_eq!(code, 0, "{name}: the next run completes: {err}");
        let (now, read) = opened_by(&path, [K1, K2], &check_out);
        assert_eq!((now, &read), (1, &data), "{name}: the new key opens it");
        assert!(staging_folders(dir.path()).is_empty(), "{name}: the killed run's staging folder is removed");
    }
}

fn staging_folders(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(".layer-session-stage")))
        .collect()
}

#[test]
fn the_owner_opens_what_rekey_left_and_keeps_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    for name in ["o.session", "o.db"] {
        let path = dir.path().join(name);
        let data = session_testkit::sample_session(20);
        // Written by the backend itself, which leaves its lock file (and, for the log, the
        // high-water mark of the file it wrote) beside it.
        rt.block_on(async {
            if name.ends_with(".db") {
                let b = session_sqlite::SqliteBackend::open(&path).await.expect("open");
                b.save_session(&data).await.expect("save");
            } else {
                let b = BinaryFileBackend::open(&path).await.expect("open");
                b.save_session(&data).await.expect("save");
            }
        });
        assert_eq!(run_with(Some(K1), None, &["encrypt", s(&path)]).0, 0);
        let (code, _, err) = run_with(Some(K1), Some(K2), &["rekey", s(&path)]);
        assert_eq!(code, 0, "{name}: {err}");
        let keys = || session_core::Keyring::new(session_core::SealingKey::from_hex(K2).expect("hex"));
        rt.block_on(async {
            let mut changed = data.clone();
            changed.home_dc = 5;
            if name.ends_with(".db") {
                let b = session_sqlite::SqliteBackend::open_with_key(&path, keys()).await.expect("owner opens");
                assert_eq!(b.load_session().await.expect("load"), Some(data.clone()), "{name}");
                b.save_session(&changed).await.expect("save");
                b.close().await.expect("close");
                let b = session_sqlite::SqliteBackend::open_with_key(&path, keys()).await.expect("reopen");
                assert_eq!(b.load_session().await.expect("load"), Some(changed), "{name}");
            } else {
                let b = BinaryFileBackend::open_with_key(&path, keys()).await.expect("owner opens");
                assert_eq!(b.load_session().await.expect("load"), Some(data.clone()), "{name}");
                b.save_session(&changed).await.expect("save");
                drop(b);
                let b = BinaryFileBackend::open_with_key(&path, keys()).await.expect("reopen");
                assert_eq!(b.load_session().await.expect("load"), Some(changed), "{name}");
            }
        });
    }
}

/// Every file of `dir` with its length and modification time; not the `-shm` (SQLite's shared
/// memory, where every WAL reader marks its snapshot: that is how readers and the writer agree).
fn listing(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .filter(|e| e.as_ref().map_or(true, |e| !e.file_name().to_string_lossy().ends_with("-shm")))
        .map(|e| {
            let path = e.expect("entry").path();
            let meta = std::fs::metadata(&path).expect("meta");
            (path, meta.len(), meta.modified().expect("mtime"))
        })
        .collect();
    out.sort();
    out
}

/// The read-only SQLite reader opens a sealed database with a key, beside the owner that holds
/// it, without a copy and without writing: `load_with_key` (issue 16's keyed reader), and the
/// tool's `inspect` through it.
#[test]
fn a_sealed_sqlite_held_by_its_owner_is_read_with_the_key_without_writing() {
    use session_core::{Keyring, SealingKey};
    use session_sqlite::read_only::ReadOnly;
    let rt = runtime();
    let work = tempfile::tempdir().expect("tempdir");
    let db = work.path().join("held.db");
    let key = |hex: &str| Keyring::new(SealingKey::from_hex(hex).expect("key"));
    let data = session_testkit::sample_session(40);
    let owner = rt.block_on(async {
        let owner = session_sqlite::SqliteBackend::open_with_key(&db, key(K1)).await.expect("owner opens");
        owner.save_session(&data).await.expect("save");
        owner
    });
    let before = listing(work.path());
    let mut reader = ReadOnly::open(&db).expect("read-only open");
    assert!(!reader.copied(), "the owner's database was copied to be read");
    assert!(matches!(reader.load(), Err(session_core::SessionError::Sealed { .. })), "read without the key");
    let snapshot = reader.load_with_key(&key(K1)).expect("read with the key").expect("a session");
    assert_eq!(snapshot.data, data);
    assert_eq!(snapshot.sealed_with, Some(SealingKey::from_hex(K1).expect("key").id()));
    assert!(matches!(reader.load_with_key(&key(K2)), Err(session_core::SessionError::WrongKey { .. })));
    drop(reader);
    let (code, out, err) = run_with(Some(K1), None, &["inspect", "--json", s(&db)]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!((json["sealed"].as_bool(), json["peer_count"].as_u64()), (Some(true), Some(40)));
    assert_eq!(listing(work.path()), before, "reading changed or created a file beside the database");
    // The owner goes on writing under its key.
    rt.block_on(async {
        owner.save_session(&session_testkit::sample_session(41)).await.expect("the owner still writes");
        owner.close().await.expect("close");
    });
    // A plain database read with a key is read as it is, and stays plain.
    let plain = work.path().join("plain.db");
    rt.block_on(async {
        let b = session_sqlite::SqliteBackend::open(&plain).await.expect("open");
        b.save_session(&data).await.expect("save");
        b.close().await.expect("close");
    });
    let snapshot = ReadOnly::open(&plain).expect("open").load_with_key(&key(K1)).expect("read").expect("a session");
    assert_eq!((snapshot.data, snapshot.sealed_with), (data, None));
}
