//! Base-2 logarithmic histograms: the API surface openraft uses (`Histogram`,
//! `PercentileStats`, `AsciiChart`), with bucket indices computed arithmetically instead of
//! looked up in precomputed tables.
//!
//! Buckets (width 3, four buckets per power of two): values 0–3 have a bucket each; above
//! that, a value's bucket is its most significant bit's position and the two bits after it,
//! so a bucket spans at most a quarter of its lower bound and every percentile is within 25 %
//! of a recorded value. Percentiles report the bucket's midpoint, clamped to the smallest and
//! largest value recorded.

use std::fmt;

/// Bits of a value that pick its bucket: the most significant bit and the two after it.
const WIDTH: u32 = 3;
/// Buckets per power of two.
const GROUP: u64 = 1 << (WIDTH - 1);
/// Buckets for every u64: the first group holds 0..GROUP one per bucket; each later bit
/// position holds GROUP buckets.
const BUCKETS: usize = (GROUP as usize) * (66 - WIDTH as usize);

/// The bucket of `value`.
fn bucket_of(value: u64) -> usize {
    if value < GROUP {
        return value as usize;
    }
    let bits = u64::BITS - value.leading_zeros();
    let shift = bits - WIDTH;
    let offset = (value >> shift) & (GROUP - 1);
    (GROUP as usize) + (shift as usize) * (GROUP as usize) + offset as usize
}

/// The smallest value in `bucket`.
fn bucket_low(bucket: usize) -> u64 {
    let g = GROUP as usize;
    if bucket < g {
        return bucket as u64;
    }
    let shift = ((bucket - g) / g) as u32;
    let offset = ((bucket - g) % g) as u64;
    (GROUP | offset) << shift
}

/// The largest value in `bucket`.
fn bucket_high(bucket: usize) -> u64 {
    if bucket + 1 >= BUCKETS {
        return u64::MAX;
    }
    bucket_low(bucket + 1) - 1
}

/// A histogram of u64 samples in base-2 logarithmic buckets. `T` is data a caller may attach
/// to the histogram (openraft uses `()`).
pub struct Histogram<T = ()> {
    counts: Box<[u64]>,
    total: u64,
    min: u64,
    max: u64,
    data: Option<T>,
}

impl<T> Histogram<T> {
    /// An empty histogram.
    pub fn new() -> Self {
        Self { counts: vec![0; BUCKETS].into_boxed_slice(), total: 0, min: u64::MAX, max: 0, data: None }
    }

    /// Records one sample.
    pub fn record(&mut self, value: u64) {
        self.record_n(value, 1);
    }

    /// Records `count` samples of `value`.
    pub fn record_n(&mut self, value: u64, count: u64) {
        if count == 0 {
            return;
        }
        let b = bucket_of(value);
        self.counts[b] = self.counts[b].saturating_add(count);
        self.total = self.total.saturating_add(count);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Samples recorded.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Forgets every sample (attached data stays).
    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.total = 0;
        self.min = u64::MAX;
        self.max = 0;
    }

    /// Attaches `data`; returns what was attached before.
    pub fn set_current_data(&mut self, data: T) -> Option<T> {
        self.data.replace(data)
    }

    /// The attached data.
    pub fn current_data(&self) -> Option<&T> {
        self.data.as_ref()
    }

    /// Bucket width in bits (always 3 here).
    pub fn width(&self) -> usize {
        WIDTH as usize
    }

    /// Number of buckets.
    pub fn num_buckets(&self) -> usize {
        BUCKETS
    }

    /// The value at percentile `p` (0.0–1.0): the midpoint of the bucket holding that rank,
    /// clamped to the recorded minimum and maximum; 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        // The rank (1-based) of the sample at p.
        let rank = ((p * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, hi) = (bucket_low(b), bucket_high(b));
                let mid = lo + (hi - lo) / 2;
                return mid.clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// Several percentiles at once.
    pub fn percentiles<'a>(&'a self, ps: &'a [f64]) -> impl Iterator<Item = u64> + 'a {
        ps.iter().map(move |&p| self.percentile(p))
    }

    /// The standard percentile set.
    pub fn percentile_stats(&self) -> PercentileStats {
        PercentileStats {
            samples: self.total,
            p0_1: self.percentile(0.001),
            p1: self.percentile(0.01),
            p5: self.percentile(0.05),
            p10: self.percentile(0.10),
            p50: self.percentile(0.50),
            p90: self.percentile(0.90),
            p99: self.percentile(0.99),
            p99_9: self.percentile(0.999),
        }
    }

    /// Adds `other`'s samples to this histogram.
    pub fn merge(&mut self, other: &Histogram<T>) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
        self.total = self.total.saturating_add(other.total);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Non-empty buckets as (low, high, count), in value order.
    fn nonempty(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(b, &c)| (bucket_low(b), bucket_high(b), c))
    }
}

impl<T> Default for Histogram<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone> Clone for Histogram<T> {
    fn clone(&self) -> Self {
        Self {
            counts: self.counts.clone(),
            total: self.total,
            min: self.min,
            max: self.max,
            data: self.data.clone(),
        }
    }
}

impl<T> fmt::Debug for Histogram<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("stats", &self.percentile_stats())
            .finish()
    }
}

impl<T> PartialEq for Histogram<T> {
    fn eq(&self, other: &Self) -> bool {
        self.counts == other.counts && self.total == other.total
    }
}

impl<T> Eq for Histogram<T> {}

/// Percentiles of a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PercentileStats {
    /// Samples recorded.
    pub samples: u64,
    /// 0.1th percentile.
    pub p0_1: u64,
    /// 1st percentile.
    pub p1: u64,
    /// 5th percentile.
    pub p5: u64,
    /// 10th percentile.
    pub p10: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
}

impl fmt::Display for PercentileStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[samples: {}, P0.1: {}, P1: {}, P5: {}, P10: {}, P50: {}, P90: {}, P99: {}, P99.9: {}]",
            self.samples, self.p0_1, self.p1, self.p5, self.p10, self.p50, self.p90, self.p99, self.p99_9
        )
    }
}

/// Named histograms drawn as text bars, one row per non-empty bucket.
pub struct AsciiChart<T = ()> {
    series: Vec<(String, Histogram<T>)>,
    bar_width: usize,
}

impl<T> AsciiChart<T> {
    /// An empty chart.
    pub fn new() -> Self {
        Self { series: Vec::new(), bar_width: 40 }
    }

    /// A chart of the given (name, histogram) pairs.
    pub fn from_series(series: impl IntoIterator<Item = (impl ToString, Histogram<T>)>) -> Self {
        let mut c = Self::new();
        c.series = series.into_iter().map(|(n, h)| (n.to_string(), h)).collect();
        c
    }

    /// Adds one named histogram.
    pub fn add(mut self, name: &str, hist: Histogram<T>) -> Self {
        self.series.push((name.to_string(), hist));
        self
    }

    /// The longest bar, in characters.
    pub fn bar_width(mut self, width: usize) -> Self {
        self.bar_width = width.max(1);
        self
    }

    /// One line per series: its name and percentiles.
    pub fn compact(&self) -> CompactDisplay<'_, T> {
        CompactDisplay(self)
    }

    /// Per series, one bar per non-empty bucket.
    pub fn detailed(&self) -> DetailedDisplay<'_, T> {
        DetailedDisplay(self)
    }
}

impl<T> Default for AsciiChart<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// See [`AsciiChart::compact`].
pub struct CompactDisplay<'a, T>(&'a AsciiChart<T>);

impl<T> fmt::Display for CompactDisplay<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name_w = self.0.series.iter().map(|(n, _)| n.chars().count()).max().unwrap_or(0);
        for (name, h) in &self.0.series {
            writeln!(f, "{name:>name_w$}: {}", h.percentile_stats())?;
        }
        Ok(())
    }
}

/// See [`AsciiChart::detailed`].
pub struct DetailedDisplay<'a, T>(&'a AsciiChart<T>);

impl<T> fmt::Display for DetailedDisplay<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, h) in &self.0.series {
            writeln!(f, "{name} (n={})", h.total())?;
            let most = h.nonempty().map(|(_, _, c)| c).max().unwrap_or(0);
            for (lo, hi, c) in h.nonempty() {
                let len = ((c as u128 * self.0.bar_width as u128).div_ceil(most.max(1) as u128)) as usize;
                writeln!(f, "  {lo:>12}..={hi:<20} {:<w$} {c}", "#".repeat(len), w = self.0.bar_width)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_u64_range_without_gaps() {
        assert_eq!(bucket_low(0), 0);
        for b in 0..BUCKETS - 1 {
            assert_eq!(bucket_high(b) + 1, bucket_low(b + 1), "bucket {b}");
            assert_eq!(bucket_of(bucket_low(b)), b);
            assert_eq!(bucket_of(bucket_high(b)), b);
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_high(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn a_bucket_spans_at_most_a_quarter_of_its_low_bound() {
        for b in GROUP as usize..BUCKETS {
            let (lo, hi) = (bucket_low(b), bucket_high(b));
            assert!(hi - lo < lo / 4 + 1, "bucket {b}: {lo}..={hi}");
        }
    }

    #[test]
    fn percentiles_of_1_to_1000_are_within_a_bucket() {
        let mut h = Histogram::<()>::new();
        for v in 1..=1000 {
            h.record(v);
        }
        let s = h.percentile_stats();
        assert_eq!(s.samples, 1000);
        for (got, want) in [(s.p1, 10), (s.p50, 500), (s.p90, 900), (s.p99, 990)] {
            assert!(got.abs_diff(want) <= want / 4, "got {got}, want about {want}");
        }
        assert!(s.p0_1 >= 1 && s.p99_9 <= 1000);
    }

    #[test]
    fn empty_and_single_value_histograms() {
        let mut h = Histogram::<()>::new();
        assert_eq!(h.percentile_stats(), PercentileStats::default());
        h.record_n(7, 3);
        let s = h.percentile_stats();
        assert_eq!((s.samples, s.p0_1, s.p50, s.p99_9), (3, 7, 7, 7));
        h.clear();
        assert_eq!(h.total(), 0);
    }

    #[test]
    fn merge_adds_counts() {
        let (mut a, mut b) = (Histogram::<()>::new(), Histogram::<()>::new());
        a.record(1);
        b.record_n(100, 4);
        a.merge(&b);
        assert_eq!(a.total(), 5);
        assert_eq!(a.percentile(1.0), 100);
        assert_eq!(a.percentile(0.0), 1);
    }

    #[test]
    fn charts_render_every_series() {
        let mut h = Histogram::<()>::new();
        h.record_n(10, 2);
        h.record(1000);
        let chart = AsciiChart::new().add("a", h.clone()).add("b", Histogram::new());
        let compact = chart.compact().to_string();
        assert!(compact.contains("a: [samples: 3") && compact.contains("b: [samples: 0"), "{compact}");
        let detailed = chart.detailed().to_string();
        assert!(detailed.contains("a (n=3)") && detailed.contains("b (n=0)"), "{detailed}");
        assert_eq!(detailed.lines().filter(|l| l.contains('#')).count(), 2, "{detailed}");
    }
}
