//! The client child processes of `tests/files.rs` and `tests/updates.rs`, a program of its own:
//! tests that played a child when an environment variable was set passed, doing nothing, in
//! every normal run. Each runs a client against the loopback DCs the parent serves (their
//! addresses are in the session file) until the parent kills it with SIGKILL.
//!
//! - `layer-client-test-child kill PATH API_ID API_HASH`: signs in as a bot, prints `SIGNED_IN`,
//!   then caches peers without end, printing `ACK n` each time `n` peers are durable.
//! - `layer-client-test-child updates PATH API_ID API_HASH FLUSH_MS`: handles updates, with the
//!   session flushed at most FLUSH_MS after a change, and prints `handled pts N` (the pts
//!   recorded) after each one.

use std::path::PathBuf;
use std::time::Duration;

use layer_client::core::{Change, Peer, PeerKind};
use layer_client::{Client, Config, FlushPolicy};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, path, api_id, api_hash, rest @ ..] = args.as_slice() else {
        panic!("usage: kill|updates PATH API_ID API_HASH [FLUSH_MS]")
    };
    let api_id: i32 = api_id.parse().expect("api_id");
    match mode.as_str() {
        "kill" => kill(PathBuf::from(path), api_id, api_hash.clone()).await,
        "updates" => {
            let flush = Duration::from_millis(rest.first().expect("FLUSH_MS").parse().expect("milliseconds"));
            updates(path, api_id, api_hash, flush).await
        }
        other => panic!("unknown child mode {other}"),
    }
}

async fn kill(session_path: PathBuf, api_id: i32, api_hash: String) {
    let config = Config { session_path, api_id, api_hash, ..Default::default() };
    let (client, _shutdown) = Client::connect(config).await.expect("connect");
    client.bot_sign_in("1001:token").await.expect("bot sign-in");
    println!("SIGNED_IN");
    let base = client.session().read(|d| d.peers.len());
    let mut n = 0i64;
    loop {
        n += 1;
        let id = 10_000_000 + i64::try_from(base).expect("peer count") + n;
        client.session().apply(Change::UpsertPeer(Peer::new(id, PeerKind::User, id ^ 0x55))).await.expect("apply");
        if n % 16 == 0 {
            client.flush().await.expect("flush");
            println!("ACK {}", base + usize::try_from(n).expect("count"));
        }
    }
}

async fn updates(path: &str, api_id: i32, api_hash: &str, flush: Duration) {
    let (client, _shutdown) = Client::builder()
        .session_path(path)
        .api_id(api_id)
        .api_hash(api_hash)
        .flush_policy(FlushPolicy::new(flush, 512))
        .connect()
        .await
        .expect("connect");
    let mut updates = client.stream_updates(true).await.expect("stream updates");
    loop {
        updates.next().await.expect("an update");
        println!("handled pts {}", client.session().snapshot().updates.pts);
    }
}
