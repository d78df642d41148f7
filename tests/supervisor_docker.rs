//! The supervisor against the real local Docker engine: the reconcile loop drives a two-service
//! server stack and a one-service proxy stack, built from our own binary (`muster idle` in an
//! image made by `scripts/mkimage.sh`, no registry). Docker's own event stream is the witness
//! for ordering: an old epoch or stack is down before anything new starts. The engine must
//! answer at /var/run/docker.sock; if it does not, the test fails (it does not skip).
//!
//! Every container and network the test makes carries `muster.node=<a node name unique to this
//! run>`, and is removed at the start and at the end (also when the test fails).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod supervisor_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use futures_util::StreamExt as _;
use muster::supervisor::{
    run_reconciler, ContainerEvent, ContainerEventKind, ContainerState, Desired, DockerEngine, Health,
    ObservedContainer, StackKind, StackStatus,
};
use supervisor_support::{build_image, converged, stacks, unique_node, unix_now_ms, Cleanup, SOCKET, WAIT};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Events kept by the collector (a run makes a few dozen).
const EVENTS_MAX: usize = 10_000;

const COMPOSE: &str = r#"
# init: true everywhere: a process that is PID 1 ignores SIGTERM until it has installed its
# handler, so a container stopped in its first milliseconds would wait the whole stop timeout.
services:
  db:
    image: muster:dev
    command: ["idle"]
    profiles: [server]
    labels:
      team: supervisor-test
    init: true
    healthcheck:
      test: ["CMD", "/usr/local/bin/muster", "version"]
      interval: 1s
      timeout: 5s
      retries: 3
  app:
    image: muster:dev
    command: ["idle"]
    profiles: [server]
    init: true
    depends_on:
      db:
        condition: service_healthy
    environment:
      MUSTER_EPOCH: "${MUSTER_EPOCH}"
  agent:
    image: muster:dev
    command: ["idle"]
    profiles: [proxy]
    init: true
    environment:
      SERVER_URL: "http://${MUSTER_SERVER_HOST}:9999"
"#;

/// Waits until the events after `mark` satisfy `done` (Docker may deliver them a moment after
/// the loop saw the change), then returns them.
async fn events_after(
    rx: &mut watch::Receiver<Vec<ContainerEvent>>,
    mark: usize,
    what: &str,
    done: impl Fn(&[ContainerEvent]) -> bool,
) -> Vec<ContainerEvent> {
    let waited = tokio::time::timeout(WAIT, rx.wait_for(|all| all.len() >= mark && done(&all[mark..])))
        .await
        .map(|r| r.map(|all| all[mark..].to_vec()));
    match waited {
        Ok(Ok(events)) => events,
        Ok(Err(_)) => panic!("the event stream ended while waiting for {what}"),
        Err(_) => panic!("waited {WAIT:?} for {what}; events: {:#?}", &rx.borrow()[mark..]),
    }
}

/// How many distinct containers matching `of` had a `kind` event.
fn count(events: &[ContainerEvent], kind: ContainerEventKind, of: impl Fn(&ContainerEvent) -> bool) -> usize {
    let ids: BTreeSet<&str> =
        events.iter().filter(|e| e.kind == kind && of(e)).map(|e| e.id.as_str()).collect();
    ids.len()
}

/// The latest time of a `kinds` event of the matching containers.
fn last_time(
    events: &[ContainerEvent],
    kinds: &[ContainerEventKind],
    of: impl Fn(&ContainerEvent) -> bool,
) -> u64 {
    events.iter().filter(|e| kinds.contains(&e.kind) && of(e)).map(|e| e.time_unix_ns).max().unwrap_or(0)
}

/// The earliest start of the matching containers.
fn first_start(events: &[ContainerEvent], of: impl Fn(&ContainerEvent) -> bool) -> u64 {
    let starts = events.iter().filter(|e| e.kind == ContainerEventKind::Start && of(e));
    starts.map(|e| e.time_unix_ns).min().expect("a start event of the new containers")
}

async fn inspect(docker: &bollard::Docker, id: &str) -> bollard::models::ContainerInspectResponse {
    docker.inspect_container(id, None).await.expect("inspect a container of the stack")
}

fn running(observed: &[ObservedContainer]) -> BTreeSet<(StackKind, u64, String)> {
    observed
        .iter()
        .filter(|c| c.state == ContainerState::Running)
        .map(|c| (c.stack, c.epoch, c.service.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciler_drives_server_and_proxy_stacks_on_real_docker() {
    // Proves start order, epoch and stack fencing (old down before new starts, per Docker's
    // events), proxy interpolation, repair of a removed container, and a full drain.
    let engine = DockerEngine::connect(Path::new(SOCKET)).await.unwrap_or_else(|e| {
        panic!("this test needs the Docker engine at {SOCKET} to answer (start dockerd): {e}")
    });
    println!("docker api {}", engine.api_version());
    build_image();
    let node = unique_node("sdt");
    let cleanup = Cleanup::new(&node);
    let docker = bollard::Docker::connect_with_unix(SOCKET, 60, bollard::API_DEFAULT_VERSION)
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();

    let (events_tx, mut events_rx) = watch::channel(Vec::new());
    let mut stream = engine.events_since(&node, Some(unix_now_ms()));
    let collector = tokio::spawn(async move {
        while let Some(Ok(event)) = stream.next().await {
            events_tx.send_modify(|kept| {
                if kept.len() < EVENTS_MAX {
                    kept.push(event);
                }
            });
        }
    });

    let (desired_tx, desired_rx) = watch::channel(Desired::nothing(0));
    let (status_tx, mut status_rx) = watch::channel(StackStatus::new(&node));
    let shutdown = CancellationToken::new();
    let reconciler =
        tokio::spawn(run_reconciler(engine.clone(), node.clone(), desired_rx, status_tx, shutdown.clone()));

    // (a) server stack at epoch 1: both run, labelled, app started after db was healthy.
    println!("(a) server stack, epoch 1");
    let t = unix_now_ms();
    desired_tx
        .send_replace(Desired::from_stack(&stacks(COMPOSE, &node, "server", "server-a.test", 1).server, 1));
    converged(&mut status_rx, "server@1", t).await;
    let observed = engine.observe(&node).await.unwrap();
    let want: BTreeSet<_> =
        [(StackKind::Server, 1, "app".into()), (StackKind::Server, 1, "db".into())].into();
    assert_eq!(running(&observed), want);
    let mut started = BTreeMap::new();
    for c in &observed {
        let i = inspect(&docker, &c.id).await;
        let labels = i.config.unwrap().labels.unwrap();
        assert_eq!(labels["muster.node"], node);
        assert_eq!((labels["muster.stack"].as_str(), labels["muster.epoch"].as_str()), ("server", "1"));
        assert_eq!(c.name, format!("muster-{node}-server-{}", c.service));
        started.insert(
            c.service.clone(),
            muster::supervisor::unix_ms(&i.state.unwrap().started_at.unwrap()).unwrap(),
        );
    }
    assert!(started["db"] <= started["app"], "db must start before app: {started:?}");
    let evs = events_after(&mut events_rx, 0, "db and app started, db healthy", |evs| {
        let started = |s: &str| {
            evs.iter().any(|e| e.kind == ContainerEventKind::Start && e.service.as_deref() == Some(s))
        };
        let healthy = evs.iter().any(|e| e.kind == ContainerEventKind::Health(Health::Healthy));
        started("db") && started("app") && healthy
    })
    .await;
    let db_start = first_start(&evs, |e| e.service.as_deref() == Some("db"));
    let app_start = first_start(&evs, |e| e.service.as_deref() == Some("app"));
    assert!(db_start <= app_start, "Docker saw app start before db");
    let db_healthy = evs.iter().filter(|e| {
        e.kind == ContainerEventKind::Health(Health::Healthy) && e.service.as_deref() == Some("db")
    });
    let db_healthy = db_healthy.map(|e| e.time_unix_ns).min().expect("db reported its health");
    assert!(db_healthy <= app_start, "app (depends on db: service_healthy) started before db was healthy");
    let db = observed.iter().find(|c| c.service == "db").unwrap();
    assert_eq!(db.health, Health::Healthy);

    // (b) epoch 2: every epoch-1 container stops before any epoch-2 container starts.
    println!("(b) server stack, epoch 2");
    let mark = events_rx.borrow().len();
    let t = unix_now_ms();
    desired_tx
        .send_replace(Desired::from_stack(&stacks(COMPOSE, &node, "server", "server-a.test", 2).server, 2));
    converged(&mut status_rx, "server@2", t).await;
    let observed = engine.observe(&node).await.unwrap();
    let want: BTreeSet<_> =
        [(StackKind::Server, 2, "app".into()), (StackKind::Server, 2, "db".into())].into();
    assert_eq!(running(&observed), want);
    assert_eq!(observed.len(), 2, "the epoch-1 containers are removed");
    let evs = events_after(&mut events_rx, mark, "epoch 1 died, epoch 2 started", |evs| {
        count(evs, ContainerEventKind::Die, |e| e.epoch == Some(1)) == 2
            && count(evs, ContainerEventKind::Start, |e| e.epoch == Some(2)) == 2
    })
    .await;
    let old_dies: BTreeSet<_> = evs
        .iter()
        .filter(|e| e.epoch == Some(1) && e.kind == ContainerEventKind::Die)
        .filter_map(|e| e.service.clone())
        .collect();
    assert_eq!(
        old_dies,
        ["app".to_string(), "db".to_string()].into(),
        "both epoch-1 containers died: {evs:#?}"
    );
    let old_down =
        last_time(&evs, &[ContainerEventKind::Die, ContainerEventKind::Stop], |e| e.epoch == Some(1));
    let new_up = first_start(&evs, |e| e.epoch == Some(2));
    assert!(old_down < new_up, "an epoch-2 container started before every epoch-1 one stopped: {evs:#?}");
    println!("epoch 1 down {} ms before epoch 2 started", (new_up - old_down) / 1_000_000);

    // (c) proxy stack: the server containers are stopped and removed before the proxy starts.
    println!("(c) switch to the proxy stack");
    let mark = events_rx.borrow().len();
    let t = unix_now_ms();
    desired_tx
        .send_replace(Desired::from_stack(&stacks(COMPOSE, &node, "proxy", "server-b.test", 2).proxy, 2));
    converged(&mut status_rx, "proxy@2", t).await;
    let observed = engine.observe(&node).await.unwrap();
    assert_eq!(running(&observed), [(StackKind::Proxy, 2, "agent".to_string())].into());
    assert_eq!(observed.len(), 1, "no server container is left");
    let evs = events_after(&mut events_rx, mark, "server removed, proxy started", |evs| {
        count(evs, ContainerEventKind::Destroy, |e| e.stack == Some(StackKind::Server)) == 2
            && count(evs, ContainerEventKind::Start, |e| e.stack == Some(StackKind::Proxy)) == 1
    })
    .await;
    let server_gone = last_time(&evs, &[ContainerEventKind::Destroy], |e| e.stack == Some(StackKind::Server));
    let destroyed =
        evs.iter().filter(|e| e.kind == ContainerEventKind::Destroy && e.stack == Some(StackKind::Server));
    assert_eq!(destroyed.count(), 2, "both server containers were removed: {evs:#?}");
    let proxy_up = first_start(&evs, |e| e.stack == Some(StackKind::Proxy));
    assert!(server_gone < proxy_up, "the proxy started before the server stack was gone: {evs:#?}");
    let env = inspect(&docker, &observed[0].id).await.config.unwrap().env.unwrap();
    assert!(env.contains(&"SERVER_URL=http://server-b.test:9999".to_string()), "proxy env: {env:?}");

    // (d) a container removed behind muster's back is recreated by the loop.
    println!("(d) docker rm -f the proxy container");
    let removed_id = observed[0].id.clone();
    let t = unix_now_ms();
    let out = Command::new("docker").args(["rm", "-f", &removed_id]).output().unwrap();
    assert!(out.status.success(), "docker rm -f: {}", String::from_utf8_lossy(&out.stderr));
    converged(&mut status_rx, "proxy@2", t).await;
    let observed = engine.observe(&node).await.unwrap();
    assert_eq!(running(&observed), [(StackKind::Proxy, 2, "agent".to_string())].into());
    assert_ne!(observed[0].id, removed_id, "a new container replaced the removed one");

    // (e) nothing desired: every container is removed, then the networks muster made.
    println!("(e) nothing desired");
    let t = unix_now_ms();
    desired_tx.send_replace(Desired::nothing(3));
    converged(&mut status_rx, "nothing", t).await;
    assert!(engine.observe(&node).await.unwrap().is_empty(), "no container is left");
    let networks = || {
        let out = Command::new("docker")
            .args(["network", "ls", "-q", "--filter", &format!("label=muster.node={node}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().count()
    };
    let deadline = std::time::Instant::now() + WAIT;
    while networks() > 0 {
        assert!(std::time::Instant::now() < deadline, "the node's networks are removed within {WAIT:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    shutdown.cancel();
    tokio::time::timeout(WAIT, reconciler).await.expect("the loop stops on shutdown").unwrap();
    collector.abort();
    let status = status_rx.borrow().clone();
    println!("final status: {}", serde_json::to_string(&status).unwrap());
    drop(cleanup);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stack_is_not_started_while_the_serve_gate_is_shut() {
    // Proves the reconcile loop asks the node's quorum lease at the moment it would create or
    // start a server container: with the gate shut (a node thawed from a freeze, its desired
    // server stack stale) nothing starts; once it opens, the stack converges. Regression: a
    // frozen server, thawed, started its server stack for 81 ms beside the new server's.
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let engine = DockerEngine::connect(Path::new(SOCKET)).await.unwrap_or_else(|e| {
        panic!("this test needs the Docker engine at {SOCKET} to answer (start dockerd): {e}")
    });
    build_image();
    let node = unique_node("sgt");
    let _cleanup = Cleanup::new(&node);
    let open = Arc::new(AtomicBool::new(false));
    let gate: muster::supervisor::ServeGate = {
        let open = open.clone();
        Arc::new(move || open.load(Ordering::SeqCst))
    };
    let server = Desired::from_stack(&stacks(COMPOSE, &node, "server", "server-a.test", 1).server, 1);
    let (_desired_tx, desired_rx) = watch::channel(server);
    let (status_tx, mut status_rx) = watch::channel(StackStatus::new(&node));
    let shutdown = CancellationToken::new();
    let options = muster::supervisor::ReconcileOptions { tick_interval_ms: 200, ..Default::default() };
    let reconciler = tokio::spawn(muster::supervisor::run_reconciler_gated(
        engine.clone(),
        node.clone(),
        desired_rx,
        status_tx,
        shutdown.clone(),
        options,
        Some(gate),
    ));
    // Ten ticks with the gate shut: no container of the server stack exists.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let observed = engine.observe(&node).await.unwrap();
    assert!(observed.is_empty(), "nothing may start while the gate is shut: {observed:?}");
    open.store(true, Ordering::SeqCst);
    supervisor_support::wait_status(&mut status_rx, "server@1 running once the gate opens", |s| {
        s.converged && s.containers.iter().filter(|c| c.state == "running").count() == 2
    })
    .await;
    let observed = engine.observe(&node).await.unwrap();
    let want: BTreeSet<_> =
        [(StackKind::Server, 1, "app".into()), (StackKind::Server, 1, "db".into())].into();
    assert_eq!(running(&observed), want);
    shutdown.cancel();
    let _ = tokio::time::timeout(WAIT, reconciler).await;
}
