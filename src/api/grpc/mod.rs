//! The public gRPC API on the API listener (:9999), next to REST and the raft transport:
//! `muster.registry.v1.Registry` ([`registry`], streams in [`watch`]),
//! `muster.cluster.v1.Cluster` ([`cluster`]), server reflection (v1 and v1alpha, so grpcurl
//! 1.8+ can `list` and `describe`) and `grpc.health.v1.Health`.
//!
//! Every public service decodes requests of at most [`REQUEST_BYTES_MAX`] and encodes answers
//! of at most [`RESPONSE_BYTES_MAX`]; over either the caller gets tonic's `OUT_OF_RANGE`
//! naming the size and the limit (the raft and forward services keep their own, larger
//! limits). Streams count against [`crate::api::limits::StreamLimits`].
//!
//! Handlers are thin (etcd's habit): check, call the registrar or read a watch, translate
//! ([`convert`]); every error→status mapping is in [`errors`]. May import `registry`,
//! `replicated::registrar`, `consensus` (leadership, transfer), `membership` and `cluster::plan`
//! (tag names, eligibility); nothing else of the node.

pub mod cluster;
pub mod convert;
pub mod errors;
pub mod registry;
pub mod watch;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;
use tonic_reflection::server::{v1, v1alpha};

use crate::api::limits::StreamLimits;
use crate::consensus::raft::Consensus;
use crate::membership::MemberInfo;
use crate::replicated::registrar::Registrar;
use crate::replicated::RegistryMachine;

/// Generated code for the public protos.
pub mod pb {
    /// `proto/muster/registry/v1/registry.proto`.
    pub mod registry {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("muster.registry.v1");
    }
    /// `proto/muster/cluster/v1/cluster.proto`.
    pub mod cluster {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("muster.cluster.v1");
    }
}

/// Every muster proto, encoded (`build.rs` writes it), for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/muster_descriptor.bin"));

/// The service names reflection advertises (the internal raft and forward services are not).
pub const REGISTRY_SERVICE: &str = "muster.registry.v1.Registry";
pub const CLUSTER_SERVICE: &str = "muster.cluster.v1.Cluster";
const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// Largest request message the public services decode: a service record is at most a few
/// hundred KiB even with every field at its bound (REST caps the same record at 64 KiB).
pub const REQUEST_BYTES_MAX: usize = 1024 * 1024;
/// Largest answer the public services encode: a `List` page of 100 services or a `Discover`
/// answer. 4 MiB is what gRPC clients accept by default (grpc-go, grpcurl, tonic), so an answer
/// over it fails here with a message instead of in the client.
pub const RESPONSE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Why the gRPC services could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("grpc reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// The public gRPC services, ready to mount under their `/package.Service/` paths. `R1`/`R2`
/// are tonic-reflection's (unnameable) service types.
pub struct Services<R1, R2> {
    pub registry: pb::registry::registry_server::RegistryServer<registry::RegistryApi>,
    pub cluster: pb::cluster::cluster_server::ClusterServer<cluster::ClusterApi>,
    pub reflection_v1: v1::ServerReflectionServer<R1>,
    pub reflection_v1alpha: v1alpha::ServerReflectionServer<R2>,
    pub health: HealthServer<HealthService>,
    /// Flip statuses here (e.g. NOT_SERVING while stopping).
    pub health_reporter: HealthReporter,
}

impl Services<(), ()> {
    /// Builds every service; `shutdown` ends open streams when the API stops.
    pub async fn new(
        node_name: String,
        registrar: Arc<Registrar>,
        consensus: Arc<Consensus<RegistryMachine>>,
        members: tokio::sync::watch::Receiver<Arc<Vec<MemberInfo>>>,
        allow_crash: bool,
        streams: Arc<StreamLimits>,
        shutdown: CancellationToken,
    ) -> Result<Services<impl v1::ServerReflection, impl v1alpha::ServerReflection>, GrpcError> {
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .with_service_name(REGISTRY_SERVICE)
                .with_service_name(CLUSTER_SERVICE)
                .with_service_name(HEALTH_SERVICE)
        };
        let reflection_v1 = reflection()
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .build_v1()?
            .max_decoding_message_size(REQUEST_BYTES_MAX)
            .max_encoding_message_size(RESPONSE_BYTES_MAX);
        let reflection_v1alpha = reflection()
            .with_service_name("grpc.reflection.v1alpha.ServerReflection")
            .build_v1alpha()?
            .max_decoding_message_size(REQUEST_BYTES_MAX)
            .max_encoding_message_size(RESPONSE_BYTES_MAX);
        let health_reporter = HealthReporter::new();
        for name in ["", REGISTRY_SERVICE, CLUSTER_SERVICE] {
            health_reporter.set_service_status(name, ServingStatus::Serving).await;
        }
        let health = HealthServer::new(HealthService::from_health_reporter(health_reporter.clone()))
            .max_decoding_message_size(REQUEST_BYTES_MAX)
            .max_encoding_message_size(RESPONSE_BYTES_MAX);
        let registry = pb::registry::registry_server::RegistryServer::new(registry::RegistryApi::new(
            registrar, streams, shutdown,
        ))
        .max_decoding_message_size(REQUEST_BYTES_MAX)
        .max_encoding_message_size(RESPONSE_BYTES_MAX);
        let cluster = pb::cluster::cluster_server::ClusterServer::new(cluster::ClusterApi {
            node_name,
            consensus,
            members,
            allow_crash,
        })
        .max_decoding_message_size(REQUEST_BYTES_MAX)
        .max_encoding_message_size(RESPONSE_BYTES_MAX);
        Ok(Services { registry, cluster, reflection_v1, reflection_v1alpha, health, health_reporter })
    }
}
