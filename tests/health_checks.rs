//! Active health checks on a three-node muster cluster of real processes on 127.0.0.1: the
//! leader checks an HTTP endpoint and a TCP port served by this test, with thresholds of two
//! failures and two passes. When the endpoint answers 503 and the port closes, both services
//! turn `unhealthy` on every node with the same last check (time, latency, error); when they
//! come back, both turn `active` again; a `kill -9` of the leader in between does not start the
//! run of failures over. A WebSocket client on a follower sees the
//! `health_status_changed` events live, and a gRPC Watch (the real `grpcurl`) replays them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const ELECT: Duration = Duration::from_secs(30);
/// Two checks at one-second intervals, a batch, a commit, and room for a busy machine.
const TURN: Duration = Duration::from_secs(30);

fn curl(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    curl_json(addr, method, path, body, None)
}

/// An HTTP endpoint answering every request with the status in `status`; counts requests.
struct Endpoint {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Endpoint {
    fn start() -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (status, hits, stop) =
            (Arc::new(AtomicU16::new(200)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (s, h, st) = (status.clone(), hits.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        let mut buf = [0u8; 2048];
                        let _ = conn.read(&mut buf);
                        h.fetch_add(1, Ordering::SeqCst);
                        let code = s.load(Ordering::SeqCst);
                        let reason = if code == 200 { "OK" } else { "Service Unavailable" };
                        let _ = write!(
                            conn,
                            "HTTP/1.1 {code} {reason}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Endpoint { addr, status, hits, stop }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A TCP port that accepts while open; `close` stops listening (connects are then refused).
struct Port {
    addr: SocketAddr,
    listener: Mutex<Option<TcpListener>>,
}

impl Port {
    fn open() -> Port {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Port { addr: listener.local_addr().unwrap(), listener: Mutex::new(Some(listener)) }
    }

    fn close(&self) {
        self.listener.lock().unwrap().take();
    }

    fn reopen(&self) {
        *self.listener.lock().unwrap() = Some(TcpListener::bind(self.addr).unwrap());
    }
}

/// The service as `node` has it right now (its own copy: `?stale=true`).
fn service_on(node: &Muster, id: &str) -> Value {
    let (code, body) = curl(node.http, "GET", &format!("/api/v1/services/{id}?stale=true"), None);
    assert_eq!(code, 200, "GET {id} on {}: {body}", node.name);
    body
}

/// Waits until every node shows `id` with `status`; returns each node's copy.
fn wait_status(all: &[Muster], id: &str, status: &str) -> Vec<Value> {
    wait_for(TURN, &format!("{id} {status} on every node"), || {
        let views: Vec<Value> = all.iter().map(|m| service_on(m, id)).collect();
        views.iter().all(|v| v["status"] == status).then_some(views)
    })
}

/// A WebSocket client reading text frames as JSON.
struct Ws(TcpStream);

impl Ws {
    fn connect(addr: SocketAddr, path: &str) -> Ws {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = ws_handshake(&mut stream, addr, path);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        Ws(stream)
    }

    /// The next `health_status_changed` event for `id` before `deadline`.
    fn health_change(&mut self, id: &str, deadline: Instant) -> Value {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no health_status_changed for {id} in time");
            self.0.set_read_timeout(Some(left)).unwrap();
            let (h, payload) = read_ws_frame(&mut self.0);
            if h[0] & 0x0f != 1 {
                continue;
            }
            let msg: Value = serde_json::from_slice(&payload).unwrap();
            if msg["type"] == "health_status_changed" && msg["service"]["service_id"] == id {
                return msg;
            }
        }
    }
}

#[test]
fn checks_turn_services_unhealthy_after_the_threshold_and_back_on_every_node() {
    // Proves thresholds, replicated status and last check, and the events on WS and gRPC.
    let (mut all, leader) = three_nodes(["ha", "hb", "hc"], &["--profile", "local"], ELECT);
    let follower_name = all.iter().find(|m| m.name != leader).unwrap().name.clone();
    let follower_http = all.iter().find(|m| m.name == follower_name).unwrap().http;
    let web = Endpoint::start();
    let port = Port::open();
    let register = |id: &str, url: String| {
        let body = json!({
            "service_id": id, "name": id, "type": "api", "host": "127.0.0.1", "port": 8080,
            "health_check_url": url, "health_check_interval": 1,
            "health_check_unhealthy_threshold": 2, "health_check_healthy_threshold": 2,
        });
        let (code, answer) =
            curl(follower_http, "POST", "/api/v1/services/register", Some(&body.to_string()));
        assert_eq!(code, 201, "{answer}");
    };
    register("web", format!("http://{}/health", web.addr));
    register("db", format!("tcp://{}", port.addr));

    // Passing checks are recorded on every node; the status stays active.
    for id in ["web", "db"] {
        wait_for(TURN, &format!("a passed check of {id} on every node"), || {
            all.iter().all(|m| service_on(m, id)["last_health_check"]["ok"] == true).then_some(())
        });
    }
    let view = service_on(all.iter().find(|m| m.name == follower_name).unwrap(), "web");
    assert_eq!(view["status"], "active");
    assert!(view["last_health_check"]["at"].as_str().unwrap().ends_with('Z'), "{view}");
    assert!(web.hits.load(Ordering::SeqCst) >= 1);

    let mut ws = Ws::connect(follower_http, "/api/v1/ws");
    web.status.store(503, Ordering::SeqCst);
    port.close();
    let views = wait_status(&all, "web", "unhealthy");
    let check = &views[0]["last_health_check"];
    assert_eq!(check["ok"], false);
    assert_eq!(check["error"], "HTTP 503 Service Unavailable");
    assert!(check["consecutive_failures"].as_u64().unwrap() >= 2, "{check}");
    let db = wait_status(&all, "db", "unhealthy");
    let error = db[0]["last_health_check"]["error"].as_str().unwrap().to_string();
    assert!(error.starts_with(&format!("connect to {}", port.addr)) && error.contains("refused"), "{error}");
    // Every node applied the same results: once they agree on the revision, the records match.
    wait_for(TURN, "every node's copy of web identical", || {
        let v: Vec<Value> = all.iter().map(|m| service_on(m, "web")).collect();
        v.windows(2).all(|w| w[0] == w[1]).then_some(())
    });
    let event = ws.health_change("web", Instant::now() + TURN);
    assert_eq!(event["service"]["status"], "unhealthy", "{event}");
    assert_eq!(event["service"]["last_health_check"]["error"], "HTTP 503 Service Unavailable");

    // kill -9 of the leader: the next leader goes on counting where the old one stopped (the
    // run of failures never starts over), and the rest of the test runs on the two survivors.
    let before = service_on(&all[0], "web")["last_health_check"]["consecutive_failures"].as_u64().unwrap();
    let li = all.iter().position(|m| m.name == leader).unwrap();
    let mut old_leader = all.remove(li);
    old_leader.proc.kill9();
    wait_for(ELECT, "a new leader among the survivors", || {
        let views: Vec<Value> = all.iter().map(|m| curl(m.http, "GET", "/health", None).1).collect();
        let next = views[0]["raft"]["leader"].as_str()?;
        (next != leader && views.iter().all(|v| v["raft"]["leader"] == next)).then_some(())
    });
    let mut seen = Vec::new();
    wait_for(TURN, "the new leader's failed checks continuing the run", || {
        let n = service_on(&all[0], "web")["last_health_check"]["consecutive_failures"].as_u64().unwrap();
        seen.push(n);
        assert!(n >= before, "the run started over after the failover: {before} then {seen:?}");
        std::thread::sleep(Duration::from_millis(200));
        (n >= before + 3).then_some(())
    });
    assert_eq!(service_on(&all[1], "web")["status"], "unhealthy");

    web.status.store(200, Ordering::SeqCst);
    port.reopen();
    let views = wait_status(&all, "web", "active");
    assert!(views[0]["last_health_check"]["consecutive_successes"].as_u64().unwrap() >= 2);
    assert_eq!(views[0]["last_health_check"]["error"], Value::Null);
    wait_status(&all, "db", "active");
    let event = ws.health_change("web", Instant::now() + TURN);
    assert_eq!(event["service"]["status"], "active", "{event}");

    // The new leader counted its checks and the changes they made (summed over the survivors:
    // the old leader's counts went with it).
    let metric = |name: &str| -> f64 {
        all.iter()
            .map(|m| {
                let out = Command::new("curl")
                    .args(["-sS", &format!("http://{}/metrics", m.http)])
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let line = text
                    .lines()
                    .find(|l| l.starts_with(&format!("{name} ")))
                    .unwrap_or_else(|| panic!("{name} in {text}"));
                line.rsplit(' ').next().unwrap().parse::<f64>().unwrap()
            })
            .sum()
    };
    assert!(metric("muster_registry_health_status_changes_total") >= 2.0, "web and db back to active");
    assert!(metric("muster_registry_health_checks_failed_total") >= 3.0);
    assert!(
        metric("muster_registry_health_checks_total") > metric("muster_registry_health_checks_failed_total")
    );

    // The gRPC Watch replays the same changes from the cluster's first revision on.
    let body = json!({"start_revision": 1}).to_string();
    let out = Command::new("grpcurl")
        .args(["-plaintext", "-max-time", "3", "-d", &body, &follower_http.to_string()])
        .arg("muster.registry.v1.Registry/Watch")
        .output()
        .expect("run grpcurl (scripts/deps.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let changes = text.matches("EVENT_KIND_HEALTH_STATUS_CHANGED").count();
    assert!(changes >= 4, "two changes for each service in the replay: {text}");
    assert!(text.contains("\"lastHealthCheck\"") && text.contains("HTTP 503 Service Unavailable"), "{text}");
}
