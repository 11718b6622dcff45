//! The real client (layer-client over grammers) against the loopback MTProto peer.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use grammers_tl_types::{self as tl, Identifiable};
use layer_client::core::{SelfUser, SessionBackend};
use layer_client::session_backend::InMemoryBackend;
use layer_client::{Client, ClientError};
use support::{routes, session_for, state, Dc, Handler, Reply};

const API_ID: i32 = 424242;
const API_HASH: &str = "0123456789abcdef0123456789abcdef";

fn handler<F: Fn(&support::Call) -> Reply + Send + Sync + 'static>(f: F) -> Handler {
    Arc::new(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_key_is_authorized_until_the_server_says_401() {
    let authorized = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&authorized);
    let dc2 = Dc::start(
        2,
        2,
        routes(HashMap::from([(
            tl::functions::updates::GetState::CONSTRUCTOR_ID,
            handler(move |_| {
                if flag.load(Ordering::SeqCst) {
                    state(10, 0, 1_700_000_000, 1)
                } else {
                    Reply::err(401, "AUTH_KEY_UNREGISTERED")
                }
            }),
        )])),
    )
    .await;
    let backend = Arc::new(InMemoryBackend::with_session(session_for(&[&dc2], 2, Some(SelfUser::new(77, false)))));
    let (client, shutdown) =
        Client::builder().session(Arc::clone(&backend)).api_id(API_ID).api_hash(API_HASH).connect().await.unwrap();

    assert!(client.is_authorized().await.unwrap());
    assert_eq!(
        dc2.init_api_ids.lock().unwrap().as_slice(),
        &[API_ID],
        "one connection, initConnection with our api_id"
    );
    authorized.store(false, Ordering::SeqCst);
    assert!(!client.is_authorized().await.unwrap());
    assert_eq!(dc2.count::<tl::functions::updates::GetState>(), 2);

    shutdown.shutdown().await.unwrap();
    // A 401 answer is reported, not acted upon: the stored key is still there.
    let stored = backend.load_session().await.unwrap().unwrap();
    assert_eq!(stored.auth_key(2).map(|k| *k.as_bytes()), Some(dc2.key));
    assert_eq!(stored.api_id, Some(API_ID));
}

/// DC 2 and DC 4 with pre-shared keys; DC 2 redirects bot logins to DC 4.
async fn migrating_cluster(bot_id: i64) -> (Dc, Dc) {
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
                handler(move |call| {
                    let req: tl::functions::auth::ImportBotAuthorization = call.parse();
                    assert_eq!((req.api_id, req.api_hash.as_str()), (API_ID, API_HASH));
                    if req.bot_auth_token == "1001:valid-token" {
                        support::authorization(support::self_user(bot_id, 0x5eed, true))
                    } else {
                        Reply::err(401, "ACCESS_TOKEN_INVALID")
                    }
                }),
            ),
            (tl::functions::updates::GetState::CONSTRUCTOR_ID, handler(|_| state(321, 7, 1_700_000_100, 12))),
        ])),
    )
    .await;
    (dc2, dc4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_sign_in_follows_user_migrate_and_persists_the_new_home() {
    let (dc2, dc4) = migrating_cluster(1001).await;
    let backend = Arc::new(InMemoryBackend::with_session(session_for(&[&dc2, &dc4], 2, None)));
    let (client, shutdown) =
        Client::builder().session(Arc::clone(&backend)).api_id(API_ID).api_hash(API_HASH).connect().await.unwrap();

    let user = client.bot_sign_in("1001:valid-token").await.unwrap();
    assert_eq!(user.id().bare_id(), Some(1001));
    assert_eq!(dc2.count::<tl::functions::auth::ImportBotAuthorization>(), 1);
    assert_eq!(dc4.count::<tl::functions::auth::ImportBotAuthorization>(), 1);

    // Critical changes are durable as soon as the call returns, before any shutdown.
    let stored = backend.load_session().await.unwrap().unwrap();
    assert_eq!(stored.home_dc, 4, "USER_MIGRATE_4 moved the home DC");
    assert_eq!(stored.user, Some(SelfUser::new(1001, true)));
    assert_eq!((stored.updates.pts, stored.updates.qts, stored.updates.seq), (321, 7, 12));
    assert_eq!(stored.auth_key(4).map(|k| *k.as_bytes()), Some(dc4.key));
    assert_eq!(stored.auth_key(2).map(|k| *k.as_bytes()), Some(dc2.key));
    shutdown.shutdown().await.unwrap();
    drop(client);

    // A new client on the same stored session talks to DC 4 straight away.
    let (client, shutdown) =
        Client::builder().session(Arc::clone(&backend)).api_id(API_ID).api_hash(API_HASH).connect().await.unwrap();
    let before = dc2.calls.lock().unwrap().len();
    assert!(client.is_authorized().await.unwrap());
    assert_eq!(dc4.count::<tl::functions::updates::GetState>(), 2);
    assert_eq!(dc2.calls.lock().unwrap().len(), before, "nothing goes to the old DC");
    shutdown.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_bot_token_is_an_rpc_error_and_changes_nothing_but_the_home_dc() {
    let (dc2, dc4) = migrating_cluster(1001).await;
    let backend = Arc::new(InMemoryBackend::with_session(session_for(&[&dc2, &dc4], 2, None)));
    let (client, shutdown) =
        Client::builder().session(Arc::clone(&backend)).api_id(API_ID).api_hash(API_HASH).connect().await.unwrap();
    let err = client.bot_sign_in("1001:wrong").await.unwrap_err();
    assert_eq!(err.rpc_name(), Some("ACCESS_TOKEN_INVALID"), "{err}");
    assert!(err.is_unauthorized());
    shutdown.shutdown().await.unwrap();
    assert_eq!(backend.load_session().await.unwrap().unwrap().user, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_sign_in_with_two_step_verification() {
    let srp = Arc::new(support::Srp::new("hunter2"));
    let (s1, s2) = (Arc::clone(&srp), Arc::clone(&srp));
    let dc2 = Dc::start(
        2,
        2,
        routes(HashMap::from([
            (
                tl::functions::auth::SendCode::CONSTRUCTOR_ID,
                handler(|call| {
                    let req: tl::functions::auth::SendCode = call.parse();
                    assert_eq!(req.phone_number, "+15550001");
                    let kind = tl::enums::auth::SentCodeType::App(tl::types::auth::SentCodeTypeApp { length: 5 });
                    let mut sent = support::blank::blank_auth_sentcode(kind);
                    sent.phone_code_hash = "code-hash-1".into();
                    Reply::ok(&tl::enums::auth::SentCode::Code(sent))
                }),
            ),
            (
                tl::functions::auth::SignIn::CONSTRUCTOR_ID,
                handler(|call| {
                    let req: tl::functions::auth::SignIn = call.parse();
                    assert_eq!(req.phone_code_hash, "code-hash-1");
                    if req.phone_code.as_deref() == Some("12345") {
                        Reply::err(401, "SESSION_PASSWORD_NEEDED")
                    } else {
                        Reply::err(400, "PHONE_CODE_INVALID")
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
            (tl::functions::updates::GetState::CONSTRUCTOR_ID, handler(|_| state(50, 0, 1_700_000_200, 3))),
        ])),
    )
    .await;
    // A session that names no home DC yet (as before a first login): grammers starts on DC 2.
    let backend = Arc::new(InMemoryBackend::with_session(session_for(&[&dc2], 0, None)));
    let (client, shutdown) =
        Client::builder().session(Arc::clone(&backend)).api_id(API_ID).api_hash(API_HASH).connect().await.unwrap();

    let token = client.request_login_code("+15550001").await.unwrap();
    assert!(matches!(client.sign_in(&token, "00000").await, Err(ClientError::InvalidCode)));
    let password_token = match client.sign_in(&token, "12345").await {
        Err(ClientError::PasswordRequired(t)) => t,
        other => panic!("expected PasswordRequired, got {other:?}"),
    };
    assert_eq!(password_token.hint(), Some("the usual"));
    let password_token = match client.check_password(password_token, "hunter3").await {
        Err(ClientError::InvalidPassword(t)) => t,
        other => panic!("a wrong password must be refused, got {other:?}"),
    };
    assert_eq!(backend.load_session().await.unwrap().unwrap().user, None, "no login yet");
    let user = client.check_password(password_token, "hunter2").await.unwrap();
    assert_eq!(user.id().bare_id(), Some(5005));
    assert_eq!(dc2.count::<tl::functions::auth::CheckPassword>(), 2);

    let stored = backend.load_session().await.unwrap().unwrap();
    assert_eq!(stored.user, Some(SelfUser::new(5005, false)));
    assert_eq!(stored.home_dc, 2, "the DC the login happened on is recorded as home");
    assert_eq!(stored.updates.pts, 50);
    let me = stored.peers.get(layer_client::core::PeerKey::user(5005)).expect("self user cached");
    assert_eq!(me.access_hash, 0xabcd);
    shutdown.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_string_restores_an_authorized_client() {
    let (dc2, dc4) = migrating_cluster(1001).await;
    let (client, shutdown) = Client::builder()
        .session(InMemoryBackend::with_session(session_for(&[&dc2, &dc4], 2, None)))
        .api_id(API_ID)
        .api_hash(API_HASH)
        .connect()
        .await
        .unwrap();
    client.bot_sign_in("1001:valid-token").await.unwrap();
    let exported = client.export_session_string().await.unwrap();
    shutdown.shutdown().await.unwrap();
    drop(client);
    assert!(!exported.contains(&format!("{:?}", dc4.key)), "sanity");

    let (restored, shutdown) = Client::with_string_session(&exported, API_ID, API_HASH).await.unwrap();
    assert!(restored.is_authorized().await.unwrap());
    assert_eq!(dc4.count::<tl::functions::updates::GetState>(), 2, "the restored client went to DC 4");
    let data = restored.session().snapshot();
    assert_eq!((data.home_dc, data.user), (4, Some(SelfUser::new(1001, true))));
    // Exporting again gives the same session.
    let again = restored.export_session_string().await.unwrap();
    let (a, b) = (session_string::decode(&exported).unwrap(), session_string::decode(&again).unwrap());
    assert_eq!(a, b);
    shutdown.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_string_fails_connect_instead_of_starting_over() {
    let err = Client::with_string_session("L1.this-is-not-a-session", API_ID, API_HASH).await.unwrap_err();
    assert!(matches!(err, ClientError::Session(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_logs_out_and_deletes_the_stored_session() {
    let dc2 = Dc::start(
        2,
        2,
        routes(HashMap::from([(
            tl::functions::auth::LogOut::CONSTRUCTOR_ID,
            handler(|_| {
                let out = tl::types::auth::LoggedOut { future_auth_token: None };
                Reply::ok(&tl::enums::auth::LoggedOut::Out(out))
            }),
        )])),
    )
    .await;
    let backend = Arc::new(InMemoryBackend::with_session(session_for(&[&dc2], 2, Some(SelfUser::new(77, false)))));
    let (client, shutdown) =
        Client::builder().session(Arc::clone(&backend)).api_id(API_ID).api_hash(API_HASH).connect().await.unwrap();
    client.sign_out().await.unwrap();
    assert_eq!(dc2.count::<tl::functions::auth::LogOut>(), 1);
    assert!(backend.load_session().await.unwrap().is_none(), "the stored session is gone");
    assert!(client.session().snapshot().is_empty());
    shutdown.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_log_out_keeps_the_session() {
    let dc2 = Dc::start(
        2,
        2,
        routes(HashMap::from([(
            tl::functions::auth::LogOut::CONSTRUCTOR_ID,
            handler(|_| Reply::err(500, "INTERNAL_SERVER_ERROR")),
        )])),
    )
    .await;
    let session = session_for(&[&dc2], 2, Some(SelfUser::new(77, false)));
    let backend = Arc::new(InMemoryBackend::with_session(session.clone()));
    let params = layer_client::grammers::sender::ConnectionParams {
        retry_policy: Box::new(layer_client::grammers::sender::NoRetries),
        ..Default::default()
    };
    let (client, shutdown) = Client::builder()
        .session(Arc::clone(&backend))
        .api_id(API_ID)
        .api_hash(API_HASH)
        .connection_params(params)
        .connect()
        .await
        .unwrap();
    assert!(client.sign_out().await.is_err());
    shutdown.shutdown().await.unwrap();
    let stored = backend.load_session().await.unwrap().unwrap();
    assert_eq!((stored.user, stored.auth_key(2).is_some()), (session.user, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dc_addresses_from_the_server_config_are_stored() {
    let options = vec![
        support::dc_option(5, "10.5.0.5", 8443, false, true),
        support::dc_option(5, "2001:db8::5", 8443, true, true),
        support::dc_option(3, "10.3.0.3", 443, false, false), // not static: grammers ignores it
    ];
    let dc2 = Dc::start_with_config(
        2,
        2,
        routes(HashMap::from([(tl::functions::updates::GetState::CONSTRUCTOR_ID, handler(|_| state(1, 0, 1, 1)))])),
        options,
    )
    .await;
    let backend = Arc::new(InMemoryBackend::with_session(session_for(&[&dc2], 2, Some(SelfUser::new(77, false)))));
    let (client, shutdown) =
        Client::builder().session(Arc::clone(&backend)).api_id(API_ID).api_hash(API_HASH).connect().await.unwrap();
    assert!(client.is_authorized().await.unwrap());
    shutdown.shutdown().await.unwrap();

    let stored = backend.load_session().await.unwrap().unwrap();
    let five = stored.dc(5).expect("DC 5 learned from the config");
    assert_eq!(five.addr.to_string(), "10.5.0.5:8443");
    assert!(five.auth_key.is_none());
    let v6 = stored.dcs.get(&layer_client::core::DcKey { id: 5, flags: layer_client::core::DcFlags::IPV6 });
    assert_eq!(v6.map(|o| o.addr.to_string()).as_deref(), Some("[2001:db8::5]:8443"));
    assert!(stored.dc(3).is_none(), "non-static options are not stored");
    // Our own DC kept its loopback address and key.
    assert_eq!(stored.dc(2).map(|o| o.addr), Some(dc2.addr));
    assert_eq!(stored.auth_key(2).map(|k| *k.as_bytes()), Some(dc2.key));
}

/// People switch libraries without logging in again: a string written in another library's
/// format (holding the loopback DC's address and key) drives the client as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_strings_connect_without_a_new_login() {
    use session_string::foreign::{export, StringFormat};
    let dc2 = Dc::start(
        2,
        2,
        routes(HashMap::from([(tl::functions::updates::GetState::CONSTRUCTOR_ID, handler(|_| state(1, 0, 1, 1)))])),
    )
    .await;
    let mut session = session_for(&[&dc2], 2, Some(SelfUser::new(777_000_123, false)));
    session.apply(&layer_client::core::Change::SetApiId(Some(API_ID)));
    let formats = [
        StringFormat::Compact,
        StringFormat::Telethon,
        // (GramJS stores the port as a signed 16-bit number: loopback ports above 32767 do not
        // fit, and the exporter refuses them rather than writing a wrong port.)
        StringFormat::MtcuteV3,
        StringFormat::FerogramCompactV2,
        StringFormat::LayerClient,
        StringFormat::Ferogram,
    ];
    for (i, format) in formats.into_iter().enumerate() {
        let s = export(&session, format).unwrap_or_else(|e| panic!("{format}: {e}"));
        let (client, shutdown) = Client::with_string_session(&s, API_ID, API_HASH).await.unwrap();
        assert!(client.is_authorized().await.unwrap(), "{format}");
        assert_eq!(dc2.count::<tl::functions::updates::GetState>(), i + 1, "{format}");
        assert_eq!(client.session().snapshot().home_dc, 2, "{format}");
        shutdown.shutdown().await.unwrap();
    }
}

/// A DC that checks server salts, as Telegram does: the client's first message (salt 0) is
/// answered `new_session_created` and `bad_server_salt`, a salt rotated mid-connection is
/// answered `bad_server_salt` again; grammers must resend each refused request with the new
/// salt, every call of ours must succeed, and the session must come out unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_server_salt_and_new_session_created_are_followed_and_change_nothing_stored() {
    let dc2 = Dc::start_salted(
        2,
        2,
        routes(HashMap::from([(
            tl::functions::updates::GetState::CONSTRUCTOR_ID,
            handler(|_| state(10, 0, 1_700_000_000, 1)),
        )])),
        0x5a17_0001,
    )
    .await;
    let backend = Arc::new(InMemoryBackend::with_session(session_for(&[&dc2], 2, Some(SelfUser::new(77, false)))));
    let before = backend.load_session().await.unwrap().unwrap();
    let (client, shutdown) =
        Client::builder().session(Arc::clone(&backend)).api_id(API_ID).api_hash(API_HASH).connect().await.unwrap();

    assert!(client.is_authorized().await.unwrap());
    let refused = dc2.service.bad_server_salt.load(Ordering::SeqCst);
    assert!(refused >= 1, "the first message carried salt 0 and must have been refused");
    assert_eq!(dc2.service.new_session_created.load(Ordering::SeqCst), 1, "one session id, one notice");

    dc2.rotate_salt(0x5a17_0002);
    assert!(client.is_authorized().await.unwrap(), "a request refused for its salt is resent");
    assert!(dc2.service.bad_server_salt.load(Ordering::SeqCst) > refused, "the old salt was refused");
    // Refused messages are not executed: every getState the peer ran was answered once.
    assert_eq!(dc2.count::<tl::functions::updates::GetState>(), 2);

    client.flush().await.unwrap();
    shutdown.shutdown().await.unwrap();
    let after = backend.load_session().await.unwrap().unwrap();
    assert_eq!(after.auth_key(2).map(|k| *k.as_bytes()), Some(dc2.key));
    assert_eq!((after.home_dc, after.user), (before.home_dc, before.user));
}
