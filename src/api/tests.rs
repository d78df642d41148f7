//! API tests over real sockets: `serve` on 127.0.0.1:0, raw HTTP/1.1 GETs with the CLI's client.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{serve, ApiState};
use crate::cli::http;
use crate::logging::{format_rfc3339, unix_ms_now, Precision};
use crate::membership::{MemberInfo, MemberStatus, Mode};

fn member(name: &str, addr: &str, status: MemberStatus, tags: &[(&str, &str)]) -> MemberInfo {
    MemberInfo {
        name: name.into(),
        addr: addr.parse().unwrap(),
        port: 7946,
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        status,
        protocol: [1, 5, 2, 2, 5, 5],
        incarnation: 1,
        last_seen_ms_ago: 2_000,
        mode: Mode::Unknown,
    }
}

/// The view used by most tests: this node ("self"), two alive peers, one failed, one left.
fn cluster() -> Vec<MemberInfo> {
    vec![
        member("self", "10.0.0.1", MemberStatus::Alive, &[("role", "web")]),
        member("b", "10.0.0.2", MemberStatus::Alive, &[("http_port", "8080"), ("role", "web")]),
        member("a", "10.0.0.3", MemberStatus::Alive, &[("http_port", "junk")]),
        member("c", "10.0.0.4", MemberStatus::Failed, &[("role", "web")]),
        member("d", "10.0.0.5", MemberStatus::Left, &[]),
    ]
}

struct Running {
    addr: String,
    members: watch::Sender<Arc<Vec<MemberInfo>>>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(members: Vec<MemberInfo>) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (tx, rx) = watch::channel(Arc::new(members));
    let state = ApiState::for_tests(rx);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(listener, state, shutdown.clone()));
    Running { addr: addr.to_string(), members: tx, shutdown, task }
}

/// GETs `path`; returns the status and the body as JSON (asserting it is JSON).
async fn get(r: &Running, path: &str) -> (u16, Value) {
    let resp = http::get(&r.addr, path, Duration::from_secs(5)).await.unwrap();
    let ct = resp.header("content-type").unwrap_or_default().to_string();
    assert!(ct.starts_with("application/json"), "{path}: content-type {ct:?}");
    (resp.status, serde_json::from_slice(&resp.body).unwrap())
}

#[tokio::test]
async fn health_reports_identity_and_member_counts() {
    // Proves /health's shape and that counts follow the membership watch.
    let r = start(cluster()).await;
    let (status, body) = get(&r, "/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["node"], "self");
    assert_eq!(body["cluster"], "muster");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_seconds"].is_u64());
    let counts = serde_json::json!({"alive": 3, "failed": 1, "left": 1, "leaving": 0, "total": 5});
    assert_eq!(body["members"], counts);

    r.members.send_replace(Arc::new(vec![member("self", "10.0.0.1", MemberStatus::Leaving, &[])]));
    let (_, body) = get(&r, "/health").await;
    let counts = serde_json::json!({"alive": 0, "failed": 0, "left": 0, "leaving": 1, "total": 1});
    assert_eq!(body["members"], counts);
}

#[tokio::test]
async fn discovery_lists_alive_peers_in_the_seed_shape() {
    // Proves /discovery: self, non-alive members and members without a valid http_port tag
    // (plain Serf agents) excluded, port from the tag, and last_seen = now - last_seen_ms_ago in RFC 3339.
    let r = start(cluster()).await;
    let before = unix_ms_now();
    let (status, body) = get(&r, "/discovery").await;
    let after = unix_ms_now();
    assert_eq!(status, 200);
    assert_eq!(body["node_id"], "self");
    assert_eq!(body["mode"], "unknown");
    let servers = body["discovered_servers"].as_array().unwrap();
    let mut seen: Vec<(String, u64)> = servers
        .iter()
        .map(|s| (s["node_id"].as_str().unwrap().to_string(), s["port"].as_u64().unwrap()))
        .collect();
    seen.sort();
    assert_eq!(seen, [("b".to_string(), 8080)]);
    let b = servers.iter().find(|s| s["node_id"] == "b").unwrap();
    assert_eq!(b["host"], "10.0.0.2");
    assert_eq!(b["mode"], "unknown");
    let last_seen = b["last_seen"].as_str().unwrap();
    let earliest = format_rfc3339(before - 2_000, Precision::Millis);
    let latest = format_rfc3339(after - 2_000, Precision::Millis);
    assert!(earliest.as_str() <= last_seen && last_seen <= latest.as_str(), "{last_seen}");
}

#[tokio::test]
async fn members_are_sorted_and_filtered() {
    // Proves /v1/members serves MemberInfo as-is, sorted by name, with status and tag filters.
    let r = start(cluster()).await;
    let (status, body) = get(&r, "/v1/members").await;
    assert_eq!(status, 200);
    let all: Vec<MemberInfo> = serde_json::from_value(body).unwrap();
    let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "d", "self"]);
    assert_eq!(all[1], cluster()[1]);

    let (_, body) = get(&r, "/v1/members?status=alive&tag=role%3Dweb").await;
    let names: Vec<&str> = body.as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["b", "self"]);
    let (_, body) = get(&r, "/v1/members?tag=role=web&tag=http_port=8080").await;
    assert_eq!(body.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_filters_and_unknown_paths_answer_json_errors() {
    // Proves 400 names the bad parameter, 404 and 405 are JSON too.
    let r = start(cluster()).await;
    let (status, body) = get(&r, "/v1/members?status=dead").await;
    assert_eq!(status, 400);
    let msg = body["error"].as_str().unwrap();
    assert!(msg.starts_with("invalid query parameter 'status':"), "{msg}");
    let (status, body) = get(&r, "/v1/members?tag=novalue").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("'tag'"), "{body}");
    let (status, body) = get(&r, "/v1/members?limit=1").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("'limit'"), "{body}");
    let (status, body) = get(&r, "/nope").await;
    assert_eq!((status, body["error"].as_str().unwrap()), (404, "no route for GET /nope"));
}

#[tokio::test]
async fn method_not_allowed_is_json() {
    // Proves a POST on a GET route gets a JSON 405, through a raw socket.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let r = start(cluster()).await;
    let mut s = tokio::net::TcpStream::connect(&r.addr).await.unwrap();
    s.write_all(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    assert!(out.ends_with(r#"{"error":"POST is not allowed on /health; use GET"}"#), "{out}");
}

#[tokio::test]
async fn cancel_stops_the_server() {
    // Proves serve returns Ok after the token is cancelled, and the port stops answering.
    let r = start(cluster()).await;
    assert_eq!(get(&r, "/health").await.0, 200);
    r.shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), r.task).await;
    assert!(matches!(result, Ok(Ok(Ok(())))), "serve did not stop cleanly: {result:?}");
    let err = http::get(&r.addr, "/health", Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(err, http::HttpError::NoNode { .. }), "{err}");
}

#[tokio::test]
async fn members_cli_reads_the_api() {
    // Proves `muster members` end to end: flags become a query, the answer becomes rows.
    use crate::cli::members::{fetch, render, MembersArgs, Output};
    let r = start(cluster()).await;
    let args = MembersArgs {
        http_addr: r.addr.clone(),
        json: false,
        status: Some("alive".into()),
        tag: vec!["role=web".into()],
        detailed: false,
        secure: Default::default(),
    };
    let members = fetch(&args).await.unwrap();
    let text = render(&members, Output::Table);
    assert_eq!(
        text,
        "b     10.0.0.2:7946  alive  http_port=8080,role=web\nself  10.0.0.1:7946  alive  role=web\n"
    );
}
