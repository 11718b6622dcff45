//! The crate's examples, run against the loopback peer: each example's source is compiled here
//! as a module and its entry function called with a client connected to the peer.

#![allow(clippy::unwrap_used)]

mod support;

#[path = "../examples/raw_call.rs"]
#[allow(dead_code)]
mod raw_call;

use std::collections::HashMap;
use std::sync::Arc;

use grammers_tl_types::{self as tl, Identifiable};
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
