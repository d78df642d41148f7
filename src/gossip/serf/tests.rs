//! Deterministic tests of the Serf core: member status from memberlist events and intents,
//! user events, push/pull merging and reaping. Explicit time, no sockets.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::*;
use crate::gossip::swim::{MemberEvent, Node, NodeState, VSN};
use crate::gossip::wire::{SerfMessage, SerfUserEventEntry};

fn node(name: &str, state: NodeState, now: Instant) -> Node {
    Node {
        name: name.into(),
        addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 7946,
        meta: vec![],
        incarnation: 1,
        state,
        state_change: now,
        vsn: VSN,
    }
}

fn serf(now: Instant) -> Serf {
    let mut s = Serf::new("me".into(), SerfConfig::default(), 1, now);
    s.handle_member_event(MemberEvent::Join(node("me", NodeState::Alive, now)), now);
    s.take_effects();
    s
}

fn events(s: &mut Serf) -> Vec<SerfEvent> {
    s.take_effects()
        .into_iter()
        .filter_map(|e| match e {
            SerfEffect::Event(ev) => Some(ev),
            _ => None,
        })
        .collect()
}

fn broadcasts(s: &mut Serf) -> Vec<SerfMessage> {
    s.take_effects()
        .into_iter()
        .filter_map(|e| match e {
            SerfEffect::Broadcast { payload, .. } => SerfMessage::decode(&payload).ok(),
            _ => None,
        })
        .collect()
}

#[test]
fn a_leave_intent_before_the_dead_message_makes_the_member_left_not_failed() {
    // Proves Serf's leave: intent (alive → leaving) then memberlist's dead → `left`; without
    // the intent the same dead message means `failed`.
    let t = Instant::now();
    let mut s = serf(t);
    s.handle_member_event(MemberEvent::Join(node("a", NodeState::Alive, t)), t);
    s.handle_member_event(MemberEvent::Join(node("b", NodeState::Alive, t)), t);
    s.take_effects();
    let leave = SerfMessage::Leave(SerfLeave { l_time: 5, node: "a".into(), prune: false }).encode();
    s.handle_user_msg(&leave, t);
    assert_eq!(s.member("a").unwrap().status, MemberStatus::Leaving);
    assert_eq!(broadcasts(&mut s).len(), 1, "a new intent is re-broadcast");
    s.handle_user_msg(&leave, t);
    assert!(broadcasts(&mut s).is_empty(), "a seen intent is not re-broadcast");
    s.handle_member_event(MemberEvent::Leave(node("a", NodeState::Dead, t)), t);
    s.handle_member_event(MemberEvent::Leave(node("b", NodeState::Dead, t)), t);
    assert_eq!(s.member("a").unwrap().status, MemberStatus::Left);
    assert_eq!(s.member("b").unwrap().status, MemberStatus::Failed);
    let ev = events(&mut s);
    assert!(matches!(&ev[0], SerfEvent::MemberLeave(m) if m.name == "a"));
    assert!(matches!(&ev[1], SerfEvent::MemberFailed(m) if m.name == "b"));
}

#[test]
fn an_intent_for_an_unknown_member_applies_when_it_joins() {
    // Proves the intent buffer: a leave intent about a member not yet known marks it leaving
    // when memberlist reports it.
    let t = Instant::now();
    let mut s = serf(t);
    s.handle_user_msg(
        &SerfMessage::Leave(SerfLeave { l_time: 3, node: "late".into(), prune: false }).encode(),
        t,
    );
    s.handle_member_event(MemberEvent::Join(node("late", NodeState::Alive, t)), t);
    let m = s.member("late").unwrap();
    assert_eq!((m.status, m.status_ltime), (MemberStatus::Leaving, 3));
}

#[test]
fn an_old_leave_intent_about_ourselves_is_refuted_with_a_join() {
    // Proves refutation at the Serf level: while not leaving, a leave intent about us gets a
    // join intent with a newer Lamport time.
    let t = Instant::now();
    let mut s = serf(t);
    s.handle_user_msg(
        &SerfMessage::Leave(SerfLeave { l_time: 7, node: "me".into(), prune: false }).encode(),
        t,
    );
    let b = broadcasts(&mut s);
    assert!(matches!(&b[..], [SerfMessage::Join(j)] if j.node == "me" && j.l_time >= 8), "{b:?}");
    assert_eq!(s.member("me").unwrap().status, MemberStatus::Alive);
}

#[test]
fn user_events_are_delivered_once_and_respect_the_size_limit() {
    // Proves user events: sending emits and broadcasts once, a duplicate from the network is
    // dropped, the 512-byte limit is an error naming it, and the event clock advances.
    let t = Instant::now();
    let mut s = serf(t);
    s.user_event("deploy", b"v1", true).unwrap();
    let effects = s.take_effects();
    assert_eq!(effects.len(), 2);
    let raw = effects
        .iter()
        .find_map(|e| match e {
            SerfEffect::Broadcast { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .unwrap();
    s.handle_user_msg(&raw, t);
    assert!(s.take_effects().is_empty(), "a duplicate is neither delivered nor re-broadcast");
    let err = s.user_event("big", &[0u8; 600], false).unwrap_err();
    assert!(err.to_string().contains("512"), "{err}");
    assert_eq!(s.clocks().1, 1);
    // An event from another member at a later time is delivered and re-broadcast.
    let other =
        SerfMessage::UserEvent(SerfUserEvent { l_time: 9, name: "x".into(), payload: vec![], cc: false });
    s.handle_user_msg(&other.encode(), t);
    let eff = s.take_effects();
    assert!(eff
        .iter()
        .any(|e| matches!(e, SerfEffect::Event(SerfEvent::User { name, ltime: 9, .. }) if name == "x")));
    assert!(eff.iter().any(|e| matches!(e, SerfEffect::Broadcast { .. })));
}

#[test]
fn push_pull_merges_clocks_left_members_and_skips_old_events_on_join() {
    // Proves the push/pull merge: clocks are witnessed, left members become left, and on a
    // join the events the remote buffered are not replayed (Serf's default without -replay).
    let t = Instant::now();
    let mut s = serf(t);
    s.handle_member_event(MemberEvent::Join(node("gone", NodeState::Alive, t)), t);
    s.handle_member_event(MemberEvent::Leave(node("gone", NodeState::Dead, t)), t);
    s.take_effects();
    let pp = SerfPushPull {
        l_time: 20,
        status_l_times: [("gone".to_string(), 4)].into_iter().collect(),
        left_members: vec!["gone".into()],
        event_l_time: 30,
        events: vec![SerfUserEvents {
            l_time: 12,
            events: vec![SerfUserEventEntry { name: "old".into(), payload: vec![] }],
        }],
        query_l_time: 2,
    };
    s.merge_remote_state(&SerfMessage::PushPull(pp).encode(), true, t);
    assert_eq!(s.member("gone").unwrap().status, MemberStatus::Left);
    let (m, e, q) = s.clocks();
    assert!(m >= 20 && e >= 30 && q >= 2, "clocks {m} {e} {q}");
    assert!(
        !events(&mut s).iter().any(|ev| matches!(ev, SerfEvent::User { .. })),
        "old events are not replayed"
    );
    // Our own state round-trips through the encoder.
    assert!(
        matches!(SerfMessage::decode(&s.local_state()), Ok(SerfMessage::PushPull(p)) if p.left_members == ["gone"])
    );
}

#[test]
fn a_stale_left_members_list_does_not_mark_a_rejoined_member_leaving() {
    // Regression (found by the cluster tests' rolling restarts): a member that left and
    // rejoined (join time 9) was marked `leaving` again by a push/pull from a peer that still
    // listed it as left with status time 9, because the merge took the leave one tick later
    // than the remote knew it; nothing ever refuted it, so the member stayed `leaving` and
    // dropped out of the raft voters for good.
    let t = Instant::now();
    let mut s = serf(t);
    s.handle_member_event(MemberEvent::Join(node("a", NodeState::Alive, t)), t);
    s.handle_user_msg(&SerfMessage::Join(SerfJoin { l_time: 9, node: "a".into() }).encode(), t);
    s.take_effects();
    let stale = SerfPushPull {
        l_time: 12,
        status_l_times: [("a".to_string(), 9)].into_iter().collect(),
        left_members: vec!["a".into()],
        event_l_time: 0,
        events: vec![],
        query_l_time: 0,
    };
    s.merge_remote_state(&SerfMessage::PushPull(stale).encode(), false, t);
    assert_eq!(s.member("a").unwrap().status, MemberStatus::Alive);
    // A newer leave still counts.
    let newer = SerfPushPull {
        l_time: 12,
        status_l_times: [("a".to_string(), 10)].into_iter().collect(),
        left_members: vec!["a".into()],
        event_l_time: 0,
        events: vec![],
        query_l_time: 0,
    };
    s.merge_remote_state(&SerfMessage::PushPull(newer).encode(), false, t);
    assert_eq!(s.member("a").unwrap().status, MemberStatus::Leaving);
}

#[test]
fn failed_members_are_reaped_after_the_reconnect_timeout() {
    // Proves reaping: a failed member stays until the reconnect timeout, then is reaped.
    let t = Instant::now();
    let cfg = SerfConfig { reconnect_timeout: Duration::from_secs(60), ..SerfConfig::default() };
    let mut s = Serf::new("me".into(), cfg, 1, t);
    s.handle_member_event(MemberEvent::Join(node("a", NodeState::Alive, t)), t);
    s.handle_member_event(MemberEvent::Leave(node("a", NodeState::Dead, t)), t);
    s.tick(t + Duration::from_secs(30));
    assert!(s.member("a").is_some());
    s.take_effects();
    s.tick(t + Duration::from_secs(90));
    assert!(s.member("a").is_none());
    assert!(events(&mut s).iter().any(|e| matches!(e, SerfEvent::MemberReap(m) if m.name == "a")));
}
