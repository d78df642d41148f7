//! The run's timeline picture (`timeline.html`): one self-contained HTML page, inline SVG and a
//! little CSS, no scripts or external assets. On one time axis (seconds since the run started)
//! it shows the faults, what leader each node believed in, and every client call's latency;
//! above it, the verdicts, the counts and a legend. Every bar, segment and point carries a
//! `<title>` tooltip with its details. Pure: inputs to a `String`; no I/O, no clock. Imports
//! only the crate's data types (`history`, `nemesis`, `leaders`, `check`).
//!
//! Parts, one concept each: [`svg`] (escaping, the time axis), [`faults`] (pairing starts and
//! heals, the fault band), [`lanes`] (leadership lanes), [`ops`] (the latency plot and the
//! subsample that bounds the file).

pub mod faults;
pub mod lanes;
pub mod ops;
pub mod svg;

use std::fmt::Write;

use crate::check::Verdict;
use crate::history::{Op, Outcome};
use crate::leaders::{Limits, Sample};
use crate::nemesis::Event;
use svg::{escape, secs, Axis};

/// Ops drawn at most (each is ~250 bytes of SVG, so ~5 MB), except that every non-ok op is.
pub const OPS_DRAWN_MAX: usize = 20_000;
/// Width of the chart.
const WIDTH: f64 = 1200.0;
/// Room for lane names left of the plot.
const LEFT: f64 = 110.0;
const RIGHT: f64 = 20.0;
/// Room for the tick labels above the first section.
const TOP: f64 = 28.0;
/// Space between sections.
const GAP: f64 = 14.0;
/// Room for the tick labels below the last section.
const BOTTOM: f64 = 26.0;

const STYLE: &str = "\
body{font:13px/1.45 system-ui,sans-serif;margin:16px 20px;color:#222}
h1{font-size:18px;margin:0 0 6px}
table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
.good{color:#1a7f37;font-weight:bold}.bad{color:#c62828;font-weight:bold}
.note{color:#8a5a00}
.legend{margin:8px 0}.legend span{margin-right:14px;white-space:nowrap}
.legend svg{vertical-align:middle;margin-right:3px}
svg text{font:11px sans-serif;fill:#333}
.axis line{stroke:#eee}.axis text{text-anchor:middle;fill:#777}
.fault .bar{fill:#fde2b5;stroke:#c9822b}.fault.failed .bar{stroke:#c62828;stroke-dasharray:3 2}
.fault.failed text{fill:#c62828}
.shade{fill:#c9822b;opacity:.07}.shade-tick{stroke:#c9822b;stroke-dasharray:2 3;opacity:.6}
.tick{stroke:#7a4b10;fill:#7a4b10}
.lane{text-anchor:end}
.seg.none{fill:#d3d3d3}.seg.noanswer{fill:#8c8c8c}
text.segname{fill:#fff;font-size:10px}
.term{stroke:#000;stroke-width:2}
.grid{stroke:#eee}.decade{text-anchor:end;fill:#777}
.op.ok{fill:#2ca02c;opacity:.55}.op.fail{fill:#ff7f0e}.op.unknown{fill:#d62728}
.op.unknown line{stroke:#d62728;stroke-width:1.5}
";

/// The page for one run.
pub fn html(title: &str, ops: &[Op], faults: &[Event], leaders: &[Sample], verdicts: &[Verdict]) -> String {
    let hold_ns = duration_ns(Limits::DEFAULT.interval);
    let end_ns = ops
        .iter()
        .map(|o| o.complete_ns.max(o.invoke_ns))
        .chain(faults.iter().map(|e| e.t_ns))
        .chain(leaders.iter().map(|s| s.t_ns.saturating_add(hold_ns)))
        .fold(1_000_000_000, u64::max);
    let axis = Axis { left: LEFT, width: WIDTH - LEFT - RIGHT, end_ns };
    let marks = faults::marks(faults);
    let lanes = lanes::lanes(leaders, hold_ns);
    let colours = lanes::colours(&lanes);
    let (drawn, stride) = ops::subsample(ops, OPS_DRAWN_MAX);

    let mut out = String::with_capacity(4096 + drawn.len() * 260);
    let title = escape(title);
    let _ = writeln!(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">");
    let _ = writeln!(out, "<title>{title}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>");
    let pass = !verdicts.is_empty() && verdicts.iter().all(|v| v.ok);
    let (word, class) = if pass { ("PASS", "good") } else { ("FAIL", "bad") };
    let _ = writeln!(out, r#"<h1><span class="{class}">{word}</span> {title}</h1>"#);
    counts(&mut out, ops, faults, &marks, leaders, &lanes, end_ns);
    if stride > 1 {
        let _ = writeln!(
            out,
            r#"<p class="note">The history has {} ops; {} are drawn: every fail and unknown op and every {}th ok op (history.jsonl has them all).</p>"#,
            ops.len(),
            drawn.len(),
            stride
        );
    }
    verdict_table(&mut out, verdicts);
    legend(&mut out, &colours);

    let faults_top = TOP;
    let lanes_top = faults_top + faults::height(&marks, &axis) + GAP;
    let lanes_h = lanes.len().max(1) as f64 * lanes::LANE_H;
    let plot_top = lanes_top + lanes_h + GAP;
    let bottom = plot_top + ops::PLOT_H;
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{:.0}" viewBox="0 0 {WIDTH} {:.0}">"#,
        bottom + BOTTOM,
        bottom + BOTTOM
    );
    axis.draw(&mut out, faults_top, bottom);
    let label = |out: &mut String, y: f64, text: &str| {
        let _ = writeln!(out, r#"<text class="lane" x="{:.1}" y="{y:.1}">{text}</text>"#, LEFT - 6.0);
    };
    label(&mut out, faults_top + faults::ROW_H - 5.0, "faults");
    faults::draw(&mut out, &marks, &axis, faults_top, (faults_top, bottom));
    if lanes.is_empty() {
        label(&mut out, lanes_top + lanes::LANE_H - 5.0, "leaders");
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}">no leadership samples</text>"#,
            LEFT + 4.0,
            lanes_top + 13.0
        );
    }
    lanes::draw(&mut out, &lanes, &colours, &axis, lanes_top);
    ops::draw(&mut out, &drawn, &axis, plot_top);
    if ops.is_empty() {
        let _ =
            writeln!(out, r#"<text x="{:.1}" y="{:.1}">no operations</text>"#, LEFT + 4.0, plot_top + 13.0);
    }
    let _ = writeln!(out, "</svg>\n</body>\n</html>");
    out
}

fn duration_ns(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn counts(
    out: &mut String,
    ops: &[Op],
    events: &[Event],
    marks: &[faults::Mark],
    samples: &[Sample],
    lanes: &[lanes::Lane],
    end_ns: u64,
) {
    let n = |o: Outcome| ops.iter().filter(|op| op.outcome == o).count();
    let writes = ops.iter().filter(|o| o.call.is_write()).count();
    let failed_events = events.iter().filter(|e| !e.ok).count();
    let term_changes: usize = lanes.iter().map(|l| l.term_changes.len()).sum();
    let _ = writeln!(
        out,
        "<p>Run of {}: {} ops ({} ok, {} fail, {} unknown; {} writes, {} reads) · {} nemesis events in {} faults ({} failed actions) · {} leadership samples from {} nodes, {} term changes seen.</p>",
        secs(end_ns),
        ops.len(),
        n(Outcome::Ok),
        n(Outcome::Fail),
        n(Outcome::Unknown),
        writes,
        ops.len() - writes,
        events.len(),
        marks.len(),
        failed_events,
        samples.len(),
        lanes.len(),
        term_changes
    );
}

fn verdict_table(out: &mut String, verdicts: &[Verdict]) {
    if verdicts.is_empty() {
        let _ = writeln!(out, r#"<p class="bad">No checker ran.</p>"#);
        return;
    }
    let _ = writeln!(out, "<table>\n<tr><th>checker</th><th>result</th><th>explanation</th></tr>");
    for v in verdicts {
        let (word, class) = if v.ok { ("ok", "good") } else { ("FAIL", "bad") };
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td class="{class}">{word}</td><td>{}"#,
            escape(&v.checker),
            escape(&v.explanation)
        );
        if !v.violations.is_empty() {
            let _ = write!(out, "<details><summary>{} violation(s) listed</summary><ul>", v.violations.len());
            for line in &v.violations {
                let _ = write!(out, "<li>{}</li>", escape(line));
            }
            let _ = write!(out, "</ul></details>");
        }
        let _ = writeln!(out, "</td></tr>");
    }
    let _ = writeln!(out, "</table>");
}

/// A small inline SVG swatch.
fn swatch(shape: &str) -> String {
    format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="16" height="12">{shape}</svg>"#)
}

fn legend(out: &mut String, colours: &[(String, &str)]) {
    let _ = writeln!(out, r#"<div class="legend"><b>Faults</b> "#);
    let items = [
        (r#"<g class="fault"><rect class="bar" x="1" y="2" width="14" height="8"/></g>"#, "start to heal"),
        (
            r#"<g class="fault failed"><rect class="bar" x="1" y="2" width="14" height="8"/></g>"#,
            "an action failed (✗)",
        ),
        (r#"<path class="tick" d="M8,10 l-4,-6 h8 z"/>"#, "one-off (restart, heal with nothing open)"),
    ];
    for (shape, text) in items {
        let _ = write!(out, "<span>{}{text}</span>", swatch(shape));
    }
    let _ = write!(out, "<br><b>Leader each node follows</b> ");
    for (name, colour) in colours {
        let shape = format!(r#"<rect x="1" y="2" width="14" height="8" fill="{colour}"/>"#);
        let _ = write!(out, "<span>{}{}</span>", swatch(&shape), escape(name));
    }
    let items = [
        (r#"<rect class="seg none" x="1" y="2" width="14" height="8"/>"#, "no leader known"),
        (r#"<rect class="seg noanswer" x="1" y="2" width="14" height="8"/>"#, "no answer"),
        (r#"<line class="term" x1="8" y1="0" x2="8" y2="12"/>"#, "term change"),
    ];
    for (shape, text) in items {
        let _ = write!(out, "<span>{}{text}</span>", swatch(shape));
    }
    let _ = write!(out, "<br><b>Operations</b> (latency by invoke time) ");
    let items = [
        (r#"<g class="op ok"><circle cx="8" cy="6" r="3"/></g>"#, "ok"),
        (r#"<g class="op fail"><circle cx="8" cy="6" r="3"/></g>"#, "fail"),
        (
            r#"<g class="op unknown"><line x1="3" y1="6" x2="15" y2="6"/><circle cx="3" cy="6" r="3"/></g>"#,
            "unknown, drawn on to its completion",
        ),
        (r##"<circle cx="8" cy="6" r="3" fill="#555"/>"##, "write"),
        (r##"<rect x="5" y="3" width="6" height="6" fill="#555"/>"##, "read"),
    ];
    for (shape, text) in items {
        let _ = write!(out, "<span>{}{text}</span>", swatch(shape));
    }
    let _ = writeln!(out, "</div>");
}

#[cfg(test)]
mod tests;
