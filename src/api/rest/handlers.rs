//! The `/api/v1` handlers: decode, validate with the registry's own rules, call the
//! [`Registrar`] (which forwards writes, heartbeats and read barriers from a follower to the
//! leader), shape JSON. Errors go through [`RestError`]'s table. Every registrar await is
//! bounded by the gRPC layer's [`Deadlines`]; a read that passes it answers 503 (retry), a
//! write 504 (its outcome is unknown). Services go out as [`ServiceView`]s.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::errors::{Access, RestError};
use crate::api::grpc::convert::{random_uuid, rfc3339};
use crate::api::grpc::registry::Deadlines;
use crate::api::ApiState;
use crate::registry::validate;
use crate::registry::{
    Filter, NewService, Outcome, Registry, RegistryError, Service, ServiceId, ServicePatch, Status,
};
use crate::replicated::registrar::{Consistency, Registrar, RegistrarError};

type Shared = State<Arc<ApiState>>;
type Answer = Result<Json<Value>, RestError>;

fn registrar(state: &ApiState) -> Result<&Arc<Registrar>, RestError> {
    state.registrar.as_ref().ok_or(RestError::NoRegistry)
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, RestError> {
    q.map(|Query(t)| t).map_err(RestError::from)
}

/// Awaits a registrar call within `limit`. What a passed deadline means depends on `access`: a
/// read can simply be retried, a write may or may not have been applied.
async fn bounded<T>(
    access: Access,
    what: &'static str,
    limit: Duration,
    fut: impl Future<Output = Result<T, RegistrarError>>,
) -> Result<T, RestError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(RestError::from),
        Err(_) => Err(RestError::Deadline { access, what, after: limit }),
    }
}

/// A write (or heartbeat) bounded by the registrar's write deadline.
async fn write<T>(
    r: &Registrar,
    what: &'static str,
    fut: impl Future<Output = Result<T, RegistrarError>>,
) -> Result<T, RestError> {
    bounded(Access::Write, what, Deadlines::for_registrar(r).write, fut).await
}

/// A service as the REST API and the WebSocket stream show it: the registry's fields (times as
/// unix milliseconds, `*_ms`) and, as Beacon has them, the same times as ISO-8601 UTC strings
/// with milliseconds (`created_at`, `updated_at`, `last_heartbeat`, `expires_at`, and `at` in
/// `last_health_check`), formatted as the gRPC API formats them.
#[derive(Debug, Clone)]
pub(super) struct ServiceView {
    service: Service,
}

impl From<Service> for ServiceView {
    fn from(service: Service) -> ServiceView {
        ServiceView { service }
    }
}

impl Serialize for ServiceView {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let s = &self.service;
        let mut value = serde_json::to_value(s).map_err(S::Error::custom)?;
        if let Some(map) = value.as_object_mut() {
            map.insert("created_at".into(), rfc3339(s.created_at_ms).into());
            map.insert("updated_at".into(), rfc3339(s.updated_at_ms).into());
            map.insert("last_heartbeat".into(), rfc3339(s.last_heartbeat_ms).into());
            map.insert("expires_at".into(), rfc3339(s.expires_at_ms).into());
            if let (Some(check), Some(last)) =
                (map.get_mut("last_health_check").and_then(|c| c.as_object_mut()), &s.last_health_check)
            {
                check.insert("at".into(), rfc3339(last.at_ms).into());
            }
        }
        value.serialize(serializer)
    }
}

fn views(services: Vec<Service>) -> Vec<ServiceView> {
    services.into_iter().map(ServiceView::from).collect()
}

/// Reads the registry (linearizable unless `stale`); `f`'s answer with the revision it saw.
async fn read<R>(
    state: &ApiState,
    stale: Option<bool>,
    f: impl FnOnce(&Registry) -> R,
) -> Result<(R, u64), RestError> {
    let r = registrar(state)?;
    let c = if stale.unwrap_or(false) { Consistency::Stale } else { Consistency::Linearizable };
    let limit = Deadlines::for_registrar(r).read;
    bounded(Access::Read, "the read", limit, r.read(c, |reg| (f(reg), reg.revision().0))).await
}

/// Comma separated, blanks dropped.
fn split_tags(tags: Option<&str>) -> Vec<String> {
    tags.unwrap_or_default().split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect()
}

fn parse_status(raw: Option<&str>) -> Result<Option<Status>, RestError> {
    let Some(raw) = raw.filter(|s| !s.is_empty()) else { return Ok(None) };
    Status::parse(raw).map(Some).ok_or_else(|| {
        let all: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
        let reason = format!("status must be one of {} (got {raw:?})", all.join(", "));
        RegistryError::InvalidFilter { reason }.into()
    })
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ReadQuery {
    stale: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    #[serde(rename = "type")]
    service_type: Option<String>,
    tags: Option<String>,
    protocol: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    skip: Option<usize>,
    stale: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct DiscoverQuery {
    #[serde(rename = "type")]
    service_type: Option<String>,
    tags: Option<String>,
    stale: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct HeartbeatQuery {
    ttl: Option<u32>,
}

/// `POST /api/v1/services/register`: 201 with the service. No `service_id` → a random UUID.
pub(super) async fn register(
    State(state): Shared,
    body: Result<Json<NewService>, JsonRejection>,
) -> Result<(StatusCode, Json<ServiceView>), RestError> {
    let r = registrar(&state)?;
    let Json(mut new) = body?;
    if new.id.as_str().is_empty() {
        new.id = ServiceId(random_uuid());
    }
    validate::new_service(&new)?;
    let applied = write(r, "the registration", r.register(new)).await?;
    match applied.outcome {
        Outcome::Registered { service } => Ok((StatusCode::CREATED, Json(service.into()))),
        other => Err(RestError::unexpected(&other)),
    }
}

/// `PUT /api/v1/services/{id}/heartbeat[?ttl=S]`: the service as renewed.
pub(super) async fn heartbeat(
    State(state): Shared,
    Path(id): Path<String>,
    q: Result<Query<HeartbeatQuery>, QueryRejection>,
) -> Result<Json<ServiceView>, RestError> {
    let r = registrar(&state)?;
    let ttl = query(q)?.ttl;
    if let Some(ttl) = ttl {
        validate::ttl_seconds(ttl).map_err(|reason| RegistryError::InvalidCommand { reason })?;
    }
    let id = ServiceId(id);
    let service = write(r, "the heartbeat", r.heartbeat(&id, ttl)).await?;
    Ok(Json(service.into()))
}

/// `GET /api/v1/services`: one page of the matching services, by name then id.
pub(super) async fn list(State(state): Shared, q: Result<Query<ListQuery>, QueryRejection>) -> Answer {
    let q = query(q)?;
    let filter = Filter {
        service_type: q.service_type.filter(|t| !t.is_empty()),
        tags: split_tags(q.tags.as_deref()),
        protocol: q.protocol.filter(|p| !p.is_empty()),
        status: parse_status(q.status.as_deref())?,
        limit: q.limit.unwrap_or(validate::LIST_LIMIT_DEFAULT),
        skip: q.skip.unwrap_or(0),
    };
    validate::list_limit(filter.limit).map_err(|reason| RegistryError::InvalidFilter { reason })?;
    let (limit, skip) = (filter.limit, filter.skip);
    let (page, revision) = read(&state, q.stale, move |reg| reg.list(&filter)).await?;
    let (services, total) = page?;
    Ok(Json(json!({
        "services": views(services), "total": total, "limit": limit, "skip": skip, "revision": revision,
    })))
}

/// `GET /api/v1/services/{id}`.
pub(super) async fn get(
    State(state): Shared,
    Path(id): Path<String>,
    q: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Json<ServiceView>, RestError> {
    let stale = query(q)?.stale;
    let id = ServiceId(id);
    let (found, _) = read(&state, stale, |reg| reg.get(&id).cloned()).await?;
    found.map(|s| Json(s.into())).ok_or_else(|| RegistryError::NotFound { id }.into())
}

/// `PUT /api/v1/services/{id}`: applies a [`ServicePatch`]; the service as changed.
pub(super) async fn update(
    State(state): Shared,
    Path(id): Path<String>,
    body: Result<Json<ServicePatch>, JsonRejection>,
) -> Result<Json<ServiceView>, RestError> {
    let r = registrar(&state)?;
    let Json(patch) = body?;
    validate::patch(&patch)?;
    let applied = write(r, "the update", r.update(ServiceId(id), patch)).await?;
    match applied.outcome {
        Outcome::Updated { service, .. } => Ok(Json(service.into())),
        other => Err(RestError::unexpected(&other)),
    }
}

/// `DELETE /api/v1/services/{id}`.
pub(super) async fn deregister(State(state): Shared, Path(id): Path<String>) -> Answer {
    let r = registrar(&state)?;
    let id = ServiceId(id);
    let applied = write(r, "the deregistration", r.deregister(id.clone())).await?;
    match applied.outcome {
        Outcome::Deregistered { service } => Ok(Json(json!({
            "message": format!("service {id} deregistered"),
            "service": ServiceView::from(service),
            "revision": applied.revision.0,
        }))),
        other => Err(RestError::unexpected(&other)),
    }
}

/// `GET /api/v1/services/discover`: active services of a type carrying every tag.
pub(super) async fn discover(
    State(state): Shared,
    q: Result<Query<DiscoverQuery>, QueryRejection>,
) -> Answer {
    let q = query(q)?;
    let t = q.service_type.filter(|t| !t.is_empty());
    let tags = split_tags(q.tags.as_deref());
    let (services, revision) = read(&state, q.stale, move |reg| reg.discover(t.as_deref(), &tags)).await?;
    Ok(Json(json!({ "total": services.len(), "services": views(services), "revision": revision })))
}

/// `GET /api/v1/services/types`: type → how many (non-expired) services.
pub(super) async fn types(State(state): Shared, q: Result<Query<ReadQuery>, QueryRejection>) -> Answer {
    let (types, revision) = read(&state, query(q)?.stale, |reg| reg.types()).await?;
    Ok(Json(json!({ "types": types, "revision": revision })))
}

/// `GET /api/v1/services/tags`: tag → how many (non-expired) services.
pub(super) async fn tags(State(state): Shared, q: Result<Query<ReadQuery>, QueryRejection>) -> Answer {
    let (tags, revision) = read(&state, query(q)?.stale, |reg| reg.tags()).await?;
    Ok(Json(json!({ "tags": tags, "revision": revision })))
}

/// `GET /api/v1/services/expired`: services whose lease lapsed, not yet cleaned up.
pub(super) async fn expired(State(state): Shared, q: Result<Query<ReadQuery>, QueryRejection>) -> Answer {
    let (mut services, revision) = read(&state, query(q)?.stale, |reg| {
        reg.services().filter(|s| s.status == Status::Expired).cloned().collect::<Vec<_>>()
    })
    .await?;
    services.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    Ok(Json(json!({ "total": services.len(), "services": views(services), "revision": revision })))
}

/// `DELETE /api/v1/services/cleanup`: removes the expired services.
pub(super) async fn cleanup(State(state): Shared) -> Answer {
    let r = registrar(&state)?;
    let applied = write(r, "the cleanup", r.cleanup()).await?;
    match applied.outcome {
        Outcome::CleanedUp { ids } => Ok(Json(json!({
            "removed": ids.len(),
            "removed_ids": ids,
            "revision": applied.revision.0,
        }))),
        other => Err(RestError::unexpected(&other)),
    }
}

/// `GET /api/v1/health`: services by status, uptime, version, cluster, node.
pub(super) async fn health(State(state): Shared, q: Result<Query<ReadQuery>, QueryRejection>) -> Answer {
    let (counts, revision) = read(&state, query(q)?.stale, |reg| reg.counts_by_status()).await?;
    let leader = state.leadership.borrow().leader_name.clone();
    Ok(Json(json!({
        "status": "ok",
        "services": {
            "active": counts.active,
            "inactive": counts.inactive,
            "expired": counts.expired,
            "unhealthy": counts.unhealthy,
            "total": counts.total(),
        },
        "uptime_seconds": state.started.elapsed().as_secs(),
        "version": state.version,
        "cluster": state.cluster,
        "node": state.node_name,
        "leader": leader,
        "revision": revision,
    })))
}

/// `GET /api/v1/openapi.json`.
pub(super) async fn openapi() -> Json<Value> {
    Json(super::openapi())
}
