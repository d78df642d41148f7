//! Deterministic tests of the SWIM core: explicit time, seeded randomness, no sockets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;
use crate::gossip::wire::{Ack, Alive, Dead, Message, Suspect};

fn local(name: &str, last_octet: u8) -> LocalNode {
    LocalNode {
        name: name.into(),
        addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet)),
        port: 7946,
        meta: vec![],
    }
}

fn alive(name: &str, last_octet: u8, inc: u32) -> Message {
    Message::Alive(Alive {
        incarnation: inc,
        node: name.into(),
        addr: vec![127, 0, 0, last_octet],
        port: 7946,
        meta: vec![],
        vsn: VSN.to_vec(),
    })
}

fn from() -> SocketAddr {
    "127.0.0.9:7946".parse().unwrap()
}

/// Member b asks us (seq 42, nacks wanted) to ping member a at 127.0.0.2.
fn relay_request() -> crate::gossip::wire::IndirectPing {
    crate::gossip::wire::IndirectPing {
        seq_no: 42,
        target: vec![127, 0, 0, 2],
        port: 7946,
        node: "a".into(),
        nack: true,
        source_addr: vec![127, 0, 0, 3],
        source_port: 7946,
        source_node: "b".into(),
    }
}

/// The sequence number of the first ping among `effects`.
fn first_ping_seq(effects: &[Effect]) -> u32 {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Send { msgs, .. } => match Message::decode(&msgs[0]) {
                Ok(Message::Ping(p)) => Some(p.seq_no),
                _ => None,
            },
            _ => None,
        })
        .expect("a ping was sent")
}

/// A core that knows `others` as alive members.
fn core_with(others: &[(&str, u8)], timing: Timing, now: Instant) -> Swim {
    let mut s = Swim::new(local("me", 1), timing, 7, now);
    for (n, o) in others {
        s.handle_message(from(), alive(n, *o, 1), now);
    }
    s.take_effects();
    s
}

/// Runs `tick` at every deadline up to `until`, collecting effects.
fn run_until(s: &mut Swim, mut now: Instant, until: Instant) -> (Vec<Effect>, Instant) {
    let mut all = Vec::new();
    for _ in 0..100_000 {
        let next = s.next_deadline().max(now);
        if next > until {
            break;
        }
        now = next;
        s.tick(now);
        all.extend(s.take_effects());
    }
    (all, until)
}

fn leaves(effects: &[Effect]) -> Vec<Node> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Member(MemberEvent::Leave(n)) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_unanswering_member_is_suspected_then_declared_dead_within_the_suspicion_timeout() {
    // Proves the probe → indirect → suspect → dead path with LAN timing and no acks at all:
    // in a 4-node cluster (k = 2 confirmations expected, none arrive) death comes after the
    // maximum suspicion timeout (6 × 4 s) and not before the minimum (4 s).
    let t0 = Instant::now();
    let mut s = core_with(&[("a", 2), ("b", 3), ("c", 4)], Timing::lan(), t0);
    let (effects, _) = run_until(&mut s, t0, t0 + Duration::from_secs(40));
    let dead = leaves(&effects);
    assert_eq!(dead.len(), 3, "every silent member is declared dead: {dead:?}");
    assert!(dead.iter().all(|n| n.state == NodeState::Dead));
    let first_dead = dead.iter().map(|n| n.state_change).min().unwrap();
    let elapsed = first_dead - t0;
    assert!(elapsed >= Duration::from_secs(4), "dead too early: {elapsed:?}");
    assert!(elapsed <= Duration::from_secs(30), "dead too late: {elapsed:?}");
    // Indirect probes went out (to the other members) and so did TCP fallback pings.
    assert!(effects.iter().any(|e| matches!(e, Effect::Send { msgs, .. } if msgs[0][0] == 1)));
    assert!(effects.iter().any(|e| matches!(e, Effect::TcpPing { .. })));
    // The tally: each member suspected once; every suspicion came from a failed probe.
    let t = s.tally();
    assert_eq!(t.suspicions, 3, "{t:?}");
    assert!(t.probes_failed >= 3 && t.probes >= t.probes_failed, "{t:?}");
}

#[test]
fn acks_keep_members_alive_and_restore_awareness() {
    // Proves that answering every ping keeps all members alive and awareness at zero.
    let t0 = Instant::now();
    let mut s = core_with(&[("a", 2), ("b", 3)], Timing::lan(), t0);
    let mut now = t0;
    for _ in 0..200 {
        now = s.next_deadline().max(now);
        s.tick(now);
        for e in s.take_effects() {
            if let Effect::Send { msgs, .. } = e {
                for m in msgs {
                    if let Ok(Message::Ping(p)) = Message::decode(&m) {
                        s.handle_message(
                            from(),
                            Message::Ack(Ack { seq_no: p.seq_no, payload: vec![] }),
                            now,
                        );
                    }
                }
            }
        }
    }
    assert!(now > t0 + Duration::from_secs(10));
    assert!(s.nodes().all(|n| n.state == NodeState::Alive));
    assert_eq!(s.awareness(), 0);
}

#[test]
fn suspicion_about_ourselves_is_refuted_with_a_higher_incarnation() {
    // Proves refutation: suspect or dead about us at incarnation N → we broadcast alive N+1.
    let t0 = Instant::now();
    let mut s = core_with(&[("a", 2)], Timing::lan(), t0);
    s.handle_message(
        from(),
        Message::Suspect(Suspect { incarnation: 5, node: "me".into(), from: "a".into() }),
        t0,
    );
    assert_eq!(s.node("me").unwrap().incarnation, 6);
    assert_eq!(s.node("me").unwrap().state, NodeState::Alive);
    s.handle_message(from(), Message::Dead(Dead { incarnation: 6, node: "me".into(), from: "a".into() }), t0);
    assert_eq!(s.node("me").unwrap().incarnation, 7);
    assert_eq!(s.awareness(), 2);
    // The refutation is gossiped.
    let (effects, _) = run_until(&mut s, t0, t0 + Duration::from_millis(500));
    let sent_alive = effects.iter().any(|e| match e {
        Effect::Send { msgs, .. } => msgs.iter().any(
            |m| matches!(Message::decode(m), Ok(Message::Alive(a)) if a.node == "me" && a.incarnation == 7),
        ),
        _ => false,
    });
    assert!(sent_alive);
}

#[test]
fn a_suspect_that_refutes_is_alive_again() {
    // Proves alive with a higher incarnation clears a suspicion (no death later).
    let t0 = Instant::now();
    let mut s = core_with(&[("a", 2), ("b", 3)], Timing::lan(), t0);
    s.handle_message(
        from(),
        Message::Suspect(Suspect { incarnation: 1, node: "a".into(), from: "b".into() }),
        t0,
    );
    assert_eq!(s.node("a").unwrap().state, NodeState::Suspect);
    s.handle_message(from(), alive("a", 2, 2), t0 + Duration::from_secs(1));
    assert_eq!(s.node("a").unwrap().state, NodeState::Alive);
    // An older alive does not roll back the incarnation.
    s.handle_message(from(), alive("a", 2, 1), t0 + Duration::from_secs(1));
    assert_eq!(s.node("a").unwrap().incarnation, 2);
}

#[test]
fn dead_from_the_node_itself_means_left() {
    // Proves graceful leave: dead with From == Node is reported as Left, not Dead.
    let t0 = Instant::now();
    let mut s = core_with(&[("a", 2)], Timing::lan(), t0);
    s.handle_message(from(), Message::Dead(Dead { incarnation: 1, node: "a".into(), from: "a".into() }), t0);
    let l = leaves(&s.take_effects());
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].state, NodeState::Left);
}

#[test]
fn our_leave_is_broadcast_and_tracked_until_sent() {
    // Proves leave(): a dead-about-us-from-us goes out on gossip and leave_sent() flips.
    let t0 = Instant::now();
    let mut s = core_with(&[("a", 2)], Timing::lan(), t0);
    s.leave(t0);
    assert!(!s.leave_sent());
    let (effects, _) = run_until(&mut s, t0, t0 + Duration::from_secs(5));
    let sent_dead = effects.iter().any(|e| match e {
        Effect::Send { msgs, .. } => msgs
            .iter()
            .any(|m| matches!(Message::decode(m), Ok(Message::Dead(d)) if d.node == "me" && d.from == "me")),
        _ => false,
    });
    assert!(sent_dead);
    assert!(s.leave_sent());
}

#[test]
fn indirect_ping_is_relayed_and_answered_with_ack_or_nack() {
    // Proves the relay: we ping the target for the requester, forward its ack, or nack on timeout.
    let t0 = Instant::now();
    let mut s = core_with(&[("a", 2)], Timing::lan(), t0);
    let req = relay_request();
    s.handle_message(from(), Message::IndirectPing(req.clone()), t0);
    let ping_seq = first_ping_seq(&s.take_effects());
    s.handle_message(from(), Message::Ack(Ack { seq_no: ping_seq, payload: vec![] }), t0);
    let eff = s.take_effects();
    assert!(eff.iter().any(|e| matches!(e, Effect::Send { to, msgs, .. }
        if *to == "127.0.0.3:7946".parse().unwrap() && matches!(Message::decode(&msgs[0]), Ok(Message::Ack(a)) if a.seq_no == 42))));
    // Unanswered: a nack after the probe timeout.
    s.handle_message(from(), Message::IndirectPing(req), t0);
    s.take_effects();
    s.tick(t0 + Duration::from_millis(600));
    let eff = s.take_effects();
    assert!(eff.iter().any(|e| matches!(e, Effect::Send { msgs, .. } if matches!(Message::decode(&msgs[0]), Ok(Message::Nack(n)) if n.seq_no == 42))));
}

#[test]
fn broadcasts_stop_after_the_retransmit_limit() {
    // Proves piggybacked gossip ends: one alive broadcast in a 3-member cluster goes out
    // 4·⌈log10 4⌉ = 4 times in all, then gossip rounds carry nothing.
    let t0 = Instant::now();
    let mut s = core_with(&[("a", 2), ("b", 3)], Timing::lan(), t0);
    // Drain what joining queued.
    let (_, t1) = run_until(&mut s, t0, t0 + Duration::from_secs(5));
    s.handle_message(from(), alive("c", 4, 1), t1);
    let mut count = 0;
    let mut now = t1;
    for _ in 0..200 {
        now = s.next_deadline().max(now);
        s.tick(now);
        for e in s.take_effects() {
            if let Effect::Send { msgs, .. } = e {
                count += msgs
                    .iter()
                    .filter(|m| matches!(Message::decode(m), Ok(Message::Alive(a)) if a.node == "c"))
                    .count();
            }
        }
    }
    assert_eq!(count, retransmit_limit(4, 4) as usize);
}

#[test]
fn new_tags_while_leaving_do_not_undo_the_leave() {
    // Proves a late tag change cannot resurrect a leaving node: no alive after our dead.
    let t0 = Instant::now();
    let mut s = core_with(&[("a", 2)], Timing::lan(), t0);
    s.leave(t0);
    let inc = s.node("me").unwrap().incarnation;
    s.set_meta(vec![1, 2, 3]);
    assert_eq!(s.node("me").unwrap().incarnation, inc);
    let (effects, _) = run_until(&mut s, t0, t0 + Duration::from_secs(3));
    let alive_after = effects.iter().any(|e| match e {
        Effect::Send { msgs, .. } => {
            msgs.iter().any(|m| matches!(Message::decode(m), Ok(Message::Alive(a)) if a.node == "me"))
        }
        _ => false,
    });
    assert!(!alive_after);
}

/// Ticks until we send a probe ping; its seq and the time it went out.
fn next_probe_ping(s: &mut Swim, mut now: Instant) -> (u32, Instant) {
    for _ in 0..1000 {
        now = s.next_deadline().max(now);
        s.tick(now);
        for e in s.take_effects() {
            if let Effect::Send { msgs, .. } = e {
                if let Some(seq) = msgs.iter().find_map(|m| match Message::decode(m) {
                    Ok(Message::Ping(p)) => Some(p.seq_no),
                    _ => None,
                }) {
                    return (seq, now);
                }
            }
        }
    }
    panic!("no probe ping within 1000 ticks");
}

fn ping_completes(effects: &[Effect]) -> Vec<(String, Duration, Vec<u8>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::PingComplete { node, rtt, payload } => Some((node.clone(), *rtt, payload.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn pings_we_answer_carry_the_ack_payload_but_relayed_acks_do_not() {
    // Proves memberlist's AckPayload: our acks to UDP pings carry what was set (empty before), an ack we relay for an indirect ping carries nothing.
    let t0 = Instant::now();
    let mut s = core_with(&[("a", 2)], Timing::lan(), t0);
    let ping = |seq| {
        Message::Ping(crate::gossip::wire::Ping {
            seq_no: seq,
            node: "me".into(),
            source_addr: vec![127, 0, 0, 2],
            source_port: 7946,
            source_node: "a".into(),
        })
    };
    let acks = |effects: Vec<Effect>| -> Vec<Ack> {
        effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Send { msgs, .. } => msgs.iter().find_map(|m| match Message::decode(m) {
                    Ok(Message::Ack(a)) => Some(a),
                    _ => None,
                }),
                _ => None,
            })
            .collect()
    };
    s.handle_message(from(), ping(5), t0);
    assert_eq!(acks(s.take_effects()), [Ack { seq_no: 5, payload: vec![] }]);
    s.set_ack_payload(vec![1, 0x84, 0xa3]);
    s.handle_message(from(), ping(6), t0);
    assert_eq!(acks(s.take_effects()), [Ack { seq_no: 6, payload: vec![1, 0x84, 0xa3] }]);
    s.set_ack_payload(vec![0; ACK_PAYLOAD_MAX_BYTES + 1]);
    s.handle_message(from(), ping(7), t0);
    assert_eq!(acks(s.take_effects()), [Ack { seq_no: 7, payload: vec![] }], "oversized payload refused");

    s.set_ack_payload(vec![1, 2, 3]);
    let req = relay_request();
    s.handle_message(from(), Message::IndirectPing(req), t0);
    let relay_seq = first_ping_seq(&s.take_effects());
    s.handle_message(from(), Message::Ack(Ack { seq_no: relay_seq, payload: vec![9, 9] }), t0);
    let effects = s.take_effects();
    assert!(ping_completes(&effects).is_empty(), "a relayed ack is not our probe");
    assert_eq!(acks(effects), [Ack { seq_no: 42, payload: vec![] }]);
}

#[test]
fn only_a_direct_ack_within_the_probe_timeout_completes_a_ping_with_its_rtt() {
    // Proves NotifyPingComplete's contract: a direct ack yields PingComplete(node, rtt from send to ack, payload) once; a stray seq or an ack after the probe timeout yields none.
    let t0 = Instant::now();
    let mut s = core_with(&[("a", 2)], Timing::lan(), t0);
    let (seq, sent) = next_probe_ping(&mut s, t0);
    s.handle_message(from(), Message::Ack(Ack { seq_no: seq.wrapping_add(100), payload: vec![7] }), sent);
    assert!(ping_completes(&s.take_effects()).is_empty(), "unknown seq");
    let at = sent + Duration::from_millis(3);
    s.handle_message(from(), Message::Ack(Ack { seq_no: seq, payload: vec![1, 2] }), at);
    assert_eq!(ping_completes(&s.take_effects()), [("a".to_string(), Duration::from_millis(3), vec![1, 2])]);
    s.handle_message(from(), Message::Ack(Ack { seq_no: seq, payload: vec![1, 2] }), at);
    assert!(ping_completes(&s.take_effects()).is_empty(), "a duplicate ack completes nothing");

    // The next probe goes unanswered past the probe timeout: the indirect phase starts, and
    // an ack then still saves the member but measures nothing.
    let (seq, sent) = next_probe_ping(&mut s, at);
    let late = sent + Timing::lan().probe_timeout;
    s.tick(late);
    s.take_effects();
    s.handle_message(
        from(),
        Message::Ack(Ack { seq_no: seq, payload: vec![1, 2] }),
        late + Duration::from_millis(1),
    );
    assert!(ping_completes(&s.take_effects()).is_empty(), "late ack");
    // Past the end of that probe (and before the next one could fail) nobody is suspected:
    // the late ack still counted as an answer.
    run_until(&mut s, late, sent + Timing::lan().probe_interval + Duration::from_millis(100));
    assert!(s.nodes().all(|n| n.state == NodeState::Alive));
    assert_eq!(s.awareness(), 0);

    // An ack handled at the probe timeout, before any tick started the indirect phase (the
    // driver may see the packet first), measures nothing either.
    let mut s = core_with(&[("a", 2)], Timing::lan(), t0);
    let (seq, sent) = next_probe_ping(&mut s, t0);
    let at_timeout = sent + Timing::lan().probe_timeout;
    s.handle_message(from(), Message::Ack(Ack { seq_no: seq, payload: vec![1] }), at_timeout);
    assert!(ping_completes(&s.take_effects()).is_empty(), "ack at the timeout");
}

#[test]
fn an_alive_for_our_name_from_another_address_is_a_name_conflict_not_a_refutation() {
    // Proves memberlist's conflict rule: another address claiming our name (or a known
    // member's) is ignored; for our own name the layer above is told, and we do not start an
    // incarnation war by refuting it.
    let t0 = Instant::now();
    let mut s = core_with(&[("a", 2)], Timing::lan(), t0);
    let inc = s.node("me").unwrap().incarnation;
    s.handle_message(from(), alive("me", 3, 9), t0);
    let effects = s.take_effects();
    let other: SocketAddr = "127.0.0.3:7946".parse().unwrap();
    assert!(
        effects.iter().any(|e| matches!(e, Effect::NameConflict { other: o } if *o == other)),
        "{effects:?}"
    );
    assert_eq!(s.node("me").unwrap().incarnation, inc, "no refutation");
    assert_eq!(s.node("me").unwrap().addr, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
    s.handle_message(from(), alive("a", 4, 9), t0);
    let effects = s.take_effects();
    assert!(!effects.iter().any(|e| matches!(e, Effect::NameConflict { .. })), "not ours: {effects:?}");
    assert_eq!(s.node("a").unwrap().addr, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), "the newcomer is ignored");
}

#[test]
fn gossip_serves_live_members_before_recently_dead_ones() {
    // Proves the target order of a gossip round: with few transmits per broadcast (the local
    // profile's) and dead members in the gossip window, every broadcast still reaches the one
    // live member, round after round (a random order loses some).
    let t0 = Instant::now();
    let mut s = core_with(&[("a", 2), ("b", 3), ("c", 4)], Timing::local(), t0);
    for n in ["b", "c"] {
        s.handle_message(
            from(),
            Message::Dead(Dead { incarnation: 1, node: n.into(), from: "a".into() }),
            t0,
        );
    }
    let a: SocketAddr = "127.0.0.2:7946".parse().unwrap();
    let mut now = t0;
    for round in 0..40u8 {
        s.take_effects();
        s.queue_user_broadcast(None, vec![0xAB, round]);
        let interval = s.timing().gossip_interval;
        let (effects, t) = run_until(&mut s, now, now + interval);
        now = t;
        let reached_a = effects.iter().any(|e| match e {
            Effect::Send { to, msgs, .. } => *to == a && msgs.iter().any(|m| m.ends_with(&[0xAB, round])),
            _ => false,
        });
        assert!(reached_a, "broadcast {round} never went to the live member");
    }
}
