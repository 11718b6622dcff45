//! `layer-session` against a real libSQL server (sqld, installed by `cargo xtask setup`).

mod common;
#[path = "../../session-libsql/tests/support/mod.rs"]
mod sqld;

use common::{copy_fixtures, differences, inspect, run, s};

#[test]
fn convert_to_a_remote_libsql_database_and_back_with_a_token() {
    let dir = copy_fixtures();
    let work = tempfile::tempdir().expect("tempdir");
    let key = sqld::JwtKey::random();
    let key_file = work.path().join("jwt.pub");
    key.write_public_key(&key_file);
    let server = sqld::Sqld::start(&work.path().join("server"), Some(&key_file));
    let url = server.url().replacen("http://", "libsql+http://", 1);
    let token = key.token();
    let src = dir.path().join("ferogram/ferogram-v8-dev.session");
    let original = inspect(s(&src));

    let (code, _, err) = run(&["convert", "--token", &token, s(&src), &url]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&["inspect", "--json", "--reveal-secrets", "--token", &token, &url]);
    assert_eq!(code, 0, "{err}");
    let remote: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(remote["format"], "libsql-remote");
    let mut bad = Vec::new();
    differences(&original, &remote, "remote", &mut bad);
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(run(&["verify", "--token", &token, &url]).0, 0);
    let (code, out, err) = run(&["list", "--token", &token, &url]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"default\": stored; not held"), "the tool's own lease was handed back: {out}");

    // The remote database holds a session now: replacing it needs --force.
    let other = dir.path().join("telethon/telethon-sqlite.session");
    let (code, _, err) = run(&["convert", "--token", &token, s(&other), &url]);
    assert_eq!(code, 3, "{err}");
    // Back into a local file.
    let local = work.path().join("back.session");
    let (code, _, err) = run(&["convert", "--token", &token, &url, s(&local)]);
    assert_eq!(code, 0, "{err}");
    let back = inspect(s(&local));
    let mut bad = Vec::new();
    differences(&original, &back, "back", &mut bad);
    assert!(bad.is_empty(), "{bad:?}");

    // A refused token: the source is unreadable (2), the destination unwritable (3); the token
    // never appears in the message.
    let (code, _, err) = run(&["inspect", "--token", "not-a-token", &url]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["convert", "--force", "--token", "not-a-token", s(&other), &url]);
    assert_eq!(code, 3, "{err}");
    assert!(!err.contains(&token));
    drop(server);
}

#[test]
fn the_token_comes_from_a_file_or_the_environment() {
    let dir = copy_fixtures();
    let work = tempfile::tempdir().expect("tempdir");
    let key = sqld::JwtKey::random();
    let key_file = work.path().join("jwt.pub");
    key.write_public_key(&key_file);
    let server = sqld::Sqld::start(&work.path().join("server"), Some(&key_file));
    let url = server.url().replacen("http://", "libsql+http://", 1);
    let token = key.token();
    let src = dir.path().join("ferogram/ferogram-v8-dev.session");

    // From the environment.
    let out = common::tool()
        .env("LAYER_SESSION_LIBSQL_TOKEN", &token)
        .args(["convert", s(&src), &url])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // From a file (with the newline an editor adds).
    let token_file = work.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).expect("token file");
    let (code, out, err) = run(&["inspect", "--json", "--token-file", s(&token_file), &url]);
    assert_eq!(code, 0, "{err}");
    let remote: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(remote["format"], "libsql-remote");
    assert_eq!(run(&["verify", "--token-file", s(&token_file), &url]).0, 0);
    // Without any token the server refuses; a wrong token in the file too; neither is echoed.
    let (code, _, err) = run(&["inspect", &url]);
    assert_eq!(code, 2, "{err}");
    let wrong = key.token().replace('.', "x.");
    std::fs::write(&token_file, &wrong).expect("token file");
    let (code, out, err) = run(&["inspect", "--token-file", s(&token_file), &url]);
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains(&wrong) && !out.contains(&wrong) && !err.contains(&token), "{err}");
    drop(server);
}

/// A remote session that a running program owns (its lease) is not replaced by `convert`, even
/// with `--force`: exit 3 naming the holder, the server unchanged; once the owner closes, the
/// same command goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_session_held_by_a_running_program_is_not_replaced() {
    use session_core::{Change, SessionBackend, SessionData};
    let dir = copy_fixtures();
    let work = tempfile::tempdir().expect("tempdir");
    let server = sqld::Sqld::start(&work.path().join("server"), None);
    let url = server.url().replacen("http://", "libsql+http://", 1);
    let holder = session_libsql::LibSqlBackend::open_remote(&server.url(), "").await.expect("owner");
    let mut held = SessionData::default();
    held.apply(&Change::SetHomeDc(4));
    holder.save_session(&held).await.expect("save");
    let src = dir.path().join("ferogram/ferogram-v8-dev.session");
    let args = ["convert".to_owned(), "--force".to_owned(), s(&src).to_owned(), url.clone()];
    let convert = move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&refs)
    };
    let (code, _, err) = tokio::task::spawn_blocking(convert.clone()).await.expect("join");
    assert_eq!(code, 3, "a held remote session was replaced: {err}");
    assert!(err.contains(&format!("pid {} ", std::process::id())), "the holder is not named: {err}");
    assert_eq!(holder.load_session().await.expect("load"), Some(held), "the server changed");
    holder.close().await.expect("close");
    let (code, _, err) = tokio::task::spawn_blocking(convert).await.expect("join");
    assert_eq!(code, 0, "{err}");
}
