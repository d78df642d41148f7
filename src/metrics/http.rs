//! The API's side of metrics: [`track`], the middleware that counts every request (gRPC and
//! HTTP) by a bounded `method` label and its `code`, and [`response`], the `/metrics` answer.
//!
//! The `method` label is the gRPC path (`/muster.registry.v1.Registry/List`) for a gRPC call,
//! `VERB route` with axum's route template (`PUT /api/v1/services/{id}/heartbeat`) for HTTP,
//! never a raw path; a request no route matched is `unmatched`, and a gRPC call the service
//! does not know (UNIMPLEMENTED) keeps the route template, so clients cannot grow the label
//! set. The `code` is the gRPC status name when the response head carries `grpc-status`, else
//! the HTTP status.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::catalog::API;
use super::encode::CONTENT_TYPE;

/// The `method` of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// Counts one request and its time to the response head.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let verb = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let grpc_status = response.headers().get("grpc-status").and_then(|v| v.to_str().ok());
    let code = match grpc_status.and_then(|s| s.parse::<u16>().ok()) {
        Some(n) => grpc_code_name(n).to_string(),
        None => response.status().as_str().to_string(),
    };
    let method = method_label(grpc, &verb, &path, route.as_deref(), &code);
    API.request(&method, &code, started.elapsed().as_secs_f64());
    response
}

/// The bounded `method` label of a request (see the module doc).
pub fn method_label(grpc: bool, verb: &Method, path: &str, route: Option<&str>, code: &str) -> String {
    let Some(route) = route else { return UNMATCHED.to_string() };
    if grpc {
        return if code == "UNIMPLEMENTED" { route.to_string() } else { path.to_string() };
    }
    format!("{} {route}", verb_label(verb))
}

/// Standard HTTP verbs as they are; any extension method is `OTHER`.
fn verb_label(verb: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    const NAMES: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"];
    KNOWN.iter().position(|m| m == verb).map_or("OTHER", |i| NAMES[i])
}

/// gRPC's canonical name of a status code (`OK`, `NOT_FOUND`, ...); `UNKNOWN` for numbers gRPC
/// does not define.
pub fn grpc_code_name(code: u16) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(usize::from(code)).copied().unwrap_or("UNKNOWN")
}

/// The `/metrics` answer: `text` with Prometheus' content type.
pub fn response(text: String) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_bounded() {
        // Proves the label table: gRPC calls by path, unknown gRPC methods by their route,
        // HTTP by verb and route template (never the raw path), extension verbs folded, and
        // anything without a route one value.
        let reg = Some("/muster.registry.v1.Registry/{*rpc}");
        let list = "/muster.registry.v1.Registry/List";
        assert_eq!(method_label(true, &Method::POST, list, reg, "OK"), list);
        assert_eq!(
            method_label(true, &Method::POST, "/muster.registry.v1.Registry/Nope", reg, "UNIMPLEMENTED"),
            "/muster.registry.v1.Registry/{*rpc}"
        );
        let hb = Some("/api/v1/services/{id}/heartbeat");
        assert_eq!(
            method_label(false, &Method::PUT, "/api/v1/services/abc/heartbeat", hb, "200"),
            "PUT /api/v1/services/{id}/heartbeat"
        );
        let odd = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(false, &odd, "/health", Some("/health"), "405"), "OTHER /health");
        assert_eq!(method_label(false, &Method::GET, "/x/1", None, "404"), UNMATCHED);
        assert_eq!(method_label(true, &Method::POST, "/a.B/C", None, "UNIMPLEMENTED"), UNMATCHED);
    }

    #[test]
    fn grpc_codes_have_their_canonical_names() {
        // Proves the code table against gRPC's numbering at both ends and in the middle.
        assert_eq!(grpc_code_name(0), "OK");
        assert_eq!(grpc_code_name(5), "NOT_FOUND");
        assert_eq!(grpc_code_name(12), "UNIMPLEMENTED");
        assert_eq!(grpc_code_name(16), "UNAUTHENTICATED");
        assert_eq!(grpc_code_name(99), "UNKNOWN");
    }
}
