//! Prometheus' text exposition format 0.0.4, written by hand: `# HELP` and `# TYPE` once per
//! family, then its samples; label values and help text escaped; histograms as cumulative
//! `_bucket{le=".."}` samples ending in `+Inf`, then `_sum` and `_count`. Pure: it fills a
//! `String`.

use std::fmt::Write as _;

use super::family::HistogramSnapshot;

/// The `Content-Type` of what [`TextEncoder`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A family's type line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Writes families one after the other. Call [`TextEncoder::family`] first, then the samples
/// of that family.
#[derive(Debug, Default)]
pub struct TextEncoder {
    out: String,
}

impl TextEncoder {
    pub fn new() -> TextEncoder {
        TextEncoder::default()
    }

    pub fn finish(self) -> String {
        self.out
    }

    /// The `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample line: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        self.labels(labels, None);
        self.out.push(' ');
        self.out.push_str(&format_value(value));
        self.out.push('\n');
    }

    /// A histogram's samples for one label set.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        let bucket = format!("{name}_bucket");
        for (bound, count) in &h.buckets {
            self.out.push_str(&bucket);
            self.labels(labels, Some(&format_value(*bound)));
            let _ = writeln!(self.out, " {count}");
        }
        self.out.push_str(&bucket);
        self.labels(labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", h.count);
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count as f64);
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let all = labels.iter().copied().chain(le.map(|v| ("le", v)));
        for (i, (name, value)) in all.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{name}=\"{}\"", escape_label(value));
        }
        self.out.push('}');
    }
}

/// A label value: backslash, double quote and line feed escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Help text: backslash and line feed escaped (quotes stay).
pub fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value as Prometheus reads it: integers without a fraction, `+Inf`, `-Inf`, `NaN`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        // Rust's shortest round-trip form: `3`, `0.25`, `1e-7` is written `0.0000001`.
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_has_help_type_and_samples_with_escaped_labels() {
        // Proves the header lines, label syntax, and the escaping of `\`, `"` and line feeds
        // in label values (help text keeps quotes but escapes `\` and line feeds).
        let mut e = TextEncoder::new();
        e.family("muster_x_total", "Things \"seen\"\nby C:\\ here.", Kind::Counter);
        e.sample("muster_x_total", &[("path", "a\"b\\c\nd"), ("code", "200")], 3.0);
        e.sample("muster_x_total", &[], 0.0);
        assert_eq!(
            e.finish(),
            "# HELP muster_x_total Things \"seen\"\\nby C:\\\\ here.\n\
             # TYPE muster_x_total counter\n\
             muster_x_total{path=\"a\\\"b\\\\c\\nd\",code=\"200\"} 3\n\
             muster_x_total 0\n"
        );
    }

    #[test]
    fn a_histogram_is_cumulative_buckets_then_inf_sum_and_count() {
        // Proves the histogram layout: `le` after the other labels, cumulative counts, the
        // `+Inf` bucket equal to `_count`, then `_sum` and `_count` with the same labels.
        let h = HistogramSnapshot { buckets: vec![(0.005, 1), (0.5, 3)], sum: 0.75, count: 4 };
        let mut e = TextEncoder::new();
        e.family("muster_d_seconds", "Time.", Kind::Histogram);
        e.histogram("muster_d_seconds", &[("method", "GET /a")], &h);
        assert_eq!(
            e.finish(),
            "# HELP muster_d_seconds Time.\n\
             # TYPE muster_d_seconds histogram\n\
             muster_d_seconds_bucket{method=\"GET /a\",le=\"0.005\"} 1\n\
             muster_d_seconds_bucket{method=\"GET /a\",le=\"0.5\"} 3\n\
             muster_d_seconds_bucket{method=\"GET /a\",le=\"+Inf\"} 4\n\
             muster_d_seconds_sum{method=\"GET /a\"} 0.75\n\
             muster_d_seconds_count{method=\"GET /a\"} 4\n"
        );
        let mut e = TextEncoder::new();
        e.histogram("h", &[], &HistogramSnapshot { buckets: vec![(1.0, 0)], sum: 0.0, count: 0 });
        assert_eq!(e.finish(), "h_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n");
    }

    #[test]
    fn values_are_written_as_prometheus_parses_them() {
        // Proves integers print without a fraction, small and large floats without exponents
        // Prometheus would misread, and the special values' spelling.
        assert_eq!(format_value(42.0), "42");
        assert_eq!(format_value(0.0025), "0.0025");
        assert_eq!(format_value(1e-7), "0.0000001");
        assert_eq!(format_value(1.7e9), "1700000000");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(escape_label("plain"), "plain");
    }
}
