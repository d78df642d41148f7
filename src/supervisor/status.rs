//! [`StackStatus`]: what the reconcile loop reports about this node's stack (for the API and
//! for tests): what is desired, what Docker shows, whether the two agree, the last transition
//! between them with its timing, and the last error. Pure: the loop feeds it each tick's
//! desired/observed/actions with `now_ms`. Must not import anything outside `supervisor`.

use std::collections::BTreeSet;

use serde::Serialize;

use super::plan::{Action, ContainerState, Desired, Health, ObservedContainer};
use super::spec::RestartPolicy;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StackStatus {
    pub node: String,
    /// `server`, `proxy`, or `None` when no stack is wanted here.
    pub desired_stack: Option<String>,
    pub desired_epoch: u64,
    /// The last tick planned nothing and every desired service runs (or nothing runs, when no
    /// stack is wanted).
    pub converged: bool,
    /// `connected`, or `unreachable` while the Docker engine does not answer.
    pub engine: String,
    pub containers: Vec<ContainerStatus>,
    pub last_transition: Option<Transition>,
    pub last_error: Option<ErrorStatus>,
    pub failures_in_a_row: u32,
    pub ticks: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerStatus {
    pub service: String,
    pub stack: String,
    pub epoch: u64,
    pub state: String,
    pub health: String,
    pub name: String,
}

/// One move of the host from what ran to what is desired: it starts with the first tick that
/// plans actions and finishes with the first tick that finds the stack converged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    /// What ran when it began, e.g. `server@1`, `server@1+proxy@1` or `nothing`.
    pub from: String,
    /// What was desired, e.g. `server@2` or `nothing`.
    pub to: String,
    /// The reason of its first action, e.g. `epoch 1 is stale (desired 2)`.
    pub reason: String,
    pub started_unix_ms: u64,
    pub finished_unix_ms: Option<u64>,
    pub duration_ms: Option<u64>,
    /// Actions planned during it.
    pub actions: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorStatus {
    pub message: String,
    pub at_unix_ms: u64,
}

/// `server@2` for a desired stack, `nothing` for none.
pub fn desired_label(desired: &Desired) -> String {
    match desired.stack {
        Some(stack) => format!("{stack}@{}", desired.epoch),
        None => "nothing".to_string(),
    }
}

/// The distinct stack@epoch of the live containers, or `nothing`.
pub fn observed_label(observed: &[ObservedContainer]) -> String {
    let live: BTreeSet<String> =
        observed.iter().filter(|c| c.state.is_live()).map(|c| format!("{}@{}", c.stack, c.epoch)).collect();
    if live.is_empty() {
        "nothing".to_string()
    } else {
        live.into_iter().collect::<Vec<_>>().join("+")
    }
}

/// Nothing left to do and what is desired is what runs.
pub fn is_converged(desired: &Desired, observed: &[ObservedContainer], actions: &[Action]) -> bool {
    if !actions.is_empty() {
        return false;
    }
    let Some(stack) = desired.stack else { return observed.is_empty() };
    desired.services.iter().all(|ds| {
        let one_shot = matches!(ds.spec.restart, RestartPolicy::No | RestartPolicy::OnFailure { .. });
        observed.iter().any(|c| {
            c.stack == stack
                && c.epoch == desired.epoch
                && c.service == ds.spec.name
                && c.spec_hash == ds.spec_hash
                && (c.state == ContainerState::Running
                    || (one_shot && c.state == ContainerState::Exited { code: 0 }))
        })
    })
}

impl StackStatus {
    pub fn new(node: &str) -> Self {
        StackStatus { node: node.to_string(), engine: "connected".to_string(), ..StackStatus::default() }
    }

    /// One successful observation and its plan.
    pub fn record_tick(
        &mut self,
        desired: &Desired,
        observed: &[ObservedContainer],
        actions: &[Action],
        now_ms: u64,
    ) {
        self.ticks = self.ticks.saturating_add(1);
        self.engine = "connected".to_string();
        self.failures_in_a_row = 0;
        self.desired_stack = desired.stack.map(|s| s.to_string());
        self.desired_epoch = desired.epoch;
        self.containers = observed.iter().map(container_status).collect();
        self.converged = is_converged(desired, observed, actions);
        let to = desired_label(desired);
        let open = self.last_transition.as_ref().is_some_and(|t| t.finished_unix_ms.is_none() && t.to == to);
        if !actions.is_empty() && !open {
            self.last_transition = Some(Transition {
                from: observed_label(observed),
                to,
                reason: actions.first().map(|a| a.reason().to_string()).unwrap_or_default(),
                started_unix_ms: now_ms,
                finished_unix_ms: None,
                duration_ms: None,
                actions: 0,
            });
        }
        if let Some(t) = self.last_transition.as_mut().filter(|t| t.finished_unix_ms.is_none()) {
            t.actions = t.actions.saturating_add(actions.len() as u64);
            if self.converged {
                t.finished_unix_ms = Some(now_ms);
                t.duration_ms = Some(now_ms.saturating_sub(t.started_unix_ms));
            }
        }
    }

    pub fn record_error(&mut self, message: String, unreachable: bool, now_ms: u64) {
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        self.converged = false;
        if unreachable {
            self.engine = "unreachable".to_string();
        }
        self.last_error = Some(ErrorStatus { message, at_unix_ms: now_ms });
    }
}

fn container_status(c: &ObservedContainer) -> ContainerStatus {
    let state = match c.state {
        ContainerState::Running => "running".to_string(),
        ContainerState::Restarting => "restarting".to_string(),
        ContainerState::Paused => "paused".to_string(),
        ContainerState::Created => "created".to_string(),
        ContainerState::Exited { code } => format!("exited({code})"),
        ContainerState::Dead => "dead".to_string(),
    };
    let health = match c.health {
        Health::NoCheck => "none",
        Health::Starting => "starting",
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
    };
    ContainerStatus {
        service: c.service.clone(),
        stack: c.stack.to_string(),
        epoch: c.epoch,
        state,
        health: health.to_string(),
        name: c.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::plan::{plan, DesiredService, PlanLimits};
    use crate::supervisor::spec::{ServiceSpec, StackKind};

    fn desired(epoch: u64) -> Desired {
        let spec = ServiceSpec {
            name: "db".into(),
            image: "muster:dev".into(),
            command: None,
            entrypoint: None,
            env: Default::default(),
            ports: Vec::new(),
            mounts: Vec::new(),
            networks: vec!["default".into()],
            labels: Default::default(),
            restart: RestartPolicy::UnlessStopped,
            healthcheck: None,
            depends_on: Vec::new(),
            init: false,
        };
        Desired {
            stack: Some(StackKind::Server),
            epoch,
            services: vec![DesiredService::new(spec)],
            ..Desired::default()
        }
    }

    fn running(d: &Desired, epoch: u64) -> ObservedContainer {
        ObservedContainer {
            id: format!("id-{epoch}"),
            name: "muster-a-server-db".into(),
            service: "db".into(),
            stack: StackKind::Server,
            epoch,
            spec_hash: d.services[0].spec_hash.clone(),
            state: ContainerState::Running,
            health: Health::NoCheck,
            since_ms: 0,
        }
    }

    #[test]
    fn a_transition_opens_with_the_first_actions_and_closes_when_converged() {
        // Proves from/to/reason, the action count and the duration of an epoch change.
        let (d1, d2) = (desired(1), desired(2));
        let mut status = StackStatus::new("a");
        let mut observed = vec![running(&d1, 1)];
        let actions = plan(&d2, &observed, 10, &PlanLimits::DEFAULT);
        status.record_tick(&d2, &observed, &actions, 1_000);
        observed[0].state = ContainerState::Exited { code: 0 };
        let actions = plan(&d2, &observed, 10, &PlanLimits::DEFAULT);
        status.record_tick(&d2, &observed, &actions, 1_400);
        assert!(!status.converged);
        let observed = vec![running(&d2, 2)];
        status.record_tick(&d2, &observed, &plan(&d2, &observed, 10, &PlanLimits::DEFAULT), 1_750);
        let t = status.last_transition.clone().unwrap();
        assert_eq!((t.from.as_str(), t.to.as_str()), ("server@1", "server@2"));
        assert_eq!(t.reason, "epoch 1 is stale (desired 2)");
        assert_eq!((t.actions, t.duration_ms, t.finished_unix_ms), (3, Some(750), Some(1_750)));
        assert!(status.converged);
    }

    #[test]
    fn nothing_desired_converges_only_when_no_container_is_left() {
        // Proves Desired::nothing is not converged while a stopped container still exists.
        let d = desired(1);
        let mut stopped = running(&d, 1);
        stopped.state = ContainerState::Exited { code: 0 };
        assert!(!is_converged(&Desired::nothing(1), &[stopped.clone()], &[]));
        assert!(is_converged(&Desired::nothing(1), &[], &[]));
        assert_eq!(observed_label(&[stopped, running(&d, 3)]), "server@3");
        assert_eq!(desired_label(&Desired::nothing(4)), "nothing");
    }
}
