//! Every bound the registry enforces, in one place: the fields of [`NewService`] and
//! [`ServicePatch`] (Beacon's bounds, plus muster's for the fields Beacon leaves open), heartbeat
//! TTL overrides, lease extensions and list paging. Each violated rule yields one message naming
//! the field and the bound, e.g. `name must be 1–100 characters (got 0)`; lengths count Unicode
//! characters, as Beacon's pydantic models do.
//!
//! Pure functions over values: must not import tokio, clocks, I/O or other muster modules, and
//! must not touch registry state (uniqueness and existence are `apply`'s business).

use std::collections::BTreeMap;

use super::error::RegistryError;
use super::model::{NewService, ServicePatch, Status};

/// Service ids are UUID-like; 64 leaves room for prefixed ids and keeps them URL-safe.
pub const ID_CHARS_MAX: usize = 64;
pub const NAME_CHARS_MAX: usize = 100;
pub const TYPE_CHARS_MAX: usize = 50;
pub const HOST_CHARS_MAX: usize = 255;
pub const PORT_MIN: u32 = 1;
pub const PORT_MAX: u32 = 65_535;
pub const PROTOCOL_CHARS_MAX: usize = 20;
pub const TAGS_MAX: usize = 50;
pub const TAG_CHARS_MAX: usize = 50;
pub const METADATA_ENTRIES_MAX: usize = 64;
pub const METADATA_KEY_CHARS_MAX: usize = 100;
pub const METADATA_VALUE_CHARS_MAX: usize = 1_000;
pub const TTL_SECONDS_MIN: u32 = 10;
/// One day, Beacon's upper bound.
pub const TTL_SECONDS_MAX: u32 = 86_400;
pub const HEALTH_CHECK_URL_CHARS_MAX: usize = 500;
/// Beacon's floor is 30 s; muster's is one second, as Consul's, so a failing service can be
/// noticed within seconds. Results reach the log in batches, so short intervals stay cheap.
pub const HEALTH_CHECK_INTERVAL_MIN: u32 = 1;
pub const HEALTH_CHECK_INTERVAL_MAX: u32 = 3_600;
pub const HEALTH_CHECK_TIMEOUT_MIN: u32 = 1;
pub const HEALTH_CHECK_TIMEOUT_MAX: u32 = 60;
/// Consecutive results before a status changes.
pub const HEALTH_THRESHOLD_MIN: u32 = 1;
pub const HEALTH_THRESHOLD_MAX: u32 = 20;
/// A check's error as the log keeps it.
pub const CHECK_ERROR_CHARS_MAX: usize = 300;
/// Check results in one `HealthChecked` command.
pub const CHECK_RESULTS_MAX: usize = 4_096;
/// A DNS label; the service part of `_name._tcp`.
pub const MDNS_NAME_CHARS_MAX: usize = 63;
pub const TXT_RECORDS_MAX: usize = 64;
pub const TXT_KEY_CHARS_MAX: usize = 100;
/// One DNS TXT string holds at most 255 bytes of `key=value`.
pub const TXT_RECORD_BYTES_MAX: usize = 255;
pub const DESCRIPTION_CHARS_MAX: usize = 500;
pub const VERSION_CHARS_MAX: usize = 50;
/// A lease extension longer than the longest TTL is a bug in the caller.
pub const EXTEND_BY_MS_MAX: u64 = TTL_SECONDS_MAX as u64 * 1_000;
pub const LIST_LIMIT_MIN: usize = 1;
pub const LIST_LIMIT_MAX: usize = 100;
pub const LIST_LIMIT_DEFAULT: usize = 50;

/// Values longer than this are shortened when echoed back in a message.
const ECHO_CHARS_MAX: usize = 40;

/// Checks a registration; every violated rule is reported.
pub fn new_service(new: &NewService) -> Result<(), RegistryError> {
    let mut v = Vec::new();
    push(&mut v, id(new.id.as_str()));
    push(&mut v, chars("name", &new.name, 1, NAME_CHARS_MAX));
    push(&mut v, chars("type", &new.service_type, 1, TYPE_CHARS_MAX));
    push(&mut v, chars("host", &new.host, 1, HOST_CHARS_MAX));
    push(&mut v, port(new.port).map(drop));
    push(&mut v, chars("protocol", &new.protocol, 0, PROTOCOL_CHARS_MAX));
    tags(&mut v, &new.tags);
    metadata(&mut v, &new.metadata);
    push(&mut v, ttl_seconds(new.ttl_seconds));
    push(&mut v, health_check_url(new.health_check_url.as_deref()));
    push(&mut v, health_check_interval(new.health_check_interval));
    push(&mut v, health_check_timeout(new.health_check_timeout));
    push(&mut v, threshold("health_check_unhealthy_threshold", new.health_check_unhealthy_threshold));
    push(&mut v, threshold("health_check_healthy_threshold", new.health_check_healthy_threshold));
    push(&mut v, mdns_service_type(new.mdns_service_type.as_deref()));
    txt_records(&mut v, &new.mdns_txt_records);
    push(&mut v, optional_chars("description", new.description.as_deref(), DESCRIPTION_CHARS_MAX));
    push(&mut v, optional_chars("version", new.version.as_deref(), VERSION_CHARS_MAX));
    finish(v)
}

/// Checks the fields a patch sets; every violated rule is reported.
pub fn patch(p: &ServicePatch) -> Result<(), RegistryError> {
    let mut v = Vec::new();
    if let Some(name) = &p.name {
        push(&mut v, chars("name", name, 1, NAME_CHARS_MAX));
    }
    if let Some(service_type) = &p.service_type {
        push(&mut v, chars("type", service_type, 1, TYPE_CHARS_MAX));
    }
    if let Some(host) = &p.host {
        push(&mut v, chars("host", host, 1, HOST_CHARS_MAX));
    }
    if let Some(number) = p.port {
        push(&mut v, port(number).map(drop));
    }
    if let Some(protocol) = &p.protocol {
        push(&mut v, chars("protocol", protocol, 0, PROTOCOL_CHARS_MAX));
    }
    if let Some(list) = &p.tags {
        tags(&mut v, list);
    }
    if let Some(map) = &p.metadata {
        metadata(&mut v, map);
    }
    if let Some(ttl) = p.ttl_seconds {
        push(&mut v, ttl_seconds(ttl));
    }
    if let Some(status) = p.status {
        push(&mut v, settable_status(status));
    }
    if let Some(url) = &p.health_check_url {
        push(&mut v, health_check_url(url.as_deref()));
    }
    if let Some(interval) = p.health_check_interval {
        push(&mut v, health_check_interval(interval));
    }
    if let Some(timeout) = p.health_check_timeout {
        push(&mut v, health_check_timeout(timeout));
    }
    if let Some(n) = p.health_check_unhealthy_threshold {
        push(&mut v, threshold("health_check_unhealthy_threshold", n));
    }
    if let Some(n) = p.health_check_healthy_threshold {
        push(&mut v, threshold("health_check_healthy_threshold", n));
    }
    if let Some(mdns) = &p.mdns_service_type {
        push(&mut v, mdns_service_type(mdns.as_deref()));
    }
    if let Some(map) = &p.mdns_txt_records {
        txt_records(&mut v, map);
    }
    if let Some(text) = &p.description {
        push(&mut v, optional_chars("description", text.as_deref(), DESCRIPTION_CHARS_MAX));
    }
    if let Some(text) = &p.version {
        push(&mut v, optional_chars("version", text.as_deref(), VERSION_CHARS_MAX));
    }
    finish(v)
}

/// A port as stored; the error is the same message `new_service` and `patch` report.
pub fn port(port: u32) -> Result<u16, String> {
    match u16::try_from(port) {
        Ok(p) if port >= PORT_MIN => Ok(p),
        _ => Err(format!("port must be {PORT_MIN}–{PORT_MAX} (got {port})")),
    }
}

/// A lease length, from registration, a patch or a heartbeat's `?ttl=` override.
pub fn ttl_seconds(ttl: u32) -> Result<(), String> {
    if (TTL_SECONDS_MIN..=TTL_SECONDS_MAX).contains(&ttl) {
        return Ok(());
    }
    Err(format!("ttl must be {TTL_SECONDS_MIN}–{TTL_SECONDS_MAX} seconds (got {ttl})"))
}

/// How far a new leader may push every lease.
pub fn extend_by_ms(by_ms: u64) -> Result<(), String> {
    if (1..=EXTEND_BY_MS_MAX).contains(&by_ms) {
        return Ok(());
    }
    Err(format!("by_ms must be 1–{EXTEND_BY_MS_MAX} milliseconds (got {by_ms})"))
}

/// A list page size.
pub fn list_limit(limit: usize) -> Result<(), String> {
    if (LIST_LIMIT_MIN..=LIST_LIMIT_MAX).contains(&limit) {
        return Ok(());
    }
    Err(format!("limit must be {LIST_LIMIT_MIN}–{LIST_LIMIT_MAX} (got {limit})"))
}

/// Tags without duplicates, in the order first given. The tag count bound applies after this.
pub fn dedup_tags(tags: &[String]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    tags.iter().filter(|tag| seen.insert(tag.as_str())).cloned().collect()
}

fn push(violations: &mut Vec<String>, result: Result<(), String>) {
    if let Err(message) = result {
        violations.push(message);
    }
}

fn finish(violations: Vec<String>) -> Result<(), RegistryError> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(RegistryError::InvalidService { violations })
    }
}

fn chars(field: &str, value: &str, min: usize, max: usize) -> Result<(), String> {
    let count = value.chars().count();
    if (min..=max).contains(&count) {
        return Ok(());
    }
    if min == 0 {
        Err(format!("{field} must be at most {max} characters (got {count})"))
    } else {
        Err(format!("{field} must be {min}–{max} characters (got {count})"))
    }
}

fn optional_chars(field: &str, value: Option<&str>, max: usize) -> Result<(), String> {
    value.map_or(Ok(()), |text| chars(field, text, 0, max))
}

/// `"value"`, shortened to [`ECHO_CHARS_MAX`] characters.
fn echo(value: &str) -> String {
    if value.chars().count() <= ECHO_CHARS_MAX {
        return format!("{value:?}");
    }
    let head: String = value.chars().take(ECHO_CHARS_MAX).collect();
    format!("{head:?}…")
}

fn id(id: &str) -> Result<(), String> {
    chars("service_id", id, 1, ID_CHARS_MAX)?;
    let url_safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if id.chars().all(url_safe) {
        return Ok(());
    }
    Err(format!("service_id may contain only ASCII letters, digits, '-', '_' and '.' (got {})", echo(id)))
}

fn tags(violations: &mut Vec<String>, tags: &[String]) {
    let unique = dedup_tags(tags);
    if unique.len() > TAGS_MAX {
        violations.push(format!(
            "tags must have at most {TAGS_MAX} entries after removing duplicates (got {})",
            unique.len()
        ));
    }
    for tag in &unique {
        push(violations, chars("tag", tag, 1, TAG_CHARS_MAX).map_err(|m| format!("{m} in {}", echo(tag))));
    }
}

fn metadata(violations: &mut Vec<String>, map: &BTreeMap<String, String>) {
    if map.len() > METADATA_ENTRIES_MAX {
        violations
            .push(format!("metadata must have at most {METADATA_ENTRIES_MAX} entries (got {})", map.len()));
    }
    for (key, value) in map {
        push(violations, chars("metadata key", key, 1, METADATA_KEY_CHARS_MAX));
        let field = format!("metadata value for {}", echo(key));
        push(violations, chars(&field, value, 0, METADATA_VALUE_CHARS_MAX));
    }
}

fn health_check_url(url: Option<&str>) -> Result<(), String> {
    let Some(url) = url else { return Ok(()) };
    chars("health_check_url", url, 0, HEALTH_CHECK_URL_CHARS_MAX)?;
    let clean = !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if clean && check_target(url).is_some() {
        return Ok(());
    }
    Err(format!(
        "health_check_url must be an http:// or https:// URL with a host, or tcp://HOST:PORT (got {})",
        echo(url)
    ))
}

/// What a health check URL asks for: an HTTP(S) request, or a TCP connect to `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckTarget {
    /// `GET` this URL; 2xx passes.
    Http { tls: bool, host: String, port: u16, path: String },
    /// Connecting passes.
    Tcp { host: String, port: u16 },
}

/// Parses a health check URL (`http://`, `https://` or `tcp://HOST:PORT`; IPv6 hosts in
/// brackets); `None` when it is not one. The scheme is case-insensitive; the path is kept as
/// given (`/` when empty).
pub fn check_target(url: &str) -> Option<CheckTarget> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.contains('@') || authority.is_empty() {
        return None;
    }
    let (host, port) = split_host_port(authority)?;
    if host.is_empty() {
        return None;
    }
    let path =
        if path.is_empty() || path.starts_with(['?', '#']) { format!("/{path}") } else { path.to_string() };
    let path = path.split('#').next().unwrap_or("/").to_string();
    match scheme.as_str() {
        "http" => Some(CheckTarget::Http { tls: false, host, port: port.unwrap_or(80), path }),
        "https" => Some(CheckTarget::Http { tls: true, host, port: port.unwrap_or(443), path }),
        "tcp" if path == "/" => Some(CheckTarget::Tcp { host, port: port? }),
        _ => None,
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `None` for a malformed or zero port.
fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            Some(_) => return None,
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0)?),
    };
    Some((host.to_string(), port))
}

fn health_check_interval(interval: u32) -> Result<(), String> {
    if (HEALTH_CHECK_INTERVAL_MIN..=HEALTH_CHECK_INTERVAL_MAX).contains(&interval) {
        return Ok(());
    }
    Err(format!(
        "health_check_interval must be {HEALTH_CHECK_INTERVAL_MIN}–{HEALTH_CHECK_INTERVAL_MAX} seconds (got {interval})"
    ))
}

fn health_check_timeout(timeout: u32) -> Result<(), String> {
    if (HEALTH_CHECK_TIMEOUT_MIN..=HEALTH_CHECK_TIMEOUT_MAX).contains(&timeout) {
        return Ok(());
    }
    Err(format!(
        "health_check_timeout must be {HEALTH_CHECK_TIMEOUT_MIN}–{HEALTH_CHECK_TIMEOUT_MAX} seconds (got {timeout})"
    ))
}

fn threshold(field: &str, n: u32) -> Result<(), String> {
    if (HEALTH_THRESHOLD_MIN..=HEALTH_THRESHOLD_MAX).contains(&n) {
        return Ok(());
    }
    Err(format!("{field} must be {HEALTH_THRESHOLD_MIN}–{HEALTH_THRESHOLD_MAX} checks in a row (got {n})"))
}

/// A batch of check results, as the leader proposes it.
pub fn check_results(results: &[super::command::CheckResult]) -> Result<(), String> {
    if results.len() > CHECK_RESULTS_MAX {
        return Err(format!("at most {CHECK_RESULTS_MAX} check results per batch (got {})", results.len()));
    }
    for r in results {
        if let Some(error) = &r.error {
            chars("check error", error, 0, CHECK_ERROR_CHARS_MAX)?;
        }
        if r.ok == r.error.is_some() {
            return Err(format!("check result for {} must carry an error exactly when it failed", r.id));
        }
    }
    Ok(())
}

/// `_name._tcp` or `_name._udp` (DNS-SD), `name` one DNS label of letters, digits, '-' or '_'.
fn mdns_service_type(value: Option<&str>) -> Result<(), String> {
    let Some(value) = value else { return Ok(()) };
    let name =
        value.strip_prefix('_').and_then(|v| v.strip_suffix("._tcp").or_else(|| v.strip_suffix("._udp")));
    let label_ok = |name: &str| {
        (1..=MDNS_NAME_CHARS_MAX).contains(&name.len())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    };
    if name.is_some_and(label_ok) {
        return Ok(());
    }
    Err(format!(
        "mdns_service_type must look like _name._tcp or _name._udp with a name of 1–{MDNS_NAME_CHARS_MAX} \
         letters, digits, '-' or '_' (got {})",
        echo(value)
    ))
}

fn txt_records(violations: &mut Vec<String>, map: &BTreeMap<String, String>) {
    if map.len() > TXT_RECORDS_MAX {
        violations.push(format!(
            "mdns_txt_records must have at most {TXT_RECORDS_MAX} entries (got {})",
            map.len()
        ));
    }
    for (key, value) in map {
        if chars("", key, 1, TXT_KEY_CHARS_MAX).is_err() || key.contains('=') {
            violations.push(format!(
                "mdns_txt_records key must be 1–{TXT_KEY_CHARS_MAX} characters without '=' (got {})",
                echo(key)
            ));
        }
        let bytes = key.len() + 1 + value.len();
        if bytes > TXT_RECORD_BYTES_MAX {
            violations.push(format!(
                "mdns_txt_records entry {} must fit in {TXT_RECORD_BYTES_MAX} bytes as key=value (got {bytes})",
                echo(key)
            ));
        }
    }
}

fn settable_status(status: Status) -> Result<(), String> {
    match status {
        Status::Active | Status::Inactive => Ok(()),
        Status::Expired | Status::Unhealthy => Err(format!(
            "status can be set to active or inactive only (got {status}); \
             leases and health checks decide expired and unhealthy"
        )),
    }
}
