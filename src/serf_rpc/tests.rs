//! In-process tests of the RPC server: a real gossip driver on 127.0.0.1:0, `serve` on
//! 127.0.0.1:0, and a raw client that writes hand-built requests and reads answers value by
//! value. Byte strings marked "Go" were captured between Debian's `serf` 0.8.2 CLI and agent.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::client::RpcClient;
use super::frame::FrameReader;
use super::proto::{self as p, ResponseHeader};
use super::*;
use crate::gossip::net::{start, GossipConfig};
use crate::gossip::serf::SerfConfig;
use crate::gossip::swim::Timing;
use crate::logging::tee::LogTee;

#[path = "monitor_tests.rs"]
mod monitor;

#[path = "limits_tests.rs"]
mod limits;

const WAIT: Duration = Duration::from_secs(5);

struct Node {
    rpc: SocketAddr,
    gossip: GossipHandle,
    stop: CancellationToken,
    /// The tee `monitor` reads; no subscriber feeds it, tests publish into it.
    logs: LogTee,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn node(auth_key: Option<&str>) -> Node {
    node_at_most(auth_key, CONNECTIONS_MAX).await
}

/// A node serving at most `connections_max` RPC clients at once.
async fn node_at_most(auth_key: Option<&str>, connections_max: usize) -> Node {
    let stop = CancellationToken::new();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let cfg = GossipConfig {
        node: "m1".into(),
        bind: any,
        advertise: any,
        tags: BTreeMap::from([("role".to_string(), "web".to_string())]),
        timing: Timing::local(),
        serf: SerfConfig::default(),
        keyring: None,
        label: String::new(),
        snapshot_path: None,
        rejoin_after_leave: false,
        keyring_path: None,
        tags_path: None,
        name_lost: None,
        seed: 7,
    };
    let (gossip, _task) = start(cfg, stop.clone()).await.unwrap();
    let listener = tokio::net::TcpListener::bind(any).await.unwrap();
    let rpc = listener.local_addr().unwrap();
    let logs = LogTee::new(tracing_subscriber::filter::LevelFilter::INFO);
    let cfg = RpcConfig {
        addr: rpc,
        auth_key: auth_key.map(String::from),
        tokens: None,
        node_name: "m1".into(),
        on_leave: CancellationToken::new(),
        managed_tags: vec!["raft_id".into()],
        event_handlers: BTreeMap::new(),
        logs: logs.clone(),
    };
    tokio::spawn(serve_at_most(listener, cfg, gossip.clone(), stop.clone(), connections_max));
    let mut members = gossip.members();
    tokio::time::timeout(WAIT, members.wait_for(|m| m.iter().any(|m| m.name == "m1")))
        .await
        .unwrap()
        .unwrap();
    Node { rpc, gossip, stop, logs }
}

/// A client that sends exactly what the test says.
struct Raw {
    r: FrameReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        Raw { r: FrameReader::new(r, 1 << 20, WAIT), w }
    }

    async fn ready(addr: SocketAddr) -> Raw {
        let mut c = Raw::connect(addr).await;
        c.req(p::HANDSHAKE, 1, Some(&p::HandshakeRequest { version: 1 })).await;
        assert_eq!(c.header().await, hdr(1, ""));
        c
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.unwrap();
    }

    async fn req<B: Serialize>(&mut self, cmd: &str, seq: u64, body: Option<&B>) {
        let bytes = encode_request(cmd, seq, body).unwrap();
        self.send(&bytes).await;
    }

    async fn raw_value(&mut self) -> Vec<u8> {
        let v = tokio::time::timeout(WAIT, self.r.next_value()).await.expect("no answer in time");
        v.unwrap().expect("connection closed")
    }

    async fn header(&mut self) -> ResponseHeader {
        self.value().await
    }

    async fn value<T: DeserializeOwned>(&mut self) -> T {
        rmp_serde::from_slice(&self.raw_value().await).unwrap()
    }

    async fn closed(&mut self) {
        let v = tokio::time::timeout(WAIT, self.r.next_value()).await.expect("connection still open");
        assert!(matches!(v, Ok(None) | Err(_)), "expected the server to close, got {v:?}");
    }

    async fn silent(&mut self, for_: Duration) {
        assert!(tokio::time::timeout(for_, self.r.next_value()).await.is_err(), "expected nothing more");
    }
}

fn hdr(seq: u64, error: &str) -> ResponseHeader {
    ResponseHeader { error: error.into(), seq }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

const NONE: Option<&()> = None;

#[tokio::test]
async fn the_go_clis_handshake_gets_the_go_agents_bytes() {
    // Proves the handshake exchange is byte-identical to Serf 0.8.2's (request and answer captured from Go).
    let n = node(None).await;
    let mut c = Raw::connect(n.rpc).await;
    c.send(&hex("82a7436f6d6d616e64a968616e647368616b65a35365710181a756657273696f6e01")).await;
    assert_eq!(c.raw_value().await, hex("82a54572726f72a0a353657101"));
}

#[tokio::test]
async fn anything_before_the_handshake_is_refused_and_the_connection_closed() {
    // Proves "Handshake required" comes first and, as in Go, the agent then hangs up.
    let n = node(None).await;
    let mut c = Raw::connect(n.rpc).await;
    c.req(p::MEMBERS, 9, NONE).await;
    assert_eq!(c.header().await, hdr(9, p::HANDSHAKE_REQUIRED));
    c.closed().await;
}

#[tokio::test]
async fn a_second_handshake_or_a_wrong_version_is_an_error_but_keeps_the_connection() {
    // Proves Go's handshake rules: duplicate and unsupported versions are answered, not fatal.
    let n = node(None).await;
    let mut c = Raw::ready(n.rpc).await;
    c.req(p::HANDSHAKE, 2, Some(&p::HandshakeRequest { version: 1 })).await;
    assert_eq!(c.header().await, hdr(2, p::DUPLICATE_HANDSHAKE));
    c.req(p::HANDSHAKE, 3, Some(&p::HandshakeRequest { version: 2 })).await;
    assert_eq!(c.header().await, hdr(3, p::UNSUPPORTED_IPC_VERSION));
    c.req(p::STATS, 4, NONE).await;
    assert_eq!(c.header().await, hdr(4, ""));
    let s: p::StatsResponse = c.value().await;
    assert_eq!(s["agent"]["name"], "m1");
}

#[tokio::test]
async fn unknown_commands_close_the_connection_after_their_answer() {
    // Proves "Unsupported command" ends the connection as in Go, after served commands that
    // fail (a managed tag, a key list without a keyring) answered and kept it open.
    let n = node(None).await;
    let mut c = Raw::ready(n.rpc).await;
    c.req("tags", 2, Some(&BTreeMap::from([("Tags", BTreeMap::from([("raft_id", "b")]))]))).await;
    let h = c.header().await;
    assert!(h.error.contains("tag \"raft_id\" is managed by muster"), "{h:?}");
    c.req("list-keys", 3, NONE).await;
    assert_eq!(c.header().await, hdr(3, "1/1 nodes reported failure"));
    let keys: p::KeyResponse = c.value().await;
    assert_eq!((keys.num_nodes, keys.num_resp, keys.num_err), (1, 1, 1));
    assert_eq!(
        keys.messages.unwrap_or_default().get("m1").map(String::as_str),
        Some("Keyring is empty (encryption not enabled)")
    );
    c.req(p::MEMBERS, 4, NONE).await;
    assert_eq!(c.header().await, hdr(4, ""));
    let _: p::MembersResponse = c.value().await;
    c.req("bogus", 5, NONE).await;
    assert_eq!(c.header().await, hdr(5, p::UNSUPPORTED_COMMAND));
    c.closed().await;
}

#[tokio::test]
async fn with_a_key_only_handshake_and_auth_pass_until_the_right_token() {
    // Proves the auth gate: refused commands stay in sync, a wrong token is refused, the right one opens.
    let n = node(Some("sekrit")).await;
    let mut c = Raw::ready(n.rpc).await;
    c.req(p::MEMBERS, 2, NONE).await;
    assert_eq!(c.header().await, hdr(2, p::AUTH_REQUIRED));
    let ev = p::EventRequest { name: "x".into(), ..Default::default() };
    c.req(p::EVENT, 3, Some(&ev)).await;
    assert_eq!(c.header().await, hdr(3, p::AUTH_REQUIRED));
    c.req(p::AUTH, 4, Some(&p::AuthRequest { auth_key: "nope".into() })).await;
    assert_eq!(c.header().await, hdr(4, p::INVALID_AUTH_TOKEN));
    c.req(p::AUTH, 5, Some(&p::AuthRequest { auth_key: "sekrit".into() })).await;
    assert_eq!(c.header().await, hdr(5, ""));
    c.req(p::MEMBERS, 6, NONE).await;
    assert_eq!(c.header().await, hdr(6, ""));
    let m: p::MembersResponse = c.value().await;
    assert_eq!(m.members.len(), 1);

    let wrong = RpcClient::connect(n.rpc, Some("nope"), WAIT).await.err().unwrap();
    assert_eq!(wrong.to_string(), p::INVALID_AUTH_TOKEN);
    let mut right = RpcClient::connect(n.rpc, Some("sekrit"), WAIT).await.unwrap();
    assert_eq!(right.members().await.unwrap().len(), 1);
}

#[tokio::test]
async fn members_show_this_node_as_serf_does() {
    // Proves the member record: 4-byte IPv4 Addr, gossip port, status, tags and protocol fields.
    let n = node(None).await;
    let mut c = RpcClient::connect(n.rpc, None, WAIT).await.unwrap();
    let ms = c.members().await.unwrap();
    assert_eq!(ms.len(), 1);
    let m = &ms[0];
    assert_eq!(
        (m.name.as_str(), m.status.as_str(), m.addr.as_slice()),
        ("m1", "alive", &[127u8, 0, 0, 1][..])
    );
    assert_eq!(m.port, n.gossip.local_addr().port());
    assert_eq!(m.tags["role"], "web");
    assert!(m.protocol_min <= m.protocol_cur && m.protocol_cur <= m.protocol_max && m.protocol_max >= 2);
    assert!(m.delegate_min <= m.delegate_cur && m.delegate_cur <= m.delegate_max && m.delegate_max >= 4);

    let filtered = |tags: &[(&str, &str)], status: &str, name: &str| p::MembersFilteredRequest {
        tags: Some(tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        status: status.into(),
        name: name.into(),
    };
    assert_eq!(c.members_filtered(&filtered(&[("role", "w.*")], "alive", "m[0-9]")).await.unwrap().len(), 1);
    assert_eq!(c.members_filtered(&filtered(&[("role", "db")], "", "")).await.unwrap().len(), 0);
    let bad = c.members_filtered(&filtered(&[], "(", "")).await.err().unwrap().to_string();
    assert!(bad.starts_with("Failed to compile regex"), "{bad}");
    assert_eq!(c.members().await.unwrap().len(), 1, "the connection survives a bad regexp");
}

#[tokio::test]
async fn a_stream_delivers_matching_user_events_until_stopped() {
    // Proves stream filtering, the record shape and Seq, "Stream with given sequence exists", and stop.
    let n = node(None).await;
    let mut s = Raw::ready(n.rpc).await;
    s.req(p::STREAM, 2, Some(&p::StreamRequest { kind: "member-join,bogus".into() })).await;
    assert_eq!(s.header().await, hdr(2, p::INVALID_FILTER));
    s.req(p::STREAM, 3, Some(&p::StreamRequest { kind: "member-leave,user:deploy".into() })).await;
    assert_eq!(s.header().await, hdr(3, ""));
    s.req(p::STREAM, 3, Some(&p::StreamRequest { kind: "*".into() })).await;
    assert_eq!(s.header().await, hdr(3, p::STREAM_EXISTS));

    let mut c = RpcClient::connect(n.rpc, None, WAIT).await.unwrap();
    c.user_event("other", b"x", true).await.unwrap();
    c.user_event("deploy", b"v1", false).await.unwrap();
    assert_eq!(s.header().await, hdr(3, ""));
    let rec: p::StreamRecord = s.value().await;
    assert_eq!(
        (rec.event.as_str(), rec.name.as_str(), rec.payload.as_slice(), rec.coalesce),
        ("user", "deploy", &b"v1"[..], false)
    );
    assert!(rec.ltime >= 1);

    s.req(p::STOP, 4, Some(&p::StopRequest { stop: 3 })).await;
    assert_eq!(s.header().await, hdr(4, ""));
    c.user_event("deploy", b"v2", true).await.unwrap();
    s.silent(Duration::from_millis(500)).await;

    let err = c.user_event("big", &[b'x'; 600], true).await.err().unwrap().to_string();
    assert!(err.contains("limit"), "{err}");
}

#[tokio::test]
async fn requests_split_into_single_bytes_are_reassembled() {
    // Proves incremental decoding: a request trickling in byte by byte is answered once whole.
    let n = node(None).await;
    let mut c = Raw::connect(n.rpc).await;
    let mut bytes = encode_request(p::HANDSHAKE, 1, Some(&p::HandshakeRequest { version: 1 })).unwrap();
    bytes.extend(encode_request(p::MEMBERS, 2, NONE).unwrap());
    for b in bytes {
        c.send(&[b]).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(c.header().await, hdr(1, ""));
    assert_eq!(c.header().await, hdr(2, ""));
    let m: p::MembersResponse = c.value().await;
    assert_eq!(m.members[0].name, "m1");
}

#[tokio::test]
async fn garbage_closes_only_that_connection() {
    // Proves bytes that are not msgpack (or not a header) end the connection, and others carry on.
    let n = node(None).await;
    let mut ok = Raw::ready(n.rpc).await;
    let mut bad = Raw::ready(n.rpc).await;
    bad.send(&[0xc1, 0x00]).await;
    bad.closed().await;
    let mut bad = Raw::ready(n.rpc).await;
    bad.send(&[0x93, 0x01, 0x02, 0x03]).await;
    bad.closed().await;
    ok.req(p::MEMBERS, 2, NONE).await;
    assert_eq!(ok.header().await, hdr(2, ""));
}

const FLOOD: usize = 12_000;

#[tokio::test]
async fn a_client_that_never_reads_its_stream_loses_it_without_slowing_others() {
    // Proves the bounded write queue: a non-reading streamer is dropped; other clients are answered throughout.
    let n = node(None).await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(n.rpc).await.unwrap();
    let (r, w) = stream.into_split();
    let mut slow = Raw { r: FrameReader::new(r, 1 << 20, WAIT), w };
    slow.req(p::HANDSHAKE, 1, Some(&p::HandshakeRequest { version: 1 })).await;
    assert_eq!(slow.header().await, hdr(1, ""));
    slow.req(p::STREAM, 2, Some(&p::StreamRequest { kind: "user".into() })).await;
    assert_eq!(slow.header().await, hdr(2, ""));

    let mut fast = RpcClient::connect(n.rpc, None, WAIT).await.unwrap();
    // ~6 MB of records: more than the kernel buffers (Linux grows a send buffer up to 4 MB)
    // plus the write queue can hold, so the queue must fill.
    let payload = [b'p'; 440];
    for _ in 0..FLOOD {
        fast.user_event("flood", &payload, false).await.unwrap();
    }
    // Drain what was queued before the stream was dropped; then nothing new may arrive.
    let mut got = 0;
    while tokio::time::timeout(Duration::from_millis(300), slow.r.next_value())
        .await
        .is_ok_and(|v| matches!(v, Ok(Some(_))))
    {
        got += 1;
    }
    assert!(got < 2 * FLOOD, "the stream should have been dropped, yet {} records arrived", got / 2);
    fast.user_event("after", b"", false).await.unwrap();
    slow.silent(Duration::from_millis(500)).await;
    slow.req(p::MEMBERS, 3, NONE).await;
    assert_eq!(slow.header().await, hdr(3, ""), "the connection itself stays usable");
}

#[test]
fn member_records_have_the_go_agents_bytes() {
    // Proves the member record encodes exactly as Serf 0.8.2 sent go1 (127.0.0.1:17946, role=web).
    let m = crate::membership::MemberInfo {
        name: "go1".into(),
        addr: "127.0.0.1".parse().unwrap(),
        port: 17946,
        tags: BTreeMap::from([("role".into(), "web".into())]),
        status: crate::membership::MemberStatus::Alive,
        protocol: [1, 5, 2, 2, 5, 5],
        incarnation: 1,
        last_seen_ms_ago: 0,
        mode: crate::membership::Mode::Unknown,
    };
    let resp = p::MembersResponse { members: vec![p::MemberRecord::from(&m)] };
    let got = p::encode_response(2, "", Some(&resp)).unwrap();
    let want = hex("82a54572726f72a0a353657102\
         81a74d656d62657273918ba441646472c4047f000001ab44656c656761746543757205ab44656c65676174654d617805\
         ab44656c65676174654d696e02a44e616d65a3676f31a4506f7274cd461aab50726f746f636f6c43757202ab50726f74\
         6f636f6c4d617805ab50726f746f636f6c4d696e01a6537461747573a5616c697665a45461677381a4726f6c65a3776562");
    assert_eq!(got, want);
}

#[test]
fn join_answers_and_go_request_bodies_decode() {
    // Proves the join answer's bytes ({Num: 1}) and that the CLI's join and event bodies decode.
    let got = p::encode_response(2, "", Some(&p::JoinResponse { num: 1 })).unwrap();
    assert_eq!(got, hex("82a54572726f72a0a35365710281a34e756d01"));
    let join: p::JoinRequest =
        rmp_serde::from_slice(&hex("82a84578697374696e6791af3132372e302e302e313a3137393437a65265706c6179c2"))
            .unwrap();
    assert_eq!(join.existing.unwrap(), ["127.0.0.1:17947"]);
    let ev: p::EventRequest =
        rmp_serde::from_slice(&hex("83a8436f616c65736365c3a44e616d65a66465706c6f79a75061796c6f6164c4027631"))
            .unwrap();
    assert_eq!((ev.name.as_str(), ev.payload.unwrap().as_slice(), ev.coalesce), ("deploy", &b"v1"[..], true));
    let filtered: p::MembersFilteredRequest =
        rmp_serde::from_slice(&hex("83a44e616d65a0a6537461747573a0a45461677380")).unwrap();
    assert_eq!(filtered.tags, Some(BTreeMap::new()));
}

/// Go: the body of `get-coordinate {Node: "nobody"}` from Serf 0.8.2 (zero coordinate, nil Vec).
const GO_UNKNOWN_COORDINATE: &str =
    "82a5436f6f726484aa41646a7573746d656e74cb0000000000000000a54572726f72cb0000000000000000\
     a6486569676874cb0000000000000000a3566563c0a24f6bc2";

#[test]
fn coordinate_answers_have_the_go_agents_bytes() {
    // Proves get-coordinate bodies encode as Serf 0.8.2's: a known coordinate (captured from Go) round-trips byte for byte, and an unknown node's zero answer is identical.
    let known = hex("82a5436f6f726484aa41646a7573746d656e74cb3edb48315819cef0a54572726f72cb3ff3378c63afa567\
         a6486569676874cb3eeb9259e2aac921a356656398cb3ee99920bf7f0669cbbedbddbdac01f41ccbbee29a71559885ab\
         cb3ecdd368daba6afacbbed36bff1f140ed8cbbee59019463821c8cbbee595a4f15a05eacb3ee9cc41ea8c5ef5a24f6bc3");
    let resp: p::CoordinateResponse = rmp_serde::from_slice(&known).unwrap();
    assert!(resp.ok);
    let coord = crate::gossip::wire::SerfCoordinate::from(resp.coord.clone());
    assert_eq!(coord.vec.len(), 8);
    assert_eq!(rmp_serde::to_vec_named(&p::CoordinateResponse::new(Some(coord))).unwrap(), known);
    let unknown = rmp_serde::to_vec_named(&p::CoordinateResponse::new(None)).unwrap();
    assert_eq!(unknown, hex(GO_UNKNOWN_COORDINATE));
    let req: p::CoordinateRequest = rmp_serde::from_slice(&hex("81a44e6f6465a3676f32")).unwrap();
    assert_eq!(req.node, "go2");
}

#[tokio::test]
async fn get_coordinate_serves_our_own_and_refuses_unknown_nodes_like_go() {
    // Proves get-coordinate is served: our own coordinate exists from the start (Serf seeds its cache with it), an unknown node gets Go's Ok=false body, and the connection stays usable.
    let n = node(None).await;
    let mut c = Raw::ready(n.rpc).await;
    c.req(p::GET_COORDINATE, 2, Some(&p::CoordinateRequest { node: "m1".into() })).await;
    assert_eq!(c.header().await, hdr(2, ""));
    let own: p::CoordinateResponse = c.value().await;
    assert!(own.ok);
    assert_eq!((own.coord.vec.as_ref().map(Vec::len), own.coord.error), (Some(8), 1.5));
    c.req(p::GET_COORDINATE, 3, Some(&p::CoordinateRequest { node: "nobody".into() })).await;
    assert_eq!(c.header().await, hdr(3, ""));
    assert_eq!(c.raw_value().await, hex(GO_UNKNOWN_COORDINATE));
    let mut client = RpcClient::connect(n.rpc, None, WAIT).await.unwrap();
    assert_eq!(client.get_coordinate("nobody").await.unwrap(), None);
    assert_eq!(client.get_coordinate("m1").await.unwrap(), n.gossip.coordinate("m1"));
    let stats = client.stats().await.unwrap();
    assert_eq!(stats["serf"]["coordinate_resets"], "0");
}
