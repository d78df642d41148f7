//! Process-wide logging on stderr from a [`LogConfig`] (the seed's `LOG_*` settings): level,
//! JSON or text, caller, UTC timestamps, colours. Also owns how muster writes user-visible
//! timestamps ([`format_rfc3339`]), so logs and API answers agree.
//!
//! Besides stderr, every subscriber feeds the [`tee::LogTee`] that `serf monitor` reads
//! (`serf_line` renders Serf's line format). Each of the two has its own per-layer filter, so a
//! monitor may see DEBUG lines while stderr stays at INFO.
//!
//! Imports only `config`; must not import the node's parts.

pub mod serf_line;
pub mod tee;
pub mod throttle;

use std::io::IsTerminal;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::{DefaultFields, Format, Full};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{format::Writer, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogCaller, LogConfig, LogFormat, LogTime};

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// A global subscriber was installed before (by an earlier `init` or a test harness).
    #[error("cannot install the logger: {reason}")]
    Install { reason: String },
}

/// Installs the global subscriber writing to stderr and feeding the returned tee (for
/// `serf monitor`). Call once, before anything logs.
pub fn init(cfg: &LogConfig) -> Result<tee::LogTee, LoggingError> {
    let tty = std::io::stderr().is_terminal();
    let tee = tee::LogTee::new(LevelFilter::from_level(cfg.level));
    let subscriber = build(cfg, std::io::stderr, tty, &tee);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| LoggingError::Install { reason: e.to_string() })?;
    Ok(tee)
}

/// The encoding actually used: `auto` is text on a terminal, JSON otherwise.
pub fn effective_format(format: LogFormat, tty: bool) -> LogFormat {
    match format {
        LogFormat::Auto if tty => LogFormat::Text,
        LogFormat::Auto => LogFormat::Json,
        other => other,
    }
}

/// Where an event comes from, for the level rule ([`shows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// openraft's internals: one step quieter.
    Raft,
    Other,
}

impl Origin {
    pub fn of(target: &str) -> Origin {
        let raft =
            target.strip_prefix("openraft").is_some_and(|rest| rest.is_empty() || rest.starts_with("::"));
        if raft {
            Origin::Raft
        } else {
            Origin::Other
        }
    }
}

/// The level openraft logs at when muster logs at `ours`. openraft's internals log one step
/// quieter (its info is per election step, its debug per message), except under `trace`; our
/// own `raft:` lines report what matters at info.
fn raft_level(ours: LevelFilter) -> LevelFilter {
    match ours.into_level() {
        Some(Level::TRACE) => LevelFilter::TRACE,
        Some(Level::DEBUG) => LevelFilter::INFO,
        _ => ours.min(LevelFilter::WARN),
    }
}

/// Whether an event at `level` from `origin` shows when muster logs at `wanted`: the rule of
/// [`filter`], for the tee and its monitors.
pub fn shows(wanted: LevelFilter, level: Level, origin: Origin) -> bool {
    let limit = match origin {
        Origin::Raft => raft_level(wanted),
        Origin::Other => wanted,
    };
    level <= limit
}

/// stderr's filter for muster logging at `level` (openraft per [`raft_level`]).
fn filter(level: Level) -> EnvFilter {
    let ours = LevelFilter::from_level(level);
    let raft = raft_level(ours);
    EnvFilter::default().add_directive(ours.into()).add_directive(
        format!("openraft={raft}")
            .parse()
            .unwrap_or_else(|_| tracing_subscriber::filter::Directive::from(ours)),
    )
}

/// Colours only on a terminal, and never when `LOG_NO_COLOR` is set.
pub fn colors_enabled(no_color: bool, tty: bool) -> bool {
    tty && !no_color
}

/// Builds the subscriber: stderr-style output to `writer` (a terminal when `tty`) with its
/// own level filter, and `tee`'s layer with its own.
fn build<W>(cfg: &LogConfig, writer: W, tty: bool, tee: &tee::LogTee) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let output = output_layer(cfg, writer, tty).with_filter(filter(cfg.level));
    Box::new(tracing_subscriber::registry().with(output).with(tee.layer()))
}

/// The formatting layer for `cfg`: text or JSON, caller, time, colours.
fn output_layer<S, W>(cfg: &LogConfig, writer: W, tty: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let (target, file_line) = match cfg.caller {
        LogCaller::Off => (false, false),
        LogCaller::Short => (false, true),
        LogCaller::Full => (true, true),
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(target)
        .with_file(file_line)
        .with_line_number(file_line);
    match cfg.time {
        LogTime::Off => finish(layer.without_time(), cfg, tty),
        LogTime::Rfc3339 => finish(layer.with_timer(UtcTimer(Precision::Seconds)), cfg, tty),
        LogTime::Rfc3339Ms => finish(layer.with_timer(UtcTimer(Precision::Millis)), cfg, tty),
    }
}

fn finish<S, T, W>(
    layer: tracing_subscriber::fmt::Layer<S, DefaultFields, Format<Full, T>, W>,
    cfg: &LogConfig,
    tty: bool,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    T: FormatTime + Send + Sync + 'static,
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    match effective_format(cfg.format, tty) {
        LogFormat::Json => Box::new(layer.json().flatten_event(true).with_ansi(false)),
        _ => Box::new(layer.with_ansi(colors_enabled(cfg.no_color, tty))),
    }
}

/// Sub-second digits in a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Seconds,
    Millis,
}

/// Log timestamps in UTC RFC 3339.
struct UtcTimer(Precision);

impl FormatTime for UtcTimer {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        w.write_str(&format_rfc3339(unix_ms_now(), self.0))
    }
}

/// Milliseconds since the Unix epoch (negative before it), for user-visible timestamps only.
pub fn unix_ms_now() -> i64 {
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(after) => ms(after),
        Err(before) => -ms(before.duration()),
    }
}

/// `unix_ms` as RFC 3339 in UTC: `2024-12-31T23:59:59Z` or `2024-12-31T23:59:59.999Z`.
pub fn format_rfc3339(unix_ms: i64, precision: Precision) -> String {
    let secs = unix_ms.div_euclid(1_000);
    let millis = unix_ms.rem_euclid(1_000);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let second_of_day = secs.rem_euclid(86_400);
    let (h, m, s) = (second_of_day / 3_600, second_of_day % 3_600 / 60, second_of_day % 60);
    match precision {
        Precision::Seconds => format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z"),
        Precision::Millis => {
            format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
        }
    }
}

/// Year, month (1..=12) and day (1..=31) of a day counted from 1970-01-01, proleptic
/// Gregorian (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1, 0..=365
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date, the inverse of `civil_from_days`
/// (Hinnant's `days_from_civil`). Used to read timestamps back (`supervisor::timestamp`).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A log writer that keeps what it is given, for tests of the log output.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Capture(pub(crate) std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        // Proves the formatter on the epoch, a leap day, a year end and before the epoch.
        assert_eq!(format_rfc3339(0, Precision::Seconds), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(951_782_400_000, Precision::Seconds), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(1_735_689_599_999, Precision::Millis), "2024-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339(1_735_689_600_000, Precision::Millis), "2025-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(-1, Precision::Millis), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339(4_107_542_400_000, Precision::Seconds), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn civil_days_round_trip() {
        // Proves civil_from_days and days_from_civil are inverses across ±2000 years, and that
        // consecutive days give valid, increasing dates.
        let mut previous = civil_from_days(-730_001);
        for days in (-730_000..730_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d), "{days}: {y}-{m}-{d}");
            assert_eq!(days_from_civil(y, m, d), days);
            assert!((y, m, d) > previous);
            previous = (y, m, d);
        }
    }

    #[test]
    fn auto_format_and_colors_follow_the_terminal() {
        // Proves `auto` picks text on a TTY and JSON otherwise, and colours need a TTY.
        assert_eq!(effective_format(LogFormat::Auto, true), LogFormat::Text);
        assert_eq!(effective_format(LogFormat::Auto, false), LogFormat::Json);
        assert_eq!(effective_format(LogFormat::Text, false), LogFormat::Text);
        assert!(colors_enabled(false, true));
        assert!(!colors_enabled(true, true));
        assert!(!colors_enabled(false, false));
    }

    fn capture(cfg: &LogConfig, tty: bool) -> String {
        let out = Capture::default();
        let tee = tee::LogTee::new(LevelFilter::from_level(cfg.level));
        let subscriber = build(cfg, out.clone(), tty, &tee);
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("hidden below info");
            tracing::info!(node.id = "a", "hello");
        });
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_lines_carry_level_fields_caller_and_time() {
        // Proves JSON output: one object per line, the level filter, flattened fields, the
        // caller for `short`, and a millisecond UTC timestamp.
        let cfg = LogConfig { format: LogFormat::Json, caller: LogCaller::Short, ..LogConfig::default() };
        let out = capture(&cfg, false);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "hello");
        assert_eq!(v["node.id"], "a");
        assert_eq!(v["filename"], "src/logging.rs");
        assert!(v["line_number"].is_u64());
        assert!(v.get("target").is_none(), "short caller has no module path: {v}");
        let ts = v["timestamp"].as_str().unwrap();
        assert!(ts.len() == 24 && ts.ends_with('Z'), "{ts}");
    }

    #[test]
    fn text_lines_follow_caller_time_and_color_settings() {
        // Proves text output without time, with the full caller, and without ANSI codes.
        let cfg = LogConfig {
            format: LogFormat::Text,
            caller: LogCaller::Full,
            time: LogTime::Off,
            no_color: true,
            level: tracing::Level::DEBUG,
        };
        let out = capture(&cfg, true);
        assert!(out.contains("hidden below info"), "{out}");
        let line = out.lines().last().unwrap();
        assert!(line.trim_start().starts_with("INFO muster::logging::tests: src/logging.rs:"), "{line}");
        assert!(!out.contains('\u{1b}'), "colour codes in {out:?}");
        let cfg = LogConfig { caller: LogCaller::Off, time: LogTime::Rfc3339, ..cfg };
        let line = capture(&cfg, true).lines().last().unwrap().to_string();
        let (time, rest) = line.split_once(' ').unwrap();
        assert!(time.len() == 20 && time.ends_with('Z'), "second-precision UTC time: {line}");
        assert_eq!(rest.trim_start(), "INFO hello node.id=\"a\"");
        let coloured = LogConfig { format: LogFormat::Text, ..LogConfig::default() };
        assert!(capture(&coloured, true).contains('\u{1b}'), "a TTY without LOG_NO_COLOR is coloured");
    }
}
