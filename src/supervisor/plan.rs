//! The pure reconcile planner: from the desired stack and the containers muster owns on this
//! host, the next bounded list of Docker actions. No Docker, no clock (time is `now_ms`), no
//! tokio; the driver executes the actions in order and stops at the first failure, then the
//! next tick plans again from what it observes.
//!
//! Order within a tick:
//! 1. **Fencing.** Containers of the wrong stack or the wrong epoch (or any container when no
//!    stack is wanted) are stopped. While any of them is still live (running, restarting or
//!    paused) the plan holds only those stops: nothing is created until the old stack is down,
//!    so a stack switch or a new epoch never overlaps the old one. Once they are stopped they
//!    are removed, in the same tick as whatever follows.
//! 2. **Clean-up.** Containers of services no longer in the stack, and duplicates of a
//!    service, are stopped and removed.
//! 3. **Converge**, one service at a time in depends_on order: a changed spec hash is
//!    recreated (stop, remove, create), a missing container created, an exited or dead one
//!    repaired (remove, create) once it has been down for `repair_delay_ms`, a created one
//!    started. A service is (re)created only when its dependencies are ready: started (or
//!    being started earlier in this tick) for `service_started`, observed healthy for
//!    `service_healthy`; otherwise its current container is left as it is until a later tick.
//!
//! At most `actions_per_tick_max` actions are returned. Must not import anything outside
//! `supervisor`.

use std::collections::BTreeMap;
use std::fmt;

use super::spec::{Condition, NetworkSpec, RestartPolicy, ServiceSpec, StackKind, StackSpec, VolumeSpec};

/// A service the stack should run, with its spec hash computed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredService {
    pub spec: ServiceSpec,
    pub spec_hash: String,
}

impl DesiredService {
    pub fn new(spec: ServiceSpec) -> Self {
        let spec_hash = spec.spec_hash();
        DesiredService { spec, spec_hash }
    }
}

/// What should run on this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// `None`: run nothing (e.g. fenced out, or shutting down).
    pub stack: Option<StackKind>,
    /// The fencing epoch every container must carry; others are stopped first.
    pub epoch: u64,
    /// In depends_on order (as [`StackSpec::services`] is).
    pub services: Vec<DesiredService>,
    /// The stack's networks and volumes (as in [`StackSpec`]): the planner ignores them; the
    /// driver makes sure they exist before it creates a container that uses them.
    pub networks: Vec<NetworkSpec>,
    pub volumes: Vec<VolumeSpec>,
}

impl Desired {
    pub fn nothing(epoch: u64) -> Self {
        Desired { stack: None, epoch, ..Desired::default() }
    }

    pub fn from_stack(stack: &StackSpec, epoch: u64) -> Self {
        Desired {
            stack: Some(stack.name),
            epoch,
            services: stack.services.iter().cloned().map(DesiredService::new).collect(),
            networks: stack.networks.clone(),
            volumes: stack.volumes.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Running,
    Restarting,
    Paused,
    Created,
    Exited { code: i64 },
    Dead,
}

impl ContainerState {
    /// Running, restarting or paused: holds its ports and may act; must be stopped to fence.
    pub fn is_live(self) -> bool {
        matches!(self, ContainerState::Running | ContainerState::Restarting | ContainerState::Paused)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The container has no healthcheck.
    NoCheck,
    Starting,
    Healthy,
    Unhealthy,
}

/// A container muster owns on this host, read from its `muster.*` labels and Docker's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedContainer {
    pub id: String,
    pub name: String,
    pub service: String,
    pub stack: StackKind,
    pub epoch: u64,
    pub spec_hash: String,
    pub state: ContainerState,
    pub health: Health,
    /// When the container entered `state` (Docker's StartedAt/FinishedAt), unix ms.
    pub since_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    /// The most actions one tick returns; the rest waits for the next tick.
    pub actions_per_tick_max: usize,
    /// How long an exited or dead container stays before it is repaired (a crash-looping
    /// service is recreated at most once per this delay plus its run time).
    pub repair_delay_ms: u64,
}

impl PlanLimits {
    /// 16 actions cover a whole seed stack's stop+remove+create in a tick or two; 5 s between
    /// repairs keeps a crash loop from hammering Docker.
    pub const DEFAULT: PlanLimits = PlanLimits { actions_per_tick_max: 16, repair_delay_ms: 5_000 };
}

impl Default for PlanLimits {
    fn default() -> Self {
        PlanLimits::DEFAULT
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Stop {
        id: String,
        reason: String,
    },
    Remove {
        id: String,
        reason: String,
    },
    /// Create and start a container for the desired service of that name.
    Create {
        service: String,
        reason: String,
    },
    Start {
        id: String,
        reason: String,
    },
}

impl Action {
    pub fn reason(&self) -> &str {
        match self {
            Action::Stop { reason, .. }
            | Action::Remove { reason, .. }
            | Action::Create { reason, .. }
            | Action::Start { reason, .. } => reason,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Stop { id, reason } => write!(f, "stop {id}: {reason}"),
            Action::Remove { id, reason } => write!(f, "remove {id}: {reason}"),
            Action::Create { service, reason } => write!(f, "create {service}: {reason}"),
            Action::Start { id, reason } => write!(f, "start {id}: {reason}"),
        }
    }
}

/// The actions of one tick, never more than `max`.
struct Out {
    actions: Vec<Action>,
    max: usize,
}

impl Out {
    fn full(&self) -> bool {
        self.actions.len() >= self.max
    }

    fn push(&mut self, action: Action) {
        if !self.full() {
            self.actions.push(action);
        }
    }

    /// Stop (if live) and remove `c`.
    fn retire(&mut self, c: &ObservedContainer, reason: &str) {
        if c.state.is_live() {
            self.push(Action::Stop { id: c.id.clone(), reason: reason.to_string() });
        }
        self.push(Action::Remove { id: c.id.clone(), reason: reason.to_string() });
    }
}

/// Why `c` must go before anything of the desired stack may run, if it must.
fn fence_reason(desired: &Desired, c: &ObservedContainer) -> Option<String> {
    match desired.stack {
        None => Some(format!("no stack is wanted here (container is of the {} stack)", c.stack)),
        Some(stack) if stack != c.stack => {
            Some(format!("the {} stack is not wanted here (desired {stack})", c.stack))
        }
        Some(_) if c.epoch < desired.epoch => {
            Some(format!("epoch {} is stale (desired {})", c.epoch, desired.epoch))
        }
        Some(_) if c.epoch > desired.epoch => {
            Some(format!("epoch {} is not the desired epoch {}", c.epoch, desired.epoch))
        }
        Some(_) => None,
    }
}

/// The next actions that move `observed` toward `desired`; see the module doc for the order.
pub fn plan(
    desired: &Desired,
    observed: &[ObservedContainer],
    now_ms: u64,
    limits: &PlanLimits,
) -> Vec<Action> {
    let mut out = Out { actions: Vec::new(), max: limits.actions_per_tick_max };
    let fenced: Vec<(&ObservedContainer, String)> =
        observed.iter().filter_map(|c| fence_reason(desired, c).map(|r| (c, r))).collect();
    let live: Vec<&(&ObservedContainer, String)> = fenced.iter().filter(|(c, _)| c.state.is_live()).collect();
    if !live.is_empty() {
        for (c, reason) in live {
            out.push(Action::Stop { id: c.id.clone(), reason: reason.clone() });
        }
        return out.actions;
    }
    for (c, reason) in &fenced {
        out.push(Action::Remove { id: c.id.clone(), reason: reason.clone() });
    }
    let Some(stack) = desired.stack else { return out.actions };

    let mut by_service: BTreeMap<&str, Vec<&ObservedContainer>> = BTreeMap::new();
    for c in observed.iter().filter(|c| fence_reason(desired, c).is_none()) {
        by_service.entry(c.service.as_str()).or_default().push(c);
    }
    let mut current: BTreeMap<&str, &ObservedContainer> = BTreeMap::new();
    for (service, mut containers) in by_service {
        let Some(ds) = desired.services.iter().find(|d| d.spec.name == service) else {
            let reason = format!("service {service} is no longer in the {stack} stack");
            containers.iter().for_each(|c| out.retire(c, &reason));
            continue;
        };
        // Keep the best: spec up to date, then live, then the lowest id (deterministic).
        containers.sort_by_key(|c| (c.spec_hash != ds.spec_hash, !c.state.is_live(), c.id.as_str()));
        if let Some((keep, extra)) = containers.split_first() {
            let reason = format!("duplicate container for service {service} (keeping {})", keep.id);
            extra.iter().for_each(|c| out.retire(c, &reason));
            current.insert(service, keep);
        }
    }

    let mut ready: BTreeMap<&str, Readiness> = BTreeMap::new();
    for ds in &desired.services {
        if out.full() {
            break;
        }
        let deps_ready = ds.spec.depends_on.iter().all(|d| {
            let r = ready.get(d.service.as_str()).copied().unwrap_or(Readiness::NotReady);
            r.satisfies(d.condition)
        });
        let r =
            converge(ds, current.get(ds.spec.name.as_str()).copied(), deps_ready, now_ms, limits, &mut out);
        ready.insert(ds.spec.name.as_str(), r);
    }
    out.actions
}

/// Where a service stands for its dependents after this tick's actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readiness {
    NotReady,
    /// Created or started by an earlier action of this tick.
    StartedThisTick,
    Running {
        healthy: bool,
    },
    /// Exited 0 with a restart policy that does not restart it: a finished one-shot.
    Completed,
}

impl Readiness {
    fn satisfies(self, condition: Condition) -> bool {
        match condition {
            Condition::Started => self != Readiness::NotReady,
            Condition::Healthy => self == Readiness::Running { healthy: true },
        }
    }

    fn of(c: &ObservedContainer) -> Readiness {
        match c.state {
            ContainerState::Running => Readiness::Running { healthy: c.health == Health::Healthy },
            _ => Readiness::NotReady,
        }
    }
}

/// One desired service against its current container (if any).
fn converge(
    ds: &DesiredService,
    current: Option<&ObservedContainer>,
    deps_ready: bool,
    now_ms: u64,
    limits: &PlanLimits,
    out: &mut Out,
) -> Readiness {
    let service = ds.spec.name.clone();
    let Some(c) = current else {
        if !deps_ready {
            return Readiness::NotReady;
        }
        out.push(Action::Create { service, reason: "no container yet".to_string() });
        return Readiness::StartedThisTick;
    };
    if c.spec_hash != ds.spec_hash {
        if !deps_ready {
            return Readiness::of(c);
        }
        let reason = format!("spec changed ({} -> {})", c.spec_hash, ds.spec_hash);
        out.retire(c, &reason);
        out.push(Action::Create { service, reason });
        return Readiness::StartedThisTick;
    }
    let one_shot = matches!(ds.spec.restart, RestartPolicy::No | RestartPolicy::OnFailure { .. });
    let reason = match c.state {
        ContainerState::Running | ContainerState::Restarting | ContainerState::Paused => {
            return Readiness::of(c)
        }
        ContainerState::Exited { code: 0 } if one_shot => return Readiness::Completed,
        ContainerState::Created => {
            if !deps_ready {
                return Readiness::NotReady;
            }
            let reason = "container was created but never started".to_string();
            out.push(Action::Start { id: c.id.clone(), reason });
            return Readiness::StartedThisTick;
        }
        ContainerState::Exited { code } => format!("container exited with code {code}"),
        ContainerState::Dead => "container is dead".to_string(),
    };
    if now_ms.saturating_sub(c.since_ms) < limits.repair_delay_ms || !deps_ready {
        return Readiness::NotReady;
    }
    out.retire(c, &reason);
    out.push(Action::Create { service, reason });
    Readiness::StartedThisTick
}
