//! The operator dashboard: one static page (`GET /`, also `/ui` and `/ui/`) and its scripts
//! (three ES modules) and style sheet under `/ui/`, embedded in the binary with
//! `include_str!`; plain HTML, CSS and vanilla JavaScript, no build step and nothing fetched
//! from elsewhere, so it works offline.
//! The page reads the node's own JSON (`/health`, `/v1/members`, `/v1/raft`, `/v1/stack`,
//! `/api/v1/services`) and follows `/api/v1/ws`; with tokens on it asks for one when a call
//! answers 401. The assets are open (see `access::classify`); the data calls are not.
//!
//! Caching: every asset answers `Cache-Control: no-cache` with an `ETag` taken from the
//! asset's bytes, so a browser revalidates each load, gets `304` while the binary is the same
//! and the new asset as soon as a new binary serves a different one.
//!
//! Also serves `GET /v1/raft` ([`raft`]): the raft view with voter and learner names, which
//! `/health` only counts.
//!
//! May import `api` (its state), `membership` and `consensus::leadership` (types only);
//! nothing else of the node.

mod raft;

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::ApiState;

/// One embedded file: its bytes, content type and entity tag.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub name: &'static str,
    pub body: &'static str,
    pub content_type: &'static str,
}

/// Every file the page is made of; `index.html` is served at `/`, the others at `/ui/<name>`.
pub const ASSETS: &[Asset] = &[
    Asset { name: "index.html", body: include_str!("index.html"), content_type: "text/html; charset=utf-8" },
    Asset {
        name: "dashboard.js",
        body: include_str!("dashboard.js"),
        content_type: "text/javascript; charset=utf-8",
    },
    Asset { name: "dom.js", body: include_str!("dom.js"), content_type: "text/javascript; charset=utf-8" },
    Asset {
        name: "views.js",
        body: include_str!("views.js"),
        content_type: "text/javascript; charset=utf-8",
    },
    Asset {
        name: "dashboard.css",
        body: include_str!("dashboard.css"),
        content_type: "text/css; charset=utf-8",
    },
];

/// What the page may load and connect to: only this origin (the WebSocket included), no inline
/// script, no frames around it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes (state-free but typed like the rest of the API's).
pub(super) fn router() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/", get(index))
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/{name}", get(asset))
        .route("/v1/raft", get(raft::raft))
}

/// The asset called `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// 64-bit FNV-1a of `bytes`: a stable, dependency-free fingerprint for the entity tag.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The entity tag of an asset: its fingerprint and the crate version.
pub fn etag(asset: &Asset) -> String {
    format!("\"{}-{:016x}\"", env!("CARGO_PKG_VERSION"), fnv1a_64(asset.body.as_bytes()))
}

/// Whether `If-None-Match` names `tag` (or `*`).
fn matches(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == tag || t == "*")
}

/// An asset's answer: 200 with the body, or 304 when the browser has this very version.
fn serve(asset: &'static Asset, headers: &HeaderMap) -> Response {
    let tag = etag(asset);
    let fresh = matches(headers, &tag);
    let mut response =
        if fresh { StatusCode::NOT_MODIFIED.into_response() } else { asset.body.into_response() };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(value) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, value);
    }
    response
}

async fn index(headers: HeaderMap) -> Response {
    match find("index.html") {
        Some(asset) => serve(asset, &headers),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match find(&name).filter(|a| a.name != "index.html") {
        Some(asset) => serve(asset, &headers),
        None => {
            let body = serde_json::json!({ "error": format!("no dashboard asset named '{name}'") });
            (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
        }
    }
}

#[cfg(test)]
mod tests;
