//! Builds the report from criterion's results: medians per scenario, backend and size, ratios to
//! the anchors, the targets checked, and SVG plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One benchmark's median.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// Scenario (criterion group), e.g. `cache_one_peer`.
    pub scenario: String,
    /// Backend (criterion function id), e.g. `sqlite` or `layer_binary_file`.
    pub backend: String,
    /// Cached peers.
    pub n: u64,
    /// Median time per iteration, in nanoseconds.
    pub median_ns: f64,
}

#[derive(Deserialize)]
struct BenchmarkJson {
    group_id: String,
    function_id: Option<String>,
    value_str: Option<String>,
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
}

#[derive(Deserialize)]
struct EstimatesJson {
    median: Estimate,
}

/// Reads every `<criterion_dir>/**/new/{benchmark,estimates}.json`.
pub fn collect(criterion_dir: &Path) -> std::io::Result<Vec<Measurement>> {
    let mut out = Vec::new();
    let mut stack = vec![criterion_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry?.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") {
                if let Some(m) = read_one(&path) {
                    out.push(m);
                }
            } else if path.file_name().is_some_and(|n| n != "report" && n != "base" && n != "change") {
                stack.push(path);
            }
        }
    }
    out.sort_by(|a, b| (&a.scenario, &a.backend, a.n).cmp(&(&b.scenario, &b.backend, b.n)));
    Ok(out)
}

fn read_one(new_dir: &Path) -> Option<Measurement> {
    let bench: BenchmarkJson = serde_json::from_slice(&std::fs::read(new_dir.join("benchmark.json")).ok()?).ok()?;
    let est: EstimatesJson = serde_json::from_slice(&std::fs::read(new_dir.join("estimates.json")).ok()?).ok()?;
    Some(Measurement {
        scenario: bench.group_id,
        backend: bench.function_id?,
        n: bench.value_str?.parse().ok()?,
        median_ns: est.median.point_estimate,
    })
}

/// Medians indexed by scenario, backend and size.
#[derive(Clone, Debug, Default)]
pub struct Results {
    map: BTreeMap<String, BTreeMap<String, BTreeMap<u64, f64>>>,
}

impl Results {
    /// Indexes measurements (a later duplicate replaces an earlier one).
    pub fn new(ms: &[Measurement]) -> Self {
        let mut map: BTreeMap<String, BTreeMap<String, BTreeMap<u64, f64>>> = BTreeMap::new();
        for m in ms {
            map.entry(m.scenario.clone()).or_default().entry(m.backend.clone()).or_default().insert(m.n, m.median_ns);
        }
        Self { map }
    }

    /// A median in nanoseconds.
    pub fn get(&self, scenario: &str, backend: &str, n: u64) -> Option<f64> {
        self.map.get(scenario)?.get(backend)?.get(&n).copied()
    }

    /// Scenarios measured.
    pub fn scenarios(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// Backends measured in a scenario, ours first, then anchors.
    pub fn backends(&self, scenario: &str) -> Vec<&str> {
        let mut v: Vec<&str> =
            self.map.get(scenario).map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
        v.sort_by_key(|b| (is_anchor(b), backend_rank(b), b.to_string()));
        v
    }

    /// Sizes measured in a scenario.
    pub fn sizes(&self, scenario: &str) -> Vec<u64> {
        let mut v: Vec<u64> =
            self.map.get(scenario).map(|m| m.values().flat_map(|s| s.keys().copied()).collect()).unwrap_or_default();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Every series of a scenario: backend → (n, median ns).
    pub fn series(&self, scenario: &str) -> Vec<(String, Vec<(u64, f64)>)> {
        self.backends(scenario)
            .into_iter()
            .filter_map(|b| {
                let pts = self.map.get(scenario)?.get(b)?.iter().map(|(n, v)| (*n, *v)).collect();
                Some((b.to_owned(), pts))
            })
            .collect()
    }
}

/// True for the anchors' series.
pub fn is_anchor(backend: &str) -> bool {
    backend.starts_with("layer_") || backend.starts_with("grammers_") || backend.starts_with("raw_")
}

fn backend_rank(b: &str) -> u8 {
    match b {
        "file" => 0,
        "file_sealed" => 0,
        "file_tmpfs" => 1,
        "sqlite_sealed" => 1,
        "sqlite" => 1,
        "sqlite_paired" | "sqlite_sealed_paired" | "sqlite_tmpfs" | "sqlite_sealed_tmpfs" => 1,
        "sqlite_balanced" => 1,
        "libsql_remote" => 2,
        "libsql_replica" => 3,
        "postgres" | "redis" => 3,
        "memory" => 4,
        "store+memory" => 5,
        "string" => 6,
        _ => 9,
    }
}

/// Human-readable duration.
pub fn fmt_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// The anchor each of our backends is compared with in a scenario (the closest thing the anchor
/// library offers).
pub fn anchor_for(scenario: &str, backend: &str) -> Option<&'static str> {
    match (scenario, backend) {
        ("durable_flush", _) => Some("raw_fsync_4k"),
        // Sealed rows against the same backend in clear: the ratio is the cost of encryption.
        (_, "file_sealed") => Some("file"),
        (_, "sqlite_sealed") => Some("sqlite"),
        (_, "sqlite_sealed_paired") => Some("sqlite_paired"),
        (_, "sqlite_sealed_tmpfs") => Some("sqlite_tmpfs"),
        (_, "sqlite_tmpfs") => Some("layer_binary_file_tmpfs"),
        (_, "file") => Some("layer_binary_file"),
        (_, "file_tmpfs") => Some("layer_binary_file_tmpfs"),
        (_, "sqlite_balanced") => Some("layer_binary_file"),
        (_, "sqlite" | "sqlite_paired" | "libsql_remote" | "libsql_replica" | "postgres" | "redis") => {
            Some("layer_binary_file")
        }
        (_, "memory" | "store+memory") => Some("layer_in_memory"),
        (_, "string") => Some("layer_string"),
        _ => None,
    }
}

/// Scenario titles, in report order.
pub const SCENARIOS: [(&str, &str); 7] = [
    ("cache_one_peer", "Cache one new peer (persisted)"),
    ("flush_1000_peers", "1,000 new peers in one flush (per flush)"),
    ("update_state", "One update-state change (persisted)"),
    ("full_save", "Full save"),
    ("load", "Load (open + read, as at startup)"),
    ("string_export_import", "String export + import"),
    ("durable_flush", "Durable flush of one change vs raw 4 KiB append + fdatasync"),
];

/// Issue 19's targets: (scenario, most sealed / plain may be) for encryption at rest.
pub const SEALED_TARGETS: [(&str, f64); 3] = [("cache_one_peer", 1.3), ("flush_1000_peers", 1.3), ("load", 1.5)];

/// The (plain, sealed) rows the encryption targets compare by the ratio of their medians.
pub const SEALED_PAIRS: [(&str, &str); 2] = [("file", "file_sealed"), ("sqlite", "sqlite_sealed")];

/// The (plain, sealed) rows run paired (the bench's `PAIRED`: both sides in the same iterations,
/// alternating which goes first), whose targets are checked by their [`PairedRatio`]: SQLite
/// on disk, and SQLite on tmpfs (no fsync, so the ratio is the cipher's cost over the CPU side).
pub const SEALED_PAIRED: [(&str, &str); 2] =
    [("sqlite_paired", "sqlite_sealed_paired"), ("sqlite_tmpfs", "sqlite_sealed_tmpfs")];

/// The statistic of a paired row: each criterion sample of a pair's ids times both sides over
/// the same iterations, so each gives one sealed / plain ratio (sealed total / plain total)
/// measured in one window of time; this is the median of those ratios (with quartiles, linear
/// between ranks). Drift of the machine between samples moves both sides of a ratio alike,
/// where a ratio of two medians taken seconds apart moves with it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairedRatio {
    /// Median of the per-sample ratios.
    pub median: f64,
    /// First quartile.
    pub q1: f64,
    /// Third quartile.
    pub q3: f64,
    /// How many samples.
    pub samples: usize,
}

impl PairedRatio {
    /// The statistic of `ratios` (non-finite ones, from a sample that timed nothing, left out);
    /// `None` if none is left.
    pub fn of(ratios: &[f64]) -> Option<PairedRatio> {
        let mut v: Vec<f64> = ratios.iter().copied().filter(|r| r.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        // The `quarters`/4 quantile: rank (len - 1) * quarters / 4, linear between ranks.
        let at = |quarters: usize| {
            let h = (v.len() - 1) * quarters;
            let (lo, frac) = (h / 4, (h % 4) as f64 / 4.0);
            let hi = (lo + 1).min(v.len() - 1);
            v[lo] + frac * (v[hi] - v[lo])
        };
        Some(PairedRatio { median: at(2), q1: at(1), q3: at(3), samples: v.len() })
    }

    /// As the bench writes it in its fact.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "median": self.median, "q1": self.q1, "q3": self.q3, "samples": self.samples })
    }

    /// Read back from [`PairedRatio::to_json`].
    pub fn from_json(v: &serde_json::Value) -> Option<PairedRatio> {
        let f = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
        Some(PairedRatio {
            median: f("median")?,
            q1: f("q1")?,
            q3: f("q3")?,
            samples: usize::try_from(v.get("samples")?.as_u64()?).ok()?,
        })
    }
}

/// The fact the bench writes a scenario's [`PairedRatio`]s into.
pub fn paired_fact_name(scenario: &str) -> String {
    format!("sealed_paired_{scenario}")
}

/// The key of one pair's [`PairedRatio`] at `n` cached peers in [`paired_fact_name`]'s fact.
pub fn paired_key(plain: &str, sealed: &str, n: u64) -> String {
    format!("{sealed}/{plain}/{n}")
}

/// The [`PairedRatio`] the bench recorded for a pair, if any.
pub fn paired_ratio(
    facts: &BTreeMap<String, serde_json::Value>,
    scenario: &str,
    plain: &str,
    sealed: &str,
    n: u64,
) -> Option<PairedRatio> {
    PairedRatio::from_json(facts.get(&paired_fact_name(scenario))?.get(paired_key(plain, sealed, n))?)
}

/// One line of the targets checklist.
#[derive(Clone, Debug)]
pub struct Check {
    /// What is checked.
    pub target: String,
    /// `Some(true)`: met; `Some(false)`: missed; `None`: not measured.
    pub pass: Option<bool>,
    /// The numbers behind it.
    pub detail: String,
}

/// Checks the issue's targets against the results. `facts` holds the side measurements
/// (memory, peers kept) by name.
pub fn checks(r: &Results, facts: &BTreeMap<String, serde_json::Value>) -> Vec<Check> {
    let mut out = Vec::new();
    let (small, big) = (1_000u64, 100_000u64);
    for scenario in ["cache_one_peer", "update_state"] {
        for b in [
            "file",
            "file_tmpfs",
            "sqlite",
            "sqlite_balanced",
            "memory",
            "store+memory",
            "string",
            "libsql_remote",
            "libsql_replica",
            "postgres",
            "redis",
        ] {
            let (Some(a), Some(z)) = (r.get(scenario, b, small), r.get(scenario, b, big)) else {
                if r.backends(scenario).contains(&b) || ["file", "sqlite", "memory", "string"].contains(&b) {
                    out.push(Check {
                        target: format!("{scenario}: `{b}` flat in N (100k within 1.5x of 1k)"),
                        pass: None,
                        detail: "not measured".into(),
                    });
                }
                continue;
            };
            out.push(Check {
                target: format!("{scenario}: `{b}` flat in N (100k within 1.5x of 1k)"),
                pass: Some(z <= 1.5 * a),
                detail: format!("{} at 1k, {} at 100k: {:.2}x", fmt_ns(a), fmt_ns(z), z / a),
            });
        }
    }
    out.push(ratio_check(
        r,
        "cache_one_peer",
        "file",
        "layer_binary_file",
        big,
        30.0,
        "file backend ≥30x faster than layer's BinaryFile per new peer at 100k",
    ));
    out.push(ratio_check(
        r,
        "cache_one_peer",
        "file_tmpfs",
        "layer_binary_file_tmpfs",
        big,
        30.0,
        "same, both on tmpfs (fdatasync free: the CPU side of each)",
    ));
    // Both levels: the default (`sqlite`, fsync per commit) and `sqlite_balanced` (fsync only
    // for critical changes), since the anchors fsync nothing.
    for b in ["sqlite", "sqlite_balanced"] {
        for anchor in ["layer_binary_file", "grammers_sqlite"] {
            out.push(ratio_check(
                r,
                "cache_one_peer",
                b,
                anchor,
                big,
                1.0,
                &format!("`{b}` at least as fast as `{anchor}` per new peer at 100k"),
            ));
        }
    }
    // "At least 20x cheaper per peer in 1,000-peer flushes": our cost per peer inside a flush of
    // 1,000, against the anchor's cost per peer when it persists peers one at a time (layer-client
    // has no batch), and against the anchor's own 1,000-peer flush where it has one.
    for anchor in ["layer_binary_file", "grammers_sqlite"] {
        let target =
            format!("SQLite per peer in a 1,000-peer flush ≥20x cheaper than `{anchor}` per new peer, at 100k");
        out.push(match (r.get("flush_1000_peers", "sqlite", big), r.get("cache_one_peer", anchor, big)) {
            (Some(a), Some(b)) => {
                let per_peer = a / 1000.0;
                Check {
                    target,
                    pass: Some(per_peer * 20.0 <= b),
                    detail: format!("{} per peer vs {}: {:.0}x cheaper", fmt_ns(per_peer), fmt_ns(b), b / per_peer),
                }
            }
            _ => Check { target, pass: None, detail: "not measured".into() },
        });
    }
    for anchor in ["layer_binary_file", "grammers_sqlite"] {
        out.push(ratio_check(
            r,
            "flush_1000_peers",
            "sqlite",
            anchor,
            big,
            20.0,
            &format!("SQLite 1,000-peer flush ≥20x cheaper than `{anchor}`'s own 1,000-peer flush, at 100k (stricter reading)"),
        ));
    }
    // Issue 18: PostgreSQL's cost per peer in a 1,000-peer flush within 2x of SQLite's (both
    // durable per commit).
    for n in r.sizes("flush_1000_peers") {
        let target = format!("PostgreSQL per peer in a 1,000-peer flush within 2x of SQLite's, at N={n}");
        out.push(match (r.get("flush_1000_peers", "postgres", n), r.get("flush_1000_peers", "sqlite", n)) {
            (Some(pg), Some(sqlite)) => Check {
                target,
                pass: Some(pg <= 2.0 * sqlite),
                detail: format!("{} vs {} per peer: {:.2}x", fmt_ns(pg / 1000.0), fmt_ns(sqlite / 1000.0), pg / sqlite),
            },
            _ => Check { target, pass: None, detail: "not measured".into() },
        });
    }
    // Issue 16: the lease's fence costs a write at most 1.2x (the same one-peer persist on
    // libSQL remote with and without the fence statement, alternated in one bench).
    for n in r.sizes("fenced_persist") {
        let target = format!("libSQL remote: a fenced persist within 1.2x of an unfenced one, at N={n}");
        out.push(
            match (
                r.get("fenced_persist", "libsql_remote_fenced", n),
                r.get("fenced_persist", "libsql_remote_unfenced", n),
            ) {
                (Some(f), Some(u)) => Check {
                    target,
                    pass: Some(f <= 1.2 * u),
                    detail: format!("{} vs {}: {:.2}x", fmt_ns(f), fmt_ns(u), f / u),
                },
                _ => Check { target, pass: None, detail: "not measured".into() },
            },
        );
    }
    // Issue 19: encryption at rest costs at most 1.3x per new peer and per 1,000-peer flush, and
    // at most 1.5x on a load of 100,000 peers (on the file and SQLite backends).
    for (scenario, factor) in SEALED_TARGETS {
        let sizes: Vec<u64> = if scenario == "load" {
            vec![big]
        } else {
            let mut sizes = r.sizes(scenario);
            // Sizes only a paired fact holds (its rows' medians missing from the results).
            for (plain, sealed) in SEALED_PAIRED {
                for n in [small, big] {
                    if paired_ratio(facts, scenario, plain, sealed, n).is_some() && !sizes.contains(&n) {
                        sizes.push(n);
                    }
                }
            }
            sizes.sort_unstable();
            sizes
        };
        for n in sizes {
            for (plain, sealed) in SEALED_PAIRS {
                let target = format!("{scenario}: `{sealed}` within {factor}x of `{plain}`, at N={n}");
                out.push(match (r.get(scenario, sealed, n), r.get(scenario, plain, n)) {
                    (Some(s), Some(p)) => Check {
                        target,
                        pass: Some(s <= factor * p),
                        detail: format!("ratio of medians, {} vs {}: {:.2}x", fmt_ns(s), fmt_ns(p), s / p),
                    },
                    _ => Check { target, pass: None, detail: "not measured".into() },
                });
            }
            for (plain, sealed) in SEALED_PAIRED {
                let target =
                    format!("{scenario}: `{sealed}` within {factor}x of `{plain}`, at N={n} (paired, median ratio)");
                out.push(match paired_ratio(facts, scenario, plain, sealed, n) {
                    Some(p) => Check {
                        target,
                        pass: Some(p.median <= factor),
                        detail: format!(
                            "median of {} per-sample sealed / plain ratios {:.2}x (quartiles {:.2} / {:.2}){}",
                            p.samples,
                            p.median,
                            p.q1,
                            p.q3,
                            match (r.get(scenario, sealed, n), r.get(scenario, plain, n)) {
                                (Some(s), Some(p)) => format!("; medians {} vs {}", fmt_ns(s), fmt_ns(p)),
                                _ => String::new(),
                            }
                        ),
                    },
                    None => Check { target, pass: None, detail: "not measured".into() },
                });
            }
        }
    }
    for b in ["file", "sqlite", "sqlite_balanced"] {
        let raw: Vec<f64> =
            r.sizes("durable_flush").iter().filter_map(|n| r.get("durable_flush", "raw_fsync_4k", *n)).collect();
        let ours: Vec<f64> = r.sizes("durable_flush").iter().filter_map(|n| r.get("durable_flush", b, *n)).collect();
        if raw.is_empty() || ours.is_empty() {
            out.push(Check {
                target: format!("durable flush of one change (`{b}`) within 1.5x of a raw fsync"),
                pass: None,
                detail: "not measured".into(),
            });
            continue;
        }
        let raw_med = median(&raw);
        let worst = ours.iter().copied().fold(0.0, f64::max);
        out.push(Check {
            target: format!("durable flush of one change (`{b}`) within 1.5x of a raw fsync"),
            pass: Some(worst <= 1.5 * raw_med),
            detail: format!(
                "worst {} vs raw 4 KiB fdatasync {}: {:.2}x",
                fmt_ns(worst),
                fmt_ns(raw_med),
                worst / raw_med
            ),
        });
    }
    match facts.get("memory").and_then(|m| m.get("backends")).and_then(|b| b.as_array()) {
        Some(list) => {
            for m in list {
                let name = m.get("backend").and_then(|v| v.as_str()).unwrap_or("?");
                let secs = m.get("load_seconds").and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN);
                let bpp = m.get("rss_bytes_per_peer").and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN);
                let peers = m.get("peers").and_then(serde_json::Value::as_u64).unwrap_or(0);
                out.push(Check {
                    target: format!("`{name}`: 1,000,000 peers load in under 1 s using under 80 bytes of RAM per peer"),
                    pass: Some(secs < 1.0 && bpp < 80.0 && peers == 1_000_000),
                    detail: format!("{secs:.3} s, {bpp:.1} B/peer (RSS delta), {peers} peers loaded"),
                });
            }
        }
        None => out.push(Check {
            target: "1,000,000 peers load in under 1 s using under 80 bytes of RAM per peer".into(),
            pass: None,
            detail: "not measured".into(),
        }),
    }
    let kept = facts.get("string_peers_kept");
    let ours_kept = kept.and_then(|k| k.get(format!("string/{big}"))).and_then(serde_json::Value::as_u64);
    let layer_kept = kept.and_then(|k| k.get(format!("layer_string/{big}"))).and_then(serde_json::Value::as_u64);
    let mut c = ratio_check(
        r,
        "string_export_import",
        "string",
        "layer_string",
        big,
        1.0,
        "string export+import of 100,000 peers no slower than layer's, keeping every peer",
    );
    if let Some(p) = c.pass {
        c.pass = Some(p && ours_kept == Some(big));
    }
    let _ = write!(
        c.detail,
        "; peers kept: ours {}, layer {}",
        ours_kept.map_or("?".into(), |v| v.to_string()),
        layer_kept.map_or("?".into(), |v| v.to_string())
    );
    out.push(c);
    out
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn ratio_check(r: &Results, scenario: &str, ours: &str, anchor: &str, n: u64, factor: f64, target: &str) -> Check {
    match (r.get(scenario, ours, n), r.get(scenario, anchor, n)) {
        (Some(a), Some(b)) => Check {
            target: target.to_owned(),
            pass: Some(a * factor <= b),
            detail: format!("{} vs {}: {:.1}x faster", fmt_ns(a), fmt_ns(b), b / a),
        },
        _ => Check { target: target.to_owned(), pass: None, detail: "not measured".into() },
    }
}

/// The markdown report.
pub fn markdown(r: &Results, facts: &BTreeMap<String, serde_json::Value>, header: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Session backend benchmarks\n\n{header}\n");
    let _ = writeln!(s, "## Targets\n\n| Target | Result | Numbers |\n|---|---|---|");
    for c in checks(r, facts) {
        let res = match c.pass {
            Some(true) => "PASS",
            Some(false) => "**FAIL**",
            None => "not measured",
        };
        let _ = writeln!(s, "| {} | {res} | {} |", c.target, c.detail);
    }
    let _ = writeln!(s);
    for (scenario, title) in SCENARIOS {
        if !r.scenarios().any(|x| x == scenario) {
            continue;
        }
        let sizes = r.sizes(scenario);
        let _ = writeln!(s, "## {title}\n\nMedian per operation; ratio = ours / anchor (below 1: ours is faster). Plot: `{scenario}.svg`.\n");
        let _ = write!(s, "| Backend |");
        for n in &sizes {
            let _ = write!(s, " N={n} |");
        }
        let _ = write!(s, " anchor | ratio at each N |\n|---|");
        for _ in &sizes {
            let _ = write!(s, "---|");
        }
        let _ = writeln!(s, "---|---|");
        for b in r.backends(scenario) {
            let _ = write!(s, "| `{b}` |");
            for n in &sizes {
                let _ = write!(s, " {} |", r.get(scenario, b, *n).map_or("-".into(), fmt_ns));
            }
            match anchor_for(scenario, b).filter(|_| !is_anchor(b)) {
                Some(a) => {
                    let ratios: Vec<String> = sizes
                        .iter()
                        .map(|n| match (r.get(scenario, b, *n), r.get(scenario, a, *n)) {
                            (Some(x), Some(y)) => format!("{:.3}", x / y),
                            _ => "-".into(),
                        })
                        .collect();
                    let _ = writeln!(s, " `{a}` | {} |", ratios.join(" / "));
                }
                None => {
                    let _ = writeln!(s, " | |");
                }
            }
        }
        if scenario == "flush_1000_peers" {
            let _ = writeln!(s, "\nPer peer at N=100000: {}", per_peer_line(r, scenario, 100_000));
        }
        let _ = writeln!(s);
    }
    if !facts.is_empty() {
        let _ = writeln!(s, "## Side measurements\n");
        for (k, v) in facts {
            let _ = writeln!(s, "- `{k}`: `{v}`");
        }
    }
    s
}

fn per_peer_line(r: &Results, scenario: &str, n: u64) -> String {
    r.backends(scenario)
        .iter()
        .filter_map(|b| r.get(scenario, b, n).map(|v| format!("`{b}` {}", fmt_ns(v / 1000.0))))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Draws one SVG per scenario (log-log: median against N, one line per backend) into `dir`.
pub fn plots(r: &Results, dir: &Path) -> Result<Vec<PathBuf>, String> {
    use plotters::prelude::*;
    let mut written = Vec::new();
    for (scenario, title) in SCENARIOS {
        let series = r.series(scenario);
        if series.is_empty() {
            continue;
        }
        let path = dir.join(format!("{scenario}.svg"));
        let (mut lo_n, mut hi_n, mut lo_t, mut hi_t) = (f64::MAX, 0f64, f64::MAX, 0f64);
        for (_, pts) in &series {
            for (n, t) in pts {
                let n = *n as f64;
                lo_n = lo_n.min(n);
                hi_n = hi_n.max(n);
                lo_t = lo_t.min(*t / 1e3);
                hi_t = hi_t.max(*t / 1e3);
            }
        }
        let root = SVGBackend::new(&path, (900, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((lo_n * 0.8..hi_n * 1.25).log_scale(), (lo_t * 0.5..hi_t * 2.0).log_scale())
            .map_err(|e| e.to_string())?;
        chart.configure_mesh().x_desc("cached peers (N)").y_desc("median (µs)").draw().map_err(|e| e.to_string())?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let data: Vec<(f64, f64)> = pts.iter().map(|(n, t)| (*n as f64, *t / 1e3)).collect();
            let style = if is_anchor(name) { color.stroke_width(1) } else { color.stroke_width(3) };
            chart
                .draw_series(LineSeries::new(data.clone(), style))
                .map_err(|e| e.to_string())?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart.draw_series(data.iter().map(|p| Circle::new(*p, 3, color.filled()))).map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
        drop(chart);
        drop(root);
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(scenario: &str, backend: &str, n: u64, ns: f64) -> Measurement {
        Measurement { scenario: scenario.into(), backend: backend.into(), n, median_ns: ns }
    }

    #[test]
    fn flatness_and_ratio_checks_can_fail() {
        let r = Results::new(&[
            m("cache_one_peer", "file", 1_000, 10_000.0),
            m("cache_one_peer", "file", 100_000, 20_000.0),
            m("cache_one_peer", "layer_binary_file", 100_000, 100_000.0),
        ]);
        let c = checks(&r, &BTreeMap::new());
        let flat = c.iter().find(|c| c.target.starts_with("cache_one_peer: `file`")).expect("flat check");
        assert_eq!(flat.pass, Some(false));
        let ratio = c.iter().find(|c| c.target.starts_with("file backend ≥30x")).expect("ratio check");
        assert_eq!(ratio.pass, Some(false), "5x is not 30x");
        let md = markdown(&r, &BTreeMap::new(), "test");
        assert!(md.contains("| `file` | 10.00 µs | 20.00 µs | `layer_binary_file` | - / 0.200 |"), "{md}");
    }

    #[test]
    fn postgres_flush_check_passes_within_2x_of_sqlite_and_fails_beyond() {
        let r = Results::new(&[
            m("flush_1000_peers", "sqlite", 1_000, 1_000_000.0),
            m("flush_1000_peers", "postgres", 1_000, 1_900_000.0),
            m("flush_1000_peers", "sqlite", 100_000, 1_000_000.0),
            m("flush_1000_peers", "postgres", 100_000, 2_100_000.0),
        ]);
        let c = checks(&r, &BTreeMap::new());
        let at = |n: u64| {
            let target = format!("PostgreSQL per peer in a 1,000-peer flush within 2x of SQLite's, at N={n}");
            c.iter().find(|c| c.target == target).expect("postgres check").clone()
        };
        assert_eq!(at(1_000).pass, Some(true), "{:?}", at(1_000));
        assert_eq!(at(100_000).pass, Some(false), "{:?}", at(100_000));
        assert!(at(1_000).detail.contains("1.90 µs vs 1.00 µs per peer: 1.90x"), "{:?}", at(1_000));
    }

    #[test]
    fn fence_check_passes_within_1_2x_of_the_unfenced_persist_and_fails_beyond() {
        let r = Results::new(&[
            m("fenced_persist", "libsql_remote_unfenced", 1_000, 1_000_000.0),
            m("fenced_persist", "libsql_remote_fenced", 1_000, 1_190_000.0),
            m("fenced_persist", "libsql_remote_unfenced", 100_000, 1_000_000.0),
            m("fenced_persist", "libsql_remote_fenced", 100_000, 1_210_000.0),
        ]);
        let c = checks(&r, &BTreeMap::new());
        let at = |n: u64| {
            let target = format!("libSQL remote: a fenced persist within 1.2x of an unfenced one, at N={n}");
            c.iter().find(|c| c.target == target).expect("fence check").clone()
        };
        assert_eq!(at(1_000).pass, Some(true), "{:?}", at(1_000));
        assert_eq!(at(100_000).pass, Some(false), "{:?}", at(100_000));
        assert!(at(1_000).detail.ends_with("1.19x"), "{:?}", at(1_000));
    }

    #[test]
    fn sealed_checks_compare_with_the_plain_row_of_the_same_run() {
        let r = Results::new(&[
            m("cache_one_peer", "sqlite", 1_000, 100_000.0),
            m("cache_one_peer", "sqlite_sealed", 1_000, 129_000.0),
            m("flush_1000_peers", "sqlite", 1_000, 1_000_000.0),
            m("flush_1000_peers", "sqlite_sealed", 1_000, 1_310_000.0),
            m("load", "file", 100_000, 10_000_000.0),
            m("load", "file_sealed", 100_000, 14_000_000.0),
        ]);
        let c = checks(&r, &BTreeMap::new());
        let find = |t: &str| c.iter().find(|c| c.target == t).unwrap_or_else(|| panic!("{t}: {c:?}")).clone();
        assert_eq!(find("cache_one_peer: `sqlite_sealed` within 1.3x of `sqlite`, at N=1000").pass, Some(true));
        let flush = find("flush_1000_peers: `sqlite_sealed` within 1.3x of `sqlite`, at N=1000");
        assert_eq!(flush.pass, Some(false), "{flush:?}");
        assert!(flush.detail.ends_with("1.31x"), "{flush:?}");
        assert_eq!(find("load: `file_sealed` within 1.5x of `file`, at N=100000").pass, Some(true));
        assert_eq!(find("load: `sqlite_sealed` within 1.5x of `sqlite`, at N=100000").pass, None);
        let md = markdown(&r, &BTreeMap::new(), "test");
        assert!(md.contains("| `sqlite_sealed` | 1.31 ms | `sqlite` | 1.310 |"), "{md}");
    }

    #[test]
    fn the_paired_statistic_is_the_median_of_the_per_sample_ratios() {
        let p = PairedRatio::of(&[1.4, 1.0, f64::NAN, 1.2, 1.1, f64::INFINITY, 3.0]).expect("some");
        // NaN and infinity (a sample that timed nothing) are left out: 1.0, 1.1, 1.2, 1.4, 3.0.
        assert_eq!(p.samples, 5);
        assert!((p.median - 1.2).abs() < 1e-12, "{p:?}");
        assert!((p.q1 - 1.1).abs() < 1e-12 && (p.q3 - 1.4).abs() < 1e-12, "{p:?}");
        // Even counts: between the middle two.
        let even = PairedRatio::of(&[1.0, 2.0, 4.0, 3.0]).expect("some");
        assert!((even.median - 2.5).abs() < 1e-12 && (even.q1 - 1.75).abs() < 1e-12, "{even:?}");
        assert_eq!(PairedRatio::of(&[f64::NAN]), None);
        assert_eq!(PairedRatio::from_json(&p.to_json()), Some(p));
    }

    #[test]
    fn paired_sealed_checks_read_the_median_ratio_not_the_ratio_of_medians() {
        let facts: BTreeMap<String, serde_json::Value> = [
            (
                paired_fact_name("flush_1000_peers"),
                serde_json::json!({
                    paired_key("sqlite_tmpfs", "sqlite_sealed_tmpfs", 1_000):
                        PairedRatio { median: 1.29, q1: 1.2, q3: 1.4, samples: 20 }.to_json(),
                    paired_key("sqlite_tmpfs", "sqlite_sealed_tmpfs", 100_000):
                        PairedRatio { median: 1.31, q1: 1.2, q3: 1.4, samples: 20 }.to_json(),
                }),
            ),
            (
                paired_fact_name("load"),
                serde_json::json!({
                    paired_key("sqlite_paired", "sqlite_sealed_paired", 100_000):
                        PairedRatio { median: 1.6, q1: 1.5, q3: 1.7, samples: 20 }.to_json(),
                }),
            ),
        ]
        .into_iter()
        .collect();
        // The medians alone would say 2x at 1,000: the check goes by the paired statistic.
        let r = Results::new(&[
            m("flush_1000_peers", "sqlite_tmpfs", 1_000, 1_000_000.0),
            m("flush_1000_peers", "sqlite_sealed_tmpfs", 1_000, 2_000_000.0),
        ]);
        let c = checks(&r, &facts);
        let find = |t: &str| c.iter().find(|c| c.target == t).unwrap_or_else(|| panic!("{t}: {c:?}")).clone();
        let small = find(
            "flush_1000_peers: `sqlite_sealed_tmpfs` within 1.3x of `sqlite_tmpfs`, at N=1000 (paired, median ratio)",
        );
        assert_eq!(small.pass, Some(true), "{small:?}");
        assert!(small.detail.starts_with("median of 20 per-sample sealed / plain ratios 1.29x"), "{small:?}");
        assert!(small.detail.ends_with("medians 2.00 ms vs 1.00 ms"), "{small:?}");
        let big = find(
            "flush_1000_peers: `sqlite_sealed_tmpfs` within 1.3x of `sqlite_tmpfs`, at N=100000 (paired, median ratio)",
        );
        assert_eq!(big.pass, Some(false), "{big:?}");
        let load =
            find("load: `sqlite_sealed_paired` within 1.5x of `sqlite_paired`, at N=100000 (paired, median ratio)");
        assert_eq!(load.pass, Some(false), "{load:?}");
        let missing =
            find("load: `sqlite_sealed_tmpfs` within 1.5x of `sqlite_tmpfs`, at N=100000 (paired, median ratio)");
        assert_eq!(missing.pass, None, "{missing:?}");
    }

    #[test]
    fn reads_criterion_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let new = dir.path().join("load/sqlite/1000/new");
        std::fs::create_dir_all(&new).expect("mkdir");
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"group_id":"load","function_id":"sqlite","value_str":"1000","throughput":null,"full_id":"load/sqlite/1000","directory_name":"load/sqlite/1000","title":"load/sqlite/1000"}"#,
        )
        .expect("write");
        std::fs::write(
            new.join("estimates.json"),
            r#"{"mean":{"point_estimate":2.0},"median":{"point_estimate":1500.0,"standard_error":1.0}}"#,
        )
        .expect("write");
        let ms = collect(dir.path()).expect("collect");
        assert_eq!(ms, vec![m("load", "sqlite", 1000, 1500.0)]);
    }
}
