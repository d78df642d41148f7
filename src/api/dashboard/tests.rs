use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::*;

#[test]
fn the_page_references_only_its_own_assets() {
    // Proves the page works offline: index.html loads exactly the embedded script and style
    // sheet, and no asset names another origin (no CDN, no web font, no remote image).
    for asset in ASSETS.iter().filter(|a| a.name != "index.html") {
        let path = format!("\"/ui/{}\"", asset.name);
        let by = ASSETS.iter().find(|other| other.body.contains(&path));
        assert!(by.is_some(), "no asset loads {}", asset.name);
    }
    for asset in ASSETS {
        for remote in ["http://", "https://", "@import", "url(", "src=\"//", "href=\"//"] {
            assert!(!asset.body.contains(remote), "{} mentions {remote}", asset.name);
        }
    }
    for script in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
        for markup in
            ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"]
        {
            assert!(!script.body.contains(markup), "{} uses {markup}: text only", script.name);
        }
    }
}

#[test]
fn etags_follow_the_bytes_and_if_none_match_is_read_like_http_says() {
    // Proves each asset has its own tag, a weak or listed If-None-Match matches it, and another
    // tag does not.
    let (a, b) = (find("index.html").unwrap(), find("dashboard.js").unwrap());
    assert_ne!(etag(a), etag(b));
    assert_eq!(etag(a), etag(a));
    assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
    let headers = |v: &str| {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
        h
    };
    let tag = etag(a);
    assert!(matches(&headers(&tag), &tag));
    assert!(matches(&headers(&format!("W/{tag}")), &tag));
    assert!(matches(&headers(&format!("\"x\", {tag}")), &tag));
    assert!(matches(&headers("*"), &tag));
    assert!(!matches(&headers("\"0.0.0-0\""), &tag));
    assert!(!matches(&HeaderMap::new(), &tag));
}

async fn raw(addr: &str, path: &str, extra: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await.unwrap().unwrap();
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn assets_are_served_with_their_types_and_revalidated() {
    // Proves over a real socket: `/`, `/ui/` and each asset answer 200 with their content type,
    // `no-cache` and an ETag; the same ETag in If-None-Match answers 304 without a body; an
    // unknown asset is a 404; `/v1/raft` answers the raft view.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let state = crate::api::ApiState::for_tests(watch::channel(Arc::new(Vec::new())).1);
    let shutdown = CancellationToken::new();
    tokio::spawn(crate::api::serve(listener, state, shutdown.clone()));
    let cases = [
        ("/", "text/html; charset=utf-8", "<!doctype html>"),
        ("/ui/", "text/html; charset=utf-8", "<!doctype html>"),
        ("/ui/dashboard.js", "text/javascript; charset=utf-8", "import { clear, clock"),
        ("/ui/dom.js", "text/javascript; charset=utf-8", "export function el("),
        ("/ui/views.js", "text/javascript; charset=utf-8", "export function drawHealth("),
        ("/ui/dashboard.css", "text/css; charset=utf-8", ":root {"),
    ];
    for (path, content_type, start) in cases {
        let (status, head, body) = raw(&addr, path, "").await;
        assert_eq!(status, 200, "{path}: {head}");
        assert!(head.contains(&format!("content-type: {content_type}")), "{path}: {head}");
        assert!(head.contains("cache-control: no-cache"), "{path}: {head}");
        assert!(head.contains("x-content-type-options: nosniff"), "{path}: {head}");
        assert!(body.contains(start), "{path}: {body:.80}");
        let tag = head.lines().find_map(|l| l.strip_prefix("etag: ")).unwrap().trim().to_string();
        let (status, head, body) = raw(&addr, path, &format!("If-None-Match: {tag}\r\n")).await;
        assert_eq!(status, 304, "{path}: {head}");
        assert!(body.is_empty(), "{path}: a 304 has no body: {body:.80}");
    }
    let (status, _, body) = raw(&addr, "/ui/nope.js", "").await;
    assert_eq!(status, 404);
    assert!(body.contains("no dashboard asset named 'nope.js'"), "{body}");
    let (status, _, body) = raw(&addr, "/v1/raft", "").await;
    assert_eq!(status, 200, "{body}");
    let raft: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(raft["node"], "self");
    assert_eq!(raft["role"], "unknown");
    assert_eq!(raft["voters"], serde_json::json!([]));
    shutdown.cancel();
}
