//! Translations between the registry's types and the `muster.registry.v1` messages. Pure: no
//! I/O, no registrar. Defaults for unset optional fields are the registry's (Beacon's).

use std::collections::BTreeMap;

use tonic::Status as GrpcStatus;

use super::errors::invalid;
use super::pb::registry as pb;
use crate::logging::{format_rfc3339, Precision};
use crate::registry::model::{
    HEALTHY_THRESHOLD_DEFAULT, HEALTH_CHECK_INTERVAL_DEFAULT, HEALTH_CHECK_TIMEOUT_DEFAULT, PROTOCOL_DEFAULT,
    TTL_SECONDS_DEFAULT, UNHEALTHY_THRESHOLD_DEFAULT,
};
use crate::registry::{Event, EventKind, HealthCheck, NewService, Service, ServiceId, ServicePatch, Status};

fn ms(unix_ms: u64) -> i64 {
    i64::try_from(unix_ms).unwrap_or(i64::MAX)
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds (`2026-11-24T02:51:00.273Z`): how every
/// API (gRPC, REST, WebSocket) shows a service's times.
pub(crate) fn rfc3339(unix_ms: u64) -> String {
    format_rfc3339(ms(unix_ms), Precision::Millis)
}

pub fn status_to_pb(s: Status) -> pb::ServiceStatus {
    match s {
        Status::Active => pb::ServiceStatus::Active,
        Status::Inactive => pb::ServiceStatus::Inactive,
        Status::Expired => pb::ServiceStatus::Expired,
        Status::Unhealthy => pb::ServiceStatus::Unhealthy,
    }
}

/// A status from a request; `None` for UNSPECIFIED, an error for a number out of range.
pub fn status_from_pb(field: &str, raw: i32) -> Result<Option<Status>, GrpcStatus> {
    match pb::ServiceStatus::try_from(raw) {
        Ok(pb::ServiceStatus::Unspecified) => Ok(None),
        Ok(pb::ServiceStatus::Active) => Ok(Some(Status::Active)),
        Ok(pb::ServiceStatus::Inactive) => Ok(Some(Status::Inactive)),
        Ok(pb::ServiceStatus::Expired) => Ok(Some(Status::Expired)),
        Ok(pb::ServiceStatus::Unhealthy) => Ok(Some(Status::Unhealthy)),
        Err(_) => Err(invalid(field, format!("must be a ServiceStatus (got {raw})"))),
    }
}

pub fn service_to_pb(s: Service) -> pb::Service {
    pb::Service {
        created_at: rfc3339(s.created_at_ms),
        updated_at: rfc3339(s.updated_at_ms),
        last_heartbeat: rfc3339(s.last_heartbeat_ms),
        expires_at: rfc3339(s.expires_at_ms),
        service_id: s.id.0,
        name: s.name,
        r#type: s.service_type,
        host: s.host,
        port: u32::from(s.port),
        protocol: s.protocol,
        tags: s.tags,
        metadata: s.metadata.into_iter().collect(),
        ttl_seconds: s.ttl_seconds,
        status: status_to_pb(s.status) as i32,
        health_check_url: s.health_check_url,
        health_check_interval_seconds: s.health_check_interval,
        health_check_timeout_seconds: s.health_check_timeout,
        health_check_unhealthy_threshold: s.health_check_unhealthy_threshold,
        health_check_healthy_threshold: s.health_check_healthy_threshold,
        last_health_check: s.last_health_check.map(check_to_pb),
        mdns_service_type: s.mdns_service_type,
        mdns_txt_records: s.mdns_txt_records.into_iter().collect(),
        description: s.description,
        version: s.version,
        created_at_ms: ms(s.created_at_ms),
        updated_at_ms: ms(s.updated_at_ms),
        last_heartbeat_ms: ms(s.last_heartbeat_ms),
        expires_at_ms: ms(s.expires_at_ms),
    }
}

fn check_to_pb(c: HealthCheck) -> pb::HealthCheck {
    pb::HealthCheck {
        at_ms: ms(c.at_ms),
        at: rfc3339(c.at_ms),
        ok: c.ok,
        latency_ms: c.latency_ms,
        error: c.error,
        consecutive_failures: c.consecutive_failures,
        consecutive_successes: c.consecutive_successes,
    }
}

fn sorted(map: std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

/// A registration; an empty id gets a random UUID (v4 layout).
pub fn new_service(r: pb::RegisterRequest) -> NewService {
    let id = if r.service_id.is_empty() { random_uuid() } else { r.service_id };
    NewService {
        id: ServiceId(id),
        name: r.name,
        service_type: r.r#type,
        host: r.host,
        port: r.port,
        protocol: r.protocol.unwrap_or_else(|| PROTOCOL_DEFAULT.to_owned()),
        tags: r.tags,
        metadata: sorted(r.metadata),
        ttl_seconds: r.ttl_seconds.unwrap_or(TTL_SECONDS_DEFAULT),
        health_check_url: r.health_check_url,
        health_check_interval: r.health_check_interval_seconds.unwrap_or(HEALTH_CHECK_INTERVAL_DEFAULT),
        health_check_timeout: r.health_check_timeout_seconds.unwrap_or(HEALTH_CHECK_TIMEOUT_DEFAULT),
        health_check_unhealthy_threshold: r
            .health_check_unhealthy_threshold
            .unwrap_or(UNHEALTHY_THRESHOLD_DEFAULT),
        health_check_healthy_threshold: r.health_check_healthy_threshold.unwrap_or(HEALTHY_THRESHOLD_DEFAULT),
        mdns_service_type: r.mdns_service_type,
        mdns_txt_records: sorted(r.mdns_txt_records),
        description: r.description,
        version: r.version,
    }
}

/// An empty string clears an optional text field.
fn clearable(v: Option<String>) -> Option<Option<String>> {
    v.map(|s| if s.is_empty() { None } else { Some(s) })
}

/// A partial update and the id it is for.
pub fn patch(r: pb::UpdateRequest) -> Result<(ServiceId, ServicePatch), GrpcStatus> {
    let status =
        match r.status {
            None => None,
            Some(raw) => Some(status_from_pb("status", raw)?.ok_or_else(|| {
                invalid("status", "must be SERVICE_STATUS_ACTIVE or SERVICE_STATUS_INACTIVE")
            })?),
        };
    let p = ServicePatch {
        name: r.name,
        service_type: r.r#type,
        host: r.host,
        port: r.port,
        protocol: r.protocol,
        tags: r.tags.map(|t| t.values),
        metadata: r.metadata.map(|m| sorted(m.entries)),
        ttl_seconds: r.ttl_seconds,
        status,
        health_check_url: clearable(r.health_check_url),
        health_check_interval: r.health_check_interval_seconds,
        health_check_timeout: r.health_check_timeout_seconds,
        health_check_unhealthy_threshold: r.health_check_unhealthy_threshold,
        health_check_healthy_threshold: r.health_check_healthy_threshold,
        mdns_service_type: clearable(r.mdns_service_type),
        mdns_txt_records: r.mdns_txt_records.map(|m| sorted(m.entries)),
        description: clearable(r.description),
        version: clearable(r.version),
    };
    Ok((service_id(r.service_id)?, p))
}

/// A service id from a request: must not be empty (the registry checks the rest on write).
pub fn service_id(id: String) -> Result<ServiceId, GrpcStatus> {
    if id.is_empty() {
        return Err(invalid("service_id", "must be 1–64 characters (got 0)"));
    }
    Ok(ServiceId(id))
}

pub fn kind_to_pb(k: EventKind) -> pb::EventKind {
    match k {
        EventKind::ServiceRegistered => pb::EventKind::ServiceRegistered,
        EventKind::ServiceUpdated => pb::EventKind::ServiceUpdated,
        EventKind::ServiceDeregistered => pb::EventKind::ServiceDeregistered,
        EventKind::ServiceExpired => pb::EventKind::ServiceExpired,
        EventKind::HealthStatusChanged => pb::EventKind::HealthStatusChanged,
    }
}

pub fn event_to_pb(e: Event) -> pb::WatchEvent {
    pb::WatchEvent {
        revision: e.revision.0,
        kind: kind_to_pb(e.kind) as i32,
        service: Some(service_to_pb(e.service)),
    }
}

/// 128 random bits laid out as a version-4 UUID: the id of a registration that came without
/// one (gRPC Register and REST `POST /api/v1/services/register`).
pub(crate) fn random_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_id_gets_a_uuid_and_unset_fields_the_defaults() {
        // Proves Register's defaults: a UUID for an empty id, Beacon's protocol/ttl/interval.
        let n = new_service(pb::RegisterRequest { name: "a".into(), port: 80, ..Default::default() });
        assert_eq!(n.id.0.len(), 36, "{}", n.id);
        assert_eq!(n.id.0.as_bytes()[14], b'4');
        assert_eq!((n.protocol.as_str(), n.ttl_seconds, n.health_check_interval), ("http", 300, 60));
        assert!(crate::registry::validate::new_service(&NewService {
            service_type: "t".into(),
            host: "h".into(),
            ..n
        })
        .is_ok());
    }

    #[test]
    fn an_empty_text_clears_and_an_unspecified_status_is_refused() {
        // Proves the patch translation: "" clears an optional text, unset keeps it, and an
        // UNSPECIFIED status is refused with INVALID_ARGUMENT.
        let (_, p) = patch(pb::UpdateRequest {
            service_id: "x".into(),
            description: Some(String::new()),
            version: Some("2".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!((p.description, p.version, p.name), (Some(None), Some(Some("2".into())), None));
        let bad = patch(pb::UpdateRequest { service_id: "x".into(), status: Some(0), ..Default::default() });
        assert_eq!(bad.unwrap_err().code(), tonic::Code::InvalidArgument);
    }
}
