//! Deterministic tests of the coordinate core: seeded randomness, RTTs as plain arguments.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn ms(x: f64) -> Duration {
    Duration::from_secs_f64(x / 1000.0)
}

fn client() -> CoordinateClient {
    CoordinateClient::new(CoordinateConfig::default(), 1).unwrap()
}

/// A coordinate at `vec_s` (padded with zeros to 8 dimensions).
fn at(vec_s: &[f64], height_s: f64, adjustment_s: f64) -> SerfCoordinate {
    let mut vec = vec![0.0; 8];
    vec[..vec_s.len()].copy_from_slice(vec_s);
    SerfCoordinate { vec, error: 0.5, adjustment: adjustment_s, height: height_s }
}

#[test]
fn defaults_are_serfs() {
    // Proves the defaults equal Serf's coordinate.DefaultConfig and a new client sits at its origin.
    let c = CoordinateConfig::default();
    assert_eq!((c.dimensionality, c.vivaldi_error_max, c.vivaldi_ce, c.vivaldi_cc), (8, 1.5, 0.25, 0.25));
    assert_eq!(
        (c.adjustment_window_size, c.height_min_s, c.latency_filter_size, c.gravity_rho_s),
        (20, 10.0e-6, 3, 150.0)
    );
    let me = client();
    assert_eq!(
        me.coordinate(),
        &SerfCoordinate { vec: vec![0.0; 8], error: 1.5, adjustment: 0.0, height: 10.0e-6 }
    );
    assert_eq!(me.resets(), 0);
    let zero = CoordinateConfig { dimensionality: 0, ..CoordinateConfig::default() };
    assert!(matches!(CoordinateClient::new(zero, 1), Err(CoordinateError::Config { .. })));
}

#[test]
fn distance_adds_heights_and_adjustments_unless_that_goes_negative() {
    // Proves the distance formula: |a-b| + both heights + both adjustments, falling back to the raw distance when the adjusted one is not positive.
    let a = at(&[0.0, 0.0], 0.1, 0.05);
    let b = at(&[3.0, 4.0], 0.2, 0.15);
    assert!((estimated_rtt(&a, &b).as_secs_f64() - 5.5).abs() < 1e-9);
    let a = at(&[0.0, 0.0], 0.1, -10.0);
    assert!((estimated_rtt(&a, &b).as_secs_f64() - 5.3).abs() < 1e-9, "raw when adjusted < 0");
    let short = SerfCoordinate { vec: vec![0.0; 3], ..a.clone() };
    assert_eq!(client().distance_to(&short), Err(CoordinateError::DimensionMismatch { want: 8, got: 3 }));
}

#[test]
fn a_longer_rtt_than_expected_pushes_us_away() {
    // Proves the direction of the Vivaldi step: a node just above us that answers slower than its distance says pushes us below zero.
    let mut me = client();
    let above = at(&[0.0, 0.0, 0.001], 10.0e-6, 0.0);
    let after = me.update("other", &above, ms(2.0)).unwrap().clone();
    assert!(after.vec[2] < 0.0, "z should go negative: {after:?}");
    assert!(after.error < 1.5, "one observation raises confidence: {}", after.error);
    assert!(after.height >= 10.0e-6);
}

#[test]
fn the_latency_filter_is_a_median_of_the_last_three_per_node() {
    // Proves one slow sample among fast ones is ignored, the window keeps three, and forget_node clears it.
    let mut me = client();
    let medians: Vec<f64> = [10.0, 500.0, 10.0, 10.0, 500.0, 500.0]
        .iter()
        .map(|x| (me.latency_filter("a", x / 1000.0) * 1000.0).round())
        .collect();
    // Two samples give the upper of the two, as Serf's sorted[len/2] does.
    assert_eq!(medians, [10.0, 500.0, 10.0, 10.0, 10.0, 500.0]);
    assert_eq!((me.latency_filter("b", 0.020) * 1000.0).round(), 20.0, "per node");
    me.forget_node("a");
    assert_eq!((me.latency_filter("a", 0.001) * 1000.0).round(), 1.0, "forgotten");
}

#[test]
fn bad_coordinates_and_rtts_are_refused_without_changing_ours() {
    // Proves NaN/infinite components, a dimension mismatch and an RTT over 10 s are errors that leave our coordinate as it was.
    let mut me = client();
    me.update("a", &at(&[0.002], 10.0e-6, 0.0), ms(3.0)).unwrap();
    let before = me.coordinate().clone();
    let mut nan = at(&[0.001], 10.0e-6, 0.0);
    nan.vec[3] = f64::NAN;
    let inf = SerfCoordinate { height: f64::INFINITY, ..at(&[0.001], 0.0, 0.0) };
    let err = SerfCoordinate { error: f64::NEG_INFINITY, ..at(&[0.001], 0.0, 0.0) };
    let short = SerfCoordinate { vec: vec![0.001; 3], ..at(&[], 10.0e-6, 0.0) };
    assert_eq!(me.update("a", &nan, ms(1.0)).err(), Some(CoordinateError::NotFinite));
    assert_eq!(me.update("a", &inf, ms(1.0)).err(), Some(CoordinateError::NotFinite));
    assert_eq!(me.update("a", &err, ms(1.0)).err(), Some(CoordinateError::NotFinite));
    assert_eq!(
        me.update("a", &short, ms(1.0)).err(),
        Some(CoordinateError::DimensionMismatch { want: 8, got: 3 })
    );
    let slow = me.update("a", &at(&[0.001], 10.0e-6, 0.0), Duration::from_secs(11)).err();
    assert!(matches!(slow, Some(CoordinateError::RttOutOfRange { .. })), "{slow:?}");
    assert!(me.set_coordinate(nan).is_err());
    assert_eq!(me.coordinate(), &before);
    assert_eq!(me.resets(), 0);
}

#[test]
fn a_coordinate_that_overflows_is_reset_to_the_origin_and_counted() {
    // Proves the reset path: a valid but enormous peer coordinate drives ours to infinity, which resets it and bumps resets().
    let mut me = client();
    let huge = at(&[1.0e300, -1.0e300, 1.0e300], 1.0e300, 0.0);
    let after = me.update("a", &huge, ms(1.0)).unwrap().clone();
    assert!(is_valid(&after));
    assert_eq!(after, origin(me.config()));
    assert_eq!(me.resets(), 1);
}

#[test]
fn gravity_pulls_a_far_coordinate_back_toward_the_origin() {
    // Proves gravity: with our coordinate 100 s out, one gravity step shortens the distance to the origin.
    let mut me = client();
    me.set_coordinate(at(&[100.0], 10.0e-6, 0.0)).unwrap();
    me.update_gravity();
    let x = me.coordinate().vec[0];
    assert!(x < 100.0 && x > 99.0, "pulled in a little: {x}");
}

/// Nodes on a plane (positions in ms) with a fixed access delay; RTT = distance + 2 × access.
struct World {
    positions_ms: Vec<(f64, f64)>,
    access_ms: f64,
}

impl World {
    fn rtt_ms(&self, i: usize, j: usize) -> f64 {
        let ((xi, yi), (xj, yj)) = (self.positions_ms[i], self.positions_ms[j]);
        ((xi - xj).powi(2) + (yi - yj).powi(2)).sqrt() + 2.0 * self.access_ms
    }
}

#[test]
fn simulated_nodes_converge_to_their_real_rtts() {
    // Proves convergence: five nodes probing each other at random with ±5% jitter end up with pairwise estimates within 5% (or 0.5 ms) of the true RTTs, and with low error.
    let seed = 0x5eed_c00d;
    let world = World {
        positions_ms: vec![(0.0, 0.0), (20.0, 0.0), (0.0, 30.0), (25.0, 25.0), (-10.0, 15.0)],
        access_ms: 1.0,
    };
    let n = world.positions_ms.len();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut clients: Vec<CoordinateClient> = (0..n)
        .map(|i| CoordinateClient::new(CoordinateConfig::default(), seed + i as u64).unwrap())
        .collect();
    for _ in 0..5_000 {
        let i = rng.random_range(0..n);
        let j = (i + rng.random_range(1..n)) % n;
        let jitter = rng.random_range(0.95..1.05);
        let theirs = clients[j].coordinate().clone();
        clients[i].update(&format!("n{j}"), &theirs, ms(world.rtt_ms(i, j) * jitter)).unwrap();
    }
    for i in 0..n {
        for j in 0..n {
            if i == j {
                continue;
            }
            let truth_ms = world.rtt_ms(i, j);
            let est_ms = clients[i].distance_to(clients[j].coordinate()).unwrap().as_secs_f64() * 1000.0;
            let tolerance_ms = (truth_ms * 0.05).max(0.5);
            assert!(
                (est_ms - truth_ms).abs() <= tolerance_ms,
                "seed {seed:#x}: n{i}->n{j} estimated {est_ms:.2} ms, real {truth_ms:.2} ms"
            );
        }
        assert!(
            clients[i].coordinate().error < 0.1,
            "seed {seed:#x}: n{i} error {}",
            clients[i].coordinate().error
        );
        assert_eq!(clients[i].resets(), 0);
    }
}
