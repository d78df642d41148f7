//! The reconcile loop: each tick observes this node's containers, plans with the pure
//! [`plan`], executes the actions with the [`DockerEngine`] and publishes a [`StackStatus`].
//! A tick runs when the desired stack changes, when Docker reports a container event, and
//! every `tick_interval_ms` regardless. A tick that acted is followed at once by another
//! (bounded), so a stack switch runs stop → remove → create without waiting.
//!
//! Failures back off exponentially (`backoff_min_ms` doubling to `backoff_max_ms`, one log
//! line per failure); an unreachable engine is connected to again, with a fresh API version
//! negotiation, so the loop survives a Docker daemon restart.
//!
//! Shutdown leaves the containers running unless `Desired` says no stack: muster restarting
//! (an upgrade, a crash, a config change) must not take the stack down with it, and fencing
//! does not depend on this process stopping containers on the way out (a node that lost
//! leadership publishes `Desired::nothing` while it runs). To drain a host on purpose, publish
//! `Desired::nothing` before cancelling; the loop then removes everything (bounded by
//! `shutdown_drain_ms`) before it returns.
//!
//! Must not import `node`, `config`, `consensus` or `api`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt as _, StreamExt as _};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::docker::{DockerEngine, DockerError, EventStream, ExecuteContext};
use super::naming::network_name;
use super::plan::{plan, Action, Desired, PlanLimits};
use super::spec::StackKind;

/// Asked right before the loop creates or starts a server-stack container: whether this node
/// may serve at this instant (the node's quorum lease). A desired server stack can be stale —
/// a node frozen while it served wakes with its old `Desired` before its leadership catches
/// up — so the gate is asked at the moment of acting, not when `Desired` was published.
pub type ServeGate = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;
use super::status::StackStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileOptions {
    /// A tick at least this often, events or not (catches anything an event missed).
    pub tick_interval_ms: u64,
    /// The first retry delay after a failure; doubles per failure in a row...
    pub backoff_min_ms: u64,
    /// ...up to this.
    pub backoff_max_ms: u64,
    /// Ticks that acted, run back to back before the loop waits for a wake-up again.
    pub ticks_in_a_row_max: u32,
    /// Events drained after a wake-up before the tick (one tick serves a burst).
    pub events_per_wake_max: usize,
    /// How long shutdown keeps reconciling when `Desired` says no stack.
    pub shutdown_drain_ms: u64,
    pub limits: PlanLimits,
}

impl ReconcileOptions {
    /// 2 s ticks bound how stale the status is; 0.5 s → 30 s backoff retries a hiccup quickly
    /// and a dead engine twice a minute; 64 back-to-back ticks cover a 256-service stack at
    /// 16 actions a tick; a drain of 60 s covers stopping a stack with 10 s stop timeouts.
    pub const DEFAULT: ReconcileOptions = ReconcileOptions {
        tick_interval_ms: 2_000,
        backoff_min_ms: 500,
        backoff_max_ms: 30_000,
        ticks_in_a_row_max: 64,
        events_per_wake_max: 256,
        shutdown_drain_ms: 60_000,
        limits: PlanLimits::DEFAULT,
    };
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        ReconcileOptions::DEFAULT
    }
}

/// Runs the loop with [`ReconcileOptions::DEFAULT`] until `shutdown` is cancelled or the
/// desired sender is dropped.
pub async fn run_reconciler(
    engine: DockerEngine,
    node: String,
    desired_rx: watch::Receiver<Desired>,
    status_tx: watch::Sender<StackStatus>,
    shutdown: CancellationToken,
) {
    run_reconciler_with(engine, node, desired_rx, status_tx, shutdown, ReconcileOptions::DEFAULT).await;
}

/// Exponential backoff between `min` and `max`.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    next_ms: u64,
    min_ms: u64,
    max_ms: u64,
}

impl Backoff {
    fn new(min_ms: u64, max_ms: u64) -> Self {
        Backoff { next_ms: min_ms, min_ms, max_ms: max_ms.max(min_ms) }
    }

    fn failed(&mut self) -> Duration {
        let delay = self.next_ms;
        self.next_ms = self.next_ms.saturating_mul(2).min(self.max_ms);
        Duration::from_millis(delay)
    }

    fn reset(&mut self) {
        self.next_ms = self.min_ms;
    }
}

/// The loop's state between ticks.
struct Loop {
    engine: DockerEngine,
    node: String,
    status: StackStatus,
    status_tx: watch::Sender<StackStatus>,
    options: ReconcileOptions,
    backoff: Backoff,
    reconnect: bool,
    events: Option<EventStream>,
    events_retry_at: Instant,
    /// A transition acted: once converged, remove the networks it left unused.
    prune_pending: bool,
    gate: Option<ServeGate>,
}

/// Runs the loop with `options` until `shutdown` is cancelled or the desired sender is dropped.
/// A tick in progress finishes first (each Docker call is bounded by its deadline).
pub async fn run_reconciler_with(
    engine: DockerEngine,
    node: String,
    desired_rx: watch::Receiver<Desired>,
    status_tx: watch::Sender<StackStatus>,
    shutdown: CancellationToken,
    options: ReconcileOptions,
) {
    run_reconciler_gated(engine, node, desired_rx, status_tx, shutdown, options, None).await;
}

/// [`run_reconciler_with`] that asks `gate` before it creates or starts any server-stack
/// container (stopping and removing never wait for it).
pub async fn run_reconciler_gated(
    engine: DockerEngine,
    node: String,
    mut desired_rx: watch::Receiver<Desired>,
    status_tx: watch::Sender<StackStatus>,
    shutdown: CancellationToken,
    options: ReconcileOptions,
    gate: Option<ServeGate>,
) {
    let status = StackStatus::new(&node);
    let mut lp = Loop {
        engine,
        node,
        status,
        status_tx,
        options,
        backoff: Backoff::new(options.backoff_min_ms, options.backoff_max_ms),
        reconnect: false,
        events: None,
        events_retry_at: Instant::now(),
        prune_pending: false,
        gate,
    };
    tracing::info!(node = %lp.node, api = %lp.engine.api_version(), "supervisor: reconcile loop started");
    let tick_interval = Duration::from_millis(options.tick_interval_ms);
    let mut in_a_row: u32 = 0;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let desired = desired_rx.borrow_and_update().clone();
        match lp.tick(&desired).await {
            Ok(acted) => {
                lp.backoff.reset();
                if acted {
                    lp.prune_pending = true;
                } else if lp.prune_pending && lp.status.converged {
                    lp.prune_networks(&desired).await;
                }
                if acted && in_a_row < options.ticks_in_a_row_max {
                    in_a_row += 1;
                    continue;
                }
            }
            Err(delay) => {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
                continue;
            }
        }
        in_a_row = 0;
        lp.open_events();
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = desired_rx.changed() => {
                if changed.is_err() {
                    tracing::info!(node = %lp.node, "supervisor: desired sender dropped, stopping the reconcile loop");
                    break;
                }
            }
            event = next_event(&mut lp.events) => lp.on_event(event),
            () = tokio::time::sleep(tick_interval) => {}
        }
    }
    let last = desired_rx.borrow().clone();
    lp.shut_down(&last).await;
}

/// The next event, or never when there is no stream.
async fn next_event(
    events: &mut Option<EventStream>,
) -> Option<Result<super::docker::ContainerEvent, DockerError>> {
    match events {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

impl Loop {
    /// One observe → plan → execute. `Ok(acted)`, or the delay before the next try.
    async fn tick(&mut self, desired: &Desired) -> Result<bool, Duration> {
        match self.try_tick(desired).await {
            Ok(acted) => {
                self.publish();
                Ok(acted)
            }
            Err(error) => {
                let unreachable = error.is_unreachable();
                let delay = self.backoff.failed();
                let message = error.detailed();
                tracing::warn!(
                    node = %self.node,
                    error = %message,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    failures_in_a_row = self.status.failures_in_a_row + 1,
                    "supervisor: reconcile failed"
                );
                self.status.record_error(message, unreachable, unix_now_ms());
                crate::metrics::SUPERVISOR.docker_errors.inc();
                if unreachable {
                    self.reconnect = true;
                    self.events = None;
                }
                self.publish();
                Err(delay)
            }
        }
    }

    async fn try_tick(&mut self, desired: &Desired) -> Result<bool, DockerError> {
        if self.reconnect {
            self.engine.reconnect().await?;
            self.reconnect = false;
            tracing::info!(node = %self.node, api = %self.engine.api_version(), "supervisor: Docker engine reachable again");
        }
        let observed = self.engine.observe(&self.node).await?;
        let now_ms = unix_now_ms();
        let mut actions = plan(desired, &observed, now_ms, &self.options.limits);
        let starts = |a: &Action| matches!(a, Action::Create { .. } | Action::Start { .. });
        let serving = desired.stack == Some(StackKind::Server);
        if serving && actions.iter().any(starts) && self.gate.as_ref().is_some_and(|g| !g()) {
            tracing::warn!(node = %self.node,
                "supervisor: not starting server containers: this node does not hold its quorum lease right now \
                 (its view of leadership is stale); stops and removals go ahead");
            actions.retain(|a| !starts(a));
        }
        self.status.record_tick(desired, &observed, &actions, now_ms);
        if actions.is_empty() {
            return Ok(false);
        }
        self.publish();
        let ctx = ExecuteContext { node: &self.node, desired, observed: &observed };
        self.engine.execute(&actions, &ctx).await?;
        Ok(true)
    }

    /// Removes this node's networks the desired stack does not use (after a stack switch, or
    /// when no stack is wanted). A failure is logged and tried again after the next transition.
    async fn prune_networks(&mut self, desired: &Desired) {
        self.prune_pending = false;
        let keep: Vec<String> = match desired.stack {
            Some(stack) => desired.networks.iter().map(|n| network_name(&self.node, stack, n)).collect(),
            None => Vec::new(),
        };
        match self.engine.prune_networks(&self.node, &keep).await {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(node = %self.node, networks = ?removed, "supervisor: removed networks no stack uses");
            }
            Ok(_) => {}
            Err(e) => {
                crate::metrics::SUPERVISOR.docker_errors.inc();
                tracing::warn!(node = %self.node, error = %e.detailed(), "supervisor: cannot remove unused networks")
            }
        }
    }

    fn publish(&self) {
        self.status_tx.send_replace(self.status.clone());
    }

    /// (Re)opens the event stream, at most once per tick interval.
    fn open_events(&mut self) {
        if self.events.is_none() && !self.reconnect && Instant::now() >= self.events_retry_at {
            self.events = Some(self.engine.events(&self.node));
            self.events_retry_at = Instant::now() + Duration::from_millis(self.options.tick_interval_ms);
        }
    }

    /// A wake-up by the event stream: drain what else is ready, drop a broken stream.
    fn on_event(&mut self, first: Option<Result<super::docker::ContainerEvent, DockerError>>) {
        let mut item = first;
        for _ in 0..self.options.events_per_wake_max {
            match item {
                Some(Ok(event)) => {
                    tracing::debug!(node = %self.node, container.id = %event.id, kind = ?event.kind, "supervisor: container event");
                }
                Some(Err(error)) => {
                    tracing::debug!(node = %self.node, %error, "supervisor: event stream broke; reopening later");
                    self.events = None;
                    return;
                }
                None => {
                    self.events = None;
                    return;
                }
            }
            let Some(stream) = self.events.as_mut() else { return };
            match stream.next().now_or_never() {
                Some(next) => item = next,
                None => return,
            }
        }
    }

    /// Leaves the containers running, or drains them when no stack is desired.
    async fn shut_down(&mut self, desired: &Desired) {
        if desired.stack.is_some() {
            tracing::info!(node = %self.node, "supervisor: stopping the reconcile loop; containers keep running");
            return;
        }
        let deadline = Instant::now() + Duration::from_millis(self.options.shutdown_drain_ms);
        for _ in 0..self.options.ticks_in_a_row_max {
            if Instant::now() >= deadline {
                break;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, self.tick(desired)).await {
                Ok(Ok(true)) => continue,
                Ok(Ok(false)) if self.status.converged => {
                    self.prune_networks(desired).await;
                    break;
                }
                Ok(Ok(false)) => tokio::time::sleep(Duration::from_millis(self.options.backoff_min_ms)).await,
                Ok(Err(delay)) => tokio::time::sleep(delay.min(remaining)).await,
                Err(_) => break,
            }
        }
        tracing::info!(node = %self.node, drained = self.status.converged, "supervisor: reconcile loop stopped");
    }
}

/// Wall-clock unix ms: compared with Docker's own StartedAt/FinishedAt and shown to people;
/// nothing here expires by it.
fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        // Proves the retry delays 0.5 s, 1 s, 2 s ... capped at 30 s, and back to 0.5 s.
        let mut b = Backoff::new(500, 30_000);
        let delays: Vec<u64> = (0..9).map(|_| b.failed().as_millis() as u64).collect();
        assert_eq!(delays, [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
        b.reset();
        assert_eq!(b.failed(), Duration::from_millis(500));
    }
}
