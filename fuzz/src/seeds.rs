//! The seed corpora: a handful of valid inputs per target, encoded with muster's own encoders,
//! written as `corpus/<target>/seed-<name>` (committed; what libFuzzer adds next to them is
//! not). Regenerate after a wire change with
//! `cargo test --manifest-path fuzz/Cargo.toml --lib -- --ignored write_seed_corpora`
//! (an ordinary build: no sanitizer, no nightly flags). Encrypted seeds use random nonces, so
//! they differ byte-wise on every run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::Path;

use muster::consensus::network::pb::RaftMessage;
use muster::consensus::types::{Entry, SnapshotMeta, Vote};
use muster::consensus::{Proposal, TypeConfig};
use muster::gossip::wire::{
    encode_packet, encode_ping_payload, encode_stream, encode_tags, serf_type, Ack, Alive, Dead, ErrResp,
    IndirectPing, Message, Nack, PacketOptions, Ping, PushNodeState, PushPullHeader, SerfCoordinate,
    SerfFilter, SerfJoin, SerfKeyRequest, SerfKeyResponse, SerfLeave, SerfMessage, SerfPushPull, SerfQuery,
    SerfQueryResponse, SerfRelayHeader, SerfUdpAddr, SerfUserEvent, SerfUserEventEntry, SerfUserEvents,
    StreamMessage, Suspect, QUERY_FLAG_ACK,
};
use muster::registry::{Command, NewService, Registry, Revision, ServiceId, ServicePatch, Status};
use muster::serf_rpc::encode_request;
use muster::serf_rpc::proto as p;
use openraft::entry::RaftEntry;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, TransferLeaderRequest, VoteRequest};
use openraft::testing::{blank_ent, log_id, membership_ent};
use prost::Message as _;
use serde::Serialize;
use serde_bytes::ByteBuf;

use crate::{Mode, LABEL};

const NOW_MS: u64 = 1_735_689_600_000;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn with_mode(mode: Mode, body: Vec<u8>) -> Vec<u8> {
    let mut out = vec![mode as u8];
    out.extend(body);
    out
}

fn tags_meta() -> Vec<u8> {
    let tags =
        BTreeMap::from([("role".to_owned(), "server".to_owned()), ("dc".to_owned(), "lab".to_owned())]);
    encode_tags(&tags).unwrap()
}

fn alive(name: &str) -> Alive {
    Alive {
        incarnation: 3,
        node: name.into(),
        addr: vec![127, 0, 0, 2],
        port: 7946,
        meta: tags_meta(),
        vsn: vec![1, 5, 5, 2, 5, 4],
    }
}

fn coordinate() -> SerfCoordinate {
    SerfCoordinate { vec: vec![0.001; 8], error: 1.5, adjustment: 0.0, height: 1.0e-5 }
}

fn user(msg: &SerfMessage) -> Vec<u8> {
    Message::User(msg.encode()).encode()
}

fn query(name: &str, payload: Vec<u8>, filters: Vec<Vec<u8>>) -> SerfQuery {
    SerfQuery {
        l_time: 7,
        id: 42,
        addr: vec![127, 0, 0, 2],
        port: 7946,
        source_node: "peer".into(),
        filters,
        flags: QUERY_FLAG_ACK,
        relay_factor: 1,
        timeout: 5_000_000_000,
        name: name.into(),
        payload,
    }
}

fn push_pull() -> SerfPushPull {
    SerfPushPull {
        l_time: 9,
        status_l_times: HashMap::from([("peer".to_owned(), 4), ("gone".to_owned(), 6)]),
        left_members: vec!["gone".into()],
        event_l_time: 5,
        events: vec![SerfUserEvents {
            l_time: 4,
            events: vec![SerfUserEventEntry { name: "deploy".into(), payload: b"v2".to_vec() }],
        }],
        query_l_time: 8,
    }
}

fn gossip_packets() {
    let key_request = {
        let mut payload = vec![serf_type::KEY_REQUEST];
        payload.extend(rmp_serde::to_vec_named(&SerfKeyRequest { key: vec![7; 32] }).unwrap());
        payload
    };
    let key_response = {
        let resp = SerfKeyResponse {
            result: true,
            message: String::new(),
            keys: vec!["WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=".into()],
            primary_key: "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=".into(),
        };
        let mut payload = vec![serf_type::KEY_RESPONSE];
        payload.extend(rmp_serde::to_vec_named(&resp).unwrap());
        payload
    };
    let filters = vec![
        SerfFilter::Nodes(vec!["fuzz-node".into(), "peer".into()]).encode(),
        SerfFilter::Tag { tag: "role".into(), expr: "^serv(er|ice)$".into() }.encode(),
    ];
    let relayed = SerfRelayHeader {
        dest_addr: SerfUdpAddr { ip: vec![127, 0, 0, 3], port: 7946, zone: String::new() },
        dest_name: "asker".into(),
    }
    .encode_relay(
        &SerfMessage::QueryResponse(SerfQueryResponse {
            l_time: 7,
            id: 42,
            from: "peer".into(),
            flags: 0,
            payload: b"pong".to_vec(),
        })
        .encode(),
    );
    let sets: Vec<(&str, Mode, PacketOptions, Vec<Vec<u8>>)> = vec![
        (
            "plain-alive-ping-join",
            Mode::Plain,
            PacketOptions { crc: true, compress: false },
            vec![
                Message::Alive(alive("peer")).encode(),
                Message::Ping(Ping { seq_no: 1, node: "fuzz-node".into(), ..Default::default() }).encode(),
                user(&SerfMessage::Join(SerfJoin { l_time: 4, node: "peer".into() })),
            ],
        ),
        (
            "keyed-query-event-ack",
            Mode::Keyed,
            PacketOptions { crc: false, compress: true },
            vec![
                user(&SerfMessage::Query(query("uptime", b"now".to_vec(), filters))),
                user(&SerfMessage::UserEvent(SerfUserEvent {
                    l_time: 5,
                    name: "deploy".into(),
                    payload: b"v2".to_vec(),
                    cc: true,
                })),
                Message::Ack(Ack { seq_no: 1, payload: encode_ping_payload(&coordinate()) }).encode(),
            ],
        ),
        (
            "strict-failure-detection",
            Mode::KeyedStrict,
            PacketOptions { crc: true, compress: true },
            vec![
                Message::Suspect(Suspect { incarnation: 3, node: "peer".into(), from: "other".into() })
                    .encode(),
                Message::Dead(Dead { incarnation: 3, node: "peer".into(), from: "other".into() }).encode(),
                Message::IndirectPing(IndirectPing {
                    seq_no: 2,
                    target: vec![127, 0, 0, 4],
                    port: 7946,
                    node: "far".into(),
                    nack: true,
                    source_addr: vec![127, 0, 0, 2],
                    source_port: 7946,
                    source_node: "peer".into(),
                })
                .encode(),
                Message::Nack(Nack { seq_no: 2 }).encode(),
            ],
        ),
        (
            "labelled-relay-pushpull-leave",
            Mode::Labelled,
            PacketOptions { crc: false, compress: false },
            vec![
                Message::User(relayed).encode(),
                user(&SerfMessage::PushPull(push_pull())),
                user(&SerfMessage::Leave(SerfLeave { l_time: 6, node: "gone".into(), prune: true })),
                Message::Err(ErrResp { error: "boom".into() }).encode(),
            ],
        ),
        (
            "plain-key-query-and-answer",
            Mode::Plain,
            PacketOptions { crc: false, compress: false },
            vec![
                user(&SerfMessage::Query(query("_serf_install-key", key_request, Vec::new()))),
                user(&SerfMessage::QueryResponse(SerfQueryResponse {
                    l_time: 7,
                    id: 42,
                    from: "peer".into(),
                    flags: 0,
                    payload: key_response,
                })),
            ],
        ),
    ];
    for (name, mode, opts, msgs) in sets {
        let packet = encode_packet(&msgs, opts, &mode.security()).unwrap();
        write("gossip_packet", name, &with_mode(mode, packet));
    }
    // Go's older encryption (vsn 0, PKCS#7 padding): muster decrypts it but only sends vsn 1.
    let plain = Message::Alive(alive("old-peer")).encode();
    let mut packet = vec![244, LABEL.len() as u8];
    packet.extend_from_slice(LABEL.as_bytes());
    packet.extend(crate::keyring().encrypt(0, &plain, LABEL.as_bytes()).unwrap());
    write("gossip_packet", "keyed-vsn0-alive", &with_mode(Mode::Keyed, packet));
}

fn gossip_streams() {
    let states = vec![
        PushNodeState {
            name: "peer".into(),
            addr: vec![127, 0, 0, 2],
            port: 7946,
            meta: tags_meta(),
            incarnation: 3,
            state: 0,
            vsn: vec![1, 5, 5, 2, 5, 4],
        },
        PushNodeState {
            name: "gone".into(),
            addr: vec![127, 0, 0, 5],
            port: 7946,
            meta: b"db".to_vec(),
            incarnation: 8,
            state: 3,
            vsn: vec![1, 5, 5, 2, 5, 4],
        },
    ];
    let push_pull = |join: bool| StreamMessage::PushPull {
        header: PushPullHeader { nodes: 0, user_state_len: 0, join },
        states: states.clone(),
        user_state: SerfMessage::PushPull(push_pull()).encode(),
    };
    let sets: Vec<(&str, Mode, bool, StreamMessage)> = vec![
        ("plain-push-pull", Mode::Plain, false, push_pull(false)),
        ("keyed-join-compressed", Mode::Keyed, true, push_pull(true)),
        (
            "labelled-user-event",
            Mode::Labelled,
            false,
            StreamMessage::User(
                SerfMessage::UserEvent(SerfUserEvent {
                    l_time: 5,
                    name: "deploy".into(),
                    payload: b"v2".to_vec(),
                    cc: false,
                })
                .encode(),
            ),
        ),
        (
            "strict-ping",
            Mode::KeyedStrict,
            false,
            StreamMessage::Ping(Ping { seq_no: 3, node: "fuzz-node".into(), ..Default::default() }),
        ),
        ("plain-ack", Mode::Plain, true, StreamMessage::Ack(Ack { seq_no: 3, payload: Vec::new() })),
        ("plain-err", Mode::Plain, false, StreamMessage::Err(ErrResp { error: "unknown node".into() })),
    ];
    for (name, mode, compress, msg) in sets {
        let bytes = encode_stream(&msg, compress, &mode.security()).unwrap();
        write("gossip_stream", name, &with_mode(mode, bytes));
    }
}

fn request<B: Serialize>(out: &mut Vec<u8>, command: &str, seq: u64, body: Option<&B>) {
    out.extend(encode_request(command, seq, body).unwrap());
}

fn serf_rpc() {
    let none: Option<&()> = None;
    let handshake =
        |out: &mut Vec<u8>| request(out, p::HANDSHAKE, 0, Some(&p::HandshakeRequest { version: 1 }));

    let mut session = Vec::new();
    handshake(&mut session);
    request(&mut session, p::AUTH, 1, Some(&p::AuthRequest { auth_key: "secret".into() }));
    let event = p::EventRequest {
        coalesce: true,
        name: "deploy".into(),
        payload: Some(ByteBuf::from(b"v2".to_vec())),
    };
    request(&mut session, p::EVENT, 2, Some(&event));
    request(&mut session, p::MEMBERS, 3, none);
    let filtered = p::MembersFilteredRequest {
        name: "fuzz-.*".into(),
        status: "alive|failed".into(),
        tags: Some(BTreeMap::from([("role".to_owned(), "serv(er|ice)".to_owned())])),
    };
    request(&mut session, p::MEMBERS_FILTERED, 4, Some(&filtered));
    request(&mut session, p::STATS, 5, none);
    write("serf_rpc", "members-and-event", &session);

    let mut streams = Vec::new();
    handshake(&mut streams);
    request(
        &mut streams,
        p::STREAM,
        1,
        Some(&p::StreamRequest { kind: "member-join,user:deploy,query".into() }),
    );
    request(&mut streams, p::MONITOR, 2, Some(&p::MonitorRequest { log_level: "debug".into() }));
    request(&mut streams, p::STOP, 3, Some(&p::StopRequest { stop: 1 }));
    request(
        &mut streams,
        p::RESPOND,
        4,
        Some(&p::RespondRequest { id: 9, payload: Some(ByteBuf::from(b"ok".to_vec())) }),
    );
    request(&mut streams, p::GET_COORDINATE, 5, Some(&p::CoordinateRequest { node: "peer".into() }));
    write("serf_rpc", "streams-and-monitor", &streams);

    let mut cluster = Vec::new();
    handshake(&mut cluster);
    let q = p::QueryRequest {
        filter_nodes: Some(vec!["peer".into()]),
        filter_tags: Some(BTreeMap::from([("dc".to_owned(), "^lab$".to_owned())])),
        name: "uptime".into(),
        payload: Some(ByteBuf::from(b"now".to_vec())),
        relay_factor: 2,
        request_ack: true,
        timeout: 2_000_000_000,
    };
    request(&mut cluster, p::QUERY, 1, Some(&q));
    let tags = p::TagsRequest {
        delete_tags: Some(vec!["old".into()]),
        tags: Some(BTreeMap::from([("rack".to_owned(), "r1".to_owned())])),
    };
    request(&mut cluster, p::TAGS, 2, Some(&tags));
    request(
        &mut cluster,
        p::FORCE_LEAVE,
        3,
        Some(&p::ForceLeaveRequest { node: "gone".into(), prune: true }),
    );
    request(
        &mut cluster,
        p::JOIN,
        4,
        Some(&p::JoinRequest { existing: Some(vec!["127.0.0.2:7946".into()]), replay: false }),
    );
    request(&mut cluster, p::LEAVE, 5, none);
    write("serf_rpc", "query-tags-join", &cluster);

    let mut keys = Vec::new();
    handshake(&mut keys);
    let key = p::KeyRequest { key: "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=".into() };
    request(&mut keys, p::INSTALL_KEY, 1, Some(&key));
    request(&mut keys, p::USE_KEY, 2, Some(&key));
    request(&mut keys, p::REMOVE_KEY, 3, Some(&key));
    request(&mut keys, p::LIST_KEYS, 4, none);
    write("serf_rpc", "keys", &keys);
}

fn rest_json() {
    let full = serde_json::json!({
        "service_id": "3f2a0c8e-5b7d-4e1a-9c6f-2d8b4a1e7c3d",
        "name": "camera-1", "type": "camera", "host": "10.1.0.5", "port": 8080, "protocol": "http",
        "tags": ["lab", "north"], "metadata": {"model": "x1"}, "ttl": 60,
        "health_check_url": "http://10.1.0.5:8080/health", "health_check_interval": 30,
        "mdns_service_type": "_http._tcp.local.", "mdns_txt_records": {"path": "/"},
        "description": "north door", "version": "1.2.0"
    });
    let minimal = serde_json::json!({"name": "db", "type": "database", "host": "db.lab", "port": 5432});
    let patch = ServicePatch {
        name: Some("camera-2".into()),
        port: Some(8081),
        tags: Some(vec!["south".into()]),
        status: Some(Status::Inactive),
        health_check_url: Some(None),
        ..Default::default()
    };
    write("rest_json", "register-full", &[&[0u8][..], &serde_json::to_vec(&full).unwrap()].concat());
    write("rest_json", "register-minimal", &[&[0u8][..], &serde_json::to_vec(&minimal).unwrap()].concat());
    write("rest_json", "update", &[&[1u8][..], &serde_json::to_vec(&patch).unwrap()].concat());
    write("rest_json", "query-status", b"\x02maintenance");
}

fn raft_message(kind: u8, payload: Vec<u8>) -> Vec<u8> {
    let msg = RaftMessage { from: 2, payload, cluster: "9c41".into() };
    let mut out = vec![kind];
    out.extend(msg.encode_to_vec());
    out
}

fn raft_rpc() {
    let id = ServiceId::new("3f2a0c8e-5b7d-4e1a-9c6f-2d8b4a1e7c3d");
    let register = Command::Register {
        service: NewService::new(id.clone(), "camera", "http", "10.1.0.5", 8080),
        now_ms: NOW_MS,
    };
    let update = Command::Update {
        id: id.clone(),
        patch: ServicePatch { port: Some(8081), ..Default::default() },
        now_ms: NOW_MS + 1,
    };
    let renew = Command::Renew { ids_with_ttl: vec![(id.clone(), Some(90))], now_ms: NOW_MS + 2 };
    let proposal = |cmd: &Command| Proposal(muster::replicated::encode_command(cmd));
    let lid = |index| log_id::<TypeConfig>(2, 1, index);
    let entries: Vec<Entry> = vec![
        blank_ent::<TypeConfig>(2, 1, 1),
        membership_ent::<TypeConfig>(2, 1, 2, vec![BTreeSet::from([1, 2, 3])]),
        Entry::new_normal(lid(3), proposal(&register)),
        Entry::new_normal(lid(4), proposal(&update)),
        Entry::new_normal(lid(5), proposal(&renew)),
    ];
    let vote = Vote::new_committed(2, 1);
    let append =
        AppendEntriesRequest::<TypeConfig> { vote, prev_log_id: None, entries, leader_commit: Some(lid(5)) };
    write("raft_rpc", "append-entries", &raft_message(0, encode(&append)));
    let vote_req = VoteRequest::<TypeConfig>::new(Vote::new(3, 2), Some(lid(5)));
    write("raft_rpc", "vote", &raft_message(1, encode(&vote_req)));
    write("raft_rpc", "pre-vote", &raft_message(2, encode(&vote_req)));

    let mut registry = Registry::new(64);
    registry.apply(Revision(3), &register).unwrap();
    registry.apply(Revision(4), &update).unwrap();
    let data = registry.snapshot_bytes().unwrap();
    let voters = membership_ent::<TypeConfig>(2, 1, 2, vec![BTreeSet::from([1, 2, 3])]);
    let meta = SnapshotMeta {
        last_log_id: Some(lid(4)),
        last_membership: openraft::StoredMembership::new(Some(lid(2)), voters.get_membership().unwrap()),
    };
    let snapshot = (vote, meta, ByteBuf::from(data.clone()));
    write("raft_rpc", "install-snapshot", &raft_message(3, encode(&snapshot)));
    let transfer = TransferLeaderRequest::<TypeConfig>::new(vote, 3, Some(lid(5)));
    write("raft_rpc", "transfer-leader", &raft_message(4, encode(&transfer)));
    let reply: Result<AppendEntriesResponse<TypeConfig>, String> = Ok(AppendEntriesResponse::Success);
    write("raft_rpc", "append-reply", &raft_message(5, encode(&reply)));
    write("raft_rpc", "command-update", &[&[9u8][..], &proposal(&update).0].concat());
    write("raft_rpc", "snapshot", &[&[10u8][..], &data].concat());
}

/// The raft transport's encoding (`consensus::network::encode`).
fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(v).unwrap()
}

#[test]
#[ignore = "writes the seed corpora into fuzz/corpus/; run by hand after a wire change"]
fn write_seed_corpora() {
    gossip_packets();
    gossip_streams();
    serf_rpc();
    rest_json();
    raft_rpc();
}
