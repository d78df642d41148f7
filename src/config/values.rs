//! Parsers for the values people write in flags, environment variables and the config file:
//! humane durations, addresses with a default port, `k=v` tags, booleans, levels and choices.
//! Each returns `Err(what is allowed)`; the caller adds which flag and where the value came from.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Parses `500ms`, `30s`, `2m`, `1h` or a sum such as `1m30s` into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    const EXPECTED: &str = "expected a duration such as 500ms, 30s, 2m or 1h";
    let s = s.trim();
    if s.is_empty() {
        return Err(EXPECTED.to_string());
    }
    let mut rest = s;
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(EXPECTED.to_string());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| EXPECTED.to_string())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err(format!("{EXPECTED} (a unit is required: ms, s, m or h)")),
            _ => return Err(EXPECTED.to_string()),
        };
        rest = &rest[unit_len..];
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("{EXPECTED} (this one is too long)"))?;
    }
    Ok(total_ms)
}

/// Writes milliseconds back in the largest unit that divides them: `30s`, `2m`, `1500ms`.
pub fn format_duration_ms(ms: u64) -> String {
    match ms {
        0 => "0s".to_string(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

/// Parses `IP:PORT`, `[IPv6]:PORT`, `:PORT` (all interfaces), or a bare `IP`/`[IPv6]`, which
/// gets `default_port`.
pub fn parse_socket_addr(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    if let Some(v6) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        if let Ok(ip) = v6.parse::<Ipv6Addr>() {
            return Ok(SocketAddr::new(IpAddr::V6(ip), default_port));
        }
    }
    if let Some(port) = s.strip_prefix(':') {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
        }
    }
    Err(format!(
        "expected IP, IP:PORT or :PORT (e.g. 0.0.0.0:{default_port}); host names are not allowed here"
    ))
}

/// Parses `1/true/yes/on` and `0/false/no/off`, ignoring case.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected one of 1, true, yes, on, 0, false, no, off".to_string()),
    }
}

/// Parses a log level, ignoring case (`warning` is accepted for `warn`).
pub fn parse_level(s: &str) -> Result<tracing::Level, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "trace" => Ok(tracing::Level::TRACE),
        "debug" => Ok(tracing::Level::DEBUG),
        "info" => Ok(tracing::Level::INFO),
        "warn" | "warning" => Ok(tracing::Level::WARN),
        "error" => Ok(tracing::Level::ERROR),
        _ => Err("expected one of trace, debug, info, warn, error".to_string()),
    }
}

/// Parses one of `choices` with the enum's own `parse`.
pub fn parse_choice<T>(s: &str, parse: fn(&str) -> Option<T>, choices: &[&str]) -> Result<T, String> {
    parse(s.trim()).ok_or_else(|| format!("expected one of {}", choices.join(", ")))
}

/// Parses `KEY=VALUE` (split at the first `=`); the key is trimmed and must be non-empty.
pub fn parse_tag(s: &str) -> Result<(String, String), String> {
    const EXPECTED: &str = "expected KEY=VALUE with a non-empty KEY";
    let (key, value) = s.split_once('=').ok_or_else(|| EXPECTED.to_string())?;
    let key = key.trim();
    if key.is_empty() {
        return Err(EXPECTED.to_string());
    }
    Ok((key.to_string(), value.to_string()))
}

/// Splits a list of addresses on commas and whitespace, dropping empty items.
pub fn split_addrs(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| c == ',' || c.is_whitespace()).filter(|item| !item.is_empty()).map(str::to_string)
}

/// Splits `k=v,k2=v2` on commas, trimming items and dropping empty ones.
pub fn split_tags(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit_and_sum() {
        // Proves the humane duration grammar, and that unitless or junk input is rejected.
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms(" 1m30s "), Ok(90_000));
        for bad in ["", "5", "s", "1.5s", "3d", "1s-", "-1s", "99999999999999999999h"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_duration_ms("5").unwrap_err().contains("unit is required"));
    }

    #[test]
    fn durations_format_in_the_largest_unit() {
        // Proves format_duration_ms round-trips through parse_duration_ms.
        for (ms, text) in [(0, "0s"), (1_000, "1s"), (1_500, "1500ms"), (120_000, "2m")] {
            assert_eq!(format_duration_ms(ms), text);
            assert_eq!(parse_duration_ms(text), Ok(ms));
        }
        assert_eq!(format_duration_ms(7_200_000), "2h");
    }

    #[test]
    fn socket_addrs_take_a_default_port() {
        // Proves bare IPs (v4, v6, bracketed v6) get the default port and :PORT means any IP.
        let p = |s| parse_socket_addr(s, 7946);
        assert_eq!(p("10.0.0.1"), Ok("10.0.0.1:7946".parse().unwrap()));
        assert_eq!(p("10.0.0.1:1"), Ok("10.0.0.1:1".parse().unwrap()));
        assert_eq!(p("::1"), Ok("[::1]:7946".parse().unwrap()));
        assert_eq!(p("[::1]"), Ok("[::1]:7946".parse().unwrap()));
        assert_eq!(p("[::1]:5"), Ok("[::1]:5".parse().unwrap()));
        assert_eq!(p(":8000"), Ok("0.0.0.0:8000".parse().unwrap()));
        for bad in ["", "localhost", "1.2.3.4:99999", "1.2.3"] {
            assert!(p(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tags_need_a_key_and_an_equals_sign() {
        // Proves the KEY=VALUE grammar: split at the first '=', empty values allowed.
        assert_eq!(parse_tag("k=v"), Ok(("k".into(), "v".into())));
        assert_eq!(parse_tag("k=a=b"), Ok(("k".into(), "a=b".into())));
        assert_eq!(parse_tag("k="), Ok(("k".into(), String::new())));
        assert!(parse_tag("=v").is_err());
        assert!(parse_tag("novalue").is_err());
    }

    #[test]
    fn lists_split_on_commas() {
        // Proves SERF_JOIN-style lists split on commas and spaces and drop empty items.
        let items: Vec<String> = split_addrs(" a:1, b ,,c  d").collect();
        assert_eq!(items, ["a:1", "b", "c", "d"]);
        let tags: Vec<String> = split_tags("k=v , k2=v 2,").collect();
        assert_eq!(tags, ["k=v", "k2=v 2"]);
    }
}
