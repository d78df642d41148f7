//! Beacon's WebSocket event stream, `GET /api/v1/ws`, on a three-node muster cluster of real
//! processes on 127.0.0.1 keeping a short history (`--history-max`): a client on a follower
//! sees registrations made through another node, in revision order, and resuming with
//! `?revision=N` misses nothing after N; an idle stream gets progress messages at the
//! interval it asks for; a client that never reads is closed with a reason while another
//! keeps receiving; resuming from a compacted revision gets `compacted`. The client is a
//! minimal RFC 6455 one written here (upgrade, unmasked server frames, a masked close), so
//! the test needs no WebSocket crate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const ELECT: Duration = Duration::from_secs(30);
const EVENT_WAIT: Duration = Duration::from_secs(15);
/// Events each node keeps for resuming (`--history-max`): far fewer than the flood below.
const HISTORY_MAX: u64 = 20;
/// Threads updating ~56 KB services until the node drops the never-reading client. More
/// writers on a busy two-core machine starve raft's heartbeats into elections.
const WRITERS: usize = 2;
/// At most this many updates per writer. The node's send blocks once the kernel's send
/// buffer (up to 4 MB on loopback) is full, about 75 such updates.
const UPDATES_MAX: usize = 150;
/// Tries per update: a write may meet an election (503) or a leader change (504).
const TRIES: usize = 5;
/// How long the flood may take to get the slow client dropped: the node waits 10 s once its
/// buffer is full, plus room for a busy machine.
const SLOW_WAIT: Duration = Duration::from_secs(120);

/// `curl -X method http://node/path` with an optional JSON body; the status and the JSON body.
fn curl(m: &Muster, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    curl_at(m.http, method, path, body)
}

/// [`curl`] by address, for threads.
fn curl_at(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    curl_json(addr, method, path, body, None)
}

/// A WebSocket client connection: upgraded, reading the server's (unmasked) frames.
struct Ws {
    stream: TcpStream,
}

impl Ws {
    /// Connects and upgrades; panics unless the server answers 101.
    fn connect(addr: SocketAddr, path: &str) -> Ws {
        Ws::upgrade(TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap(), addr, path)
    }

    /// Connects with a 4 KiB receive buffer (so the node's sends block soon when this client
    /// does not read) and upgrades.
    fn connect_small_window(addr: SocketAddr, path: &str) -> Ws {
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
        let stream = rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            let stream = socket.connect(addr).await.unwrap();
            stream.into_std().unwrap()
        });
        stream.set_nonblocking(false).unwrap();
        Ws::upgrade(stream, addr, path)
    }

    fn upgrade(mut stream: TcpStream, addr: SocketAddr, path: &str) -> Ws {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = common::ws_handshake(&mut stream, addr, path);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // The RFC 6455 example key's accept value.
        assert!(head.to_ascii_lowercase().contains("s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
        Ws { stream }
    }

    /// The next frame before `deadline`: (opcode, payload). Panics on timeout.
    fn frame(&mut self, deadline: Instant) -> (u8, Vec<u8>) {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(left)).unwrap();
        let (h, payload) = common::read_ws_frame(&mut self.stream);
        assert_eq!(h[0] & 0x80, 0x80, "the server sends unfragmented frames");
        assert_eq!(h[1] & 0x80, 0, "server frames are unmasked");
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

    /// Reads until the server's close frame, skipping other messages (at most `max`); the
    /// close code and reason, and how many text messages came before it.
    fn until_close(&mut self, deadline: Instant, max: usize) -> (u16, String, usize) {
        for texts in 0..max {
            let (op, payload) = self.frame(deadline);
            if op == 0x8 {
                assert!(payload.len() >= 2, "want a close code in the close frame: {payload:?}");
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                return (code, String::from_utf8_lossy(&payload[2..]).into_owned(), texts);
            }
            assert_eq!(op, 0x1, "want text frames before the close, got opcode {op}");
        }
        panic!("want a close frame within {max} messages");
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
    let history = HISTORY_MAX.to_string();
    // The lan profile's lease (450 ms) rides out the flood of large updates below in a debug
    // build on two cores; the local profile's (180 ms) lapsed under it. lan gossip needs a key.
    let key = gossip_key();
    let flags = ["--profile", "lan", "--encrypt", &key, "--history-max", &history];
    three_nodes(["wa", "wb", "wc"], &flags, ELECT)
}

#[test]
fn event_stream_orders_resumes_reports_progress_drops_slow_clients_and_compacts() {
    // Proves, on one three-node cluster, each of the phases below (each says what it proves).
    let (all, leader) = cluster();
    let followers: Vec<&Muster> = all.iter().filter(|m| m.name != leader).collect();
    let (watcher, writer) = (followers[0], followers[1]);
    let last = registrations_in_order_and_resume(watcher, writer);
    idle_stream_gets_progress(watcher, last);
    slow_client_is_closed_while_others_keep_receiving(watcher, writer);
    compacted_revision_is_answered_with_compacted(watcher, writer);
}

/// A WebSocket client on a follower receives Beacon's `service_registered` message (event
/// name, revision, the service exactly as the REST API returned it, ISO times included, an
/// RFC 3339 timestamp) for each of two registrations made through another node, in
/// increasing revision order; reconnecting with `?revision=<first's revision>` delivers the
/// second registration (resume misses nothing after N); a client close is answered with a
/// close. The last revision seen.
fn registrations_in_order_and_resume(watcher: &Muster, writer: &Muster) -> u64 {
    let mut ws = Ws::connect(watcher.http, "/api/v1/ws");
    let mut ids = Vec::new();
    let mut registered = Vec::new();
    for (id, port) in [("ws-a", 8001), ("ws-b", 8002)] {
        let svc = json!({"service_id": id, "name": id, "type": "http", "host": "10.0.0.1", "port": port});
        let (status, body) = curl(writer, "POST", "/api/v1/services/register", Some(&svc.to_string()));
        assert_eq!(status, 201, "{body}");
        ids.push(id);
        registered.push(body);
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
    for (msg, body) in [(&first, &registered[0]), (&second, &registered[1])] {
        assert!(
            msg["service"]["expires_at"].as_str().is_some_and(|t| t.ends_with('Z')),
            "want ISO times: {msg}"
        );
        assert_eq!(&msg["service"], body, "want the event's service as the REST answer showed it");
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
    r2
}

/// With `?progress_ms=300`, an idle stream gets `{"type":"progress","revision":R}` messages,
/// R the last revision (nothing changed since); a bad interval is refused with 422 naming the
/// bound, before any upgrade.
fn idle_stream_gets_progress(watcher: &Muster, last: u64) {
    let mut ws = Ws::connect(watcher.http, "/api/v1/ws?progress_ms=300");
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in 0..2 {
        let (op, payload) = ws.frame(deadline);
        let msg: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
        assert_eq!(
            (op, msg["type"].as_str(), msg["revision"].as_u64()),
            (0x1, Some("progress"), Some(last)),
            "want progress message {n} at revision {last} on an idle stream: {msg}"
        );
    }
    ws.close();
    for (query, detail) in [
        ("progress_ms=99", "progress_ms must be 100–60000 milliseconds (got 99)"),
        ("progress_ms=60001", "progress_ms must be 100–60000 milliseconds (got 60001)"),
        ("progress_ms=soon", "progress_ms: invalid digit"),
    ] {
        let (status, err) = curl(watcher, "GET", &format!("/api/v1/ws?{query}"), None);
        assert!(
            status == 422 && err["detail"].as_str().is_some_and(|d| d.contains(detail)),
            "want ?{query} refused with 422 and {detail:?}, got {status} {err}"
        );
    }
}

/// Service `big-<writer>` of about 56 KB (the body limit is 64 KiB), `round` making each
/// version differ.
fn big_service(writer: usize, round: usize) -> String {
    let metadata: serde_json::Map<String, Value> =
        (0..55).map(|i| (format!("k{i:02}"), json!(format!("{round:06}{}", "x".repeat(994))))).collect();
    json!({"service_id": format!("big-{writer}"), "name": "big", "type": "bulk", "host": "10.0.0.2",
           "port": 9000, "metadata": metadata})
    .to_string()
}

/// A client that never reads is closed by the node with 1008 and a reason naming the cause
/// (readable once it catches up), while another client on the same node receives every one
/// of the events in order and then events after the slow client's end.
fn slow_client_is_closed_while_others_keep_receiving(watcher: &Muster, writer: &Muster) {
    let mut slow = Ws::connect_small_window(watcher.http, "/api/v1/ws");
    let mut good = Ws::connect(watcher.http, "/api/v1/ws");
    let limit = WRITERS * (UPDATES_MAX + 1) + 10;
    let reader = std::thread::spawn(move || {
        let deadline = Instant::now() + SLOW_WAIT + Duration::from_secs(60);
        let mut updates: Vec<(u64, String)> = Vec::new();
        for _ in 0..limit {
            let msg = good.event(deadline);
            if msg["service"]["service_id"] == "after-slow" {
                good.close();
                return (updates, msg);
            }
            if msg["type"] == "service_updated" {
                let id = msg["service"]["service_id"].as_str().unwrap_or_default().to_string();
                updates.push((msg["revision"].as_u64().unwrap(), id));
            }
        }
        panic!("want the after-slow registration within {limit} messages");
    });

    // Writers update their own big service until the node has dropped the slow client.
    let started = Instant::now();
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (addr, dropped) = (writer.http, dropped.clone());
            std::thread::spawn(move || {
                let (status, body) =
                    curl_at(addr, "POST", "/api/v1/services/register", Some(&big_service(w, 0)));
                assert_eq!(status, 201, "want big-{w} registered: {body}");
                let mut rounds = 0;
                while rounds < UPDATES_MAX && !dropped.load(std::sync::atomic::Ordering::SeqCst) {
                    rounds += 1;
                    let path = format!("/api/v1/services/big-{w}");
                    // A retry of an update that was applied after all changes nothing, so
                    // each round makes exactly one event.
                    let mut answers = Vec::new();
                    for _ in 0..TRIES {
                        let (status, body) = curl_at(addr, "PUT", &path, Some(&big_service(w, rounds)));
                        answers.push((status, body["detail"].clone()));
                        if status != 503 && status != 504 {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    let last = answers.last().map(|(status, _)| *status);
                    assert_eq!(last, Some(200), "want update {rounds} of big-{w} applied: {answers:?}");
                }
                (w, rounds)
            })
        })
        .collect();
    wait_for(SLOW_WAIT, "the watcher node to log that it closes the slow client", || {
        watcher.log_text().contains("ws: client too slow").then_some(())
    });
    let slow_after = started.elapsed();
    let (code, reason, texts) = slow.until_close(Instant::now() + Duration::from_secs(10), limit);
    dropped.store(true, std::sync::atomic::Ordering::SeqCst);
    let rounds: Vec<(usize, usize)> = writers.into_iter().map(|w| w.join().expect("a writer")).collect();
    let flood: usize = rounds.iter().map(|(_, n)| n).sum();
    println!("slow client: dropped after {slow_after:?} and {flood} updates; it had taken {texts} messages");
    assert_eq!(code, 1008, "want the slow client closed with 1008 (policy), reason {reason:?}");
    assert!(reason.starts_with("client too slow: "), "want the close reason to say why: {reason:?}");
    assert!(
        texts < flood,
        "want the slow client cut off before the flood's end, got {texts} of {flood} messages"
    );

    let svc = json!({"service_id": "after-slow", "name": "a", "type": "http", "host": "h", "port": 1});
    let (status, body) = curl(writer, "POST", "/api/v1/services/register", Some(&svc.to_string()));
    assert_eq!(status, 201, "{body}");
    let (updates, marker) = reader.join().expect("the good client's reader");
    for (w, n) in rounds {
        let got = updates.iter().filter(|(_, id)| *id == format!("big-{w}")).count();
        assert_eq!(got, n, "want each of the {n} updates of big-{w} delivered to the reading client");
    }
    assert!(updates.windows(2).all(|w| w[0].0 < w[1].0), "want the updates in revision order: {updates:?}");
    assert_eq!(marker["type"], "service_registered", "{marker}");
    let last = updates.last().map(|(r, _)| *r);
    assert!(marker["revision"].as_u64() > last, "want the marker after the flood: {marker}");
}

/// Resuming from a revision older than the kept history (the flood was longer than
/// `--history-max`) gets `{"type":"compacted","oldest_available":N}` and a normal close;
/// resuming after N works and delivers N's successors.
fn compacted_revision_is_answered_with_compacted(watcher: &Muster, writer: &Muster) {
    let mut ws = Ws::connect(watcher.http, "/api/v1/ws?revision=1");
    let deadline = Instant::now() + EVENT_WAIT;
    let (op, payload) = ws.frame(deadline);
    let msg: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
    assert_eq!((op, msg["type"].as_str()), (0x1, Some("compacted")), "want compacted for revision 1: {msg}");
    let oldest = msg["oldest_available"].as_u64().unwrap_or(0);
    // Right after the flood the cluster may still be settling (503 until a leader serves).
    let now = wait_for(Duration::from_secs(20), "GET /api/v1/health to answer 200", || {
        let (status, health) = curl(writer, "GET", "/api/v1/health", None);
        if status == 200 {
            health["revision"].as_u64()
        } else {
            None
        }
    });
    assert!(oldest > 1 && oldest < now, "want 1 < oldest_available {oldest} < current revision {now}");
    let (code, reason, texts) = ws.until_close(deadline, 1);
    assert_eq!((code, texts), (1000, 0), "want a normal close right after compacted, reason {reason:?}");

    let mut ws = Ws::connect(watcher.http, &format!("/api/v1/ws?revision={oldest}"));
    let next = ws.event(Instant::now() + EVENT_WAIT);
    assert!(
        next["type"] != "compacted" && next["revision"].as_u64() > Some(oldest),
        "want resuming after oldest_available {oldest} to deliver its successors: {next}"
    );
    ws.close();
}
