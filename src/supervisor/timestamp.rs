//! RFC 3339 timestamps as Docker writes them (`StartedAt`, `FinishedAt`:
//! `2026-05-07T21:09:36.123456789Z`, or `0001-01-01T00:00:00Z` for "never") into unix
//! milliseconds. Pure; the calendar arithmetic is the logger's (`logging::days_from_civil`).

use crate::logging::days_from_civil;

/// Unix ms of an RFC 3339 timestamp; `None` for text that is not one, or for an instant before
/// 1970 (Docker's zero time means "never").
pub fn unix_ms(text: &str) -> Option<u64> {
    let (date, rest) = text.split_once(['T', 't', ' '])?;
    let mut parts = date.splitn(3, '-');
    let year: i64 = digits(parts.next()?, 4)?;
    let month: i64 = digits(parts.next()?, 2)?;
    let day: i64 = digits(parts.next()?, 2)?;
    let zone_at = rest.find(['Z', 'z', '+', '-'])?;
    let (clock, zone) = rest.split_at(zone_at);
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, fraction)) => (hms, Some(fraction)),
        None => (clock, None),
    };
    let mut hms = hms.splitn(3, ':');
    let hour: i64 = digits(hms.next()?, 2)?;
    let minute: i64 = digits(hms.next()?, 2)?;
    let second: i64 = digits(hms.next()?, 2)?;
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second <= 60;
    if !valid {
        return None;
    }
    let millis = match fraction {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let padded = format!("{f:0<3}");
            padded.get(..3)?.parse::<i64>().ok()?
        }
        Some(_) => return None,
    };
    let offset_s = offset_seconds(zone)?;
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_s;
    u64::try_from(seconds.checked_mul(1_000)?.checked_add(millis)?).ok()
}

/// Exactly `width` ASCII digits.
fn digits(text: &str, width: usize) -> Option<i64> {
    if text.len() != width || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `Z` → 0; `+hh:mm` / `-hh:mm` → seconds east of UTC.
fn offset_seconds(zone: &str) -> Option<i64> {
    if zone.eq_ignore_ascii_case("z") {
        return Some(0);
    }
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (hours, minutes) = zone.get(1..)?.split_once(':')?;
    let (hours, minutes) = (digits(hours, 2)?, digits(minutes, 2)?);
    (hours < 24 && minutes < 60).then_some(sign * (hours * 3_600 + minutes * 60))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_timestamps_become_unix_ms() {
        // Proves Docker's nanosecond UTC form, offsets, leap days and the epoch itself.
        assert_eq!(unix_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_ms("2026-05-07T21:09:36.123456789Z"), Some(1_778_188_176_123));
        assert_eq!(unix_ms("2026-05-07T23:09:36.5+02:00"), Some(1_778_188_176_500));
        assert_eq!(unix_ms("2024-02-29T12:00:00Z"), Some(1_709_208_000_000));
        assert_eq!(unix_ms("2000-03-01T00:00:00.001Z"), Some(951_868_800_001));
    }

    #[test]
    fn never_and_garbage_are_none() {
        // Proves Docker's zero time ("never") and malformed text are not mistaken for instants.
        assert_eq!(unix_ms("0001-01-01T00:00:00Z"), None);
        for bad in ["", "yesterday", "2026-13-01T00:00:00Z", "2025-02-29T00:00:00Z", "2026-05-07T21:09:36"] {
            assert_eq!(unix_ms(bad), None, "{bad}");
        }
        assert_eq!(unix_ms("2026-05-07T21:09:36.Z"), None);
        assert_eq!(unix_ms("2026-05-07T25:09:36Z"), None);
    }
}
