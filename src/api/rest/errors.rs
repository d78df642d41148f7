//! The one table from registry, registrar and request errors to HTTP statuses for the REST API
//! under `/api/v1`. Every error answers `{"error": "<kind>", "detail": "<message>"}`; the detail
//! is the registry's own wording, which names the field and the bound (`invalid service: port
//! must be 1–65535 (got 0)`), or axum's, which names what did not decode.
//!
//! A request that passes the handler's deadline answers 503 when it only read (retry) and 504
//! when it wrote (register, update, deregister, cleanup, heartbeat): whether the write was
//! applied is then unknown, as after a leader change ([`RegistrarError::Unknown`]).

use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::grpc::errors::deadline_message;
pub use crate::api::grpc::errors::Access;
use crate::api::limits::TooManyStreams;
use crate::api::ratelimit::Limited;
use crate::registry::{Outcome, RegistryError};
use crate::replicated::registrar::RegistrarError;

/// Why a REST request failed; [`RestError::status`] is the table.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// The registry or the registrar refused or could not finish the request.
    #[error(transparent)]
    Registrar(#[from] RegistrarError),
    /// The handler's own bound on the registrar call passed.
    #[error("{}", deadline_message(*.access, .what, *.after))]
    Deadline { access: Access, what: &'static str, after: Duration },
    /// This node serves the API without a registry (tests, or a node still starting).
    #[error("registry not available on this node")]
    NoRegistry,
    /// The body did not decode: malformed JSON, a wrong type, too large, not JSON.
    #[error("{detail}")]
    Body { status: StatusCode, detail: String },
    /// The query string did not decode (`limit=abc`, `ttl=-1`, ...).
    #[error("{0}")]
    Query(String),
    /// `GET /api/v1/ws` without a valid WebSocket upgrade (axum's reason).
    #[error("{detail}")]
    Upgrade { status: StatusCode, detail: String },
    /// The registry answered with an outcome that does not belong to the command.
    #[error("internal: the registry answered with an unexpected outcome {0}")]
    Unexpected(String),
    /// A WebSocket refused before the upgrade: the node or the client has too many streams.
    #[error(transparent)]
    TooManyStreams(#[from] TooManyStreams),
    /// A write over the client's rate limit; `Retry-After` says when to come back.
    #[error(transparent)]
    RateLimited(#[from] Limited),
}

impl From<RegistryError> for RestError {
    fn from(e: RegistryError) -> Self {
        RestError::Registrar(RegistrarError::Registry(e))
    }
}

impl From<JsonRejection> for RestError {
    fn from(r: JsonRejection) -> Self {
        let status = match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            // Syntax errors (axum: 400) and type errors (axum: 422) alike.
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        RestError::Body { status, detail: r.body_text() }
    }
}

impl From<QueryRejection> for RestError {
    fn from(r: QueryRejection) -> Self {
        RestError::Query(r.body_text())
    }
}

impl RestError {
    pub fn unexpected(outcome: &Outcome) -> RestError {
        RestError::Unexpected(format!("{outcome:?}"))
    }

    /// The table.
    pub fn status(&self) -> StatusCode {
        match self {
            RestError::Registrar(RegistrarError::Registry(e)) => registry_status(e),
            // The registrar forwards to the leader, so NotLeader only escapes when the
            // leader's address is unknown: retry (elsewhere).
            RestError::Registrar(RegistrarError::NotLeader { .. })
            | RestError::Registrar(RegistrarError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            RestError::Registrar(RegistrarError::Unknown(_))
            | RestError::Deadline { access: Access::Write, .. } => StatusCode::GATEWAY_TIMEOUT,
            RestError::Registrar(RegistrarError::Busy { .. })
            | RestError::TooManyStreams(_)
            | RestError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            RestError::Deadline { access: Access::Read, .. } | RestError::NoRegistry => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            RestError::Body { status, .. } | RestError::Upgrade { status, .. } => *status,
            RestError::Query(_) => StatusCode::UNPROCESSABLE_ENTITY,
            RestError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The short `error` field: what kind of failure, stable for clients to match on.
    pub fn kind(&self) -> &'static str {
        match self {
            RestError::Registrar(RegistrarError::Registry(e)) => match e {
                RegistryError::InvalidService { .. } => "invalid service",
                RegistryError::InvalidCommand { .. } => "invalid command",
                RegistryError::InvalidFilter { .. } => "invalid filter",
                RegistryError::NotFound { .. } => "not found",
                RegistryError::AlreadyRegistered { .. } => "already registered",
                RegistryError::Compacted { .. } => "compacted",
                RegistryError::StaleRevision { .. } | RegistryError::InvalidSnapshot { .. } => "internal",
            },
            RestError::Registrar(RegistrarError::NotLeader { .. })
            | RestError::Registrar(RegistrarError::Unavailable(_))
            | RestError::Deadline { access: Access::Read, .. } => "unavailable",
            RestError::Registrar(RegistrarError::Unknown(_))
            | RestError::Deadline { access: Access::Write, .. } => "outcome unknown",
            RestError::Registrar(RegistrarError::Busy { .. }) => "busy",
            RestError::NoRegistry => "registry not available on this node",
            RestError::Body { status, .. } => match *status {
                StatusCode::PAYLOAD_TOO_LARGE => "body too large",
                StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported media type",
                _ => "invalid JSON body",
            },
            RestError::Upgrade { .. } => "not a websocket upgrade",
            RestError::Query(_) => "invalid query",
            RestError::Unexpected(_) => "internal",
            RestError::TooManyStreams(_) => "too many streams",
            RestError::RateLimited(_) => "rate limited",
        }
    }
}

/// The HTTP status for a registry error.
pub fn registry_status(e: &RegistryError) -> StatusCode {
    match e {
        RegistryError::InvalidService { .. }
        | RegistryError::InvalidCommand { .. }
        | RegistryError::InvalidFilter { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        RegistryError::NotFound { .. } => StatusCode::NOT_FOUND,
        RegistryError::AlreadyRegistered { .. } => StatusCode::CONFLICT,
        RegistryError::Compacted { .. } => StatusCode::GONE,
        // Internal to the state machine; never a client's fault.
        RegistryError::StaleRevision { .. } | RegistryError::InvalidSnapshot { .. } => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "error": self.kind(), "detail": self.to_string() });
        let retry_after_s = match &self {
            RestError::RateLimited(l) => l.retry_after_s(),
            _ => 1,
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Revision, ServiceId};

    #[test]
    fn every_error_maps_to_its_status() {
        // Proves the table: each registrar/registry error gets the documented HTTP status and
        // kind, and the detail keeps the registry's message.
        let id = || ServiceId::new("x");
        let deadline = |access, what| RestError::Deadline { access, what, after: Duration::from_secs(11) };
        let port =
            || RegistryError::InvalidService { violations: vec!["port must be 1–65535 (got 0)".into()] };
        let cases: Vec<(RestError, u16, &str)> = vec![
            (port().into(), 422, "invalid service"),
            (RegistryError::InvalidCommand { reason: "ttl".into() }.into(), 422, "invalid command"),
            (RegistryError::InvalidFilter { reason: "limit".into() }.into(), 422, "invalid filter"),
            (RegistryError::NotFound { id: id() }.into(), 404, "not found"),
            (RegistryError::AlreadyRegistered { id: id() }.into(), 409, "already registered"),
            (
                RegistryError::Compacted { requested: Revision(1), oldest_available: Revision(5) }.into(),
                410,
                "compacted",
            ),
            (RegistrarError::NotLeader { leader_id: None, leader_addr: None }.into(), 503, "unavailable"),
            (RegistrarError::Unavailable("no leader".into()).into(), 503, "unavailable"),
            (RegistrarError::Unknown("leader changed".into()).into(), 504, "outcome unknown"),
            (RegistrarError::Busy { pending: 9 }.into(), 429, "busy"),
            (deadline(Access::Read, "the read"), 503, "unavailable"),
            (deadline(Access::Write, "the registration"), 504, "outcome unknown"),
            (RestError::NoRegistry, 503, "registry not available on this node"),
            (RestError::Query("limit: invalid digit".into()), 422, "invalid query"),
        ];
        for (err, status, kind) in cases {
            assert_eq!((err.status().as_u16(), err.kind()), (status, kind), "{err}");
        }
        assert_eq!(RestError::from(port()).to_string(), "invalid service: port must be 1–65535 (got 0)");
        let unknown = RestError::from(RegistrarError::Unknown("x".into()));
        assert!(unknown.to_string().starts_with("outcome unknown: "), "{unknown}");
        let late = deadline(Access::Write, "the update").to_string();
        assert!(
            late.starts_with("outcome unknown: the update did not finish within 11s")
                && late.contains("may or may not have been applied"),
            "a write past its deadline says its outcome is unknown: {late}"
        );
        let late = deadline(Access::Read, "the read").to_string();
        assert_eq!(late, "unavailable: the read did not finish within 11s; retry");
    }

    #[tokio::test]
    async fn limits_answer_429_with_retry_after_and_a_json_error() {
        // Proves stream and write-rate refusals answer 429 with the JSON error shape, the
        // limit in the detail, and Retry-After in whole seconds rounded up.
        use crate::api::limits::ClientKey;
        use crate::api::ratelimit::WriteRate;
        let limited =
            Limited { retry_after: Duration::from_millis(1_200), limit: WriteRate { per_s: 1, burst: 2 } };
        let response = RestError::from(limited).into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "2");
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "rate limited");
        assert_eq!(body["detail"], "write rate limit: 1/s per client (burst 2); retry in 1200 ms");
        let client = ClientKey::of_ip("127.0.0.1".parse().unwrap());
        let streams = RestError::from(TooManyStreams::Client { client, limit: 3 });
        assert_eq!((streams.status().as_u16(), streams.kind()), (429, "too many streams"));
        assert!(streams.to_string().starts_with("too many streams from 127.0.0.1 (limit 3 per client;"));
        let response = streams.into_response();
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "1");
    }
}
