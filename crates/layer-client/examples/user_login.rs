//! A user login that persists: the first run asks for the phone number and the code Telegram
//! sends (and the 2FA password when the account has one); every later run finds the login in
//! the session file and skips all of that.
//!
//! Run: `TG_API_ID=... TG_API_HASH=... cargo run -p layer-client --example user_login`

use std::path::Path;

use layer_client::{Client, ClientError};

/// Connects with the session file at `path`, logging in with `ask` (which answers "phone",
/// "code" and "password") only when the stored session is not authorized. Returns the user id.
pub async fn login(
    path: &Path,
    api_id: i32,
    api_hash: &str,
    ask: impl Fn(&str) -> String,
) -> Result<(Client, layer_client::ShutdownHandle, i64), ClientError> {
    let (client, shutdown) = Client::builder().session_path(path).api_id(api_id).api_hash(api_hash).connect().await?;
    if let Some(user) = client.session().snapshot().user {
        if client.is_authorized().await? {
            return Ok((client, shutdown, user.id));
        }
    }
    let token = client.request_login_code(&ask("phone")).await?;
    let user = match client.sign_in(&token, &ask("code")).await {
        Ok(user) => user,
        Err(ClientError::PasswordRequired(token)) => client.check_password(token, ask("password")).await?,
        Err(e) => return Err(e),
    };
    let id = user.id().bare_id().unwrap_or_default();
    Ok((client, shutdown, id))
}

#[allow(dead_code)]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let ask = |what: &str| {
        println!("{what}: ");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        line.trim().to_owned()
    };
    let (_client, shutdown, id) =
        login(Path::new("user.session"), std::env::var("TG_API_ID")?.parse()?, &std::env::var("TG_API_HASH")?, ask)
            .await?;
    println!("logged in as user {id}; the next run will not ask again");
    shutdown.shutdown().await?;
    Ok(())
}
