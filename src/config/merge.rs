//! Merging the sources into a [`Config`]: for each setting the flag wins, else the first
//! non-empty environment variable of the settings table, else the config file, else the
//! default. Lists and tags are replaced whole by the winning source, never appended.
//!
//! The environment arrives as a lookup closure so that tests need not touch the process
//! environment.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::args::{flag_of, setting, AgentArgs};
use super::file::{FileConfig, FileValue};
use super::values::{
    parse_bool, parse_choice, parse_duration_ms, parse_level, parse_socket_addr, parse_tag, split_addrs,
    split_tags,
};
use super::{defaults, Config, ConfigError, DiscoveryBackend, LogCaller, LogFormat, LogTime, Profile, Role};

/// A value and where it came from, for messages.
struct Found {
    key: &'static str,
    value: String,
    /// "" for a flag, " (ENV)" or " (config file PATH)".
    origin: String,
}

impl Found {
    fn parse<T>(&self, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<T, ConfigError> {
        parse(&self.value).map_err(|expected| self.invalid(&self.value, expected))
    }

    fn invalid(&self, value: &str, expected: String) -> ConfigError {
        ConfigError::InvalidValue {
            flag: flag_of(self.key),
            origin: self.origin.clone(),
            value: value.to_string(),
            expected,
        }
    }
}

/// A list and where it came from.
struct FoundList {
    found: Found,
    items: Vec<String>,
}

struct Sources<'a, E> {
    env: &'a E,
    file: Option<&'a FileConfig>,
}

impl<E: Fn(&str) -> Option<String>> Sources<'_, E> {
    /// The first environment variable for `key` that is set and not blank.
    fn env(&self, key: &'static str) -> Option<Found> {
        setting(key).env.iter().find_map(|name| {
            (self.env)(name).filter(|v| !v.trim().is_empty()).map(|value| Found {
                key,
                value,
                origin: format!(" ({name})"),
            })
        })
    }

    fn file_origin(&self) -> String {
        self.file.map(|f| format!(" (config file {})", f.path().display())).unwrap_or_default()
    }

    fn scalar(&self, key: &'static str, flag: Option<&str>) -> Option<Found> {
        if let Some(value) = flag {
            return Some(Found { key, value: value.to_string(), origin: String::new() });
        }
        if let Some(found) = self.env(key) {
            return Some(found);
        }
        match self.file?.get(key)? {
            FileValue::Scalar(value) => Some(Found { key, value: value.clone(), origin: self.file_origin() }),
            FileValue::List(_) => None,
        }
    }

    /// A list setting; `flag_items` are already split, env and file strings are split with
    /// `split`.
    fn list(
        &self,
        key: &'static str,
        flag_items: Vec<String>,
        split: fn(&str) -> Vec<String>,
    ) -> Option<FoundList> {
        let found = |value: String, origin: String| Found { key, value, origin };
        if !flag_items.is_empty() {
            let value = flag_items.join(",");
            return Some(FoundList { found: found(value, String::new()), items: flag_items });
        }
        if let Some(env) = self.env(key) {
            let items = split(&env.value);
            return Some(FoundList { found: env, items });
        }
        let (value, items) = match self.file?.get(key)? {
            FileValue::Scalar(s) => (s.clone(), split(s)),
            FileValue::List(items) => {
                let items: Vec<String> =
                    items.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
                (items.join(","), items)
            }
        };
        Some(FoundList { found: found(value, self.file_origin()), items })
    }

    /// A path setting: the flag as given, else env or file text.
    fn path(&self, key: &'static str, flag: Option<&PathBuf>) -> Option<PathBuf> {
        flag.cloned().or_else(|| self.scalar(key, None).map(|f| PathBuf::from(f.value)))
    }
}

fn addrs(s: &str) -> Vec<String> {
    split_addrs(s).collect()
}

fn handler_items(s: &str) -> Vec<String> {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

fn tag_items(s: &str) -> Vec<String> {
    split_tags(s).collect()
}

/// The config file to read: `--config-file`, else `MUSTER_CONFIG_FILE`.
pub(crate) fn config_file_path(args: &AgentArgs, env: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let sources = Sources { env, file: None };
    sources.path("config_file", args.config_file.as_ref())
}

/// Merges flag > env > file > default into a [`Config`]. Values are parsed here (bad ones are
/// errors naming the flag and the source); rules across values are checked by
/// [`Config::validate`], which this does not call.
pub fn merge(
    args: &AgentArgs,
    env: &impl Fn(&str) -> Option<String>,
    file: Option<&FileConfig>,
) -> Result<Config, ConfigError> {
    let src = Sources { env, file };
    let mut c = Config::default();

    if let Some(f) = src.scalar("node", args.node.as_deref()) {
        c.node = f.value.trim().to_string();
    }
    if let Some(f) = src.scalar("bind", args.bind.as_deref()) {
        c.bind = f.parse(|v| parse_socket_addr(v, defaults::GOSSIP_PORT))?;
    }
    if let Some(f) = src.scalar("advertise", args.advertise.as_deref()) {
        let bind_port = c.bind.port();
        c.advertise = Some(f.parse(|v| parse_socket_addr(v, bind_port))?);
    }
    let flag_addrs = |items: &[String]| items.iter().flat_map(|s| addrs(s)).collect();
    if let Some(l) = src.list("join", flag_addrs(&args.join), addrs) {
        c.join = l.items;
    }
    if let Some(l) = src.list("retry_join", flag_addrs(&args.retry_join), addrs) {
        c.retry_join = l.items;
    }
    if let Some(f) = src.scalar("retry_interval", args.retry_interval.as_deref()) {
        c.retry_interval_ms = f.parse(parse_duration_ms)?;
    }
    if let Some(f) = src.scalar("retry_interval_max", args.retry_interval_max.as_deref()) {
        c.retry_interval_max_ms = f.parse(parse_duration_ms)?;
    }
    if let Some(f) = src.scalar("retry_max", args.retry_max.as_deref()) {
        c.retry_max = f.parse(|v| {
            v.trim().parse().map_err(|_| "expected a whole number from 0 (forever) to 4294967295".into())
        })?;
    }
    if let Some(l) = src.list("tag", args.tag.clone(), tag_items) {
        c.tags = tags(&l)?;
    }
    if let Some(f) = src.scalar("encrypt", args.encrypt.as_deref()) {
        c.encrypt_key = Some(f.value.trim().to_string());
    }
    c.keyring_file = src.path("keyring_file", args.keyring_file.as_ref());
    if let Some(f) = src.scalar("insecure_gossip", args.insecure_gossip.as_deref()) {
        c.insecure_gossip = f.parse(parse_bool)?;
    }
    if let Some(p) = src.path("data_dir", args.data_dir.as_ref()) {
        c.data_dir = p;
    }
    if let Some(f) = src.scalar("http_addr", args.http_addr.as_deref()) {
        c.http_addr = f.parse(|v| parse_socket_addr(v, defaults::HTTP_PORT))?;
    }
    if let Some(f) = src.scalar("rpc_addr", args.rpc_addr.as_deref()) {
        c.rpc_addr = f.parse(|v| parse_socket_addr(v, defaults::RPC_PORT))?;
    }
    c.stack_file = src.path("stack_file", args.stack_file.as_ref());
    if let Some(p) = src.path("docker_socket", args.docker_socket.as_ref()) {
        c.docker_socket = p;
    }
    if let Some(f) = src.scalar("stack_stop_timeout", args.stack_stop_timeout.as_deref()) {
        c.stack_stop_timeout_ms = f.parse(parse_duration_ms)?;
    }
    c.hooks.on_promote = src.path("on_promote", args.on_promote.as_ref());
    c.hooks.on_demote = src.path("on_demote", args.on_demote.as_ref());
    c.hooks.on_server_change = src.path("on_server_change", args.on_server_change.as_ref());
    // Filters hold commas, so the environment separates handlers with newlines.
    if let Some(l) = src.list("event_handler", args.event_handler.clone(), handler_items) {
        for item in &l.items {
            crate::event_handlers::HandlerSpec::parse(item).map_err(|e| l.found.invalid(item, e))?;
        }
        c.event_handlers = l.items;
    }
    if let Some(f) = src.scalar("rpc_auth", args.rpc_auth.as_deref()) {
        c.rpc_auth = Some(f.value.to_string());
    }
    let tls = [
        ("tls_cert", src.path("tls_cert", args.tls_cert.as_ref())),
        ("tls_key", src.path("tls_key", args.tls_key.as_ref())),
        ("tls_ca", src.path("tls_ca", args.tls_ca.as_ref())),
    ];
    c.tls = match tls {
        [(_, Some(cert)), (_, Some(key)), (_, Some(ca))] => Some(crate::config::TlsFiles { cert, key, ca }),
        [(_, None), (_, None), (_, None)] => None,
        _ => {
            let missing: Vec<String> =
                tls.iter().filter(|(_, p)| p.is_none()).map(|(k, _)| setting(k).label()).collect();
            let given = tls.iter().find(|(_, p)| p.is_some()).map_or("", |(k, _)| k);
            return Err(ConfigError::Invalid {
                setting: setting(given).label(),
                reason: format!(
                    "--tls-cert, --tls-key and --tls-ca go together; missing {}",
                    missing.join(" and ")
                ),
            });
        }
    };
    if let Some(f) = src.scalar("verify_incoming", args.verify_incoming.as_deref()) {
        c.verify_incoming = f.parse(parse_bool)?;
    }
    c.tokens_file = src.path("tokens_file", args.tokens_file.as_ref());
    if let Some(f) = src.scalar("role", args.role.as_deref()) {
        c.role = f.parse(|v| parse_choice(v, Role::parse, Role::CHOICES))?;
    }
    if let Some(f) = src.scalar("discovery", args.discovery.as_deref()) {
        c.discovery = f.parse(|v| parse_choice(v, DiscoveryBackend::parse, DiscoveryBackend::CHOICES))?;
    }
    if let Some(f) = src.scalar("mdns_announce", args.mdns_announce.as_deref()) {
        c.mdns_announce = f.parse(parse_bool)?;
    }
    if let Some(f) = src.scalar("cluster", args.cluster.as_deref()) {
        c.cluster = f.value.trim().to_string();
    }
    if let Some(f) = src.scalar("profile", args.profile.as_deref()) {
        c.profile = f.parse(|v| parse_choice(v, Profile::parse, Profile::CHOICES))?;
    }
    if let Some(f) = src.scalar("voter_grace", args.voter_grace.as_deref()) {
        c.voter_grace_ms = f.parse(parse_duration_ms)?;
    }
    if let Some(f) = src.scalar("history_max", args.history_max.as_deref()) {
        c.history_max = f.parse(|v| {
            v.trim().parse().map_err(|_| {
                format!(
                    "expected a whole number of events from {} to {}",
                    defaults::HISTORY_MAX_LOWEST,
                    defaults::HISTORY_MAX_HIGHEST
                )
            })
        })?;
    }
    merge_limits(&src, args, &mut c)?;
    merge_log(&src, args, &mut c)?;
    c.config_file = src.path("config_file", args.config_file.as_ref());
    Ok(c)
}

/// A parser of whole numbers whose error says what the number counts.
fn whole<T: std::str::FromStr>(what: &'static str) -> impl Fn(&str) -> Result<T, String> {
    move |v: &str| v.trim().parse().map_err(|_| format!("expected a whole number of {what}"))
}

/// The API listener's per-client limits; `--write-burst` defaults to twice the effective
/// `--write-rate`, wherever that came from.
fn merge_limits<E: Fn(&str) -> Option<String>>(
    src: &Sources<'_, E>,
    args: &AgentArgs,
    c: &mut Config,
) -> Result<(), ConfigError> {
    if let Some(f) = src.scalar("api_streams_max", args.api_streams_max.as_deref()) {
        c.api_streams_max = f.parse(whole("streams"))?;
    }
    if let Some(f) = src.scalar("api_streams_per_client_max", args.api_streams_per_client_max.as_deref()) {
        c.api_streams_per_client_max = f.parse(whole("streams"))?;
    }
    if let Some(f) = src.scalar("write_rate", args.write_rate.as_deref()) {
        c.write_rate_per_s = f.parse(whole("writes a second (0 = unlimited)"))?;
    }
    c.write_burst = match src.scalar("write_burst", args.write_burst.as_deref()) {
        Some(f) => f.parse(whole("writes"))?,
        None => c.write_rate_per_s.saturating_mul(2),
    };
    Ok(())
}

fn merge_log<E: Fn(&str) -> Option<String>>(
    src: &Sources<'_, E>,
    args: &AgentArgs,
    c: &mut Config,
) -> Result<(), ConfigError> {
    if let Some(f) = src.scalar("log_level", args.log_level.as_deref()) {
        c.log.level = f.parse(parse_level)?;
    }
    if let Some(f) = src.scalar("log_format", args.log_format.as_deref()) {
        c.log.format = f.parse(|v| parse_choice(v, LogFormat::parse, LogFormat::CHOICES))?;
    }
    if let Some(f) = src.scalar("log_caller", args.log_caller.as_deref()) {
        c.log.caller = f.parse(|v| parse_choice(v, LogCaller::parse, LogCaller::CHOICES))?;
    }
    if let Some(f) = src.scalar("log_time", args.log_time.as_deref()) {
        c.log.time = f.parse(|v| parse_choice(v, LogTime::parse, LogTime::CHOICES))?;
    }
    if let Some(f) = src.scalar("log_no_color", args.log_no_color.as_deref()) {
        c.log.no_color = f.parse(parse_bool)?;
    }
    if let Some(f) = src.scalar("rejoin_after_leave", args.rejoin_after_leave.as_deref()) {
        c.rejoin_after_leave = f.parse(parse_bool)?;
    }
    if let Some(f) = src.scalar("allow_crash_drill", args.allow_crash_drill.as_deref()) {
        c.allow_crash_drill = f.parse(parse_bool)?;
    }
    Ok(())
}

/// Parses every `k=v` item of the winning source; a key given twice is an error.
fn tags(list: &FoundList) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut tags = BTreeMap::new();
    for item in &list.items {
        let (key, value) = parse_tag(item).map_err(|e| list.found.invalid(item, e))?;
        if tags.contains_key(&key) {
            let reason = format!("tag '{key}' is given twice");
            return Err(list.found.invalid(item, reason));
        }
        tags.insert(key, value);
    }
    Ok(tags)
}
