//! The run directory: `target/cluster-tests/<seed>-<unix time>/` under the repository root (or
//! under `$MUSTER_CT_REPORTS`), holding `history.jsonl`, `nemesis.jsonl` and `verdicts.json`
//! ([`write`]), `leaders.jsonl` (the leadership poller's samples) and `timeline.html` (the run's
//! picture, see [`crate::timeline`]) ([`write_timeline`]), and the one-line summary printed at
//! the end of a run.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::check::Verdict;
use crate::history::{write_jsonl, Op, Outcome};
use crate::leaders::Sample;
use crate::nemesis::Event;
use crate::timeline;

/// Where run directories go.
pub fn reports_root() -> PathBuf {
    match std::env::var_os("MUSTER_CT_REPORTS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target").join("cluster-tests"),
    }
}

/// Creates `<root>/<seed>-<unix seconds>/` (a user-visible name, hence wall time).
pub fn run_dir(seed: u64) -> Result<PathBuf> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let dir = reports_root().join(format!("{seed}-{now}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Writes the three files of a run.
pub fn write(dir: &Path, ops: &[Op], timeline: &[Event], verdicts: &[Verdict]) -> Result<()> {
    write_jsonl(&dir.join("history.jsonl"), ops)?;
    write_jsonl(&dir.join("nemesis.jsonl"), timeline)?;
    std::fs::write(dir.join("verdicts.json"), serde_json::to_vec_pretty(verdicts)?)?;
    Ok(())
}

/// Writes `leaders.jsonl` and `timeline.html` (titled `title`) into `dir`.
pub fn write_timeline(
    dir: &Path,
    title: &str,
    ops: &[Op],
    faults: &[Event],
    leaders: &[Sample],
    verdicts: &[Verdict],
) -> Result<()> {
    write_jsonl(&dir.join("leaders.jsonl"), leaders)?;
    let page = timeline::html(title, ops, faults, leaders, verdicts);
    let path = dir.join("timeline.html");
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `PASS seed=… ops=… (ok/fail/unknown) faults=… checkers=a:ok,b:FAIL … dir=…`.
pub fn summary(
    seed: u64,
    ops: &[Op],
    timeline: &[Event],
    verdicts: &[Verdict],
    dir: &Path,
    secs: f64,
) -> String {
    let count = |o: Outcome| ops.iter().filter(|op| op.outcome == o).count();
    let pass = !verdicts.is_empty() && verdicts.iter().all(|v| v.ok);
    let checks: Vec<String> =
        verdicts.iter().map(|v| format!("{}:{}", v.checker, if v.ok { "ok" } else { "FAIL" })).collect();
    format!(
        "{} seed={seed} ops={} ({} ok, {} fail, {} unknown) nemesis-events={} checkers={} time={secs:.1}s dir={}",
        if pass { "PASS" } else { "FAIL" },
        ops.len(),
        count(Outcome::Ok),
        count(Outcome::Fail),
        count(Outcome::Unknown),
        timeline.len(),
        checks.join(","),
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_files_are_written_into_the_run_dir() {
        // Proves write_timeline leaves leaders.jsonl (one sample a line) and a timeline.html page next to the other files.
        let dir = std::env::temp_dir().join(format!("muster-ct-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let leaders = vec![
            Sample { t_ns: 1, node: "n1".into(), leader: Some("n1".into()), term: Some(2), error: None },
            Sample { t_ns: 2, node: "n2".into(), leader: None, term: None, error: Some("no answer".into()) },
        ];
        write_timeline(&dir, "seed 1", &[], &[], &leaders, &[]).unwrap();
        let lines = std::fs::read_to_string(dir.join("leaders.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 2, "{lines}");
        let page = std::fs::read_to_string(dir.join("timeline.html")).unwrap();
        assert!(
            page.starts_with("<!DOCTYPE html>") && page.contains("n2 did not answer: no answer"),
            "{page}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
