//! The optional grammers features the umbrella turns on: file upload by path (`fs`), Markdown and
//! HTML message text (`markdown`, `html`) and proxy support (`proxy`).

#![allow(clippy::unwrap_used)]

mod support;

#[cfg(any(feature = "markdown", feature = "html"))]
use grammers_tl_types as tl;

#[cfg(feature = "markdown")]
#[test]
fn markdown_text_becomes_entities_and_back() {
    let (text, entities) = layer_client::parsers::parse_markdown_message("hello **world**");
    assert_eq!(text, "hello world");
    assert!(matches!(entities.as_slice(), [tl::enums::MessageEntity::Bold(b)] if b.offset == 6 && b.length == 5));
    assert_eq!(layer_client::parsers::generate_markdown_message(&text, &entities), "hello **world**");
}

#[cfg(feature = "html")]
#[test]
fn html_text_becomes_entities() {
    let (text, entities) = layer_client::parsers::parse_html_message("hello <b>world</b>");
    assert_eq!(text, "hello world");
    assert!(matches!(entities.as_slice(), [tl::enums::MessageEntity::Bold(b)] if b.offset == 6 && b.length == 5));
}

#[cfg(feature = "proxy")]
#[test]
fn a_proxy_url_is_taken_and_never_printed() {
    let b = layer_client::Client::builder().proxy("socks5://user:secret-pw@127.0.0.1:1080");
    assert!(b.has_proxy());
    assert!(!format!("{b:?}").contains("secret-pw"));
}

#[cfg(feature = "fs")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_by_path_sends_the_file_parts() {
    use grammers_tl_types::{self as tl, Identifiable};
    use std::collections::HashMap;
    use std::sync::Arc;

    let dc = support::Dc::start(
        2,
        2,
        support::routes(HashMap::from([(
            tl::functions::upload::SaveFilePart::CONSTRUCTOR_ID,
            Arc::new(|_: &support::Call| support::Reply::ok(&true)) as support::Handler,
        )])),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, b"hello from layer-client").unwrap();
    let backend = layer_client::session_backend::InMemoryBackend::with_session(support::session_for(&[&dc], 2, None));
    let (client, shutdown) = layer_client::Client::builder().session(backend).api_id(1).connect().await.unwrap();
    client.upload_file(&file).await.unwrap();
    let parts = dc.calls_of::<tl::functions::upload::SaveFilePart>();
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].bytes, b"hello from layer-client");
    shutdown.shutdown().await.unwrap();
}
