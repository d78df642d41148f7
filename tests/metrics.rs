//! `GET /metrics` on real muster processes: the exposition passes Prometheus' own linter
//! (`promtool check metrics`, from Debian's `prometheus` package, which `scripts/deps.sh`
//! installs), and its numbers match what was done to the node over REST (`curl`) and gRPC
//! (`grpcurl`); a two-node cluster shows the gossip driver's probes and traffic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const ELECT: Duration = Duration::from_secs(30);

/// `curl -X method http://node/path` with an optional JSON body; the status and the body.
fn curl(m: &Muster, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let (code, answer) = curl_json(m.http, method, path, body, None);
    let text = match answer {
        Value::String(text) => text,
        json => json.to_string(),
    };
    (code, text)
}

/// One gRPC call through grpcurl; whether it succeeded and what it printed.
fn grpcurl(m: &Muster, method: &str, req: Value) -> (bool, String) {
    let out = Command::new(grpcurl_bin())
        .args(["-plaintext", "-max-time", "15", "-d", &req.to_string()])
        .arg(m.http.to_string())
        .arg(method)
        .output()
        .expect("run grpcurl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// GET /metrics with curl: the `Content-Type` header and the body.
fn scrape(m: &Muster) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-D", "-"])
        .arg(format!("http://{}/metrics", m.http))
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl /metrics: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200"), "GET /metrics: {head}");
    let content_type = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-type")))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    (content_type, body.to_string())
}

/// Samples by their series (`name{labels}` as written), skipping comments.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("a sample line: {l}"));
            (series.to_string(), value.parse().unwrap_or_else(|_| panic!("a number in: {l}")))
        })
        .collect()
}

fn value(all: &BTreeMap<String, f64>, series: &str) -> f64 {
    *all.get(series).unwrap_or_else(|| {
        let names: Vec<&String> = all.keys().collect();
        panic!("no sample {series}; have {names:#?}")
    })
}

/// Runs `promtool check metrics < text`; asserts exit 0 and no output at all.
fn promtool_check(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, text).unwrap();
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}); scripts/deps.sh installs Debian's prometheus")
        });
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && said.is_empty(),
        "promtool check metrics: {:?}\n{said}\n{text}",
        out.status
    );
}

#[test]
fn metrics_pass_promtool_and_count_what_the_node_did() {
    // Proves /metrics end to end on one real node: Prometheus' content type, a clean
    // `promtool check metrics`, and values that follow what was done: 3 registrations and 6
    // heartbeats over REST, 3 active services, requests by route template and code (201, 422,
    // 404 for a known route with an unknown id, one `unmatched` 404), gRPC calls by their
    // path and gRPC status, one alive member, and raft leadership of its own cluster.
    let m = Muster::start("metrics-one", &["--profile", "local"]);
    wait_for(ELECT, "the node to lead its own cluster", || {
        let (code, body) = curl(&m, "GET", "/health", None);
        let v: Value = serde_json::from_str(&body).ok()?;
        (code == 200 && v["raft"]["leader"] == "metrics-one").then_some(())
    });

    let mut ids = Vec::new();
    for (i, name) in ["cam", "db", "web"].iter().enumerate() {
        let svc = json!({"name": name, "type": "http", "host": "10.0.0.9", "port": 8080 + i, "ttl": 60});
        let (code, body) = curl(&m, "POST", "/api/v1/services/register", Some(&svc.to_string()));
        assert_eq!(code, 201, "register {name}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        ids.push(v["service_id"].as_str().unwrap().to_string());
    }
    for id in ids.iter().chain(&ids) {
        let (code, body) = curl(&m, "PUT", &format!("/api/v1/services/{id}/heartbeat"), None);
        assert_eq!(code, 200, "heartbeat {id}: {body}");
    }
    let bad = json!({"name": "bad", "type": "http", "host": "10.0.0.9", "port": 0});
    let (code, body) = curl(&m, "POST", "/api/v1/services/register", Some(&bad.to_string()));
    assert_eq!(code, 422, "port 0: {body}");
    let (code, _) = curl(&m, "GET", "/api/v1/services/no-such-id", None);
    assert_eq!(code, 404);
    let (code, _) = curl(&m, "GET", "/no/such/path/42", None);
    assert_eq!(code, 404);
    let (ok, out) = grpcurl(&m, "grpc.health.v1.Health/Check", json!({}));
    assert!(ok, "health check over gRPC: {out}");
    let (ok, out) = grpcurl(&m, "muster.registry.v1.Registry/Get", json!({"service_id": "no-such-id"}));
    assert!(!ok && out.contains("NotFound"), "a gRPC get of an unknown id: {out}");

    let (content_type, text) = scrape(&m);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    promtool_check(&text);
    let all = samples(&text);
    let v = |series: &str| value(&all, series);
    assert_eq!(v("muster_registry_registrations_total"), 3.0);
    assert_eq!(v("muster_registry_heartbeats_total"), 6.0);
    assert_eq!(v("muster_registry_services{status=\"active\"}"), 3.0);
    for status in ["inactive", "expired", "unhealthy"] {
        assert_eq!(v(&format!("muster_registry_services{{status=\"{status}\"}}")), 0.0);
    }
    let req = |method: &str, code: &str| {
        v(&format!("muster_api_requests_total{{method=\"{method}\",code=\"{code}\"}}"))
    };
    assert_eq!(req("POST /api/v1/services/register", "201"), 3.0);
    assert_eq!(req("POST /api/v1/services/register", "422"), 1.0);
    assert_eq!(req("PUT /api/v1/services/{id}/heartbeat", "200"), 6.0);
    assert_eq!(req("GET /api/v1/services/{id}", "404"), 1.0);
    assert!(req("unmatched", "404") >= 1.0);
    assert!(
        req("/grpc.health.v1.Health/Check", "200") >= 1.0,
        "an OK unary call's status is in its trailers"
    );
    assert_eq!(req("/muster.registry.v1.Registry/Get", "NOT_FOUND"), 1.0);
    assert!(
        !all.keys().any(|k| k.contains("no-such-id") || k.contains("/no/such/path")),
        "raw paths must not become labels"
    );
    let count = "muster_api_request_duration_seconds_count{method=\"POST /api/v1/services/register\"}";
    assert_eq!(v(count), 4.0);
    let inf =
        "muster_api_request_duration_seconds_bucket{method=\"POST /api/v1/services/register\",le=\"+Inf\"}";
    assert_eq!(v(inf), 4.0);
    assert_eq!(v("muster_gossip_members{state=\"alive\"}"), 1.0);
    for state in ["leaving", "left", "failed"] {
        assert_eq!(v(&format!("muster_gossip_members{{state=\"{state}\"}}")), 0.0);
    }
    assert_eq!(v("muster_raft_is_leader"), 1.0);
    assert!(v("muster_raft_term") >= 1.0);
    assert!(v("muster_raft_leader_changes_total") >= 1.0);
    assert!(v("muster_raft_applied_index") >= 3.0);
    assert!(v("muster_raft_last_log_index") >= v("muster_raft_applied_index"));
    assert!(v("muster_raft_commit_duration_seconds_count") >= 3.0, "each registration was proposed here");
    assert_eq!(
        v("muster_supervisor_stack{stack=\"none\"}") + v("muster_supervisor_stack{stack=\"server\"}"),
        1.0
    );
    assert!(v("process_resident_memory_bytes") > 1e6);
}

#[test]
fn gossip_probes_and_traffic_show_in_a_two_node_cluster() {
    // Proves the gossip driver's counts on real sockets: after a join (push/pull over TCP)
    // and a few probe rounds (UDP), probes, messages and bytes in both directions on both
    // transports are non-zero, and both members are alive.
    let a = Muster::start("metrics-a", &["--profile", "local"]);
    let join = a.gossip.to_string();
    let _b = Muster::start("metrics-b", &["--profile", "local", "--join", &join]);
    let all = wait_for(ELECT, "probes and gossip traffic both ways on UDP and TCP", || {
        let (_, text) = scrape(&a);
        let all = samples(&text);
        let mut series = vec!["muster_gossip_probes_total".to_string()];
        for t in ["udp", "tcp"] {
            for d in ["sent", "received"] {
                series.push(format!("muster_gossip_messages_total{{transport=\"{t}\",direction=\"{d}\"}}"));
                series.push(format!("muster_gossip_bytes_total{{transport=\"{t}\",direction=\"{d}\"}}"));
            }
        }
        let alive = all.get("muster_gossip_members{state=\"alive\"}") == Some(&2.0);
        (alive && series.iter().all(|s| all.get(s).is_some_and(|v| *v > 0.0))).then_some(all)
    });
    // Failures are possible on a loaded machine; they are never more than the probes.
    let probes = value(&all, "muster_gossip_probes_total");
    assert!(value(&all, "muster_gossip_probes_failed_total") <= probes);
    assert!(value(&all, "muster_gossip_suspicions_total") <= probes);
    let udp_in = value(&all, "muster_gossip_bytes_total{transport=\"udp\",direction=\"received\"}");
    let udp_msgs = value(&all, "muster_gossip_messages_total{transport=\"udp\",direction=\"received\"}");
    assert!(udp_in >= udp_msgs, "each message takes at least a byte: {udp_in} bytes, {udp_msgs} messages");
}
