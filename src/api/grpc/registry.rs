//! `muster.registry.v1.Registry`: thin handlers. Each one checks what only the gRPC layer can
//! (enum values, an empty id), calls the [`Registrar`] (which forwards writes, heartbeats and
//! read barriers from a follower to the leader), and maps errors through [`super::errors`].
//! Every await is bounded by [`Deadlines`]. Watch and KeepAlive live in [`super::watch`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{self, service_to_pb};
use super::errors::{self, Access};
use super::pb::registry as pb;
use super::pb::registry::registry_server::Registry as RegistryRpc;
use super::watch::{self, BoxStream};
use crate::api::limits::{ClientKey, StreamGuard, StreamLimits};
use crate::registry::{Filter, Outcome, Registry, Status as ServiceStatus};
use crate::replicated::registrar::{Consistency, Registrar, RegistrarError};

/// How long a handler waits for the registrar. The registrar bounds each of its own steps
/// (forward, commit, read barrier); these are the outer guard.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// A write (register, update, deregister, cleanup) or a heartbeat.
    pub write: Duration,
    /// A read, linearizable (barrier through the leader, then catching up) or stale.
    pub read: Duration,
}

impl Deadlines {
    /// Twice the registrar's own proposal timeout, plus a second: a forwarded call may wait
    /// for the forward and then for the commit or catch-up.
    pub fn for_registrar(r: &Registrar) -> Deadlines {
        let t = r.config().propose_timeout * 2 + Duration::from_secs(1);
        Deadlines { write: t, read: t }
    }
}

/// The Registry service over one node's registrar.
pub struct RegistryApi {
    pub(super) registrar: Arc<Registrar>,
    pub(super) deadlines: Deadlines,
    /// Cancelled when the API stops: ends open watches and keep-alive streams.
    pub(super) shutdown: CancellationToken,
    /// Open streams node-wide and per client, shared with the WebSocket handler.
    pub(super) streams: Arc<StreamLimits>,
}

impl RegistryApi {
    pub fn new(
        registrar: Arc<Registrar>,
        streams: Arc<StreamLimits>,
        shutdown: CancellationToken,
    ) -> RegistryApi {
        let deadlines = Deadlines::for_registrar(&registrar);
        RegistryApi { registrar, deadlines, shutdown, streams }
    }

    /// A stream slot for `req`'s client, or `RESOURCE_EXHAUSTED` naming the limit.
    fn stream_slot<T>(&self, req: &Request<T>) -> Result<StreamGuard, Status> {
        self.streams.acquire(&ClientKey::of_grpc(req)).map_err(errors::too_many_streams)
    }

    /// Awaits a registrar call within `limit`; what a passed deadline answers depends on
    /// `access` (a write's outcome is then unknown).
    async fn bounded<T>(
        &self,
        access: Access,
        what: &str,
        limit: Duration,
        fut: impl Future<Output = Result<T, RegistrarError>>,
    ) -> Result<T, Status> {
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r.map_err(errors::status),
            Err(_) => Err(errors::deadline(access, what, limit)),
        }
    }

    /// A write under the write deadline.
    async fn bounded_write<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, RegistrarError>>,
    ) -> Result<T, Status> {
        self.bounded(Access::Write, what, self.deadlines.write, fut).await
    }

    /// Reads the registry (linearizable unless `stale`) and returns `f`'s answer with the
    /// revision it saw.
    async fn read<R: Send>(
        &self,
        stale: bool,
        f: impl FnOnce(&Registry) -> R + Send,
    ) -> Result<(R, u64), Status> {
        let c = if stale { Consistency::Stale } else { Consistency::Linearizable };
        let read = self.registrar.read(c, |r| (f(r), r.revision().0));
        self.bounded(Access::Read, "the read", self.deadlines.read, read).await
    }
}

fn unexpected(outcome: &Outcome) -> Status {
    Status::internal(format!("internal: the registry answered with an unexpected outcome {outcome:?}"))
}

#[tonic::async_trait]
impl RegistryRpc for RegistryApi {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let new = convert::new_service(req.into_inner());
        let applied = self.bounded_write("the registration", self.registrar.register(new)).await?;
        match applied.outcome {
            Outcome::Registered { service } => Ok(Response::new(pb::RegisterResponse {
                service: Some(service_to_pb(service)),
                revision: applied.revision.0,
            })),
            other => Err(unexpected(&other)),
        }
    }

    async fn update(&self, req: Request<pb::UpdateRequest>) -> Result<Response<pb::UpdateResponse>, Status> {
        let (id, patch) = convert::patch(req.into_inner())?;
        let applied = self.bounded_write("the update", self.registrar.update(id, patch)).await?;
        match applied.outcome {
            Outcome::Updated { service, changed } => Ok(Response::new(pb::UpdateResponse {
                service: Some(service_to_pb(service)),
                changed,
                revision: applied.revision.0,
            })),
            other => Err(unexpected(&other)),
        }
    }

    async fn deregister(
        &self,
        req: Request<pb::DeregisterRequest>,
    ) -> Result<Response<pb::DeregisterResponse>, Status> {
        let id = convert::service_id(req.into_inner().service_id)?;
        let applied = self.bounded_write("the deregistration", self.registrar.deregister(id)).await?;
        match applied.outcome {
            Outcome::Deregistered { service } => Ok(Response::new(pb::DeregisterResponse {
                service: Some(service_to_pb(service)),
                revision: applied.revision.0,
            })),
            other => Err(unexpected(&other)),
        }
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let r = req.into_inner();
        let id = convert::service_id(r.service_id)?;
        let (found, revision) = self.read(r.stale, |reg| reg.get(&id).cloned()).await?;
        let service =
            found.ok_or_else(|| errors::registry_status(crate::registry::RegistryError::NotFound { id }))?;
        Ok(Response::new(pb::GetResponse { service: Some(service_to_pb(service)), revision }))
    }

    async fn list(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::ListResponse>, Status> {
        let r = req.into_inner();
        let filter = Filter {
            service_type: r.r#type,
            tags: r.tags,
            protocol: r.protocol,
            status: convert::status_from_pb("status", r.status)?,
            limit: r.limit.map_or(crate::registry::validate::LIST_LIMIT_DEFAULT, |l| l as usize),
            skip: r.skip as usize,
        };
        let (page, revision) = self.read(r.stale, move |reg| reg.list(&filter)).await?;
        let (services, total) = page.map_err(errors::registry_status)?;
        Ok(Response::new(pb::ListResponse {
            services: services.into_iter().map(service_to_pb).collect(),
            total: total as u64,
            revision,
        }))
    }

    async fn discover(
        &self,
        req: Request<pb::DiscoverRequest>,
    ) -> Result<Response<pb::DiscoverResponse>, Status> {
        let r = req.into_inner();
        let (t, tags) = (r.r#type, r.tags);
        let (found, revision) = self.read(r.stale, move |reg| reg.discover(t.as_deref(), &tags)).await?;
        Ok(Response::new(pb::DiscoverResponse {
            services: found.into_iter().map(service_to_pb).collect(),
            revision,
        }))
    }

    async fn types(&self, req: Request<pb::TypesRequest>) -> Result<Response<pb::TypesResponse>, Status> {
        let (counts, revision) = self.read(req.into_inner().stale, |reg| reg.types()).await?;
        let counts = counts.into_iter().map(|(k, n)| (k, n as u64)).collect();
        Ok(Response::new(pb::TypesResponse { counts, revision }))
    }

    async fn tags(&self, req: Request<pb::TagsRequest>) -> Result<Response<pb::TagsResponse>, Status> {
        let (counts, revision) = self.read(req.into_inner().stale, |reg| reg.tags()).await?;
        let counts = counts.into_iter().map(|(k, n)| (k, n as u64)).collect();
        Ok(Response::new(pb::TagsResponse { counts, revision }))
    }

    async fn expired(
        &self,
        req: Request<pb::ExpiredRequest>,
    ) -> Result<Response<pb::ExpiredResponse>, Status> {
        let (mut found, revision) = self
            .read(req.into_inner().stale, |reg| {
                reg.services().filter(|s| s.status == ServiceStatus::Expired).cloned().collect::<Vec<_>>()
            })
            .await?;
        found.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(Response::new(pb::ExpiredResponse {
            services: found.into_iter().map(service_to_pb).collect(),
            revision,
        }))
    }

    async fn cleanup(
        &self,
        _req: Request<pb::CleanupRequest>,
    ) -> Result<Response<pb::CleanupResponse>, Status> {
        let applied = self.bounded_write("the cleanup", self.registrar.cleanup()).await?;
        match applied.outcome {
            Outcome::CleanedUp { ids } => Ok(Response::new(pb::CleanupResponse {
                removed_ids: ids.into_iter().map(|id| id.0).collect(),
                revision: applied.revision.0,
            })),
            other => Err(unexpected(&other)),
        }
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let service = watch::heartbeat(&self.registrar, self.deadlines.write, req.into_inner()).await?;
        Ok(Response::new(pb::HeartbeatResponse { service: Some(service) }))
    }

    type KeepAliveStream = BoxStream<pb::KeepAliveResponse>;

    async fn keep_alive(
        &self,
        req: Request<Streaming<pb::HeartbeatRequest>>,
    ) -> Result<Response<Self::KeepAliveStream>, Status> {
        let slot = self.stream_slot(&req)?;
        Ok(Response::new(watch::keep_alive(self, req.into_inner(), slot)))
    }

    type WatchStream = BoxStream<pb::WatchResponse>;

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let slot = self.stream_slot(&req)?;
        Ok(Response::new(watch::watch(self, req.into_inner(), slot)))
    }
}
