//! Long runs (`make jepsen SEED=… TIME=… NEMESIS=… NODES=…`): a cluster of 5 nodes (or
//! `MUSTER_CT_NODES`) with stacks and one spare node, the full workload, and faults drawn from
//! the seed out of `MUSTER_CT_NEMESIS` (comma separated names, or `all`: isolate, split,
//! bridge, one-way, loss, kill, pause, freeze, rolling-restart, membership) for
//! `MUSTER_CT_TIME` seconds (default 600); then every checker. Ignored by `cargo test`; the
//! make target runs it with `--ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use cluster_tests::cluster::Options;
use cluster_tests::run::{self, Spec};
use cluster_tests::schedule::{self, Fault};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value"))
        }
        _ => default,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long run: make jepsen"]
async fn a_long_run_under_random_faults_passes_every_checker() {
    // Proves, for as long as asked, that every checker holds under the chosen faults.
    let seed = run::seed().unwrap();
    let secs: u64 = env_or("MUSTER_CT_TIME", 600);
    let nodes: usize = env_or("MUSTER_CT_NODES", 5);
    let faults = Fault::parse_list(&std::env::var("MUSTER_CT_NEMESIS").unwrap_or_default()).unwrap();
    let names: Vec<&str> = faults.iter().map(|f| f.name()).collect();
    eprintln!("jepsen: {nodes} nodes, {secs} s, nemeses {}", names.join(","));
    let spec = Spec {
        name: "jepsen".into(),
        seed,
        cluster: Options { nodes, spares: usize::from(faults.contains(&Fault::Membership)), stacks: true },
        clients: 6,
        watchers: 3,
        ttl_clients: 3,
        ttl_linger: Duration::from_secs(20),
        min_workload: Duration::from_secs(secs),
    };
    let until = Duration::from_secs(secs);
    let outcome = run::run(spec, move |cluster, nemesis, mut rng, _clock| async move {
        let started = Instant::now();
        let steps = schedule::random(&faults, &cluster, &nemesis, &mut rng, started, until).await?;
        eprintln!("jepsen: {steps} fault steps");
        anyhow::Ok(())
    })
    .await;
    outcome.assert_pass(seed);
}
