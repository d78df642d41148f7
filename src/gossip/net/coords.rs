//! Network coordinates for the driver, as Serf's `pingDelegate` keeps them: our Vivaldi
//! client, the ack payload that advertises our coordinate, and the cache of coordinates by
//! member name that [`super::GossipHandle`] reads (ours included, from the start).
//!
//! The cache only holds members that completed a direct probe and loses them when they are
//! reaped, with a hard cap on top. Owned by the driver task; the handle shares the view.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::gossip::coordinate::{CoordinateClient, CoordinateConfig, CoordinateError};
use crate::gossip::wire::{decode_ping_payload, encode_ping_payload, SerfCoordinate};

/// Coordinates cached at most (members are reaped from it; this guards against a flood).
const CACHE_MAX: usize = 16 * 1024;
/// Peers remembered as having sent an unreadable payload (for log-once) at most.
const BAD_PAYLOAD_PEERS_MAX: usize = 1024;

/// What the handle sees: coordinates by member name, and our reset count.
#[derive(Debug, Default)]
pub struct CoordinateView {
    cache: RwLock<HashMap<String, SerfCoordinate>>,
    resets: AtomicU64,
}

impl CoordinateView {
    pub fn get(&self, node: &str) -> Option<SerfCoordinate> {
        self.cache.read().unwrap_or_else(|e| e.into_inner()).get(node).cloned()
    }

    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }
}

/// The driver's side.
pub struct Coordinates {
    node: String,
    client: CoordinateClient,
    view: Arc<CoordinateView>,
    bad_payload_logged: HashSet<String>,
}

impl Coordinates {
    /// Starts at the origin, with our own coordinate in the cache (as Serf does).
    pub fn new(node: &str, seed: u64) -> Result<Coordinates, CoordinateError> {
        let client = CoordinateClient::new(CoordinateConfig::default(), seed)?;
        let view = Arc::new(CoordinateView::default());
        view.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.to_string(), client.coordinate().clone());
        Ok(Coordinates { node: node.to_string(), client, view, bad_payload_logged: HashSet::new() })
    }

    pub fn view(&self) -> Arc<CoordinateView> {
        self.view.clone()
    }

    /// Our coordinate as an ack payload.
    pub fn ack_payload(&self) -> Vec<u8> {
        encode_ping_payload(self.client.coordinate())
    }

    /// A direct probe of `node` came back after `rtt` with `payload`. Returns the new ack
    /// payload when our coordinate moved. An empty payload (a peer without coordinates) is
    /// ignored; an unreadable one is logged once per peer; a refused one at trace level.
    pub fn on_ping_complete(&mut self, node: &str, rtt: Duration, payload: &[u8]) -> Option<Vec<u8>> {
        if payload.is_empty() {
            return None;
        }
        let theirs = match decode_ping_payload(payload) {
            Ok(c) => c,
            Err(e) => {
                if self.bad_payload_logged.len() >= BAD_PAYLOAD_PEERS_MAX {
                    self.bad_payload_logged.clear();
                }
                if self.bad_payload_logged.insert(node.to_string()) {
                    tracing::debug!(member = %node, error = %e, "gossip: cannot read the coordinate in an ack");
                }
                return None;
            }
        };
        let ours = match self.client.update(node, &theirs, rtt) {
            Ok(c) => c.clone(),
            Err(e) => {
                tracing::trace!(member = %node, error = %e, "gossip: rejected a coordinate");
                return None;
            }
        };
        let mut cache = self.view.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() < CACHE_MAX || cache.contains_key(node) {
            cache.insert(node.to_string(), theirs);
        }
        cache.insert(self.node.clone(), ours);
        drop(cache);
        self.view.resets.store(self.client.resets(), Ordering::Relaxed);
        Some(self.ack_payload())
    }

    /// `node` was reaped: forget its samples and its coordinate.
    pub fn forget(&mut self, node: &str) {
        if node == self.node {
            return;
        }
        self.client.forget_node(node);
        self.bad_payload_logged.remove(node);
        self.view.cache.write().unwrap_or_else(|e| e.into_inner()).remove(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completed_ping_caches_both_coordinates_and_a_reap_forgets_theirs() {
        // Proves the pingDelegate flow: empty and garbage payloads change nothing, a good one caches theirs and our moved one and yields a new ack payload, a reap removes theirs only.
        let mut c = Coordinates::new("me", 1).unwrap();
        let view = c.view();
        let start = view.get("me").unwrap();
        assert_eq!(decode_ping_payload(&c.ack_payload()).unwrap(), start);
        assert_eq!(c.on_ping_complete("a", Duration::from_millis(2), &[]), None);
        assert_eq!(c.on_ping_complete("a", Duration::from_millis(2), &[1, 0xc1]), None);
        assert_eq!(c.on_ping_complete("a", Duration::from_millis(2), &[2]), None, "unknown ping version");
        let wrong_dims = SerfCoordinate { vec: vec![0.0; 3], error: 1.0, adjustment: 0.0, height: 1e-5 };
        assert_eq!(
            c.on_ping_complete("a", Duration::from_millis(2), &encode_ping_payload(&wrong_dims)),
            None
        );
        assert_eq!(view.get("a"), None);

        let theirs = SerfCoordinate { vec: vec![0.001; 8], error: 0.5, adjustment: 0.0, height: 1e-5 };
        let payload =
            c.on_ping_complete("a", Duration::from_millis(2), &encode_ping_payload(&theirs)).unwrap();
        assert_eq!(view.get("a"), Some(theirs));
        let ours = view.get("me").unwrap();
        assert_ne!(ours, start, "our coordinate moved");
        assert_eq!(decode_ping_payload(&payload).unwrap(), ours);
        assert_eq!(view.resets(), 0);

        c.forget("a");
        c.forget("me");
        assert_eq!((view.get("a"), view.get("me")), (None, Some(ours)));
    }
}
