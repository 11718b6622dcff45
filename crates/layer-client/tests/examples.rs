//! The crate's examples, run against the loopback peer: each example's source is compiled here
//! as a module and its entry function called with a client connected to the peer.

#![allow(clippy::unwrap_used)]

mod support;

#[path = "../examples/raw_call.rs"]
#[allow(dead_code)]
mod raw_call;

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
