//! The closed list of [`Command`]s the leader proposes to the raft log, and what applying one
//! returns ([`Applied`], [`Outcome`]). Commands carry every input `apply` needs, including time
//! (unix milliseconds chosen by the leader), so replaying the log anywhere gives the same state.
//!
//! Serde with externally tagged variants (`{"register": {...}}`), usable by any self-describing
//! codec. Must not import anything outside `registry`.

use serde::{Deserialize, Serialize};

use super::events::Event;
use super::model::{NewService, Revision, Service, ServiceId, ServicePatch};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Adds a service: status `active`, lease `now_ms + ttl`. An existing id is refused.
    Register { service: NewService, now_ms: u64 },

    /// Changes the fields the patch sets. A patch that changes nothing is accepted without an
    /// event. Leases are not renewed by an update.
    Update { id: ServiceId, patch: ServicePatch, now_ms: u64 },

    /// Removes a service. `now_ms` is when the leader accepted the request (kept in the log for
    /// audit; the event carries the service's last state unchanged).
    Deregister { id: ServiceId, now_ms: u64 },

    /// Batched heartbeats: for each id, `last_heartbeat = now`, `expires_at = now + ttl` (the
    /// override if given, else the service's own), and `expired` becomes `active`. Unknown ids
    /// are skipped and reported; one out-of-range override refuses the whole batch.
    Renew { ids_with_ttl: Vec<(ServiceId, Option<u32>)>, now_ms: u64 },

    /// The leader decided these leases lapsed. Only services whose `expires_at_ms <= at_ms`
    /// still holds, and that are not already expired, are expired: a renewal that won the race
    /// keeps its service, and replaying the command changes nothing.
    Expire { ids: Vec<ServiceId>, at_ms: u64 },

    /// A health check result: `active` → `unhealthy` when failing, `unhealthy` → `active` when
    /// passing. Other statuses are left alone.
    SetHealth { id: ServiceId, healthy: bool, at_ms: u64 },

    /// The leader's health check results since its last batch, oldest first. Each result
    /// updates its service's `last_health_check` and run counters; a run reaching the service's
    /// threshold turns `active` into `unhealthy` (failures) or back (successes). Results for
    /// services that are gone, no longer checked (no URL, `inactive`, `expired`), or older than
    /// the service's last recorded check are skipped. Anti-flap counting lives here, in the log,
    /// so every node and every later leader agree on it.
    HealthChecked { results: Vec<CheckResult> },

    /// Removes expired services whose lease ended before `at_ms`.
    Cleanup { at_ms: u64 },

    /// A new leader renews every lease that has not been expired as if it had just heard a
    /// heartbeat, plus `by_ms` for the time without a leader and clock skew between leaders
    /// (`expires_at = max(expires_at, now + ttl + by)`): a heartbeat the old leader
    /// acknowledged but never checkpointed came before `now`, so its lease is honoured, and a
    /// failover never expires a service that heartbeats within its ttl. (etcd's lessor does
    /// the same on promotion.) The cost: a dead service outlives a failover by up to one ttl.
    ExtendLeases { by_ms: u64, now_ms: u64 },
}

impl Command {
    /// The variant's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Register { .. } => "register",
            Command::Update { .. } => "update",
            Command::Deregister { .. } => "deregister",
            Command::Renew { .. } => "renew",
            Command::Expire { .. } => "expire",
            Command::SetHealth { .. } => "set_health",
            Command::HealthChecked { .. } => "health_checked",
            Command::Cleanup { .. } => "cleanup",
            Command::ExtendLeases { .. } => "extend_leases",
        }
    }
}

/// One health check the leader ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub id: ServiceId,
    /// When the check started (unix ms).
    pub at_ms: u64,
    pub ok: bool,
    pub latency_ms: u32,
    /// Why it failed; at most `validate::CHECK_ERROR_CHARS_MAX` characters.
    pub error: Option<String>,
}

/// The result of a command that was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The revision the command was applied at (now the registry's revision).
    pub revision: Revision,
    pub outcome: Outcome,
    /// The events this command appended to the history, for the watch hub to publish.
    pub events: Vec<Event>,
}

/// What an accepted command did, per command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Registered {
        service: Service,
    },
    /// `changed` is false when the patch matched the record already.
    Updated {
        service: Service,
        changed: bool,
    },
    /// The service's last state.
    Deregistered {
        service: Service,
    },
    /// Ids renewed, and ids that were not registered (any more).
    Renewed {
        renewed: Vec<ServiceId>,
        missing: Vec<ServiceId>,
    },
    /// Ids actually expired by this command (possibly none).
    Expired {
        ids: Vec<ServiceId>,
    },
    /// The service after the check; `changed` is false when its status stayed.
    HealthSet {
        service: Service,
        changed: bool,
    },
    /// Services whose status a check result changed, and results skipped (service gone or no
    /// longer checked, or a result older than the last one recorded).
    HealthChecked {
        changed: Vec<ServiceId>,
        skipped: Vec<ServiceId>,
    },
    /// Ids removed, in id order.
    CleanedUp {
        ids: Vec<ServiceId>,
    },
    /// How many leases moved.
    LeasesExtended {
        count: usize,
    },
}
