//! The metric kinds: [`Counter`], [`Gauge`], [`Histogram`] (fixed buckets), and [`Labeled`],
//! a bounded set of metrics told apart by label values chosen at run time. Every update is a
//! relaxed atomic operation; only the first use of a new label set takes a write lock and
//! allocates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

/// A value that only goes up (until the process restarts).
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the total: for counts kept elsewhere (a pure core's tally) and copied here.
    pub fn set_total(&self, total: u64) {
        self.0.fetch_max(total, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down, kept as the bits of an `f64`.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub const fn new() -> Gauge {
        Gauge(AtomicU64::new(0))
    }

    pub fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Observations counted into fixed buckets (`bounds` are the inclusive upper bounds, ascending;
/// `+Inf` is implied), with their sum and count.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds: [f64; N],
    /// Observations per bucket (not cumulative); the last slot is above every bound.
    buckets: [AtomicU64; N],
    above: AtomicU64,
    sum_bits: AtomicU64,
    count: AtomicU64,
}

/// What a histogram holds at one moment, for the encoder.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, cumulative count)` for each finite bucket, ascending.
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    /// The `+Inf` bucket: every observation.
    pub count: u64,
}

impl<const N: usize> Histogram<N> {
    pub const fn new(bounds: [f64; N]) -> Histogram<N> {
        Histogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; N],
            above: AtomicU64::new(0),
            sum_bits: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        match self.bounds.iter().position(|b| value <= *b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.above.fetch_add(1, Ordering::Relaxed),
        };
        let mut current = self.sum_bits.load(Ordering::Relaxed);
        // Bounded: each failed exchange means another thread added in between.
        for _ in 0..64 {
            let next = (f64::from_bits(current) + value).to_bits();
            match self.sum_bits.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Cumulative buckets; `count` is at least the last bucket even while an observation is
    /// half recorded, so the exposition stays monotonic.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0u64;
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .zip(&self.buckets)
            .map(|(bound, n)| {
                running += n.load(Ordering::Relaxed);
                (*bound, running)
            })
            .collect();
        let all = running + self.above.load(Ordering::Relaxed);
        let count = self.count.load(Ordering::Relaxed).max(all);
        HistogramSnapshot { buckets, sum: f64::from_bits(self.sum_bits.load(Ordering::Relaxed)), count }
    }
}

/// One label value that every label set beyond [`Labeled`]'s limit is folded into.
pub const OVERFLOW_LABEL: &str = "other";

/// Metrics of one family told apart by label values known only at run time (API routes and
/// codes). At most `max` label sets; later new sets share one whose values are all
/// [`OVERFLOW_LABEL`], so a client cannot grow the family without bound.
#[derive(Debug)]
pub struct Labeled<M> {
    series: RwLock<Vec<(Vec<String>, M)>>,
    make: fn() -> M,
    max: usize,
}

impl<M> Labeled<M> {
    pub const fn new(make: fn() -> M, max: usize) -> Labeled<M> {
        Labeled { series: RwLock::new(Vec::new()), make, max }
    }

    /// Runs `f` on the metric for `values` (created on first use).
    pub fn with<R>(&self, values: &[&str], f: impl FnOnce(&M) -> R) -> R {
        let same = |have: &[String], want: &[&str]| have.iter().map(String::as_str).eq(want.iter().copied());
        {
            let series = self.series.read().unwrap_or_else(|p| p.into_inner());
            if let Some((_, m)) = series.iter().find(|(v, _)| same(v, values)) {
                return f(m);
            }
        }
        let mut series = self.series.write().unwrap_or_else(|p| p.into_inner());
        let overflow: Vec<&str> = vec![OVERFLOW_LABEL; values.len()];
        let key: &[&str] = if series.len() + 1 >= self.max { &overflow } else { values };
        let at = match series.iter().position(|(v, _)| same(v, key)) {
            Some(at) => at,
            None => {
                series.push((key.iter().map(|s| s.to_string()).collect(), (self.make)()));
                series.len() - 1
            }
        };
        f(&series[at].1)
    }

    /// Every label set with a value read from its metric, in first-use order.
    pub fn collect<T>(&self, read: impl Fn(&M) -> T) -> Vec<(Vec<String>, T)> {
        let series = self.series.read().unwrap_or_else(|p| p.into_inner());
        series.iter().map(|(v, m)| (v.clone(), read(m))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_with_sum_and_count() {
        // Proves bucket placement (a value on a bound belongs to it), cumulative counts, the
        // sum, and observations above every bound counted only in +Inf.
        let h = Histogram::new([0.1, 1.0]);
        for v in [0.05, 0.1, 0.5, 3.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(0.1, 2), (1.0, 3)]);
        assert_eq!(s.count, 4);
        assert!((s.sum - 3.65).abs() < 1e-9, "sum {}", s.sum);
    }

    #[test]
    fn labeled_series_are_found_again_and_bounded() {
        // Proves the same values reach the same counter, and that label sets beyond the bound
        // fold into one `other` set instead of growing the family.
        let family: Labeled<Counter> = Labeled::new(Counter::new, 3);
        family.with(&["GET /a", "200"], |c| c.inc());
        family.with(&["GET /a", "200"], |c| c.inc());
        family.with(&["GET /b", "200"], |c| c.inc());
        family.with(&["GET /c", "500"], |c| c.inc());
        family.with(&["GET /d", "404"], |c| c.add(2));
        let got = family.collect(Counter::get);
        let want: Vec<(Vec<String>, u64)> = vec![
            (vec!["GET /a".into(), "200".into()], 2),
            (vec!["GET /b".into(), "200".into()], 1),
            (vec!["other".into(), "other".into()], 3),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn counters_and_gauges_keep_their_values() {
        // Proves the atomics: adds accumulate, a copied total never goes back, gauges hold floats.
        let c = Counter::new();
        c.add(5);
        c.inc();
        c.set_total(4);
        assert_eq!(c.get(), 6);
        c.set_total(9);
        assert_eq!(c.get(), 9);
        let g = Gauge::new();
        g.set(-2.5);
        assert_eq!(g.get(), -2.5);
    }
}
