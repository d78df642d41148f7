//! What the benchmarks share: settings from the environment, the machine description above
//! each table, percentiles and the markdown table.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

/// A number from the environment, or `default`; anything unparsable stops the benchmark.
pub fn number(var: &str, default: f64) -> f64 {
    match std::env::var(var) {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| panic!("{var} must be a number (got {s:?})")),
        Err(_) => default,
    }
}

/// A whitespace-separated list of whole numbers from the environment, or `default`.
pub fn counts(var: &str, default: &str) -> Vec<usize> {
    std::env::var(var)
        .unwrap_or_else(|_| default.to_owned())
        .split_whitespace()
        .map(|s| s.parse().unwrap_or_else(|_| panic!("{var}: whole numbers separated by blanks (got {s:?})")))
        .collect()
}

/// The 1, 5 and 15 minute load averages (other work on the machine skews every figure).
pub fn load_average() -> String {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let v: Vec<&str> = s.split_whitespace().take(3).collect();
    if v.len() == 3 {
        v.join(" ")
    } else {
        "?".to_owned()
    }
}

/// `N CPUs, <model>, Linux <release>`.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "?".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".to_owned());
    format!("{cpus} CPUs, {model}, Linux {kernel}")
}

/// The source tree: short commit, `+dirty` with uncommitted changes.
pub fn revision() -> String {
    let git = |args: &[&str]| std::process::Command::new("git").args(args).output().ok();
    let Some(out) = git(&["rev-parse", "--short", "HEAD"]).filter(|o| o.status.success()) else {
        return "tree ?".to_owned();
    };
    let rev = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let dirty = git(&["diff", "--quiet", "HEAD"]).is_some_and(|o| !o.status.success());
    format!("tree {rev}{}", if dirty { "+dirty" } else { "" })
}

/// The type and device of the filesystem holding `path` (the longest matching mount point).
pub fn filesystem(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() >= 3).then(|| (f[1].replace("\\040", " "), f[2].to_owned(), f[0].to_owned()))
        })
        .filter(|(mount, _, _)| path.starts_with(mount))
        .max_by_key(|(mount, _, _)| mount.len())
        .map(|(mount, fstype, dev)| format!("{fstype} on {dev}, mounted at {mount}"))
        .unwrap_or_else(|| "filesystem ?".to_owned())
}

/// Nearest-rank percentile (`q` in 0..=1) of sorted durations, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1].as_secs_f64() * 1e3)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The median of `v` (sorted in place); 0 when empty.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
