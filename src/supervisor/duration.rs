//! Compose durations (`10s`, `1m30s`, `500ms`, `1.5s`, `2h`): a sequence of numbers, each with
//! a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), like Go's `time.ParseDuration` without signs.
//! Bounded by [`DURATION_MAX`]. Must not import anything outside `supervisor`.

use std::time::Duration;

/// The longest duration accepted; a healthcheck interval beyond a day is a typo.
pub const DURATION_MAX: Duration = Duration::from_secs(24 * 60 * 60);

const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a compose duration; the error says what was wrong in words.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration (use e.g. 10s, 1m30s or 500ms)".to_string());
    }
    let mut total_ns: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        let (number, after) = rest.split_at(digits);
        let unit_len =
            after.chars().take_while(|c| !c.is_ascii_digit() && *c != '.').map(char::len_utf8).sum();
        let (unit, tail) = after.split_at(unit_len);
        if number.is_empty() {
            return Err(format!("invalid duration {text:?}: expected a number before {unit:?}"));
        }
        let Some(&(_, unit_ns)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {unit:?} after {number} (use ns, us, ms, s, m or h)"
            ));
        };
        total_ns = total_ns.saturating_add(scaled(number, unit_ns, text)?);
        rest = tail;
    }
    let max_ns = DURATION_MAX.as_nanos();
    if total_ns > max_ns {
        return Err(format!(
            "duration {text:?} is longer than the {}h muster accepts",
            max_ns / 3_600_000_000_000
        ));
    }
    let secs = u64::try_from(total_ns / 1_000_000_000).unwrap_or(u64::MAX);
    let nanos = u32::try_from(total_ns % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// `number` (e.g. `1.25`) times `unit_ns`, in nanoseconds, truncating below a nanosecond.
fn scaled(number: &str, unit_ns: u128, text: &str) -> Result<u128, String> {
    let bad = || format!("invalid duration {text:?}: {number:?} is not a number");
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(bad());
    }
    // Twenty digits overflow nothing below: u64::MAX has 20 digits, times 3.6e12 fits in u128.
    if whole.len() > 19 || frac.len() > 19 {
        return Err(format!("invalid duration {text:?}: {number:?} has too many digits"));
    }
    let whole_n: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
    let mut frac_ns: u128 = 0;
    if !frac.is_empty() {
        let frac_n: u128 = frac.parse().map_err(|_| bad())?;
        frac_ns = frac_n.saturating_mul(unit_ns) / 10u128.pow(frac.len() as u32);
    }
    Ok(whole_n.saturating_mul(unit_ns).saturating_add(frac_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_durations_parse() {
        // Proves the forms compose files use, including compound and fractional values.
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h2m3s4ms"), Ok(Duration::from_millis(3_723_004)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_say_why() {
        // Proves each malformed duration is refused with a message naming the problem.
        assert!(parse_duration("10").unwrap_err().contains("unknown unit \"\""));
        assert!(parse_duration("10x").unwrap_err().contains("unknown unit \"x\""));
        assert!(parse_duration("s").unwrap_err().contains("expected a number"));
        assert!(parse_duration("1.2.3s").unwrap_err().contains("is not a number"));
        assert!(parse_duration("").unwrap_err().contains("empty duration"));
        assert!(parse_duration("25h").unwrap_err().contains("longer than the 24h"));
        assert!(parse_duration("99999999999999999999999h").unwrap_err().contains("too many digits"));
    }
}
