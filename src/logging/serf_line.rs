//! Serf's log lines, for `serf monitor`: the five levels Serf filters on (TRACE, DEBUG, INFO,
//! WARN, ERR; `cmd/serf/command/agent/log_levels.go`) and the line Go's standard logger writes
//! (`2024/05/01 12:00:00 [INFO] agent: Received event: user-event: deploy`), rendered from a
//! tracing event's level, target, message and fields.
//!
//! Differences from the Go agent: the time is UTC (Go's logger writes local time; muster's
//! logs and API answers are UTC throughout). Control characters in a message are escaped and
//! field values holding spaces or control characters are quoted, so a peer-supplied string
//! (an event name, an address) can never start a forged line.
//!
//! Pure: the time is an argument. Imports only tracing's level and field types.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::Level;
use tracing_subscriber::filter::LevelFilter;

/// A level as Serf names it. Ordered from the most verbose (`Trace`) to the quietest (`Err`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SerfLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Err,
}

/// A level name Serf does not know. The message is the Go agent's, word for word (clients
/// print it), hence its capital letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Unknown log level: {0}")]
pub struct UnknownLevel(pub String);

impl SerfLevel {
    /// Reads a level as the Go agent does: upper-cased, then one of the five names exactly
    /// (so `debug` and `Debug` pass, `""`, ` info` and `error` do not).
    pub fn parse(name: &str) -> Result<SerfLevel, UnknownLevel> {
        let upper = name.to_uppercase();
        match upper.as_str() {
            "TRACE" => Ok(SerfLevel::Trace),
            "DEBUG" => Ok(SerfLevel::Debug),
            "INFO" => Ok(SerfLevel::Info),
            "WARN" => Ok(SerfLevel::Warn),
            "ERR" => Ok(SerfLevel::Err),
            _ => Err(UnknownLevel(upper)),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SerfLevel::Trace => "TRACE",
            SerfLevel::Debug => "DEBUG",
            SerfLevel::Info => "INFO",
            SerfLevel::Warn => "WARN",
            SerfLevel::Err => "ERR",
        }
    }

    /// The Serf level of a tracing event (`ERROR` is Serf's `ERR`).
    pub fn of(level: &Level) -> SerfLevel {
        match *level {
            Level::TRACE => SerfLevel::Trace,
            Level::DEBUG => SerfLevel::Debug,
            Level::INFO => SerfLevel::Info,
            Level::WARN => SerfLevel::Warn,
            Level::ERROR => SerfLevel::Err,
        }
    }

    /// The tracing filter that passes this level and the quieter ones.
    pub fn filter(self) -> LevelFilter {
        match self {
            SerfLevel::Trace => LevelFilter::TRACE,
            SerfLevel::Debug => LevelFilter::DEBUG,
            SerfLevel::Info => LevelFilter::INFO,
            SerfLevel::Warn => LevelFilter::WARN,
            SerfLevel::Err => LevelFilter::ERROR,
        }
    }
}

/// An event's message and its other fields, collected by [`tracing::Event::record`].
#[derive(Debug, Default)]
pub struct LineFields {
    pub message: String,
    /// ` key=value` for each field but the message, in the order they were recorded.
    pub fields: String,
}

impl Visit for LineFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            push_escaped(&mut self.message, value);
        } else {
            push_field(&mut self.fields, field.name(), value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_str(field, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%x` fields and format_args messages arrive here already in their Display form.
        self.record_str(field, &format!("{value:?}"));
    }
}

/// Appends ` name=value`, quoting (with Rust's escapes) a value that is empty or holds
/// whitespace or control characters, unless it is already one quoted string. Quotes alone do
/// not need it (`addrs=["10.0.0.1:7946"]` stays readable).
pub fn push_field(out: &mut String, name: &str, value: &str) {
    // Fields the `log` bridge adds describe the call site, not the event.
    if name.starts_with("log.") {
        return;
    }
    out.push(' ');
    out.push_str(name);
    out.push('=');
    let already_quoted = value.len() >= 2
        && value.starts_with('"')
        && value.ends_with('"')
        && !value.chars().any(char::is_control);
    let plain = !value.is_empty() && !value.chars().any(|c| c.is_whitespace() || c.is_control());
    if plain || already_quoted {
        out.push_str(value);
    } else {
        let _ = write!(out, "{value:?}");
    }
}

/// Appends `s` with control characters written as escapes (`\n`, `\u{1b}`), so it stays one
/// line.
fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
}

/// One Serf log line (no trailing newline):
/// `YYYY/MM/DD HH:MM:SS [LEVEL] subsystem: message key=value …` at `unix_ms` in UTC. A message
/// that does not start with a `subsystem: ` of its own (muster's mostly do) gets one made
/// from `target`.
pub fn render(unix_ms: i64, level: SerfLevel, target: &str, fields: &LineFields) -> String {
    let mut line = String::with_capacity(32 + fields.message.len() + fields.fields.len());
    line.push_str(&go_time(unix_ms));
    line.push_str(" [");
    line.push_str(level.as_str());
    line.push_str("] ");
    if !has_subsystem(&fields.message) {
        line.push_str(&subsystem(target));
        line.push_str(": ");
    }
    line.push_str(&fields.message);
    line.push_str(&fields.fields);
    line
}

/// A line muster writes itself (not from an event), e.g. a note about dropped lines.
pub fn render_note(unix_ms: i64, level: SerfLevel, message: &str) -> String {
    let fields = LineFields { message: message.to_string(), fields: String::new() };
    render(unix_ms, level, "muster", &fields)
}

/// Go's `log.LstdFlags` time, `2009/01/23 01:23:23`, here in UTC.
fn go_time(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1_000);
    let (year, month, day) = super::civil_from_days(secs.div_euclid(86_400));
    let second_of_day = secs.rem_euclid(86_400);
    let (h, m, s) = (second_of_day / 3_600, second_of_day % 3_600 / 60, second_of_day % 60);
    format!("{year:04}/{month:02}/{day:02} {h:02}:{m:02}:{s:02}")
}

/// Whether a message starts like `serf-rpc: …` or `raft log: …`: one or two short words of
/// letters, digits, `_`, `.` or `-`, then `: `.
fn has_subsystem(message: &str) -> bool {
    const SUBSYSTEM_CHARS_MAX: usize = 24;
    match message.find(": ") {
        Some(end) if end > 0 && end <= SUBSYSTEM_CHARS_MAX => {
            let head = &message[..end];
            head.split(' ').count() <= 2
                && head.split(' ').all(|w| !w.is_empty())
                && head.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '.' | '-'))
        }
        _ => false,
    }
}

/// A subsystem name from a tracing target: muster's module path without the crate name
/// (`consensus.log_store`), another crate's name alone (`openraft`).
fn subsystem(target: &str) -> String {
    match target.strip_prefix("muster::") {
        Some(path) => path.replace("::", "."),
        None => target.split("::").next().unwrap_or(target).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(message: &str, rest: &[(&str, &str)]) -> LineFields {
        let mut f = LineFields { message: message.into(), fields: String::new() };
        for (k, v) in rest {
            push_field(&mut f.fields, k, v);
        }
        f
    }

    #[test]
    fn levels_parse_as_the_go_agent_reads_them() {
        // Proves the five names pass in any case and anything else fails with Go's upper-cased message.
        for (name, level) in [
            ("trace", SerfLevel::Trace),
            ("Debug", SerfLevel::Debug),
            ("INFO", SerfLevel::Info),
            ("warn", SerfLevel::Warn),
            ("err", SerfLevel::Err),
        ] {
            assert_eq!(SerfLevel::parse(name), Ok(level));
            assert_eq!(SerfLevel::parse(level.as_str()), Ok(level));
        }
        assert_eq!(SerfLevel::parse("bogus").unwrap_err().to_string(), "Unknown log level: BOGUS");
        assert_eq!(SerfLevel::parse("").unwrap_err().to_string(), "Unknown log level: ");
        assert!(SerfLevel::parse("error").is_err(), "Serf says ERR");
        assert!(SerfLevel::parse(" info").is_err(), "no trimming, as in Go");
        assert!(SerfLevel::Trace < SerfLevel::Debug && SerfLevel::Warn < SerfLevel::Err);
    }

    #[test]
    fn tracing_levels_map_onto_serf_levels_and_back() {
        // Proves ERROR is ERR and each Serf level's filter passes exactly its own and quieter tracing levels.
        assert_eq!(SerfLevel::of(&Level::ERROR), SerfLevel::Err);
        assert_eq!(SerfLevel::of(&Level::TRACE), SerfLevel::Trace);
        let all = [Level::TRACE, Level::DEBUG, Level::INFO, Level::WARN, Level::ERROR];
        for want in [SerfLevel::Trace, SerfLevel::Debug, SerfLevel::Info, SerfLevel::Warn, SerfLevel::Err] {
            for l in all {
                assert_eq!(l <= want.filter(), SerfLevel::of(&l) >= want, "{l} under {want:?}");
            }
        }
    }

    #[test]
    fn a_line_has_the_go_loggers_shape() {
        // Proves the date, the bracketed level, the subsystem kept or derived, and key=value fields.
        let at = 1_714_564_800_123; // 2024-05-01T12:00:00.123Z
        let line = render(
            at,
            SerfLevel::Info,
            "muster::serf_rpc",
            &fields("serf-rpc: listening", &[("addr", "127.0.0.1:7373")]),
        );
        assert_eq!(line, "2024/05/01 12:00:00 [INFO] serf-rpc: listening addr=127.0.0.1:7373");
        let line =
            render(at, SerfLevel::Err, "muster::consensus::log_store", &fields("purging the log", &[]));
        assert_eq!(line, "2024/05/01 12:00:00 [ERR] consensus.log_store: purging the log");
        let line =
            render(at, SerfLevel::Debug, "openraft::engine::engine_impl", &fields("vote: granted", &[]));
        assert_eq!(line, "2024/05/01 12:00:00 [DEBUG] vote: granted");
        let line = render(
            at,
            SerfLevel::Trace,
            "openraft::core",
            &fields("a long message: not a subsystem here", &[]),
        );
        assert_eq!(line, "2024/05/01 12:00:00 [TRACE] openraft: a long message: not a subsystem here");
        assert_eq!(render_note(0, SerfLevel::Warn, "x"), "1970/01/01 00:00:00 [WARN] muster: x");
    }

    #[test]
    fn values_are_quoted_only_when_they_must_be() {
        // Proves plain values (quotes alone included) stay bare, Debug-quoted strings are not quoted twice, and spaces, newlines or emptiness get quoted.
        let f = fields(
            "m",
            &[("a", "x"), ("b", "\"already\""), ("c", "two words"), ("d", ""), ("e", "say \"hi\"")],
        );
        assert_eq!(f.fields, " a=x b=\"already\" c=\"two words\" d=\"\" e=\"say \\\"hi\\\"\"");
        let f = fields("m", &[("log.target", "x"), ("evil", "a\n2024/01/01 00:00:00 [ERR] forged")]);
        assert_eq!(f.fields, " evil=\"a\\n2024/01/01 00:00:00 [ERR] forged\"");
        let f = fields("m", &[("addrs", "[\"127.0.0.1:7946\"]"), ("q", "\"a\"\n")]);
        assert_eq!(f.fields, " addrs=[\"127.0.0.1:7946\"] q=\"\\\"a\\\"\\n\"");
    }

    #[test]
    fn an_event_is_one_line_however_it_was_written() {
        // Proves a recorded event's message with a newline stays one line and Display/Debug/error fields render as written.
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        struct Grab(std::sync::Arc<std::sync::Mutex<Vec<String>>>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Grab {
            fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
                let mut f = LineFields::default();
                e.record(&mut f);
                self.0.lock().unwrap().push(render(
                    0,
                    SerfLevel::of(e.metadata().level()),
                    e.metadata().target(),
                    &f,
                ));
            }
        }
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(Grab(out.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let err = std::io::Error::other("disk full");
            let name = "deploy\nnow";
            tracing::warn!(peer.addr = %"127.0.0.1:1", name = ?name, error = %err, n = 3, "gossip: event {}", "x\ny");
        });
        let lines = out.lock().unwrap().clone();
        assert_eq!(
            lines,
            ["1970/01/01 00:00:00 [WARN] gossip: event x\\ny peer.addr=127.0.0.1:1 name=\"deploy\\nnow\" error=\"disk full\" n=3"]
        );
    }
}
