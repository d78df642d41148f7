//! Serf's Vivaldi network coordinates (hashicorp/serf `coordinate/`): each node keeps an
//! estimated position from which the RTT to any other node can be guessed without probing it.
//! A direct probe's ack carries the peer's coordinate (see `wire::decode_ping_payload`); its
//! RTT and that coordinate feed [`CoordinateClient::update`].
//!
//! Pure: RTTs are arguments, randomness is seeded, no clock, no sockets. The algorithm and its
//! constants follow Serf (Vivaldi with a height, a per-node median latency filter, an
//! adjustment window and gravity toward the origin) so our coordinates mean what a Go agent's
//! mean. Must not import `gossip::net`, `gossip::swim` or `gossip::serf`.

mod math;
#[cfg(test)]
mod tests;

pub use math::{estimated_rtt, is_valid, origin};

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::gossip::wire::SerfCoordinate;
use math::{apply_force, distance_s, raw_distance_s, ZERO_THRESHOLD_S};

/// Largest RTT accepted as an observation (Serf refuses longer ones).
pub const RTT_MAX: Duration = Duration::from_secs(10);
/// Nodes whose latency samples are kept at once; beyond it, an arbitrary node's samples are
/// dropped to make room (Serf's map is unbounded; members are reaped from it).
const LATENCY_FILTER_NODES_MAX: usize = 16 * 1024;

/// Tuning of the coordinate algorithm. The references are those of Serf's `config.go`:
/// [1] Dabek et al., "Vivaldi: A decentralized network coordinate system", SIGCOMM 2004;
/// [2] Ledlie et al., "Network Coordinates in the Wild", NSDI 2007;
/// [3] Lee et al., "On suitability of Euclidean embedding for host-based network coordinate
/// systems", IEEE/ACM ToN 2010.
#[derive(Debug, Clone, PartialEq)]
pub struct CoordinateConfig {
    /// Euclidean dimensions; [2] found 8 plus a height to be the sweet spot.
    pub dimensionality: usize,
    /// Error of a node without observations, and the cap on the error.
    pub vivaldi_error_max: f64,
    /// How much one observation can change a node's confidence ([1]).
    pub vivaldi_ce: f64,
    /// How much one observation can move a node's coordinate ([1]).
    pub vivaldi_cc: f64,
    /// Samples kept for the adjustment term ([3]); 0 turns it off.
    pub adjustment_window_size: usize,
    /// Smallest height, in seconds: small next to real coordinates, but always positive.
    pub height_min_s: f64,
    /// RTT samples per node whose median is used, to ride out blips ([2]).
    pub latency_filter_size: usize,
    /// How strongly gravity pulls coordinates back toward the origin, in seconds ([2]).
    pub gravity_rho_s: f64,
}

impl Default for CoordinateConfig {
    /// Serf's `coordinate.DefaultConfig`, which every Go agent uses.
    fn default() -> Self {
        CoordinateConfig {
            dimensionality: 8,
            vivaldi_error_max: 1.5,
            vivaldi_ce: 0.25,
            vivaldi_cc: 0.25,
            adjustment_window_size: 20,
            height_min_s: 10.0e-6,
            latency_filter_size: 3,
            gravity_rho_s: 150.0,
        }
    }
}

/// Why a coordinate or an observation was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoordinateError {
    #[error("coordinate has {got} dimensions, ours has {want}")]
    DimensionMismatch { want: usize, got: usize },
    #[error("coordinate has a NaN or infinite component")]
    NotFinite,
    #[error("round trip time {rtt:?} is longer than {max:?}")]
    RttOutOfRange { rtt: Duration, max: Duration },
    #[error("invalid coordinate config: {reason}")]
    Config { reason: &'static str },
}

/// Our coordinate and what it takes to keep it updated (Go's `coordinate.Client`).
#[derive(Debug)]
pub struct CoordinateClient {
    config: CoordinateConfig,
    coord: SerfCoordinate,
    origin: SerfCoordinate,
    /// Ring of `rtt - raw distance` samples, in seconds, for the adjustment term.
    adjustment_samples_s: Vec<f64>,
    adjustment_index: usize,
    /// The last few RTTs per node, in seconds, oldest first.
    latency_samples_s: HashMap<String, VecDeque<f64>>,
    /// Times our coordinate went invalid and was reset to the origin.
    resets: u64,
    rng: StdRng,
}

impl CoordinateClient {
    /// A client at the origin; `seed` drives the random direction used when two coordinates
    /// coincide.
    pub fn new(config: CoordinateConfig, seed: u64) -> Result<CoordinateClient, CoordinateError> {
        if config.dimensionality == 0 {
            return Err(CoordinateError::Config { reason: "dimensionality must be > 0" });
        }
        if config.latency_filter_size == 0 {
            return Err(CoordinateError::Config { reason: "latency filter size must be > 0" });
        }
        let (finite, positive) = (
            [
                config.vivaldi_error_max,
                config.vivaldi_ce,
                config.vivaldi_cc,
                config.height_min_s,
                config.gravity_rho_s,
            ]
            .iter()
            .all(|f| f.is_finite()),
            config.height_min_s > 0.0 && config.gravity_rho_s > 0.0 && config.vivaldi_error_max > 0.0,
        );
        if !(finite && positive) {
            return Err(CoordinateError::Config { reason: "tuning factors must be finite and positive" });
        }
        let origin = math::origin(&config);
        Ok(CoordinateClient {
            coord: origin.clone(),
            origin,
            adjustment_samples_s: vec![0.0; config.adjustment_window_size],
            adjustment_index: 0,
            latency_samples_s: HashMap::new(),
            resets: 0,
            rng: StdRng::seed_from_u64(seed),
            config,
        })
    }

    pub fn config(&self) -> &CoordinateConfig {
        &self.config
    }

    /// Our current estimate.
    pub fn coordinate(&self) -> &SerfCoordinate {
        &self.coord
    }

    /// How many times our coordinate was reset after going invalid (Serf's `coordinate_resets`).
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// Forces our coordinate to a known, valid state.
    pub fn set_coordinate(&mut self, coord: SerfCoordinate) -> Result<(), CoordinateError> {
        self.check(&coord)?;
        self.coord = coord;
        Ok(())
    }

    /// Drops what we remember about `node` (its latency samples).
    pub fn forget_node(&mut self, node: &str) {
        self.latency_samples_s.remove(node);
    }

    /// Estimated RTT from us to `other`.
    pub fn distance_to(&self, other: &SerfCoordinate) -> Result<Duration, CoordinateError> {
        self.check_dimensions(other)?;
        Ok(estimated_rtt(&self.coord, other))
    }

    /// Takes one observation: we measured `rtt` to `node`, which says it is at `other`.
    /// Returns our updated coordinate. A refused observation changes nothing.
    pub fn update(
        &mut self,
        node: &str,
        other: &SerfCoordinate,
        rtt: Duration,
    ) -> Result<&SerfCoordinate, CoordinateError> {
        self.check(other)?;
        if rtt > RTT_MAX {
            return Err(CoordinateError::RttOutOfRange { rtt, max: RTT_MAX });
        }
        let rtt_s = self.latency_filter(node, rtt.as_secs_f64());
        self.update_vivaldi(other, rtt_s);
        self.update_adjustment(other, rtt_s);
        self.update_gravity();
        if !is_valid(&self.coord) {
            self.resets += 1;
            self.coord = self.origin.clone();
        }
        Ok(&self.coord)
    }

    fn check_dimensions(&self, other: &SerfCoordinate) -> Result<(), CoordinateError> {
        if other.vec.len() != self.coord.vec.len() {
            return Err(CoordinateError::DimensionMismatch {
                want: self.coord.vec.len(),
                got: other.vec.len(),
            });
        }
        Ok(())
    }

    fn check(&self, other: &SerfCoordinate) -> Result<(), CoordinateError> {
        self.check_dimensions(other)?;
        if !is_valid(other) {
            return Err(CoordinateError::NotFinite);
        }
        Ok(())
    }

    /// Adds a sample for `node` and returns the median of its last few (the upper one of two).
    fn latency_filter(&mut self, node: &str, rtt_s: f64) -> f64 {
        if !self.latency_samples_s.contains_key(node)
            && self.latency_samples_s.len() >= LATENCY_FILTER_NODES_MAX
        {
            if let Some(evict) = self.latency_samples_s.keys().next().cloned() {
                self.latency_samples_s.remove(&evict);
            }
        }
        let size = self.config.latency_filter_size;
        let samples =
            self.latency_samples_s.entry(node.to_string()).or_insert_with(|| VecDeque::with_capacity(size));
        samples.push_back(rtt_s);
        while samples.len() > size {
            samples.pop_front();
        }
        let mut sorted: Vec<f64> = samples.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied().unwrap_or(rtt_s)
    }

    /// The Vivaldi step: move along the line to `other` in proportion to how wrong our
    /// distance estimate was, weighted by our error against theirs.
    fn update_vivaldi(&mut self, other: &SerfCoordinate, rtt_s: f64) {
        let c = &self.config;
        let dist_s = distance_s(&self.coord, other);
        let rtt_s = rtt_s.max(ZERO_THRESHOLD_S);
        let wrongness = (dist_s - rtt_s).abs() / rtt_s;
        let total_error = (self.coord.error + other.error).max(ZERO_THRESHOLD_S);
        let weight = self.coord.error / total_error;
        self.coord.error = (c.vivaldi_ce * weight * wrongness
            + self.coord.error * (1.0 - c.vivaldi_ce * weight))
            .min(c.vivaldi_error_max);
        let force = c.vivaldi_cc * weight * (rtt_s - dist_s);
        self.coord = apply_force(&self.config, &mut self.rng, &self.coord, force, other);
    }

    /// The adjustment term: half the mean of the last samples of `rtt - raw distance`.
    fn update_adjustment(&mut self, other: &SerfCoordinate, rtt_s: f64) {
        let window = self.adjustment_samples_s.len();
        if window == 0 {
            return;
        }
        self.adjustment_samples_s[self.adjustment_index] = rtt_s - raw_distance_s(&self.coord, other);
        self.adjustment_index = (self.adjustment_index + 1) % window;
        self.coord.adjustment = self.adjustment_samples_s.iter().sum::<f64>() / (2.0 * window as f64);
    }

    /// A small pull toward the origin, growing with the square of the distance, against drift.
    fn update_gravity(&mut self) {
        let dist_s = distance_s(&self.origin, &self.coord);
        let force = -(dist_s / self.config.gravity_rho_s).powi(2);
        self.coord = apply_force(&self.config, &mut self.rng, &self.coord, force, &self.origin);
    }
}
