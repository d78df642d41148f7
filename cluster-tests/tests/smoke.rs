//! The smoke set (`make cluster-test`): three muster nodes as containers from `muster:dev`,
//! a seeded workload of register/update/deregister/get/list (and watchers) for about 20 s while the nemesis
//! isolates the leader, kills and restarts a node, and pauses one; then every checker runs on
//! the history and the final state. Needs root, Docker, nsenter and iptables, and the image
//! (`scripts/mkimage.sh`). `MUSTER_CT_SEED=<n>` replays a schedule; the seed is printed first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use cluster_tests::check::{self, NodeView, Verdict};
use cluster_tests::check_watch::{self, FinalState};
use cluster_tests::cluster::{Cluster, IMAGE};
use cluster_tests::history::{History, RunClock};
use cluster_tests::nemesis::Nemesis;
use cluster_tests::watch::{self, WatchStop};
use cluster_tests::workload::{self, Targets};
use cluster_tests::{cmd, report};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const NODES: usize = 3;
const CLIENTS: usize = 4;
/// Watch clients: even ones from revision 1, odd ones from the current revision.
const WATCHERS: usize = 3;
/// How long the watchers may take to reach the final listing's revision after the heal.
const WATCH_CATCH_UP: Duration = Duration::from_secs(20);
/// How long the workload runs, at least (the schedule may take longer on a slow machine).
const WORKLOAD: Duration = Duration::from_secs(20);
/// First election of a fresh cluster: discovery window, bootstrap, voter promotion.
const FORM_TIMEOUT: Duration = Duration::from_secs(90);
/// Re-election and catch-up after a fault is healed.
const RECOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// Workload tasks end within one call's deadline after the stop flag; this adds slack.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Node copies may lag the leader's commit by a moment after the heal.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
const CONVERGE_POLL: Duration = Duration::from_secs(1);

fn seed() -> u64 {
    match std::env::var("MUSTER_CT_SEED") {
        Ok(s) => s.parse().expect("MUSTER_CT_SEED must be a u64"),
        Err(_) => SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 % 1_000_000_007,
    }
}

/// Runs a blocking nemesis action off the async workers.
async fn blocking<F>(f: F) -> Result<()>
where
    F: FnOnce() -> Result<()> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.context("nemesis thread panicked")?
}

fn preflight() {
    let image = cmd::run("docker", &["image", "inspect", "-f", "{{.Id}}", IMAGE], Duration::from_secs(15));
    assert!(
        image.is_ok(),
        "the {IMAGE} image is missing ({image:?}); run `make cluster-test`, which builds it with scripts/mkimage.sh"
    );
}

/// Every node's Status and own registry copy, until they agree or [`CONVERGE_TIMEOUT`].
async fn converge(cluster: &Cluster) -> Verdict {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let polls = CONVERGE_TIMEOUT.as_millis() / CONVERGE_POLL.as_millis() + 1;
    let mut verdict = check::converged(&[]);
    for _ in 0..polls {
        let mut views = Vec::new();
        for (i, node) in cluster.nodes.iter().enumerate() {
            let mut view = NodeView {
                node: node.name.clone(),
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
            match workload::read_all(cluster.channel(i).unwrap(), true).await {
                Ok(s) => view.services = Some(s),
                Err(e) => view.error = Some(format!("stale List: {e:#}")),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_survive_leader_isolation_kill_and_pause_without_losing_acknowledged_writes() {
    // Proves that under leader isolation, kill -9 + restart and pause, no acknowledged write is lost, watch streams stay ordered and gap-free, and the nodes converge.
    let seed = seed();
    eprintln!("cluster-test smoke: seed={seed} (replay with MUSTER_CT_SEED={seed})");
    preflight();
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let run_id = format!("{:08x}", (u64::from(std::process::id()) << 20 ^ seed) as u32);
    let cluster = Arc::new(Cluster::start(NODES, &run_id).unwrap());
    let formed = cluster.wait_settled(FORM_TIMEOUT).await;
    if let Err(e) = &formed {
        for i in 0..NODES {
            eprintln!("--- {} logs:\n{}", cluster.nodes[i].name, cluster.logs(i, 40).unwrap_or_default());
        }
        panic!("seed={seed}: the cluster did not form: {e:#}");
    }
    let formed = formed.unwrap();
    eprintln!(
        "formed in {:.1}s, leader {}",
        started.elapsed().as_secs_f64(),
        cluster.nodes[formed.leader].name
    );

    let clock = RunClock::start();
    let history = History::default();
    let stop = Arc::new(AtomicBool::new(false));
    let nemesis = Arc::new(Nemesis::new(cluster.clone(), clock));
    let targets = Targets {
        names: cluster.nodes.iter().map(|n| n.name.clone()).collect(),
        channels: (0..NODES).map(|i| cluster.channel(i).unwrap()).collect(),
    };
    let watch_stop = Arc::new(WatchStop::default());
    let watching = tokio::spawn(watch::run(targets.clone(), WATCHERS, seed, clock, watch_stop.clone()));
    let load = tokio::spawn(workload::run(targets, CLIENTS, seed, clock, history.clone(), stop.clone()));

    // The schedule: every choice and duration comes from the seed.
    let run = async {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1500..2500))).await;
        let leader = cluster.wait_settled(RECOVER_TIMEOUT).await?.leader;
        let n = nemesis.clone();
        let hold = Duration::from_millis(rng.random_range(4500..5500));
        let isolated_at = Instant::now();
        blocking(move || n.isolate(leader)).await?;
        // The partition must be real: the majority elects a leader among itself.
        let majority: Vec<usize> = (0..NODES).filter(|&i| i != leader).collect();
        let moved =
            cluster.wait_settled_among(&majority, NODES, RECOVER_TIMEOUT).await.with_context(|| {
                format!("the majority elected no leader while {} was isolated", cluster.nodes[leader].name)
            })?;
        eprintln!(
            "leadership moved from {} to {} {:.1}s after the isolation",
            cluster.nodes[leader].name,
            cluster.nodes[moved.leader].name,
            isolated_at.elapsed().as_secs_f64()
        );
        if let Some(rest) = hold.checked_sub(isolated_at.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        let n = nemesis.clone();
        blocking(move || n.heal()).await?;
        cluster.wait_settled(RECOVER_TIMEOUT).await?;

        let victim = rng.random_range(0..NODES);
        let n = nemesis.clone();
        blocking(move || n.kill(victim)).await?;
        tokio::time::sleep(Duration::from_millis(rng.random_range(2000..3500))).await;
        let n = nemesis.clone();
        blocking(move || n.restart_killed(victim)).await?;
        cluster.wait_settled(RECOVER_TIMEOUT).await?;

        let frozen = rng.random_range(0..NODES);
        let n = nemesis.clone();
        blocking(move || n.pause(frozen)).await?;
        tokio::time::sleep(Duration::from_millis(rng.random_range(2000..3500))).await;
        let n = nemesis.clone();
        blocking(move || n.unpause(frozen)).await?;
        if let Some(rest) = WORKLOAD.checked_sub(Duration::from_nanos(clock.now_ns())) {
            tokio::time::sleep(rest).await;
        }
        anyhow::Ok(())
    };
    let schedule = run.await;
    stop.store(true, Ordering::Relaxed);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, load).await;
    let workload_secs = clock.now_ns() as f64 / 1e9;

    // Heal whatever may be left, then judge.
    let n = nemesis.clone();
    let healed = blocking(move || n.heal()).await;
    let settled = cluster.wait_settled(RECOVER_TIMEOUT).await;
    let mut finals = BTreeMap::new();
    let mut final_state: Option<FinalState> = None;
    let mut read_errors = Vec::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        match workload::read_all_at(cluster.channel(i).unwrap(), false).await {
            Ok((revision, l)) => {
                if final_state.as_ref().is_none_or(|f| revision > f.revision) {
                    final_state = Some(FinalState { revision, services: l.clone() });
                }
                finals.insert(node.name.clone(), l);
            }
            Err(e) => read_errors.push(format!("{}: {e:#}", node.name)),
        }
    }
    // The watchers follow on until they have seen the final listing's revision.
    watch_stop.until.store(final_state.as_ref().map_or(1, |f| f.revision.max(1)), Ordering::Relaxed);
    let mut watching = watching;
    let watchers = match tokio::time::timeout(WATCH_CATCH_UP, &mut watching).await {
        Ok(w) => w.unwrap(),
        Err(_) => {
            watch_stop.give_up.store(true, Ordering::Relaxed);
            tokio::time::timeout(DRAIN_TIMEOUT, watching).await.expect("watchers did not stop").unwrap()
        }
    };
    let ops = history.snapshot();
    let mut verdicts = vec![
        check::no_acknowledged_write_lost(&ops, &finals),
        converge(&cluster).await,
        check_watch::watch_streams(&watchers, &ops, final_state.as_ref()),
    ];
    if !read_errors.is_empty() {
        verdicts.push(Verdict {
            checker: "final-reads".into(),
            ok: false,
            explanation: format!("linearizable List failed on: {}", read_errors.join("; ")),
            violations: read_errors,
        });
    }
    let timeline = nemesis.timeline();
    let dir = report::run_dir(seed).unwrap();
    report::write(&dir, &ops, &timeline, &verdicts).unwrap();
    cluster_tests::history::write_jsonl(&dir.join("watch.jsonl"), &watchers).unwrap();
    let summary = report::summary(seed, &ops, &timeline, &verdicts, &dir, started.elapsed().as_secs_f64());
    eprintln!("{summary}");
    eprintln!("workload ran {workload_secs:.1}s");
    for v in &verdicts {
        eprintln!("{}: {}", v.checker, v.explanation);
    }

    let mut problems = Vec::new();
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
        for i in 0..NODES {
            eprintln!("--- {} logs:\n{}", cluster.nodes[i].name, cluster.logs(i, 30).unwrap_or_default());
        }
        panic!(
            "seed={seed} (replay with MUSTER_CT_SEED={seed}); report in {}:\n{}",
            dir.display(),
            problems.join("\n")
        );
    }
}
