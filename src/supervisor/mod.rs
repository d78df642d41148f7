//! The Docker supervisor. Pure cores: what the user's compose file asks for ([`compose`]), the
//! plain specs it becomes ([`spec`]), how muster names and labels what it owns ([`naming`]), the
//! reconcile planner between the desired stack and the observed containers ([`plan`]), specs as
//! Docker bodies ([`docker_config`]) and the reported [`status`]. None of them talks to Docker,
//! reads a clock or spawns a task (the only I/O is the thin [`compose::load`] helper).
//!
//! [`transition`] (pure too) turns the leadership this node sees into the stack it wants and
//! the hooks to run.
//!
//! Drivers around them: [`supervise`] (leadership → desired stack, hooks, status),
//! [`hooks`] (runs the transition scripts), [`docker`] ([`DockerEngine`], bollard over the unix
//! socket) and [`reconcile`] (the tokio loop observe → plan → execute). The whole module must
//! not import `node`, `config`, `consensus` or `api`; the composition root wires it to
//! leadership.
//!
//! Flow: `compose::parse(text, vars, base_dir)` → two [`StackSpec`]s (server, proxy) →
//! `plan::Desired::from_stack(stack, epoch)` → `plan::plan(desired, observed, now_ms, limits)` →
//! a bounded list of [`plan::Action`]s the driver executes in order, stopping at the first failure.

pub mod compose;
mod convert;
pub mod docker;
pub mod docker_config;
mod docker_error;
mod docker_events;
mod duration;
mod error;
pub mod hooks;
mod interpolate;
mod keys;
pub mod naming;
mod order;
pub mod plan;
mod ports;
pub mod reconcile;
pub mod spec;
pub mod status;
pub mod supervise;
mod timestamp;
pub mod transition;
pub mod watchdog;
mod words;

#[cfg(test)]
mod tests_compose;
#[cfg(test)]
mod tests_compose_errors;
#[cfg(test)]
mod tests_plan;

pub use compose::{load, parse, MusterVars, Stacks, Vars};
pub use docker::{
    ContainerEvent, ContainerEventKind, DockerEngine, DockerError, EngineOptions, EventStream, ExecuteContext,
};
pub use duration::parse_duration;
pub use error::ComposeError;
pub use naming::LabelError;
pub use plan::{
    plan, Action, ContainerState, Desired, DesiredService, Health, ObservedContainer, PlanLimits,
};
pub use reconcile::{run_reconciler, run_reconciler_gated, run_reconciler_with, ReconcileOptions, ServeGate};
pub use spec::{
    Condition, Dependency, HealthcheckSpec, MountKind, MountSpec, NetworkSpec, PortSpec, Protocol,
    RestartPolicy, ServiceSpec, StackKind, StackSpec, VolumeSpec,
};
pub use status::{ContainerStatus, ErrorStatus, StackStatus, Transition};
pub use timestamp::unix_ms;
