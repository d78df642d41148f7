//! Synthetic framing tests for `codec`/`stream`: labels, CRC, encryption modes, packet
//! splitting, truncated compounds and incremental stream decoding. Test-only.

use super::*;

fn ring() -> Keyring {
    Keyring::new(vec![0x42; 32], vec![vec![0x17; 16]]).unwrap()
}

fn ping(seq_no: u32) -> Message {
    Message::Ping(Ping { seq_no, node: format!("node-{seq_no}"), ..Default::default() })
}

/// Every combination of label and keyring we frame with.
fn securities(ring: &Keyring) -> Vec<Security<'_>> {
    let mut out = Vec::new();
    for label in ["", "dc1"] {
        for keyring in [None, Some(ring)] {
            out.push(Security { label, keyring, verify_incoming: true });
        }
    }
    out
}

#[test]
fn label_mismatch_is_rejected_naming_both() {
    // Proves missing, extra and different labels fail on packets and streams, naming both labels.
    let msg = [ping(1).encode()];
    let opts = PacketOptions::default();
    let ours = Security { label: "dc1", ..Default::default() };
    let pkt = encode_packet(&msg, opts, &ours).unwrap();
    assert_eq!(&pkt[..5], &[HAS_LABEL, 3, b'd', b'c', b'1']);
    assert_eq!(decode_packet(&pkt, &ours).unwrap(), vec![ping(1)]);

    let other = Security { label: "dc2", ..Default::default() };
    let err = decode_packet(&pkt, &other).unwrap_err();
    assert!(err.to_string().contains("\"dc1\"") && err.to_string().contains("\"dc2\""), "{err}");
    let err = decode_packet(&pkt, &Security::default()).unwrap_err();
    assert_eq!(err, WireError::LabelMismatch { context: "packet", got: "dc1".into(), want: "".into() });
    let unlabeled = encode_packet(&msg, opts, &Security::default()).unwrap();
    assert!(matches!(decode_packet(&unlabeled, &ours), Err(WireError::LabelMismatch { .. })));
    assert_eq!(decode_packet(&[HAS_LABEL, 0, 0], &ours), Err(WireError::EmptyLabel));

    let stream = encode_stream(&StreamMessage::Ping(Ping::default()), false, &ours).unwrap();
    assert!(matches!(
        decode_stream(&stream, &other),
        Err(WireError::LabelMismatch { context: "stream", .. })
    ));
    assert!(matches!(
        encode_packet(&msg, opts, &Security { label: &"x".repeat(256), ..Default::default() }),
        Err(WireError::LabelTooLong { len: 256 })
    ));
}

#[test]
fn crc_mismatch_is_rejected() {
    // Proves a corrupted CRC-protected packet is refused, with or without encryption under it.
    let ring = ring();
    let opts = PacketOptions { crc: true, compress: false };
    let msgs = [ping(1).encode(), ping(2).encode()];
    let mut pkt = encode_packet(&msgs, opts, &Security::default()).unwrap();
    assert_eq!(pkt[0], MessageType::HasCrc as u8);
    let last = pkt.len() - 1;
    pkt[last] ^= 0xff;
    assert!(matches!(decode_packet(&pkt, &Security::default()), Err(WireError::CrcMismatch { .. })));
    // Under encryption the tag catches tampering first; CRC still guards the plaintext.
    let sec = Security { keyring: Some(&ring), ..Default::default() };
    let enc = ring.encrypt(1, &pkt, b"").unwrap();
    assert!(matches!(decode_packet(&enc, &sec), Err(WireError::CrcMismatch { .. })));
}

#[test]
fn encryption_modes_follow_go() {
    // Proves vsn 0 packets decode, secondary keys work, and verify_incoming controls plaintext.
    let ring = ring();
    let plain_pkt =
        encode_packet(&[ping(5).encode()], PacketOptions::default(), &Security::default()).unwrap();
    let strict = Security { keyring: Some(&ring), verify_incoming: true, ..Default::default() };
    let lax = Security { verify_incoming: false, ..strict };
    assert!(decode_packet(&plain_pkt, &strict).is_err());
    assert_eq!(decode_packet(&plain_pkt, &lax).unwrap(), vec![ping(5)]);

    let v0 = ring.encrypt(0, &ping(6).encode(), b"").unwrap();
    assert_eq!(decode_packet(&v0, &strict).unwrap(), vec![ping(6)]);
    let secondary = Keyring::new(vec![0x17; 16], vec![]).unwrap();
    let from_peer = secondary.encrypt(1, &ping(7).encode(), b"").unwrap();
    assert_eq!(decode_packet(&from_peer, &strict).unwrap(), vec![ping(7)]);

    let stream = encode_stream(&StreamMessage::User(b"hi".to_vec()), false, &Security::default()).unwrap();
    assert!(matches!(decode_stream(&stream, &strict), Err(WireError::NotEncrypted { .. })));
    assert_eq!(
        decode_stream(&stream, &lax).unwrap(),
        Some((StreamMessage::User(b"hi".to_vec()), stream.len()))
    );
}

#[test]
fn encode_packets_respects_max_bytes_and_order() {
    // Proves splitting keeps every packet within max_bytes, keeps order, and caps compounds at 255.
    let ring = ring();
    let msgs: Vec<Vec<u8>> =
        (0..300u32).map(|i| Message::User(vec![b'x'; (i as usize * 37) % 300]).encode()).collect();
    for sec in securities(&ring) {
        for crc in [false, true] {
            let opts = PacketOptions { crc, compress: false };
            let packets = encode_packets(&msgs, UDP_BUFFER_BYTES, opts, &sec).unwrap();
            assert!(packets.iter().all(|p| p.len() <= UDP_BUFFER_BYTES));
            let total: usize = msgs.iter().map(Vec::len).sum();
            assert!(packets.len() < msgs.len() && packets.len() >= total / UDP_BUFFER_BYTES);
            let back: Vec<Message> = packets.iter().flat_map(|p| decode_packet(p, &sec).unwrap()).collect();
            let want: Vec<Message> = msgs.iter().map(|m| Message::decode(m).unwrap()).collect();
            assert_eq!(back, want);
        }
    }
    let tiny: Vec<Vec<u8>> = (0..600).map(|_| Message::Nack(Nack { seq_no: 1 }).encode()).collect();
    let packets = encode_packets(&tiny, 65_000, PacketOptions::default(), &Security::default()).unwrap();
    assert_eq!(packets.len(), 3);
    assert_eq!(packets[0][1], 255);
    let big = vec![Message::User(vec![0; 2000]).encode()];
    assert!(matches!(
        encode_packets(&big, UDP_BUFFER_BYTES, PacketOptions::default(), &Security::default()),
        Err(WireError::TooLarge { .. })
    ));
    assert!(encode_packets(&[], 1400, PacketOptions::default(), &Security::default()).unwrap().is_empty());
}

#[test]
fn compression_is_used_only_when_smaller() {
    // Proves compress=true keeps a packet bare when LZW would not shrink it, and shrinks repetitive ones.
    let opts = PacketOptions { crc: false, compress: true };
    let small =
        encode_packet(&[Message::Nack(Nack { seq_no: 1 }).encode()], opts, &Security::default()).unwrap();
    assert_eq!(small[0], MessageType::Nack as u8);
    let big = Message::User(vec![b'a'; 500]).encode();
    let pkt = encode_packet(std::slice::from_ref(&big), opts, &Security::default()).unwrap();
    assert_eq!(pkt[0], MessageType::Compress as u8);
    assert!(pkt.len() < big.len());
}

#[test]
fn truncated_compound_keeps_complete_parts() {
    // Proves a compound cut short yields the parts that were whole, and errors when none were.
    let msgs = [ping(1).encode(), ping(2).encode(), ping(3).encode()];
    let pkt = encode_packet(&msgs, PacketOptions::default(), &Security::default()).unwrap();
    let cut = &pkt[..pkt.len() - 3];
    assert_eq!(decode_packet(cut, &Security::default()).unwrap(), vec![ping(1), ping(2)]);
    let header_only = &pkt[..2 + 6 + 2];
    assert_eq!(
        decode_packet(header_only, &Security::default()),
        Err(WireError::CompoundTruncated { truncated: 3, total: 3 })
    );
    // A bad part next to a good one is skipped, like Go.
    let mixed =
        encode_packet(&[vec![200, 1], ping(4).encode()], PacketOptions::default(), &Security::default())
            .unwrap();
    assert_eq!(decode_packet(&mixed, &Security::default()).unwrap(), vec![ping(4)]);
}

/// A compound of `parts` copies of `part` (each under 64 KiB).
fn compound_of(part: &[u8], parts: u8) -> Vec<u8> {
    let mut out = vec![MessageType::Compound as u8, parts];
    for _ in 0..parts {
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
    }
    for _ in 0..parts {
        out.extend_from_slice(part);
    }
    out
}

#[test]
fn a_packet_cannot_multiply_into_millions_of_parts_or_megabytes() {
    // Proves the per-packet budgets. Before them, this packet of about 32 KiB (nested
    // compounds of empty parts, compressed) unpacked to 6.5 MB holding 3 million parts, each
    // kept as an error: 200 MB. Now it may inflate to MAX_PACKET_DECOMPRESSED_BYTES only; within
    // that, parts stop at MAX_PACKET_PARTS with the first error kept, and valid messages past
    // the budget are dropped while the first ones are delivered.
    let empties = compound_of(&compound_of(&[], 255), 127);
    let bomb = lzw::encode_compress_msg(&compound_of(&empties, 100)).unwrap();
    assert!(bomb.len() < 64 * 1024, "fits a UDP packet: {} bytes", bomb.len());
    let err = decode_packet(&bomb, &Security::default()).unwrap_err();
    let max = codec::MAX_PACKET_DECOMPRESSED_BYTES;
    assert!(
        matches!(err, WireError::TooLarge { context: "decompressed payload", max: m, .. } if m == max),
        "{err}"
    );
    let within =
        lzw::encode_compress_msg(&compound_of(&compound_of(&compound_of(&[], 255), 15), 127)).unwrap();
    let err = decode_packet(&within, &Security::default()).unwrap_err();
    assert_eq!(
        err,
        WireError::Empty { context: "memberlist message" },
        "the first error is the one reported"
    );
    let pings = compound_of(&compound_of(&ping(7).encode(), 100), 100);
    let msgs = decode_packet(&lzw::encode_compress_msg(&pings).unwrap(), &Security::default()).unwrap();
    assert!(msgs.len() < codec::MAX_PACKET_PARTS && msgs.len() > 900, "{} messages", msgs.len());
    assert!(msgs.iter().all(|m| *m == ping(7)));
}

#[test]
fn a_push_pull_may_not_announce_more_states_than_the_limit() {
    // Proves the node-state count is bounded below Go's 1 Mi: a compressed push/pull of empty
    // (1-byte) states is small on the wire, but each state costs ~100 bytes decoded.
    let header = PushPullHeader { nodes: (MAX_PUSH_STATE_NODES + 1) as u32, user_state_len: 0, join: false };
    let mut body = vec![MessageType::PushPull as u8];
    body.extend(rmp_serde::to_vec_named(&header).unwrap());
    body.extend(std::iter::repeat_n(0x80u8, MAX_PUSH_STATE_NODES + 1));
    let wire = lzw::encode_compress_msg(&body).unwrap();
    assert!(wire.len() < 16 * 1024, "{} bytes on the wire", wire.len());
    let err = decode_stream(&wire, &Security::default()).unwrap_err();
    assert_eq!(
        err,
        WireError::TooLarge { context: "push/pull node count", len: MAX_PUSH_STATE_NODES + 1, max: 65_536 }
    );
    // At the limit it decodes.
    let header = PushPullHeader { nodes: 3, user_state_len: 0, join: false };
    let mut body = vec![MessageType::PushPull as u8];
    body.extend(rmp_serde::to_vec_named(&header).unwrap());
    body.extend([0x80u8; 3]);
    let (msg, _) = decode_stream(&body, &Security::default()).unwrap().unwrap();
    assert!(matches!(msg, StreamMessage::PushPull { states, .. } if states.len() == 3));
}

fn stream_messages() -> Vec<StreamMessage> {
    let state = PushNodeState {
        name: "mu1".into(),
        addr: vec![10, 0, 0, 1],
        port: 7946,
        meta: vec![0xff, 0x80],
        incarnation: 2,
        state: 0,
        vsn: vec![1, 5, 2, 2, 5, 4],
    };
    vec![
        StreamMessage::Ping(Ping { seq_no: 9, node: "go1".into(), ..Default::default() }),
        StreamMessage::Ack(Ack { seq_no: 9, payload: vec![] }),
        StreamMessage::Err(ErrResp { error: "nope".into() }),
        StreamMessage::User(vec![3; 40]),
        StreamMessage::PushPull {
            header: PushPullHeader { nodes: 2, user_state_len: 5, join: true },
            states: vec![state.clone(), state],
            user_state: vec![2, 0x80, 1, 2, 3],
        },
        StreamMessage::PushPull { header: PushPullHeader::default(), states: vec![], user_state: vec![] },
    ]
}

#[test]
fn decode_stream_waits_for_whole_message() {
    // Proves every strict prefix of a valid stream is Ok(None) and the whole is Some, in all modes.
    let ring = ring();
    for sec in securities(&ring) {
        for msg in stream_messages() {
            for compress in [false, true] {
                let mut buf = encode_stream(&msg, compress, &sec).unwrap();
                let len = buf.len();
                for cut in 0..len {
                    assert_eq!(decode_stream(&buf[..cut], &sec), Ok(None), "{msg:?} cut {cut}");
                }
                buf.extend_from_slice(&[0xde, 0xad]);
                assert_eq!(decode_stream(&buf, &sec), Ok(Some((msg.clone(), len))));
            }
        }
    }
}

#[test]
fn decode_stream_rejects_garbage() {
    // Proves unknown/invalid types, bad msgpack and absurd lengths are errors, not "need more".
    let sec = Security::default();
    assert!(matches!(decode_stream(&[200], &sec), Err(WireError::UnknownType { ty: 200, .. })));
    assert!(matches!(
        decode_stream(&[MessageType::Alive as u8, 0x80], &sec),
        Err(WireError::UnexpectedType { .. })
    ));
    assert!(decode_stream(&[MessageType::Ping as u8, 0xc1], &sec).is_err());
    assert!(decode_stream(&[MessageType::Ping as u8, 0xdb, 0xff, 0xff, 0xff, 0xff], &sec).is_err());
    let ring = ring();
    let enc = Security { keyring: Some(&ring), ..Default::default() };
    assert!(matches!(decode_stream(&[10, 0xff, 0xff, 0xff, 0xff], &enc), Err(WireError::TooLarge { .. })));
    // Push/pull user state shorter than announced after decompression is an error.
    let mut inner = vec![MessageType::PushPull as u8];
    let header = PushPullHeader { nodes: 0, user_state_len: 10, join: false };
    inner.extend(rmp_serde::to_vec_named(&header).unwrap());
    let compressed = encode_compress_msg(&inner).unwrap();
    assert!(matches!(decode_stream(&compressed, &sec), Err(WireError::Truncated { .. })));
}

#[test]
fn push_pull_header_counts_come_from_the_content() {
    // Proves encode_stream writes the real node count and user-state length, whatever the header says.
    let msg = StreamMessage::PushPull {
        header: PushPullHeader { nodes: 99, user_state_len: 99, join: true },
        states: vec![PushNodeState::default()],
        user_state: vec![1, 2],
    };
    let buf = encode_stream(&msg, false, &Security::default()).unwrap();
    let Some((StreamMessage::PushPull { header, .. }, _)) =
        decode_stream(&buf, &Security::default()).unwrap()
    else {
        panic!()
    };
    assert_eq!(header, PushPullHeader { nodes: 1, user_state_len: 2, join: true });
}
