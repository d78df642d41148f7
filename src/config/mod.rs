//! The node's configuration: one immutable [`Config`], merged flag > env > file > default and
//! validated once.
//!
//! Owns the settings table (flag, environment names, file key), the defaults, parsing of
//! user-written values and the rules a config must satisfy. Must not import any other muster
//! module: everything else reads a finished `Config`.
//!
//! Layout: `args` (the `agent` flags and the settings table), `file` (the JSON config file),
//! `merge` (sources → `Config`), `values` (parsers for humane values), `validate`,
//! `gossip_key` (whether a node may start without a gossip key).

mod args;
mod file;
mod gossip_key;
mod merge;
mod validate;
mod values;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use args::{annotate_help, AgentArgs};
pub use file::FileConfig;
pub use gossip_key::check_gossip_key;
pub use merge::merge;
pub use validate::split_join_target;
pub use values::{format_duration_ms, parse_duration_ms};

/// Every default in one place: `Config::default()` and the `--help` text both read these.
pub mod defaults {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    /// Serf's gossip port (UDP+TCP), so existing firewalls and `SERF_JOIN=host:7946` work.
    pub const GOSSIP_PORT: u16 = 7946;
    /// Gossip listens on every interface.
    pub const BIND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), GOSSIP_PORT);
    /// The seed's health port; gRPC, REST and the dashboard share it.
    pub const HTTP_PORT: u16 = 9999;
    /// Serf's RPC port, on loopback only by default.
    pub const RPC_PORT: u16 = 7373;
    pub const RPC_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), RPC_PORT);
    /// The HTTP API listens on every interface.
    pub const HTTP_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), HTTP_PORT);
    /// First join retry backoff; doubles up to `RETRY_INTERVAL_MAX_MS`.
    pub const RETRY_INTERVAL_MS: u64 = 1_000;
    /// A voter missing from gossip this long is replaced (Consul's dead-server cleanup).
    pub const VOTER_GRACE_MS: u64 = 10_000;
    /// Registry events kept for watchers to resume from (the registry's `HISTORY_MAX_DEFAULT`;
    /// `node` checks the two agree at compile time): most of an hour at a few changes a second.
    pub const HISTORY_MAX: usize = 10_000;
    /// Where Docker Engine listens on Linux by default.
    pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
    /// Docker's own default stop timeout.
    pub const STACK_STOP_TIMEOUT_MS: u64 = 10_000;
    /// `--history-max` bounds: fewer than 10 events makes almost every resume `compacted`;
    /// more than 10 million holds gigabytes of service records in memory on every node.
    pub const HISTORY_MAX_LOWEST: usize = 10;
    pub const HISTORY_MAX_HIGHEST: usize = 10_000_000;
    /// Open Watch/KeepAlive/WebSocket streams node-wide: each holds a task and a 64-message
    /// buffer, so a few thousand stay within tens of megabytes.
    pub const API_STREAMS_MAX: usize = 4096;
    /// Open streams per client IP: a fleet's watchers come from many hosts, a runaway client
    /// from one.
    pub const API_STREAMS_PER_CLIENT_MAX: usize = 256;
    /// Upper bound of both stream settings.
    pub const API_STREAMS_HIGHEST: usize = 1_000_000;
    /// Registry writes a second per client IP (the burst defaults to twice this): far above a
    /// fleet's heartbeats, far below what raft can take from one client.
    pub const WRITE_RATE_PER_S: u32 = 1_000;
    /// Upper bound of `--write-rate` and `--write-burst`.
    pub const WRITE_RATE_HIGHEST: u32 = 1_000_000;
    /// Backoff cap for join retries.
    pub const RETRY_INTERVAL_MAX_MS: u64 = 30_000;
    /// 0 retries join forever.
    pub const RETRY_MAX: u32 = 0;
    /// Relative to the working directory; the node creates it.
    pub const DATA_DIR: &str = "./data";
    /// The mDNS service becomes `_serf_muster._tcp.local`.
    pub const CLUSTER: &str = "muster";
    /// The node name when the host has none.
    pub const NODE_FALLBACK: &str = "muster-node";
    /// Serf's limit on encoded tags (memberlist `MetaMaxSize`).
    pub const TAGS_ENCODED_MAX_BYTES: usize = 512;
}

/// Defines an enum of user-facing choices with its spellings, `parse` and `Display`.
macro_rules! choice_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every accepted spelling, in the order errors and `--help` list them.
            pub const CHOICES: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parses one of [`Self::CHOICES`], ignoring ASCII case.
            pub fn parse(s: &str) -> Option<Self> {
                $(if s.eq_ignore_ascii_case($text) {
                    return Some($name::$variant);
                })+
                None
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

choice_enum! {
    /// Whether this node may become the server.
    Role {
        /// Eligible to vote and serve.
        Auto => "auto",
        /// Eligible, and preferred when the cluster chooses.
        Server => "server",
        /// Never votes, never serves: always runs the proxy stack.
        Agent => "agent",
    }
}

choice_enum! {
    /// Where join candidates come from.
    DiscoveryBackend {
        /// `--join`/`SERF_JOIN` when given, plus mDNS.
        Auto => "auto",
        Mdns => "mdns",
        /// Only `--join`/`SERF_JOIN`.
        Serf => "serf",
        /// Peers from `tailscale status --json`.
        Tailscale => "tailscale",
    }
}

choice_enum! {
    /// Gossip timing preset, after memberlist's `DefaultLANConfig`/`WAN`/`Local`.
    Profile {
        Lan => "lan",
        Wan => "wan",
        Local => "local",
    }
}

choice_enum! {
    /// Log line encoding.
    LogFormat {
        /// Text on a terminal, JSON otherwise.
        Auto => "auto",
        Json => "json",
        Text => "text",
    }
}

choice_enum! {
    /// Whether log lines name the code that wrote them.
    LogCaller {
        Off => "off",
        /// `file:line`.
        Short => "short",
        /// Module path and `file:line`.
        Full => "full",
    }
}

choice_enum! {
    /// Log timestamps, always UTC.
    LogTime {
        Off => "off",
        Rfc3339 => "rfc3339",
        Rfc3339Ms => "rfc3339ms",
    }
}

/// Scripts run on stack transitions (`--on-promote`, `--on-demote`, `--on-server-change`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    pub on_promote: Option<PathBuf>,
    pub on_demote: Option<PathBuf>,
    pub on_server_change: Option<PathBuf>,
}

/// How the node logs (the seed's `LOG_*` variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub level: tracing::Level,
    pub format: LogFormat,
    pub caller: LogCaller,
    pub time: LogTime,
    /// No ANSI colours even on a terminal.
    pub no_color: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: tracing::Level::INFO,
            format: LogFormat::Auto,
            caller: LogCaller::Off,
            time: LogTime::Rfc3339Ms,
            no_color: false,
        }
    }
}

/// The effective configuration of one node. Build it with [`Config::load`] (or [`merge`] then
/// [`Config::validate`]); it does not change afterwards.
///
/// `Debug` redacts the encryption key, like [`Config::redacted`].
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Member name, unique in the cluster.
    pub node: String,
    /// Gossip listen address (UDP and TCP).
    pub bind: SocketAddr,
    /// Address other members should use to reach this one, when `bind` is not it.
    pub advertise: Option<SocketAddr>,
    /// Members to join at start: `host` or `host:port`; failure to join is an error.
    pub join: Vec<String>,
    /// Members to join at start, retried with backoff until one answers.
    pub retry_join: Vec<String>,
    /// First retry backoff.
    pub retry_interval_ms: u64,
    /// Backoff cap.
    pub retry_interval_max_ms: u64,
    /// Join attempts before giving up; 0 = forever.
    pub retry_max: u32,
    /// Serf tags gossiped with this member.
    pub tags: BTreeMap<String, String>,
    /// Serf's base64 gossip key (16, 24 or 32 bytes). Never log it.
    pub encrypt_key: Option<String>,
    /// Serf keyring file (JSON list of base64 keys).
    pub keyring_file: Option<PathBuf>,
    /// Whether the lan and wan profiles may gossip in clear text when no keyring is in use
    /// (see [`Config::check_gossip_key`]).
    pub insecure_gossip: bool,
    /// Where the node keeps its state; the node creates it.
    pub data_dir: PathBuf,
    /// The HTTP/gRPC listener.
    pub http_addr: SocketAddr,
    /// Serf RPC listener (the `serf` CLI, Serf client libraries).
    pub rpc_addr: SocketAddr,
    /// Serf RPC auth token. Never log it.
    pub rpc_auth: Option<String>,
    /// TLS on the API port: this node's certificate, key and the cluster CA (all or none).
    pub tls: Option<TlsFiles>,
    /// Whether API clients must show a CA-signed certificate (needs `tls`).
    pub verify_incoming: bool,
    /// The tokens file; none: API calls need no token.
    pub tokens_file: Option<PathBuf>,
    pub role: Role,
    pub discovery: DiscoveryBackend,
    /// Whether the registry's services and the API are announced over mDNS/DNS-SD.
    pub mdns_announce: bool,
    /// Cluster name: `[A-Za-z0-9_-]+`, used in the mDNS service name.
    pub cluster: String,
    pub profile: Profile,
    /// How long a raft voter may be missing from gossip before the leader replaces it.
    pub voter_grace_ms: u64,
    /// How many registry events this node keeps for Watch/WebSocket resume.
    pub history_max: usize,
    /// Open Watch/KeepAlive/WebSocket streams this node serves at once.
    pub api_streams_max: usize,
    /// Open streams one client IP may hold at once.
    pub api_streams_per_client_max: usize,
    /// API writes a second per client IP; 0 = unlimited.
    pub write_rate_per_s: u32,
    /// Writes a client may make at once before the rate applies (default 2 × the rate).
    pub write_burst: u32,
    /// The compose file with the `server` and `proxy` stacks; none: no stacks, hooks only.
    pub stack_file: Option<PathBuf>,
    /// The Docker engine's unix socket.
    pub docker_socket: PathBuf,
    /// How long a stack container gets to stop before docker kills it.
    pub stack_stop_timeout_ms: u64,
    /// Transition hooks: scripts run with the role, server and epoch in their environment.
    pub hooks: Hooks,
    /// Rejoin the members of the gossip snapshot on start even after a graceful leave (a
    /// restart is a leave and a start; without it a node with no join address stays alone).
    pub rejoin_after_leave: bool,
    /// Whether the Cluster/Crash call may crash this node (failover drills in test clusters).
    pub allow_crash_drill: bool,
    /// Serf event handlers, `[filter=]script` each (checked when merged).
    pub event_handlers: Vec<String>,
    pub log: LogConfig,
    /// The JSON file this config was read from, if any.
    pub config_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node: default_node_name(),
            bind: defaults::BIND,
            advertise: None,
            join: Vec::new(),
            retry_join: Vec::new(),
            retry_interval_ms: defaults::RETRY_INTERVAL_MS,
            retry_interval_max_ms: defaults::RETRY_INTERVAL_MAX_MS,
            retry_max: defaults::RETRY_MAX,
            tags: BTreeMap::new(),
            encrypt_key: None,
            keyring_file: None,
            insecure_gossip: false,
            data_dir: PathBuf::from(defaults::DATA_DIR),
            http_addr: defaults::HTTP_ADDR,
            rpc_addr: defaults::RPC_ADDR,
            rpc_auth: None,
            tls: None,
            verify_incoming: false,
            tokens_file: None,
            role: Role::Auto,
            discovery: DiscoveryBackend::Auto,
            mdns_announce: true,
            cluster: defaults::CLUSTER.to_string(),
            profile: Profile::Lan,
            voter_grace_ms: defaults::VOTER_GRACE_MS,
            history_max: defaults::HISTORY_MAX,
            api_streams_max: defaults::API_STREAMS_MAX,
            api_streams_per_client_max: defaults::API_STREAMS_PER_CLIENT_MAX,
            write_rate_per_s: defaults::WRITE_RATE_PER_S,
            write_burst: 2 * defaults::WRITE_RATE_PER_S,
            stack_file: None,
            docker_socket: PathBuf::from(defaults::DOCKER_SOCKET),
            stack_stop_timeout_ms: defaults::STACK_STOP_TIMEOUT_MS,
            hooks: Hooks::default(),
            allow_crash_drill: false,
            event_handlers: Vec::new(),
            rejoin_after_leave: true,
            log: LogConfig::default(),
            config_file: None,
        }
    }
}

/// The PEM files of `--tls-cert`, `--tls-key` and `--tls-ca`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// This host's name, or [`defaults::NODE_FALLBACK`] when it has none.
pub fn default_node_name() -> String {
    let name = gethostname::gethostname().to_string_lossy().trim().to_string();
    if name.is_empty() {
        defaults::NODE_FALLBACK.to_string()
    } else {
        name
    }
}

impl Config {
    /// Reads the config file named by `--config-file`/`MUSTER_CONFIG_FILE` (if any), merges
    /// flag > env > file > default, and validates the result.
    pub fn load(args: &AgentArgs, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let path = merge::config_file_path(args, &env);
        let file = match &path {
            Some(p) => Some(FileConfig::read(p)?),
            None => None,
        };
        let config = merge(args, &env, file.as_ref())?;
        config.validate()?;
        Ok(config)
    }

    /// What this node exposes without protection, one sentence each, for loud warnings at
    /// start: gossip without a key, the API port, and the Serf RPC port off loopback.
    /// `gossip_encrypted` says whether a keyring is in use (from `--encrypt`, the keyring file
    /// or the data dir).
    pub fn exposure_warnings(&self, gossip_encrypted: bool) -> Vec<String> {
        let open = |ip: std::net::IpAddr| !ip.is_loopback();
        let mut out = Vec::new();
        if open(self.bind.ip()) && !gossip_encrypted {
            out.push(format!(
                "gossip on {} is not encrypted: anyone who reaches it can join, claim member names and \
                 send events and queries; start every node with --encrypt (make a key with `muster keygen`)",
                self.bind
            ));
        }
        if open(self.http_addr.ip()) && self.tls.is_none() {
            out.push(format!(
                "the API on {} has no TLS (--tls-cert/--tls-key/--tls-ca): calls, tokens and raft messages travel \
                 in clear text, and anyone who reaches it can send raft messages; firewall it to the fleet's hosts",
                self.http_addr
            ));
        }
        if open(self.http_addr.ip()) && self.tokens_file.is_none() && !self.verify_incoming {
            out.push(format!(
                "the API on {} takes writes from anyone who reaches it: give --tokens-file, or --verify-incoming \
                 with TLS",
                self.http_addr
            ));
        }
        if open(self.rpc_addr.ip()) {
            let auth = if self.rpc_auth.is_some() {
                "its --rpc-auth token travels in clear text"
            } else {
                "it has no --rpc-auth token"
            };
            out.push(format!(
                "Serf RPC on {} is off loopback and {auth}: whoever reaches it can force members out, read the log \
                 and rotate the gossip keys; keep --rpc-addr on 127.0.0.1",
                self.rpc_addr
            ));
        }
        out
    }

    /// A view for the start-up log line: every setting, the encryption key as `<redacted>`.
    pub fn redacted(&self) -> Redacted<'_> {
        Redacted(self)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

/// [`Config`] with its secrets hidden. `Display` is one `key=value` line; `Debug` is a struct.
pub struct Redacted<'a>(&'a Config);

const REDACTED: &str = "<redacted>";

impl Redacted<'_> {
    fn encrypt(&self) -> &'static str {
        if self.0.encrypt_key.is_some() {
            REDACTED
        } else {
            "none"
        }
    }
}

fn opt<T: fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "none".to_string(), ToString::to_string)
}

fn join_tags(tags: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        write!(
            f,
            "node={} cluster={} role={} profile={} voter_grace={} history_max={} api_streams_max={} \
             api_streams_per_client_max={} write_rate={} write_burst={} discovery={} bind={} \
             advertise={} join=[{}] retry_join=[{}] retry_interval={} retry_interval_max={} retry_max={} \
             tags=[{}] encrypt={} keyring_file={} insecure_gossip={} data_dir={} http_addr={} rpc_addr={} rpc_auth={} \
             tls_cert={} tls_key={} tls_ca={} verify_incoming={} tokens_file={} log.level={} \
             stack_file={} docker_socket={} stack_stop_timeout={} on_promote={} on_demote={} on_server_change={} \
             rejoin_after_leave={} allow_crash_drill={} event_handlers={} log.format={} log.caller={} log.time={} log.no_color={} \
             mdns_announce={} \
             config_file={}",
            c.node,
            c.cluster,
            c.role,
            c.profile,
            format_duration_ms(c.voter_grace_ms),
            c.history_max,
            c.api_streams_max,
            c.api_streams_per_client_max,
            c.write_rate_per_s,
            c.write_burst,
            c.discovery,
            c.bind,
            opt(&c.advertise),
            c.join.join(","),
            c.retry_join.join(","),
            format_duration_ms(c.retry_interval_ms),
            format_duration_ms(c.retry_interval_max_ms),
            c.retry_max,
            join_tags(&c.tags),
            self.encrypt(),
            opt(&c.keyring_file.as_ref().map(|p| p.display())),
            c.insecure_gossip,
            c.data_dir.display(),
            c.http_addr,
            c.rpc_addr,
            if c.rpc_auth.is_some() { REDACTED } else { "none" },
            opt(&c.tls.as_ref().map(|t| t.cert.display())),
            opt(&c.tls.as_ref().map(|t| t.key.display())),
            opt(&c.tls.as_ref().map(|t| t.ca.display())),
            c.verify_incoming,
            opt(&c.tokens_file.as_ref().map(|p| p.display())),
            c.log.level.as_str().to_ascii_lowercase(),
            opt(&c.stack_file.as_ref().map(|p| p.display())),
            c.docker_socket.display(),
            format_duration_ms(c.stack_stop_timeout_ms),
            opt(&c.hooks.on_promote.as_ref().map(|p| p.display())),
            opt(&c.hooks.on_demote.as_ref().map(|p| p.display())),
            opt(&c.hooks.on_server_change.as_ref().map(|p| p.display())),
            c.rejoin_after_leave,
            c.allow_crash_drill,
            c.event_handlers.len(),
            c.log.format,
            c.log.caller,
            c.log.time,
            c.log.no_color,
            c.mdns_announce,
            opt(&c.config_file.as_ref().map(|p| p.display())),
        )
    }
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        f.debug_struct("Config")
            .field("node", &c.node)
            .field("bind", &c.bind)
            .field("advertise", &c.advertise)
            .field("join", &c.join)
            .field("retry_join", &c.retry_join)
            .field("retry_interval_ms", &c.retry_interval_ms)
            .field("retry_interval_max_ms", &c.retry_interval_max_ms)
            .field("retry_max", &c.retry_max)
            .field("tags", &c.tags)
            .field("encrypt_key", &c.encrypt_key.as_ref().map(|_| REDACTED))
            .field("keyring_file", &c.keyring_file)
            .field("insecure_gossip", &c.insecure_gossip)
            .field("data_dir", &c.data_dir)
            .field("http_addr", &c.http_addr)
            .field("rpc_addr", &c.rpc_addr)
            .field("rpc_auth", &c.rpc_auth.as_ref().map(|_| REDACTED))
            .field("tls", &c.tls)
            .field("verify_incoming", &c.verify_incoming)
            .field("tokens_file", &c.tokens_file)
            .field("role", &c.role)
            .field("discovery", &c.discovery)
            .field("mdns_announce", &c.mdns_announce)
            .field("cluster", &c.cluster)
            .field("profile", &c.profile)
            .field("voter_grace_ms", &c.voter_grace_ms)
            .field("history_max", &c.history_max)
            .field("api_streams_max", &c.api_streams_max)
            .field("api_streams_per_client_max", &c.api_streams_per_client_max)
            .field("write_rate_per_s", &c.write_rate_per_s)
            .field("write_burst", &c.write_burst)
            .field("stack_file", &c.stack_file)
            .field("docker_socket", &c.docker_socket)
            .field("stack_stop_timeout_ms", &c.stack_stop_timeout_ms)
            .field("hooks", &c.hooks)
            .field("log", &c.log)
            .field("config_file", &c.config_file)
            .finish()
    }
}

/// Why a configuration was rejected. Messages name the flag (and where the value came from)
/// and say what is allowed; they never contain the encryption key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value that does not parse. `origin` is empty for a flag, else ` (ENV_NAME)` or
    /// ` (config file key 'k')`.
    #[error("invalid value '{value}' for {flag}{origin}: {expected}")]
    InvalidValue { flag: String, origin: String, value: String, expected: String },
    /// A parsed config that breaks a rule. `setting` is the flag with its environment names.
    #[error("invalid {setting}: {reason}")]
    Invalid { setting: String, reason: String },
    #[error("cannot read config file {path}: {cause}")]
    ReadFile {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
    #[error("config file {path} is not a JSON object: {reason}")]
    FileSyntax { path: PathBuf, reason: String },
    #[error("config file {path}: unknown key '{key}'; known keys: {known}")]
    UnknownKey { path: PathBuf, key: String, known: String },
    #[error("config file {path}: key '{key}' {reason}")]
    FileValue { path: PathBuf, key: String, reason: String },
    /// A lan or wan node with no gossip key (see [`check_gossip_key`]).
    #[error(
        "--profile {profile} encrypts gossip, but no key was given: start every node with --encrypt KEY \
         (make one with `muster keygen`) or --keyring-file FILE; to run in clear text anyway, pass --insecure-gossip"
    )]
    GossipKeyMissing { profile: Profile },
}
