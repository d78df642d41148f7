//! Lamport clocks: Serf keeps three (members, user events, queries).

/// A Lamport clock. Pure: callers own it and mutate it explicitly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LamportClock(u64);

impl LamportClock {
    pub fn time(&self) -> u64 {
        self.0
    }

    /// Advances and returns the new time.
    pub fn increment(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }

    /// Moves past a time seen in a message, so our next event orders after it.
    pub fn witness(&mut self, t: u64) {
        if t >= self.0 {
            self.0 = t + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn witness_moves_past_seen_times_only() {
        // Proves the Lamport rule: witness(t ≥ now) → t + 1, older times change nothing.
        let mut c = LamportClock::default();
        assert_eq!(c.increment(), 1);
        c.witness(10);
        assert_eq!(c.time(), 11);
        c.witness(3);
        assert_eq!(c.time(), 11);
    }
}
