//! Calling any Telegram function that layer-client has no method for: build the TL request and
//! `invoke` it through the grammers client underneath. The session (keys, DC addresses) is the
//! one layer-client keeps.
//!
//! Run: `TG_SESSION=... TG_API_ID=... TG_API_HASH=... cargo run -p layer-client --example raw_call`

use layer_client::grammers::tl;
use layer_client::{Client, ClientError};

/// Asks Telegram which DC is nearest (`help.getNearestDc`) and returns its id and country.
pub async fn nearest_dc(client: &Client) -> Result<(i32, String), ClientError> {
    let tl::enums::NearestDc::Dc(dc) = client.raw().invoke(&tl::functions::help::GetNearestDc {}).await?;
    Ok((dc.nearest_dc, dc.country))
}

#[allow(dead_code)]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (client, shutdown) = Client::with_string_session(
        &std::env::var("TG_SESSION")?,
        std::env::var("TG_API_ID")?.parse()?,
        std::env::var("TG_API_HASH")?,
    )
    .await?;
    let (dc, country) = nearest_dc(&client).await?;
    println!("nearest DC: {dc} (you are in {country})");
    shutdown.shutdown().await?;
    Ok(())
}
