//! The service registry: the deterministic state machine that every node applies identically
//! from the raft log. It owns services, their leases (TTL), health status, a bounded history of
//! revisioned events for watchers, and snapshots.
//!
//! Layout:
//! - [`model`]: [`Service`] and what callers send ([`NewService`], [`ServicePatch`]), ids.
//! - [`validate`]: every bound on every field, in one place.
//! - [`command`]: the closed list of [`Command`]s the leader proposes, and what applying returns.
//! - [`apply`]: [`Registry`] and its single write path, [`Registry::apply`].
//! - [`events`]: [`Event`]s and the bounded history behind [`Registry::events_since`].
//! - [`query`]: pure reads (`get`, `list`, `discover`, `types`, `tags`, `expired_candidates`, ...).
//! - [`snapshot`]: [`RegistrySnapshot`], `snapshot()` / `restore()`, JSON bytes.
//!
//! Rules: time arrives in commands as unix milliseconds chosen by the leader (`now_ms`, `at_ms`);
//! nothing here reads a clock, draws randomness, does I/O or spawns tasks. Iteration is over
//! `BTreeMap`s only, so every node produces the same bytes. Must not import tokio, sockets,
//! clocks, or any other muster module (gossip, consensus, api, ...): they depend on this, never
//! the reverse.

pub mod apply;
pub mod command;
pub mod error;
pub mod events;
pub mod model;
pub mod query;
pub mod snapshot;
pub mod validate;

#[cfg(test)]
mod tests;

pub use apply::Registry;
pub use command::{Applied, CheckResult, Command, Outcome};
pub use error::RegistryError;
pub use events::{Event, EventKind};
pub use model::{HealthCheck, NewService, Revision, Service, ServiceId, ServicePatch, Status};
pub use query::{Filter, StatusCounts};
pub use snapshot::RegistrySnapshot;

/// Events kept for watchers to resume from when the caller has no opinion: at a few changes per
/// second this is most of an hour, and at most a few tens of MB of service records.
pub const HISTORY_MAX_DEFAULT: usize = 10_000;
