//! At most one log line per interval for a repeating condition (a flood of refused
//! connections, of undecodable streams), counting what it held back so the next line can say
//! how many there were. Pure: the caller passes `now`.

use std::time::{Duration, Instant};

/// Lets one occurrence through per `every`; counts the rest.
#[derive(Debug, Clone)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    pub const fn new(every: Duration) -> Throttle {
        Throttle { every, last: None, held_back: 0 }
    }

    /// One occurrence at `now`: `Some(n)` when it should be logged, `n` being how many were
    /// held back since the last logged one; `None` when it should not.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        let due = self.last.is_none_or(|t| now.saturating_duration_since(t) >= self.every);
        if due {
            self.last = Some(now);
            Some(std::mem::take(&mut self.held_back))
        } else {
            self.held_back = self.held_back.saturating_add(1);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_next_counts_the_rest() {
        // Proves a flood logs once per interval and the next line reports what was held back.
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(10));
        assert_eq!(t.hit(t0), Some(0));
        for i in 1..=99 {
            assert_eq!(t.hit(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(t.hit(t0 + Duration::from_secs(10)), Some(99));
        assert_eq!(t.hit(t0 + Duration::from_secs(11)), None);
        assert_eq!(t.hit(t0 + Duration::from_secs(25)), Some(1));
    }
}
