//! Deterministic tests of Serf queries in the core: filters, acks, answering once and in time,
//! relays, and collecting the answers to our own queries. Explicit time, no sockets.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;
use crate::gossip::swim::{MemberEvent, Node, NodeState, VSN};
use crate::gossip::wire::{
    encode_tags, SerfFilter, SerfQuery, SerfQueryResponse, SerfRelayHeader, QUERY_FLAG_ACK,
};

fn node(name: &str, port: u16, tags: &[(&str, &str)], now: Instant) -> Node {
    let tags: BTreeMap<String, String> = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Node {
        name: name.into(),
        addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port,
        meta: encode_tags(&tags).unwrap(),
        incarnation: 1,
        state: NodeState::Alive,
        state_change: now,
        vsn: VSN,
    }
}

/// "me" (role=web) on port 1000, and members a, b, c on 1001..1003.
fn serf(now: Instant) -> Serf {
    let mut s = Serf::new("me".into(), SerfConfig::default(), 3, now);
    s.handle_member_event(
        MemberEvent::Join(node("me", 1000, &[("role", "web"), ("dc", "east-1")], now)),
        now,
    );
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        s.handle_member_event(MemberEvent::Join(node(n, 1001 + i as u16, &[], now)), now);
    }
    s.take_effects();
    s
}

fn query(ltime: u64, id: u32, filters: Vec<SerfFilter>, flags: u32, relay: u8) -> SerfQuery {
    SerfQuery {
        l_time: ltime,
        id,
        addr: vec![127, 0, 0, 1],
        port: 2000,
        source_node: "asker".into(),
        filters: filters.iter().map(SerfFilter::encode).collect(),
        flags,
        relay_factor: relay,
        timeout: 5_000_000_000,
        name: "uptime".into(),
        payload: b"p".to_vec(),
    }
}

fn sends(effects: &[SerfEffect]) -> Vec<(SocketAddr, SerfMessage)> {
    effects
        .iter()
        .filter_map(|e| match e {
            SerfEffect::SendTo { to, payload } => Some((*to, SerfMessage::decode(payload).unwrap())),
            _ => None,
        })
        .collect()
}

fn query_events(effects: &[SerfEffect]) -> Vec<QueryEvent> {
    effects
        .iter()
        .filter_map(|e| match e {
            SerfEffect::Event(SerfEvent::Query(q)) => Some(q.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_query_is_processed_once_acked_and_re_broadcast_only_the_first_time() {
    // Proves receive: the first copy acks to the asker, is shown once and re-broadcast; a
    // duplicate does nothing; the ack carries our name and the ack flag.
    let t = Instant::now();
    let mut s = serf(t);
    let q = SerfMessage::Query(query(4, 77, vec![], QUERY_FLAG_ACK, 0)).encode();
    s.handle_user_msg(&q, t);
    let eff = s.take_effects();
    let acks = sends(&eff);
    let asker: SocketAddr = "127.0.0.1:2000".parse().unwrap();
    assert!(
        matches!(&acks[..], [(to, SerfMessage::QueryResponse(r))]
        if *to == asker && r.from == "me" && r.flags == QUERY_FLAG_ACK && r.id == 77 && r.l_time == 4),
        "{acks:?}"
    );
    let shown = query_events(&eff);
    assert_eq!(shown.len(), 1);
    assert_eq!((shown[0].key, shown[0].source.as_str()), (QueryKey { ltime: 4, id: 77 }, "asker"));
    assert_eq!(shown[0].deadline, t + Duration::from_secs(5));
    assert!(eff.iter().any(|e| matches!(e, SerfEffect::Broadcast { .. })));
    s.handle_user_msg(&q, t);
    assert!(s.take_effects().is_empty(), "a duplicate is ignored");
}

#[test]
fn node_and_tag_filters_select_who_processes_a_query() {
    // Proves the filters: a node list must name us; each tag regexp must match our tag
    // anywhere in its value (Go's MatchString); a query we skip is still re-broadcast.
    let t = Instant::now();
    let cases: Vec<(Vec<SerfFilter>, bool)> = vec![
        (vec![SerfFilter::Nodes(vec!["a".into(), "me".into()])], true),
        (vec![SerfFilter::Nodes(vec!["a".into()])], false),
        (vec![SerfFilter::Tag { tag: "role".into(), expr: "we".into() }], true),
        (vec![SerfFilter::Tag { tag: "role".into(), expr: "^we$".into() }], false),
        (vec![SerfFilter::Tag { tag: "dc".into(), expr: r"east-\d".into() }], true),
        (vec![SerfFilter::Tag { tag: "missing".into(), expr: "x".into() }], false),
        (vec![SerfFilter::Tag { tag: "missing".into(), expr: "".into() }], true),
        (vec![SerfFilter::Tag { tag: "role".into(), expr: "([".into() }], false),
        (
            vec![
                SerfFilter::Nodes(vec!["me".into()]),
                SerfFilter::Tag { tag: "role".into(), expr: "db".into() },
            ],
            false,
        ),
    ];
    for (i, (filters, processed)) in cases.into_iter().enumerate() {
        let mut s = serf(t);
        let q = SerfMessage::Query(query(4, i as u32, filters.clone(), QUERY_FLAG_ACK, 0)).encode();
        s.handle_user_msg(&q, t);
        let eff = s.take_effects();
        assert_eq!(query_events(&eff).len() == 1, processed, "case {i}: {filters:?}");
        assert_eq!(sends(&eff).len() == 1, processed, "acks follow processing, case {i}");
        assert!(eff.iter().any(|e| matches!(e, SerfEffect::Broadcast { .. })), "re-broadcast, case {i}");
    }
}

#[test]
fn a_query_is_answered_once_in_time_within_the_size_limit() {
    // Proves respond: the answer goes to the asker; a second answer, one after the deadline,
    // an oversized one and one for an unknown query are each refused with their own error.
    let t = Instant::now();
    let mut s = serf(t);
    s.handle_user_msg(&SerfMessage::Query(query(4, 9, vec![], 0, 0)).encode(), t);
    s.take_effects();
    let key = QueryKey { ltime: 4, id: 9 };
    assert!(matches!(
        s.respond(key, &[0u8; 1100], t),
        Err(SerfError::ResponseTooLarge { size: 1100.., limit: QUERY_RESPONSE_SIZE_LIMIT })
    ));
    s.respond(key, b"42", t + Duration::from_secs(1)).unwrap();
    let out = sends(&s.take_effects());
    assert!(
        matches!(&out[..], [(_, SerfMessage::QueryResponse(r))] if r.payload == b"42" && r.flags == 0),
        "{out:?}"
    );
    assert_eq!(s.respond(key, b"again", t), Err(SerfError::ResponseAlreadySent));
    s.handle_user_msg(&SerfMessage::Query(query(5, 9, vec![], 0, 0)).encode(), t);
    let late = QueryKey { ltime: 5, id: 9 };
    assert_eq!(s.respond(late, b"x", t + Duration::from_secs(6)), Err(SerfError::ResponsePastDeadline));
    assert_eq!(s.respond(QueryKey { ltime: 99, id: 1 }, b"x", t), Err(SerfError::NoSuchQuery));
}

#[test]
fn with_a_relay_factor_answers_also_go_through_other_members() {
    // Proves relays: relay_factor copies wrapped in a relay header addressed to the asker go to
    // distinct other members; a relay we receive is forwarded to its destination.
    let t = Instant::now();
    let mut s = serf(t);
    s.handle_user_msg(&SerfMessage::Query(query(4, 9, vec![], QUERY_FLAG_ACK, 2)).encode(), t);
    let out = sends(&s.take_effects());
    assert_eq!(out.len(), 3, "the ack, and two relayed copies: {out:?}");
    let relays: Vec<_> = out.iter().filter(|(_, m)| matches!(m, SerfMessage::Relay(_))).collect();
    assert_eq!(relays.len(), 2);
    assert_ne!(relays[0].0, relays[1].0, "two different members relay");
    for (via, m) in &relays {
        assert!([1001, 1002, 1003].contains(&via.port()), "relayed through a member, not us: {via}");
        let SerfMessage::Relay(raw) = m else { unreachable!() };
        let (h, inner) = SerfRelayHeader::decode_relay(raw).unwrap();
        assert_eq!((h.dest_addr.port, h.dest_name.as_str()), (2000, "asker"));
        assert!(
            matches!(SerfMessage::decode(&inner).unwrap(), SerfMessage::QueryResponse(r) if r.from == "me")
        );
    }
    let SerfMessage::Relay(raw) = &relays[0].1 else { unreachable!() };
    let mut relay_msg = vec![crate::gossip::wire::serf_type::RELAY];
    relay_msg.extend_from_slice(raw);
    s.handle_user_msg(&relay_msg, t);
    let fwd = sends(&s.take_effects());
    assert!(matches!(&fwd[..], [(to, SerfMessage::QueryResponse(_))] if to.port() == 2000), "{fwd:?}");
}

#[test]
fn our_query_collects_each_members_ack_and_response_once_until_its_deadline() {
    // Proves sending: the query is broadcast and processed locally, answers are reported once
    // per member and kind, a wrong id or a late answer is dropped, and the deadline ends it.
    let t = Instant::now();
    let mut s = serf(t);
    let params = QueryParams { request_ack: true, timeout: Duration::from_secs(2), ..Default::default() };
    let key = s.query("uptime", b"", &params, t).unwrap();
    let eff = s.take_effects();
    assert_eq!(query_events(&eff).len(), 1, "we process our own query");
    assert!(eff.iter().any(|e| matches!(e, SerfEffect::Broadcast { .. })));
    assert_eq!(s.next_deadline(), t + Duration::from_secs(2));
    let answer = |from: &str, flags: u32, id: u32| {
        let r =
            SerfQueryResponse { l_time: key.ltime, id, from: from.into(), flags, payload: b"ok".to_vec() };
        SerfMessage::QueryResponse(r).encode()
    };
    for msg in
        [answer("a", QUERY_FLAG_ACK, key.id), answer("a", QUERY_FLAG_ACK, key.id), answer("a", 0, key.id)]
    {
        s.handle_user_msg(&msg, t);
    }
    s.handle_user_msg(&answer("b", 0, key.id.wrapping_add(1)), t);
    let replies: Vec<QueryReply> = s
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            SerfEffect::QueryReply { reply, .. } => Some(reply),
            _ => None,
        })
        .collect();
    assert_eq!(
        replies,
        vec![
            QueryReply::Ack { from: "a".into() },
            QueryReply::Response { from: "a".into(), payload: b"ok".to_vec() }
        ]
    );
    s.tick(t + Duration::from_secs(2));
    let eff = s.take_effects();
    assert!(eff.contains(&SerfEffect::QueryDone { ltime: key.ltime }), "{eff:?}");
    s.handle_user_msg(&answer("c", 0, key.id), t + Duration::from_secs(3));
    assert!(s.take_effects().is_empty(), "an answer after the end is dropped");
    // Bad input is refused before anything goes out.
    let bad =
        QueryParams { filter_tags: BTreeMap::from([("role".into(), "([".into())]), ..Default::default() };
    assert!(matches!(s.query("uptime", b"", &bad, t), Err(SerfError::BadTagFilter { .. })));
    assert!(matches!(s.query("big", &[0u8; 1100], &params, t), Err(SerfError::QueryTooLarge { .. })));
    assert_eq!(s.query("", b"", &params, t), Err(SerfError::EmptyQueryName));
    assert!(s.take_effects().is_empty());
}

#[test]
fn force_leave_marks_a_failed_member_left_and_prune_erases_it() {
    // Proves force-leave: failed → left with a broadcast intent, `prune` reaps at once (a
    // leaving member only after its leave had time), an unknown name is an error.
    let t = Instant::now();
    let mut s = serf(t);
    for n in ["a", "b"] {
        let mut dead = node(n, 1001, &[], t);
        dead.state = NodeState::Dead;
        s.handle_member_event(MemberEvent::Leave(dead), t);
    }
    s.take_effects();
    s.force_leave("a", false, t).unwrap();
    assert_eq!(s.member("a").unwrap().status, MemberStatus::Left);
    let eff = s.take_effects();
    assert!(eff.iter().any(|e| matches!(e, SerfEffect::Event(SerfEvent::MemberLeave(m)) if m.name == "a")));
    assert!(eff.iter().any(|e| matches!(e, SerfEffect::Broadcast { .. })));
    s.force_leave("b", true, t).unwrap();
    assert!(s.member("b").is_none());
    assert!(s
        .take_effects()
        .iter()
        .any(|e| matches!(e, SerfEffect::Event(SerfEvent::MemberReap(m)) if m.name == "b")));
    s.force_leave("c", true, t).unwrap();
    assert_eq!(s.member("c").unwrap().status, MemberStatus::Leaving, "an alive member is leaving first");
    s.tick(t + Duration::from_secs(7));
    assert!(s.member("c").is_none(), "and is erased once its leave had time");
    assert_eq!(s.force_leave("nobody", false, t), Err(SerfError::UnknownMember("nobody".into())));
}
