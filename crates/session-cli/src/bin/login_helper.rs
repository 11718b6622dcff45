//! `login_helper`: log in to Telegram interactively and print the session as `TG_SESSION=<string>`.
//!
//! Self-contained (it uses only `layer-client`), so that it can live beside `layer-session`.

use std::io::{self, BufRead, IsTerminal, Write};
use std::process::ExitCode;

use layer_client::{Client, ClientError};

const HELP: &str = "\
login_helper: log in to Telegram interactively and print the session string

USAGE:
    login_helper [OPTIONS]

Asks for a phone number (then the login code, and the two-step verification password if the
account has one, read without echo) or a bot token, and prints

    TG_SESSION=<string>

on standard output (prompts and messages go to standard error). The string is layer-client's
full session string: keep it secret, it is the account's login. Use it with
`Client::with_string_session(&std::env::var(\"TG_SESSION\")?, api_id, api_hash)`.

OPTIONS:
    --api-id <ID>          api_id from https://my.telegram.org (default: $TG_API_ID, else asked)
    --api-hash <HASH>      api_hash from https://my.telegram.org (default: $TG_API_HASH, else asked)
    --session <STRING>     start from an existing session string (ours, Telethon, Pyrogram,
                           GramJS or mtcute); when it is still logged in, it is printed again in
                           our format without a new login (default: $TG_SESSION if set)
    --new                  ignore $TG_SESSION and log in from scratch
    -h, --help             print this help
    -V, --version          print the version
";

#[derive(Debug, Default)]
struct Args {
    api_id: Option<String>,
    api_hash: Option<String>,
    session: Option<String>,
    new: bool,
}

enum Parsed {
    Run(Args),
    Help,
    Version,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut args = Args::default();
    while let Some(arg) = argv.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline.clone().or_else(|| argv.next()).ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-V" | "--version" => return Ok(Parsed::Version),
            "--api-id" => args.api_id = Some(value("--api-id")?),
            "--api-hash" => args.api_hash = Some(value("--api-hash")?),
            "--session" => args.session = Some(value("--session")?),
            "--new" => args.new = true,
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    Ok(Parsed::Run(args))
}

/// Reads one line from stdin after printing `prompt` on stderr; `None` at end of input.
fn ask(prompt: &str) -> io::Result<Option<String>> {
    eprint!("{prompt}");
    io::stderr().flush()?;
    let mut line = String::new();
    if io::stdin().lock().read_line(&mut line)? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim().to_owned()))
}

fn ask_required(prompt: &str) -> Result<String, String> {
    loop {
        match ask(prompt).map_err(|e| format!("cannot read standard input: {e}"))? {
            None => return Err("standard input ended before the login was complete".into()),
            Some(s) if s.is_empty() => continue,
            Some(s) => return Ok(s),
        }
    }
}

/// The 2FA password: without echo on a terminal; a plain line when input is piped.
fn ask_password(prompt: &str) -> Result<String, String> {
    if io::stdin().is_terminal() {
        rpassword::prompt_password(prompt).map_err(|e| format!("cannot read the password: {e}"))
    } else {
        ask_required(prompt)
    }
}

fn setting(flag: Option<String>, env: &str, prompt: &str) -> Result<String, String> {
    match flag.or_else(|| std::env::var(env).ok().filter(|v| !v.trim().is_empty())) {
        Some(v) => Ok(v),
        None => ask_required(prompt),
    }
}

async fn log_in(client: &Client) -> Result<(), String> {
    let answer = ask_required("Phone number (international format, e.g. +15551234567) or bot token: ")?;
    if answer.contains(':') && !answer.starts_with('+') {
        let user = client.bot_sign_in(&answer).await.map_err(|e| format!("bot login failed: {e}"))?;
        eprintln!("Logged in as bot {} (id {}).", user.full_name(), user.id());
        return Ok(());
    }
    let token = client.request_login_code(&answer).await.map_err(|e| format!("could not send the login code: {e}"))?;
    let mut attempts = 0;
    let signed_in = loop {
        let code = ask_required("Login code (sent to your Telegram app or by SMS): ")?;
        match client.sign_in(&token, &code).await {
            Ok(user) => break Ok(user),
            Err(ClientError::InvalidCode) if attempts < 2 => {
                attempts += 1;
                eprintln!("That code is invalid or expired; try again.");
            }
            Err(e) => break Err(e),
        }
    };
    let user = match signed_in {
        Ok(user) => user,
        Err(ClientError::PasswordRequired(mut token)) => {
            let mut attempts = 0;
            loop {
                let hint = token.hint().filter(|h| !h.is_empty()).map(|h| format!(" (hint: {h})")).unwrap_or_default();
                let password = ask_password(&format!("Two-step verification password{hint}: "))?;
                match client.check_password(token, password.as_bytes()).await {
                    Ok(user) => break user,
                    Err(ClientError::InvalidPassword(again)) if attempts < 2 => {
                        attempts += 1;
                        eprintln!("Wrong password; try again.");
                        token = again;
                    }
                    Err(e) => return Err(format!("login failed: {e}")),
                }
            }
        }
        Err(e) => return Err(format!("login failed: {e}")),
    };
    eprintln!("Logged in as {} (id {}).", user.full_name(), user.id());
    Ok(())
}

async fn run(args: Args) -> Result<String, String> {
    let api_id = setting(args.api_id, "TG_API_ID", "api_id (from https://my.telegram.org): ")?;
    let api_id: i32 = api_id.trim().parse().map_err(|_| format!("api_id must be a number, not {api_id:?}"))?;
    let api_hash = setting(args.api_hash, "TG_API_HASH", "api_hash: ")?;
    let initial = match (args.session, args.new) {
        (Some(s), _) => s,
        (None, false) => std::env::var("TG_SESSION").unwrap_or_default(),
        (None, true) => String::new(),
    };
    let (client, shutdown) = Client::builder()
        .session_string(initial.trim())
        .api_id(api_id)
        .api_hash(api_hash)
        .connect()
        .await
        .map_err(|e| format!("cannot start the client: {e}"))?;
    let result = async {
        let known = client.session().read(|d| d.user.is_some() && d.has_home_key());
        if known && client.is_authorized().await.map_err(|e| format!("cannot reach Telegram: {e}"))? {
            eprintln!("The session is already logged in; printing it again.");
        } else {
            log_in(&client).await?;
        }
        client.export_session_string().await.map_err(|e| format!("cannot export the session: {e}"))
    }
    .await;
    if let Err(e) = shutdown.shutdown().await {
        eprintln!("warning: closing the session failed: {e}");
    }
    result
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("login_helper {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(session) => {
            println!("TG_SESSION={session}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
