//! The fault band of the timeline: nemesis [`Event`]s paired into marks (a Start with the Heal
//! that ended it, a Start never healed, a one-event `restart`, a Heal with nothing to end) and
//! drawn as labelled bars and ticks, packed into rows so overlapping faults stay readable.

use std::fmt::Write;

use super::svg::{escape, secs, Axis};
use crate::nemesis::{is_partition, Event, Phase};

/// How far a mark reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// Healed at this run time.
    Until(u64),
    /// Never healed: reaches the end of the run.
    Unhealed,
    /// One event (a `restart`, or a heal that ended nothing): a tick.
    Instant,
}

/// One fault as drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// `isolate n2`, `kill n1`, `split n1 | n2,n3`, `restart n3`, `heal partition`.
    pub label: String,
    pub start_ns: u64,
    pub extent: Extent,
    /// The start or the heal action failed.
    pub failed: bool,
    /// One line per event of the mark, for the tooltip.
    pub events: Vec<String>,
}

/// Whether a heal of kind `heal` ends a fault of kind `fault`: the partition heal flushes every
/// isolate and split; kill and pause are healed by their own kind.
fn heals(heal: &str, fault: &str) -> bool {
    match heal {
        "partition" => is_partition(fault),
        _ => heal == fault,
    }
}

fn label(e: &Event) -> String {
    let nodes = e.nodes.join(",");
    match (e.phase, e.fault.as_str()) {
        // The split's groups are its detail (before any error the nemesis appended).
        (Phase::Start, "split") => {
            let groups = e.detail.split(" error: ").next().unwrap_or_default();
            format!("split {}", if groups.is_empty() { &nodes } else { groups })
        }
        (Phase::Heal, kind @ ("restart" | "join" | "leave")) => format!("{kind} {nodes}"),
        (Phase::Heal, "partition") => "heal partition".to_string(),
        (Phase::Heal, fault) => format!("heal {fault} {nodes}"),
        (Phase::Start, fault) => format!("{fault} {nodes}"),
    }
}

fn line(e: &Event) -> String {
    let phase = match e.phase {
        Phase::Start => "start",
        Phase::Heal => "heal",
    };
    let status = if e.ok { "ok" } else { "FAILED" };
    let detail = if e.detail.is_empty() { String::new() } else { format!(": {}", e.detail) };
    format!("{} {phase} {} [{}] {status}{detail}", secs(e.t_ns), e.fault, e.nodes.join(","))
}

/// Pairs every Start with the first later Heal that heals its kind and names all its nodes;
/// marks come out in start order.
pub fn marks(events: &[Event]) -> Vec<Mark> {
    let mut events: Vec<&Event> = events.iter().collect();
    events.sort_by_key(|e| e.t_ns);
    let mut marks: Vec<Mark> = Vec::new();
    // Indices into `marks` of starts not healed yet, with their event.
    let mut open: Vec<(usize, &Event)> = Vec::new();
    for e in events {
        match e.phase {
            Phase::Start => {
                open.push((marks.len(), e));
                marks.push(Mark {
                    label: label(e),
                    start_ns: e.t_ns,
                    extent: Extent::Unhealed,
                    failed: !e.ok,
                    events: vec![line(e)],
                });
            }
            Phase::Heal if matches!(e.fault.as_str(), "restart" | "join" | "leave") => marks.push(Mark {
                label: label(e),
                start_ns: e.t_ns,
                extent: Extent::Instant,
                failed: !e.ok,
                events: vec![line(e)],
            }),
            Phase::Heal => {
                let ends =
                    |s: &Event| heals(&e.fault, &s.fault) && s.nodes.iter().all(|n| e.nodes.contains(n));
                let (ended, still): (Vec<_>, Vec<_>) = open.into_iter().partition(|(_, s)| ends(s));
                open = still;
                for &(m, _) in &ended {
                    marks[m].extent = Extent::Until(e.t_ns);
                    marks[m].failed |= !e.ok;
                    marks[m].events.push(line(e));
                }
                if ended.is_empty() {
                    marks.push(Mark {
                        label: label(e),
                        start_ns: e.t_ns,
                        extent: Extent::Instant,
                        failed: !e.ok,
                        events: vec![line(e)],
                    });
                }
            }
        }
    }
    marks
}

/// Height of one row of the band.
pub const ROW_H: f64 = 18.0;
/// Pixels a label takes per character, roughly (for packing rows).
const CHAR_W: f64 = 6.5;

/// Where a mark's bar and label reach, in pixels, and whether its label is drawn left of its
/// start (when it would run past the plot's right edge).
fn reach_px(m: &Mark, axis: &Axis) -> (f64, f64, bool) {
    let x0 = axis.x(m.start_ns);
    let bar_end = axis.x(end_ns(m, axis));
    let text_w = 4.0 + CHAR_W * m.label.chars().count() as f64;
    if x0 + text_w > axis.left + axis.width && bar_end - x0 < text_w {
        (x0 - text_w, bar_end, true)
    } else {
        (x0, bar_end.max(x0 + text_w), false)
    }
}

/// The row of every mark: the first row whose last mark (bar or label) ends left of it.
fn rows(marks: &[Mark], axis: &Axis) -> (Vec<usize>, usize) {
    let mut row_ends: Vec<f64> = Vec::new();
    let mut rows = Vec::with_capacity(marks.len());
    for m in marks {
        let (left, right, _) = reach_px(m, axis);
        let row = row_ends.iter().position(|&end| end + 2.0 < left).unwrap_or(row_ends.len());
        if row == row_ends.len() {
            row_ends.push(right);
        } else {
            row_ends[row] = right;
        }
        rows.push(row);
    }
    (rows, row_ends.len())
}

fn end_ns(m: &Mark, axis: &Axis) -> u64 {
    match m.extent {
        Extent::Until(t) => t,
        Extent::Unhealed => axis.end_ns,
        Extent::Instant => m.start_ns,
    }
}

/// The band's height for `marks` (at least one row).
pub fn height(marks: &[Mark], axis: &Axis) -> f64 {
    rows(marks, axis).1.max(1) as f64 * ROW_H
}

/// Draws the band with its top at `top`, and a faint shade of every bar over `shade_top`..
/// `shade_bottom` (the whole chart) so the faults line up with the lanes below.
pub fn draw(out: &mut String, marks: &[Mark], axis: &Axis, top: f64, shade: (f64, f64)) {
    let (rows, _) = rows(marks, axis);
    let _ = writeln!(out, r#"<g class="faults">"#);
    for (m, row) in marks.iter().zip(rows) {
        let x0 = axis.x(m.start_ns);
        let x1 = axis.x(end_ns(m, axis));
        let y = top + row as f64 * ROW_H;
        let class = if m.failed { "fault failed" } else { "fault" };
        let reach = match m.extent {
            Extent::Until(t) => format!("{} → {}", secs(m.start_ns), secs(t)),
            Extent::Unhealed => format!("{} → never healed", secs(m.start_ns)),
            Extent::Instant => secs(m.start_ns),
        };
        let failed = if m.failed { " (FAILED)" } else { "" };
        let tip = escape(&format!("{}{failed} {reach}\n{}", m.label, m.events.join("\n")));
        let text = escape(&format!("{}{}", m.label, if m.failed { " ✗" } else { "" }));
        let _ = write!(out, r#"<g class="{class}"><title>{tip}</title>"#);
        if m.extent == Extent::Instant {
            let _ = write!(
                out,
                r#"<line class="tick" x1="{x0:.1}" y1="{:.1}" x2="{x0:.1}" y2="{:.1}"/><path class="tick" d="M{x0:.1},{:.1} l-4,-6 h8 z"/><line class="shade-tick" x1="{x0:.1}" y1="{:.1}" x2="{x0:.1}" y2="{:.1}"/>"#,
                y + 1.0,
                y + ROW_H - 1.0,
                y + 7.0,
                shade.0,
                shade.1
            );
        } else {
            let w = (x1 - x0).max(2.0);
            let _ = write!(
                out,
                r#"<rect class="shade" x="{x0:.1}" y="{:.1}" width="{w:.1}" height="{:.1}"/><rect class="bar" x="{x0:.1}" y="{:.1}" width="{w:.1}" height="{:.1}"/>"#,
                shade.0,
                shade.1 - shade.0,
                y + 2.0,
                ROW_H - 4.0
            );
        }
        let (text_x, anchor) = match reach_px(m, axis).2 {
            true => (x0 - 4.0, r#" text-anchor="end""#),
            false => (x0 + 4.0, ""),
        };
        let _ =
            writeln!(out, r#"<text x="{text_x:.1}" y="{:.1}"{anchor}>{text}</text></g>"#, y + ROW_H - 5.0);
    }
    let _ = writeln!(out, "</g>");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t_s: u64, phase: Phase, fault: &str, nodes: &[&str], detail: &str, ok: bool) -> Event {
        Event {
            t_ns: t_s * 1_000_000_000,
            phase,
            fault: fault.into(),
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            detail: detail.into(),
            ok,
        }
    }

    #[test]
    fn starts_pair_with_their_heals_by_kind_and_nodes() {
        // Proves pairing: the partition heal ends the isolate and the split, each kill/pause heal ends only its own node's fault, a restart is a tick, an unhealed pause reaches the end, a heal with nothing open is a tick.
        let all = ["n1", "n2", "n3"];
        let events = vec![
            ev(1, Phase::Start, "isolate", &["n2"], "", true),
            ev(2, Phase::Start, "kill", &["n1"], "", true),
            ev(3, Phase::Start, "split", &all, "n1 | n2,n3", true),
            ev(4, Phase::Heal, "partition", &all, "", true),
            ev(5, Phase::Heal, "restart", &["n3"], "stopped and started", true),
            ev(6, Phase::Heal, "kill", &["n1"], "started again", true),
            ev(7, Phase::Start, "pause", &["n3"], "", false),
            ev(8, Phase::Heal, "pause", &["n2"], "", true),
            ev(9, Phase::Heal, "partition", &all, "", true),
        ];
        let got: Vec<(String, u64, Extent, bool)> = marks(&events)
            .into_iter()
            .map(|m| (m.label, m.start_ns / 1_000_000_000, m.extent, m.failed))
            .collect();
        let s = |n: u64| n * 1_000_000_000;
        assert_eq!(
            got,
            vec![
                ("isolate n2".into(), 1, Extent::Until(s(4)), false),
                ("kill n1".into(), 2, Extent::Until(s(6)), false),
                ("split n1 | n2,n3".into(), 3, Extent::Until(s(4)), false),
                ("restart n3".into(), 5, Extent::Instant, false),
                ("pause n3".into(), 7, Extent::Unhealed, true),
                ("heal pause n2".into(), 8, Extent::Instant, false),
                ("heal partition".into(), 9, Extent::Instant, false),
            ]
        );
    }

    #[test]
    fn a_failed_heal_marks_its_fault_and_both_events_are_in_the_tooltip_lines() {
        // Proves a fault whose heal failed is drawn as failed, and the mark keeps both events' details.
        let events = vec![
            ev(1, Phase::Start, "kill", &["n1"], "", true),
            ev(2, Phase::Heal, "kill", &["n1"], "started again error: docker start timed out", false),
        ];
        let m = &marks(&events)[0];
        assert!(m.failed);
        assert_eq!(m.events.len(), 2);
        assert!(
            m.events[1].contains("FAILED: started again error: docker start timed out"),
            "{:?}",
            m.events
        );
    }

    #[test]
    fn overlapping_faults_get_rows_of_their_own() {
        // Proves packing: two overlapping bars take two rows, a later one reuses the first free row, and a label that would pass the right edge is drawn left of its tick and packed there.
        let events = vec![
            ev(1, Phase::Start, "isolate", &["n2"], "", true),
            ev(2, Phase::Start, "kill", &["n1"], "", true),
            ev(3, Phase::Heal, "partition", &["n1", "n2", "n3"], "", true),
            ev(4, Phase::Heal, "kill", &["n1"], "", true),
            ev(30, Phase::Start, "pause", &["n3"], "", true),
        ];
        let axis = Axis { left: 0.0, width: 1000.0, end_ns: 40_000_000_000 };
        assert_eq!(rows(&marks(&events), &axis), (vec![0, 1, 0], 2));
        // A one-off at the very end has its label on its left, where it collides with the pause.
        let mut events = events;
        events.push(ev(40, Phase::Heal, "partition", &["n1", "n2", "n3"], "", true));
        let all = marks(&events);
        assert_eq!(reach_px(&all[3], &axis), (1000.0 - 4.0 - 6.5 * 14.0, 1000.0, true));
        assert_eq!(rows(&all, &axis), (vec![0, 1, 0, 1], 2));
    }
}
