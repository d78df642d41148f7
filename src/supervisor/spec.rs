//! Muster's own plain description of a stack and its services, independent of the compose
//! crate's types: what the Docker driver needs to create a container, already interpolated,
//! validated and ordered. Also [`ServiceSpec::spec_hash`], the stable fingerprint stored in the
//! `muster.spec-hash` label so the planner can tell a running container is out of date.
//! Must not import anything outside `supervisor`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Which of the two stacks: the server stack runs on the one server host, the proxy stack on
/// every other host. Written as `server` / `proxy` in profiles, labels and names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StackKind {
    Server,
    Proxy,
}

impl StackKind {
    pub const ALL: [StackKind; 2] = [StackKind::Server, StackKind::Proxy];

    pub fn as_str(self) -> &'static str {
        match self {
            StackKind::Server => "server",
            StackKind::Proxy => "proxy",
        }
    }

    /// The stack a profile name selects, if it is one of muster's.
    pub fn from_profile(profile: &str) -> Option<StackKind> {
        StackKind::ALL.into_iter().find(|k| k.as_str() == profile)
    }
}

impl fmt::Display for StackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stack: its services in depends_on order (every service after all it depends on), and
/// the networks and volumes those services use, in declaration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackSpec {
    pub name: StackKind,
    pub services: Vec<ServiceSpec>,
    pub networks: Vec<NetworkSpec>,
    pub volumes: Vec<VolumeSpec>,
}

impl StackSpec {
    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The compose service name.
    pub name: String,
    pub image: String,
    /// `None`: the image's default. `Some(vec![])`: explicitly empty.
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<PortSpec>,
    pub mounts: Vec<MountSpec>,
    /// Network names as declared at the top level; `["default"]` when the service lists none.
    pub networks: Vec<String>,
    /// The user's labels (never `muster.*`, which muster adds itself).
    pub labels: BTreeMap<String, String>,
    pub restart: RestartPolicy,
    /// `None`: the image's own healthcheck, if any. Disabled is `test: ["NONE"]`.
    pub healthcheck: Option<HealthcheckSpec>,
    pub depends_on: Vec<Dependency>,
    pub init: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One published port. `host_port: None` lets Docker pick an ephemeral host port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// `None` binds all addresses. IPv6 addresses are written without brackets.
    pub host_ip: Option<String>,
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// `source` is an absolute host path (relative paths are resolved against the compose
    /// file's directory at parse time).
    Bind,
    /// `source` is the name of a volume declared under top-level `volumes`.
    Volume,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub kind: MountKind,
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    Always,
    /// `on-failure[:N]`: restart on a non-zero exit, at most `retries_max` times if given.
    OnFailure {
        retries_max: Option<u32>,
    },
    UnlessStopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthcheckSpec {
    /// Docker's form: `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]` (disabled).
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
    pub start_period: Option<Duration>,
}

impl HealthcheckSpec {
    pub fn is_disabled(&self) -> bool {
        self.test.first().is_some_and(|t| t == "NONE")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The dependency's container has been started.
    Started,
    /// The dependency's container reports healthy.
    Healthy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub service: String,
    pub condition: Condition,
}

/// A top-level network the stack uses. `default` is implied when a service lists no networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    pub driver: Option<String>,
    /// Created outside muster; used by its name as is, never created or removed.
    pub external: bool,
    pub internal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    pub name: String,
    pub driver: Option<String>,
    /// Created outside muster; used by its name as is, never created or removed.
    pub external: bool,
}

impl ServiceSpec {
    /// A stable fingerprint of everything that shapes the container (16 hex digits, FNV-1a 64
    /// over a length-prefixed canonical encoding, so it never depends on the Rust version or
    /// the process). `depends_on` is left out: it orders creation, it is not container config.
    /// Changing the encoding changes every hash and recreates every container, so the encoding
    /// starts with a version tag.
    pub fn spec_hash(&self) -> String {
        let mut h = Canon::new();
        h.str("muster-spec-v1");
        h.str(&self.name);
        h.str(&self.image);
        h.opt_list(self.command.as_deref());
        h.opt_list(self.entrypoint.as_deref());
        h.map(&self.env);
        h.u64(self.ports.len() as u64);
        for p in &self.ports {
            h.opt_str(p.host_ip.as_deref());
            h.u64(p.host_port.map_or(0, |p| u64::from(p) + 1));
            h.u64(u64::from(p.container_port));
            h.str(p.protocol.as_str());
        }
        h.u64(self.mounts.len() as u64);
        for m in &self.mounts {
            h.str(match m.kind {
                MountKind::Bind => "bind",
                MountKind::Volume => "volume",
            });
            h.str(&m.source);
            h.str(&m.target);
            h.u64(u64::from(m.read_only));
        }
        h.opt_list(Some(&self.networks));
        h.map(&self.labels);
        match self.restart {
            RestartPolicy::No => h.str("no"),
            RestartPolicy::Always => h.str("always"),
            RestartPolicy::UnlessStopped => h.str("unless-stopped"),
            RestartPolicy::OnFailure { retries_max } => {
                h.str("on-failure");
                h.u64(retries_max.map_or(0, |n| u64::from(n) + 1));
            }
        }
        match &self.healthcheck {
            None => h.u64(0),
            Some(hc) => {
                h.u64(1);
                h.opt_list(Some(&hc.test));
                for d in [hc.interval, hc.timeout, hc.start_period] {
                    h.u64(d.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).saturating_add(1)));
                }
                h.u64(hc.retries.map_or(0, |n| u64::from(n) + 1));
            }
        }
        h.u64(u64::from(self.init));
        format!("{:016x}", h.0)
    }
}

/// FNV-1a 64 fed with a self-delimiting encoding (every string is length-prefixed).
struct Canon(u64);

impl Canon {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Canon(Self::OFFSET)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn u64(&mut self, n: u64) {
        self.bytes(&n.to_le_bytes());
    }

    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.bytes(s.as_bytes());
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.u64(0),
            Some(s) => {
                self.u64(1);
                self.str(s);
            }
        }
    }

    fn opt_list(&mut self, list: Option<&[String]>) {
        match list {
            None => self.u64(0),
            Some(list) => {
                self.u64(list.len() as u64 + 1);
                list.iter().for_each(|s| self.str(s));
            }
        }
    }

    fn map(&mut self, map: &BTreeMap<String, String>) {
        self.u64(map.len() as u64);
        for (k, v) in map {
            self.str(k);
            self.str(v);
        }
    }
}
