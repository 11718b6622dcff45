//! An echo bot: signs in with its token the first time (the session remembers it after that),
//! then answers every incoming text message with the same text, as a reply. The update state is
//! kept in the session as updates are handled, so a restarted bot neither misses nor repeats
//! messages sent while it was down.
//!
//! Run: `TG_BOT_TOKEN=... TG_API_ID=... TG_API_HASH=... cargo run -p layer-client --example echo_bot`
//! (the session is kept in `echo_bot.session`; Ctrl-C stops it and writes what is pending).

use layer_client::grammers::update::Update;
use layer_client::{Client, ClientError, Updates};

/// Answers incoming text messages with their own text until `replies` were sent; returns how
/// many were sent. Messages this account sent itself, and messages without text, are skipped.
pub async fn echo(updates: &mut Updates, replies: usize) -> Result<usize, ClientError> {
    let mut sent = 0;
    while sent < replies {
        if let Update::NewMessage(message) = updates.next().await? {
            if !message.outgoing() && !message.text().is_empty() {
                message.reply(message.text()).await?;
                sent += 1;
            }
        }
    }
    Ok(sent)
}

#[allow(dead_code)]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (client, shutdown) = Client::builder()
        .session_path("echo_bot.session")
        .api_id(std::env::var("TG_API_ID")?.parse()?)
        .api_hash(std::env::var("TG_API_HASH")?)
        .connect()
        .await?;
    if !client.is_authorized().await? {
        client.bot_sign_in(&std::env::var("TG_BOT_TOKEN")?).await?;
    }
    // Catch up on what arrived while the bot was down, from the state the session kept.
    let mut updates = client.stream_updates(true).await?;
    tokio::select! {
        result = echo(&mut updates, usize::MAX) => { result?; }
        _ = tokio::signal::ctrl_c() => println!("stopping"),
    }
    drop(updates);
    drop(client);
    shutdown.shutdown().await?;
    Ok(())
}
