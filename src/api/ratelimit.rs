//! Per-client write rate limiting: one token bucket per client key (the client's IP, or
//! `"unknown"`), refilled at `per_s` tokens a second up to `burst`; a write takes one token.
//!
//! [`TokenBuckets`] is the pure core: no clock (every call takes `now`), no locks, no I/O, so
//! it is tested with a fake time. [`WriteLimiter`] shares it between requests behind a mutex;
//! the request middleware calls [`WriteLimiter::check`] with the client's key before a write.
//!
//! Memory is bounded: at most `clients_max` buckets ([`CLIENTS_MAX`] by default). A bucket that
//! has refilled to `burst` holds nothing a fresh bucket would not, so when the table is full
//! every full bucket is dropped first; if none is full, the bucket touched longest ago goes.
//! That client starts over with a full bucket when it comes back, so with more than
//! `clients_max` clients writing at once the limit is approximate; the table never grows.
//!
//! Imports nothing of the node.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Clients tracked at once by default.
pub const CLIENTS_MAX: usize = 4096;

/// One token, in the buckets' fixed-point unit (millionths of a token), so refills are exact
/// integer arithmetic.
const TOKEN: u128 = 1_000_000;
const NANOS_PER_S: u128 = 1_000_000_000;

/// The configured limit: `per_s` writes a second per client, bursts of up to `burst`.
/// `per_s == 0` turns limiting off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteRate {
    pub per_s: u32,
    pub burst: u32,
}

impl WriteRate {
    /// No limit.
    pub const UNLIMITED: WriteRate = WriteRate { per_s: 0, burst: 0 };

    pub fn is_unlimited(&self) -> bool {
        self.per_s == 0
    }
}

impl fmt::Display for WriteRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unlimited() {
            f.write_str("unlimited")
        } else {
            write!(f, "{}/s per client (burst {})", self.per_s, self.burst)
        }
    }
}

/// A write refused by the limit: when a token will be there, and the limit itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("write rate limit: {limit}; retry in {} ms", self.retry_after_ms())]
pub struct Limited {
    pub retry_after: Duration,
    pub limit: WriteRate,
}

impl Limited {
    /// [`Limited::retry_after`] in whole milliseconds, rounded up (never 0).
    pub fn retry_after_ms(&self) -> u128 {
        self.retry_after.as_nanos().div_ceil(1_000_000).max(1)
    }

    /// [`Limited::retry_after`] in whole seconds, rounded up (never 0): HTTP's `Retry-After`.
    pub fn retry_after_s(&self) -> u64 {
        self.retry_after.as_secs()
            + u64::from(self.retry_after.subsec_nanos() > 0 || self.retry_after.is_zero())
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Millionths of a token.
    level: u128,
    /// When `level` was last brought up to date.
    at: Instant,
}

/// The pure core: token buckets by client key, bounded in number.
#[derive(Debug)]
pub struct TokenBuckets {
    rate: WriteRate,
    clients_max: usize,
    buckets: HashMap<String, Bucket>,
}

impl TokenBuckets {
    /// `clients_max` is raised to 1 if 0.
    pub fn new(rate: WriteRate, clients_max: usize) -> TokenBuckets {
        TokenBuckets { rate, clients_max: clients_max.max(1), buckets: HashMap::new() }
    }

    pub fn rate(&self) -> WriteRate {
        self.rate
    }

    /// Buckets held now (at most `clients_max`).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn capacity(&self) -> u128 {
        u128::from(self.rate.burst.max(1)) * TOKEN
    }

    /// The bucket's level at `now` (time going backwards counts as no time).
    fn level_at(&self, b: &Bucket, now: Instant) -> u128 {
        let elapsed = now.saturating_duration_since(b.at).as_nanos();
        let refill = elapsed.saturating_mul(u128::from(self.rate.per_s)).saturating_mul(TOKEN) / NANOS_PER_S;
        b.level.saturating_add(refill).min(self.capacity())
    }

    /// Takes one token from `client`'s bucket at `now`, or says how long until one is there.
    pub fn check(&mut self, client: &str, now: Instant) -> Result<(), Limited> {
        if self.rate.is_unlimited() {
            return Ok(());
        }
        let full = self.capacity();
        let level = match self.buckets.get(client) {
            Some(b) => self.level_at(b, now),
            None => {
                self.make_room(now);
                full
            }
        };
        let (level, result) = if level >= TOKEN {
            (level - TOKEN, Ok(()))
        } else {
            // per_s > 0 here; the deficit refills at per_s tokens a second.
            let nanos =
                (TOKEN - level).saturating_mul(NANOS_PER_S).div_ceil(u128::from(self.rate.per_s) * TOKEN);
            let retry_after = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
            (level, Err(Limited { retry_after, limit: self.rate }))
        };
        self.buckets.insert(client.to_string(), Bucket { level, at: now });
        debug_assert!(self.buckets.len() <= self.clients_max, "the table never grows past its bound");
        result
    }

    /// Frees a slot for a new client when the table is full: every bucket that refilled to
    /// `burst` goes; if none did, the one touched longest ago.
    fn make_room(&mut self, now: Instant) {
        if self.buckets.len() < self.clients_max {
            return;
        }
        let full = self.capacity();
        let refilled: Vec<String> = self
            .buckets
            .iter()
            .filter(|(_, b)| self.level_at(b, now) >= full)
            .map(|(k, _)| k.clone())
            .collect();
        for k in refilled {
            self.buckets.remove(&k);
        }
        if self.buckets.len() >= self.clients_max {
            let oldest = self.buckets.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.buckets.remove(&k);
            }
        }
    }
}

/// [`TokenBuckets`] shared by every request of the API listener.
#[derive(Debug)]
pub struct WriteLimiter {
    buckets: Mutex<TokenBuckets>,
    rate: WriteRate,
}

impl WriteLimiter {
    /// A limiter tracking at most [`CLIENTS_MAX`] clients.
    pub fn new(rate: WriteRate) -> WriteLimiter {
        WriteLimiter::with_clients_max(rate, CLIENTS_MAX)
    }

    pub fn with_clients_max(rate: WriteRate, clients_max: usize) -> WriteLimiter {
        WriteLimiter { buckets: Mutex::new(TokenBuckets::new(rate, clients_max)), rate }
    }

    pub fn rate(&self) -> WriteRate {
        self.rate
    }

    /// Takes one write token for `client` at `now`; `Err` says when to retry.
    pub fn check(&self, client: &str, now: Instant) -> Result<(), Limited> {
        if self.rate.is_unlimited() {
            return Ok(());
        }
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).check(client, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: WriteRate = WriteRate { per_s: 10, burst: 3 };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_passes_then_writes_wait_for_the_refill() {
        // Proves the bucket: `burst` writes pass at once, the next is refused with the time
        // until one token has refilled (1/rate), and after that time exactly one more passes.
        let t0 = Instant::now();
        let mut b = TokenBuckets::new(RATE, 16);
        for i in 0..3 {
            assert_eq!(b.check("a", t0), Ok(()), "write {i} of the burst");
        }
        let refused = b.check("a", t0).unwrap_err();
        assert_eq!(refused.retry_after, ms(100));
        assert_eq!(refused.limit, RATE);
        assert_eq!(refused.to_string(), "write rate limit: 10/s per client (burst 3); retry in 100 ms");
        let half = b.check("a", t0 + ms(50)).unwrap_err();
        assert_eq!(half.retry_after, ms(50), "half a token refilled after 50 ms");
        assert_eq!(b.check("a", t0 + ms(100)), Ok(()));
        assert!(b.check("a", t0 + ms(100)).is_err(), "only one token refilled");
        // Long idle refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.check("a", later), Ok(()));
        }
        assert!(b.check("a", later).is_err());
    }

    #[test]
    fn clients_have_their_own_buckets_and_time_going_back_refills_nothing() {
        // Proves one client's burst does not spend another's, and a `now` earlier than the
        // last one neither panics nor adds tokens.
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBuckets::new(WriteRate { per_s: 1, burst: 1 }, 16);
        assert_eq!(b.check("a", t0), Ok(()));
        assert!(b.check("a", t0).is_err());
        assert_eq!(b.check("b", t0), Ok(()), "b has its own bucket");
        let err = b.check("a", t0 - Duration::from_secs(5)).unwrap_err();
        assert!(err.retry_after <= Duration::from_secs(1), "{err}");
    }

    #[test]
    fn zero_rate_is_unlimited_and_keeps_no_state() {
        // Proves --write-rate 0 turns the limit off without growing the table.
        let t0 = Instant::now();
        let mut b = TokenBuckets::new(WriteRate::UNLIMITED, 4);
        for i in 0..10_000 {
            assert_eq!(b.check(&format!("c{i}"), t0), Ok(()));
        }
        assert!(b.is_empty());
        assert_eq!(WriteRate::UNLIMITED.to_string(), "unlimited");
    }

    #[test]
    fn the_table_is_bounded_and_drops_refilled_then_oldest_buckets() {
        // Proves the memory bound: with the table full, buckets that refilled go first; with
        // none refilled, the least recently touched one; the table never exceeds its bound.
        let t0 = Instant::now();
        let mut b = TokenBuckets::new(WriteRate { per_s: 1, burst: 2 }, 3);
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            b.check(k, t0 + ms(i as u64)).unwrap();
        }
        assert_eq!(b.len(), 3);
        // Nothing refilled yet: "a" (touched first) makes room for "d".
        b.check("d", t0 + ms(10)).unwrap();
        assert_eq!(b.len(), 3);
        assert!(!b.buckets.contains_key("a") && b.buckets.contains_key("d"));
        // "b" writes again, so it is still short of its burst when the table is next full.
        b.check("b", t0 + ms(20)).unwrap();
        let later = t0 + ms(1_500);
        // "c" and "d" (one token used, refilling at 1/s) are full again by then, "b" is not.
        b.check("e", later).unwrap();
        assert_eq!(b.len(), 2, "both refilled buckets went: {:?}", b.buckets.keys());
        assert!(b.buckets.contains_key("b") && b.buckets.contains_key("e"));
        for i in 0..1_000 {
            let _ = b.check(&format!("flood{i}"), later + ms(i));
            assert!(b.len() <= 3);
        }
    }

    #[test]
    fn retry_after_rounds_up_for_headers_and_messages() {
        // Proves Retry-After is never 0 s and the message's milliseconds round up.
        let l = |nanos| Limited { retry_after: Duration::from_nanos(nanos), limit: RATE };
        assert_eq!((l(1).retry_after_ms(), l(1).retry_after_s()), (1, 1));
        assert_eq!((l(1_000_000_000).retry_after_s(), l(1_000_000_001).retry_after_s()), (1, 2));
        assert_eq!(l(0).retry_after_s(), 1);
        assert_eq!(l(2_500_000).retry_after_ms(), 3);
    }

    #[test]
    fn the_shared_limiter_uses_the_core() {
        // Proves WriteLimiter applies the same buckets across calls.
        let t0 = Instant::now();
        let w = WriteLimiter::new(WriteRate { per_s: 1000, burst: 2000 });
        for _ in 0..2000 {
            w.check("127.0.0.1", t0).unwrap();
        }
        let err = w.check("127.0.0.1", t0).unwrap_err();
        assert_eq!(err.retry_after, ms(1));
        assert_eq!(err.to_string(), "write rate limit: 1000/s per client (burst 2000); retry in 1 ms");
        assert!(w.check("10.0.0.1", t0).is_ok());
    }
}
