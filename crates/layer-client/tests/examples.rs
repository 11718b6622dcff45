//! The crate's examples, run against the loopback peer: each example's source is compiled here
//! as a module and its entry function called with a client connected to the peer.

#![allow(clippy::unwrap_used)]

mod support;

#[path = "../examples/raw_call.rs"]
#[allow(dead_code)]
mod raw_call;

#[path = "../examples/echo_bot.rs"]
#[allow(dead_code)]
mod echo_bot;

#[path = "../examples/user_login.rs"]
#[allow(dead_code)]
mod user_login;

use std::collections::HashMap;
use std::sync::Arc;

use grammers_tl_types::{self as tl, Identifiable};
use layer_client::core::SessionBackend;
use layer_client::session_backend::InMemoryBackend;
use layer_client::Client;
use support::{routes, session_for, Dc, Reply};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_call_invokes_a_tl_function() {
    let dc = Dc::start(
        2,
        2,
        routes(HashMap::from([(
            tl::functions::help::GetNearestDc::CONSTRUCTOR_ID,
            Arc::new(|_: &support::Call| {
                Reply::ok(&tl::enums::NearestDc::Dc(tl::types::NearestDc {
                    country: "NL".into(),
                    this_dc: 2,
                    nearest_dc: 4,
                }))
            }) as support::Handler,
        )])),
    )
    .await;
    let backend = InMemoryBackend::with_session(session_for(&[&dc], 2, None));
    let (client, shutdown) = Client::builder().session(backend).api_id(1).connect().await.unwrap();
    assert_eq!(raw_call::nearest_dc(&client).await.unwrap(), (4, "NL".to_owned()));
    assert_eq!(dc.count::<tl::functions::help::GetNearestDc>(), 1);
    shutdown.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_login_persists_across_restarts() {
    let dc = Dc::start(
        2,
        2,
        routes(HashMap::from([
            (
                tl::functions::auth::SendCode::CONSTRUCTOR_ID,
                Arc::new(|_: &support::Call| {
                    let kind = tl::enums::auth::SentCodeType::App(tl::types::auth::SentCodeTypeApp { length: 5 });
                    let mut sent = support::blank::blank_auth_sentcode(kind);
                    sent.phone_code_hash = "h".into();
                    Reply::ok(&tl::enums::auth::SentCode::Code(sent))
                }) as support::Handler,
            ),
            (
                tl::functions::auth::SignIn::CONSTRUCTOR_ID,
                Arc::new(|_: &support::Call| support::authorization(support::self_user(555, 9, false)))
                    as support::Handler,
            ),
            (
                tl::functions::updates::GetState::CONSTRUCTOR_ID,
                Arc::new(|_: &support::Call| support::state(1, 0, 1_700_000_000, 1)) as support::Handler,
            ),
        ])),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user.session");
    layer_client::session_backend::BinaryFileBackend::open(&path)
        .await
        .unwrap()
        .save_session(&session_for(&[&dc], 2, None))
        .await
        .unwrap();
    let asked = std::sync::Mutex::new(Vec::new());
    let ask = |what: &str| {
        asked.lock().unwrap().push(what.to_owned());
        if what == "phone" {
            "+15550001".to_owned()
        } else {
            "12345".to_owned()
        }
    };
    let (_c, shutdown, id) = user_login::login(&path, 1, "hash", ask).await.unwrap();
    assert_eq!(id, 555);
    shutdown.shutdown().await.unwrap();
    assert_eq!(asked.lock().unwrap().as_slice(), ["phone", "code"]);
    drop(_c);

    let (_c, shutdown, id) = user_login::login(&path, 1, "hash", |w| panic!("asked for {w} again")).await.unwrap();
    assert_eq!(id, 555);
    assert_eq!(dc.count::<tl::functions::auth::SendCode>(), 1, "no second login");
    shutdown.shutdown().await.unwrap();
}

/// The echo bot, as a user would run it after its first sign-in: a private message pushed by the
/// peer (as Telegram pushes it) is answered with `messages.sendMessage` to the sender (with the
/// access hash the session keeps) as a reply to it, its own message is not answered, and the
/// update state the bot handled is in the session for the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_bot_replies_with_the_same_text() {
    use layer_client::core::{Change, Peer, PeerKey, PeerKind, SelfUser, UpdateState, UpdateStateChange};

    const DATE: i32 = 1_700_000_000;
    let dc = Dc::start(
        2,
        2,
        routes(HashMap::from([
            (
                tl::functions::updates::GetState::CONSTRUCTOR_ID,
                Arc::new(|_: &support::Call| support::state(100, 0, DATE, 1)) as support::Handler,
            ),
            (
                tl::functions::updates::GetDifference::CONSTRUCTOR_ID,
                Arc::new(|_: &support::Call| {
                    Reply::ok(&tl::enums::updates::Difference::Empty(tl::types::updates::DifferenceEmpty {
                        date: DATE,
                        seq: 1,
                    }))
                }) as support::Handler,
            ),
            (
                tl::functions::messages::SendMessage::CONSTRUCTOR_ID,
                Arc::new(|call: &support::Call| {
                    let sent: tl::functions::messages::SendMessage = call.parse();
                    Reply::ok(&tl::enums::Updates::UpdateShortSentMessage(tl::types::UpdateShortSentMessage {
                        out: true,
                        id: 1000 + i32::try_from(sent.message.len()).unwrap(),
                        pts: 102,
                        pts_count: 1,
                        date: DATE + 2,
                        media: None,
                        entities: None,
                        ttl_period: None,
                    }))
                }) as support::Handler,
            ),
        ])),
    )
    .await;
    let mut data = session_for(&[&dc], 2, Some(SelfUser::new(77, true)));
    data.apply(&Change::UpdateState(UpdateStateChange::All(UpdateState::new(100, 0, DATE, 1))));
    data.apply(&Change::UpsertPeer(Peer::new(5, PeerKind::User, 5555)));
    let backend = Arc::new(InMemoryBackend::with_session(data));
    let (client, shutdown) =
        Client::builder().session(Arc::clone(&backend)).api_id(1).api_hash("hash").connect().await.unwrap();
    let mut updates = client.stream_updates(true).await.unwrap();
    let bot = tokio::spawn(async move {
        let sent = echo_bot::echo(&mut updates, 1).await;
        (sent, updates)
    });
    let message = |id: i32, out: bool, text: &str, pts: i32| {
        tl::enums::Updates::UpdateShortMessage(tl::types::UpdateShortMessage {
            out,
            mentioned: false,
            media_unread: false,
            silent: false,
            id,
            user_id: 5,
            message: text.into(),
            pts,
            pts_count: 1,
            date: DATE + 1,
            fwd_from: None,
            via_bot_id: None,
            reply_to: None,
            entities: None,
            ttl_period: None,
        })
    };
    // The catch-up call opens the connection the updates come on.
    for _ in 0..500 {
        if dc.count::<tl::functions::updates::GetDifference>() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Its own message (out) first: not answered; then a user's.
    for update in [message(40, true, "mine", 101), message(41, false, "hello there", 102)] {
        let mut pushed = 0;
        for _ in 0..500 {
            pushed = dc.push(&update);
            if pushed > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(pushed > 0, "no connection to push on");
    }
    let (sent, updates) =
        tokio::time::timeout(std::time::Duration::from_secs(20), bot).await.expect("in time").unwrap();
    assert_eq!(sent.unwrap(), 1);
    let calls = dc.calls_of::<tl::functions::messages::SendMessage>();
    assert_eq!(calls.len(), 1, "exactly one reply");
    let reply = &calls[0];
    assert_eq!(reply.message, "hello there");
    match &reply.peer {
        tl::enums::InputPeer::User(u) => assert_eq!((u.user_id, u.access_hash), (5, 5555)),
        other => panic!("replied to {other:?}"),
    }
    match &reply.reply_to {
        Some(tl::enums::InputReplyTo::Message(r)) => assert_eq!(r.reply_to_msg_id, 41),
        other => panic!("not a reply to the message: {other:?}"),
    }
    drop(updates);
    client.flush().await.unwrap();
    drop(client);
    shutdown.shutdown().await.unwrap();
    let stored = backend.load_session().await.unwrap().unwrap();
    assert!(stored.updates.pts >= 102, "the handled messages' pts is kept: {:?}", stored.updates);
    assert!(stored.peers.get(PeerKey::user(5)).is_some());
}
