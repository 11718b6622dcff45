//! Builds `<out>/report.md` and one SVG per scenario from criterion's results
//! (`<target>/criterion/**/new/estimates.json`) and the side facts the benches wrote.
//!
//! Usage: `bench-report [criterion dir] [out dir] [--quick]` (defaults: `<target>/criterion`,
//! `<target>/bench-report`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use session_bench::out_dir;
use session_bench::report::{collect, markdown, plots, Results};

fn main() -> Result<(), session_core::BoxError> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let quick = std::env::args().any(|a| a == "--quick");
    let out = args.get(1).map(PathBuf::from).unwrap_or_else(out_dir);
    let criterion = args.first().map(PathBuf::from).unwrap_or_else(|| out.join("../criterion"));
    let measurements = collect(&criterion)?;
    if measurements.is_empty() {
        return Err(format!("no criterion results under {}", criterion.display()).into());
    }
    let results = Results::new(&measurements);
    let mut facts = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(out.join("facts")) {
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                facts.insert(name, serde_json::from_slice(&std::fs::read(&path)?)?);
            }
        }
    }
    std::fs::create_dir_all(&out)?;
    let header = header(quick);
    std::fs::write(out.join("report.md"), markdown(&results, &facts, &header))?;
    let svgs = plots(&results, &out)?;
    eprintln!("report: {} ({} plots)", out.join("report.md").display(), svgs.len());
    Ok(())
}

fn header(quick: bool) -> String {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mode = if quick {
        "`cargo xtask bench --quick` (short measurements, N = 1,000 and 100,000)"
    } else {
        "`cargo xtask bench`"
    };
    format!(
        "Measured {date} on {cpu}, {cores} cores (shared with other jobs), with {mode}.\n\n\
         Ours: `file` (BinaryFileBackend: one append + fdatasync per change), `file_tmpfs` (the same on /dev/shm, where \
         fdatasync is free: its CPU side, beside `layer_binary_file_tmpfs`), `sqlite` (SqliteBackend, default \
         durability `PowerLoss`: WAL, fsync per commit), `sqlite_balanced` \
         (`Durability::Balanced`: no fsync for ordinary changes, fsync for critical ones), `libsql_remote` / `libsql_replica` \
         (LibSqlBackend against a local sqld on 127.0.0.1), `postgres` (PostgresBackend, a named session \
         in a local PostgreSQL server over its unix socket, fsync on), `redis` (RedisBackend, a named session in a \
         local redis-server over its unix socket, `appendfsync always`), `memory` (InMemoryBackend, direct), \
         `store+memory` (SessionStore over InMemoryBackend: apply, then flush until acknowledged), \
         `string` (StringSessionBackend; `string_export_import` uses `encode_full`/`decode`). \
         Every change goes through the public `SessionBackend::persist(changes, full)` and is acknowledged \
         before the next.\n\n\
         Anchors, in the same run: layer-client 0.5.0 as published (default features): `layer_binary_file`, \
         `layer_in_memory`, `layer_string`; its SQL backends do not compile as published, so SQLite is \
         compared with its BinaryFile and with grammers-session 0.11's `grammers_sqlite` (libSQL, its default \
         storage) and `grammers_memory`. layer-client persists a change the way its client does: the whole \
         session kept in memory and passed to `save` (its InMemory backend uses its `cache_peer` / \
         `apply_update_state` overrides). Neither layer's file nor its string backend fsyncs, and both keep \
         only the first 65,535 peers modulo 2^16 (34,464 of 100,000) when read back. grammers' SqliteSession \
         reads no peer on open (peers are read on use), so its `load` is an open; it has no full save or string.\n\n\
         Peers: ids and access hashes only (users, bots, megagroups, channels), which is all layer-client \
         stores, so every backend stores the same information. `cache_one_peer` and `flush_1000_peers` \
         add peers that are not cached yet; the session is trimmed back (untimed) every 100 peers so N stays \
         put. Raw fsync = append 4 KiB to a file + `fdatasync`."
    )
}
