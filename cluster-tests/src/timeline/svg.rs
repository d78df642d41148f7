//! Text helpers for the timeline: escaping for HTML and XML, the shared time axis (run
//! nanoseconds → x pixels, with round tick steps) and number formats. Pure; imports nothing of
//! the crate.

use std::fmt::Write;

/// Escapes `text` for HTML/XML character data and attribute values. Characters XML 1.0 does
/// not allow (control characters other than tab, newline and carriage return) become U+FFFD,
/// so a stray byte in an error message cannot make the SVG unreadable.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Seconds with millisecond precision, as in the checkers' explanations: `12.345s`.
pub fn secs(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

/// A duration for people: `850µs`, `12.3ms`, `2.40s`.
pub fn duration(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e6 {
        format!("{:.0}µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1}ms", ns / 1e6)
    } else {
        format!("{:.2}s", ns / 1e9)
    }
}

/// Tick steps tried for the time axis, in seconds.
const STEPS_S: [f64; 13] = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0];
/// Ticks on the time axis at most (fewer with the largest step on a very long run).
const TICKS_MAX: f64 = 16.0;

/// The shared time axis: run time 0..=`end_ns` over `width` pixels from `left`.
#[derive(Debug, Clone, Copy)]
pub struct Axis {
    pub left: f64,
    pub width: f64,
    pub end_ns: u64,
}

impl Axis {
    /// The x of run time `t_ns` (times past the end are drawn at the end).
    pub fn x(&self, t_ns: u64) -> f64 {
        let end = self.end_ns.max(1) as f64;
        self.left + self.width * (t_ns.min(self.end_ns) as f64 / end)
    }

    /// The tick step in seconds: the smallest round step giving at most [`TICKS_MAX`] ticks.
    pub fn step_s(&self) -> f64 {
        let end_s = self.end_ns as f64 / 1e9;
        STEPS_S.iter().copied().find(|s| end_s / s <= TICKS_MAX).unwrap_or(STEPS_S[STEPS_S.len() - 1])
    }

    /// Tick times in nanoseconds, from 0 to the end.
    pub fn ticks_ns(&self) -> Vec<u64> {
        let step_ns = (self.step_s() * 1e9) as u64;
        (0..).map(|k| k * step_ns).take_while(|t| *t <= self.end_ns).take(1000).collect()
    }

    /// Vertical grid lines from `top` to `bottom` and tick labels above `top` and below
    /// `bottom`.
    pub fn draw(&self, out: &mut String, top: f64, bottom: f64) {
        let decimals = if self.step_s() < 1.0 { 1 } else { 0 };
        let _ = writeln!(out, r#"<g class="axis">"#);
        for t in self.ticks_ns() {
            let x = self.x(t);
            let label = format!("{:.*}s", decimals, t as f64 / 1e9);
            let _ = writeln!(
                out,
                r#"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}"/><text x="{x:.1}" y="{:.1}">{label}</text><text x="{x:.1}" y="{:.1}">{label}</text>"#,
                top - 6.0,
                bottom + 14.0
            );
        }
        let _ = writeln!(out, "</g>");
    }
}

/// Node names in their natural order: `n2` before `n10`.
pub fn natural_key(name: &str) -> (String, u64, String) {
    let digits_at = name.find(|c: char| c.is_ascii_digit()).unwrap_or(name.len());
    let (prefix, rest) = name.split_at(digits_at);
    let digits_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let number = rest[..digits_end].parse().unwrap_or(0);
    (prefix.to_string(), number, rest[digits_end..].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_replaces_markup_quotes_and_illegal_control_characters() {
        // Proves text from errors and names cannot break out of an element or an attribute, nor make the XML unparsable.
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(escape("a\u{0}b\u{1b}c\td\ne"), "a\u{FFFD}b\u{FFFD}c\td\ne");
        assert_eq!(escape("&amp;"), "&amp;amp;");
        assert_eq!(escape("n1 → n2 µs"), "n1 → n2 µs");
    }

    #[test]
    fn the_axis_maps_run_time_linearly_and_picks_a_round_step() {
        // Proves x(0) is the left edge, x(end) the right edge, later times are clamped, and a 23 s run gets 2 s ticks.
        let axis = Axis { left: 100.0, width: 1000.0, end_ns: 23_000_000_000 };
        assert_eq!(axis.x(0), 100.0);
        assert_eq!(axis.x(23_000_000_000), 1100.0);
        assert_eq!(axis.x(99_000_000_000), 1100.0);
        assert_eq!(axis.step_s(), 2.0);
        assert_eq!(axis.ticks_ns().len(), 12);
        let empty = Axis { left: 0.0, width: 10.0, end_ns: 0 };
        assert_eq!(empty.x(0), 0.0);
        assert_eq!(empty.ticks_ns(), vec![0]);
    }

    #[test]
    fn node_names_sort_naturally() {
        // Proves lanes come out n1, n2, n10 rather than n1, n10, n2.
        let mut names = vec!["n10", "n2", "n1", "x"];
        names.sort_by_key(|n| natural_key(n));
        assert_eq!(names, ["n1", "n2", "n10", "x"]);
    }
}
