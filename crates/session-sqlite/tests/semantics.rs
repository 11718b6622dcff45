//! The SQL that persists changes means exactly what `SessionData::apply` does, in the corners:
//! keys for DCs that have only an IPv6 option or none, test-mode addresses, removals by
//! non-identity keys, a log out in the middle of a batch.

use std::net::SocketAddr;

use session_core::{
    AuthKey, Change, DcFlags, DcKey, DcOption, MinPeerContext, Peer, PeerKey, PeerKind, SelfUser, SessionBackend,
    SessionData, UpdateState, UpdateStateChange,
};
use session_sqlite::SqliteBackend;

fn key(n: u8) -> Option<AuthKey> {
    Some(AuthKey::new([n; 256]))
}

fn v6(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

async fn same_as_apply(start: &SessionData, changes: &[Change]) {
    let backend = SqliteBackend::in_memory().await.expect("memory");
    backend.save_session(start).await.expect("save");
    let mut expected = start.clone();
    // One change per persist, then all again in one batch on a fresh copy: both must agree.
    for c in changes {
        expected.apply(c);
        backend.persist(std::slice::from_ref(c), &expected).await.expect("persist");
    }
    assert_eq!(backend.load_session().await.expect("load").as_ref(), Some(&expected), "one by one: {changes:?}");
    let batch = SqliteBackend::in_memory().await.expect("memory");
    batch.save_session(start).await.expect("save");
    batch.persist(changes, &expected).await.expect("persist batch");
    assert_eq!(batch.load_session().await.expect("load").as_ref(), Some(&expected), "in one batch: {changes:?}");
}

#[tokio::test]
async fn auth_keys_go_where_apply_puts_them() {
    let mut only_v6 = SessionData::default();
    only_v6.apply(&Change::SetDc(DcOption::new(2, v6("[2001:67c:4e8:f002::a]:443"))));
    only_v6.apply(&Change::SetDc(
        DcOption::new(2, "149.154.167.222:443".parse().expect("addr")).with_flags(DcFlags::MEDIA_ONLY),
    ));
    same_as_apply(&only_v6, &[Change::SetAuthKey { dc_id: 2, key: key(1) }]).await;

    let mut both = only_v6.clone();
    both.apply(&Change::SetDc(DcOption::new(2, "149.154.167.51:443".parse().expect("addr"))));
    same_as_apply(&both, &[Change::SetAuthKey { dc_id: 2, key: key(2) }, Change::SetAuthKey { dc_id: 2, key: None }])
        .await;

    // No option yet: created at the published address, for the mode stored at that moment.
    same_as_apply(
        &SessionData::default(),
        &[
            Change::SetAuthKey { dc_id: 1, key: key(3) },
            Change::SetTestMode(true),
            Change::SetAuthKey { dc_id: 3, key: key(4) },
            Change::SetAuthKey { dc_id: 5, key: key(5) },
            Change::SetAuthKey { dc_id: 99, key: None },
        ],
    )
    .await;
}

#[tokio::test]
async fn removals_match_exact_keys() {
    let mut s = SessionData::default();
    s.apply(&Change::SetDc(
        DcOption::new(4, "149.154.167.92:443".parse().expect("addr"))
            .with_flags(DcFlags::MEDIA_ONLY.with(DcFlags::STATIC, true)),
    ));
    s.apply(&Change::UpsertPeer(Peer::new(7, PeerKind::User, 1)));
    s.apply(&Change::UpsertPeer(Peer::new(7, PeerKind::Megagroup, 2)));
    same_as_apply(
        &s,
        &[
            // Not the stored key (STATIC is not an identity bit): removes nothing, as in memory.
            Change::RemoveDc(DcKey { id: 4, flags: DcFlags::MEDIA_ONLY.with(DcFlags::STATIC, true) }),
            Change::RemovePeer(PeerKey::chat(7)),
            Change::RemovePeer(PeerKey::channel(7)),
            Change::UpdateState(UpdateStateChange::RemoveChannel { id: 12 }),
        ],
    )
    .await;
    same_as_apply(&s, &[Change::RemoveDc(DcKey { id: 4, flags: DcFlags::MEDIA_ONLY })]).await;
}

#[tokio::test]
async fn log_out_in_the_middle_of_a_batch_and_everything_else() {
    let mut state = UpdateState::new(1, 2, 3, 4);
    state.channels.insert(10, 11);
    let changes = vec![
        Change::SetHomeDc(2),
        Change::SetUser(Some(SelfUser::new(5, true))),
        Change::SetApiId(Some(6)),
        Change::SetMinContexts(vec![MinPeerContext::new(1, 2, 3), MinPeerContext::new(4, 5, 6)]),
        Change::SetFutureAuthToken(Some(vec![9; 40])),
        Change::UpdateState(UpdateStateChange::All(state)),
        Change::UpsertPeer(Peer::new(1, PeerKind::Bot, -1).with_usernames(vec!["a b\"c".into(), String::new()])),
        Change::LogOut,
        Change::SetHomeDc(4),
        Change::UpdateState(UpdateStateChange::Channel { id: 10, pts: 12 }),
        Change::UpdateState(UpdateStateChange::Primary { pts: 7, date: 8, seq: 9 }),
        Change::UpdateState(UpdateStateChange::Secondary { qts: 70 }),
        Change::SetMinContexts(vec![]),
        Change::SetUser(None),
        Change::SetApiId(None),
        Change::SetFutureAuthToken(None),
        Change::UpsertPeer(
            Peer::new(i64::MAX, PeerKind::Community, i64::MIN).with_min(true).with_phone(Some(String::new())),
        ),
    ];
    same_as_apply(&SessionData::default(), &changes).await;
}

/// Peers are chunks plus an overlay of rows and removals that a persist folds into new chunks
/// when it grows. Through many folds, with upserts, re-upserts, removals of chunked and of
/// overlay peers, a save and a log out in between, the database always loads exactly what
/// `apply` gives, before and after a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_stay_exact_through_overlay_folds() {
    use session_testkit::{sample_peer, Rng};
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("folds.db");
    let mut backend = SqliteBackend::open(&path).await.expect("open");
    let mut rng = Rng::new(7);
    let mut expected = session_testkit::sample_session(9_000);
    backend.save_session(&expected).await.expect("save");
    for round in 0..24u64 {
        let mut batch = Vec::new();
        for _ in 0..900 {
            let n = rng.below(14_000);
            batch.push(if rng.below(4) == 0 {
                Change::RemovePeer(sample_peer(n, &mut rng).key())
            } else {
                Change::UpsertPeer(sample_peer(n, &mut rng))
            });
        }
        if round == 11 {
            batch.push(Change::LogOut);
            batch.push(Change::UpsertPeer(sample_peer(3, &mut rng)));
        }
        // Batches of varied sizes, as a store flushes them.
        let mut rest = batch.as_slice();
        while !rest.is_empty() {
            let take = usize::try_from(rng.below(300) + 1).unwrap_or(1).min(rest.len());
            let (now, later) = rest.split_at(take);
            expected.apply_all(now);
            backend.persist(now, &expected).await.expect("persist");
            rest = later;
        }
        if round == 17 {
            expected.peers = (0..5_000).map(|i| sample_peer(i * 3, &mut rng)).collect();
            backend.save_session(&expected).await.expect("save");
        }
        assert_eq!(backend.load_session().await.expect("load").as_ref(), Some(&expected), "round {round}");
        if round % 8 == 7 {
            drop(backend);
            backend = SqliteBackend::open(&path).await.expect("reopen");
            assert_eq!(backend.load_session().await.expect("load").as_ref(), Some(&expected), "reopened {round}");
        }
    }
    drop(backend);
    // The folds really happened: the overlay is far smaller than everything written to it.
    let raw = rusqlite::Connection::open(&path).expect("raw");
    let rows: i64 = raw.query_row("SELECT count(*) FROM peers", [], |r| r.get(0)).expect("count");
    let chunked: i64 = raw.query_row("SELECT sum(peers) FROM peer_chunks", [], |r| r.get(0)).expect("sum");
    assert!(rows <= 4_096 && chunked > 0, "overlay {rows} rows over {chunked} chunked peers");
}

/// Removing a peer records a removal row only when a chunk's key range may hold it; either way
/// the peer stays removed across a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removals_are_recorded_only_inside_chunk_ranges() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("ranges.db");
    let backend = SqliteBackend::open(&path).await.expect("open");
    let mut expected = SessionData::default();
    expected.peers = (100..110).map(|i| Peer::new(i, PeerKind::User, i)).collect();
    backend.save_session(&expected).await.expect("save");
    let changes = [
        Change::UpsertPeer(Peer::new(5_000, PeerKind::User, 1)),
        Change::UpsertPeer(Peer::new(105, PeerKind::User, 2)),
        Change::RemovePeer(PeerKey::user(5_000)), // only ever a row: nothing to record
        Change::RemovePeer(PeerKey::user(105)),   // chunked: recorded
        Change::RemovePeer(PeerKey::channel(7)),  // no chunk of channels
    ];
    expected.apply_all(&changes);
    backend.persist(&changes, &expected).await.expect("persist");
    drop(backend);
    let raw = rusqlite::Connection::open(&path).expect("raw");
    let removals: Vec<(i64, i64)> = raw
        .prepare("SELECT class, id FROM peer_removals")
        .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .expect("removals");
    assert_eq!(removals, [(0, 105)]);
    drop(raw);
    let reopened = SqliteBackend::open(&path).await.expect("reopen");
    assert_eq!(reopened.load_session().await.expect("load"), Some(expected));
}
