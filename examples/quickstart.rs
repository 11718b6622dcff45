//! A user's first minute, offline: a session is created and persisted by one process, that
//! process is killed with SIGKILL, and a new process restores everything it acknowledged. Along
//! the way: a second owner is refused, the file is private, secrets are redacted, and a Telethon
//! string is imported.
//!
//! Run: `cargo xtask demo` (or `cargo run -p layer-examples --example quickstart`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use session_core::{
    AuthKey, BoxError, Change, DcOption, FlushPolicy, Peer, PeerKind, SelfUser, SessionError, SessionStore,
    UpdateState, UpdateStateChange,
};
use session_file::BinaryFileBackend;

const CHILD: &str = "LAYER_DEMO_CHILD";

/// A string written by Telethon 1.45 itself (`StringSession.save()`), DC 2 over IPv4.
const TELETHON_STRING: &str = "1ApWapzMBuwABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj9AQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVpbXF1eX2BhYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ent8fX5_gIGCg4SFhoeIiYqLjI2Oj5CRkpOUlZaXmJmam5ydnp-goaKjpKWmp6ipqqusra6vsLGys7S1tre4ubq7vL2-v8DBwsPExcbHyMnKy8zNzs_Q0dLT1NXW19jZ2tvc3d7f4OHi4-Tl5ufo6err7O3u7_Dx8vP09fb3-Pn6-_z9_v8=";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    if let Some(path) = std::env::var_os(CHILD) {
        return child(PathBuf::from(path)).await;
    }
    let dir = std::env::temp_dir().join(format!("layer-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("my.session");
    let result = parent(&path).await;
    std::fs::remove_dir_all(&dir)?;
    result
}

/// The first run: log in (here: store a key as a login would), cache peers, then wait to die.
async fn child(path: PathBuf) -> Result<(), BoxError> {
    let backend = BinaryFileBackend::open(&path).await?;
    let store = SessionStore::open(Arc::new(backend), FlushPolicy::default()).await?;
    let mut key = [0u8; 256];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::try_from((i * 73 + 11) % 256)?;
    }
    let dc2 = DcOption::new(2, SocketAddr::from(([149, 154, 167, 51], 443))).with_auth_key(Some(AuthKey::new(key)));
    // Critical changes: durable when `apply` returns.
    store.apply(Change::SetDc(dc2)).await?;
    store.apply(Change::SetHomeDc(2)).await?;
    store.apply(Change::SetUser(Some(SelfUser::new(111_222_333, false)))).await?;
    // Ordinary changes: batched, durable at the next flush.
    let peers = (0..10_000i64).map(|i| Change::UpsertPeer(Peer::new(1_000 + i, PeerKind::User, i * 7919)));
    store.apply_many(peers.collect()).await?;
    store.apply(Change::UpdateState(UpdateStateChange::All(UpdateState::new(4_242, 17, 1_764_000_000, 99)))).await?;
    store.flush().await?;
    println!("acknowledged");
    // Never closes: the parent kills this process with SIGKILL.
    std::future::pending::<()>().await;
    Ok(())
}

async fn parent(path: &Path) -> Result<(), BoxError> {
    println!("1. A program logs in and caches 10,000 peers in {}", path.display());
    let mut child = Command::new(std::env::current_exe()?).env(CHILD, path).stdout(Stdio::piped()).spawn()?;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if line.trim() != "acknowledged" {
        return Err(format!("the first program failed: {line:?}").into());
    }
    println!("   its flush was acknowledged (fsync'ed); it is still running (pid {})", child.id());

    println!("2. A second program opens the same session while the first holds it:");
    match BinaryFileBackend::open(path).await {
        Err(e @ SessionError::Locked { .. }) => println!("   refused: {e}"),
        Ok(_) => return Err("a second owner was allowed".into()),
        Err(e) => return Err(e.into()),
    }

    println!("3. The first program is killed with SIGKILL (no shutdown, no flush)");
    child.kill()?;
    child.wait()?;

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        println!("4. The file is private: mode {mode:o}");
    }

    println!("5. A restart restores everything that was acknowledged:");
    let store = SessionStore::open_default(BinaryFileBackend::open(path).await?).await?;
    let session = store.snapshot();
    println!("   home DC {}, user {:?}", session.home_dc, session.user);
    println!("   peers cached: {}", session.peers.len());
    println!("   update state: pts {} qts {} seq {}", session.updates.pts, session.updates.qts, session.updates.seq);
    // Debug output shows the key id, never the key.
    println!("   home DC option (redacted): {:?}", session.home().ok_or("no home DC")?);
    if session.peers.len() != 10_000 || !session.has_home_key() {
        return Err("the restored session is incomplete".into());
    }
    store.close().await?;

    println!("6. A Telethon string session, imported without logging in again:");
    let (imported, format) = session_string::foreign::import(TELETHON_STRING)?;
    println!("   format: {}", format.name());
    println!("   DC {} at {:?}", imported.home_dc, imported.home().map(|o| o.addr));
    println!("   key (redacted): {:?}", imported.auth_key(imported.home_dc).ok_or("no key")?);
    println!("   as our compact string: {} characters", session_string::encode_compact(&imported)?.len());
    Ok(())
}
