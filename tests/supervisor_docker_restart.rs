//! The supervisor when the Docker engine goes away: a missing socket or a silent one is the
//! "disabled" error, and the reconcile loop survives the engine vanishing and coming back (the
//! test stands a unix-socket relay in front of the real engine at /var/run/docker.sock and
//! takes it down and up again, as a daemon restart does, without touching the real daemon).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod supervisor_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use muster::supervisor::{
    run_reconciler_with, Desired, DockerEngine, EngineOptions, ReconcileOptions, StackKind, StackStatus,
};
use supervisor_support::{
    build_image, converged, stacks, unique_node, unix_now_ms, wait_status, Cleanup, SOCKET, WAIT,
};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const COMPOSE: &str = r#"
services:
  agent:
    image: muster:dev
    command: ["idle"]
    profiles: [proxy]
    init: true
    environment:
      SERVER_URL: "http://${MUSTER_SERVER_HOST}:9999"
"#;

/// A unix socket at `path` relaying every connection to the real engine, until stopped: then
/// the listener, every relayed connection and the socket file are gone.
struct Relay {
    path: PathBuf,
    stop: CancellationToken,
}

impl Relay {
    fn start(path: &Path) -> Relay {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = token.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut client, _)) = accepted else { break };
                let token = token.clone();
                tokio::spawn(async move {
                    let Ok(mut engine) = UnixStream::connect(SOCKET).await else { return };
                    tokio::select! {
                        () = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut engine) => {}
                    }
                });
            }
        });
        Relay { path: path.to_path_buf(), stop }
    }

    fn stop(&self) {
        self.stop.cancel();
        let _ = std::fs::remove_file(&self.path);
    }
}

#[tokio::test]
async fn missing_or_silent_engine_is_the_disabled_error() {
    // Proves both a socket that does not exist and one that never answers give the exact
    // "disabled: no Docker engine at <path>" message, and count as unreachable.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-docker.sock");
    let err = DockerEngine::connect(&missing).await.unwrap_err();
    assert_eq!(err.to_string(), format!("disabled: no Docker engine at {}", missing.display()));
    assert!(err.is_unreachable());

    let silent = dir.path().join("silent.sock");
    let _listener = UnixListener::bind(&silent).unwrap();
    let options = EngineOptions { call_timeout_ms: 300, ..EngineOptions::default() };
    let err = DockerEngine::connect_with(&silent, options).await.unwrap_err();
    assert_eq!(err.to_string(), format!("disabled: no Docker engine at {}", silent.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciler_survives_the_engine_going_away_and_coming_back() {
    // Proves the loop reports the engine unreachable, backs off, then reconnects (a fresh
    // negotiation) and repairs what changed while it was away.
    DockerEngine::connect(Path::new(SOCKET)).await.unwrap_or_else(|e| {
        panic!("this test needs the Docker engine at {SOCKET} to answer (start dockerd): {e}")
    });
    build_image();
    let node = unique_node("sdr");
    let _cleanup = Cleanup::new(&node);
    let dir = tempfile::tempdir().unwrap();
    let relay_path = dir.path().join("docker.sock");
    let relay = Relay::start(&relay_path);
    let engine = DockerEngine::connect(&relay_path).await.unwrap();

    let (desired_tx, desired_rx) = watch::channel(Desired::nothing(0));
    let (status_tx, mut status_rx) = watch::channel(StackStatus::new(&node));
    let shutdown = CancellationToken::new();
    // Backoff from 100 ms so the test does not wait long for the retry after the engine returns.
    let options =
        ReconcileOptions { backoff_min_ms: 100, backoff_max_ms: 2_000, ..ReconcileOptions::DEFAULT };
    let reconciler = tokio::spawn(run_reconciler_with(
        engine,
        node.clone(),
        desired_rx,
        status_tx,
        shutdown.clone(),
        options,
    ));

    let t = unix_now_ms();
    desired_tx
        .send_replace(Desired::from_stack(&stacks(COMPOSE, &node, "proxy", "server-a.test", 1).proxy, 1));
    let status = converged(&mut status_rx, "proxy@1", t).await;
    assert_eq!(status.containers.len(), 1);
    let first_id = running_ids(&node);

    // The engine goes away; meanwhile the container is removed behind muster's back.
    relay.stop();
    let out = Command::new("docker").args(["rm", "-f", &first_id]).output().unwrap();
    assert!(out.status.success(), "docker rm -f: {}", String::from_utf8_lossy(&out.stderr));
    let down = wait_status(&mut status_rx, "the engine reported unreachable", |s| {
        s.engine == "unreachable" && s.failures_in_a_row >= 2
    })
    .await;
    println!(
        "while away: {} failures in a row, last error: {}",
        down.failures_in_a_row,
        down.last_error.unwrap().message
    );

    // It comes back: the loop reconnects and recreates the container.
    let back = unix_now_ms();
    let relay = Relay::start(&relay_path);
    let status = converged(&mut status_rx, "proxy@1", back).await;
    assert_eq!(status.engine, "connected");
    let second_id = running_ids(&node);
    assert!(!second_id.is_empty() && second_id != first_id, "a new container replaced the removed one");
    assert!(status
        .containers
        .iter()
        .all(|c| c.state == "running" && c.stack == StackKind::Proxy.to_string()));

    let t = unix_now_ms();
    desired_tx.send_replace(Desired::nothing(2));
    converged(&mut status_rx, "nothing", t).await;
    shutdown.cancel();
    tokio::time::timeout(WAIT, reconciler).await.expect("the loop stops on shutdown").unwrap();
    relay.stop();
}

/// The id of the one running container of `node`, through the real engine.
fn running_ids(node: &str) -> String {
    let out = Command::new("docker")
        .args(["ps", "-q", "--no-trunc", "--filter", &format!("label=muster.node={node}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
