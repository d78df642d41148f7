//! The node's HTTP API on the API listener (axum): `GET /health`, `GET /discovery` (the seed's
//! shapes) and `GET /v1/members`. Handlers only read the membership watch and shape JSON; every
//! error maps to a status in one table ([`ApiError::status`]) and answers `{"error": ".."}`.
//!
//! May import `membership`, `config` (defaults) and `logging` (timestamps); nothing above them.
//! The public gRPC API lives in [`grpc`], Beacon's REST API under `/api/v1` in [`rest`]; both
//! call the registrar (their own module docs list what they may import). `GET /metrics` lives in
//! [`scrape`]; `metrics::http::track` counts every request, gRPC included.

pub mod access;
pub mod dashboard;
mod filter;
pub mod grpc;
mod handlers;
pub mod limits;
pub mod listen;
pub mod ratelimit;
pub mod rest;
mod scrape;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use filter::{FilterError, MemberFilter};

use crate::membership::MemberInfo;

/// The member tag through which a node publishes its API port; `/discovery` reads it and falls
/// back to 9999.
pub const HTTP_PORT_TAG: &str = "http_port";

/// What the handlers read. Cheap to share: the membership view is a watch of an `Arc`.
pub struct ApiState {
    pub node_name: String,
    pub cluster: String,
    /// `env!("CARGO_PKG_VERSION")`.
    pub version: &'static str,
    pub started: Instant,
    pub members: watch::Receiver<Arc<Vec<MemberInfo>>>,
    pub leadership: watch::Receiver<crate::consensus::leadership::Leadership>,
    /// This node's raft cluster, other clusters in gossip, and merges.
    pub raft_cluster: watch::Receiver<crate::membership::RaftClusterInfo>,
    /// The registry's read and write path, for `/api/v1`; `None` → those routes answer 503.
    pub registrar: Option<Arc<crate::replicated::registrar::Registrar>>,
    /// The stack supervisor's status, for `/discovery` and `GET /v1/stack`; `None` → no
    /// supervisor runs (tests).
    pub supervisor: Option<watch::Receiver<crate::supervisor::supervise::SupervisorStatus>>,
    /// Per-client limits: open streams (shared with the gRPC services) and the write rate
    /// (`limits.writes.check(client, now)`, for the request middleware).
    pub limits: Arc<limits::ApiLimits>,
}

impl ApiState {
    /// A state with no registry, no supervisor, no leader known and `members` as the view.
    #[cfg(test)]
    pub(crate) fn for_tests(members: watch::Receiver<Arc<Vec<MemberInfo>>>) -> ApiState {
        ApiState {
            node_name: "self".into(),
            cluster: "muster".into(),
            version: env!("CARGO_PKG_VERSION"),
            started: Instant::now(),
            members,
            leadership: watch::channel(crate::consensus::leadership::Leadership::unknown()).1,
            raft_cluster: watch::channel(Default::default()).1,
            registrar: None,
            supervisor: None,
            limits: Default::default(),
        }
    }

    /// The current membership view (released from the watch at once).
    fn members_now(&self) -> Arc<Vec<MemberInfo>> {
        Arc::clone(&self.members.borrow())
    }
}

/// Every route of the API.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/health", get(handlers::health))
        .route("/discovery", get(handlers::discovery))
        .route("/v1/stack", get(handlers::stack))
        .route("/v1/members", get(handlers::members))
        .route("/metrics", get(scrape::metrics))
        .merge(rest::router())
        .merge(dashboard::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(log_request))
        .with_state(Arc::new(state))
}

/// Serves [`router`] on `listener` until `shutdown` is cancelled, then stops accepting and
/// waits for in-flight requests (the node bounds that wait with its own grace period). The
/// caller logs the listening address. Plain HTTP, no tokens.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, state, Router::new(), ServeOptions::default(), shutdown).await
}

/// How the API port is protected.
#[derive(Clone)]
pub struct ServeOptions {
    pub listen: listen::ListenOptions,
    pub access: Arc<access::Access>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions { listen: listen::ListenOptions::default(), access: Arc::new(access::Access::open()) }
    }
}

/// Like [`serve`], with more routes on the same listener (the gRPC services, HTTP/2, ride next
/// to REST and the dashboard, HTTP/1.1), TLS and access checks from `opts`.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: ApiState,
    grpc: Router,
    opts: ServeOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // Upgraded WebSockets outlive the graceful shutdown; they watch the token themselves.
    let app = grpc
        .merge(router(state))
        .layer(middleware::from_fn_with_state(opts.access, access::authorize))
        .layer(axum::Extension(rest::WsShutdown(shutdown.clone())))
        // Outermost, so that refused calls and gRPC count too.
        .layer(middleware::from_fn(crate::metrics::http::track));
    listen::serve(listener, app, opts.listen, shutdown).await?;
    tracing::info!("api: stopped");
    Ok(())
}

/// Why a request failed; [`ApiError::status`] is the one error→status table.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid query parameter '{param}': {reason}")]
    BadQuery { param: String, reason: String },
    #[error("no route for {method} {path}")]
    NotFound { method: Method, path: String },
    #[error("{method} is not allowed on {path}; use {allowed}")]
    MethodNotAllowed { method: Method, path: String, allowed: String },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadQuery { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

impl From<FilterError> for ApiError {
    fn from(err: FilterError) -> Self {
        ApiError::BadQuery { param: err.param().to_string(), reason: err.to_string() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() });
        (self.status(), Json(body)).into_response()
    }
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound { method, path: uri.path().to_string() }
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    let allowed = rest::allowed_methods(uri.path()).unwrap_or_else(|| "GET".to_string());
    ApiError::MethodNotAllowed { method, path: uri.path().to_string(), allowed }
}

/// One debug line per request.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    tracing::debug!(http.method = %method, http.path = %path, http.status = response.status().as_u16(), "api: request");
    response
}
