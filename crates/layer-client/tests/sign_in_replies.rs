//! Sign-in replies grammers 0.11 panics on (`auth.sentCodeSuccess`,
//! `auth.sentCodePaymentRequired`) become `ClientError::UnsupportedReply`, and the client keeps
//! working afterwards.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use grammers_tl_types::{self as tl, Identifiable};
use layer_client::session_backend::InMemoryBackend;
use layer_client::{Client, ClientError};
use support::{routes, session_for, Dc, Reply};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_grammers_cannot_handle_are_typed_errors() {
    let calls = Arc::new(AtomicUsize::new(0));
    let n = Arc::clone(&calls);
    let dc = Dc::start(
        2,
        2,
        routes(HashMap::from([(
            tl::functions::auth::SendCode::CONSTRUCTOR_ID,
            Arc::new(move |_: &support::Call| {
                if n.fetch_add(1, Ordering::SeqCst) == 0 {
                    let auth = tl::enums::auth::Authorization::Authorization(support::blank::blank_auth_authorization(
                        support::self_user(5, 6, false),
                    ));
                    Reply::ok(&tl::enums::auth::SentCode::Success(tl::types::auth::SentCodeSuccess {
                        authorization: auth,
                    }))
                } else {
                    Reply::ok(&tl::enums::auth::SentCode::PaymentRequired(tl::types::auth::SentCodePaymentRequired {
                        store_product: "p".into(),
                        phone_code_hash: "h".into(),
                        support_email_address: "a@b".into(),
                        support_email_subject: "s".into(),
                        premium_days: 1,
                        currency: "EUR".into(),
                        amount: 1,
                    }))
                }
            }) as support::Handler,
        )])),
    )
    .await;
    let backend = Arc::new(InMemoryBackend::with_session(session_for(&[&dc], 2, None)));
    let (client, shutdown) = Client::builder().session(backend).api_id(1).api_hash("h").connect().await.unwrap();

    match client.request_login_code("+10000000000").await {
        Err(ClientError::UnsupportedReply { call, reply }) => {
            assert_eq!(call, "request_login_code");
            assert!(reply.contains("sentCodeSuccess"), "{reply}");
        }
        other => panic!("expected UnsupportedReply, got {:?}", other.map(|_| ())),
    }
    match client.request_login_code("+10000000000").await {
        Err(ClientError::UnsupportedReply { reply, .. }) => assert!(reply.contains("PaymentRequired"), "{reply}"),
        other => panic!("expected UnsupportedReply, got {:?}", other.map(|_| ())),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the client still works after the first one");
    shutdown.shutdown().await.unwrap();
}
