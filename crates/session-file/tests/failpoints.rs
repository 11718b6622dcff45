//! Injected write failures (disk full, I/O error) at each step of the write protocol return the
//! error, keep its kind, leave the previous session loadable, and the backend recovers.

use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;

use session_core::{Change, Peer, PeerKind, SessionBackend, SessionData, SessionError};
use session_file::failpoint::{Failpoints, Step};
use session_file::BinaryFileBackend;
use session_testkit::sample_session;

#[derive(Clone, Copy, Debug)]
enum Op {
    /// One small change: an append.
    Append,
    /// A full save: temp file, rename.
    Save,
    /// A change batch too large for the log: compaction into a new file.
    Compact,
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

/// What is on disk right now, read through a copy (the backend under test holds the lock).
async fn on_disk(path: &Path) -> Option<SessionData> {
    let copy = path.with_file_name("copy-for-check.session");
    std::fs::copy(path, &copy).expect("copy");
    let backend = BinaryFileBackend::open(&copy).await.unwrap_or_else(|e| panic!("the file does not load: {e}"));
    let data = backend.load_session().await.expect("load");
    drop(backend);
    std::fs::remove_file(&copy).expect("remove copy");
    std::fs::remove_file(session_core::fs::lock_path(&copy)).expect("remove lock");
    data
}

async fn run(step: Step, kind: ErrorKind, op: Op) {
    let what = format!("{op:?} failing at {step:?} with {kind:?}");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("s.session");
    let failpoints = Failpoints::new();
    let backend = BinaryFileBackend::open_with_failpoints(&path, Arc::clone(&failpoints)).await.expect("open");
    let old = sample_session(30);
    backend.save_session(&old).await.expect("first save");
    // Something in the log already, so that an append failure has a tail to damage.
    let mut old = old;
    let first = [Change::SetApiId(Some(5))];
    old.apply_all(&first);
    backend.persist(&first, &old).await.expect("first persist");

    let (new, result) = {
        failpoints.arm(step, kind);
        match op {
            Op::Append => {
                let batch = vec![Change::UpsertPeer(Peer::new(42, PeerKind::Bot, 4242))];
                let mut new = old.clone();
                new.apply_all(&batch);
                let r = backend.persist(&batch, &new).await;
                (new, r)
            }
            Op::Save => {
                let new = sample_session(31);
                let r = backend.save_session(&new).await;
                (new, r)
            }
            Op::Compact => {
                let batch: Vec<Change> = (0..4000)
                    .map(|i| {
                        Change::UpsertPeer(
                            Peer::new(10_000 + i, PeerKind::User, i).with_usernames(vec!["n".repeat(40)]),
                        )
                    })
                    .collect();
                let mut new = old.clone();
                new.apply_all(&batch);
                let r = backend.persist(&batch, &new).await;
                (new, r)
            }
        }
    };
    assert_eq!(failpoints.fired(), vec![step], "{what}: the failpoint did not fire");
    let err = match result {
        Ok(()) => panic!("{what}: the write reported success"),
        Err(e) => SessionError::from_boxed(e, "file"),
    };
    match &err {
        SessionError::Io { source, .. } => assert_eq!(source.kind(), kind, "{what}: error kind lost"),
        other => panic!("{what}: expected an I/O error, got {other}"),
    }
    assert!(temp_files(dir.path()).is_empty(), "{what}: temp files left behind");

    // The previous session is still what loads (a failure after the rename may already show
    // the new one, which is fine: it was never acknowledged, and it is complete).
    let loaded = on_disk(&path).await;
    let after_rename = matches!(step, Step::DirSync);
    if after_rename {
        assert!(loaded.as_ref() == Some(&old) || loaded.as_ref() == Some(&new), "{what}: neither old nor new loads");
    } else {
        assert_eq!(loaded.as_ref(), Some(&old), "{what}: the previous session was damaged");
    }

    // The caller retries (the same changes again, as SessionStore does), and carries on.
    match op {
        Op::Append | Op::Compact => {
            let batch: Vec<Change> =
                new.peers.iter().filter(|p| old.peers.get(p.key()).is_none()).map(Change::UpsertPeer).collect();
            backend.persist(&batch, &new).await.unwrap_or_else(|e| panic!("{what}: retry failed: {e}"));
        }
        Op::Save => backend.save_session(&new).await.unwrap_or_else(|e| panic!("{what}: retry failed: {e}")),
    }
    let mut last = new.clone();
    let more = [Change::SetHomeDc(5)];
    last.apply_all(&more);
    backend.persist(&more, &last).await.unwrap_or_else(|e| panic!("{what}: next persist failed: {e}"));
    assert_eq!(backend.load_session().await.expect("load"), Some(last.clone()));
    drop(backend);
    let backend = BinaryFileBackend::open(&path).await.expect("reopen");
    assert_eq!(backend.load_session().await.expect("load"), Some(last), "{what}: lost writes after recovery");
}

#[tokio::test]
async fn every_step_of_the_write_protocol_can_fail_safely() {
    for kind in [ErrorKind::StorageFull, ErrorKind::Other] {
        for step in Step::ALL {
            let ops: &[Op] = match step {
                Step::Append | Step::AppendSync => &[Op::Append],
                _ => &[Op::Save, Op::Compact],
            };
            for op in ops {
                run(step, kind, *op).await;
            }
        }
    }
}
