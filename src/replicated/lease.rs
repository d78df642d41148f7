//! The leader's lease keeper (etcd's lessor, in spirit): heartbeats renew leases in the
//! leader's memory and are checkpointed into the log in batches, one `Renew` per interval; the
//! leader alone decides expiry (`Expire` with the time it chose); a newly elected leader first
//! extends every lease by the failover window, so a failover never expires a healthy service.
//!
//! Pure: the registry and the time arrive as arguments; the task that proposes is elsewhere.

use std::collections::BTreeMap;

use crate::registry::{Command, Registry, ServiceId};

/// Heartbeats waiting for their checkpoint, and what to propose next.
#[derive(Debug, Default)]
pub struct LeaseKeeper {
    /// Renewals since the last checkpoint: service → ttl override.
    pending: BTreeMap<ServiceId, Option<u32>>,
}

/// Renewals held at most before a checkpoint is forced (bounded memory).
pub const PENDING_MAX: usize = 100_000;

impl LeaseKeeper {
    /// Records a heartbeat; false when the pending batch is full (the caller should flush).
    pub fn heartbeat(&mut self, id: ServiceId, ttl_override: Option<u32>) -> bool {
        if self.pending.len() >= PENDING_MAX && !self.pending.contains_key(&id) {
            return false;
        }
        self.pending.insert(id, ttl_override);
        true
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The checkpoint of every heartbeat since the last one, if any.
    pub fn checkpoint(&mut self, now_ms: u64) -> Option<Command> {
        if self.pending.is_empty() {
            return None;
        }
        let ids_with_ttl = std::mem::take(&mut self.pending).into_iter().collect();
        Some(Command::Renew { ids_with_ttl, now_ms })
    }

    /// Services whose lease ran out by `now_ms` and that have no heartbeat waiting.
    pub fn expiries(&self, registry: &Registry, now_ms: u64) -> Option<Command> {
        let ids: Vec<ServiceId> = registry
            .expired_candidates(now_ms)
            .into_iter()
            .filter(|id| !self.pending.contains_key(id))
            .collect();
        (!ids.is_empty()).then_some(Command::Expire { ids, at_ms: now_ms })
    }

    /// Puts back the heartbeats of a checkpoint that did not commit (newer ones win).
    pub fn requeue(&mut self, renew: &Command) {
        if let Command::Renew { ids_with_ttl, .. } = renew {
            for (id, ttl) in ids_with_ttl {
                self.pending.entry(id.clone()).or_insert(*ttl);
            }
        }
    }

    /// Drops every pending heartbeat (this node stopped leading); returns how many.
    pub fn clear(&mut self) -> usize {
        std::mem::take(&mut self.pending).len()
    }

    /// What a new leader proposes first. Heartbeats that reached the old leader but were not
    /// checkpointed are lost; extending by the failover window covers them.
    pub fn on_elected(&mut self, failover_window_ms: u64, now_ms: u64) -> Command {
        self.pending.clear();
        Command::ExtendLeases { by_ms: failover_window_ms, now_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{NewService, Revision, Status};

    fn registry_with(id: &str, ttl_s: u32, now_ms: u64) -> Registry {
        let mut r = Registry::new(100);
        let mut s = NewService::new(ServiceId::new(id), "cam", "http", "10.1.0.5", 8080);
        s.ttl_seconds = ttl_s;
        r.apply(Revision(1), &Command::Register { service: s, now_ms }).unwrap();
        r
    }

    #[test]
    fn an_unrenewed_service_expires_after_its_ttl_and_a_renewed_one_does_not() {
        // Proves the TTL rule: no expiry before ttl, expiry at ttl without heartbeats; a
        // heartbeat held in memory protects the service until it is checkpointed.
        let mut r = registry_with("a", 10, 0);
        let mut k = LeaseKeeper::default();
        assert!(k.expiries(&r, 9_999).is_none());
        assert!(
            matches!(k.expiries(&r, 10_000), Some(Command::Expire { ref ids, at_ms: 10_000 }) if ids.len() == 1)
        );
        assert!(k.heartbeat(ServiceId::new("a"), None));
        assert!(k.expiries(&r, 10_000).is_none(), "a pending heartbeat blocks expiry");
        let renew = k.checkpoint(10_000).unwrap();
        assert_eq!(k.pending(), 0);
        r.apply(Revision(2), &renew).unwrap();
        assert!(k.expiries(&r, 19_999).is_none());
        let expire = k.expiries(&r, 20_000).unwrap();
        r.apply(Revision(3), &expire).unwrap();
        assert_eq!(r.get(&ServiceId::new("a")).unwrap().status, Status::Expired);
        assert!(k.checkpoint(20_000).is_none());
    }

    #[test]
    fn a_new_leader_extends_leases_so_a_failover_expires_nothing() {
        // Proves the failover rule: the old leader acknowledged a heartbeat at 9 s and died
        // before its checkpoint; the new leader (at 9.5 s) renews every live lease from its
        // own now plus the window, so the acknowledged heartbeat's lease (to 19 s) is honoured.
        let mut r = registry_with("a", 10, 0);
        let mut k = LeaseKeeper::default();
        k.heartbeat(ServiceId::new("a"), None);
        let mut k2 = LeaseKeeper::default();
        let extend = k2.on_elected(2_000, 9_500);
        r.apply(Revision(2), &extend).unwrap();
        assert!(k2.expiries(&r, 19_000).is_none());
        assert!(k2.expiries(&r, 21_499).is_none());
        assert!(k2.expiries(&r, 21_500).is_some());
    }
}
