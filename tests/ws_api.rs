//! Beacon's WebSocket event stream, `GET /api/v1/ws`, on a three-node muster cluster of real
//! processes on 127.0.0.1: a client on a follower sees registrations made through another
//! node, in revision order, and resuming with `?revision=N` misses nothing after N. The
//! client is a minimal RFC 6455 one written here (upgrade, unmasked server frames, a masked
//! close), so the test needs no WebSocket crate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const ELECT: Duration = Duration::from_secs(30);
const EVENT_WAIT: Duration = Duration::from_secs(15);

/// `curl -X method http://node/path` with an optional JSON body; the status and the JSON body.
fn curl(m: &Muster, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let url = format!("http://{}{path}", m.http);
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "-X", method, "-w", "\n%{http_code}"]);
    if let Some(body) = body {
        cmd.args(["-H", "content-type: application/json", "--data-binary", body]);
    }
    let out = cmd.arg(&url).output().expect("run curl (is it installed?)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A WebSocket client connection: upgraded, reading the server's (unmasked) frames.
struct Ws {
    stream: TcpStream,
}

impl Ws {
    /// Connects and upgrades; panics unless the server answers 101.
    fn connect(addr: SocketAddr, path: &str) -> Ws {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("the upgrade response");
            head.push(byte[0]);
            assert!(head.len() < 8192, "response head too long");
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // The RFC 6455 example key's accept value.
        assert!(head.to_ascii_lowercase().contains("s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
        Ws { stream }
    }

    /// The next frame before `deadline`: (opcode, payload). Panics on timeout.
    fn frame(&mut self, deadline: Instant) -> (u8, Vec<u8>) {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(left)).unwrap();
        let mut h = [0u8; 2];
        self.stream.read_exact(&mut h).expect("a frame before the deadline");
        assert_eq!(h[0] & 0x80, 0x80, "the server sends unfragmented frames");
        assert_eq!(h[1] & 0x80, 0, "server frames are unmasked");
        let len = match h[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                self.stream.read_exact(&mut l).unwrap();
                u64::from(u16::from_be_bytes(l))
            }
            127 => {
                let mut l = [0u8; 8];
                self.stream.read_exact(&mut l).unwrap();
                u64::from_be_bytes(l)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len).unwrap()];
        self.stream.read_exact(&mut payload).unwrap();
        (h[0] & 0x0f, payload)
    }

    /// The next text message as JSON, skipping progress messages; panics on anything else.
    fn event(&mut self, deadline: Instant) -> Value {
        loop {
            let (op, payload) = self.frame(deadline);
            assert_eq!(op, 0x1, "a text frame, got opcode {op}: {payload:?}");
            let msg: Value = serde_json::from_slice(&payload).unwrap();
            if msg["type"] != "progress" {
                return msg;
            }
        }
    }

    /// Sends a masked close frame (1000) and expects the server's close frame back.
    fn close(mut self) {
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let code = 1000u16.to_be_bytes();
        let frame = [0x88, 0x82, mask[0], mask[1], mask[2], mask[3], code[0] ^ mask[0], code[1] ^ mask[1]];
        self.stream.write_all(&frame).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (op, payload) = self.frame(deadline);
            if op == 0x8 {
                assert_eq!(payload.get(..2), Some(&code[..]), "the server echoes 1000");
                return;
            }
        }
    }
}

/// Starts three nodes and waits until every node knows the same leader and three voters.
fn cluster() -> (Vec<Muster>, String) {
    let a = Muster::start("wa", &["--profile", "local"]);
    let join = a.gossip.to_string();
    let b = Muster::start("wb", &["--profile", "local", "--join", &join]);
    let c = Muster::start("wc", &["--profile", "local", "--join", &join]);
    let all = vec![a, b, c];
    let leader = wait_for(ELECT, "one leader and three voters, agreed by every node", || {
        let views: Vec<Value> = all.iter().map(|m| curl(m, "GET", "/health", None).1).collect();
        let leader = views[0]["raft"]["leader"].as_str()?.to_string();
        views
            .iter()
            .all(|v| v["raft"]["leader"] == leader.as_str() && v["raft"]["voters"] == 3)
            .then_some(leader)
    });
    (all, leader)
}

#[test]
fn follower_streams_registrations_in_order_and_resumes_after_a_revision() {
    // Proves a WebSocket client on a follower receives Beacon's `service_registered` message
    // (event name, revision, the service as the REST API returns it, an RFC 3339 timestamp)
    // for each of two registrations made through another node, in increasing revision order;
    // that reconnecting with `?revision=<first's revision>` delivers the second registration
    // (resume misses nothing after N); and that a client close is answered with a close.
    let (all, leader) = cluster();
    let followers: Vec<&Muster> = all.iter().filter(|m| m.name != leader).collect();
    let (watcher, writer) = (followers[0], followers[1]);

    let mut ws = Ws::connect(watcher.http, "/api/v1/ws");
    let mut ids = Vec::new();
    for (id, port) in [("ws-a", 8001), ("ws-b", 8002)] {
        let svc = json!({"service_id": id, "name": id, "type": "http", "host": "10.0.0.1", "port": port});
        let (status, body) = curl(writer, "POST", "/api/v1/services/register", Some(&svc.to_string()));
        assert_eq!(status, 201, "{body}");
        ids.push(id);
    }

    let deadline = Instant::now() + EVENT_WAIT;
    let first = ws.event(deadline);
    let second = ws.event(deadline);
    for (msg, id) in [(&first, ids[0]), (&second, ids[1])] {
        assert_eq!(
            (msg["type"].as_str(), msg["service"]["service_id"].as_str()),
            (Some("service_registered"), Some(id)),
            "{msg}"
        );
        assert_eq!(msg["service"]["status"], "active", "{msg}");
        let ts = msg["timestamp"].as_str().unwrap_or_default();
        assert!(ts.len() >= 20 && ts.ends_with('Z') && &ts[10..11] == "T", "{msg}");
    }
    let (r1, r2) = (first["revision"].as_u64().unwrap(), second["revision"].as_u64().unwrap());
    assert!(r1 > 0 && r1 < r2, "revisions increase: {r1}, {r2}");
    ws.close();

    // Resume after the first event: the second arrives, nothing before it.
    let mut ws = Ws::connect(watcher.http, &format!("/api/v1/ws?revision={r1}"));
    let resumed = ws.event(Instant::now() + EVENT_WAIT);
    assert_eq!(
        (resumed["type"].as_str(), resumed["revision"].as_u64(), resumed["service"]["service_id"].as_str()),
        (Some("service_registered"), Some(r2), Some(ids[1])),
        "{resumed}"
    );
    ws.close();
}
