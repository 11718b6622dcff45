//! `login_helper`: `--help` offline, and whole logins (bot with a DC migration, user with 2FA)
//! against the loopback MTProto peer of layer-client's tests, with input piped to stdin.

#![allow(clippy::unwrap_used)]

#[path = "../../layer-client/tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use grammers_tl_types::{self as tl, Identifiable};
use layer_client::core::SelfUser;
use support::{routes, session_for, state, Dc, Handler, Reply};

const API_ID: &str = "424242";
const API_HASH: &str = "0123456789abcdef0123456789abcdef";

fn handler<F: Fn(&support::Call) -> Reply + Send + Sync + 'static>(f: F) -> Handler {
    Arc::new(f)
}

/// Runs login_helper with `args`, feeding `input` on stdin, on a blocking thread (the loopback
/// DCs keep running on the test's runtime meanwhile).
async fn login_helper(args: Vec<String>, input: &'static str) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_login_helper"))
            .args(&args)
            .env("TG_API_ID", API_ID)
            .env("TG_API_HASH", API_HASH)
            .env_remove("TG_SESSION")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn printed_session(out: &Output) -> layer_client::core::SessionData {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find_map(|l| l.strip_prefix("TG_SESSION=")).expect("a TG_SESSION= line");
    session_string::decode(line).unwrap()
}

#[test]
fn help_works_offline() {
    let out = Command::new(env!("CARGO_BIN_EXE_login_helper")).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("TG_SESSION=<string>") && text.contains("--api-id"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_login_helper")).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_login_through_a_migration_prints_the_session() {
    let dc2 = Dc::start(
        2,
        2,
        routes(HashMap::from([(
            tl::functions::auth::ImportBotAuthorization::CONSTRUCTOR_ID,
            handler(|_| Reply::err(303, "USER_MIGRATE_4")),
        )])),
    )
    .await;
    let dc4 = Dc::start(
        4,
        4,
        routes(HashMap::from([
            (
                tl::functions::auth::ImportBotAuthorization::CONSTRUCTOR_ID,
                handler(|call| {
                    let req: tl::functions::auth::ImportBotAuthorization = call.parse();
                    assert_eq!(req.bot_auth_token, "1001:AAH-token");
                    support::authorization(support::self_user(1001, 0x5eed, true))
                }),
            ),
            (tl::functions::updates::GetState::CONSTRUCTOR_ID, handler(|_| state(9, 0, 1_700_000_000, 1))),
        ])),
    )
    .await;
    // The DCs' addresses and keys come in as a session string (login_helper --session).
    let seed = session_string::encode_full(&session_for(&[&dc2, &dc4], 2, None)).unwrap();
    let out = login_helper(vec!["--session".into(), seed], "1001:AAH-token\n").await;
    let data = printed_session(&out);
    assert_eq!((data.home_dc, data.user), (4, Some(SelfUser::new(1001, true))));
    assert_eq!(data.auth_key(4).map(|k| *k.as_bytes()), Some(dc4.key));
    assert_eq!(dc4.init_api_ids.lock().unwrap().first(), Some(&424242));

    // Run again with the printed string: already logged in, printed again without a login.
    let again = String::from_utf8(out.stdout).unwrap();
    let s = again.lines().find_map(|l| l.strip_prefix("TG_SESSION=")).unwrap().to_owned();
    let out = login_helper(vec!["--session".into(), s], "").await;
    assert_eq!(printed_session(&out).user, Some(SelfUser::new(1001, true)));
    assert_eq!(dc4.count::<tl::functions::auth::ImportBotAuthorization>(), 1, "no second login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_login_with_code_and_password() {
    let srp = Arc::new(support::Srp::new("correct horse"));
    let (s1, s2) = (Arc::clone(&srp), Arc::clone(&srp));
    let dc2 = Dc::start(
        2,
        2,
        routes(HashMap::from([
            (
                tl::functions::auth::SendCode::CONSTRUCTOR_ID,
                handler(|_| {
                    let kind = tl::enums::auth::SentCodeType::Sms(tl::types::auth::SentCodeTypeSms { length: 5 });
                    let mut sent = support::blank::blank_auth_sentcode(kind);
                    sent.phone_code_hash = "h".into();
                    Reply::ok(&tl::enums::auth::SentCode::Code(sent))
                }),
            ),
            (
                tl::functions::auth::SignIn::CONSTRUCTOR_ID,
                handler(|call| {
                    let req: tl::functions::auth::SignIn = call.parse();
                    match req.phone_code.as_deref() {
                        Some("24680") => Reply::err(401, "SESSION_PASSWORD_NEEDED"),
                        _ => Reply::err(400, "PHONE_CODE_INVALID"),
                    }
                }),
            ),
            (tl::functions::account::GetPassword::CONSTRUCTOR_ID, handler(move |_| s1.account_password())),
            (
                tl::functions::auth::CheckPassword::CONSTRUCTOR_ID,
                handler(move |call| {
                    if s2.verify(&call.parse()) {
                        support::authorization(support::self_user(5005, 0xabcd, false))
                    } else {
                        Reply::err(400, "PASSWORD_HASH_INVALID")
                    }
                }),
            ),
            (tl::functions::updates::GetState::CONSTRUCTOR_ID, handler(|_| state(1, 0, 1_700_000_000, 1))),
        ])),
    )
    .await;
    let seed = session_string::encode_full(&session_for(&[&dc2], 2, None)).unwrap();
    // A wrong code, the right one, a wrong password, the right one.
    let input = "+15550001\n11111\n24680\nnot it\ncorrect horse\n";
    let out = login_helper(vec!["--session".into(), seed], input).await;
    let data = printed_session(&out);
    assert_eq!(data.user, Some(SelfUser::new(5005, false)));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Wrong password") && stderr.contains("invalid or expired"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("correct horse"), "the password is never printed");
}
