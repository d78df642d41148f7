//! The operations plot of the timeline: each client call at its invoke time, at the height of
//! its latency (log scale), coloured by outcome, writes as circles and reads as squares, an
//! unknown call drawn on to its completion. Also the subsample that keeps a large history's
//! picture bounded.

use std::fmt::Write;

use super::svg::{duration, escape, secs, Axis};
use crate::history::{Call, Op, Outcome};

/// Height of the plot.
pub const PLOT_H: f64 = 220.0;
/// Shortest latency the scale shows (anything faster is drawn at the bottom): 10 µs.
const LATENCY_MIN_NS: f64 = 1e4;

/// The ops to draw: all of them up to `max`; beyond it every non-ok op and every `stride`-th
/// ok op, so at most `max` ops unless the non-ok ones alone pass `max - max / 10` (then a tenth
/// of `max` is still given to ok ops). Returns the ops in their order and the stride (1: all).
pub fn subsample(ops: &[Op], max: usize) -> (Vec<&Op>, usize) {
    if ops.len() <= max {
        return (ops.iter().collect(), 1);
    }
    let ok = ops.iter().filter(|o| o.outcome == Outcome::Ok).count();
    let not_ok = ops.len() - ok;
    let ok_budget = max.saturating_sub(not_ok).max(max / 10).max(1);
    let stride = ok.div_ceil(ok_budget).max(1);
    let mut seen_ok = 0;
    let drawn: Vec<&Op> = ops
        .iter()
        .filter(|o| {
            if o.outcome != Outcome::Ok {
                return true;
            }
            seen_ok += 1;
            (seen_ok - 1) % stride == 0
        })
        .collect();
    debug_assert!(drawn.iter().filter(|o| o.outcome != Outcome::Ok).count() == not_ok);
    (drawn, stride)
}

/// `update c2-s1 v7`, `get c1-s3`, `list`.
pub fn describe(call: &Call) -> String {
    match call {
        Call::Register { id, version } => format!("register {id} v{version}"),
        Call::Update { id, version } => format!("update {id} v{version}"),
        Call::Deregister { id } => format!("deregister {id}"),
        Call::Get { id } => format!("get {id}"),
        Call::List => "list".to_string(),
    }
}

/// `10µs`, `1ms`, `100ms`, `10s` for 10^`d` nanoseconds.
fn decade(d: i64) -> String {
    let (unit, shift) = match d {
        ..=5 => ("µs", 3),
        6..=8 => ("ms", 6),
        _ => ("s", 9),
    };
    let value = 10f64.powi((d - shift) as i32);
    if value >= 1.0 {
        format!("{value:.0}{unit}")
    } else {
        format!("{value}{unit}")
    }
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Fail => "fail",
        Outcome::Unknown => "unknown",
    }
}

fn tooltip(op: &Op) -> String {
    let latency = op.complete_ns.saturating_sub(op.invoke_ns);
    let mut tip =
        format!("{} · client {} → {} · {}", describe(&op.call), op.client, op.node, outcome_name(op.outcome));
    if let Some(code) = &op.code {
        let _ = write!(tip, " {code}");
    }
    let _ = write!(
        tip,
        "\ninvoked {} · completed {} · took {}",
        secs(op.invoke_ns),
        secs(op.complete_ns),
        duration(latency)
    );
    if let Some(r) = op.revision {
        let _ = write!(tip, " · revision {r}");
    }
    if let Some(e) = &op.error {
        let _ = write!(tip, "\n{e}");
    }
    tip
}

/// The latency scale: whole decades from below the fastest to above the slowest op.
struct Scale {
    lo_log: f64,
    hi_log: f64,
    top: f64,
}

impl Scale {
    fn new(ops: &[&Op], top: f64) -> Scale {
        let lat = |o: &&Op| (o.complete_ns.saturating_sub(o.invoke_ns) as f64).max(LATENCY_MIN_NS);
        let min = ops.iter().map(lat).fold(f64::INFINITY, f64::min);
        let max = ops.iter().map(lat).fold(0.0, f64::max);
        let (lo_log, hi_log) =
            if ops.is_empty() { (5.0, 9.0) } else { (min.log10().floor(), max.log10().ceil()) };
        Scale { lo_log, hi_log: hi_log.max(lo_log + 1.0), top }
    }

    fn y(&self, latency_ns: u64) -> f64 {
        let l = (latency_ns as f64).max(LATENCY_MIN_NS).log10();
        self.top + PLOT_H * (1.0 - (l - self.lo_log) / (self.hi_log - self.lo_log))
    }
}

/// Draws the plot of `ops` with its top at `top`.
pub fn draw(out: &mut String, ops: &[&Op], axis: &Axis, top: f64) {
    let scale = Scale::new(ops, top);
    let _ = writeln!(out, r#"<g class="latency">"#);
    let _ = writeln!(
        out,
        r#"<text class="lane" x="{:.1}" y="{:.1}">latency</text>"#,
        // Left of the decade labels, which end at the axis.
        axis.left - 48.0,
        top + PLOT_H / 2.0
    );
    // Decades (at most 14 between 10 µs and beyond any deadline).
    for d in (scale.lo_log as i64..=scale.hi_log as i64).take(14) {
        let ns = 10f64.powi(d as i32) as u64;
        let y = scale.y(ns);
        let _ = writeln!(
            out,
            r#"<line class="grid" x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text class="decade" x="{:.1}" y="{:.1}">{}</text>"#,
            axis.left,
            axis.left + axis.width,
            axis.left - 6.0,
            y + 3.5,
            decade(d)
        );
    }
    let _ = writeln!(out, "</g>");
    let _ = writeln!(out, r#"<g class="ops">"#);
    // Ok first so failures and unknowns are drawn over them.
    for outcome in [Outcome::Ok, Outcome::Fail, Outcome::Unknown] {
        for op in ops.iter().filter(|o| o.outcome == outcome) {
            draw_op(out, op, axis, &scale);
        }
    }
    let _ = writeln!(out, "</g>");
}

fn draw_op(out: &mut String, op: &Op, axis: &Axis, scale: &Scale) {
    let class = outcome_name(op.outcome);
    let x = axis.x(op.invoke_ns);
    let y = scale.y(op.complete_ns.saturating_sub(op.invoke_ns));
    let tip = escape(&tooltip(op));
    let _ = write!(out, r#"<g class="op {class}"><title>{tip}</title>"#);
    if op.outcome == Outcome::Unknown {
        let _ =
            write!(out, r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/>"#, axis.x(op.complete_ns));
    }
    if op.call.is_write() {
        let _ = write!(out, r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.8"/>"#);
    } else {
        let _ = write!(out, r#"<rect x="{:.1}" y="{:.1}" width="5" height="5"/>"#, x - 2.5, y - 2.5);
    }
    let _ = writeln!(out, "</g>");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(k: usize, outcome: Outcome) -> Op {
        Op {
            client: k % 4,
            node: "n1".into(),
            call: Call::Get { id: format!("c0-s{k}") },
            invoke_ns: k as u64 * 1000,
            complete_ns: k as u64 * 1000 + 500,
            outcome,
            code: None,
            error: None,
            value: None,
            revision: None,
        }
    }

    #[test]
    fn the_subsample_keeps_every_non_ok_op_and_thins_ok_ones_evenly() {
        // Proves a history over the limit is drawn with all its fail and unknown ops and a deterministic, bounded share of ok ones.
        let ops: Vec<Op> = (0..50_000)
            .map(|k| {
                let o = match k % 97 {
                    0 => Outcome::Unknown,
                    1 | 2 => Outcome::Fail,
                    _ => Outcome::Ok,
                };
                op(k, o)
            })
            .collect();
        let (drawn, stride) = subsample(&ops, 20_000);
        let not_ok = ops.iter().filter(|o| o.outcome != Outcome::Ok).count();
        assert_eq!(drawn.iter().filter(|o| o.outcome != Outcome::Ok).count(), not_ok);
        assert!(drawn.len() <= 20_000, "{}", drawn.len());
        assert!(drawn.len() > 15_000, "{}", drawn.len());
        assert_eq!(stride, 3);
        assert!(drawn.windows(2).all(|w| w[0].invoke_ns < w[1].invoke_ns));
        let again = subsample(&ops, 20_000).0;
        assert!(drawn.iter().zip(&again).all(|(a, b)| std::ptr::eq(*a, *b)));
        let (all, one) = subsample(&ops[..100], 20_000);
        assert_eq!((all.len(), one), (100, 1));
    }

    #[test]
    fn non_ok_ops_past_the_limit_are_all_kept_with_a_tenth_for_ok_ones() {
        // Proves that when the failures alone exceed the limit none is dropped and ok ops still appear.
        let ops: Vec<Op> =
            (0..30_000).map(|k| op(k, if k % 3 == 0 { Outcome::Ok } else { Outcome::Fail })).collect();
        let (drawn, _) = subsample(&ops, 10_000);
        assert_eq!(drawn.iter().filter(|o| o.outcome == Outcome::Fail).count(), 20_000);
        assert_eq!(drawn.iter().filter(|o| o.outcome == Outcome::Ok).count(), 1000);
    }

    #[test]
    fn latency_is_placed_on_a_decade_log_scale() {
        // Proves the y scale: the slowest op's decade is the top, the fastest's the bottom, one decade up is a constant step, and decades are labelled in round units.
        let mut fast = op(0, Outcome::Ok);
        fast.complete_ns = fast.invoke_ns + 2_000_000;
        let mut slow = op(1, Outcome::Unknown);
        slow.complete_ns = slow.invoke_ns + 3_000_000_000;
        let scale = Scale::new(&[&fast, &slow], 100.0);
        assert_eq!((scale.lo_log, scale.hi_log), (6.0, 10.0));
        assert!((scale.y(1_000_000) - (100.0 + PLOT_H)).abs() < 1e-9);
        assert!((scale.y(10_000_000_000) - 100.0).abs() < 1e-9);
        assert!((scale.y(10_000_000) - scale.y(100_000_000) - PLOT_H / 4.0).abs() < 1e-9);
        let labels: Vec<String> = (2..=11).map(decade).collect();
        assert_eq!(labels, ["0.1µs", "1µs", "10µs", "100µs", "1ms", "10ms", "100ms", "1s", "10s", "100s"]);
    }
}
