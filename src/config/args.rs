//! The `muster agent` flags and the settings table that ties each flag to its environment names
//! and config-file key. Flags stay strings here so that flag, env and file values are parsed
//! (and their errors worded) the same way in `merge`.

use std::path::PathBuf;

use super::{
    format_duration_ms, join_tags, Config, DiscoveryBackend, LogCaller, LogFormat, LogTime, Profile, Role,
};

/// `muster agent` flags. Every flag is optional so that "not given" falls through to the
/// environment, then the config file, then the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct AgentArgs {
    /// Member name, unique in the cluster.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Gossip listen address, UDP and TCP (a bare IP gets port 7946).
    #[arg(long, value_name = "IP[:PORT]")]
    pub bind: Option<String>,
    /// Address other members use to reach this one (a bare IP gets the bind port).
    #[arg(long, value_name = "IP[:PORT]")]
    pub advertise: Option<String>,
    /// Member to join at start (repeatable; commas also separate); port defaults to 7946.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub join: Vec<String>,
    /// Member to join at start, retried with backoff until one answers (repeatable).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub retry_join: Vec<String>,
    /// First join retry backoff, e.g. 500ms, 30s, 2m; doubles up to --retry-interval-max.
    #[arg(long, value_name = "DURATION")]
    pub retry_interval: Option<String>,
    /// Cap on the join retry backoff.
    #[arg(long, value_name = "DURATION")]
    pub retry_interval_max: Option<String>,
    /// Join attempts before giving up; 0 retries forever.
    #[arg(long, value_name = "N")]
    pub retry_max: Option<String>,
    /// Serf tag gossiped with this member (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub tag: Vec<String>,
    /// Serf gossip encryption key: base64 of 16, 24 or 32 bytes (see `muster keygen`).
    #[arg(long, value_name = "BASE64")]
    pub encrypt: Option<String>,
    /// Serf keyring file: a JSON list of base64 keys, the first one primary.
    #[arg(long, value_name = "PATH")]
    pub keyring_file: Option<PathBuf>,
    /// Let the lan and wan profiles gossip in clear text when no key is given (they refuse to
    /// start without one); the local profile always may.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub insecure_gossip: Option<String>,
    /// Directory for the node's state (created by the node).
    #[arg(long, value_name = "PATH")]
    pub data_dir: Option<PathBuf>,
    /// Listen address of the HTTP/gRPC API (/health, /discovery, /v1/members).
    #[arg(long, value_name = "IP[:PORT]")]
    pub http_addr: Option<String>,
    /// Listen address of Serf's RPC (what the `serf` CLI talks to); keep it on loopback.
    #[arg(long, value_name = "IP[:PORT]")]
    pub rpc_addr: Option<String>,
    /// Shared token Serf RPC clients must send (`serf -rpc-auth`).
    #[arg(long, value_name = "TOKEN")]
    pub rpc_auth: Option<String>,
    /// This node's certificate (PEM, `muster tls cert create --server`): the API port then
    /// speaks TLS only, and raft calls need a certificate of this cluster.
    #[arg(long, value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
    /// The cluster CA's certificate (PEM, `muster tls ca create`): peers and clients are
    /// checked against it.
    #[arg(long, value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,
    /// Every API client must show a certificate signed by --tls-ca (grpcurl -cert/-key,
    /// curl --cert/--key, the CLI's --client-cert/--client-key).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub verify_incoming: Option<String>,
    /// Tokens file: one `NAME SCOPE SECRET` per line (scope read, write or operator); with it,
    /// API and Serf RPC calls need `authorization: Bearer SECRET` of a sufficient scope.
    #[arg(long, value_name = "PATH")]
    pub tokens_file: Option<PathBuf>,
    /// Whether this node may become the server (server: preferred; agent: never).
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// Where join candidates come from (serf: --join/SERF_JOIN only).
    #[arg(long, value_name = "BACKEND")]
    pub discovery: Option<String>,
    /// Announce the registry's services on this node's subnets, and the API as _muster._tcp and
    /// _beacon._tcp, over mDNS/DNS-SD (Beacon's type table and TXT records).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub mdns_announce: Option<String>,
    /// Cluster name, [A-Za-z0-9_-]+; mDNS advertises _serf_<cluster>._tcp.local.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Gossip timing preset, after memberlist's LAN/WAN/Local configs.
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,
    /// How long a raft voter may be missing from gossip before the leader replaces it.
    #[arg(long, value_name = "DURATION")]
    pub voter_grace: Option<String>,
    /// Registry events kept for Watch/WebSocket resume; older start revisions get `compacted`.
    #[arg(long, value_name = "N")]
    pub history_max: Option<String>,
    /// Open gRPC Watch/KeepAlive and WebSocket streams this node serves at once.
    #[arg(long, value_name = "N")]
    pub api_streams_max: Option<String>,
    /// Open Watch/KeepAlive/WebSocket streams one client IP may hold at once.
    #[arg(long, value_name = "N")]
    pub api_streams_per_client_max: Option<String>,
    /// Registry writes a second one client IP may make through the API; 0 = unlimited.
    #[arg(long, value_name = "N")]
    pub write_rate: Option<String>,
    /// Writes one client may make at once before --write-rate applies.
    #[arg(long, value_name = "N")]
    pub write_burst: Option<String>,
    /// The compose file whose `server` and `proxy` profiles are the stacks this node runs.
    #[arg(long, value_name = "PATH")]
    pub stack_file: Option<PathBuf>,
    /// The Docker engine's unix socket (no engine there: stacks are disabled, hooks still run).
    #[arg(long, value_name = "PATH")]
    pub docker_socket: Option<PathBuf>,
    /// How long docker waits for a stack container to stop before it kills it; a new server
    /// waits this (plus a margin) before it starts its stack.
    #[arg(long, value_name = "DURATION")]
    pub stack_stop_timeout: Option<String>,
    /// Script run when this node becomes the server (after the lock delay).
    #[arg(long, value_name = "PATH")]
    pub on_promote: Option<PathBuf>,
    /// Script run when this node stops being the server (lease lapsed, leadership lost).
    #[arg(long, value_name = "PATH")]
    pub on_demote: Option<PathBuf>,
    /// Script run on every node when the server changes.
    #[arg(long, value_name = "PATH")]
    pub on_server_change: Option<PathBuf>,
    /// Serf event handler `[FILTER=]SCRIPT` (repeatable): FILTER is a comma list of
    /// member-join, member-leave, member-failed, member-update, member-reap, user[:NAME],
    /// query[:NAME] or *; the script runs under /bin/sh with Serf's environment.
    #[arg(long, value_name = "[FILTER=]SCRIPT")]
    pub event_handler: Vec<String>,
    /// Rejoin the members this node knew on start, even after a graceful leave (Serf: -rejoin).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub rejoin_after_leave: Option<String>,
    /// Let `muster drill failover --kill-leader` crash this node (for test clusters only).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub allow_crash_drill: Option<String>,
    /// Log level: trace, debug, info, warn or error.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log encoding (auto: text on a terminal, else json).
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Name the code that logged (short: file:line; full: module and file:line).
    #[arg(long, value_name = "CALLER")]
    pub log_caller: Option<String>,
    /// Log timestamps, in UTC.
    #[arg(long, value_name = "TIME")]
    pub log_time: Option<String>,
    /// No colours in text logs.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub log_no_color: Option<String>,
    /// JSON config file; keys are the flag names with '_' for '-'.
    #[arg(long, value_name = "PATH")]
    pub config_file: Option<PathBuf>,
}

/// One setting: its key (the `AgentArgs` field and clap id, and the config-file key) and the
/// environment variables read for it, in order (muster's own name first, then the seed's).
pub(crate) struct Setting {
    pub key: &'static str,
    pub env: &'static [&'static str],
}

impl Setting {
    /// `--retry-interval` for key `retry_interval`.
    pub fn flag(&self) -> String {
        flag_of(self.key)
    }

    /// `--role (MUSTER_ROLE, ROLE)`, for messages about the effective value.
    pub fn label(&self) -> String {
        format!("{} ({})", self.flag(), self.env.join(", "))
    }
}

pub(crate) fn flag_of(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// The settings table. Environment names derive from the flag (`MUSTER_<FLAG>`); the seed's
/// names (`SERF_JOIN`, `ROLE`, `DISCOVERY_BACKEND`, `LOG_*`, `SERF_ENCRYPT_KEY`) follow.
#[rustfmt::skip]
pub(crate) const SETTINGS: &[Setting] = &[
    Setting { key: "node", env: &["MUSTER_NODE"] },
    Setting { key: "bind", env: &["MUSTER_BIND"] },
    Setting { key: "advertise", env: &["MUSTER_ADVERTISE"] },
    Setting { key: "join", env: &["MUSTER_JOIN", "SERF_JOIN"] },
    Setting { key: "retry_join", env: &["MUSTER_RETRY_JOIN"] },
    Setting { key: "retry_interval", env: &["MUSTER_RETRY_INTERVAL"] },
    Setting { key: "retry_interval_max", env: &["MUSTER_RETRY_INTERVAL_MAX"] },
    Setting { key: "retry_max", env: &["MUSTER_RETRY_MAX"] },
    Setting { key: "tag", env: &["MUSTER_TAGS"] },
    Setting { key: "encrypt", env: &["MUSTER_ENCRYPT", "SERF_ENCRYPT_KEY"] },
    Setting { key: "keyring_file", env: &["MUSTER_KEYRING_FILE"] },
    Setting { key: "insecure_gossip", env: &["MUSTER_INSECURE_GOSSIP"] },
    Setting { key: "data_dir", env: &["MUSTER_DATA_DIR"] },
    Setting { key: "http_addr", env: &["MUSTER_HTTP_ADDR"] },
    Setting { key: "rpc_addr", env: &["MUSTER_RPC_ADDR"] },
    Setting { key: "rpc_auth", env: &["MUSTER_RPC_AUTH"] },
    Setting { key: "tls_cert", env: &["MUSTER_TLS_CERT"] },
    Setting { key: "tls_key", env: &["MUSTER_TLS_KEY"] },
    Setting { key: "tls_ca", env: &["MUSTER_TLS_CA"] },
    Setting { key: "verify_incoming", env: &["MUSTER_VERIFY_INCOMING"] },
    Setting { key: "tokens_file", env: &["MUSTER_TOKENS_FILE"] },
    Setting { key: "role", env: &["MUSTER_ROLE", "ROLE"] },
    Setting { key: "discovery", env: &["MUSTER_DISCOVERY", "DISCOVERY_BACKEND"] },
    Setting { key: "mdns_announce", env: &["MUSTER_MDNS_ANNOUNCE"] },
    Setting { key: "cluster", env: &["MUSTER_CLUSTER"] },
    Setting { key: "profile", env: &["MUSTER_PROFILE"] },
    Setting { key: "voter_grace", env: &["MUSTER_VOTER_GRACE"] },
    Setting { key: "history_max", env: &["MUSTER_HISTORY_MAX"] },
    Setting { key: "api_streams_max", env: &["MUSTER_API_STREAMS_MAX"] },
    Setting { key: "api_streams_per_client_max", env: &["MUSTER_API_STREAMS_PER_CLIENT_MAX"] },
    Setting { key: "write_rate", env: &["MUSTER_WRITE_RATE"] },
    Setting { key: "write_burst", env: &["MUSTER_WRITE_BURST"] },
    Setting { key: "stack_file", env: &["MUSTER_STACK_FILE"] },
    Setting { key: "docker_socket", env: &["MUSTER_DOCKER_SOCKET"] },
    Setting { key: "stack_stop_timeout", env: &["MUSTER_STACK_STOP_TIMEOUT"] },
    Setting { key: "on_promote", env: &["MUSTER_ON_PROMOTE"] },
    Setting { key: "event_handler", env: &["MUSTER_EVENT_HANDLERS"] },
    Setting { key: "on_demote", env: &["MUSTER_ON_DEMOTE"] },
    Setting { key: "on_server_change", env: &["MUSTER_ON_SERVER_CHANGE"] },
    Setting { key: "log_level", env: &["MUSTER_LOG_LEVEL", "LOG_LEVEL"] },
    Setting { key: "log_format", env: &["MUSTER_LOG_FORMAT", "LOG_FORMAT"] },
    Setting { key: "log_caller", env: &["MUSTER_LOG_CALLER", "LOG_CALLER"] },
    Setting { key: "log_time", env: &["MUSTER_LOG_TIME", "LOG_TIME"] },
    Setting { key: "log_no_color", env: &["MUSTER_LOG_NO_COLOR", "LOG_NO_COLOR"] },
    Setting { key: "allow_crash_drill", env: &["MUSTER_ALLOW_CRASH_DRILL"] },
    Setting { key: "rejoin_after_leave", env: &["MUSTER_REJOIN_AFTER_LEAVE"] },
    Setting { key: "config_file", env: &["MUSTER_CONFIG_FILE"] },
];

/// The table row for `key`. Every key used in this module is in the table; an unknown key
/// (a programming error) gets a row with no environment names.
pub(crate) fn setting(key: &'static str) -> &'static Setting {
    const NONE: Setting = Setting { key: "", env: &[] };
    SETTINGS.iter().find(|s| s.key == key).unwrap_or(&NONE)
}

/// The default of `key` as `--help` shows it, read from `Config::default()`.
fn default_text(key: &str, d: &Config) -> Option<String> {
    Some(match key {
        "node" => format!("this host's name, {}", d.node),
        "bind" => d.bind.to_string(),
        "advertise" => "the bind address".to_string(),
        "retry_interval" => format_duration_ms(d.retry_interval_ms),
        "retry_interval_max" => format_duration_ms(d.retry_interval_max_ms),
        "retry_max" => d.retry_max.to_string(),
        "tag" if !d.tags.is_empty() => join_tags(&d.tags),
        "insecure_gossip" => d.insecure_gossip.to_string(),
        "data_dir" => d.data_dir.display().to_string(),
        "http_addr" => d.http_addr.to_string(),
        "rpc_addr" => d.rpc_addr.to_string(),
        "role" => d.role.to_string(),
        "discovery" => d.discovery.to_string(),
        "mdns_announce" => d.mdns_announce.to_string(),
        "cluster" => d.cluster.clone(),
        "profile" => d.profile.to_string(),
        "voter_grace" => format_duration_ms(d.voter_grace_ms),
        "history_max" => d.history_max.to_string(),
        "api_streams_max" => d.api_streams_max.to_string(),
        "api_streams_per_client_max" => d.api_streams_per_client_max.to_string(),
        "write_rate" => d.write_rate_per_s.to_string(),
        "write_burst" => "2 × --write-rate".to_string(),
        "docker_socket" => d.docker_socket.display().to_string(),
        "stack_stop_timeout" => format_duration_ms(d.stack_stop_timeout_ms),
        "log_level" => d.log.level.to_string().to_lowercase(),
        "log_format" => d.log.format.to_string(),
        "log_caller" => d.log.caller.to_string(),
        "log_time" => d.log.time.to_string(),
        "log_no_color" => d.log.no_color.to_string(),
        "allow_crash_drill" => d.allow_crash_drill.to_string(),
        "verify_incoming" => d.verify_incoming.to_string(),
        "rejoin_after_leave" => d.rejoin_after_leave.to_string(),
        _ => return None,
    })
}

/// The allowed values of `key`, for `--help`.
fn choices(key: &str) -> Option<&'static [&'static str]> {
    Some(match key {
        "role" => Role::CHOICES,
        "discovery" => DiscoveryBackend::CHOICES,
        "profile" => Profile::CHOICES,
        "log_format" => LogFormat::CHOICES,
        "log_caller" => LogCaller::CHOICES,
        "log_time" => LogTime::CHOICES,
        _ => return None,
    })
}

/// Adds `[default: ..]` and `[env: ..]` to every `agent` flag's help, from the defaults and the
/// settings table. Apply it to the `agent` subcommand before parsing.
pub fn annotate_help(cmd: clap::Command) -> clap::Command {
    let defaults = Config::default();
    SETTINGS.iter().fold(cmd, |cmd, s| {
        let mut extra = String::new();
        if let Some(values) = choices(s.key) {
            extra.push_str(&format!(" [possible values: {}]", values.join(", ")));
        }
        if let Some(d) = default_text(s.key, &defaults) {
            extra.push_str(&format!(" [default: {d}]"));
        }
        extra.push_str(&format!(" [env: {}]", s.env.join(", ")));
        if !cmd.get_arguments().any(|a| a.get_id() == s.key) {
            return cmd;
        }
        cmd.mut_arg(s.key, |arg| {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            arg.help(format!("{help}{extra}"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: AgentArgs,
    }

    #[test]
    fn every_flag_is_in_the_settings_table_and_help_shows_defaults() {
        // Proves the table and the clap flags agree one to one, and help shows defaults and env.
        let cmd = annotate_help(Wrapper::command());
        let ids: Vec<String> =
            cmd.get_arguments().map(|a| a.get_id().to_string()).filter(|id| id != "help").collect();
        assert_eq!(ids.len(), SETTINGS.len());
        for s in SETTINGS {
            assert!(ids.iter().any(|id| id == s.key), "{} has no flag", s.key);
        }
        let help = cmd.clone().render_long_help().to_string();
        assert!(help.contains("[default: 0.0.0.0:7946]"), "{help}");
        assert!(help.contains("[env: MUSTER_JOIN, SERF_JOIN]"), "{help}");
        assert!(help.contains("[default: 1s]"), "{help}");
    }

    #[test]
    fn log_no_color_flag_without_value_means_true() {
        // Proves `--log-no-color` alone is accepted and reads as "true".
        let w = Wrapper::try_parse_from(["x", "--log-no-color"]).unwrap();
        assert_eq!(w.args.log_no_color.as_deref(), Some("true"));
        let w = Wrapper::try_parse_from(["x", "--log-no-color=false"]).unwrap();
        assert_eq!(w.args.log_no_color.as_deref(), Some("false"));
    }
}
