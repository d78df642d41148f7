//! One whole run, shared by the smoke set and the long runs: form the cluster, start the
//! clients (registry workload, watchers, TTL clients) and the leadership poller, play a fault
//! schedule, stop, heal everything, read the final state, run every checker and write the
//! report. The schedule is the caller's: a closure over the cluster, the nemesis and a seeded
//! RNG. Returns the summary and the problems; the caller fails the test on problems, with the
//! seed.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::check::{self, NodeView, Verdict};
use crate::check_watch::{self, FinalState};
use crate::cluster::{Cluster, Options, IMAGE};
use crate::history::{write_jsonl, History, RunClock};
use crate::nemesis::Nemesis;
use crate::schedule::{blocking, RECOVER_TIMEOUT};
use crate::watch::{self, WatchStop};
use crate::workload::{self, Targets};
use crate::{check_linear, check_stacks, check_ttl, cmd, heartbeat, leaders, report};

/// First election of a fresh cluster: discovery window, bootstrap, voter promotion.
const FORM_TIMEOUT: Duration = Duration::from_secs(90);
/// Workload tasks end within one call's deadline after the stop flag; this adds slack.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the watchers may take to reach the final listing's revision after the heal.
const WATCH_CATCH_UP: Duration = Duration::from_secs(20);
/// Node copies may lag the leader's commit by a moment after the heal.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
const CONVERGE_POLL: Duration = Duration::from_secs(1);
/// Beyond the TTL clients' own drain (their observer's catch-up included).
const TTL_SLACK: Duration = Duration::from_secs(10);

/// What a run is made of.
#[derive(Debug, Clone)]
pub struct Spec {
    /// `smoke`, `jepsen`: the report's title.
    pub name: String,
    pub seed: u64,
    pub cluster: Options,
    /// Registry clients (register, update, deregister, get, list).
    pub clients: usize,
    /// Watch clients: even ones from revision 1, odd ones from the current revision.
    pub watchers: usize,
    /// TTL clients (register with a 10 s ttl, heartbeat; one service each stops).
    pub ttl_clients: usize,
    /// The TTL observer follows on this long after the stop, so late expiries are judged.
    pub ttl_linger: Duration,
    /// The workload runs at least this long, however quick the schedule.
    pub min_workload: Duration,
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The one-line summary (PASS/FAIL, seed, counts, checkers, report dir).
    pub summary: String,
    /// Every problem found; empty for a pass.
    pub problems: Vec<String>,
    pub dir: Option<PathBuf>,
}

impl Outcome {
    /// Panics with the seed, the report dir and every problem unless the run passed.
    pub fn assert_pass(&self, seed: u64) {
        assert!(
            self.problems.is_empty(),
            "seed={seed} (replay with MUSTER_CT_SEED={seed}); report in {}:\n{}",
            self.dir.as_ref().map_or("(none)".into(), |d| d.display().to_string()),
            self.problems.join("\n")
        );
    }
}

/// The seed: `MUSTER_CT_SEED` or one from the clock.
pub fn seed() -> Result<u64> {
    match std::env::var("MUSTER_CT_SEED") {
        Ok(s) if !s.trim().is_empty() => {
            s.trim().parse().with_context(|| format!("MUSTER_CT_SEED must be a u64, not {s:?}"))
        }
        _ => Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64 % 1_000_000_007),
    }
}

fn unix_now_s() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Every member's Status and own registry copy, until they agree or [`CONVERGE_TIMEOUT`].
async fn converge(cluster: &Cluster) -> Verdict {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let polls = CONVERGE_TIMEOUT.as_millis() / CONVERGE_POLL.as_millis() + 1;
    let mut verdict = check::converged(&[]);
    for _ in 0..polls {
        let mut views = Vec::new();
        for i in cluster.members() {
            let mut view = NodeView {
                node: cluster.nodes[i].name.clone(),
                leader: None,
                voters: Vec::new(),
                services: None,
                error: None,
            };
            match cluster.status(i).await {
                Ok(st) => {
                    view.leader = st.leader.map(|l| l.name).filter(|n| !n.is_empty());
                    view.voters = st.voters.into_iter().map(|v| v.name).collect();
                    view.voters.sort();
                }
                Err(e) => view.error = Some(format!("Status: {e:#}")),
            }
            match cluster.channel(i) {
                Ok(ch) => match workload::read_all(ch, true).await {
                    Ok(s) => view.services = Some(s),
                    Err(e) => view.error = Some(format!("stale List: {e:#}")),
                },
                Err(e) => view.error = Some(format!("channel: {e:#}")),
            }
            views.push(view);
        }
        verdict = check::converged(&views);
        if verdict.ok || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(CONVERGE_POLL).await;
    }
    verdict
}

/// Runs `spec` with the fault schedule `schedule` (given the cluster, the nemesis and an RNG
/// seeded from the run's seed).
pub async fn run<S, F>(spec: Spec, schedule: S) -> Outcome
where
    S: FnOnce(Arc<Cluster>, Arc<Nemesis>, StdRng, RunClock) -> F,
    F: Future<Output = Result<()>>,
{
    let seed = spec.seed;
    eprintln!("cluster-test {}: seed={seed} (replay with MUSTER_CT_SEED={seed})", spec.name);
    let mut problems = Vec::new();
    let image = cmd::run("docker", &["image", "inspect", "-f", "{{.Id}}", IMAGE], Duration::from_secs(15));
    if let Err(e) = image {
        problems.push(format!(
            "the {IMAGE} image is missing ({e:#}); run `make cluster-test`, which builds it with scripts/mkimage.sh"
        ));
        return Outcome { summary: format!("FAIL seed={seed} no image"), problems, dir: None };
    }
    let started = Instant::now();
    let since_unix = unix_now_s();
    let run_id = format!("{:08x}", (u64::from(std::process::id()) << 20 ^ seed) as u32);
    let cluster = match Cluster::start_with(&spec.cluster, &run_id) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            problems.push(format!("the cluster did not start: {e:#}"));
            return Outcome { summary: format!("FAIL seed={seed} no cluster"), problems, dir: None };
        }
    };
    if let Err(e) = cluster.wait_settled(FORM_TIMEOUT).await {
        for i in cluster.members() {
            eprintln!("--- {} logs:\n{}", cluster.nodes[i].name, cluster.logs(i, 40).unwrap_or_default());
        }
        problems.push(format!("the cluster did not form: {e:#}"));
        return Outcome { summary: format!("FAIL seed={seed} not formed"), problems, dir: None };
    }
    eprintln!("formed in {:.1}s", started.elapsed().as_secs_f64());

    let clock = RunClock::start();
    let history = History::default();
    let stop = Arc::new(AtomicBool::new(false));
    let nemesis = Arc::new(Nemesis::new(cluster.clone(), clock));
    let initial = cluster.members();
    let targets = Targets {
        names: initial.iter().map(|&i| cluster.nodes[i].name.clone()).collect(),
        channels: initial.iter().filter_map(|&i| cluster.channel(i).ok()).collect(),
    };
    let poll_stop = Arc::new(AtomicBool::new(false));
    let polling = tokio::spawn(leaders::run(cluster.clone(), clock, poll_stop.clone()));
    let watch_stop = Arc::new(WatchStop::default());
    let watching = tokio::spawn(watch::run(targets.clone(), spec.watchers, seed, clock, watch_stop.clone()));
    let ttl = tokio::spawn(heartbeat::run_lingering(
        targets.clone(),
        spec.ttl_clients,
        seed,
        clock,
        stop.clone(),
        spec.ttl_linger,
    ));
    let load = tokio::spawn(workload::run(targets, spec.clients, seed, clock, history.clone(), stop.clone()));

    let rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let schedule = schedule(cluster.clone(), nemesis.clone(), rng, clock).await;
    match &schedule {
        Ok(()) => eprintln!("schedule done at {:.1}s", clock.now_ns() as f64 / 1e9),
        Err(e) => eprintln!("schedule FAILED at {:.1}s: {e:#}", clock.now_ns() as f64 / 1e9),
    }
    if let Some(rest) = spec.min_workload.checked_sub(Duration::from_nanos(clock.now_ns())) {
        tokio::time::sleep(rest).await;
    }
    stop.store(true, Ordering::Relaxed);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, load).await;
    let workload_secs = clock.now_ns() as f64 / 1e9;

    // Heal whatever may be left, then judge.
    let n = nemesis.clone();
    let healed = blocking(move || n.heal_all()).await;
    let settled = cluster.wait_settled(RECOVER_TIMEOUT).await;
    let mut finals = BTreeMap::new();
    let mut final_state: Option<FinalState> = None;
    let mut read_errors = Vec::new();
    for i in cluster.members() {
        let name = cluster.nodes[i].name.clone();
        let read = match cluster.channel(i) {
            Ok(ch) => workload::read_all_at(ch, false).await,
            Err(e) => Err(e),
        };
        match read {
            Ok((revision, l)) => {
                if final_state.as_ref().is_none_or(|f| revision > f.revision) {
                    final_state = Some(FinalState { revision, services: l.clone() });
                }
                finals.insert(name, l);
            }
            Err(e) => read_errors.push(format!("{name}: {e:#}")),
        }
    }
    // The watchers follow on until they have seen the final listing's revision.
    watch_stop.until.store(final_state.as_ref().map_or(1, |f| f.revision.max(1)), Ordering::Relaxed);
    let mut watching = watching;
    let watchers = match tokio::time::timeout(WATCH_CATCH_UP, &mut watching).await {
        Ok(w) => w.unwrap_or_default(),
        Err(_) => {
            watch_stop.give_up.store(true, Ordering::Relaxed);
            match tokio::time::timeout(DRAIN_TIMEOUT, watching).await {
                Ok(w) => w.unwrap_or_default(),
                Err(_) => {
                    problems.push("the watchers did not stop".into());
                    Vec::new()
                }
            }
        }
    };
    let ttl_rec = match tokio::time::timeout(heartbeat::DRAIN_MAX + spec.ttl_linger + TTL_SLACK, ttl).await {
        Ok(Ok(rec)) => Some(rec),
        Ok(Err(e)) => {
            problems.push(format!("the TTL clients panicked: {e}"));
            None
        }
        Err(_) => {
            problems.push("the TTL clients did not stop".into());
            None
        }
    };
    poll_stop.store(true, Ordering::Relaxed);
    let samples = polling.await.unwrap_or_default();

    let ops = history.snapshot();
    let timeline = nemesis.timeline();
    let mut verdicts = vec![
        check::no_acknowledged_write_lost(&ops, &finals),
        check_linear::linearizable(&ops),
        converge(&cluster).await,
        check_watch::watch_streams(&watchers, &ops, final_state.as_ref()),
    ];
    if let Some(rec) = &ttl_rec {
        let faults = check_ttl::fault_intervals(&timeline, check_ttl::FAULT_LEAD_NS, clock.now_ns());
        verdicts.push(check_ttl::ttl_bounds(rec, &faults, &check_ttl::TtlParams::lan()));
    }
    let mut stack_events = Vec::new();
    if spec.cluster.stacks {
        let names: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
        match check_stacks::read_events(since_unix, unix_now_s(), &names) {
            Ok(events) => {
                verdicts.push(check_stacks::at_most_one_server_stack(&events));
                stack_events = events;
            }
            Err(e) => problems.push(format!("reading Docker's events: {e:#}")),
        }
    }
    if !read_errors.is_empty() {
        verdicts.push(Verdict {
            checker: "final-reads".into(),
            ok: false,
            explanation: format!("linearizable List failed on: {}", read_errors.join("; ")),
            violations: read_errors,
        });
    }

    let dir = report::run_dir(seed);
    let dir = match dir {
        Ok(dir) => {
            let title = format!("{} seed={seed}", spec.name);
            let written = report::write(&dir, &ops, &timeline, &verdicts)
                .and_then(|()| report::write_timeline(&dir, &title, &ops, &timeline, &samples, &verdicts))
                .and_then(|()| write_jsonl(&dir.join("watch.jsonl"), &watchers))
                .and_then(|()| write_jsonl(&dir.join("stack-events.jsonl"), &stack_events))
                .and_then(|()| match &ttl_rec {
                    Some(rec) => write_jsonl(&dir.join("ttl-ops.jsonl"), &rec.ops)
                        .and_then(|()| write_jsonl(&dir.join("ttl-events.jsonl"), &rec.events)),
                    None => Ok(()),
                });
            if let Err(e) = written {
                problems.push(format!("writing the report: {e:#}"));
            }
            Some(dir)
        }
        Err(e) => {
            problems.push(format!("no report dir: {e:#}"));
            None
        }
    };
    let summary = report::summary(
        seed,
        &ops,
        &timeline,
        &verdicts,
        dir.as_deref().unwrap_or(std::path::Path::new("-")),
        started.elapsed().as_secs_f64(),
    );
    eprintln!("{summary}");
    eprintln!("workload ran {workload_secs:.1}s; {} ttl ops", ttl_rec.as_ref().map_or(0, |r| r.ops.len()));
    for v in &verdicts {
        eprintln!("{}: {}", v.checker, v.explanation);
    }

    if let Err(e) = schedule {
        problems.push(format!("the schedule failed: {e:#}"));
    }
    if drained.is_err() {
        problems.push(format!("the workload did not stop within {DRAIN_TIMEOUT:?}"));
    }
    if let Err(e) = healed {
        problems.push(format!("the final heal failed: {e:#}"));
    }
    if let Err(e) = settled {
        problems.push(format!("no settled cluster after the heal: {e:#}"));
    }
    for v in verdicts.iter().filter(|v| !v.ok) {
        problems.push(format!("{}: {}", v.checker, v.explanation));
    }
    if !problems.is_empty() {
        for i in cluster.members() {
            eprintln!("--- {} logs:\n{}", cluster.nodes[i].name, cluster.logs(i, 30).unwrap_or_default());
        }
    }
    Outcome { summary, problems, dir }
}
