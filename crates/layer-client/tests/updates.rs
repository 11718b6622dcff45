//! The update state grammers advances is kept in the session: pushed updates move the stored
//! pts/qts/seq and channel pts, and a client killed with SIGKILL resumes (`updates.getDifference`)
//! from what it had handed out at most one flush interval before the kill. The killed client is
//! `layer-client-test-child` (`tests/bin/child.rs`), built with the internal `test-children`
//! feature, as is this test.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use grammers_tl_types::{self as tl, Identifiable};
use layer_client::core::{Change, SelfUser, SessionBackend, SessionData, UpdateState};
use layer_client::session_backend::{BinaryFileBackend, InMemoryBackend};
use layer_client::Client;
use support::{routes, session_for, Dc, Handler, Reply};
use tokio::io::{AsyncBufReadExt, BufReader};

const API_ID: i32 = 424242;
const API_HASH: &str = "0123456789abcdef0123456789abcdef";
const DATE: i32 = 1_700_000_000;
/// The child program; in mode `updates` it handles updates and prints the pts recorded after
/// each one, until it is killed.
const CHILD: &str = env!("CARGO_BIN_EXE_layer-client-test-child");
const FLUSH: Duration = Duration::from_millis(100);

fn handler<F: Fn(&support::Call) -> Reply + Send + Sync + 'static>(f: F) -> Handler {
    Arc::new(f)
}

/// A DC that answers getState and an empty getDifference with the state it was given.
async fn dc_with_state(pts: i32, qts: i32, seq: i32) -> Dc {
    Dc::start(
        2,
        2,
        routes(HashMap::from([
            (tl::functions::updates::GetState::CONSTRUCTOR_ID, handler(move |_| support::state(pts, qts, DATE, seq))),
            (
                tl::functions::updates::GetDifference::CONSTRUCTOR_ID,
                handler(move |_| {
                    Reply::ok(&tl::enums::updates::Difference::Empty(tl::types::updates::DifferenceEmpty {
                        date: DATE,
                        seq,
                    }))
                }),
            ),
        ])),
    )
    .await
}

fn logged_in(dc: &Dc, pts: i32, qts: i32, seq: i32) -> SessionData {
    let mut data = session_for(&[dc], 2, Some(SelfUser::new(77, false)));
    data.apply(&Change::UpdateState(layer_client::core::UpdateStateChange::All(UpdateState::new(pts, qts, DATE, seq))));
    data
}

fn container(updates: Vec<tl::enums::Update>, seq: i32) -> tl::enums::Updates {
    tl::enums::Updates::Updates(tl::types::Updates { updates, users: vec![], chats: vec![], date: DATE + seq, seq })
}

fn deleted(pts: i32) -> tl::enums::Update {
    tl::enums::Update::DeleteMessages(tl::types::UpdateDeleteMessages { messages: vec![pts], pts, pts_count: 1 })
}

fn bot_stopped(qts: i32) -> tl::enums::Update {
    tl::enums::Update::BotStopped(tl::types::UpdateBotStopped { user_id: 5, date: DATE, stopped: true, qts })
}

fn channel_deleted(channel_id: i64, pts: i32) -> tl::enums::Update {
    tl::enums::Update::DeleteChannelMessages(tl::types::UpdateDeleteChannelMessages {
        channel_id,
        messages: vec![pts],
        pts,
        pts_count: 1,
    })
}

/// Waits until the DC has received `n` getDifference calls.
async fn wait_for_catch_up(dc: &Dc, n: usize) {
    for _ in 0..2000 {
        if dc.count::<tl::functions::updates::GetDifference>() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no catch-up call {n}");
}

/// Pushes `updates` until a connection took it (the first request opens the connection).
async fn push(dc: &Dc, updates: &tl::enums::Updates) {
    for _ in 0..200 {
        if dc.push(updates) > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no connection to push updates on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_updates_move_the_stored_state_and_channel_pts() {
    let dc = dc_with_state(100, 5, 10).await;
    let backend = Arc::new(InMemoryBackend::with_session(logged_in(&dc, 100, 5, 10)));
    let (client, shutdown) =
        Client::builder().session(Arc::clone(&backend)).api_id(API_ID).api_hash(API_HASH).connect().await.unwrap();
    let mut updates = client.stream_updates(true).await.unwrap();

    let next = tokio::spawn(async move {
        let mut n = 0;
        while n < 4 {
            tokio::time::timeout(Duration::from_secs(10), updates.next()).await.expect("update in time").unwrap();
            n += 1;
        }
        updates
    });
    // The catch-up (getDifference from the stored pts) opens the connection first.
    wait_for_catch_up(&dc, 1).await;
    let asked = dc.calls_of::<tl::functions::updates::GetDifference>();
    assert_eq!((asked[0].pts, asked[0].qts, asked[0].date), (100, 5, DATE), "catch-up from the stored state");
    push(&dc, &container(vec![deleted(101)], 11)).await;
    push(&dc, &container(vec![bot_stopped(6)], 12)).await;
    push(&dc, &container(vec![channel_deleted(555, 41)], 13)).await;
    push(&dc, &container(vec![channel_deleted(555, 42), deleted(102)], 14)).await;
    let _updates = next.await.unwrap();

    // Handed out means recorded; the store writes it under its flush policy.
    client.flush().await.unwrap();
    let stored = backend.load_session().await.unwrap().unwrap();
    assert_eq!((stored.updates.pts, stored.updates.qts, stored.updates.seq), (102, 6, 14));
    assert_eq!(stored.updates.date, DATE + 14);
    assert_eq!(stored.updates.channels.get(&555), Some(&42), "per-channel pts");
    shutdown.shutdown().await.unwrap();
}

/// Reads the child's output until it reports pts `want` handled.
async fn handled(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>, want: i32) {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("child answers in time")
            .unwrap()
            .expect("child alive");
        if line.ends_with(&format!("handled pts {want}")) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_resumes_from_the_state_handled_before_the_kill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bot.session");
    let dc = dc_with_state(100, 5, 10).await;
    BinaryFileBackend::open(&path).await.unwrap().save_session(&logged_in(&dc, 100, 5, 10)).await.unwrap();

    let mut child = tokio::process::Command::new(CHILD)
        .arg("updates")
        .arg(&path)
        .args([API_ID.to_string(), API_HASH.to_owned(), FLUSH.as_millis().to_string()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    wait_for_catch_up(&dc, 1).await;
    for pts in 101..=103 {
        push(&dc, &container(vec![deleted(pts)], pts - 90)).await;
        handled(&mut lines, pts).await;
    }
    // One more handled right before the kill may or may not be written: that is the interval.
    tokio::time::sleep(FLUSH * 3).await;
    push(&dc, &container(vec![deleted(104)], 14)).await;
    handled(&mut lines, 104).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let stored = BinaryFileBackend::open(&path).await.unwrap().load_session().await.unwrap().unwrap();
    assert!(
        stored.updates.pts == 103 || stored.updates.pts == 104,
        "stored pts {} is more than one flush interval behind the last update handled (104)",
        stored.updates.pts
    );

    // The restart asks getDifference from the stored state.
    let (client, shutdown) =
        Client::builder().session_path(&path).api_id(API_ID).api_hash(API_HASH).connect().await.unwrap();
    let mut updates = client.stream_updates(true).await.unwrap();
    let waiting = tokio::spawn(async move {
        let _ = updates.next().await;
    });
    wait_for_catch_up(&dc, 2).await;
    let asked = dc.calls_of::<tl::functions::updates::GetDifference>();
    let last = asked.last().unwrap();
    assert_eq!(asked.len(), 2, "one catch-up per run");
    assert_eq!((last.pts, last.qts), (stored.updates.pts, 5));
    assert_eq!(last.date, stored.updates.date);
    waiting.abort();
    shutdown.shutdown().await.unwrap();
}

/// A restart with a channel in the stored update state: the catch-up asks
/// `updates.getChannelDifference` from the stored channel pts (40), with the access hash the
/// session holds for the channel; the pts of the answer (43) is applied (the next update, 44,
/// follows it without a new gap) and the session stores the channel pts of the update handed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_asks_get_channel_difference_from_the_stored_channel_pts() {
    const CHANNEL: i64 = 555;
    const HASH: i64 = 0x5555_aaaa;
    let dc = Dc::start(
        2,
        2,
        routes(HashMap::from([
            (tl::functions::updates::GetState::CONSTRUCTOR_ID, handler(|_| support::state(100, 5, DATE, 10))),
            (
                tl::functions::updates::GetDifference::CONSTRUCTOR_ID,
                handler(|_| {
                    Reply::ok(&tl::enums::updates::Difference::Empty(tl::types::updates::DifferenceEmpty {
                        date: DATE,
                        seq: 10,
                    }))
                }),
            ),
            (
                tl::functions::updates::GetChannelDifference::CONSTRUCTOR_ID,
                handler(|_| {
                    Reply::ok(&tl::enums::updates::ChannelDifference::Empty(
                        tl::types::updates::ChannelDifferenceEmpty { r#final: true, pts: 43, timeout: None },
                    ))
                }),
            ),
        ])),
    )
    .await;
    let mut data = logged_in(&dc, 100, 5, 10);
    data.apply(&Change::UpdateState(layer_client::core::UpdateStateChange::Channel { id: CHANNEL, pts: 40 }));
    data.apply(&Change::UpsertPeer(layer_client::core::Peer::new(
        CHANNEL,
        layer_client::core::PeerKind::Broadcast,
        HASH,
    )));
    let backend = Arc::new(InMemoryBackend::with_session(data));
    let (client, shutdown) =
        Client::builder().session(Arc::clone(&backend)).api_id(API_ID).api_hash(API_HASH).connect().await.unwrap();
    let mut updates = client.stream_updates(true).await.unwrap();
    let waiting = tokio::spawn(async move { while updates.next().await.is_ok() {} });
    wait_for_catch_up(&dc, 1).await;

    let mut asked = Vec::new();
    for _ in 0..1000 {
        asked = dc.calls_of::<tl::functions::updates::GetChannelDifference>();
        if !asked.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = asked.first().expect("a stored channel must be caught up with getChannelDifference");
    assert_eq!(first.pts, 40, "asked from the stored channel pts");
    let tl::enums::InputChannel::Channel(channel) = &first.channel else { panic!("{:?}", first.channel) };
    assert_eq!((channel.channel_id, channel.access_hash), (CHANNEL, HASH), "the stored access hash");

    // The difference moved the channel to pts 43 without an update to hand out; the next update
    // (pts 44) follows it without a new gap, and handing it out records the state.
    // Telegram sends channel updates outside the common seq (seq 0).
    push(&dc, &container(vec![channel_deleted(CHANNEL, 44)], 0)).await;
    let mut stored = 0;
    for _ in 0..500 {
        client.flush().await.unwrap();
        stored = *backend.load_session().await.unwrap().unwrap().updates.channels.get(&CHANNEL).unwrap_or(&0);
        if stored == 44 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stored, 44, "the channel pts after the difference and the next update is stored");
    assert_eq!(dc.count::<tl::functions::updates::GetChannelDifference>(), 1, "pts 43 from the difference was applied");
    waiting.abort();
    shutdown.shutdown().await.unwrap();
}
