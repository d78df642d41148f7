//! Compose `ports:` entries into [`PortSpec`]s: the short syntax
//! `[[HOST_IP:][HOST_PORT]:]CONTAINER_PORT[/PROTOCOL]` (IPv6 host addresses in brackets,
//! equal-length ranges like `8000-8009:8000-8009`, at most [`PORT_RANGE_MAX`] ports each) and the
//! long syntax (`target`, `published`, `host_ip`, `protocol`), mixed freely in one list.
//! Must not import anything outside `supervisor` (and the compose crate's `Port`).

use docker_compose_types::{Port, PublishedPort};
use serde_yaml::Value;

use super::error::ComposeError;
use super::spec::{PortSpec, Protocol};

/// The most ports one range entry may expand to.
pub const PORT_RANGE_MAX: u32 = 256;
/// The most ports one service may publish (after ranges are expanded).
pub const PORTS_MAX: usize = 1024;

/// A service's whole `ports:` list, read entry by entry so short and long entries may be mixed
/// (the compose crate's typed list cannot mix them).
pub fn parse_entries(service: &str, value: Option<&Value>) -> Result<Vec<PortSpec>, ComposeError> {
    let invalid = |key: String, reason: String| ComposeError::InvalidValue {
        service: service.to_string(),
        key,
        reason,
    };
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Sequence(items)) => items,
        Some(_) => return Err(invalid("ports".to_string(), "expected a list of ports".to_string())),
    };
    let mut ports = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let parsed = match item {
            Value::String(short) => parse_short(short),
            Value::Mapping(_) => serde_yaml::from_value::<Port>(item.clone())
                .map_err(|e| e.to_string())
                .and_then(|long| parse_long(&long)),
            _ => Err("expected \"[HOST:]CONTAINER[/PROTOCOL]\" or a mapping with target".to_string()),
        };
        ports.extend(parsed.map_err(|r| invalid(format!("ports.{i}"), r))?);
        if ports.len() > PORTS_MAX {
            let what = format!("service {service}: ports");
            return Err(ComposeError::TooMany { what, count: ports.len(), max: PORTS_MAX });
        }
    }
    Ok(ports)
}

fn protocol(text: &str) -> Result<Protocol, String> {
    match text.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        "sctp" => Ok(Protocol::Sctp),
        other => Err(format!("unknown protocol {other:?} (use tcp, udp or sctp)")),
    }
}

fn port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{text:?} is not a port number (1-65535)")),
    }
}

/// A port or an inclusive range `a-b`, as (first, count).
fn range(text: &str) -> Result<(u16, u16), String> {
    let Some((a, b)) = text.split_once('-') else {
        return Ok((port(text)?, 1));
    };
    let (a, b) = (port(a)?, port(b)?);
    if b < a {
        return Err(format!("range {text:?} ends before it starts"));
    }
    let count = u32::from(b - a) + 1;
    if count > PORT_RANGE_MAX {
        return Err(format!("range {text:?} has {count} ports, more than {PORT_RANGE_MAX}"));
    }
    Ok((a, b - a + 1))
}

/// Expands a host range (or none) against a container range of the same length.
fn expand(
    host_ip: Option<String>,
    host: Option<(u16, u16)>,
    container: (u16, u16),
    protocol: Protocol,
) -> Result<Vec<PortSpec>, String> {
    if let Some((_, host_count)) = host {
        if host_count != container.1 {
            return Err(format!(
                "host range has {host_count} ports but container range has {}; they must match",
                container.1
            ));
        }
    }
    Ok((0..container.1)
        .map(|i| PortSpec {
            host_ip: host_ip.clone(),
            host_port: host.map(|(first, _)| first + i),
            container_port: container.0 + i,
            protocol,
        })
        .collect())
}

/// One short-syntax entry, e.g. `8080:80`, `127.0.0.1:8080:80/udp`, `[::1]::80`, `9000`.
pub fn parse_short(entry: &str) -> Result<Vec<PortSpec>, String> {
    let (spec, proto) = match entry.rsplit_once('/') {
        Some((spec, p)) => (spec, protocol(p)?),
        None => (entry, Protocol::Tcp),
    };
    let (host_ip, rest) = if let Some(bracketed) = spec.strip_prefix('[') {
        let Some((ip, after)) = bracketed.split_once(']') else {
            return Err(format!("unclosed `[` in {entry:?}"));
        };
        let Some(after) = after.strip_prefix(':') else {
            return Err(format!("expected `:` after `[{ip}]` in {entry:?}"));
        };
        (Some(ip.to_string()), after)
    } else {
        (None, spec)
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (host_ip, host, container) = match (host_ip, parts.as_slice()) {
        (None, [c]) => (None, None, *c),
        (ip, [h, c]) => (ip, Some(*h), *c),
        (None, [ip, h, c]) => (Some((*ip).to_string()), Some(*h), *c),
        _ => {
            return Err(format!(
                "cannot read port {entry:?}; use [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL] \
                 and brackets around IPv6 addresses"
            ))
        }
    };
    let host_ip = host_ip.filter(|ip| !ip.is_empty());
    let host = host.filter(|h| !h.is_empty()).map(range).transpose()?;
    expand(host_ip, host, range(container)?, proto)
}

/// One long-syntax entry.
pub fn parse_long(entry: &Port) -> Result<Vec<PortSpec>, String> {
    let proto = entry.protocol.as_deref().map(protocol).transpose()?.unwrap_or(Protocol::Tcp);
    if entry.target == 0 {
        return Err("target 0 is not a port number (1-65535)".to_string());
    }
    let host = match &entry.published {
        None => None,
        Some(PublishedPort::Single(p)) => Some((port(&p.to_string())?, 1)),
        Some(PublishedPort::Range(r)) if r.trim().is_empty() => None,
        Some(PublishedPort::Range(r)) => Some(range(r)?),
    };
    let host_ip = entry.host_ip.clone().filter(|ip| !ip.is_empty());
    expand(host_ip, host, (entry.target, 1), proto)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(host_ip: Option<&str>, host: Option<u16>, container: u16, protocol: Protocol) -> PortSpec {
        PortSpec {
            host_ip: host_ip.map(str::to_string),
            host_port: host,
            container_port: container,
            protocol,
        }
    }

    #[test]
    fn short_syntax_forms() {
        // Proves every short form compose documents maps to the same host/container/protocol.
        assert_eq!(parse_short("80").unwrap(), [one(None, None, 80, Protocol::Tcp)]);
        assert_eq!(parse_short("8080:80").unwrap(), [one(None, Some(8080), 80, Protocol::Tcp)]);
        assert_eq!(
            parse_short("127.0.0.1:8080:80/udp").unwrap(),
            [one(Some("127.0.0.1"), Some(8080), 80, Protocol::Udp)]
        );
        assert_eq!(parse_short("127.0.0.1::80").unwrap(), [one(Some("127.0.0.1"), None, 80, Protocol::Tcp)]);
        assert_eq!(
            parse_short("[::1]:5672:5672").unwrap(),
            [one(Some("::1"), Some(5672), 5672, Protocol::Tcp)]
        );
        let range = parse_short("7000-7002:8000-8002/sctp").unwrap();
        assert_eq!(range.len(), 3);
        assert_eq!(range[2], one(None, Some(7002), 8002, Protocol::Sctp));
    }

    #[test]
    fn bad_ports_are_refused() {
        // Proves malformed entries fail with a reason instead of publishing something else.
        assert!(parse_short("0:80").unwrap_err().contains("not a port number"));
        assert!(parse_short("70000:80").unwrap_err().contains("not a port number"));
        assert!(parse_short("80/icmp").unwrap_err().contains("unknown protocol"));
        assert!(parse_short("::1:80:80").unwrap_err().contains("brackets"));
        assert!(parse_short("8000-8001:80").unwrap_err().contains("must match"));
        assert!(parse_short("1-1000").unwrap_err().contains("more than 256"));
        assert!(parse_short("[::1:80").unwrap_err().contains("unclosed"));
    }

    #[test]
    fn long_syntax_entries() {
        // Proves the long form reads target, published (number or string), host_ip and protocol.
        let long = Port {
            target: 53,
            host_ip: Some("127.0.0.1".into()),
            published: Some(PublishedPort::Range("5353".into())),
            protocol: Some("udp".into()),
            mode: None,
        };
        assert_eq!(parse_long(&long).unwrap(), [one(Some("127.0.0.1"), Some(5353), 53, Protocol::Udp)]);
        let bare = Port { target: 80, host_ip: None, published: None, protocol: None, mode: None };
        assert_eq!(parse_long(&bare).unwrap(), [one(None, None, 80, Protocol::Tcp)]);
    }
}
