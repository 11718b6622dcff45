//! Kill -9 loop: a child process persists changes and prints each one the backend acknowledged;
//! the parent SIGKILLs it at random moments (mid-transaction, mid-fsync, between calls) and
//! checks that every acknowledged change survived and that the database is consistent (each
//! transaction whole or absent). `LAYER_SOAK_KILLS` sets the number of kills (default 200).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use session_core::{Change, DcOption, Peer, PeerKind, SessionBackend, SessionData, UpdateStateChange};
use session_sqlite::{Durability, SqliteBackend};
use session_testkit::Rng;

const CHILD: &str = "SESSION_SQLITE_CRASH_CHILD";

fn peer(i: i64) -> Peer {
    let kind = if i % 3 == 0 { PeerKind::Megagroup } else { PeerKind::User };
    let mut p = Peer::new(i, kind, i.wrapping_mul(-7_046_029_254_386_353_131));
    if i % 4 == 0 {
        p = p.with_usernames(vec![format!("peer{i}")]);
    }
    p
}

/// Basic groups 1..=FILLER, upserted (again) at steps 10, 60, 110, ... (persists, not the full
/// saves of every 25th step): more rows than the overlay holds at least (4,096), so that persist
/// also folds the overlay into chunks in its transaction, and kills land in the middle of folds.
const FILLER: i64 = 5_000;

fn filler() -> Vec<Change> {
    (1..=FILLER).map(|id| Change::UpsertPeer(Peer::new(id, PeerKind::BasicGroup, id))).collect()
}

/// One acknowledged step: peer `i` and pts = `i` in one transaction (so the stored pts says
/// exactly which peers must be there); steps 10, 60, 110, ... also carry the filler.
fn step(i: i64) -> Vec<Change> {
    let pts = i32::try_from(i).expect("pts");
    let mut changes =
        vec![Change::UpsertPeer(peer(i)), Change::UpdateState(UpdateStateChange::Primary { pts, date: pts, seq: pts })];
    if i % 10 == 0 {
        let addr = std::net::SocketAddr::from(([10, 0, 0, u8::try_from(i % 200).expect("u8")], 443));
        changes.push(Change::SetDc(DcOption::new(2, addr)));
    }
    if i % 50 == 10 {
        changes.extend(filler());
    }
    changes
}

fn child(path: &Path, durability: Durability) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let backend = SqliteBackend::open_with(path, durability).await.expect("child open");
        let mut full = backend.load_session().await.expect("child load").unwrap_or_default();
        let mut i = i64::from(full.updates.pts);
        loop {
            i += 1;
            let changes = step(i);
            full.apply_all(&changes);
            if i % 25 == 0 {
                // A full save now and then: a big transaction to be killed in the middle of.
                backend.save_session(&full).await.expect("child save");
            } else {
                backend.persist(&changes, &full).await.expect("child persist");
            }
            println!("ack {i}");
        }
    });
}

fn check(path: &Path, acknowledged: i64) -> i64 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let backend = SqliteBackend::open(path).await.expect("parent open after kill");
        let s: SessionData = backend.load_session().await.expect("load after kill").unwrap_or_default();
        let pts = i64::from(s.updates.pts);
        assert!(pts >= acknowledged, "acknowledged step {acknowledged} lost: stored pts {pts}");
        // The filler is all there from step 10 on, whole (folded into chunks or not).
        let groups = s.peers.iter().filter(|p| p.kind == PeerKind::BasicGroup).count();
        let filler = if pts >= 10 { usize::try_from(FILLER).expect("filler") } else { 0 };
        assert_eq!(groups, filler, "the filler was torn: pts {pts}");
        assert_eq!(s.peers.len() - groups, usize::try_from(pts).expect("len"), "a transaction was torn: pts {pts}");
        // The filler's persists folded the overlay (else it would hold the 5,000 filler rows).
        let raw = rusqlite::Connection::open(path).expect("raw");
        let rows: i64 = raw.query_row("SELECT count(*) FROM peers", [], |r| r.get(0)).expect("overlay rows");
        assert!(rows < 4_096, "the overlay was not folded: {rows} rows at pts {pts}");
        for i in 1..=pts {
            assert_eq!(s.peers.get(peer(i).key()), Some(peer(i)), "peer {i} missing or wrong (pts {pts})");
        }
        assert_eq!((s.updates.date, s.updates.seq), (s.updates.pts, s.updates.pts));
        pts
    })
}

/// Every kill of a writer opened with `durability` (kill -9 is a process crash, which both
/// levels survive).
fn kill_loop(test: &str, durability: Durability) {
    if let Some(path) = std::env::var_os(CHILD) {
        child(Path::new(&path), durability);
        return;
    }
    let kills: u64 = std::env::var("LAYER_SOAK_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("crash.db");
    let path_text = path.to_str().expect("utf-8 path").to_owned();
    let mut rng = Rng::new(0xC0FFEE);
    let mut acknowledged = 0i64;
    let mut beyond = 0u64;
    for round in 0..kills {
        let mut child = common::child(test, &[(CHILD, &path_text)])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let target = rng.below(12);
        let mut seen = 0;
        let mut line = String::new();
        while seen < target {
            line.clear();
            if out.read_line(&mut line).expect("read child") == 0 {
                panic!("child exited early in round {round}: {:?}", child.wait());
            }
            if let Some(n) = common::after(&line, "ack ") {
                acknowledged = n.parse().expect("ack number");
                seen += 1;
            }
        }
        // Land the kill anywhere: before open, during a commit's fsync, mid-save.
        std::thread::sleep(Duration::from_micros(rng.below(6_000)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let mut rest = String::new();
        out.read_to_string(&mut rest).expect("drain");
        for l in rest.lines() {
            if let Some(n) = common::after(l, "ack ") {
                acknowledged = n.parse().expect("ack number");
            }
        }
        let stored = check(&path, acknowledged);
        if stored > acknowledged {
            beyond += 1;
        }
    }
    println!("{durability:?}: {kills} kills, {acknowledged} acknowledged steps all kept; {beyond} kills landed after a commit reached the file and before it was acknowledged");
    assert!(acknowledged > 0, "the child never acknowledged anything");
}

#[test]
fn kill_nine_never_loses_an_acknowledged_change() {
    kill_loop("kill_nine_never_loses_an_acknowledged_change", Durability::PowerLoss);
}

#[test]
fn kill_nine_never_loses_an_acknowledged_change_without_fsync_per_commit() {
    kill_loop("kill_nine_never_loses_an_acknowledged_change_without_fsync_per_commit", Durability::Balanced);
}
