//! Who may call what on the API port. [`classify`] is the one table from a request (method
//! and path, gRPC or REST) to what it needs; [`authorize`] is the middleware that checks it:
//! - open: health checks, reflection, the OpenAPI document, the dashboard's page and assets;
//! - node: raft and write forwarding between nodes; with TLS on, only a connection that showed
//!   a node certificate of this cluster (`server.<cluster>.muster`, verified against the CA);
//! - a token scope (read, write, operator) when the node has a tokens file: the secret comes
//!   in `authorization: Bearer …` (gRPC metadata or an HTTP header; the WebSocket also takes
//!   `?token=`, since browsers cannot set its headers).
//!
//! Missing and unknown tokens answer 401 / UNAUTHENTICATED, a token of too small a scope 403 /
//! PERMISSION_DENIED; each message says what was expected. Secrets are never logged. Writes
//! (write and operator calls) then pass the per-client rate limit: the client is the token
//! when there is one, else the peer's IP; over it, 429 with Retry-After / RESOURCE_EXHAUSTED.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::limits::ClientKey;
use super::listen::{error_response, is_grpc, Peer};
use super::ratelimit::{Limited, WriteLimiter};
use crate::tokens::{bearer, Denied, Scope, SharedTokens};

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone.
    Open,
    /// Another node of the cluster.
    Node,
    /// A token of at least this scope (when the node has tokens).
    Scope(Scope),
}

/// Raft and the leader-forwarding service: node to node only.
const NODE_SERVICES: &[&str] = &["muster.raft.v1.Raft", "muster.internal.v1.Forward"];
/// Services anyone may call: health and the schema.
const OPEN_SERVICES: &[&str] = &[
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];
/// Registry calls that change it.
const REGISTRY_WRITES: &[&str] = &["Register", "Update", "Deregister", "Heartbeat", "KeepAlive", "Cleanup"];
/// Cluster calls that change it.
const CLUSTER_OPERATIONS: &[&str] = &["TransferLeadership", "Leave", "Crash"];
/// HTTP paths anyone may read.
const OPEN_PATHS: &[&str] = &["/health", "/api/v1/health", "/api/v1/openapi.json"];
/// The WebSocket path, which also takes `?token=`.
const WS_PATH: &str = "/api/v1/ws";

/// What a request with `method` on `path` needs.
pub fn classify(method: &Method, path: &str) -> Need {
    if let Some((service, rpc)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) {
        if NODE_SERVICES.contains(&service) {
            return Need::Node;
        }
        if OPEN_SERVICES.contains(&service) {
            return Need::Open;
        }
        if service == "muster.registry.v1.Registry" {
            return Need::Scope(if REGISTRY_WRITES.contains(&rpc) { Scope::Write } else { Scope::Read });
        }
        if service == "muster.cluster.v1.Cluster" {
            return Need::Scope(if CLUSTER_OPERATIONS.contains(&rpc) {
                Scope::Operator
            } else {
                Scope::Read
            });
        }
    }
    if OPEN_PATHS.contains(&path) {
        return Need::Open;
    }
    // The dashboard's page and assets; the data they read still needs a token.
    if path == "/" || path == "/ui" || path.starts_with("/ui/") {
        return Need::Open;
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        Need::Scope(Scope::Read)
    } else {
        Need::Scope(Scope::Write)
    }
}

/// What [`authorize`] checks against.
#[derive(Debug, Default)]
pub struct Access {
    /// The node's tokens; none: calls need no token.
    pub tokens: Option<Arc<SharedTokens>>,
    /// With TLS: the cluster whose node certificate node-to-node calls must show.
    pub node_cluster: Option<String>,
    /// Per-client write rate for `write` and `operator` calls; the client is the token's name
    /// when a token was checked, else the peer's IP. None: unlimited.
    pub writes: Option<Arc<WriteLimiter>>,
}

impl Access {
    /// No tokens, no TLS: everything open (tests, loopback demos).
    pub fn open() -> Access {
        Access::default()
    }
}

/// The secret a request presents: its bearer token, or on the WebSocket path `?token=`.
fn presented(req: &Request) -> Option<String> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        return Some(value.to_str().ok().and_then(bearer).unwrap_or("").to_string());
    }
    if req.uri().path() != WS_PATH {
        return None;
    }
    let query = req.uri().query()?;
    query.split('&').find_map(|pair| pair.strip_prefix("token=")).map(String::from)
}

fn denial(grpc: bool, denied: &Denied) -> Response {
    let (code, http) = if denied.is_authentication() {
        (tonic::Code::Unauthenticated, StatusCode::UNAUTHORIZED)
    } else {
        (tonic::Code::PermissionDenied, StatusCode::FORBIDDEN)
    };
    let mut response = error_response(grpc, code, http, denied.to_string());
    if http == StatusCode::UNAUTHORIZED && !grpc {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"muster\""));
    }
    response
}

/// A write over its client's rate: `429` with `Retry-After` (REST) or `RESOURCE_EXHAUSTED`.
fn rate_limited(grpc: bool, limited: &Limited) -> Response {
    if grpc {
        return super::grpc::errors::rate_limited(limited).into_http();
    }
    axum::response::IntoResponse::into_response(super::rest::RestError::RateLimited(limited.clone()))
}

/// The middleware: lets a request through or answers it with why not.
pub async fn authorize(State(access): State<Arc<Access>>, req: Request, next: Next) -> Response {
    match check(&access, &req) {
        Ok(()) => next.run(req).await,
        Err(refusal) => {
            if !is_grpc(&req) {
                drain(req).await;
            }
            *refusal
        }
    }
}

/// The most of a refused request's body read before answering, and how long that may take.
const DRAIN_BYTES_MAX: usize = super::rest::BODY_BYTES_MAX;
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads (and drops) a refused HTTP request's body, bounded, so that an HTTP/2 client sees
/// the answer and a clean end of the stream rather than a reset while it is still sending.
async fn drain(req: Request) {
    let body = axum::body::to_bytes(req.into_body(), DRAIN_BYTES_MAX);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, body).await;
}

/// Lets a request through, or answers it with why not.
fn check(access: &Access, req: &Request) -> Result<(), Box<Response>> {
    let need = classify(req.method(), req.uri().path());
    let grpc = is_grpc(req);
    match need {
        Need::Open => {}
        Need::Node => {
            if let Some(cluster) = &access.node_cluster {
                let cert = req.extensions().get::<Peer>().and_then(|p| p.cert.clone());
                if !cert.as_ref().is_some_and(|c| c.is_node_of(cluster)) {
                    let shown = match &cert {
                        None => "no certificate".to_string(),
                        Some(c) => format!("a certificate for {}", c.names.join(", ")),
                    };
                    tracing::debug!(http.path = %req.uri().path(), shown = %shown, "api: node call refused");
                    let message = format!(
                        "raft and forwarding calls need a node certificate of cluster '{cluster}' \
                         (server.{cluster}.muster); this connection showed {shown}"
                    );
                    return Err(Box::new(error_response(
                        grpc,
                        tonic::Code::PermissionDenied,
                        StatusCode::FORBIDDEN,
                        message,
                    )));
                }
            }
        }
        Need::Scope(scope) => {
            let mut client = None;
            if let Some(tokens) = &access.tokens {
                let secret = presented(req);
                match tokens.current().check(secret.as_deref(), scope) {
                    Ok(token) => client = Some(format!("token:{}", token.name)),
                    Err(denied) => {
                        tracing::debug!(http.path = %req.uri().path(), reason = %denied, "api: call denied");
                        return Err(Box::new(denial(grpc, &denied)));
                    }
                }
            }
            if let (Some(writes), true) = (&access.writes, scope >= Scope::Write) {
                let client = client.unwrap_or_else(|| {
                    ClientKey::from_extensions(req.extensions(), None).as_str().to_string()
                });
                if let Err(limited) = writes.check(&client, std::time::Instant::now()) {
                    tracing::debug!(http.path = %req.uri().path(), client = %client, "api: write over the rate limit");
                    return Err(Box::new(rate_limited(grpc, &limited)));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_covers_grpc_and_rest() {
        // Proves the table: node services, open services and paths, read/write/operator calls.
        let post = Method::POST;
        let c = |m: &Method, p: &str| classify(m, p);
        assert_eq!(c(&post, "/muster.raft.v1.Raft/AppendEntries"), Need::Node);
        assert_eq!(c(&post, "/muster.internal.v1.Forward/Propose"), Need::Node);
        assert_eq!(c(&post, "/grpc.health.v1.Health/Check"), Need::Open);
        assert_eq!(c(&post, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"), Need::Open);
        assert_eq!(c(&post, "/muster.registry.v1.Registry/Register"), Need::Scope(Scope::Write));
        assert_eq!(c(&post, "/muster.registry.v1.Registry/KeepAlive"), Need::Scope(Scope::Write));
        assert_eq!(c(&post, "/muster.registry.v1.Registry/List"), Need::Scope(Scope::Read));
        assert_eq!(c(&post, "/muster.registry.v1.Registry/Watch"), Need::Scope(Scope::Read));
        assert_eq!(c(&post, "/muster.cluster.v1.Cluster/Status"), Need::Scope(Scope::Read));
        assert_eq!(c(&post, "/muster.cluster.v1.Cluster/TransferLeadership"), Need::Scope(Scope::Operator));
        assert_eq!(c(&Method::GET, "/health"), Need::Open);
        assert_eq!(c(&Method::GET, "/api/v1/openapi.json"), Need::Open);
        assert_eq!(c(&Method::GET, "/api/v1/services"), Need::Scope(Scope::Read));
        assert_eq!(c(&Method::GET, "/api/v1/ws"), Need::Scope(Scope::Read));
        assert_eq!(c(&Method::GET, "/v1/members"), Need::Scope(Scope::Read));
        assert_eq!(c(&Method::GET, "/metrics"), Need::Scope(Scope::Read));
        assert_eq!(c(&Method::GET, "/"), Need::Open);
        assert_eq!(c(&Method::GET, "/ui/dashboard.js"), Need::Open);
        assert_eq!(c(&Method::GET, "/v1/raft"), Need::Scope(Scope::Read));
        assert_eq!(c(&post, "/api/v1/services/register"), Need::Scope(Scope::Write));
        assert_eq!(c(&Method::PUT, "/api/v1/services/x/heartbeat"), Need::Scope(Scope::Write));
        assert_eq!(c(&Method::DELETE, "/api/v1/services/cleanup"), Need::Scope(Scope::Write));
    }

    #[test]
    fn the_token_comes_from_the_header_or_the_websocket_query() {
        // Proves where secrets are read from, and that other paths ignore ?token=.
        let req = |uri: &str, auth: Option<&str>| {
            let mut b = axum::http::Request::builder().uri(uri);
            if let Some(a) = auth {
                b = b.header(header::AUTHORIZATION, a);
            }
            b.body(axum::body::Body::empty()).unwrap()
        };
        assert_eq!(presented(&req("/api/v1/services", Some("Bearer abc"))).as_deref(), Some("abc"));
        assert_eq!(presented(&req("/api/v1/services", Some("Basic abc"))).as_deref(), Some(""));
        assert_eq!(presented(&req("/api/v1/services?token=abc", None)), None);
        assert_eq!(presented(&req("/api/v1/ws?from=3&token=abc", None)).as_deref(), Some("abc"));
        assert_eq!(presented(&req("/api/v1/ws", None)), None);
    }
}
