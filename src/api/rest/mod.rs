//! Bitsperity Beacon's REST API under `/api/v1`, over the replicated registry: register,
//! heartbeat, list, get, update, deregister, discover, types, tags, expired, cleanup, health,
//! the OpenAPI document, and the WebSocket event stream `/api/v1/ws` ([`ws`]). Handlers are
//! thin ([`handlers`]): decode, validate with the registry's rules, call the registrar, shape
//! JSON; every error→status mapping is in [`errors`]. Reads are linearizable unless
//! `?stale=true`.
//!
//! [`ROUTES`] is the single list of routes: the router is built from it and the OpenAPI
//! document describes it, so the two cannot disagree. Bodies are capped at [`BODY_BYTES_MAX`].
//!
//! May import `registry`, `replicated::registrar` and the gRPC layer's helpers (`Deadlines`,
//! the id generator, the RFC 3339 formatter) and `logging` (timestamps); nothing else of the
//! node.

mod errors;
mod handlers;
mod ws;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::Router;
use serde_json::{json, Map, Value};

pub use errors::RestError;
pub use ws::WsShutdown;

use super::ApiState;

/// Request bodies larger than this answer 413.
pub const BODY_BYTES_MAX: usize = 64 * 1024;

/// Which handler a route runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Register,
    Heartbeat,
    List,
    Get,
    Update,
    Deregister,
    Discover,
    Types,
    Tags,
    Expired,
    Cleanup,
    Health,
    Events,
    OpenApi,
}

/// A query parameter as documented: name, OpenAPI type, description.
type Param = (&'static str, &'static str, &'static str);

/// One route of the REST API.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    /// axum's and OpenAPI's template syntax alike (`{id}`).
    pub path: &'static str,
    pub summary: &'static str,
    op: Op,
    query: &'static [Param],
    /// The request body's schema name, if any.
    body: Option<&'static str>,
    /// The success body's schema name, if it has one of its own (else a plain object).
    answer: Option<&'static str>,
    /// The success status first, then the error statuses.
    responses: &'static [u16],
}

const STALE: Param =
    ("stale", "boolean", "true: this node's copy, possibly behind the leader (default false)");
const TYPE: Param = ("type", "string", "only services of this type");
const TAGS: Param = ("tags", "string", "comma separated; every tag must be present");
const READ: &[Param] = &[STALE];
const READ_ERRORS: &[u16] = &[200, 422, 503];

/// Every route, in registration order. Static segments (`discover`, `types`, ...) take
/// precedence over `{id}` in axum's router whatever the order.
pub const ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: "/api/v1/services/register",
        summary: "Register a service; a missing service_id gets a random UUID",
        op: Op::Register,
        query: &[],
        body: Some("NewService"),
        answer: Some("Service"),
        responses: &[201, 409, 413, 415, 422, 429, 503, 504],
    },
    Route {
        method: "PUT",
        path: "/api/v1/services/{id}/heartbeat",
        summary: "Renew a service's lease",
        op: Op::Heartbeat,
        query: &[("ttl", "integer", "this lease only, 10–86400 seconds (default: the service's ttl)")],
        body: None,
        answer: Some("Service"),
        responses: &[200, 404, 422, 429, 503, 504],
    },
    Route {
        method: "GET",
        path: "/api/v1/services",
        summary: "List services by name, filtered and paged",
        op: Op::List,
        query: &[
            TYPE,
            TAGS,
            ("protocol", "string", "only services with this protocol"),
            ("status", "string", "active, inactive, expired or unhealthy"),
            ("limit", "integer", "page size, 1–100 (default 50)"),
            ("skip", "integer", "matching services to pass over (default 0)"),
            STALE,
        ],
        body: None,
        answer: Some("ServicePage"),
        responses: READ_ERRORS,
    },
    Route {
        method: "GET",
        path: "/api/v1/services/discover",
        summary: "Active services of a type carrying every tag",
        op: Op::Discover,
        query: &[TYPE, TAGS, STALE],
        body: None,
        answer: Some("ServiceList"),
        responses: READ_ERRORS,
    },
    Route {
        method: "GET",
        path: "/api/v1/services/types",
        summary: "Service types with their counts (expired left out)",
        op: Op::Types,
        query: READ,
        body: None,
        answer: None,
        responses: READ_ERRORS,
    },
    Route {
        method: "GET",
        path: "/api/v1/services/tags",
        summary: "Tags with their counts (expired left out)",
        op: Op::Tags,
        query: READ,
        body: None,
        answer: None,
        responses: READ_ERRORS,
    },
    Route {
        method: "GET",
        path: "/api/v1/services/expired",
        summary: "Services whose lease lapsed, not yet cleaned up",
        op: Op::Expired,
        query: READ,
        body: None,
        answer: Some("ServiceList"),
        responses: READ_ERRORS,
    },
    Route {
        method: "DELETE",
        path: "/api/v1/services/cleanup",
        summary: "Remove the expired services",
        op: Op::Cleanup,
        query: &[],
        body: None,
        answer: None,
        responses: &[200, 503, 504],
    },
    Route {
        method: "GET",
        path: "/api/v1/services/{id}",
        summary: "One service",
        op: Op::Get,
        query: READ,
        body: None,
        answer: Some("Service"),
        responses: &[200, 404, 422, 503],
    },
    Route {
        method: "PUT",
        path: "/api/v1/services/{id}",
        summary: "Change some fields of a service",
        op: Op::Update,
        query: &[],
        body: Some("ServicePatch"),
        answer: Some("Service"),
        responses: &[200, 404, 413, 415, 422, 503, 504],
    },
    Route {
        method: "DELETE",
        path: "/api/v1/services/{id}",
        summary: "Deregister a service",
        op: Op::Deregister,
        query: &[],
        body: None,
        answer: None,
        responses: &[200, 404, 503, 504],
    },
    Route {
        method: "GET",
        path: "/api/v1/health",
        summary: "Services by status, uptime, version, cluster and node",
        op: Op::Health,
        query: READ,
        body: None,
        answer: None,
        responses: &[200, 503],
    },
    Route {
        method: "GET",
        path: "/api/v1/ws",
        summary: "WebSocket: each registry event as a JSON text message (WsMessage), in revision order",
        op: Op::Events,
        query: &[
            ("revision", "integer", "resume after this revision (default: from now)"),
            ("progress_ms", "integer", "idle time before a progress message, 100–60000 ms (default 10000)"),
        ],
        body: None,
        answer: None,
        responses: &[101, 400, 422, 426, 503],
    },
    Route {
        method: "GET",
        path: "/api/v1/openapi.json",
        summary: "This document",
        op: Op::OpenApi,
        query: &[],
        body: None,
        answer: None,
        responses: &[200],
    },
];

fn endpoint(op: Op) -> MethodRouter<Arc<ApiState>> {
    match op {
        Op::Register => post(handlers::register),
        Op::Heartbeat => put(handlers::heartbeat),
        Op::List => get(handlers::list),
        Op::Get => get(handlers::get),
        Op::Update => put(handlers::update),
        Op::Deregister => delete(handlers::deregister),
        Op::Discover => get(handlers::discover),
        Op::Types => get(handlers::types),
        Op::Tags => get(handlers::tags),
        Op::Expired => get(handlers::expired),
        Op::Cleanup => delete(handlers::cleanup),
        Op::Health => get(handlers::health),
        Op::Events => get(ws::ws),
        Op::OpenApi => get(handlers::openapi),
    }
}

/// Every route of [`ROUTES`], bodies capped at [`BODY_BYTES_MAX`].
pub(super) fn router() -> Router<Arc<ApiState>> {
    ROUTES
        .iter()
        .fold(Router::new(), |r, route| r.route(route.path, endpoint(route.op)))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
}

/// The methods [`ROUTES`] serves on `path` (`"PUT or DELETE"`), as the router matches it: a
/// route with only static segments wins over one with `{id}`. `None` when no route matches.
pub(super) fn allowed_methods(path: &str) -> Option<String> {
    let matches = |template: &str, exact: bool| {
        let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
        t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| t == p || (!exact && t.starts_with('{')))
    };
    let exact: Vec<&str> = ROUTES.iter().filter(|r| matches(r.path, true)).map(|r| r.method).collect();
    let methods = if exact.is_empty() {
        ROUTES.iter().filter(|r| matches(r.path, false)).map(|r| r.method).collect()
    } else {
        exact
    };
    (!methods.is_empty()).then(|| methods.join(" or "))
}

fn reason(code: u16) -> &'static str {
    match code {
        101 => "Switching Protocols: the event stream follows as WebSocket text messages",
        200 => "OK",
        201 => "Created",
        400 => "Not a WebSocket upgrade request",
        404 => "No service with this id",
        409 => "A service with this service_id is registered already",
        410 => "History compacted",
        413 => "Body larger than 64 KiB",
        415 => "Body is not application/json",
        422 => "Invalid service, command, filter, JSON or query; `detail` names the field and bound",
        426 => "The connection cannot be upgraded to a WebSocket",
        429 => "Too many heartbeats wait for their checkpoint; retry shortly",
        503 => "No leader, no quorum, a read's deadline passed, or no registry on this node; retry",
        504 => "Outcome unknown: the write did not finish in time or the leader changed while it was in flight; read before retrying",
        _ => "",
    }
}

/// The OpenAPI 3.0 document for [`ROUTES`].
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let mut params: Vec<Value> = route
            .query
            .iter()
            .map(|(name, ty, desc)| {
                json!({"name": name, "in": "query", "required": false, "description": desc, "schema": {"type": ty}})
            })
            .collect();
        if route.path.contains("{id}") {
            params.insert(
                0,
                json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}),
            );
        }
        let responses: Map<String, Value> = route
            .responses
            .iter()
            .map(|code| {
                if *code == 101 {
                    return (code.to_string(), json!({"description": reason(*code)}));
                }
                let schema = match (*code < 300, route.answer) {
                    (true, Some(name)) => json!({"$ref": format!("#/components/schemas/{name}")}),
                    (true, None) => json!({"type": "object"}),
                    (false, _) => json!({"$ref": "#/components/schemas/Error"}),
                };
                let content = json!({"application/json": {"schema": schema}});
                (code.to_string(), json!({"description": reason(*code), "content": content}))
            })
            .collect();
        let mut op = json!({"summary": route.summary, "parameters": params, "responses": responses});
        if let Some(schema) = route.body {
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}},
            });
        }
        let entry = paths.entry(route.path.to_string()).or_insert_with(|| json!({}));
        entry[route.method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "muster registry (Bitsperity Beacon compatible)",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "paths": paths,
        "components": {"schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "detail"],
                "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
            },
            "NewService": {
                "type": "object",
                "required": ["name", "type", "host", "port"],
                "properties": {
                    "service_id": {"type": "string"}, "name": {"type": "string"}, "type": {"type": "string"},
                    "host": {"type": "string"}, "port": {"type": "integer"}, "protocol": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                    "ttl": {"type": "integer"}, "health_check_url": {"type": "string", "nullable": true},
                    "health_check_interval": {"type": "integer"},
                    "health_check_timeout": {"type": "integer"},
                    "health_check_unhealthy_threshold": {"type": "integer"},
                    "health_check_healthy_threshold": {"type": "integer"},
                    "mdns_service_type": {"type": "string", "nullable": true},
                    "mdns_txt_records": {"type": "object", "additionalProperties": {"type": "string"}},
                    "description": {"type": "string", "nullable": true},
                    "version": {"type": "string", "nullable": true},
                },
            },
            "ServicePatch": {
                "type": "object",
                "description": "Any NewService field but service_id, plus status (active or inactive); null clears an optional field",
            },
            "Service": service_schema(),
            "ServiceList": {
                "type": "object",
                "properties": {
                    "services": {"type": "array", "items": {"$ref": "#/components/schemas/Service"}},
                    "total": {"type": "integer"},
                    "revision": {"type": "integer", "description": "the registry revision the read saw"},
                },
            },
            "ServicePage": {
                "type": "object",
                "properties": {
                    "services": {"type": "array", "items": {"$ref": "#/components/schemas/Service"}},
                    "total": {"type": "integer", "description": "matching services in all"},
                    "limit": {"type": "integer"}, "skip": {"type": "integer"},
                    "revision": {"type": "integer", "description": "the registry revision the read saw"},
                },
            },
            "WsMessage": {
                "type": "object",
                "required": ["type"],
                "description": "One WebSocket text message: an event (service_registered, service_updated, service_deregistered, service_expired, health_status_changed) with revision, service and timestamp; progress (revision: nothing changed through it); or compacted (oldest_available: resume after it), followed by a close. A client too slow to take its messages is closed with 1008 and a reason.",
                "properties": {
                    "type": {"type": "string"}, "revision": {"type": "integer"},
                    "service": {"$ref": "#/components/schemas/Service"},
                    "timestamp": {"type": "string", "format": "date-time"},
                    "oldest_available": {"type": "integer"},
                },
            },
        }},
    })
}

/// A service as the API returns it ([`handlers::ServiceView`]): each time twice, as unix
/// milliseconds and as ISO-8601 UTC with milliseconds.
fn service_schema() -> Value {
    let text = json!({"type": "string"});
    let optional = json!({"type": "string", "nullable": true});
    let map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let int = json!({"type": "integer"});
    let mut properties = Map::new();
    for (name, schema) in [
        ("service_id", &text),
        ("name", &text),
        ("type", &text),
        ("host", &text),
        ("port", &int),
        ("protocol", &text),
        ("metadata", &map),
        ("ttl", &int),
        ("health_check_url", &optional),
        ("health_check_interval", &int),
        ("health_check_timeout", &int),
        ("health_check_unhealthy_threshold", &int),
        ("health_check_healthy_threshold", &int),
        ("mdns_service_type", &optional),
        ("mdns_txt_records", &map),
        ("description", &optional),
        ("version", &optional),
    ] {
        properties.insert(name.into(), schema.clone());
    }
    properties.insert("tags".into(), json!({"type": "array", "items": {"type": "string"}}));
    properties.insert(
        "last_health_check".into(),
        json!({
            "type": "object",
            "nullable": true,
            "description": "the last health check's result; null before the first check",
            "required": ["at_ms", "at", "ok", "latency_ms", "error", "consecutive_failures", "consecutive_successes"],
            "properties": {
                "at_ms": {"type": "integer"},
                "at": {"type": "string", "format": "date-time"},
                "ok": {"type": "boolean"},
                "latency_ms": {"type": "integer"},
                "error": {"type": "string", "nullable": true},
                "consecutive_failures": {"type": "integer"},
                "consecutive_successes": {"type": "integer"},
            },
        }),
    );
    let statuses = ["active", "inactive", "expired", "unhealthy"];
    properties.insert("status".into(), json!({"type": "string", "enum": statuses}));
    for time in ["created_at", "updated_at", "last_heartbeat", "expires_at"] {
        let ms = json!({"type": "integer", "description": format!("{time} as unix milliseconds")});
        properties.insert(format!("{time}_ms"), ms);
        let iso = json!({"type": "string", "format": "date-time", "example": "2026-11-24T02:51:00.273Z"});
        properties.insert(time.into(), iso);
    }
    let required: Vec<&String> = properties.keys().collect();
    json!({"type": "object", "required": required, "properties": properties})
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::watch;
    use tokio_util::sync::CancellationToken;

    use super::*;

    #[test]
    fn the_document_lists_exactly_the_routes() {
        // Proves every (method, path) in ROUTES is in the OpenAPI document's paths, with its
        // responses, and nothing else is.
        let doc = openapi();
        assert_eq!(doc["openapi"], "3.0.3");
        let paths = doc["paths"].as_object().unwrap();
        let mut documented = BTreeSet::new();
        for (path, methods) in paths {
            for (method, op) in methods.as_object().unwrap() {
                assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}");
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
        let routes: BTreeSet<(String, String)> =
            ROUTES.iter().map(|r| (r.method.to_string(), r.path.to_string())).collect();
        assert_eq!(routes.len(), ROUTES.len(), "a route is listed twice");
        assert_eq!(documented, routes);
        let list = &paths["/api/v1/services"]["get"]["parameters"];
        let names: Vec<&str> = list.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["type", "tags", "protocol", "status", "limit", "skip", "stale"]);
        assert_eq!(paths["/api/v1/services/{id}"]["get"]["parameters"][0]["in"], "path");
    }

    #[test]
    fn a_service_carries_exactly_the_documented_fields_with_iso_times() {
        // Proves the JSON of a service (REST answers and WebSocket events) has exactly the
        // properties the OpenAPI Service schema lists, and each ISO time is the RFC 3339 UTC
        // form, with milliseconds, of its `_ms` twin.
        let mut service = crate::registry::Service {
            id: "s-1".into(),
            name: "web".into(),
            service_type: "http".into(),
            host: "h".into(),
            port: 80,
            protocol: "http".into(),
            tags: vec!["a".into()],
            metadata: Default::default(),
            ttl_seconds: 30,
            status: crate::registry::Status::Active,
            health_check_url: Some("tcp://h:80".into()),
            health_check_interval: 60,
            health_check_timeout: 5,
            health_check_unhealthy_threshold: 3,
            health_check_healthy_threshold: 2,
            last_health_check: Some(crate::registry::HealthCheck {
                at_ms: 1_795_488_660_000,
                ok: false,
                latency_ms: 12,
                error: Some("connect to h:80: refused".into()),
                consecutive_failures: 1,
                consecutive_successes: 0,
            }),
            mdns_service_type: None,
            mdns_txt_records: Default::default(),
            description: None,
            version: None,
            created_at_ms: 1_795_488_660_273,
            updated_at_ms: 1_795_488_660_274,
            last_heartbeat_ms: 0,
            expires_at_ms: 1_795_488_690_999,
        };
        let json = serde_json::to_value(handlers::ServiceView::from(service.clone())).unwrap();
        let fields: BTreeSet<&String> = json.as_object().unwrap().keys().collect();
        let schema = service_schema();
        let documented: BTreeSet<&String> = schema["properties"].as_object().unwrap().keys().collect();
        assert_eq!(fields, documented, "the Service schema lists every field the API sends, no more");
        let want = [
            ("created_at", "2026-11-24T02:51:00.273Z"),
            ("updated_at", "2026-11-24T02:51:00.274Z"),
            ("last_heartbeat", "1970-01-01T00:00:00.000Z"),
            ("expires_at", "2026-11-24T02:51:30.999Z"),
        ];
        let check = &json["last_health_check"];
        let check_fields: BTreeSet<&String> = check.as_object().unwrap().keys().collect();
        let check_schema = &schema["properties"]["last_health_check"]["properties"];
        let documented: BTreeSet<&String> = check_schema.as_object().unwrap().keys().collect();
        assert_eq!(check_fields, documented, "the last_health_check schema lists every field");
        assert_eq!(check["at"], "2026-11-24T02:51:00.000Z");
        for (field, iso) in want {
            assert_eq!(json[field], iso, "{field} as ISO-8601 UTC with milliseconds: {json}");
        }
        service.expires_at_ms += 1;
        let json = serde_json::to_value(handlers::ServiceView::from(service)).unwrap();
        assert_eq!(json["expires_at"], "2026-11-24T02:51:31.000Z", "{json}");
        assert_eq!(json["expires_at_ms"], 1_795_488_691_000_u64, "the _ms field stays: {json}");
    }

    async fn raw(addr: &str, method: &str, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req =
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await.unwrap().unwrap();
        let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, out)
    }

    #[tokio::test]
    async fn every_route_is_served_and_answers_503_without_a_registry() {
        // Proves the router serves every route in ROUTES (none falls to 404/405, so none is
        // captured by another), that without a registrar the registry routes answer 503 with
        // the JSON error shape, and that the document itself is served.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = ApiState::for_tests(watch::channel(Arc::new(Vec::new())).1);
        let shutdown = CancellationToken::new();
        tokio::spawn(crate::api::serve(listener, state, shutdown.clone()));
        for route in ROUTES {
            let path = route.path.replace("{id}", "some-id");
            let (status, out) = raw(&addr, route.method, &path).await;
            if route.op == Op::OpenApi {
                assert_eq!(status, 200, "{out}");
                assert!(out.contains("\"openapi\":\"3.0.3\""), "{out}");
            } else {
                assert_eq!(status, 503, "{} {path}: {out}", route.method);
                let want = r#"{"detail":"registry not available on this node","error":"registry not available on this node"}"#;
                assert!(out.ends_with(want), "{} {path}: {out}", route.method);
            }
        }
        // A static segment with another method is not captured by /services/{id}, and the
        // 405 names the methods the path takes.
        let (status, out) = raw(&addr, "GET", "/api/v1/services/cleanup").await;
        assert!(status == 405 && out.ends_with("use DELETE\"}"), "{out}");
        let (status, out) = raw(&addr, "POST", "/api/v1/services/x").await;
        assert!(status == 405 && out.ends_with("use GET or PUT or DELETE\"}"), "{out}");
        shutdown.cancel();
    }
}
