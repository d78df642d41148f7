//! The rules a merged [`Config`] must satisfy, checked once by [`Config::validate`]: names,
//! join targets, tag size, the encryption key, retry bounds and port clashes. Syntactic only:
//! nothing here resolves names or touches the file system.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};

use base64::Engine as _;

use super::args::setting;
use super::values::format_duration_ms;
use super::{defaults, Config, ConfigError};

/// Serf's default limit on node names (`ValidateNodeNames`).
const NODE_NAME_MAX_BYTES: usize = 128;
/// A DNS label is at most 63 bytes and the mDNS label is `_serf_<cluster>`.
const CLUSTER_NAME_MAX_BYTES: usize = 63 - "_serf_".len();

fn invalid(key: &'static str) -> impl Fn(String) -> ConfigError {
    move |reason| ConfigError::Invalid { setting: setting(key).label(), reason }
}

impl Config {
    /// Checks every rule; the first broken one is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_node(&self.node).map_err(invalid("node"))?;
        if let Some(advertise) = self.advertise {
            if advertise.ip().is_unspecified() || advertise.port() == 0 {
                return Err(invalid("advertise")(format!(
                    "{advertise} cannot be reached; advertise an address of this host with a port"
                )));
            }
        }
        for target in &self.join {
            parse_join_target(target).map_err(invalid("join"))?;
        }
        for target in &self.retry_join {
            parse_join_target(target).map_err(invalid("retry_join"))?;
        }
        if !(1_000..=300_000).contains(&self.stack_stop_timeout_ms) || self.stack_stop_timeout_ms % 1_000 != 0
        {
            return Err(invalid("stack_stop_timeout")(format!(
                "{} is outside 1s..300s or not whole seconds (docker stops in whole seconds)",
                format_duration_ms(self.stack_stop_timeout_ms)
            )));
        }
        if self.voter_grace_ms < 1_000 {
            return Err(invalid("voter_grace")(
                "must be at least 1s (a shorter grace replaces voters on a gossip hiccup)".into(),
            ));
        }
        let history_range = defaults::HISTORY_MAX_LOWEST..=defaults::HISTORY_MAX_HIGHEST;
        if !history_range.contains(&self.history_max) {
            return Err(invalid("history_max")(format!(
                "must be {} to {} events (got {}): fewer makes almost every watch resume \
                 compacted, more holds too many service records in memory",
                history_range.start(),
                history_range.end(),
                self.history_max
            )));
        }
        self.validate_limits()?;
        if self.retry_interval_ms == 0 {
            return Err(invalid("retry_interval")("must be at least 1ms".into()));
        }
        if self.retry_interval_max_ms < self.retry_interval_ms {
            return Err(invalid("retry_interval_max")(format!(
                "{}ms is below --retry-interval ({}ms)",
                self.retry_interval_max_ms, self.retry_interval_ms
            )));
        }
        check_tags(&self.tags).map_err(invalid("tag"))?;
        if let Some(key) = &self.encrypt_key {
            check_key(key).map_err(invalid("encrypt"))?;
        }
        if self.keyring_file.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(invalid("keyring_file")("the path is empty".into()));
        }
        if self.verify_incoming && self.tls.is_none() {
            return Err(invalid("verify_incoming")(
                "checks client certificates, so it needs TLS: give --tls-cert, --tls-key and --tls-ca".into(),
            ));
        }
        let tls = self.tls.as_ref();
        let files = [
            ("tls_cert", tls.map(|t| &t.cert)),
            ("tls_key", tls.map(|t| &t.key)),
            ("tls_ca", tls.map(|t| &t.ca)),
            ("tokens_file", self.tokens_file.as_ref()),
        ];
        for (key, path) in files {
            if path.is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(invalid(key)("the path is empty".into()));
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir")("the path is empty".into()));
        }
        let paths = [
            ("stack_file", self.stack_file.as_ref()),
            ("docker_socket", Some(&self.docker_socket)),
            ("on_promote", self.hooks.on_promote.as_ref()),
            ("on_demote", self.hooks.on_demote.as_ref()),
            ("on_server_change", self.hooks.on_server_change.as_ref()),
        ];
        for (key, path) in paths {
            if path.is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(invalid(key)("the path is empty".into()));
            }
        }
        check_cluster(&self.cluster).map_err(invalid("cluster"))?;
        let (gossip, http) = (self.bind, self.http_addr);
        let same_ip = gossip.ip() == http.ip() || gossip.ip().is_unspecified() || http.ip().is_unspecified();
        if gossip.port() != 0 && gossip.port() == http.port() && same_ip {
            return Err(invalid("http_addr")(format!(
                "{http} uses the TCP port of --bind ({gossip}); pick another port"
            )));
        }
        Ok(())
    }
}

impl Config {
    /// The API listener's stream and write-rate settings.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        let streams = 1..=defaults::API_STREAMS_HIGHEST;
        for (key, n) in [
            ("api_streams_max", self.api_streams_max),
            ("api_streams_per_client_max", self.api_streams_per_client_max),
        ] {
            if !streams.contains(&n) {
                return Err(invalid(key)(format!(
                    "must be {} to {} streams (got {n})",
                    streams.start(),
                    streams.end()
                )));
            }
        }
        if self.api_streams_per_client_max > self.api_streams_max {
            return Err(invalid("api_streams_per_client_max")(format!(
                "{} is above --api-streams-max ({}); one client cannot hold more than the node serves",
                self.api_streams_per_client_max, self.api_streams_max
            )));
        }
        let highest = defaults::WRITE_RATE_HIGHEST;
        if self.write_rate_per_s > highest {
            return Err(invalid("write_rate")(format!(
                "must be 0 (unlimited) to {highest} writes a second (got {})",
                self.write_rate_per_s
            )));
        }
        if self.write_rate_per_s > 0 && !(1..=highest.saturating_mul(2)).contains(&self.write_burst) {
            return Err(invalid("write_burst")(format!(
                "must be 1 to {} writes (got {}); a burst of 0 would refuse every write",
                highest.saturating_mul(2),
                self.write_burst
            )));
        }
        Ok(())
    }
}

fn check_node(node: &str) -> Result<(), String> {
    if node.is_empty() {
        return Err("the node name is empty".into());
    }
    if node.len() > NODE_NAME_MAX_BYTES {
        return Err(format!(
            "the node name has {} bytes; at most {NODE_NAME_MAX_BYTES} are allowed",
            node.len()
        ));
    }
    if node.chars().any(char::is_control) {
        return Err("the node name contains control characters".into());
    }
    Ok(())
}

fn check_cluster(cluster: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if cluster.is_empty() || !cluster.chars().all(allowed) {
        return Err(format!(
            "'{cluster}' must be 1 to {CLUSTER_NAME_MAX_BYTES} of A-Z a-z 0-9 _ - \
             (it becomes the mDNS name _serf_<cluster>._tcp.local)"
        ));
    }
    if cluster.len() > CLUSTER_NAME_MAX_BYTES {
        return Err(format!(
            "'{cluster}' has {} bytes; at most {CLUSTER_NAME_MAX_BYTES} fit in an mDNS label",
            cluster.len()
        ));
    }
    Ok(())
}

/// Serf's key: standard base64 of 16, 24 or 32 bytes. The message never contains the key.
fn check_key(key: &str) -> Result<(), String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(key).map_err(|_| {
        "the key is not valid base64 (standard alphabet, padded); \
             make one with `muster keygen`"
            .to_string()
    })?;
    match bytes.len() {
        16 | 24 | 32 => Ok(()),
        n => Err(format!(
            "the key decodes to {n} bytes; Serf keys are 16, 24 or 32 bytes \
             (AES-128/192/256); make one with `muster keygen`"
        )),
    }
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), String> {
    if tags.keys().any(|k| k.trim().is_empty()) {
        return Err("a tag has an empty key".into());
    }
    let len = encoded_tags_len(tags);
    if len > defaults::TAGS_ENCODED_MAX_BYTES {
        return Err(format!(
            "the tags encode to {len} bytes; Serf allows at most {}",
            defaults::TAGS_ENCODED_MAX_BYTES
        ));
    }
    Ok(())
}

/// Bytes of Serf's tag encoding: a magic byte, then a msgpack map of raw strings as Serf's
/// go-msgpack writes them (fixraw, raw16, raw32; no str8).
fn encoded_tags_len(tags: &BTreeMap<String, String>) -> usize {
    let raw = |s: &str| {
        s.len()
            + match s.len() {
                0..=31 => 1,
                32..=65_535 => 3,
                _ => 5,
            }
    };
    let map_header = match tags.len() {
        0..=15 => 1,
        16..=65_535 => 3,
        _ => 5,
    };
    1 + map_header + tags.iter().map(|(k, v)| raw(k) + raw(v)).sum::<usize>()
}

/// Splits a join target, `HOST`, `HOST:PORT`, `IPv6`, `[IPv6]` or `[IPv6]:PORT`, into the host
/// (IPv6 without brackets) and the port (default 7946). Syntactic only: names are not resolved.
pub fn split_join_target(target: &str) -> Result<(String, u16), ConfigError> {
    parse_join_target(target).map_err(invalid("join"))
}

fn parse_join_target(target: &str) -> Result<(String, u16), String> {
    let expected = || format!("'{target}' is not HOST or HOST:PORT (IPv6 as [ADDR]:PORT), e.g. node1:7946");
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(expected);
    let s = target.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or_else(expected)?;
        ip.parse::<Ipv6Addr>().map_err(|_| expected())?;
        let port = match after {
            "" => defaults::GOSSIP_PORT,
            after => port(after.strip_prefix(':').ok_or_else(expected)?)?,
        };
        return Ok((ip.to_string(), port));
    }
    if s.parse::<Ipv6Addr>().is_ok() {
        return Ok((s.to_string(), defaults::GOSSIP_PORT));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((host, p)) => (host, port(p)?),
        None => (s, defaults::GOSSIP_PORT),
    };
    if !valid_host(host) {
        return Err(expected());
    }
    Ok((host.to_string(), port))
}

/// An IP address or a DNS name (labels of A-Z a-z 0-9 - _, an optional final dot).
fn valid_host(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_targets_split_into_host_and_port() {
        // Proves every accepted join syntax, the default port, and rejection of junk.
        let ok = |s: &str, h: &str, p: u16| assert_eq!(split_join_target(s).unwrap(), (h.into(), p));
        ok("node1", "node1", 7946);
        ok("node1:8000", "node1", 8000);
        ok("10.0.0.1", "10.0.0.1", 7946);
        ok("10.0.0.1:1", "10.0.0.1", 1);
        ok("::1", "::1", 7946);
        ok("[::1]", "::1", 7946);
        ok("[fe80::1]:9", "fe80::1", 9);
        ok("a.example.com.", "a.example.com.", 7946);
        for bad in ["", ":7946", "h:", "h:0", "h:70000", "[::1", "[x]:1", "a b", "-a", "a..b"] {
            assert!(split_join_target(bad).is_err(), "{bad:?} accepted");
        }
        let msg = split_join_target("h:x").unwrap_err().to_string();
        assert!(msg.starts_with("invalid --join (MUSTER_JOIN, SERF_JOIN):"), "{msg}");
    }

    #[test]
    fn key_lengths_other_than_16_24_32_are_rejected_with_the_count() {
        // Proves the key rule, that the message counts bytes and names the flag, and that it
        // never repeats the key.
        let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
        for n in [16, 24, 32] {
            let c = Config { encrypt_key: Some(b64(n)), ..Config::default() };
            assert!(c.validate().is_ok(), "{n} bytes rejected");
        }
        for n in [0, 8, 20, 33] {
            let key = b64(n);
            let c = Config { encrypt_key: Some(key.clone()), ..Config::default() };
            let msg = c.validate().unwrap_err().to_string();
            assert!(msg.contains(&format!("decodes to {n} bytes")), "{msg}");
            assert!(msg.contains("--encrypt"), "{msg}");
            assert!(key.is_empty() || !msg.contains(&key), "{msg}");
        }
        let c = Config { encrypt_key: Some("not base64!".into()), ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().contains("not valid base64"));
    }

    #[test]
    fn tags_are_limited_to_serf_meta_size() {
        // Proves the 512-byte limit on encoded tags is enforced at the exact boundary.
        let mut tags = BTreeMap::new();
        // magic + map header + fixraw "k" + raw16 value: exactly 512 bytes.
        tags.insert("k".to_string(), "v".repeat(505));
        assert_eq!(encoded_tags_len(&tags), 1 + 1 + 2 + 3 + 505);
        assert!(check_tags(&tags).is_ok());
        tags.insert("k".to_string(), "v".repeat(506));
        assert!(check_tags(&tags).unwrap_err().contains("513 bytes"));
    }

    #[test]
    fn cluster_names_fit_an_mdns_label() {
        // Proves the cluster charset and length rules.
        assert!(check_cluster("muster_prod-1").is_ok());
        assert!(check_cluster("").is_err());
        assert!(check_cluster("a.b").is_err());
        assert!(check_cluster(&"a".repeat(57)).is_ok());
        assert!(check_cluster(&"a".repeat(58)).is_err());
    }

    #[test]
    fn default_config_is_valid_and_port_clash_is_not() {
        // Proves the defaults pass and that gossip and HTTP on one port are caught.
        assert!(Config::default().validate().is_ok());
        let c = Config { http_addr: "127.0.0.1:7946".parse().unwrap(), ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().contains("--http-addr"));
        let c = Config {
            bind: "127.0.0.1:0".parse().unwrap(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        assert!(c.validate().is_ok(), "port 0 (tests) must not clash");
        let c = Config { retry_interval_max_ms: 10, ..Config::default() };
        assert!(c.validate().is_err());
    }
}
