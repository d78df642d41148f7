//! [`Event`]s (one per changed service, stamped with the revision that changed it) and the
//! bounded `History` that watchers resume from. When the history is full the oldest events are
//! dropped and the history remembers how far it was compacted, so a watcher asking for dropped
//! events gets an explicit `compacted` error rather than a silent gap.
//!
//! Must not import anything outside `registry`; broadcasting events is the watch hub's job.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::RegistryError;
use super::model::{Revision, Service};

/// What happened to a service. The JSON names are Beacon's WebSocket event names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ServiceRegistered,
    /// A record changed by `Update`, or an expired service revived by a heartbeat.
    ServiceUpdated,
    /// Removed by `Deregister` or by `Cleanup`.
    ServiceDeregistered,
    ServiceExpired,
    /// `active` ↔ `unhealthy`.
    HealthStatusChanged,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ServiceRegistered => "service_registered",
            EventKind::ServiceUpdated => "service_updated",
            EventKind::ServiceDeregistered => "service_deregistered",
            EventKind::ServiceExpired => "service_expired",
            EventKind::HealthStatusChanged => "health_status_changed",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change. `service` is the record after the change; for a removal, its last state.
/// One command may produce several events with the same revision (`Expire`, `Cleanup`, `Renew`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub revision: Revision,
    pub kind: EventKind,
    pub service: Service,
}

/// The last `max` events, oldest first, with revisions never decreasing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct History {
    max: usize,
    events: VecDeque<Event>,
    /// The revision of the newest event ever dropped (0 if none): every event after it is kept.
    compacted_through: Revision,
}

impl History {
    pub(crate) fn new(max: usize) -> History {
        History { max, events: VecDeque::new(), compacted_through: Revision(0) }
    }

    /// Rebuilds a history from a snapshot's parts; `snapshot` checks them first.
    pub(crate) fn from_parts(max: usize, events: Vec<Event>, compacted_through: Revision) -> History {
        History { max, events: events.into(), compacted_through }
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    pub(crate) fn compacted_through(&self) -> Revision {
        self.compacted_through
    }

    pub(crate) fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    /// Appends events (in order, revisions not below the newest kept) and drops the oldest
    /// beyond `max`, whole revisions at a time: a revision's events (one `Expire` or `Cleanup`
    /// can make many) are kept or compacted together, so resuming after a revision never
    /// skips half of one.
    pub(crate) fn extend(&mut self, new: impl IntoIterator<Item = Event>) {
        for event in new {
            debug_assert!(self.events.back().is_none_or(|last| last.revision <= event.revision));
            self.events.push_back(event);
        }
        self.trim();
    }

    /// Keeps at most `max` events from now on, dropping the oldest (whole revisions) at once.
    pub(crate) fn set_max(&mut self, max: usize) {
        self.max = max;
        self.trim();
    }

    fn trim(&mut self) {
        while self.events.len() > self.max {
            let Some(dropped) = self.events.pop_front() else { break };
            self.compacted_through = dropped.revision;
            while self.events.front().is_some_and(|e| e.revision == dropped.revision) {
                self.events.pop_front();
            }
        }
        debug_assert!(self.events.len() <= self.max);
    }

    /// Every kept event with a revision strictly after `after`, oldest first.
    pub(crate) fn since(&self, after: Revision) -> Result<Vec<Event>, RegistryError> {
        if after < self.compacted_through {
            return Err(RegistryError::Compacted {
                requested: after,
                oldest_available: self.compacted_through,
            });
        }
        let start = self.events.partition_point(|event| event.revision <= after);
        Ok(self.events.range(start..).cloned().collect())
    }
}
