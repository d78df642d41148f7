//! DNS-SD names for registry services: the service type (Bitsperity Beacon's table, a service's
//! own `mdns_service_type` winning) made valid under RFC 6763, the instance label, and the
//! per-service host name that carries the service's own address.
//!
//! Pure string work: must not import tokio, I/O, or any muster module but the registry's model.

/// RFC 6763 §7.2: the service name part of `_name._tcp` is at most 15 bytes.
pub const SERVICE_NAME_BYTES_MAX: usize = 15;
/// One DNS label.
pub const LABEL_BYTES_MAX: usize = 63;
/// How many characters of a service id make it short enough for a name suffix.
pub const SHORT_ID_CHARS: usize = 8;

/// Beacon's table: registry type → DNS-SD service name. Any other type `t` becomes `_t._tcp`.
pub const TYPE_TABLE: &[(&str, &str)] = &[
    ("mqtt", "mqtt"),
    ("http", "http"),
    ("https", "https"),
    ("iot", "iot"),
    ("api", "http"),
    ("database", "db"),
    ("cache", "cache"),
    ("message_queue", "mq"),
];

/// The transport label of a DNS-SD type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

/// A valid DNS-SD service type: `_name._tcp` or `_name._udp` in `local.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceType {
    name: String,
    proto: Proto,
}

impl ServiceType {
    /// `_mqtt._tcp.local.`, as mdns-sd wants it.
    pub fn domain(&self) -> String {
        let proto = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        format!("_{}._{proto}.local.", self.name)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The DNS-SD type of a registry service whose type is `registry_type` and whose own
/// `mdns_service_type` is `own`. `notes` gets one line for each change made to fit RFC 6763
/// (renamed characters, truncation, an unusable `mdns_service_type`); `Err` says why the
/// service cannot be announced at all.
pub fn service_type(
    registry_type: &str,
    own: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<ServiceType, String> {
    if let Some(own) = own {
        match parse_own(own) {
            Some((raw, proto)) => return valid_name(raw, notes).map(|name| ServiceType { name, proto }),
            None => notes.push(format!(
                "mdns_service_type '{own}' is not _name._tcp or _name._udp; using the type table instead"
            )),
        }
    }
    let lower = registry_type.to_ascii_lowercase();
    let raw = TYPE_TABLE.iter().find(|(t, _)| *t == lower).map_or(lower.as_str(), |(_, n)| *n);
    valid_name(raw, notes).map(|name| ServiceType { name, proto: Proto::Tcp })
}

/// `_name._tcp` (optionally followed by `.local` and a final dot) → (`name`, proto).
fn parse_own(own: &str) -> Option<(&str, Proto)> {
    let s = own.trim().trim_end_matches('.');
    let s = s.strip_suffix(".local").unwrap_or(s);
    let s = s.strip_prefix('_')?;
    if let Some(name) = s.strip_suffix("._tcp") {
        return Some((name, Proto::Tcp));
    }
    s.strip_suffix("._udp").map(|name| (name, Proto::Udp))
}

/// RFC 6763 §7.2: letters, digits and hyphens, no leading, trailing or double hyphen, at least
/// one letter, at most 15 bytes. `_` and any other character become `-` (lowercase throughout);
/// a longer name is truncated to 15 bytes.
fn valid_name(raw: &str, notes: &mut Vec<String>) -> Result<String, String> {
    let mut name = String::with_capacity(raw.len());
    for c in raw.chars().map(|c| c.to_ascii_lowercase()) {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && (name.is_empty() || name.ends_with('-'))) {
            name.push(c);
        }
    }
    let mut name = name.trim_end_matches('-').to_string();
    if name != raw {
        notes.push(format!(
            "service type '{raw}' is announced as '{name}' (RFC 6763: letters, digits and single hyphens)"
        ));
    }
    if name.len() > SERVICE_NAME_BYTES_MAX {
        let long = name.clone();
        name.truncate(SERVICE_NAME_BYTES_MAX);
        let kept = name.trim_end_matches('-').len();
        name.truncate(kept);
        notes.push(format!(
            "service type '{long}' is longer than {SERVICE_NAME_BYTES_MAX} bytes (RFC 6763); truncated to '{name}'"
        ));
    }
    if !name.chars().any(|c| c.is_ascii_alphabetic()) {
        return Err(format!("service type '{raw}' has no letter, which RFC 6763 requires; not announced"));
    }
    Ok(name)
}

/// `s` cut to at most `max` bytes at a character boundary.
pub fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The instance label for `name`: one DNS label (63 bytes); empty names get `service`.
pub fn instance_label(name: &str) -> String {
    let name = name.trim();
    if name.is_empty() {
        return "service".to_string();
    }
    truncate_bytes(name, LABEL_BYTES_MAX).to_string()
}

/// The instance label made unique with `suffix` (a short id): `name (suffix)`, within 63 bytes.
pub fn instance_label_with(name: &str, suffix: &str) -> String {
    let tail = format!(" ({suffix})");
    let head = instance_label(name);
    format!("{}{tail}", truncate_bytes(&head, LABEL_BYTES_MAX.saturating_sub(tail.len())))
}

/// The first characters of a service id, lowercase letters and digits only.
pub fn short_id(id: &str) -> String {
    let s: String = id.chars().filter(|c| c.is_ascii_alphanumeric()).take(SHORT_ID_CHARS).collect::<String>();
    if s.is_empty() {
        "0".to_string()
    } else {
        s.to_ascii_lowercase()
    }
}

/// One DNS label of letters, digits and single hyphens from any text, at most `max` bytes.
pub fn host_label(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars().map(|c| c.to_ascii_lowercase()) {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
    }
    out.truncate(max.min(LABEL_BYTES_MAX));
    out.trim_end_matches('-').to_string()
}

/// The host name a registry service's SRV record points at, carrying only that service's
/// addresses: `<host>-<short id>.local.` (`10-0-0-5-1a2b3c4d.local.`). One name per service, so
/// the goodbye for one service never withdraws an address another service still uses.
pub fn service_host_name(host: &str, id: &str) -> String {
    let short = short_id(id);
    let label = host_label(host, LABEL_BYTES_MAX - short.len() - 1);
    let label = if label.is_empty() { "host".to_string() } else { label };
    format!("{label}-{short}.local.")
}
