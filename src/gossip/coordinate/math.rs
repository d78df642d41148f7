//! Vector arithmetic on Serf coordinates (hashicorp/serf `coordinate/coordinate.go`):
//! validity, distance with and without adjustments, and applying a force. Every value is in
//! seconds. Callers check dimensions first; these functions assume equal lengths.

use std::time::Duration;

use rand::Rng;

use super::CoordinateConfig;
use crate::gossip::wire::SerfCoordinate;

/// Below this, two positions count as the same point, and an RTT as zero (Go's `zeroThreshold`).
pub(super) const ZERO_THRESHOLD_S: f64 = 1.0e-6;

/// A coordinate at the origin with no observations yet (Go's `NewCoordinate`).
pub fn origin(config: &CoordinateConfig) -> SerfCoordinate {
    SerfCoordinate {
        vec: vec![0.0; config.dimensionality],
        error: config.vivaldi_error_max,
        adjustment: 0.0,
        height: config.height_min_s,
    }
}

/// False if any component is NaN or infinite.
pub fn is_valid(c: &SerfCoordinate) -> bool {
    c.vec.iter().chain([&c.error, &c.adjustment, &c.height]).all(|f| f.is_finite())
}

/// Estimated RTT between two coordinates of the same dimension, adjustments included; a
/// negative or non-finite estimate (only possible with nonsense inputs) reads as zero.
pub fn estimated_rtt(a: &SerfCoordinate, b: &SerfCoordinate) -> Duration {
    Duration::try_from_secs_f64(distance_s(a, b)).unwrap_or(Duration::ZERO)
}

/// Distance in seconds including both adjustments, unless that would not be positive.
pub(super) fn distance_s(a: &SerfCoordinate, b: &SerfCoordinate) -> f64 {
    let raw = raw_distance_s(a, b);
    let adjusted = raw + a.adjustment + b.adjustment;
    if adjusted > 0.0 {
        adjusted
    } else {
        raw
    }
}

/// Vivaldi distance in seconds: Euclidean part plus both heights, no adjustments.
pub(super) fn raw_distance_s(a: &SerfCoordinate, b: &SerfCoordinate) -> f64 {
    magnitude(a.vec.iter().zip(&b.vec).map(|(x, y)| x - y)) + a.height + b.height
}

/// `c` moved by `force` seconds along the line from `other` to `c` (away from `other` when
/// positive); the height follows in proportion, never below the configured minimum.
pub(super) fn apply_force(
    config: &CoordinateConfig,
    rng: &mut impl Rng,
    c: &SerfCoordinate,
    force: f64,
    other: &SerfCoordinate,
) -> SerfCoordinate {
    let (unit, mag) = unit_vector_at(rng, &c.vec, &other.vec);
    let mut ret = c.clone();
    for (x, u) in ret.vec.iter_mut().zip(&unit) {
        *x += u * force;
    }
    if mag > ZERO_THRESHOLD_S {
        ret.height = ((ret.height + other.height) * force / mag + ret.height).max(config.height_min_s);
    }
    ret
}

/// The unit vector pointing at `to` from `from`, and their distance. On top of each other:
/// a random direction and distance zero (and, if even that degenerates, the first axis).
fn unit_vector_at(rng: &mut impl Rng, to: &[f64], from: &[f64]) -> (Vec<f64>, f64) {
    let diff: Vec<f64> = to.iter().zip(from).map(|(a, b)| a - b).collect();
    let mag = magnitude(diff.iter().copied());
    if mag > ZERO_THRESHOLD_S {
        return (diff.iter().map(|x| x / mag).collect(), mag);
    }
    let random: Vec<f64> = diff.iter().map(|_| rng.random_range(-0.5..0.5)).collect();
    let rmag = magnitude(random.iter().copied());
    if rmag > ZERO_THRESHOLD_S {
        return (random.iter().map(|x| x / rmag).collect(), 0.0);
    }
    let mut axis = vec![0.0; diff.len()];
    if let Some(first) = axis.first_mut() {
        *first = 1.0;
    }
    (axis, 0.0)
}

fn magnitude(v: impl Iterator<Item = f64>) -> f64 {
    v.map(|x| x * x).sum::<f64>().sqrt()
}
