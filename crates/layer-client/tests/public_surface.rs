//! Every code block of the "Public surface" section of the design brief (the page users copy
//! from), compiled as written (with `load` returning a `Result`), each inside an `async fn`
//! returning a boxed error. `snippets_match_the_design_page` checks that the blocks below are
//! still the ones on that page, line for line.
//!
//! The functions are compiled, not called against Telegram (unreachable from CI); the parts
//! that need no network run in `the_offline_parts_run`.

#![allow(unused_variables, dead_code, clippy::unwrap_used, clippy::needless_update)]

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ---- block 1, default features (the block minus its "libsql-session" lines) ----
#[rustfmt::skip]
async fn block1_default_features() -> Result<(), BoxError> {
    // Default features: binary file, in-memory and string backends.
    use layer_client::{Client, Config};
    let (client, _shutdown) = Client::connect(Config {
        session_path: "my.session".into(),   // a ".db" path selects SQLite when that feature is on
        api_id:       12345,
        api_hash:     "abc123".into(),
        ..Default::default()
    }).await?;

    use layer_client::session_backend::InMemoryBackend;
    let (client, _shutdown) = Client::builder()
        .session(InMemoryBackend::new())
        .api_id(12345)
        .api_hash("abc123")
        .connect()
        .await?;

    // Feature "sqlite-session": same Config, path "session.db".

    // String sessions.
    let session_string = client.export_session_string().await?;
    use layer_client::session_backend::StringSessionBackend;
    let session_str = std::env::var("TG_SESSION")?;
    let (client, _shutdown) = Client::builder()
        .session(StringSessionBackend::new(&session_str))
        .api_id(12345)
        .api_hash("abc123")
        .connect()
        .await?;
    assert!(client.is_authorized().await?);
    let (client, _shutdown) = Client::with_string_session(&session_str, 12345, "abc123").await?;
    let (client, _shutdown) = Client::with_string_session(
        &std::env::var("TG_SESSION")?,
        std::env::var("TG_API_ID")?.parse()?,
        std::env::var("TG_API_HASH")?,
    ).await?;
    Ok(())
}

// ---- block 1 as written, every feature it names ----
#[cfg(feature = "libsql-session")]
#[rustfmt::skip]
async fn block1_as_written() -> Result<(), BoxError> {
    // Default features: binary file, in-memory and string backends.
    use layer_client::{Client, Config};
    let (client, _shutdown) = Client::connect(Config {
        session_path: "my.session".into(),   // a ".db" path selects SQLite when that feature is on
        api_id:       12345,
        api_hash:     "abc123".into(),
        ..Default::default()
    }).await?;

    use layer_client::session_backend::InMemoryBackend;
    let (client, _shutdown) = Client::builder()
        .session(InMemoryBackend::new())
        .api_id(12345)
        .api_hash("abc123")
        .connect()
        .await?;

    // Feature "sqlite-session": same Config, path "session.db".
    // Feature "libsql-session":
    use layer_client::session_backend::LibSqlBackend;
    let backend = LibSqlBackend::open_local("session.libsql").await?;
    let backend = LibSqlBackend::open_remote("libsql://your-db.turso.io", "your-turso-auth-token").await?;
    let (client, _shutdown) = Client::builder().session(backend)
        .api_id(12345).api_hash("abc123").connect().await?;

    // String sessions.
    let session_string = client.export_session_string().await?;
    use layer_client::session_backend::StringSessionBackend;
    let session_str = std::env::var("TG_SESSION")?;
    let (client, _shutdown) = Client::builder()
        .session(StringSessionBackend::new(&session_str))
        .api_id(12345)
        .api_hash("abc123")
        .connect()
        .await?;
    assert!(client.is_authorized().await?);
    let (client, _shutdown) = Client::with_string_session(&session_str, 12345, "abc123").await?;
    let (client, _shutdown) = Client::with_string_session(
        &std::env::var("TG_SESSION")?,
        std::env::var("TG_API_ID")?.parse()?,
        std::env::var("TG_API_HASH")?,
    ).await?;
    Ok(())
}

// ---- block 2: a custom backend ----
#[rustfmt::skip]
mod block2 {
    use layer_client::session_backend::SessionBackend;

    pub struct MyRedisBackend { key: String /* , your redis client */ }

    #[async_trait::async_trait]
    impl SessionBackend for MyRedisBackend {
        async fn load(&self) -> Result<Option<Vec<u8>>, Box<dyn std::error::Error + Send + Sync>> {
            todo!("read bytes from Redis; Ok(None) when nothing was saved yet")
        }
        async fn save(&self, data: &[u8]) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            todo!("write bytes to Redis, atomically replacing the old value")
        }
    }

    /// "... and is passed with `ClientBuilder::session()`".
    pub async fn use_it() -> Result<(), super::BoxError> {
        let (client, _shutdown) = layer_client::Client::builder()
            .session(MyRedisBackend { key: "tg:session".into() })
            .api_id(12345)
            .api_hash("abc123")
            .connect()
            .await?;
        Ok(())
    }
}

/// The functions above are futures that type-check as `Send` (usable from `tokio::spawn`).
#[test]
fn snippets_are_send_futures() {
    fn is_send<F: std::future::Future + Send>(_: F) {}
    is_send(block1_default_features());
    is_send(block2::use_it());
    #[cfg(feature = "libsql-session")]
    is_send(block1_as_written());
}

/// What can run without Telegram: the in-memory client, exporting its string, and a client
/// built from that string.
#[tokio::test]
async fn the_offline_parts_run() -> Result<(), BoxError> {
    use layer_client::session_backend::{InMemoryBackend, StringSessionBackend};
    use layer_client::Client;
    let (client, shutdown) =
        Client::builder().session(InMemoryBackend::new()).api_id(12345).api_hash("abc123").connect().await?;
    let session_string = client.export_session_string().await?;
    shutdown.shutdown().await?;
    assert!(session_string.starts_with("L1."), "{session_string}");

    let (client, shutdown) = Client::builder()
        .session(StringSessionBackend::new(&session_string))
        .api_id(12345)
        .api_hash("abc123")
        .connect()
        .await?;
    assert_eq!(client.session().snapshot().api_id, Some(12345));
    shutdown.shutdown().await?;
    let (client, shutdown) = Client::with_string_session(&session_string, 12345, "abc123").await?;
    shutdown.shutdown().await?;
    Ok(())
}

fn normalize(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Each code block of the book's "public surface" page (`docs/src/public-surface.md`) appears in this file line for
/// line (whitespace aside), so that this test compiles what users copy.
#[test]
fn snippets_match_the_design_page() {
    let section = include_str!("../../../docs/src/public-surface.md");
    let this_file: Vec<String> = include_str!("public_surface.rs").lines().map(normalize).collect();
    let mut blocks = 0;
    for block in section.split("```rust").skip(1) {
        let code = block.split("```").next().unwrap_or_default();
        blocks += 1;
        let lines: Vec<String> = code.lines().map(normalize).filter(|l| !l.is_empty()).collect();
        // The lines of the block appear in this order in one contiguous run of this file
        // (ignoring blank lines), i.e. the block is here as written.
        let body: Vec<&String> = this_file.iter().filter(|l| !l.is_empty()).collect();
        let found = body.windows(lines.len()).any(|w| w.iter().zip(&lines).all(|(a, b)| *a == b));
        assert!(
            found,
            "block {blocks} of docs/src/public-surface.md is not in tests/public_surface.rs as written:\n{code}"
        );
    }
    assert_eq!(blocks, 2, "the page has two code blocks");
}
