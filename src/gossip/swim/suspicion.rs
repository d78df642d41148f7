//! Lifeguard suspicion timing: a suspect is declared dead after a timeout that starts at
//! `max` and shrinks towards `min` as independent members confirm the suspicion.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// memberlist's base suspicion timeout: `mult · max(1, log10(n)) · probe_interval`.
pub fn suspicion_timeout(suspicion_mult: u32, nodes: usize, probe_interval: Duration) -> Duration {
    let scale = (nodes.max(1) as f64).log10().max(1.0);
    probe_interval.mul_f64(suspicion_mult as f64 * scale)
}

/// An outstanding suspicion about one member.
#[derive(Debug, Clone)]
pub struct Suspicion {
    pub incarnation: u32,
    start: Instant,
    min: Duration,
    max: Duration,
    /// Confirmations expected before the timeout reaches `min`.
    k: u32,
    /// Members that confirmed (the first accuser included).
    from: BTreeSet<String>,
}

impl Suspicion {
    /// `k` confirmations take the timeout from `max` down to `min`; `from` is the first accuser.
    pub fn new(incarnation: u32, from: &str, k: u32, min: Duration, max: Duration, now: Instant) -> Self {
        let mut set = BTreeSet::new();
        set.insert(from.to_string());
        Suspicion { incarnation, start: now, min, max, k, from: set }
    }

    /// Records a confirmation; true when it came from a member not heard before.
    pub fn confirm(&mut self, from: &str) -> bool {
        if self.confirmations() >= self.k {
            return false;
        }
        self.from.insert(from.to_string())
    }

    fn confirmations(&self) -> u32 {
        (self.from.len() as u32).saturating_sub(1)
    }

    /// When the suspect is declared dead.
    pub fn deadline(&self) -> Instant {
        let timeout = if self.k == 0 {
            self.min
        } else {
            let c = self.confirmations() as f64;
            let frac = (c + 1.0).ln() / (self.k as f64 + 1.0).ln();
            let span = self.max.saturating_sub(self.min).as_secs_f64();
            let t = self.max.as_secs_f64() - frac * span;
            Duration::from_secs_f64(t.max(self.min.as_secs_f64()))
        };
        self.start + timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_timeout_matches_memberlist_formula() {
        // Proves mult·max(1,log10 n)·interval: 4 × 1 × 1s for 3 nodes, 4 × 2 × 1s for 100.
        let s = Duration::from_secs(1);
        assert_eq!(suspicion_timeout(4, 3, s), Duration::from_secs(4));
        assert_eq!(suspicion_timeout(4, 100, s), Duration::from_secs(8));
    }

    #[test]
    fn confirmations_shrink_the_timeout_from_max_to_min() {
        // Proves Lifeguard: no confirmation → max; k confirmations → min; duplicates do nothing.
        let now = Instant::now();
        let (min, max) = (Duration::from_secs(4), Duration::from_secs(24));
        let mut s = Suspicion::new(1, "a", 2, min, max, now);
        assert_eq!(s.deadline(), now + max);
        assert!(!s.confirm("a"));
        assert!(s.confirm("b"));
        let mid = s.deadline();
        assert!(mid < now + max && mid > now + min);
        assert!(s.confirm("c"));
        assert_eq!(s.deadline(), now + min);
        assert!(!s.confirm("d"));
    }

    #[test]
    fn zero_expected_confirmations_uses_min() {
        // Proves a tiny cluster (k = 0) goes straight to the minimum.
        let now = Instant::now();
        let s = Suspicion::new(1, "a", 0, Duration::from_secs(4), Duration::from_secs(24), now);
        assert_eq!(s.deadline(), now + Duration::from_secs(4));
    }
}
