//! The command line: parsing (clap) and the commands.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use clap::{Args, Parser, Subcommand, ValueEnum};
use session_string::StringFormat;

use crate::error::{CliError, CliResult, EXIT_OK, EXIT_SOURCE, EXIT_USAGE};
use crate::location::{self, Dest, Source, StringOut};
use crate::read::{self, ReadOptions};
use crate::write::{self, WriteOptions};
use crate::{batch, report, verify};

/// Inspect, convert and verify Telegram sessions of every library, format and backend.
#[derive(Debug, Parser)]
#[command(name = "layer-session", version, about, long_about = None, after_help = SERVER_HELP)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The part of `--help` about server locations: the URL parameters that are the tool's own.
const SERVER_HELP: &str = "\
Server locations (PostgreSQL and Redis: a session NAME after `#`, the default session without):
  libsql://HOST, libsql+http://HOST:PORT     a libSQL server (token: --token-file)
  postgres://USER:PW@HOST:PORT/DB?...#NAME    PostgreSQL; parameters:
      schema=NAME          the schema of the session tables (default layer_session)
      sslmode=MODE         disable (default), allow, prefer, require, verify-ca, verify-full
      sslrootcert=PATH     CA certificates (PEM) to check the server against (default: the system's)
  redis://:PW@HOST:PORT/DB?...#NAME, rediss://... (TLS, system roots or SSL_CERT_FILE),
  redis+unix:///PATH?pass=PW                  Redis; parameter:
      prefix=TEXT          the key prefix (default layer-session:)
Reading (inspect, verify, list, export-string) takes no lease: it works while the owner runs.
Writing takes the session's lease and is refused while another program holds it.
LAYER_SESSION_TIMEOUT bounds each call to a server (seconds, default 10).";

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what a session holds (format, DCs, user, update state, peers).
    Inspect {
        /// The session: a path (format detected), `-` for a string on stdin, or PREFIX:VALUE.
        source: String,
        /// Print JSON (a stable interface; includes the peers).
        #[arg(long)]
        json: bool,
        /// Show the auth keys (as hex). Without it only their key ids are shown.
        #[arg(long)]
        reveal_secrets: bool,
        /// The libSQL auth token's source.
        #[command(flatten)]
        token: TokenArgs,
        /// The sealing key's source.
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Convert a session (or every session in a folder) to another format or backend.
    Convert {
        /// The session (or a folder of sessions for a batch conversion).
        source: String,
        /// Where to write it: a path (format from the extension), `-` (our string on stdout),
        /// or PREFIX:PATH. For a folder source: a destination folder, its prefix choosing the format.
        dest: String,
        /// Replace an existing destination.
        #[arg(long)]
        force: bool,
        /// Convert even when the destination cannot hold everything; what is dropped is printed.
        #[arg(long)]
        allow_lossy: bool,
        /// Write the destination in clear: the key (LAYER_SESSION_KEY or --key-file) only opens
        /// a sealed source. Without it, a key also seals our destinations.
        #[arg(long)]
        decrypt: bool,
        /// The api_id to record when the source has none (Pyrogram formats require one).
        #[arg(long)]
        api_id: Option<i32>,
        /// The libSQL auth token's source.
        #[command(flatten)]
        token: TokenArgs,
        /// The sealing key's source.
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Check a session's integrity; exits non-zero on any problem.
    Verify {
        /// The session.
        source: String,
        /// The libSQL auth token's source.
        #[command(flatten)]
        token: TokenArgs,
        /// The sealing key's source.
        #[command(flatten)]
        key: KeyArgs,
    },
    /// List the named sessions of a database, with who holds each one's lease.
    List {
        /// The database: a SQLite or libSQL file (`PATH`, `sqlite:PATH`, `libsql:PATH`), a
        /// libSQL URL, or a `postgres://` or `redis://` URL (a `#NAME` is ignored).
        location: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// The libSQL auth token's source.
        #[command(flatten)]
        token: TokenArgs,
    },
    /// Print the session as a string session.
    ExportString {
        /// The session.
        source: String,
        /// Our compact form (home DC, key, user) instead of the full one (only with `--format ours`).
        #[arg(long)]
        compact: bool,
        /// The string format.
        #[arg(long, value_enum, default_value_t = StringKind::Ours)]
        format: StringKind,
        /// The api_id to record when the source has none (Pyrogram strings require one).
        #[arg(long)]
        api_id: Option<i32>,
        /// The libSQL auth token's source.
        #[command(flatten)]
        token: TokenArgs,
        /// The sealing key's source.
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Seal (encrypt at rest) a plain session of ours in place, with the key of
    /// LAYER_SESSION_KEY or --key-file.
    Encrypt {
        /// The session: our file, SQLite or libSQL database, string file, libSQL server,
        /// PostgreSQL or Redis session.
        location: String,
        /// The sealing key's source.
        #[command(flatten)]
        key: KeyArgs,
        /// The libSQL auth token's source.
        #[command(flatten)]
        token: TokenArgs,
    },
    /// Unseal a sealed session of ours in place (it is stored in clear afterwards).
    Decrypt {
        /// The session: our file, SQLite or libSQL database, or string file.
        location: String,
        /// The sealing key's source.
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Seal a sealed session again under a new key (crash-safe: a kill at any instant leaves
    /// it readable with the old or the new key).
    Rekey {
        /// The session (as for `encrypt`).
        location: String,
        /// The sealing key's source.
        #[command(flatten)]
        key: KeyArgs,
        /// A file holding the new key; without it, the new key is read from
        /// LAYER_SESSION_NEW_KEY.
        #[arg(long, value_name = "PATH")]
        new_key_file: Option<std::path::PathBuf>,
        /// The libSQL auth token's source.
        #[command(flatten)]
        token: TokenArgs,
    },
}

/// How a remote libSQL database's auth token is given (see [`TOKEN_ENV`]).
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Auth token for a remote libSQL database (visible to other users in the process
    /// list: prefer --token-file or LAYER_SESSION_LIBSQL_TOKEN).
    #[arg(long)]
    token: Option<String>,
    /// A file holding the auth token for a remote libSQL database.
    #[arg(long, value_name = "PATH")]
    token_file: Option<std::path::PathBuf>,
}

impl TokenArgs {
    /// The token: `--token`, else the contents of `--token-file`, else [`TOKEN_ENV`].
    fn resolve(self) -> CliResult<Option<String>> {
        token_from(self.token, self.token_file.as_deref())
    }
}

/// Where the sealing key comes from (never the command line itself).
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// A file holding the sealing key (64 hexadecimal characters, or a passphrase); without
    /// it, the key is read from LAYER_SESSION_KEY. Never given on the command line.
    #[arg(long, value_name = "PATH")]
    key_file: Option<std::path::PathBuf>,
}

/// String formats `export-string` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StringKind {
    /// Ours (`L1.` full, or `Lc1.` with `--compact`).
    Ours,
    /// Telethon `StringSession`.
    Telethon,
    /// Pyrogram / kurigram / pyrofork `export_session_string` (needs api_id and the user).
    Pyrogram,
    /// GramJS `StringSession`.
    Gramjs,
    /// mtcute string session (v3).
    Mtcute,
    /// layer-client 0.5 native string.
    Layer,
    /// ferogram native string (v8).
    Ferogram,
    /// ferogram compact string (V2).
    FerogramCompact,
}

impl StringKind {
    fn format(self, compact: bool) -> StringFormat {
        match self {
            StringKind::Ours if compact => StringFormat::Compact,
            StringKind::Ours => StringFormat::Full,
            StringKind::Telethon => StringFormat::Telethon,
            StringKind::Pyrogram => StringFormat::Pyrogram,
            StringKind::Gramjs => StringFormat::GramJs,
            StringKind::Mtcute => StringFormat::MtcuteV3,
            StringKind::Layer => StringFormat::LayerClient,
            StringKind::Ferogram => StringFormat::Ferogram,
            StringKind::FerogramCompact => StringFormat::FerogramCompactV2,
        }
    }
}

/// The environment variable that may hold the libSQL auth token (read when neither `--token`
/// nor `--token-file` is given).
pub const TOKEN_ENV: &str = "LAYER_SESSION_LIBSQL_TOKEN";

/// The largest token file read.
const TOKEN_FILE_LIMIT: u64 = 64 << 10;

/// The libSQL token: `--token`, else the contents of `--token-file`, else [`TOKEN_ENV`].
fn token_from(token: Option<String>, file: Option<&Path>) -> CliResult<Option<String>> {
    match (token, file) {
        (Some(_), Some(_)) => Err(CliError::usage("give the token with --token or --token-file, not both")),
        (Some(t), None) => Ok(Some(t)),
        (None, Some(path)) => {
            let shown = format!("token file {}", location::shown_path(path));
            let meta = std::fs::metadata(path).map_err(|e| CliError::usage(format!("{shown}: {e}")))?;
            if !meta.is_file() {
                return Err(CliError::usage(format!("{shown}: is not a regular file")));
            }
            let mut file = session_core::fs::open_nonblocking(path, false)
                .map_err(|e| CliError::usage(format!("{shown}: {e}")))?;
            if !file.metadata().is_ok_and(|m| m.is_file()) {
                return Err(CliError::usage(format!("{shown}: is not a regular file")));
            }
            let bytes = crate::guard::read_bounded(&mut file, TOKEN_FILE_LIMIT, &shown)
                .map_err(|e| CliError::usage(e.message))?;
            let text = String::from_utf8(bytes).map_err(|_| CliError::usage(format!("{shown}: is not text")))?;
            let token = text.trim();
            if token.is_empty() {
                return Err(CliError::usage(format!("{shown}: is empty")));
            }
            Ok(Some(token.to_owned()))
        }
        (None, None) => Ok(std::env::var(TOKEN_ENV).ok().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())),
    }
}

/// Runs the tool with `args` (the first is the program name); returns the exit code. Results go
/// to `out`, messages (errors, what a lossy conversion dropped) to `err`.
///
/// No message names a secret: every line for `err` passes through a filter that hides anything
/// shaped like a string session, key or token, whatever library produced the message.
pub async fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    // The passwords of every server URL among the arguments: whatever a driver or clap put into
    // a message, they are taken out before it is printed.
    let secrets: Vec<String> =
        args.iter().map(|a| a.to_string_lossy()).flat_map(|a| location::secrets_in(&a)).collect();
    let mut messages = Vec::new();
    let code = run_inner(args, out, &mut messages).await;
    let text = crate::server::scrub(&String::from_utf8_lossy(&messages), &secrets);
    let _ = err.write_all(location::redact_message(&text).as_bytes());
    let _ = err.flush();
    code
}

async fn run_inner<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let text = e.render().to_string();
            if code == EXIT_OK {
                let _ = write!(out, "{text}");
            } else {
                let _ = write!(err, "{text}");
            }
            return code;
        }
    };
    match command(cli.command, out, err).await {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "error: {}", e.message);
            e.code
        }
    }
}

async fn command(command: Command, out: &mut dyn Write, err: &mut dyn Write) -> CliResult<u8> {
    match command {
        Command::Inspect { source, json, reveal_secrets, token, key } => {
            let token = token.resolve()?;
            let keys = key_from(key.key_file.as_deref())?;
            let src = location::parse_source(&source)?;
            let loaded =
                read::read(&src, &ReadOptions { token, integrity_check: false, api_id: None, keys: keys.clone() })
                    .await?;
            let shown = src.to_string();
            if json {
                let value = report::json(&loaded, &shown, reveal_secrets);
                let text = serde_json::to_string_pretty(&value).map_err(|e| CliError::usage(e.to_string()))?;
                writeln!(out, "{text}").map_err(|e| CliError::dest("<stdout>", e))?;
            } else {
                write!(out, "{}", report::text(&loaded, &shown, reveal_secrets))
                    .map_err(|e| CliError::dest("<stdout>", e))?;
            }
            Ok(EXIT_OK)
        }
        Command::Verify { source, token, key } => {
            let token = token.resolve()?;
            let keys = key_from(key.key_file.as_deref())?;
            let src = location::parse_source(&source)?;
            let shown = src.to_string();
            let loaded =
                read::read(&src, &ReadOptions { token, integrity_check: true, api_id: None, keys: keys.clone() })
                    .await?;
            let findings = verify::check(&loaded);
            for note in &findings.notes {
                let _ = writeln!(out, "note: {shown}: {note}");
            }
            if findings.problems.is_empty() {
                let _ = writeln!(
                    out,
                    "ok: {shown} ({}): {} DC entries, {} peers",
                    loaded.format.describe(),
                    loaded.data.dcs.len(),
                    loaded.data.peers.len()
                );
                Ok(EXIT_OK)
            } else {
                for p in &findings.problems {
                    let _ = writeln!(err, "error: {shown}: {p}");
                }
                Ok(EXIT_SOURCE)
            }
        }
        Command::Convert { source, dest, force, allow_lossy, decrypt, api_id, token, key } => {
            let token = token.resolve()?;
            let keys = key_from(key.key_file.as_deref())?;
            let write_keys = if decrypt { None } else { keys.clone() };
            let options = WriteOptions { force, allow_lossy, token: token.clone(), keys: write_keys };
            let keys_given = keys.is_some();
            let read_options = ReadOptions { token, integrity_check: false, api_id, keys };
            let src = location::parse_source(&source)?;
            if let Source::Path { path, family: None } = &src {
                if path.is_dir() && !crate::gramjs_store::is_store(path) {
                    if let Some(server) = location::ServerSession::parse(&dest) {
                        let shown = server.map_or_else(|e| e.message, |s| s.to_string());
                        return Err(CliError::usage(format!(
                            "{}: is a folder; a folder of sessions converts into a folder, not into {shown}",
                            location::shown_path(path)
                        )));
                    }
                    if keys_given {
                        let sample = location::batch_dest(&dest, &location::batch_dir(&dest), "session")?;
                        if !options.seals(&sample) {
                            let what = format!("every session written into {}", location::shown_arg(&dest));
                            let _ = writeln!(err, "{}", unencrypted_warning(&what));
                        }
                    }
                    return convert_folder(path, &dest, &read_options, &options, out).await;
                }
            }
            let dest = location::parse_dest(&dest)?;
            let loaded = read::read(&src, &read_options).await?;
            for w in loaded.shown_warnings() {
                let _ = writeln!(err, "warning: {src}: {w}");
            }
            if (loaded.sealed || keys_given) && !options.seals(&dest) {
                if write::holds_ciphertext(&dest) {
                    let _ = writeln!(err, "warning: {dest}: written UNENCRYPTED (--decrypt)");
                } else {
                    let _ = writeln!(err, "{}", unencrypted_warning(&dest.to_string()));
                }
            }
            let dropped = write::write(&loaded.data, &dest, &options).await?;
            if !dropped.is_empty() {
                let _ = writeln!(err, "warning: {dest}: dropped (--allow-lossy): {}", dropped.join("; "));
            }
            if !matches!(dest, Dest::String(_, StringOut::Stdout)) {
                let _ = writeln!(err, "converted {} ({}) -> {dest}", src, loaded.format.describe());
            }
            Ok(EXIT_OK)
        }
        Command::List { location, json, token } => {
            let token = token.resolve()?;
            let src = location::parse_source(&location)?;
            let listed = crate::list::list(&src, token.as_deref()).await?;
            // The database, not one of its sessions.
            let shown = match &src {
                Source::Server(s) => s.shown_url().to_owned(),
                other => other.to_string(),
            };
            let text = if json {
                let value = crate::list::json(&listed, &shown);
                serde_json::to_string_pretty(&value).map_err(|e| CliError::usage(e.to_string()))? + "\n"
            } else {
                crate::list::text(&listed, &shown)
            };
            write!(out, "{text}").map_err(|e| CliError::dest("<stdout>", e))?;
            Ok(EXIT_OK)
        }
        Command::Encrypt { location, key, token } => {
            let token = token.resolve()?;
            let key = raw_key_from(key.key_file.as_deref())?.ok_or_else(no_key)?;
            crate::reseal::run(&location, crate::reseal::Change::Encrypt(key), token, out).await
        }
        Command::Decrypt { location, key } => {
            let key = raw_key_from(key.key_file.as_deref())?.ok_or_else(no_key)?;
            crate::reseal::run(&location, crate::reseal::Change::Decrypt(key), None, out).await
        }
        Command::Rekey { location, key, new_key_file, token } => {
            let token = token.resolve()?;
            let old = raw_key_from(key.key_file.as_deref())?.ok_or_else(no_key)?;
            let new = crate::keys::key(new_key_file.as_deref(), crate::keys::NEW_KEY_ENV, "--new-key-file")?
                .ok_or_else(|| {
                    CliError::usage(format!(
                        "rekey needs the new key: set {} or pass --new-key-file PATH",
                        crate::keys::NEW_KEY_ENV
                    ))
                })?;
            crate::reseal::run(&location, crate::reseal::Change::Rekey { old, new }, token, out).await
        }
        Command::ExportString { source, compact, format, api_id, token, key } => {
            let token = token.resolve()?;
            let keys = key_from(key.key_file.as_deref())?;
            if compact && format != StringKind::Ours {
                return Err(CliError::usage("--compact applies to --format ours only"));
            }
            let src = location::parse_source(&source)?;
            let loaded =
                read::read(&src, &ReadOptions { token, integrity_check: false, api_id, keys: keys.clone() }).await?;
            let string_format = format.format(compact);
            let staged = match &keys {
                Some(keys) if string_format == StringFormat::Full => {
                    let (data, keys) = (loaded.data.clone(), keys.clone());
                    crate::blocking(move || {
                        write::sealed_string(&data, &keys).map_err(|e| match e {
                            write::Staging::Failed(reason) => CliError::dest("sealed string", reason),
                            write::Staging::Lossy(d) => CliError::lossy("sealed string", &d),
                        })
                    })
                    .await?
                }
                _ => {
                    if loaded.sealed || keys.is_some() {
                        let _ = writeln!(err, "{}", unencrypted_warning(&format!("the {format:?} string")));
                    }
                    write::string(&loaded.data, string_format, true).map_err(|e| match e {
                        write::Staging::Failed(reason) => CliError::dest(format!("{format:?} string"), reason),
                        write::Staging::Lossy(d) => CliError::lossy("string", &d),
                    })?
                }
            };
            let (text, dropped) = staged;
            writeln!(out, "{text}").map_err(|e| CliError::dest("<stdout>", e))?;
            if !dropped.is_empty() {
                let _ = writeln!(err, "note: the string does not hold: {}", dropped.join("; "));
            }
            Ok(EXIT_OK)
        }
    }
}

/// The key of `--key-file`, else of `LAYER_SESSION_KEY`.
fn key_from(file: Option<&Path>) -> CliResult<Option<session_core::Keyring>> {
    crate::keys::keyring(file, crate::keys::KEY_ENV, "--key-file")
}

fn raw_key_from(file: Option<&Path>) -> CliResult<Option<crate::keys::Key>> {
    crate::keys::key(file, crate::keys::KEY_ENV, "--key-file")
}

fn no_key() -> CliError {
    CliError::usage(format!(
        "this command needs the key: set {} or pass --key-file PATH (a raw key as 64 hexadecimal characters, or a passphrase)",
        crate::keys::KEY_ENV
    ))
}

/// The warning printed when a sealed session (or one read with a key) goes into a format of
/// another library, which cannot hold ciphertext.
fn unencrypted_warning(dest: &str) -> String {
    format!(
        "warning: {dest}: written UNENCRYPTED: this format cannot hold ciphertext, so whoever reads it \
         holds the account (keep it private, or convert into one of ours with a key)"
    )
}

async fn convert_folder(
    src: &Path,
    dest: &str,
    read_options: &ReadOptions,
    options: &WriteOptions,
    out: &mut dyn Write,
) -> CliResult<u8> {
    let summary = batch::run(src, dest, read_options, options, out).await?;
    Ok(summary.exit_code())
}
