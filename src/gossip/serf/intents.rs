//! Join and leave intents about members we have not met yet: kept briefly, so the intent
//! applies when memberlist reports the member.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentKind {
    Join,
    Leave,
}

#[derive(Debug, Clone, Copy)]
struct Intent {
    kind: IntentKind,
    ltime: u64,
    seen: Instant,
}

/// Most recent intent per member name (bounded).
#[derive(Debug, Default)]
pub struct Intents {
    by_name: HashMap<String, Intent>,
}

/// Intents kept at most; the oldest goes first.
const INTENTS_MAX: usize = 4096;

impl Intents {
    /// Stores an intent if it is newer than the one held; true when stored (re-broadcast it).
    pub fn upsert(&mut self, name: &str, kind: IntentKind, ltime: u64, now: Instant) -> bool {
        if let Some(i) = self.by_name.get(name) {
            if ltime <= i.ltime {
                return false;
            }
        }
        if self.by_name.len() >= INTENTS_MAX && !self.by_name.contains_key(name) {
            if let Some(oldest) = self.by_name.iter().min_by_key(|(_, i)| i.seen).map(|(n, _)| n.clone()) {
                self.by_name.remove(&oldest);
            }
        }
        self.by_name.insert(name.to_string(), Intent { kind, ltime, seen: now });
        true
    }

    /// The Lamport time of a held intent of this kind, removing it.
    pub fn take(&mut self, name: &str, kind: IntentKind) -> Option<u64> {
        match self.by_name.get(name) {
            Some(i) if i.kind == kind => self.by_name.remove(name).map(|i| i.ltime),
            _ => None,
        }
    }

    pub fn reap(&mut self, now: Instant, ttl: Duration) {
        self.by_name.retain(|_, i| now.saturating_duration_since(i.seen) <= ttl);
    }
}
