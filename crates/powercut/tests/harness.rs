//! The harness proves itself: writers that are wrong on purpose must lose acknowledged data
//! under it (a rename whose directory is never fsynced; an acknowledgement given before
//! `fdatasync`), the same writers done right must lose nothing, and a torn cut must keep some
//! but not all of the unsynced sectors. Writers run on threads of this process against the
//! mount (the filesystem serves from its own thread).

mod common;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::Rig;
use session_powercut::{LossMode, SECTOR};
use session_testkit::Rng;

/// A writer's step `v`: makes value `v` the current one, and says when to acknowledge.
type Step = fn(&Path, u64, &mut dyn FnMut()) -> io::Result<()>;

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `value` through a temporary file, fsyncs it, renames it over the old one and
/// acknowledges, never fsyncing the directory: the rename may be lost.
fn rename_without_dir_fsync(dir: &Path, v: u64, ack: &mut dyn FnMut()) -> io::Result<()> {
    let tmp = dir.join("value.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&v.to_le_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("value"))?;
    ack();
    Ok(())
}

/// The same, done right: the directory is fsynced after the rename, before the ack.
fn rename_with_dir_fsync(dir: &Path, v: u64, ack: &mut dyn FnMut()) -> io::Result<()> {
    let tmp = dir.join("value.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&v.to_le_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("value"))?;
    sync_dir(dir)?;
    ack();
    Ok(())
}

fn append(dir: &Path, v: u64) -> io::Result<File> {
    let mut f = OpenOptions::new().append(true).open(dir.join("log"))?;
    f.write_all(&v.to_le_bytes())?;
    Ok(f)
}

/// Appends a record and acknowledges it before `fdatasync`: the last acknowledged record may be
/// lost.
fn ack_before_fdatasync(dir: &Path, v: u64, ack: &mut dyn FnMut()) -> io::Result<()> {
    let f = append(dir, v)?;
    ack();
    f.sync_data()
}

/// The same, done right: `fdatasync`, then the ack.
fn ack_after_fdatasync(dir: &Path, v: u64, ack: &mut dyn FnMut()) -> io::Result<()> {
    let f = append(dir, v)?;
    f.sync_data()?;
    ack();
    Ok(())
}

/// The value a restart finds: the renamed file's, or the log's last whole record.
fn stored(dir: &Path) -> u64 {
    let read = |name: &str| match std::fs::read(dir.join(name)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read {name}: {e}"),
    };
    let value = read("value");
    let log = read("log");
    let last = |b: &[u8]| b.chunks_exact(8).last().map_or(0, |c| u64::from_le_bytes(c.try_into().expect("8 bytes")));
    last(&value).max(last(&log))
}

/// Runs `step` for values 1, 2, ... on a thread, cuts the power at a random operation, restarts,
/// and counts the rounds whose last acknowledged value was not found. Returns (rounds with an
/// acknowledgement, rounds that lost one).
fn lost_acks(step: Step, rounds: u64) -> (u64, u64) {
    let seed = common::seed();
    let mut rng = Rng::new(seed);
    let mut rig = Rig::new(LossMode::Strict);
    let dir = rig.disk.path().to_owned();
    // A durable starting point: an empty log under a durable name.
    File::create(dir.join("log")).and_then(|f| f.sync_all()).expect("create the log");
    sync_dir(&dir).expect("fsync the root");
    let (mut tested, mut lost) = (0, 0);
    let mut next = 1;
    for _ in 0..rounds {
        rig.disk.cut_after_ops(1 + rng.below(16));
        let acked = Arc::new(Mutex::new(0u64));
        let writer = {
            let (dir, acked) = (dir.clone(), Arc::clone(&acked));
            std::thread::spawn(move || {
                let mut v = next;
                // Runs until the cut makes a step fail.
                while step(&dir, v, &mut || *acked.lock().expect("acked") = v).is_ok() {
                    v += 1;
                }
            })
        };
        writer.join().expect("writer thread");
        rig.disk.power_cycle().expect("power cycle");
        let acked = *acked.lock().expect("acked");
        let found = stored(&dir);
        if acked >= next {
            tested += 1;
            if found < acked {
                lost += 1;
            }
        }
        next = acked.max(found) + 1;
    }
    eprintln!("powercut self-test: {tested} rounds with an acknowledgement, {lost} lost it (seed {seed})");
    (tested, lost)
}

#[test]
fn a_rename_without_a_directory_fsync_loses_acknowledged_data() {
    let (tested, lost) = lost_acks(rename_without_dir_fsync, 40);
    assert!(tested > 10, "too few rounds acknowledged anything: {tested}");
    assert!(lost > 0, "the harness did not catch a writer that never fsyncs the directory");
}

#[test]
fn an_acknowledgement_before_fdatasync_loses_acknowledged_data() {
    let (tested, lost) = lost_acks(ack_before_fdatasync, 40);
    assert!(tested > 10, "too few rounds acknowledged anything: {tested}");
    assert!(lost > 0, "the harness did not catch a writer that acknowledges before fdatasync");
}

#[test]
fn the_correct_writers_lose_nothing() {
    for step in [rename_with_dir_fsync as Step, ack_after_fdatasync] {
        let (tested, lost) = lost_acks(step, 40);
        assert!(tested > 10, "too few rounds acknowledged anything: {tested}");
        assert_eq!(lost, 0, "a correct writer lost acknowledged data");
    }
}

#[test]
fn the_exact_cases_end_as_a_disk_would_leave_them() {
    let mut rig = Rig::new(LossMode::Strict);
    let dir = rig.disk.path().to_owned();
    rename_with_dir_fsync(&dir, 1, &mut || {}).expect("durable 1");
    rename_without_dir_fsync(&dir, 2, &mut || {}).expect("rename 2");
    // Synced data under a name that was never synced: gone with its name.
    let mut orphan = File::create(dir.join("orphan")).expect("orphan");
    orphan.write_all(b"data").and_then(|()| orphan.sync_all()).expect("orphan synced");
    drop(orphan);
    // A durable file removed without a directory fsync comes back.
    File::create(dir.join("removed")).and_then(|f| f.sync_all()).expect("removed");
    sync_dir(&dir).expect("fsync dir");
    rename_without_dir_fsync(&dir, 3, &mut || {}).expect("rename 3");
    std::fs::remove_file(dir.join("removed")).expect("remove");
    File::create(dir.join("orphan2")).and_then(|mut f| f.write_all(b"x")).expect("orphan2");
    rig.disk.power_cycle().expect("power cycle");
    // The last directory fsync saw value 2 under "value" (renamed before it), "value.tmp" gone.
    assert_eq!(stored(&dir), 2);
    assert!(dir.join("removed").exists(), "an unsynced unlink survived the cut");
    assert!(dir.join("orphan").exists(), "a name made durable by a directory fsync was lost");
    assert!(!dir.join("orphan2").exists(), "a name never synced survived the cut");
    assert!(!dir.join("value.tmp").exists(), "a rename never synced was half undone");
    // Writes after the cut's instant never reach the backing folder.
    rig.disk.cut_now();
    let err = std::fs::write(dir.join("late"), b"late").expect_err("a write after the cut must fail");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    rig.disk.power_cycle().expect("power cycle");
    assert!(!dir.join("late").exists());
}

#[test]
fn a_torn_cut_keeps_some_unsynced_sectors_and_never_invents_bytes() {
    const SECTORS: usize = 16;
    let len = usize::try_from(SECTOR).expect("sector") * SECTORS;
    let (old, new) = (vec![b'o'; len], vec![b'n'; len]);
    let mut rig = Rig::new(LossMode::Torn { seed: common::seed() });
    let dir = rig.disk.path().to_owned();
    let (mut mixed, mut all_old, mut all_new) = (0, 0, 0);
    for _ in 0..40 {
        let path = dir.join("torn");
        std::fs::write(&path, &old).and_then(|()| File::open(&path)?.sync_all()).expect("old synced");
        sync_dir(&dir).expect("fsync dir");
        OpenOptions::new().write(true).open(&path).and_then(|mut f| f.write_all(&new)).expect("new, unsynced");
        rig.disk.power_cycle().expect("power cycle");
        let after = std::fs::read(&path).expect("read after the cut");
        assert_eq!(after.len(), len);
        let kept =
            after.chunks(usize::try_from(SECTOR).expect("sector")).filter(|s| s.iter().all(|&b| b == b'n')).count();
        for sector in after.chunks(usize::try_from(SECTOR).expect("sector")) {
            assert!(sector.iter().all(|&b| b == b'o') || sector.iter().all(|&b| b == b'n'), "a sector mixed bytes");
        }
        match kept {
            0 => all_old += 1,
            SECTORS => all_new += 1,
            _ => mixed += 1,
        }
    }
    eprintln!("torn cuts: {mixed} mixed, {all_old} all old, {all_new} all new");
    assert!(mixed > 30, "a torn cut should usually keep a part of 16 unsynced sectors: {mixed} of 40");
}

#[test]
fn a_mount_that_fails_is_an_error_that_says_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = session_powercut::Disk::mount(dir.path(), dir.path().join("missing"), LossMode::Strict)
        .expect_err("mounting on a missing folder must fail");
    let text = err.to_string();
    assert!(text.contains("cannot mount the power-cut FUSE filesystem") && text.contains("missing"), "{text}");
}
