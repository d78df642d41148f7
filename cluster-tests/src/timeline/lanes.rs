//! The leadership lanes of the timeline: per node, the poller's [`Sample`]s merged into
//! segments of one belief (this leader in this term, no leader known, no answer) with the term
//! changes marked, one colour per leader name.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::svg::{escape, natural_key, secs, Axis};
use crate::leaders::Sample;

/// Leader colours, given out in the leaders' natural name order (n1 first); grey is kept for
/// "no leader" and "no answer".
const PALETTE: [&str; 9] =
    ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#edc948", "#76b7b2", "#ff9da7", "#9c755f", "#e15759"];

/// What a node believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Belief {
    Leader(String),
    NoLeader,
    NoAnswer,
}

/// A stretch of samples with one belief and one term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub from_ns: u64,
    /// The next sample's time (or the last sample's time plus the hold).
    pub to_ns: u64,
    pub belief: Belief,
    pub term: Option<u64>,
    pub samples: usize,
    /// The first error of a no-answer stretch.
    pub error: Option<String>,
}

/// One node's lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lane {
    pub node: String,
    pub segments: Vec<Segment>,
    /// (time, previous term, new term) wherever an answer's term differs from the last answer's.
    pub term_changes: Vec<(u64, u64, u64)>,
}

/// The lanes of every sampled node in natural order. A node's last sample is taken to hold for
/// `hold_ns` (one poll interval).
pub fn lanes(samples: &[Sample], hold_ns: u64) -> Vec<Lane> {
    let mut by_node: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        by_node.entry(s.node.as_str()).or_default().push(s);
    }
    let mut lanes: Vec<Lane> = by_node.into_iter().map(|(node, s)| lane(node, s, hold_ns)).collect();
    lanes.sort_by_key(|l| natural_key(&l.node));
    lanes
}

fn lane(node: &str, mut samples: Vec<&Sample>, hold_ns: u64) -> Lane {
    samples.sort_by_key(|s| s.t_ns);
    let mut segments: Vec<Segment> = Vec::new();
    let mut term_changes = Vec::new();
    let mut last_term: Option<u64> = None;
    for (k, s) in samples.iter().enumerate() {
        let to_ns = samples.get(k + 1).map_or(s.t_ns.saturating_add(hold_ns), |next| next.t_ns);
        let belief = match (&s.error, &s.leader) {
            (Some(_), _) => Belief::NoAnswer,
            (None, Some(l)) => Belief::Leader(l.clone()),
            (None, None) => Belief::NoLeader,
        };
        if let (Some(was), Some(now)) = (last_term, s.term) {
            if was != now {
                term_changes.push((s.t_ns, was, now));
            }
        }
        last_term = s.term.or(last_term);
        match segments.last_mut() {
            Some(seg) if seg.belief == belief && seg.term == s.term => {
                seg.to_ns = to_ns;
                seg.samples += 1;
            }
            _ => segments.push(Segment {
                from_ns: s.t_ns,
                to_ns,
                belief,
                term: s.term,
                samples: 1,
                error: s.error.clone(),
            }),
        }
    }
    Lane { node: node.to_string(), segments, term_changes }
}

/// Every leader name any node named, with its colour.
pub fn colours(lanes: &[Lane]) -> Vec<(String, &'static str)> {
    let mut names: Vec<&str> = lanes
        .iter()
        .flat_map(|l| &l.segments)
        .filter_map(|s| match &s.belief {
            Belief::Leader(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    names.sort_by_key(|n| natural_key(n));
    names.dedup();
    names.iter().enumerate().map(|(k, n)| (n.to_string(), PALETTE[k % PALETTE.len()])).collect()
}

/// Height of one lane.
pub const LANE_H: f64 = 18.0;
/// Narrowest segment that gets the leader's name written in it.
const NAMED_W: f64 = 24.0;

fn tooltip(node: &str, seg: &Segment) -> String {
    let term = seg.term.map(|t| format!(" (term {t})")).unwrap_or_default();
    let what = match &seg.belief {
        Belief::Leader(l) => format!("{node} follows leader {l}{term}"),
        Belief::NoLeader => format!("{node} knows no leader{term}"),
        Belief::NoAnswer => format!("{node} did not answer: {}", seg.error.as_deref().unwrap_or("?")),
    };
    format!("{what}\n{} → {}, {} sample(s)", secs(seg.from_ns), secs(seg.to_ns), seg.samples)
}

/// Draws the lanes from `top` down, node names left of `axis.left`.
pub fn draw(out: &mut String, lanes: &[Lane], colours: &[(String, &str)], axis: &Axis, top: f64) {
    let _ = writeln!(out, r#"<g class="leaders">"#);
    for (k, lane) in lanes.iter().enumerate() {
        let y = top + k as f64 * LANE_H;
        let node = escape(&lane.node);
        let _ = writeln!(
            out,
            r#"<text class="lane" x="{:.1}" y="{:.1}">{node} sees</text>"#,
            axis.left - 6.0,
            y + LANE_H - 5.0
        );
        for seg in &lane.segments {
            let x0 = axis.x(seg.from_ns);
            let w = (axis.x(seg.to_ns) - x0).max(1.0);
            let (class, fill) = match &seg.belief {
                Belief::Leader(l) => {
                    ("seg", colours.iter().find(|(n, _)| n == l).map_or("#000", |(_, c)| *c))
                }
                Belief::NoLeader => ("seg none", ""),
                Belief::NoAnswer => ("seg noanswer", ""),
            };
            let fill = if fill.is_empty() { String::new() } else { format!(r#" fill="{fill}""#) };
            let _ = write!(
                out,
                r#"<rect class="{class}"{fill} x="{x0:.1}" y="{:.1}" width="{w:.1}" height="{:.1}"><title>{}</title></rect>"#,
                y + 2.0,
                LANE_H - 4.0,
                escape(&tooltip(&lane.node, seg))
            );
            if let (Belief::Leader(l), true) = (&seg.belief, w >= NAMED_W) {
                let _ = write!(
                    out,
                    r#"<text class="segname" x="{:.1}" y="{:.1}">{}</text>"#,
                    x0 + 3.0,
                    y + LANE_H - 5.5,
                    escape(l)
                );
            }
            let _ = writeln!(out);
        }
        for &(t, was, now) in &lane.term_changes {
            let x = axis.x(t);
            let _ = writeln!(
                out,
                r#"<line class="term" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}"><title>{}</title></line>"#,
                y,
                y + LANE_H,
                escape(&format!("{}: term {was} → {now} at {}", lane.node, secs(t)))
            );
        }
    }
    let _ = writeln!(out, "</g>");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: u64, node: &str, leader: Option<&str>, term: Option<u64>, error: Option<&str>) -> Sample {
        Sample {
            t_ns: t,
            node: node.into(),
            leader: leader.map(Into::into),
            term,
            error: error.map(Into::into),
        }
    }

    #[test]
    fn samples_merge_into_segments_of_one_belief_and_term_with_term_changes_marked() {
        // Proves merging: equal beliefs join, a new term splits a segment and is marked, no answer is its own segment and does not hide a term change.
        let samples = vec![
            s(0, "n2", Some("n1"), Some(2), None),
            s(10, "n2", Some("n1"), Some(2), None),
            s(20, "n2", None, None, Some("no answer within 400ms")),
            s(30, "n2", None, Some(3), None),
            s(40, "n2", Some("n2"), Some(3), None),
            s(5, "n10", Some("n1"), Some(2), None),
        ];
        let lanes = lanes(&samples, 7);
        assert_eq!(lanes.iter().map(|l| l.node.as_str()).collect::<Vec<_>>(), ["n2", "n10"]);
        let n2 = &lanes[0];
        let got: Vec<(u64, u64, Belief, Option<u64>, usize)> =
            n2.segments.iter().map(|g| (g.from_ns, g.to_ns, g.belief.clone(), g.term, g.samples)).collect();
        assert_eq!(
            got,
            vec![
                (0, 20, Belief::Leader("n1".into()), Some(2), 2),
                (20, 30, Belief::NoAnswer, None, 1),
                (30, 40, Belief::NoLeader, Some(3), 1),
                (40, 47, Belief::Leader("n2".into()), Some(3), 1),
            ]
        );
        assert_eq!(n2.segments[1].error.as_deref(), Some("no answer within 400ms"));
        assert_eq!(n2.term_changes, vec![(30, 2, 3)]);
        let colours = colours(&lanes);
        assert_eq!(colours, vec![("n1".to_string(), PALETTE[0]), ("n2".to_string(), PALETTE[1])]);
    }
}
