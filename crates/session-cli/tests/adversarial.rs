//! `layer-session` tried as an attacker or an unlucky operator would (issue 13): every
//! destination-writing command against a session a running program holds, what a run leaves
//! behind (lock files, staging folders, modes under umask 022), secrets in every message,
//! inputs that would hang or never end, and what `inspect` creates beside a database it only
//! reads. Every command runs as a child process with a deadline: a hang fails the test.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{copy_fixtures, s};
use session_core::{AuthKey, DcOption, Peer, PeerKind, SelfUser, SessionBackend, SessionData, UpdateState};

const BIN: &str = env!("CARGO_BIN_EXE_layer-session");

/// A finished run.
#[derive(Debug)]
struct Run {
    code: i32,
    out: String,
    err: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}\n{}", self.out, self.err)
    }
}

/// The command under umask 022, with `env` set and stdin from `stdin` (or nothing).
fn command(args: &[&str], env: &[(&str, &str)], stdin: Option<&Path>) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg("umask 022 && exec \"$@\"").arg("sh").arg(BIN).args(args);
    cmd.env_remove("LAYER_SESSION_LIBSQL_TOKEN").env_remove("LAYER_SESSION_FAILPOINT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    match stdin {
        Some(p) => cmd.stdin(std::fs::File::open(p).expect("stdin file")),
        None => cmd.stdin(Stdio::null()),
    };
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs and waits at most `limit`; a run still going then is killed and fails the test.
fn run_within(limit: Duration, args: &[&str], env: &[(&str, &str)], stdin: Option<&Path>) -> Run {
    try_run_within(limit, args, env, stdin).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs and waits at most `limit`; a run still going then is killed and reported as an error.
fn try_run_within(limit: Duration, args: &[&str], env: &[(&str, &str)], stdin: Option<&Path>) -> Result<Run, String> {
    let mut child = command(args, env, stdin).spawn().expect("spawn");
    let out = drain(child.stdout.take().expect("stdout"));
    let err = drain(child.stderr.take().expect("stderr"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("`layer-session {}` still ran after {limit:?} (killed): it hangs", args.join(" ")));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Run {
        code: status.code().unwrap_or(-1),
        out: out.join().expect("stdout thread"),
        err: err.join().expect("stderr thread"),
    })
}

fn run(args: &[&str]) -> Run {
    run_within(Duration::from_secs(60), args, &[], None)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build().expect("runtime")
}

/// Every file under `dir` with its bytes (folders listed with no bytes), sorted.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    if dir.is_dir() {
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(dir).expect("read_dir").map(|e| e.expect("e").path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                out.push((p.clone(), None));
                out.extend(snapshot(&p));
            } else {
                out.push((p.clone(), Some(std::fs::read(&p).expect("read"))));
            }
        }
    } else {
        out.push((dir.to_path_buf(), Some(std::fs::read(dir).expect("read"))));
    }
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).expect("meta").permissions().mode() & 0o777
}

/// Every destination kind a local path can name: (prefix, file name).
const DEST_KINDS: [(&str, &str); 13] = [
    ("file:", "ours.session"),
    ("sqlite:", "ours.db"),
    ("libsql:", "ours.libsql"),
    ("telethon:", "telethon.session"),
    ("pyrogram:", "pyrogram.session"),
    ("pyrofork:", "pyrofork.session"),
    ("kurigram:", "kurigram.session"),
    ("gramjs:", "gramjs-store"),
    ("layer:", "layer.session"),
    ("ferogram:", "ferogram.session"),
    ("string:", "ours.txt"),
    ("telethon:", "telethon.txt"),
    ("mtcute:", "mtcute.txt"),
];

fn source(dir: &Path) -> PathBuf {
    dir.join("ferogram/ferogram-v8-dev.session")
}

fn convert_args<'a>(src: &'a str, dest: &'a str) -> Vec<&'a str> {
    vec!["convert", "--force", "--allow-lossy", "--api-id", "12345", src, dest]
}

/// Holds `path` as a running program would: a backend where one opens that kind of file,
/// else the owner lock the backends take.
enum Holder {
    File(#[allow(dead_code)] session_file::BinaryFileBackend),
    Sqlite(#[allow(dead_code)] session_sqlite::SqliteBackend),
    Lock(#[allow(dead_code)] session_core::fs::OwnerLock),
    Folder(#[allow(dead_code)] std::fs::File),
}

fn hold(rt: &tokio::runtime::Runtime, prefix: &str, path: &Path) -> Holder {
    match prefix {
        "file:" | "layer:" | "ferogram:" => {
            Holder::File(rt.block_on(session_file::BinaryFileBackend::open(path.to_path_buf())).expect("hold file"))
        }
        "sqlite:" | "libsql:" => {
            Holder::Sqlite(rt.block_on(session_sqlite::SqliteBackend::open(path)).expect("hold db"))
        }
        _ if path.is_dir() => {
            // A folder: the lock file beside it, as an owner lock of that name takes it.
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(session_core::fs::lock_path(path))
                .expect("lock file");
            f.try_lock().expect("lock");
            Holder::Folder(f)
        }
        _ => Holder::Lock(session_core::fs::OwnerLock::acquire(path).expect("hold")),
    }
}

#[test]
fn every_destination_a_running_program_holds_is_refused_and_left_unchanged() {
    let fixtures = copy_fixtures();
    let src = source(fixtures.path());
    let rt = rt();
    let mut refused = 0;
    let mut batches = 0;
    let mut failures = Vec::new();
    for (prefix, name) in DEST_KINDS {
        let work = tempfile::tempdir().expect("tempdir");
        let path = work.path().join(name);
        let dest = format!("{prefix}{}", s(&path));
        let first = run(&convert_args(s(&src), &dest));
        assert_eq!(first.code, 0, "{dest}: {}", first.err);
        let before = snapshot(&path);
        let holder = hold(&rt, prefix, &path);
        let other = fixtures.path().join("telethon/telethon-sqlite.session");
        let r = run(&convert_args(s(&other), &dest));
        if r.code != 3 || !r.err.contains("held by a running program") {
            failures.push(format!("{dest}: convert --force exit {} (want 3, held): {}", r.code, r.err.trim()));
        }
        if snapshot(&path) != before {
            failures.push(format!("{dest}: a held destination was changed by convert --force"));
        }

        // The same through a batch conversion into the folder holding it.
        let batch_src = tempfile::tempdir().expect("tempdir");
        let stem = name.split('.').next().expect("stem");
        let batch_item = batch_src.path().join(format!("{stem}.session"));
        std::fs::copy(&other, &batch_item).expect("copy");
        let batch_dest = format!("{prefix}{}", s(work.path()));
        let expected = match prefix {
            "sqlite:" => work.path().join(format!("{stem}.db")),
            "libsql:" => work.path().join(format!("{stem}.db")),
            "string:" | "mtcute:" => work.path().join(format!("{stem}.txt")),
            "gramjs:" => work.path().join(stem),
            _ => work.path().join(format!("{stem}.session")),
        };
        if expected == path {
            let r =
                run(&["convert", "--force", "--allow-lossy", "--api-id", "12345", s(batch_src.path()), &batch_dest]);
            if r.code != 3 {
                failures.push(format!("batch into held {dest}: exit {} (want 3): {}", r.code, r.out.trim()));
            }
            if snapshot(&path) != before {
                failures.push(format!("batch: {dest}: a held destination was changed"));
            }
            batches += 1;
        }
        drop(holder);
        refused += 1;
    }
    // Held through another name (a symlink in another folder): the same session, refused.
    let work = tempfile::tempdir().expect("tempdir");
    let real = work.path().join("real.session");
    let first = run(&convert_args(s(&src), &format!("telethon:{}", s(&real))));
    assert_eq!(first.code, 0, "{}", first.err);
    let links = tempfile::tempdir().expect("tempdir");
    let alias = links.path().join("alias.session");
    std::os::unix::fs::symlink(&real, &alias).expect("symlink");
    let before = snapshot(&real);
    let holder = session_core::fs::OwnerLock::acquire(&alias).expect("hold through the alias");
    let r = run(&convert_args(s(&src), &format!("pyrogram:{}", s(&real))));
    if r.code != 3 || snapshot(&real) != before {
        failures.push(format!("held through a symlink: convert --force exit {}: {}", r.code, r.err.trim()));
    }
    drop(holder);
    refused += 1;
    assert!(
        failures.is_empty(),
        "{} failures in {} cases:\n{}",
        failures.len(),
        refused + batches,
        failures.join("\n")
    );
    assert_eq!(refused, DEST_KINDS.len() + 1);
    assert!(batches >= 8, "{batches}");
}

#[test]
fn no_lock_file_or_staging_folder_is_left_beside_outputs() {
    let fixtures = copy_fixtures();
    let src = source(fixtures.path());
    let work = tempfile::tempdir().expect("tempdir");
    let mut expected = Vec::new();
    for (prefix, name) in DEST_KINDS {
        let dest = format!("{prefix}{}", s(&work.path().join(name)));
        let r = run(&convert_args(s(&src), &dest));
        assert_eq!(r.code, 0, "{dest}: {}", r.err);
        // Twice: replacing an output leaves nothing either.
        let r = run(&convert_args(s(&src), &dest));
        assert_eq!(r.code, 0, "{dest}: {}", r.err);
        expected.push(name.to_owned());
    }
    expected.sort();
    assert_eq!(names(work.path()), expected, "only the outputs: no .lock files, no staging folders");

    // Batch: the same in the destination folder.
    let batch = work.path().join("batch");
    let r = run(&["convert", "--allow-lossy", s(&fixtures.path().join("telethon")), &format!("sqlite:{}", s(&batch))]);
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    for n in names(&batch) {
        assert!(n.ends_with(".db"), "batch left {n}");
    }

    // A lock file that was there before beside the session (the program that uses it made it,
    // with its notes) stays; one beside no session (a killed run's) is taken over.
    let kept = work.path().join("kept.session");
    let r = run(&convert_args(s(&src), &format!("telethon:{}", s(&kept))));
    assert_eq!(r.code, 0, "{}", r.err);
    let lock = session_core::fs::lock_path(&kept);
    std::fs::write(&lock, "").expect("lock file");
    let r = run(&convert_args(s(&src), &format!("telethon:{}", s(&kept))));
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(lock.exists(), "a lock file that existed before is left in place");
}

/// The staging folders in `dir`.
fn stages(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("e").path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".layer-session")))
        .collect();
    v.sort();
    v
}

/// A convert paused by the failpoint once its staging folder is written.
fn paused(src: &Path, dest: &str) -> Child {
    let mut child = command(&convert_args(s(src), dest), &[("LAYER_SESSION_FAILPOINT", "pause-after-stage")], None)
        .spawn()
        .expect("spawn");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            match err.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if line.contains("failpoint: paused") => {
                    let _ = tx.send(line);
                    break;
                }
                Ok(_) => seen.push_str(&line),
            }
        }
        let _ = tx.send(seen);
        let _ = std::io::copy(&mut err, &mut std::io::sink());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) if line.contains("failpoint: paused") => child,
        other => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the convert into {dest} did not pause with its staging folder written: {other:?}");
        }
    }
}

#[test]
fn a_killed_convert_leaves_only_a_private_staging_folder_that_the_next_run_removes() {
    let fixtures = copy_fixtures();
    let src = source(fixtures.path());
    let work = tempfile::tempdir().expect("tempdir");
    let mut cases = 0;
    for (prefix, name) in
        [("telethon:", "t.session"), ("gramjs:", "store"), ("layer:", "l.session"), ("string:", "s.txt")]
    {
        let dest = format!("{prefix}{}", s(&work.path().join(name)));
        let mut killed = paused(&src, &dest);
        let left = stages(work.path());
        assert_eq!(left.len(), 1, "{dest}: one staging folder: {left:?}");
        let stage = &left[0];
        assert_eq!(mode(stage), 0o700, "{dest}: the staging folder is private from its creation");
        for (p, _) in snapshot(stage) {
            let want = if p.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode(&p), want, "{dest}: {} inside the staging folder", p.display());
        }
        killed.kill().expect("SIGKILL");
        killed.wait().expect("reaped");
        assert_eq!(stages(work.path()), left, "a killed run leaves its staging folder (keys inside)");
        let orphan = session_core::fs::lock_path(&work.path().join(name));
        assert!(orphan.exists(), "{dest}: the killed run held the destination's lock");

        // A live run's staging folder is not touched by the next run; the dead one's is.
        let live_dest = format!("telethon:{}", s(&work.path().join("live.session")));
        let mut live = paused(&src, &live_dest);
        let now = stages(work.path());
        assert_eq!(now.len(), 1, "{dest}: the next run removed the dead run's staging folder: {now:?}");
        assert_ne!(now[0], *stage);
        let r = run(&convert_args(s(&src), &format!("ferogram:{}", s(&work.path().join("other.session")))));
        assert_eq!(r.code, 0, "{}", r.err);
        assert_eq!(stages(work.path()), now, "a live run's staging folder stays");
        live.kill().expect("SIGKILL");
        live.wait().expect("reaped");
        let r = run(&convert_args(s(&src), &format!("ferogram:{}", s(&work.path().join("other.session")))));
        assert_eq!(r.code, 0, "{}", r.err);
        assert!(stages(work.path()).is_empty(), "every dead run's staging folder is gone");
        // Converting into the killed run's destination again takes over its orphaned lock file
        // and leaves none.
        let r = run(&convert_args(s(&src), &dest));
        assert_eq!(r.code, 0, "{}", r.err);
        assert!(!orphan.exists(), "{dest}: the killed run's lock file is gone after the next conversion");
        for n in names(work.path()) {
            let _ = std::fs::remove_file(work.path().join(&n));
            let _ = std::fs::remove_dir_all(work.path().join(&n));
        }
        cases += 1;
    }
    assert_eq!(cases, 4);
}

#[test]
fn every_file_and_folder_a_command_creates_is_private_under_umask_022() {
    let fixtures = copy_fixtures();
    let src = source(fixtures.path());
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("out");
    std::fs::create_dir(&out).expect("out");
    for (prefix, name) in DEST_KINDS {
        let path = out.join(name);
        let dest = format!("{prefix}{}", s(&path));
        let r = run(&convert_args(s(&src), &dest));
        assert_eq!(r.code, 0, "{dest}: {}", r.err);
        // Made world-readable by someone, then replaced: private again.
        if path.is_file() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        } else {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let r = run(&convert_args(s(&src), &dest));
        assert_eq!(r.code, 0, "{dest} over a 0644 destination: {}", r.err);
    }
    let batch = out.join("nested/deeper");
    let r = run(&["convert", "--allow-lossy", s(&fixtures.path().join("telethon")), &format!("sqlite:{}", s(&batch))]);
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    let mut checked = 0;
    let mut loose = Vec::new();
    for (p, bytes) in snapshot(&out) {
        let want = if bytes.is_none() { 0o700 } else { 0o600 };
        if mode(&p) != want {
            loose.push(format!("{} is {:o}", p.display(), mode(&p)));
        }
        checked += 1;
    }
    assert!(loose.is_empty(), "not private: {loose:?}");
    assert!(checked > DEST_KINDS.len(), "{checked}");
}

/// A session whose every secret is random: the auth key, the future auth token; and 64-bit
/// values above 2^53.
fn secret_session(dir: &Path, user_id: i64) -> (PathBuf, SessionData) {
    let mut key = [0u8; 256];
    let mut token = vec![0u8; 32];
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_nanos();
    let mut x = u64::try_from(seed % u128::from(u64::MAX)).unwrap_or(1) | 1;
    for b in key.iter_mut().chain(token.iter_mut()) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x.to_le_bytes()[3];
    }
    let mut data = SessionData::default();
    data.home_dc = 2;
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(149, 154, 167, 51), 443));
    let option = DcOption::new(2, addr).with_auth_key(AuthKey::from_slice(&key));
    data.dcs.insert(option.key(), option);
    data.user = Some(SelfUser::new(user_id, false));
    data.api_id = Some(12345);
    data.updates = UpdateState::new(10, 2, 1_700_000_000, 3);
    data.peers = [Peer::new(9_007_199_254_740_995, PeerKind::User, -9_007_199_254_740_997)].into_iter().collect();
    data.future_auth_token = Some(token);
    let path = dir.join("secret.session");
    let rt = rt();
    rt.block_on(async {
        let backend = session_file::BinaryFileBackend::open(path.clone()).await.expect("open");
        backend.save_session(&data).await.expect("save");
    });
    let _ = std::fs::remove_file(session_core::fs::lock_path(&path));
    (path, data)
}

fn hexs(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A failure when `text` holds any 16-character piece of `secret`.
fn piece_of(text: &str, secret: &str, what: &str, case: &str) -> Option<String> {
    let chars: Vec<char> = secret.chars().collect();
    chars.windows(16).map(|w| w.iter().collect::<String>()).find(|piece| text.contains(piece.as_str())).map(|piece| {
        let at = text.find(&piece).unwrap_or(0);
        let context: String = text[at.saturating_sub(60)..].chars().take(120).collect();
        format!("{case}: a piece of the {what} ({piece}) appears in: ...{context}...")
    })
}

#[test]
fn no_message_of_any_command_holds_a_secret() {
    let work = tempfile::tempdir().expect("tempdir");
    let (file, data) = secret_session(work.path(), 123_456_789);
    let key_hex = hexs(data.home().and_then(|o| o.auth_key.as_ref()).expect("key").as_bytes());
    let token_hex = hexs(data.future_auth_token.as_deref().expect("token"));
    let mut strings = Vec::new();
    for format in ["ours", "telethon", "pyrogram", "gramjs", "mtcute", "layer", "ferogram", "ferogram-compact"] {
        let r = run(&["export-string", "--format", format, "--api-id", "12345", s(&file)]);
        assert_eq!(r.code, 0, "{format}: {}", r.err);
        strings.push((format, r.out.trim().to_owned()));
    }
    let full = strings[0].1.clone();
    let jwt =
        "eyJhbGciOiJFZERTQSJ9.eyJpYXQiOjE3MDAwMDAwMDAsImlkIjoic2VjcmV0In0.Zm9vYmFyYmF6cXV4c2VjcmV0c2lnbmF0dXJlMTIzNDU2";
    let password = "Hunter2Secret9Password";
    let token_file = work.path().join("token");
    std::fs::write(&token_file, jwt).expect("token file");
    let mut cases: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |args: Vec<String>| cases.push((args.join(" ").chars().take(80).collect(), args));
    for (format, text) in &strings {
        let cut = &text[..text.len() / 2];
        let mut bad_char = text.clone();
        bad_char.replace_range(text.len() / 2..text.len() / 2 + 1, "!");
        let mut swapped: Vec<char> = text.chars().collect();
        let n = swapped.len();
        swapped.swap(n / 3, n / 3 + 7);
        let swapped: String = swapped.into_iter().collect();
        for variant in [text.as_str(), cut, bad_char.as_str(), swapped.as_str()] {
            for cmd in ["inspect", "verify", "export-string"] {
                add(vec![cmd.into(), variant.to_owned()]);
                add(vec![cmd.into(), format!("string:{variant}")]);
                add(vec![cmd.into(), format!("telethon:{variant}")]);
                add(vec![cmd.into(), format!("telethn:{variant}")]);
                add(vec![cmd.into(), format!("{format}:{variant}")]);
            }
            add(vec!["inspect".into(), "--json".into(), variant.to_owned()]);
            add(vec!["convert".into(), variant.to_owned(), s(&work.path().join("o.session")).into()]);
            add(vec!["convert".into(), s(&file).into(), format!("mtcute:{variant}")]);
            // A string session given as the destination's name (in the scratch folder).
            add(vec!["convert".into(), s(&file).into(), s(&work.path().join(variant.replace('/', "_"))).into()]);
        }
    }
    for url in [
        format!("libsql+http://admin:{password}@127.0.0.1:9"),
        format!("libsql://admin:{password}@db.example.invalid"),
        format!("libsql+http://127.0.0.1:9/?authToken={jwt}"),
    ] {
        add(vec!["inspect".into(), url.clone()]);
        add(vec!["verify".into(), "--token".into(), jwt.into(), url.clone()]);
        add(vec!["convert".into(), s(&file).into(), url.clone()]);
        add(vec!["convert".into(), url.clone(), s(&work.path().join("r.session")).into()]);
    }
    for url in ["libsql+http://127.0.0.1:9", "libsql+https://127.0.0.1:9"] {
        add(vec!["inspect".into(), "--token".into(), jwt.into(), url.into()]);
        add(vec!["inspect".into(), "--token-file".into(), s(&token_file).into(), url.into()]);
        add(vec!["convert".into(), "--token".into(), jwt.into(), s(&file).into(), url.into()]);
        add(vec!["export-string".into(), "--token".into(), jwt.into(), url.into()]);
    }
    // The session itself, every command, with lossy targets that print what they drop.
    add(vec!["inspect".into(), s(&file).into()]);
    add(vec!["inspect".into(), "--json".into(), s(&file).into()]);
    add(vec!["verify".into(), s(&file).into()]);
    add(vec!["convert".into(), s(&file).into(), format!("layer:{}", s(&work.path().join("l.session")))]);
    add(vec![
        "convert".into(),
        "--allow-lossy".into(),
        s(&file).into(),
        format!("layer:{}", s(&work.path().join("l2.session"))),
    ]);
    add(vec![
        "convert".into(),
        "--allow-lossy".into(),
        s(&file).into(),
        format!("telethon:{}", s(&work.path().join("t.session"))),
    ]);
    let mut tried = 0;
    let mut failures = Vec::new();
    for (case, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = run_within(Duration::from_secs(60), &args, &[], None);
        let shown = r.all();
        // `export-string` prints the string on stdout on purpose: only its messages count.
        let shown = if args[0] == "export-string" && r.code == 0 { r.err.clone() } else { shown };
        let mut found = vec![
            piece_of(&shown, &key_hex, "auth key (hex)", case),
            piece_of(&shown, &token_hex, "future auth token (hex)", case),
            piece_of(&shown, jwt, "token", case),
        ];
        for (format, text) in &strings {
            found.push(piece_of(&shown, text, &format!("{format} string"), case));
        }
        if shown.contains(password) {
            found.push(Some(format!("{case}: the URL password appears in: {shown}")));
        }
        if let Some(first) = found.into_iter().flatten().next() {
            failures.push(first);
        }
        tried += 1;
    }
    assert!(failures.is_empty(), "{} of {tried} runs showed a secret:\n{}", failures.len(), failures.join("\n"));
    assert!(tried > 400, "{tried}");
    assert!(!full.is_empty());
}

#[test]
fn fifos_devices_folders_huge_files_and_endless_stdin_are_refused_at_once() {
    let work = tempfile::tempdir().expect("tempdir");
    let fifo = work.path().join("fifo.session");
    let st = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(st.success());
    let folder = work.path().join("folder");
    std::fs::create_dir(&folder).expect("folder");
    std::fs::write(folder.join("notes.md"), "not a session").expect("file");
    let huge = work.path().join("huge.session");
    // Sparse: no disk used, but a reader without a bound would try to hold all of it.
    std::fs::File::create(&huge).expect("huge").set_len(6 << 30).expect("set_len");
    let huge_text = work.path().join("huge.txt");
    std::fs::File::create(&huge_text).expect("huge").set_len(2 << 30).expect("set_len");
    let store = work.path().join("store");
    std::fs::create_dir(&store).expect("store");
    let st = Command::new("mkfifo").arg(store.join("s%3AauthKey")).status().expect("mkfifo");
    assert!(st.success());
    let out = work.path().join("out.session");
    let limit = Duration::from_secs(10);
    let sources: Vec<(String, &str)> = vec![
        (s(&fifo).to_owned(), "FIFO"),
        (format!("telethon:{}", s(&fifo)), "FIFO"),
        (format!("file:{}", s(&fifo)), "FIFO"),
        ("/dev/zero".to_owned(), "device"),
        ("/dev/urandom".to_owned(), "device"),
        ("sqlite:/dev/zero".to_owned(), "device"),
        (s(&folder).to_owned(), "folder"),
        (s(&huge).to_owned(), "larger"),
        (format!("telethon:{}", s(&huge_text)), "larger"),
        (s(&store).to_owned(), "regular file"),
    ];
    let mut tried = 0;
    let mut failures = Vec::new();
    let mut check = |args: &[&str], stdin: Option<&Path>, code: i32, reason: &str| {
        tried += 1;
        match try_run_within(limit, args, &[], stdin) {
            Err(hang) => failures.push(hang),
            Ok(r) if r.code != code || !r.err.contains(reason) || r.err.trim_end().lines().count() != 1 => failures
                .push(format!("{args:?}: exit {} (want {code}, one line saying {reason:?}): {}", r.code, r.err.trim())),
            Ok(_) => {}
        }
    };
    for (src, reason) in &sources {
        for cmd in ["inspect", "verify", "export-string", "convert"] {
            let mut args = vec![cmd, src.as_str()];
            if cmd == "convert" {
                if src == s(&folder) {
                    continue; // A folder source is a batch conversion.
                }
                args.push(s(&out));
            }
            check(&args, None, 2, reason);
        }
    }
    // Standard input that never ends.
    for cmd in ["inspect", "verify", "export-string"] {
        check(&[cmd, "-"], Some(Path::new("/dev/zero")), 2, "larger");
    }
    // A token file that is a FIFO or a device.
    for token in [s(&fifo), "/dev/zero"] {
        check(&["inspect", "--token-file", token, "libsql+http://127.0.0.1:9"], None, 1, "regular file");
    }
    assert!(failures.is_empty(), "{} of {tried} runs failed:\n{}", failures.len(), failures.join("\n"));
    assert!(!out.exists());
    assert_eq!(tried, 10 * 4 - 1 + 3 + 2);
}

#[test]
fn inspect_creates_nothing_beside_a_database_and_shows_its_real_schema_version() {
    let fixtures = copy_fixtures();
    let src = source(fixtures.path());
    let work = tempfile::tempdir().expect("tempdir");
    let db = work.path().join("ours.db");
    let r = run(&["convert", s(&src), &format!("sqlite:{}", s(&db))]);
    assert_eq!(r.code, 0, "{}", r.err);
    let version: u32 = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open")
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    let wal = work.path().join("ours.db-wal");
    // Closed cleanly; then checkpointed with an empty -wal left behind (an owner gone, or a
    // copy); then the -wal holds frames (a killed owner whose -shm was removed).
    for case in ["closed", "empty-wal", "wal-with-frames"] {
        match case {
            "empty-wal" => std::fs::write(&wal, b"").expect("wal"),
            "wal-with-frames" => {
                let _ = std::fs::remove_file(&wal);
                let conn = rusqlite::Connection::open(&db).expect("open");
                conn.pragma_update(None, "journal_mode", "WAL").expect("wal mode");
                conn.pragma_update(None, "wal_autocheckpoint", 0).expect("no checkpoint");
                conn.execute_batch("CREATE TABLE IF NOT EXISTS extra(x); INSERT INTO extra VALUES (1);")
                    .expect("write");
                // Leak the connection's files as a killed owner would: copy them aside first.
                std::fs::copy(&wal, work.path().join("keep-wal")).expect("copy wal");
                drop(conn);
                std::fs::rename(work.path().join("keep-wal"), &wal).expect("restore wal");
                let _ = std::fs::remove_file(work.path().join("ours.db-shm"));
            }
            _ => {}
        }
        let before = names(work.path());
        for args in [vec!["inspect", s(&db)], vec!["inspect", "--json", s(&db)], vec!["verify", s(&db)]] {
            let r = run(&args);
            assert_eq!(r.code, 0, "{case}: {args:?}: {}", r.err);
            assert_eq!(names(work.path()), before, "{case}: {args:?} created files beside the database");
        }
        let r = run(&["inspect", "--json", s(&db)]);
        let json: serde_json::Value = serde_json::from_str(&r.out).expect("json");
        assert_eq!(json["format_version"], serde_json::json!(version), "{case}: the database's own schema version");
        let r = run(&["inspect", s(&db)]);
        assert!(r.out.contains(&format!("(version {version})")), "{}", r.out);
    }
    // Held by a running program: read through its -wal and -shm, nothing added.
    let _ = std::fs::remove_file(&wal);
    let rt = rt();
    let backend = rt.block_on(session_sqlite::SqliteBackend::open(&db)).expect("owner");
    let before = names(work.path());
    let r = run(&["inspect", s(&db)]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(names(work.path()), before);
    drop(backend);
}

#[test]
fn inspect_json_writes_64_bit_values_as_strings_and_names_its_schema_version() {
    let work = tempfile::tempdir().expect("tempdir");
    let (file, data) = secret_session(work.path(), 9_007_199_254_740_993);
    let r = run(&["inspect", "--json", s(&file)]);
    assert_eq!(r.code, 0, "{}", r.err);
    let json: serde_json::Value = serde_json::from_str(&r.out).expect("json");
    assert_eq!(json["schema_version"], 2);
    assert_eq!(json["user_id"], "9007199254740993");
    assert_eq!(json["peers"][0]["id"], "9007199254740995");
    assert_eq!(json["peers"][0]["access_hash"], "-9007199254740997");
    let key_id = data.home().and_then(|o| o.auth_key.as_ref()).expect("key").key_id();
    assert_eq!(json["dcs"][0]["auth_key_id"], key_id.to_string());
    // Small values stay numbers.
    assert_eq!(json["home_dc"], 2);
    assert_eq!(json["api_id"], 12345);
    assert_eq!(json["update_state"]["pts"], 10);
}

#[test]
fn the_libsql_token_comes_from_a_file_or_the_environment() {
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("token");
    std::fs::write(&file, "a-token\n").expect("token");
    let url = "libsql+http://127.0.0.1:9";
    // Both flags at once: a usage error, before anything is read.
    let r = run(&["inspect", "--token", "x", "--token-file", s(&file), url]);
    assert_eq!(r.code, 1, "{}", r.err);
    let r = run(&["inspect", "--token-file", s(&work.path().join("missing")), url]);
    assert_eq!(r.code, 1, "{}", r.err);
    std::fs::write(&file, "  \n").expect("token");
    let r = run(&["inspect", "--token-file", s(&file), url]);
    assert_eq!(r.code, 1, "an empty token file: {}", r.err);
    for cmd in ["inspect", "verify", "export-string"] {
        let r = run_within(Duration::from_secs(60), &[cmd, "--help"], &[], None);
        assert!(r.out.contains("--token-file"), "{cmd} --help");
    }
    let r = run_within(Duration::from_secs(60), &["convert", "--help"], &[], None);
    assert!(r.out.contains("--token-file") && r.out.contains("LAYER_SESSION_LIBSQL_TOKEN"), "{}", r.out);
}

#[test]
fn the_string_libraries_own_errors_do_not_echo_the_string() {
    let work = tempfile::tempdir().expect("tempdir");
    let (file, _) = secret_session(work.path(), 123_456_789);
    let mut tried = 0;
    let mut failures = Vec::new();
    for format in ["ours", "telethon", "pyrogram", "gramjs", "mtcute", "layer", "ferogram", "ferogram-compact"] {
        let r = run(&["export-string", "--format", format, "--api-id", "12345", s(&file)]);
        assert_eq!(r.code, 0, "{format}: {}", r.err);
        let text = r.out.trim().to_owned();
        let n = text.len();
        let mut variants =
            vec![text[..n / 2].to_owned(), text[..n - 3].to_owned(), format!("{text}AAAA"), format!("x{text}")];
        for at in [n / 4, n / 2, n - 2] {
            let mut v = text.clone();
            v.replace_range(at..=at, "!");
            variants.push(v);
            let mut v = text.clone();
            v.replace_range(at..=at, if &text[at..=at] == "A" { "B" } else { "A" });
            variants.push(v);
        }
        for v in &variants {
            let mut messages = Vec::new();
            if let Err(e) = session_string::foreign::import(v) {
                messages.push(e.to_string());
            }
            if let Err(e) = session_string::decode(v) {
                messages.push(e.to_string());
            }
            for m in messages {
                tried += 1;
                if let Some(f) = piece_of(&m, &text, &format!("{format} string"), "session_string error") {
                    failures.push(f);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {tried} errors echo the string:\n{}", failures.len(), failures.join("\n"));
    assert!(tried > 100, "{tried}");
}

#[test]
fn libsql_errors_never_name_a_url_password_or_token() {
    let rt = rt();
    let password = "Hunter2Secret9Password";
    let token = "eyJhbGciOiJFZERTQSJ9.eyJpZCI6InNlY3JldCJ9.c2lnbmF0dXJlU2VjcmV0MTIzNDU2";
    let mut tried = 0;
    for url in [
        format!("http://admin:{password}@127.0.0.1:9"),
        format!("libsql://admin:{password}@db.example.invalid"),
        format!("https://admin:{password}@127.0.0.1:9/db"),
        format!("ftp://admin:{password}@127.0.0.1:9"),
        "http://127.0.0.1:9".to_owned(),
    ] {
        let result = rt.block_on(session_libsql::LibSqlBackend::open_remote(&url, token));
        let e = result.expect_err("nothing listens there");
        for shown in [e.to_string(), format!("{e:?}")] {
            tried += 1;
            assert!(!shown.contains(password), "the password appears: {shown}");
            assert!(!shown.contains(token), "the token appears: {shown}");
        }
    }
    assert_eq!(tried, 10);
}
