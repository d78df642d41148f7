//! [`RegistrySnapshot`]: the whole registry (services, revision, event history) as one serde
//! value, [`Registry::snapshot`] / [`Registry::restore`], and JSON bytes for raft snapshots.
//!
//! Restoring checks the snapshot's structure (format, unique ids, ordered events within the
//! revision) but not field bounds: a snapshot written under looser bounds must still load.
//! Must not import anything outside `registry` (storage is the consensus layer's).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::apply::Registry;
use super::error::RegistryError;
use super::events::{Event, History};
use super::model::{Revision, Service};

/// Bumped when the snapshot's shape changes incompatibly.
pub const SNAPSHOT_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrySnapshot {
    pub format: u32,
    pub revision: Revision,
    pub history_max: usize,
    /// The revision of the newest event dropped from the history (0 if none).
    pub compacted_through: Revision,
    /// In id order.
    pub services: Vec<Service>,
    /// Oldest first.
    pub events: Vec<Event>,
}

impl RegistrySnapshot {
    pub fn to_bytes(&self) -> Result<Vec<u8>, RegistryError> {
        serde_json::to_vec(self)
            .map_err(|e| RegistryError::InvalidSnapshot { reason: format!("cannot encode: {e}") })
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<RegistrySnapshot, RegistryError> {
        serde_json::from_slice(bytes)
            .map_err(|e| RegistryError::InvalidSnapshot { reason: format!("cannot decode: {e}") })
    }
}

/// A [`RegistrySnapshot`] borrowed from the registry: the same JSON, written without copying
/// every service and event first (a snapshot of a large registry would otherwise hold the
/// whole registry twice in memory while it is encoded).
#[derive(Serialize)]
struct SnapshotView<'a> {
    format: u32,
    revision: Revision,
    history_max: usize,
    compacted_through: Revision,
    #[serde(serialize_with = "service_values")]
    services: &'a BTreeMap<super::model::ServiceId, Service>,
    #[serde(serialize_with = "history_events")]
    events: &'a History,
}

fn service_values<S: serde::Serializer>(
    services: &&BTreeMap<super::model::ServiceId, Service>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(services.values())
}

fn history_events<S: serde::Serializer>(history: &&History, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(history.events())
}

impl Registry {
    /// The registry's snapshot as JSON bytes, equal to `self.snapshot().to_bytes()` but
    /// encoded straight from the registry.
    pub fn snapshot_bytes(&self) -> Result<Vec<u8>, RegistryError> {
        let view = SnapshotView {
            format: SNAPSHOT_FORMAT,
            revision: self.revision,
            history_max: self.history.max(),
            compacted_through: self.history.compacted_through(),
            services: &self.services,
            events: &self.history,
        };
        serde_json::to_vec(&view)
            .map_err(|e| RegistryError::InvalidSnapshot { reason: format!("cannot encode: {e}") })
    }

    pub fn snapshot(&self) -> RegistrySnapshot {
        RegistrySnapshot {
            format: SNAPSHOT_FORMAT,
            revision: self.revision,
            history_max: self.history.max(),
            compacted_through: self.history.compacted_through(),
            services: self.services.values().cloned().collect(),
            events: self.history.events().cloned().collect(),
        }
    }

    /// The registry a snapshot describes, equal to the one it was taken from. The history
    /// bound comes from the snapshot, so every node keeps the same history.
    pub fn restore(snapshot: RegistrySnapshot) -> Result<Registry, RegistryError> {
        check(&snapshot)?;
        let mut services = BTreeMap::new();
        for service in snapshot.services {
            let id = service.id.clone();
            if services.insert(id.clone(), service).is_some() {
                return Err(invalid(format!("service {id} appears twice")));
            }
        }
        let history = History::from_parts(snapshot.history_max, snapshot.events, snapshot.compacted_through);
        Ok(Registry { revision: snapshot.revision, services, history })
    }
}

fn invalid(reason: String) -> RegistryError {
    RegistryError::InvalidSnapshot { reason }
}

fn check(s: &RegistrySnapshot) -> Result<(), RegistryError> {
    if s.format != SNAPSHOT_FORMAT {
        return Err(invalid(format!("format {} is not the supported format {SNAPSHOT_FORMAT}", s.format)));
    }
    if s.compacted_through > s.revision {
        return Err(invalid(format!(
            "compacted through revision {} beyond the snapshot's revision {}",
            s.compacted_through, s.revision
        )));
    }
    if s.events.len() > s.history_max {
        return Err(invalid(format!("{} events exceed history_max {}", s.events.len(), s.history_max)));
    }
    let mut previous = s.compacted_through;
    for event in &s.events {
        if event.revision <= s.compacted_through || event.revision > s.revision || event.revision < previous {
            return Err(invalid(format!(
                "event at revision {} is out of order (after {previous}, compacted through {}, snapshot at {})",
                event.revision, s.compacted_through, s.revision
            )));
        }
        previous = event.revision;
    }
    Ok(())
}
