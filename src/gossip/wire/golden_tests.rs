//! Golden-bytes tests: frames captured from real Go `serf agent`s (see
//! `tests/fixtures/wire/README.md`) must decode to the values the agents sent, and our own
//! encoding of those values must decode back equal. Test-only.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/wire/", $name)).as_slice()
    };
}

/// The key the encrypted agents ran with (`serf keygen`, recorded in the fixture README).
const GOLDEN_KEY: &str = "X4tvsO3yko9Oh9AdPRyJhJY74XClOPiQzeeOdD5Hpu8=";
const LOCALHOST: [u8; 4] = [127, 0, 0, 1];
const GO_VSN: [u8; 6] = [1, 5, 2, 2, 5, 5];

fn plain() -> Security<'static> {
    Security::default()
}

fn one(buf: &[u8], sec: &Security) -> Message {
    let mut msgs = decode_packet(buf, sec).unwrap();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    msgs.remove(0)
}

fn serf_of(m: &Message) -> SerfMessage {
    match m {
        Message::User(p) => SerfMessage::decode(p).unwrap(),
        other => panic!("not a user message: {other:?}"),
    }
}

/// Our packet encoding of `msgs` (with CRC, as gossip is sent) decodes back to `msgs`.
fn assert_packet_round_trip(msgs: &[Message], sec: &Security) {
    let encoded: Vec<Vec<u8>> = msgs.iter().map(Message::encode).collect();
    for compress in [false, true] {
        let opts = PacketOptions { crc: true, compress };
        let pkt = encode_packet(&encoded, opts, sec).unwrap();
        assert_eq!(decode_packet(&pkt, sec).unwrap(), msgs);
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CompressBody {
    algo: u8,
    #[serde(with = "super::msgpack::bytes")]
    buf: Vec<u8>,
}

/// Go's LZW output in a `[9]{Algo, Buf}` message re-compresses byte-identically with ours.
fn assert_lzw_identical_to_go(compress_msg: &[u8]) {
    assert_eq!(compress_msg[0], 9);
    let body: CompressBody = rmp_serde::from_slice(&compress_msg[1..]).unwrap();
    assert_eq!(body.algo, 0);
    let inflated = decompress(&body.buf).unwrap();
    assert_eq!(compress(&inflated).unwrap(), body.buf);
    assert_eq!(decode_compress_msg(&encode_compress_msg(&inflated).unwrap()).unwrap(), inflated);
}

#[test]
fn golden_ping_and_ack_with_coordinate() {
    // Proves a Go ping and an ack carrying Serf's coordinate decode field by field and round-trip.
    let ping = one(fixture!("udp_ping.bin"), &plain());
    let want = Ping {
        seq_no: 1,
        node: "go1".into(),
        source_addr: LOCALHOST.to_vec(),
        source_port: 17947,
        source_node: "go2".into(),
    };
    assert_eq!(ping, Message::Ping(want));
    assert_eq!(Message::decode(fixture!("udp_ping.bin")).unwrap(), ping);
    assert_eq!(Message::decode(&ping.encode()).unwrap(), ping);

    let Message::Ack(ack) = one(fixture!("udp_ack.bin"), &plain()) else { panic!("not an ack") };
    assert_eq!(ack.seq_no, 1);
    assert_eq!(ack.payload[0], PING_VERSION);
    let coord = decode_ping_payload(&ack.payload).unwrap();
    assert_eq!(coord.vec.len(), 8);
    assert_eq!(coord.vec[0], 3.706929832910212e-5);
    assert_eq!(coord.error, 1.3541765265440289);
    assert_eq!(coord.adjustment, 2.6842364997568985e-5);
    assert_eq!(coord.height, 2.1921556141800986e-5);
    assert_eq!(decode_ping_payload(&encode_ping_payload(&coord)).unwrap(), coord);
    assert_packet_round_trip(&[Message::Ack(ack)], &plain());
}

#[test]
fn golden_compressed_ack_and_lzw_identity() {
    // Proves a compressed Go packet decodes and our LZW output is byte-identical to Go's.
    let buf = fixture!("udp_ack_compressed.bin");
    assert_lzw_identical_to_go(buf);
    let Message::Ack(ack) = one(buf, &plain()) else { panic!("not an ack") };
    let coord = decode_ping_payload(&ack.payload).unwrap();
    assert_eq!(coord.vec, vec![0.0; 8]);
    assert_eq!((coord.error, coord.height), (1.5, 1e-5));
}

#[test]
fn golden_compound_with_crc_alive_tags_and_join() {
    // Proves CRC + compound gossip decodes, tags come out of Meta, and a flipped byte fails the CRC.
    let buf = fixture!("udp_compound_crc.bin");
    assert_eq!((buf[0], buf[5], buf[6]), (12, 7, 3));
    let msgs = decode_packet(buf, &plain()).unwrap();
    assert_eq!(msgs.len(), 3);
    let Message::Alive(go1) = &msgs[0] else { panic!("{msgs:?}") };
    assert_eq!((go1.node.as_str(), go1.incarnation, go1.port), ("go1", 1, 17946));
    assert_eq!((go1.addr.as_slice(), go1.vsn.as_slice()), (&LOCALHOST[..], &GO_VSN[..]));
    assert_eq!(decode_tags(&go1.meta), BTreeMap::from([("role".to_owned(), "web".to_owned())]));
    let Message::Alive(go2) = &msgs[1] else { panic!("{msgs:?}") };
    assert_eq!(go2.node, "go2");
    assert!(decode_tags(&go2.meta).is_empty());
    assert_eq!(encode_tags(&decode_tags(&go1.meta)).unwrap(), go1.meta);
    assert_eq!(serf_of(&msgs[2]), SerfMessage::Join(SerfJoin { l_time: 1, node: "go2".into() }));
    assert_packet_round_trip(&msgs, &plain());

    let mut bad = buf.to_vec();
    bad[20] ^= 0x01;
    assert!(matches!(decode_packet(&bad, &plain()), Err(WireError::CrcMismatch { .. })));
}

#[test]
fn golden_compressed_compound_with_crc() {
    // Proves CRC → compress → compound nesting as Go sends it, with go3's dc=lab tags.
    let buf = fixture!("udp_compressed_crc.bin");
    assert_eq!(buf[0], 12);
    assert_lzw_identical_to_go(&buf[5..]);
    let msgs = decode_packet(buf, &plain()).unwrap();
    let names: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::Alive(a) => Some(a.node.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["go1", "go3", "go2", "go4"]);
    let Message::Alive(go3) = &msgs[1] else { panic!() };
    assert_eq!(decode_tags(&go3.meta)["dc"], "lab");
    assert_eq!(serf_of(&msgs[4]), SerfMessage::Join(SerfJoin { l_time: 2, node: "go4".into() }));
    assert_packet_round_trip(&msgs, &plain());
}

#[test]
fn golden_failure_detection_messages() {
    // Proves suspect, dead (failed and left), indirect ping and nack from real agents.
    let sus = one(fixture!("udp_suspect.bin"), &plain());
    let want = Suspect { incarnation: 1, node: "go3".into(), from: "go1".into() };
    assert_eq!(sus, Message::Suspect(want));

    let left = one(fixture!("udp_dead_left.bin"), &plain());
    let Message::Dead(d) = &left else { panic!() };
    assert_eq!((d.node.as_str(), d.from.as_str(), d.incarnation), ("go2", "go2", 1));

    let msgs = decode_packet(fixture!("udp_compound_dead.bin"), &plain()).unwrap();
    let Message::IndirectPing(ind) = &msgs[0] else { panic!("{msgs:?}") };
    assert_eq!((ind.seq_no, ind.port, ind.node.as_str(), ind.nack), (34, 17948, "go3", true));
    assert_eq!((ind.source_node.as_str(), ind.source_port), ("go1", 17946));
    let dead = Dead { incarnation: 1, node: "go3".into(), from: "go1".into() };
    assert_eq!(msgs[1], Message::Dead(dead));

    let ind = one(fixture!("udp_indirect_ping.bin"), &plain());
    let Message::IndirectPing(i) = &ind else { panic!() };
    assert_eq!((i.seq_no, i.target.as_slice()), (18, &LOCALHOST[..]));
    let nack = one(fixture!("udp_nack.bin"), &plain());
    assert_eq!(nack, Message::Nack(Nack { seq_no: 19 }));

    let all = [sus, left, msgs[0].clone(), msgs[1].clone(), ind, nack];
    assert_packet_round_trip(&all, &plain());
}

#[test]
fn golden_serf_leave_event_query_response() {
    // Proves Serf's leave, user event, query and query response decode with Go's field names.
    let leave = serf_of(&one(fixture!("udp_serf_leave.bin"), &plain()));
    let want_leave = SerfLeave { l_time: 3, node: "go2".into(), prune: false };
    assert_eq!(leave, SerfMessage::Leave(want_leave));

    let event = serf_of(&one(fixture!("udp_user_event.bin"), &plain()));
    let want_event = SerfUserEvent { l_time: 1, name: "deploy".into(), payload: b"v1".to_vec(), cc: true };
    assert_eq!(event, SerfMessage::UserEvent(want_event));

    let query = serf_of(&one(fixture!("udp_query.bin"), &plain()));
    let SerfMessage::Query(q) = &query else { panic!("{query:?}") };
    assert_eq!((q.l_time, q.id, q.port), (1, 1727698233, 17946));
    assert_eq!((q.addr.as_slice(), q.source_node.as_str()), (&LOCALHOST[..], "go1"));
    assert_eq!((q.flags, q.relay_factor, q.timeout), (QUERY_FLAG_ACK, 0, 2_000_000_000));
    assert_eq!((q.name.as_str(), q.payload.as_slice()), ("uptime", &b"hello"[..]));
    assert!(q.filters.is_empty());

    let resp = serf_of(&one(fixture!("udp_query_response.bin"), &plain()));
    let want_resp = SerfQueryResponse {
        l_time: 1,
        id: 1727698233,
        from: "go2".into(),
        flags: QUERY_FLAG_ACK,
        payload: vec![],
    };
    assert_eq!(resp, SerfMessage::QueryResponse(want_resp));

    for m in [leave, event, query, resp] {
        assert_eq!(SerfMessage::decode(&m.encode()).unwrap(), m);
        assert_packet_round_trip(&[Message::User(m.encode())], &plain());
    }
}

fn pushpull(buf: &[u8], sec: &Security) -> (PushPullHeader, Vec<PushNodeState>, SerfPushPull) {
    let (msg, used) = decode_stream(buf, sec).unwrap().unwrap();
    assert_eq!(used, buf.len());
    for cut in 0..buf.len() {
        assert_eq!(decode_stream(&buf[..cut], sec), Ok(None), "prefix of {cut} bytes");
    }
    let StreamMessage::PushPull { header, states, user_state } = &msg else { panic!("{msg:?}") };
    assert_eq!(header.nodes as usize, states.len());
    assert_eq!(header.user_state_len as usize, user_state.len());
    // Our stream (compressed or not) decodes back to the same message.
    for compress in [false, true] {
        let ours = encode_stream(&msg, compress, sec).unwrap();
        assert_eq!(decode_stream(&ours, sec).unwrap(), Some((msg.clone(), ours.len())));
    }
    let SerfMessage::PushPull(serf) = SerfMessage::decode(user_state).unwrap() else {
        panic!("user state is not a serf push/pull")
    };
    (header.clone(), states.clone(), serf)
}

#[test]
fn golden_tcp_pushpull_on_join() {
    // Proves the compressed push/pull a joining Go agent sends, and the reply, decode completely.
    let buf = fixture!("tcp_pushpull_join.bin");
    assert_lzw_identical_to_go(buf);
    let (header, states, serf) = pushpull(buf, &plain());
    assert!(header.join);
    assert_eq!(
        states,
        vec![PushNodeState {
            name: "go2".into(),
            addr: LOCALHOST.to_vec(),
            port: 17947,
            meta: vec![0xff, 0x80],
            incarnation: 1,
            state: 0,
            vsn: GO_VSN.to_vec(),
        }]
    );
    assert_eq!((serf.l_time, serf.event_l_time, serf.query_l_time), (1, 1, 1));
    assert_eq!(serf.status_l_times, [("go2".to_owned(), 0)].into());
    assert!(serf.left_members.is_empty() && serf.events.is_empty());

    let (header, states, serf) = pushpull(fixture!("tcp_pushpull_join_reply.bin"), &plain());
    assert!(header.join);
    assert_eq!(states[0].name, "go1");
    assert_eq!(decode_tags(&states[0].meta)["role"], "web");
    assert_eq!(serf.status_l_times, [("go1".to_owned(), 0)].into());
}

#[test]
fn golden_tcp_pushpull_periodic_sync() {
    // Proves left/dead node states, left members and buffered user events in a periodic push/pull.
    let (header, states, serf) = pushpull(fixture!("tcp_pushpull_sync.bin"), &plain());
    assert!(!header.join);
    let by_name: BTreeMap<_, _> = states.iter().map(|s| (s.name.as_str(), s.state)).collect();
    assert_eq!(by_name, BTreeMap::from([("go1", 0), ("go2", 3), ("go3", 2), ("go4", 0)]));
    assert_eq!((serf.l_time, serf.event_l_time, serf.query_l_time), (4, 2, 2));
    assert_eq!(serf.left_members, ["go2"]);
    assert_eq!(serf.status_l_times["go2"], 3);
    assert_eq!(
        serf.events,
        vec![SerfUserEvents {
            l_time: 1,
            events: vec![SerfUserEventEntry { name: "deploy".into(), payload: b"v1".to_vec() }]
        }]
    );
    let again = SerfMessage::PushPull(serf.clone()).encode();
    assert_eq!(SerfMessage::decode(&again).unwrap(), SerfMessage::PushPull(serf));
}

#[test]
fn golden_encrypted_udp() {
    // Proves packets from agents run with -encrypt decrypt with the key, and fail clearly without it.
    let ring = Keyring::from_base64(GOLDEN_KEY).unwrap();
    let sec = Security { label: "", keyring: Some(&ring), verify_incoming: true };
    let buf = fixture!("enc_udp_ping.bin");
    assert_eq!(buf[0], 1, "go uses encryption version 1");
    let Message::Ping(p) = one(buf, &sec) else { panic!() };
    assert_eq!((p.node.as_str(), p.source_node.as_str()), ("enc1", "enc2"));

    let event = serf_of(&one(fixture!("enc_udp_user_event.bin"), &sec));
    let SerfMessage::UserEvent(e) = &event else { panic!() };
    assert_eq!((e.name.as_str(), e.payload.as_slice()), ("secret", &b"s1"[..]));

    let msgs = decode_packet(fixture!("enc_udp_compound.bin"), &sec).unwrap();
    let Message::Alive(a) = &msgs[0] else { panic!() };
    assert_eq!(decode_tags(&a.meta)["role"], "db");
    assert_eq!(msgs.len(), 3);
    assert_packet_round_trip(&msgs, &sec);

    let other = Keyring::from_base64(&generate_key()).unwrap();
    let wrong = Security { keyring: Some(&other), ..sec };
    let err = decode_packet(buf, &wrong).unwrap_err();
    assert_eq!(err, WireError::NoKeyDecrypts { tried: 1 });
    assert!(decode_packet(buf, &plain()).is_err());
}

#[test]
fn golden_encrypted_stream() {
    // Proves an encrypted, compressed push/pull stream decodes, incrementally, and needs the key.
    let ring = Keyring::from_base64(GOLDEN_KEY).unwrap();
    let sec = Security { label: "", keyring: Some(&ring), verify_incoming: true };
    let buf = fixture!("enc_tcp_pushpull_join.bin");
    assert_eq!(buf[0], 10);
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    assert_eq!((len + 5, buf[5]), (buf.len(), 1));
    let (header, states, _) = pushpull(buf, &sec);
    assert!(header.join);
    assert_eq!(states[0].name, "enc2");
    let (_, states, _) = pushpull(fixture!("enc_tcp_pushpull_join_reply.bin"), &sec);
    assert_eq!(states[0].name, "enc1");

    let other = Keyring::from_base64(&generate_key()).unwrap();
    let wrong = Security { keyring: Some(&other), ..sec };
    assert_eq!(decode_stream(buf, &wrong), Err(WireError::NoKeyDecrypts { tried: 1 }));
    assert_eq!(decode_stream(buf, &plain()), Err(WireError::EncryptedWithoutKeyring { context: "stream" }));
    // Plain Go streams are refused by a node that verifies incoming.
    assert_eq!(
        decode_stream(fixture!("tcp_pushpull_join.bin"), &sec),
        Err(WireError::NotEncrypted { context: "stream" })
    );
}

#[test]
fn golden_stream_ping_and_ack() {
    // Proves Go's TCP fallback ping and its stream ack (both compressed) decode and round-trip.
    let buf = fixture!("tcp_fallback_ping.bin");
    let (msg, used) = decode_stream(buf, &plain()).unwrap().unwrap();
    assert_eq!(used, buf.len());
    let want = Ping {
        seq_no: 1,
        node: "mu1".into(),
        source_addr: LOCALHOST.to_vec(),
        source_port: 17946,
        source_node: "go1".into(),
    };
    assert_eq!(msg, StreamMessage::Ping(want));
    let buf = fixture!("tcp_ack.bin");
    assert_lzw_identical_to_go(buf);
    let (ack, _) = decode_stream(buf, &plain()).unwrap().unwrap();
    let want = Ack { seq_no: 78, payload: vec![] };
    assert_eq!(ack, StreamMessage::Ack(want));
    for m in [msg, ack] {
        let ours = encode_stream(&m, true, &plain()).unwrap();
        assert_eq!(decode_stream(&ours, &plain()).unwrap(), Some((m, ours.len())));
    }
}

#[test]
fn muster_frames_accepted_by_go_are_reproduced_exactly() {
    // Proves our encoder still emits the bytes a Go agent accepted in interop.py (join + event + ping).
    let tags = BTreeMap::from([("role".to_owned(), "muster".to_owned())]);
    let alive = Alive {
        incarnation: 1,
        node: "mu1".into(),
        addr: LOCALHOST.to_vec(),
        port: 17990,
        meta: encode_tags(&tags).unwrap(),
        vsn: GO_VSN.to_vec(),
    };
    let join = SerfMessage::Join(SerfJoin { l_time: 1, node: "mu1".into() });
    let event = SerfMessage::UserEvent(SerfUserEvent {
        l_time: 5,
        name: "interop".into(),
        payload: b"ok".to_vec(),
        cc: false,
    });
    let msgs = [Message::Alive(alive), Message::User(join.encode()), Message::User(event.encode())];
    let encoded: Vec<Vec<u8>> = msgs.iter().map(Message::encode).collect();
    let opts = PacketOptions { crc: true, compress: true };
    assert_eq!(encode_packet(&encoded, opts, &plain()).unwrap(), fixture!("muster_udp_gossip.bin"));

    let ping = StreamMessage::Ping(Ping { seq_no: 78, node: "go1".into(), ..Default::default() });
    assert_eq!(encode_stream(&ping, true, &plain()).unwrap(), fixture!("muster_tcp_ping.bin"));
}
