//! The smoke set (`make cluster-test`): three muster nodes as containers from `muster:dev`,
//! each running the supervisor with a stack on the host's Docker engine, under a seeded
//! workload (register/update/deregister/get/list, watchers, TTL clients) for at least 30 s,
//! while the nemesis isolates the leader, kills a node (with its stack: the host dies) and
//! restarts it, pauses one (with its stack: the host freezes) and freezes the leader's muster
//! process alone (its watchdog must stop its stack); then every checker runs (see
//! `cluster_tests::run`). Needs root, Docker, nsenter and iptables, and the image
//! (`scripts/mkimage.sh`). `MUSTER_CT_SEED=<n>` replays a schedule; the seed is printed first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use anyhow::Context;
use cluster_tests::cluster::Options;
use cluster_tests::run::{self, Spec};
use cluster_tests::schedule::{blocking, RECOVER_TIMEOUT};
use rand::Rng;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_survive_leader_isolation_kill_pause_and_freeze_without_losing_acknowledged_writes() {
    // Proves that under leader isolation, kill -9 + restart, pause and a hung leader, the
    // registry stays linearizable and loses no acknowledged write, watch streams stay ordered
    // and gap-free, leases end neither early nor late, at most one server stack runs at any
    // instant, and the nodes converge.
    let seed = run::seed().unwrap();
    let spec = Spec {
        name: "smoke".into(),
        seed,
        cluster: Options { nodes: 3, spares: 0, stacks: true },
        clients: 4,
        watchers: 3,
        ttl_clients: 2,
        ttl_linger: Duration::from_secs(20),
        min_workload: Duration::from_secs(30),
    };
    let outcome = run::run(spec, |cluster, nemesis, mut rng, _clock| async move {
        let nodes = cluster.members();
        tokio::time::sleep(Duration::from_millis(rng.random_range(1500..2500))).await;
        let leader = cluster.wait_settled(RECOVER_TIMEOUT).await?.leader;
        let n = nemesis.clone();
        let hold = Duration::from_millis(rng.random_range(4500..5500));
        let isolated_at = Instant::now();
        blocking(move || n.isolate(leader)).await?;
        // The partition must be real: the majority elects a leader among itself.
        let majority: Vec<usize> = nodes.iter().copied().filter(|&i| i != leader).collect();
        let moved = cluster.wait_settled_among(&majority, 3, RECOVER_TIMEOUT).await.with_context(|| {
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

        let victim = nodes[rng.random_range(0..nodes.len())];
        let n = nemesis.clone();
        blocking(move || n.kill(victim)).await?;
        tokio::time::sleep(Duration::from_millis(rng.random_range(2000..3500))).await;
        let n = nemesis.clone();
        blocking(move || n.restart_killed(victim)).await?;
        cluster.wait_settled(RECOVER_TIMEOUT).await?;

        let frozen = nodes[rng.random_range(0..nodes.len())];
        let n = nemesis.clone();
        blocking(move || n.pause(frozen)).await?;
        tokio::time::sleep(Duration::from_millis(rng.random_range(2000..3500))).await;
        let n = nemesis.clone();
        blocking(move || n.unpause(frozen)).await?;
        cluster.wait_settled(RECOVER_TIMEOUT).await?;

        // A hung leader: long enough for another node to become server and start its stack.
        let leader = cluster.wait_settled(RECOVER_TIMEOUT).await?.leader;
        let n = nemesis.clone();
        blocking(move || n.freeze(leader)).await?;
        tokio::time::sleep(Duration::from_millis(rng.random_range(6000..7000))).await;
        let n = nemesis.clone();
        blocking(move || n.thaw(leader)).await?;
        cluster.wait_settled(RECOVER_TIMEOUT).await?;
        anyhow::Ok(())
    })
    .await;
    outcome.assert_pass(seed);
}
