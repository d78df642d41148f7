//! The registry's data: [`Service`], its [`Status`], the ids ([`ServiceId`], [`Revision`]), and
//! what callers send to create ([`NewService`]) or change ([`ServicePatch`]) a service.
//!
//! JSON names follow Bitsperity Beacon's service model (`service_id`, `type`, `ttl`,
//! `health_check_url`, ...). Times are unix milliseconds chosen by the leader and end in `_ms`;
//! Beacon's ISO datetimes are the API layer's translation. Pure data: must not import tokio,
//! clocks, I/O or other muster modules. Bounds are checked in `validate`, not here.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// A service's id: UUID-like, chosen by the caller or the leader, never by `apply`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServiceId(pub String);

impl ServiceId {
    pub fn new(id: impl Into<String>) -> ServiceId {
        ServiceId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ServiceId {
    fn from(id: &str) -> ServiceId {
        ServiceId(id.to_owned())
    }
}

/// The raft log index at which a command was applied. `Revision(0)` means "nothing applied".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Revision(pub u64);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Beacon's four statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Registered, lease current, last health check (if any) passed.
    Active,
    /// Switched off by an operator (`Update` with `status: inactive`); keeps its lease.
    Inactive,
    /// The leader saw its lease lapse and logged `Expire`; removed later by `Cleanup`.
    Expired,
    /// Its health check failed (`SetHealth { healthy: false }`).
    Unhealthy,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Active, Status::Inactive, Status::Expired, Status::Unhealthy];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Inactive => "inactive",
            Status::Expired => "expired",
            Status::Unhealthy => "unhealthy",
        }
    }

    /// Parses the lowercase names used in JSON and query strings.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One registered service, as stored and as returned by queries and events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    #[serde(rename = "service_id")]
    pub id: ServiceId,
    pub name: String,
    #[serde(rename = "type")]
    pub service_type: String,
    pub host: String,
    pub port: u16,
    pub protocol: String,
    /// Without duplicates, in the order first given.
    pub tags: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    /// The lease length a heartbeat without `?ttl=` renews for.
    #[serde(rename = "ttl")]
    pub ttl_seconds: u32,
    pub status: Status,
    pub health_check_url: Option<String>,
    /// Seconds between health checks (Beacon's name, kept for compatibility).
    pub health_check_interval: u32,
    /// Seconds one check may take before it counts as failed.
    #[serde(default = "health_check_timeout_default")]
    pub health_check_timeout: u32,
    /// Consecutive failed checks that turn an `active` service `unhealthy`.
    #[serde(default = "unhealthy_threshold_default")]
    pub health_check_unhealthy_threshold: u32,
    /// Consecutive passed checks that turn an `unhealthy` service `active` again.
    #[serde(default = "healthy_threshold_default")]
    pub health_check_healthy_threshold: u32,
    /// The last check's result and the run of equal results it ends; `None` until the first
    /// check, and again after the check's URL changes.
    #[serde(default)]
    pub last_health_check: Option<HealthCheck>,
    pub mdns_service_type: Option<String>,
    pub mdns_txt_records: BTreeMap<String, String>,
    pub description: Option<String>,
    pub version: Option<String>,
    pub created_at_ms: u64,
    /// Last change to the record itself; a plain lease renewal does not count.
    pub updated_at_ms: u64,
    pub last_heartbeat_ms: u64,
    pub expires_at_ms: u64,
}

/// One health check's result as the registry keeps it: the leader ran the check, the log
/// carried the result, and every node applied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// When the check started (unix ms, the leader's clock).
    pub at_ms: u64,
    pub ok: bool,
    /// How long it took (to the answer, the refusal or the timeout).
    pub latency_ms: u32,
    /// Why it failed (`None` when it passed).
    pub error: Option<String>,
    /// Failed checks in a row, this one included (0 when it passed).
    pub consecutive_failures: u32,
    /// Passed checks in a row, this one included (0 when it failed).
    pub consecutive_successes: u32,
}

pub const PROTOCOL_DEFAULT: &str = "http";
/// Beacon's default lease: five minutes.
pub const TTL_SECONDS_DEFAULT: u32 = 300;
/// Beacon's default health check interval.
pub const HEALTH_CHECK_INTERVAL_DEFAULT: u32 = 60;
/// A check that has not answered within this many seconds failed.
pub const HEALTH_CHECK_TIMEOUT_DEFAULT: u32 = 5;
/// Three failures in a row before `unhealthy` (Kubernetes' failureThreshold default): one lost
/// packet does not flap a service.
pub const UNHEALTHY_THRESHOLD_DEFAULT: u32 = 3;
/// Two passes in a row before `active` again.
pub const HEALTHY_THRESHOLD_DEFAULT: u32 = 2;

fn protocol_default() -> String {
    PROTOCOL_DEFAULT.to_owned()
}

fn ttl_seconds_default() -> u32 {
    TTL_SECONDS_DEFAULT
}

fn health_check_interval_default() -> u32 {
    HEALTH_CHECK_INTERVAL_DEFAULT
}

fn health_check_timeout_default() -> u32 {
    HEALTH_CHECK_TIMEOUT_DEFAULT
}

fn unhealthy_threshold_default() -> u32 {
    UNHEALTHY_THRESHOLD_DEFAULT
}

fn healthy_threshold_default() -> u32 {
    HEALTHY_THRESHOLD_DEFAULT
}

/// What a client sends to register a service (Beacon's `ServiceCreate`, plus the id and the
/// optional fields). `port` is wider than `u16` so that an out-of-range port gets the registry's
/// own message instead of a decoding error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewService {
    /// Empty when decoded from a Beacon request; the leader assigns one before proposing, and
    /// `Register` rejects an empty id.
    #[serde(rename = "service_id", default)]
    pub id: ServiceId,
    pub name: String,
    #[serde(rename = "type")]
    pub service_type: String,
    pub host: String,
    pub port: u32,
    #[serde(default = "protocol_default")]
    pub protocol: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(rename = "ttl", default = "ttl_seconds_default")]
    pub ttl_seconds: u32,
    #[serde(default)]
    pub health_check_url: Option<String>,
    #[serde(default = "health_check_interval_default")]
    pub health_check_interval: u32,
    #[serde(default = "health_check_timeout_default")]
    pub health_check_timeout: u32,
    #[serde(default = "unhealthy_threshold_default")]
    pub health_check_unhealthy_threshold: u32,
    #[serde(default = "healthy_threshold_default")]
    pub health_check_healthy_threshold: u32,
    #[serde(default)]
    pub mdns_service_type: Option<String>,
    #[serde(default)]
    pub mdns_txt_records: BTreeMap<String, String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

impl NewService {
    /// The required fields; everything else takes Beacon's defaults.
    pub fn new(
        id: ServiceId,
        name: impl Into<String>,
        service_type: impl Into<String>,
        host: impl Into<String>,
        port: u32,
    ) -> NewService {
        NewService {
            id,
            name: name.into(),
            service_type: service_type.into(),
            host: host.into(),
            port,
            protocol: protocol_default(),
            tags: Vec::new(),
            metadata: BTreeMap::new(),
            ttl_seconds: TTL_SECONDS_DEFAULT,
            health_check_url: None,
            health_check_interval: HEALTH_CHECK_INTERVAL_DEFAULT,
            health_check_timeout: HEALTH_CHECK_TIMEOUT_DEFAULT,
            health_check_unhealthy_threshold: UNHEALTHY_THRESHOLD_DEFAULT,
            health_check_healthy_threshold: HEALTHY_THRESHOLD_DEFAULT,
            mdns_service_type: None,
            mdns_txt_records: BTreeMap::new(),
            description: None,
            version: None,
        }
    }
}

/// A partial update (Beacon's `ServiceUpdate`, widened to every field). `None` keeps a field.
/// For the optional fields, JSON `null` (`Some(None)`) clears the value and an absent key keeps
/// it. Absent fields are skipped when encoding, so the raft log must use a self-describing codec
/// (serde_json, or rmp-serde's named encoding) to keep "absent" and "null" apart.
///
/// `status` may be set to `active` or `inactive` only: expiry belongs to the leader's lease
/// decisions and `unhealthy` to health checks. A new `ttl` applies from the next renewal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(rename = "ttl", default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub health_check_url: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_interval: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_timeout: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_unhealthy_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_healthy_threshold: Option<u32>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub mdns_service_type: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mdns_txt_records: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub version: Option<Option<String>>,
}

/// A present key (even `null`) becomes `Some(..)`; an absent key falls back to `default` (None).
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
