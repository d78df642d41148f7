//! A cache of host-name lookups for services registered by name: which names are due for a
//! lookup, what they resolved to, and for how long that holds. Pure: time is an argument; the
//! driver does the lookups off the reconcile path, a bounded number at once.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long a successful lookup holds.
pub const RESOLVED_TTL: Duration = Duration::from_secs(60);
/// How long a failed lookup holds before the name is tried again.
pub const FAILED_TTL: Duration = Duration::from_secs(15);
/// Names kept at most; the cache only holds names some service uses.
pub const NAMES_MAX: usize = 4096;

#[derive(Debug, Clone)]
struct Entry {
    addrs: Vec<IpAddr>,
    until: Instant,
}

/// Lookup results by name, with a time limit each.
#[derive(Debug, Clone, Default)]
pub struct HostCache {
    entries: BTreeMap<String, Entry>,
    in_flight: BTreeSet<String>,
}

impl HostCache {
    /// The names among `wanted` to look up now: never looked up, or past their time limit, and
    /// not being looked up already; at most `max`.
    pub fn due(&self, wanted: &BTreeSet<String>, now: Instant, max: usize) -> Vec<String> {
        wanted
            .iter()
            .filter(|n| !self.in_flight.contains(*n))
            .filter(|n| self.entries.get(*n).is_none_or(|e| e.until <= now))
            .take(max)
            .cloned()
            .collect()
    }

    /// Marks `name` as being looked up.
    pub fn started(&mut self, name: &str) {
        self.in_flight.insert(name.to_string());
    }

    /// The outcome of a lookup: addresses (an empty list for a failure). Returns whether what
    /// the name resolves to changed.
    pub fn store(&mut self, name: &str, addrs: Option<Vec<IpAddr>>, now: Instant) -> bool {
        self.in_flight.remove(name);
        if self.entries.len() >= NAMES_MAX && !self.entries.contains_key(name) {
            return false;
        }
        let (addrs, ttl) = match addrs {
            Some(mut a) => {
                a.sort();
                a.dedup();
                (a, RESOLVED_TTL)
            }
            None => (Vec::new(), FAILED_TTL),
        };
        let changed = self.entries.get(name).is_none_or(|e| e.addrs != addrs);
        self.entries.insert(name.to_string(), Entry { addrs, until: now + ttl });
        changed
    }

    /// Forgets the names no service uses any more.
    pub fn retain(&mut self, wanted: &BTreeSet<String>) {
        self.entries.retain(|n, _| wanted.contains(n));
    }

    /// Every name's last known addresses (a name past its time limit keeps its addresses until
    /// the next lookup answers, so a slow resolver does not make services blink).
    pub fn resolved(&self) -> BTreeMap<String, Vec<IpAddr>> {
        self.entries.iter().map(|(n, e)| (n.clone(), e.addrs.clone())).collect()
    }

    /// The earliest time limit, for the driver's next look.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.until).min()
    }
}
