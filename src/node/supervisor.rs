//! The node's wiring of the stack supervisor: leadership → [`supervise::run`] → desired stack
//! → the Docker reconcile loop, the hook runner, and the drain of a server stack on a graceful
//! stop.

use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::consensus::leadership::{Leadership, Role as LeaderRole};
use crate::consensus::raft::Consensus;
use crate::supervisor::hooks::{self, HookScripts};
use crate::supervisor::plan::Desired;
use crate::supervisor::supervise::{self, Channels, SupervisorConfig, SupervisorStatus};
use crate::supervisor::transition::{LeaderView, ServerRef, ViewRole};
use crate::supervisor::watchdog::{Fence, FENCE_RENEW, FENCE_WINDOW};
use crate::supervisor::{
    run_reconciler_gated, DockerEngine, EngineOptions, ReconcileOptions, StackKind, StackStatus,
};

/// Beyond the stop timeout, what a new server's stack waits for a previous server's stop to
/// be seen through (the reconcile loop's wake-up and docker's own latency).
const STACK_DELAY_MARGIN: Duration = Duration::from_secs(2);
/// Beyond the stop timeout, how long a stopping server waits for its stack to be gone.
const DRAIN_MARGIN: Duration = Duration::from_secs(5);

/// What the node keeps of the supervisor.
pub(super) struct Supervisor {
    pub status: watch::Receiver<SupervisorStatus>,
    desired: watch::Sender<Desired>,
    observed: Option<watch::Receiver<StackStatus>>,
    /// Stops the front half (no new desired stacks) before the drain.
    front: CancellationToken,
    stop_timeout: Duration,
}

pub(super) fn config(config: &Config, api_addr: &str) -> SupervisorConfig {
    SupervisorConfig {
        node: config.node.clone(),
        me: ServerRef::new(&config.node, api_addr),
        agent: config.role == crate::config::Role::Agent,
        stack_file: config.stack_file.clone(),
        env: std::env::vars().collect(),
        stack_delay: Duration::from_millis(config.stack_stop_timeout_ms) + STACK_DELAY_MARGIN,
    }
}

/// Reads the stack file as the server would (so an error in it stops the node before it joins
/// anything) and logs what it holds.
pub(super) fn check(config: &Config) -> anyhow::Result<()> {
    let cfg = self::config(config, &config.http_addr.to_string());
    let stacks = cfg.check().with_context(|| {
        let path = config.stack_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        format!("--stack-file {path}")
    })?;
    if let Some(stacks) = stacks {
        tracing::info!(
            server_services = stacks.server.services.len(),
            proxy_services = stacks.proxy.services.len(),
            "supervisor: stack file read"
        );
    }
    Ok(())
}

/// Starts the supervisor: the hook runner, the leadership follower and, with a stack file and
/// a Docker engine, the reconcile loop. Without an engine it says so once and the node works
/// on (hooks still run).
pub(super) async fn start<M: crate::consensus::Machine>(
    config: &Config,
    api_addr: &str,
    consensus: &Consensus<M>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> Supervisor {
    let cfg = self::config(config, api_addr);
    let front = shutdown.child_token();
    let scripts = HookScripts {
        on_promote: config.hooks.on_promote.clone(),
        on_demote: config.hooks.on_demote.clone(),
        on_server_change: config.hooks.on_server_change.clone(),
    };
    let (queue, hook_task, hook_runs) = hooks::runner(config.node.clone(), scripts, shutdown.clone());
    tracker.spawn(hook_task);
    let mut initial = supervise::initial_status(&cfg);
    let (desired_tx, desired_rx) = watch::channel(Desired::nothing(0));
    let stop_timeout = Duration::from_millis(config.stack_stop_timeout_ms);
    let mut observed = None;
    if cfg.stack_file.is_some() {
        let options = EngineOptions {
            stop_timeout_s: u32::try_from(stop_timeout.as_secs()).unwrap_or(u32::MAX),
            ..EngineOptions::default()
        };
        match DockerEngine::connect_with(&config.docker_socket, options).await {
            Ok(engine) => {
                initial.docker =
                    format!("connected to {} (API {})", config.docker_socket.display(), engine.api_version());
                tracing::info!(socket = %config.docker_socket.display(), api = %engine.api_version(),
                    "supervisor: Docker engine connected");
                match crate::supervisor::watchdog::spawn(
                    &config.node,
                    &config.docker_socket,
                    options.stop_timeout_s,
                ) {
                    Ok(mut child) => {
                        tracing::info!(
                            pid = child.id(),
                            "supervisor: watchdog started (stops the server stack if this process dies or hangs)"
                        );
                        match child.stdin.take().map(tokio::process::ChildStdin::from_std) {
                            Some(Ok(stdin)) => {
                                tracker.spawn(renew_fence(stdin, consensus.leadership(), shutdown.clone()));
                            }
                            Some(Err(e)) => tracing::warn!(error = %e,
                                "supervisor: cannot write to the watchdog; a hung node's server stack would keep running"),
                            None => tracing::warn!(
                                "supervisor: the watchdog has no stdin; a hung node's server stack would keep running"),
                        }
                    }
                    Err(e) => tracing::warn!(error = %e,
                        "supervisor: cannot start the watchdog; a crash of this process would leave its server stack running"),
                }
                let (tx, rx) = watch::channel(StackStatus::new(&config.node));
                // The loop stops with the node, after the drain.
                let gate = Some(consensus.quorum_lease_check());
                tracker.spawn(run_reconciler_gated(
                    engine,
                    config.node.clone(),
                    desired_rx,
                    tx,
                    shutdown.clone(),
                    ReconcileOptions::DEFAULT,
                    gate,
                ));
                observed = Some(rx);
            }
            Err(e) => {
                initial.docker = e.to_string();
                tracing::warn!(reason = %e.detailed(),
                    "supervisor: {e}; the node works on without stacks (hooks still run)");
            }
        }
    } else {
        tracing::info!("supervisor: no --stack-file; transition hooks only");
    }
    let (status_tx, status_rx) = watch::channel(initial);
    let views = leader_views(consensus.leadership(), tracker, front.clone());
    let ch = Channels {
        leader: views,
        desired: desired_tx.clone(),
        status: status_tx,
        hooks: queue,
        hook_runs,
        observed: observed.clone(),
    };
    tracker.spawn(supervise::run(cfg, ch, front.clone()));
    Supervisor { status: status_rx, desired: desired_tx, observed, front, stop_timeout }
}

impl Supervisor {
    /// On a graceful stop: no new stacks from now on; a server stack is stopped (and this
    /// waits, bounded, until it is gone) because the next server starts its own. A proxy stack
    /// keeps running through a restart of the node.
    pub(super) fn stop_front(&self) -> bool {
        self.front.cancel();
        let serving = self.status.borrow().want.stack == Some(StackKind::Server);
        if serving {
            let epoch = self.desired.borrow().epoch;
            tracing::info!("supervisor: stopping the server stack before the node stops");
            self.desired.send_replace(Desired::nothing(epoch));
        }
        serving
    }

    /// Waits until the reconcile loop has removed the server stack, at most the stop timeout
    /// plus a margin.
    pub(super) async fn drained(&self) {
        let Some(mut observed) = self.observed.clone() else { return };
        let drained = {
            let wait = observed.wait_for(|s| s.desired_stack.is_none() && s.converged);
            matches!(tokio::time::timeout(self.stop_timeout + DRAIN_MARGIN, wait).await, Ok(Ok(_)))
        };
        if drained {
            tracing::info!("supervisor: server stack stopped");
        } else {
            tracing::warn!("supervisor: the server stack did not stop in time; the next server waits for it");
        }
    }
}

/// Tells the watchdog, every [`FENCE_RENEW`], whether this node is the server (see
/// `supervisor::watchdog`): if the node hangs while serving, the renewals stop and the
/// watchdog stops the server stack. On shutdown it says `rest`: the drain stops the stack.
async fn renew_fence(
    mut stdin: tokio::process::ChildStdin,
    leadership: watch::Receiver<Leadership>,
    shutdown: CancellationToken,
) {
    use tokio::io::AsyncWriteExt as _;
    let mut tick = tokio::time::interval(FENCE_RENEW);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        let serving = !stopping && leadership.borrow().role == LeaderRole::Server;
        let line = Fence::line(serving, FENCE_WINDOW);
        let write = tokio::time::timeout(FENCE_RENEW, stdin.write_all(line.as_bytes())).await;
        if !matches!(write, Ok(Ok(()))) {
            tracing::warn!("supervisor: the watchdog stopped reading its fence; a hung node's server stack would keep running");
            return;
        }
        if stopping {
            return;
        }
    }
}

/// The leadership reduced to what the supervisor needs, on a watch of its own.
fn leader_views(
    mut leadership: watch::Receiver<Leadership>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> watch::Receiver<LeaderView> {
    let view = |l: &Leadership| LeaderView {
        role: match l.role {
            LeaderRole::Server => ViewRole::Server,
            LeaderRole::Proxy => ViewRole::Proxy,
            LeaderRole::Unknown => ViewRole::Unknown,
        },
        term: l.term,
        leader_name: l.leader_name.clone(),
        leader_addr: l.leader_addr.clone(),
    };
    let (tx, rx) = watch::channel(view(&leadership.borrow_and_update()));
    tracker.spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = leadership.changed() => if r.is_err() { return },
            }
            let v = view(&leadership.borrow_and_update());
            tx.send_if_modified(|old| {
                let changed = *old != v;
                *old = v;
                changed
            });
        }
    });
    rx
}
