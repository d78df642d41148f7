//! The Docker supervisor's pure cores: what the user's compose file asks for ([`compose`]), the
//! plain specs it becomes ([`spec`]), how muster names and labels what it owns ([`naming`]), and
//! the reconcile planner between the desired stack and the observed containers ([`plan`]).
//!
//! The cores talk to no Docker, read no clock and spawn no task: the only I/O is the thin
//! [`compose::load`] helper that reads the compose file. [`transition`] turns the leadership
//! this node sees into the stack it wants and the hooks to run. The drivers beside them
//! ([`hooks`] runs the transition scripts; the Docker driver and the reconcile loop) call the
//! cores. Nothing here imports `node`, `config`, `consensus` or `api`.
//!
//! Flow: `compose::parse(text, vars, base_dir)` → two [`StackSpec`]s (server, proxy) →
//! `plan::Desired::from_stack(stack, epoch)` → `plan::plan(desired, observed, now_ms, limits)` →
//! a bounded list of [`plan::Action`]s the driver executes in order, stopping at the first failure.

pub mod compose;
mod convert;
mod duration;
mod error;
pub mod hooks;
mod interpolate;
mod keys;
pub mod naming;
mod order;
pub mod plan;
mod ports;
pub mod spec;
pub mod supervise;
pub mod transition;
mod words;

#[cfg(test)]
mod tests_compose;
#[cfg(test)]
mod tests_compose_errors;
#[cfg(test)]
mod tests_plan;

pub use compose::{load, parse, MusterVars, Stacks, Vars};
pub use duration::parse_duration;
pub use error::ComposeError;
pub use naming::LabelError;
pub use plan::{
    plan, Action, ContainerState, Desired, DesiredService, Health, ObservedContainer, PlanLimits,
};
pub use spec::{
    Condition, Dependency, HealthcheckSpec, MountKind, MountSpec, NetworkSpec, PortSpec, Protocol,
    RestartPolicy, ServiceSpec, StackKind, StackSpec, VolumeSpec,
};
