//! [`RegistryError`]: every way a registry command, query or snapshot is refused.
//!
//! A refused command is still a committed raft entry: the state machine changes nothing and the
//! caller reports the error to the client. The enum is serde so it can travel in a raft
//! response. Must not import anything outside `registry`.

use serde::{Deserialize, Serialize};

use super::model::{Revision, ServiceId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistryError {
    /// The service (new or patched) breaks one or more field rules; each entry names the field
    /// and the bound, e.g. `name must be 1–100 characters (got 0)`.
    #[error("invalid service: {}", .violations.join("; "))]
    InvalidService { violations: Vec<String> },

    /// A command argument other than the service itself is out of bounds (a heartbeat's TTL
    /// override, a lease extension).
    #[error("invalid command: {reason}")]
    InvalidCommand { reason: String },

    /// A list query's paging is out of bounds.
    #[error("invalid filter: {reason}")]
    InvalidFilter { reason: String },

    #[error("already registered: {id}")]
    AlreadyRegistered { id: ServiceId },

    #[error("not found: {id}")]
    NotFound { id: ServiceId },

    /// The log handed us an entry at or before one already applied; applying it again would
    /// apply it twice.
    #[error("stale revision: {revision} is not after the last applied revision {last}")]
    StaleRevision { revision: Revision, last: Revision },

    /// The history no longer holds every event after `requested`. `oldest_available` is the
    /// smallest revision `events_since` still accepts; re-list, then watch from the list's
    /// revision.
    #[error(
        "compacted: events after revision {requested} were dropped from the history; \
         re-list and resume from revision {oldest_available} or later"
    )]
    Compacted { requested: Revision, oldest_available: Revision },

    /// A snapshot that does not decode or contradicts itself.
    #[error("invalid snapshot: {reason}")]
    InvalidSnapshot { reason: String },
}

impl RegistryError {
    pub(crate) fn invalid_service(violation: String) -> RegistryError {
        RegistryError::InvalidService { violations: vec![violation] }
    }
}
