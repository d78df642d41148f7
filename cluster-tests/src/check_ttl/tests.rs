use super::*;
use crate::heartbeat::FinalRead;

/// Unix ms at run-clock 0 in every hand-made record.
const START: u64 = 1_700_000_000_000;
const MS: u64 = 1_000_000;

fn op(
    call: TtlCall,
    id: &str,
    invoke_ms: u64,
    complete_ms: u64,
    outcome: Outcome,
    code: Option<&str>,
) -> TtlOp {
    TtlOp {
        client: 0,
        node: "n2".into(),
        call,
        id: id.into(),
        invoke_ns: invoke_ms * MS,
        complete_ns: complete_ms * MS,
        outcome,
        code: code.map(str::to_string),
        error: None,
        expires_at_ms: (outcome == Outcome::Ok).then_some(START + invoke_ms + 10_000),
    }
}

/// An acknowledged heartbeat taking 40 ms.
fn hb(id: &str, invoke_ms: u64) -> TtlOp {
    op(TtlCall::Heartbeat, id, invoke_ms, invoke_ms + 40, Outcome::Ok, None)
}

fn event(kind: Kind, id: &str, revision: u64, expires_ms: u64, decided_ms: u64) -> TtlEvent {
    TtlEvent {
        at_ns: (decided_ms + 10) * MS,
        revision,
        kind,
        id: id.into(),
        expires_at_ms: START + expires_ms,
        last_heartbeat_ms: START + expires_ms - 10_000,
        updated_at_ms: START + decided_ms,
        ttl_seconds: 10,
    }
}

fn registered(id: &str, revision: u64) -> TtlEvent {
    event(Kind::Registered, id, revision, 10_000, 0)
}

/// a's expiry at r5 with lease end `expires_ms`, decided by the leader at `decided_ms`.
fn expiry(expires_ms: u64, decided_ms: u64) -> TtlEvent {
    event(Kind::Expired, "a", 5, expires_ms, decided_ms)
}

/// a: registered at 0, heartbeated at 3 s and 6 s, then stopped (due by 6.04 + 10 + 3 =
/// 19.04 s); b: heartbeated every 3 s until 30 s (due after the final read at 32 s).
fn ops() -> Vec<TtlOp> {
    let mut v = vec![
        op(TtlCall::Register, "a", 0, 50, Outcome::Ok, None),
        hb("a", 3_000),
        hb("a", 6_000),
        op(TtlCall::Register, "b", 0, 40, Outcome::Ok, None),
    ];
    v.extend((1..=10).map(|k| hb("b", k * 3_000)));
    v
}

fn rec(ops: Vec<TtlOp>, events: Vec<TtlEvent>) -> TtlRecord {
    TtlRecord {
        start_unix_ms: START,
        ttl_seconds: 10,
        ops,
        stopped: BTreeMap::from([("a".to_string(), 6_100 * MS)]),
        events,
        streams: vec![Record::Open { at_ns: 0, node: "n1".into(), start: 1 }],
        final_read: Some(FinalRead { read_ns: 32_000 * MS, revision: 9 }),
        observed_through: 9,
    }
}

/// a registered and b registered, then a's expiry.
fn with_expiry(e: TtlEvent) -> Vec<TtlEvent> {
    vec![registered("a", 1), registered("b", 2), e]
}

fn check(r: &TtlRecord, faults: &[(u64, u64)]) -> Verdict {
    ttl_bounds(r, faults, &TtlParams::lan())
}

#[test]
fn a_lease_that_ends_after_its_last_heartbeat_plus_ttl_and_on_time_passes() {
    // Proves the checker accepts a clean run: a's 6 s heartbeat checkpointed at 6.5 s, expired at 17 s; b still heartbeating.
    let v = check(&rec(ops(), with_expiry(expiry(16_500, 17_000))), &[]);
    assert!(v.ok, "{v:?}");
    assert!(v.explanation.contains("lateness judged for 1 services"), "{}", v.explanation);
    assert!(
        v.explanation.contains("1 not judged (bound after the observer's coverage at 32.000s)"),
        "{}",
        v.explanation
    );
}

#[test]
fn an_expiry_before_an_acknowledged_heartbeat_plus_ttl_is_a_lost_heartbeat() {
    // Proves a lease end earlier than an acknowledged heartbeat's invoke + ttl fails, naming the heartbeat and the lease end.
    let v = check(&rec(ops(), with_expiry(expiry(14_000, 14_500))), &[]);
    assert!(!v.ok);
    assert_eq!(v.violations.len(), 1, "{v:?}");
    assert_eq!(
        v.violations[0],
        "a expired at r5 with lease end 14.000s, but its heartbeat acknowledged via n2 (invoked 6.000s, completed \
         6.040s, before that lease end) renewed it to at least 16.000s; the node answered lease end 16.000s: an \
         acknowledged heartbeat was lost"
    );
}

#[test]
fn an_expiry_decided_before_its_own_lease_end_fails() {
    // Proves the leader's decision time must not precede the lease end carried in the same event.
    let v = check(&rec(ops(), with_expiry(expiry(17_000, 16_000))), &[]);
    assert!(!v.ok);
    assert_eq!(v.violations, vec!["a was expired at 16.000s (r5) before its lease end 17.000s".to_string()]);
}

#[test]
fn an_expiry_decided_after_the_bound_is_late() {
    // Proves an expiry decided after last ack + ttl + checkpoint + check + slack (19.04 s) fails with the bound and the last renewal.
    let v = check(&rec(ops(), with_expiry(expiry(16_500, 21_000))), &[]);
    assert!(!v.ok);
    assert_eq!(
        v.violations,
        vec![
            "a expired late: decided at 21.000s (r5, received 21.010s), but its last renewal was a heartbeat \
             acknowledged via n2 (6.000s..6.040s), so it was due by 19.040s"
                .to_string()
        ]
    );
}

#[test]
fn a_service_never_seen_expired_after_its_bound_is_missing_unless_the_observer_fell_behind() {
    // Proves a missing expiry fails once the observer caught up past the bound, and is only reported as unjudged otherwise.
    let v = check(&rec(ops(), vec![registered("a", 1), registered("b", 2)]), &[]);
    assert!(!v.ok);
    assert_eq!(
        v.violations,
        vec![
            "a was not expired by 19.040s: its last renewal was a heartbeat acknowledged via n2 (6.000s..6.040s), \
             and the observer saw every commit through 32.000s"
                .to_string()
        ]
    );
    let mut behind = rec(ops(), vec![registered("a", 1), registered("b", 2)]);
    behind.observed_through = 8;
    let v = check(&behind, &[]);
    assert_eq!(
        v.violations,
        vec![
            "the observer saw only through r8 of the final read's r9 (sent at 32.000s), so missing expiries were not judged"
                .to_string()
        ]
    );
}

#[test]
fn a_late_expiry_is_tolerated_when_a_fault_overlaps_the_lease_but_not_when_the_fault_came_after() {
    // Proves the fault rule: a fault in [last renewal, bound] extends the bound to its end + 2 windows + ttl + check + slack; a later fault does not.
    let r = rec(ops(), with_expiry(expiry(16_500, 21_000)));
    let v = check(&r, &[(15_000 * MS, 18_000 * MS)]);
    assert!(v.ok, "{v:?}");
    assert!(v.explanation.contains("(1 with bounds extended past fault intervals)"), "{}", v.explanation);
    let v = check(&r, &[(25_000 * MS, 28_000 * MS)]);
    assert!(!v.ok);
    assert!(v.violations[0].starts_with("a expired late: decided at 21.000s"), "{v:?}");
}

#[test]
fn an_unknown_heartbeat_may_delay_the_expiry_but_never_counts_as_a_renewal_that_was_lost() {
    // Proves an unknown heartbeat moves the late bound (its end + 5 s) but not the early check, a server UNAVAILABLE heartbeat counts as maybe, and a connect failure does not.
    let with = |last: TtlOp| {
        let mut o = ops();
        o.push(last);
        rec(o, with_expiry(expiry(16_500, 21_000)))
    };
    let unknown = op(TtlCall::Heartbeat, "a", 9_000, 12_000, Outcome::Unknown, Some("DEADLINE_EXCEEDED"));
    let v = check(&with(unknown), &[]);
    assert!(v.ok, "{v:?}");
    let lost_reply = op(TtlCall::Heartbeat, "a", 9_000, 9_500, Outcome::Fail, Some("UNAVAILABLE"));
    assert!(check(&with(lost_reply), &[]).ok);
    let never_sent = op(TtlCall::Heartbeat, "a", 9_000, 9_010, Outcome::Fail, Some("UNAVAILABLE(transport)"));
    let v = check(&with(never_sent), &[]);
    assert!(v.violations[0].starts_with("a expired late: decided at 21.000s"), "{v:?}");
    // The same heartbeat acknowledged: the 16.5 s lease end lost it.
    let v = check(&with(hb("a", 9_000)), &[]);
    assert!(v.violations[0].contains("its heartbeat acknowledged via n2 (invoked 9.000s"), "{v:?}");
}

#[test]
fn an_acknowledged_heartbeat_after_an_expiry_must_revive_the_service() {
    // Proves a service left expired although a later heartbeat was acknowledged fails, and passes once the revival is seen.
    let mut o = ops();
    o.push(hb("a", 20_000));
    let v = check(&rec(o.clone(), with_expiry(expiry(16_500, 17_000))), &[]);
    assert_eq!(
        v.violations,
        vec![
            "a stayed expired (r5, decided at 17.000s) although its heartbeat acknowledged via n2 at 20.000s..20.040s \
             came later and should have revived it"
                .to_string()
        ]
    );
    let mut events = with_expiry(expiry(16_500, 17_000));
    events.push(event(Kind::Updated, "a", 6, 30_000, 20_500));
    assert!(check(&rec(o, events), &[]).ok);
}

#[test]
fn a_heartbeat_answered_not_found_after_an_acknowledged_register_fails() {
    // Proves a registered service that a heartbeat no longer finds is a violation naming both calls.
    let mut o = ops();
    o.push(op(TtlCall::Heartbeat, "b", 31_000, 31_020, Outcome::Fail, Some("NOT_FOUND")));
    let v = check(&rec(o, with_expiry(expiry(16_500, 17_000))), &[]);
    assert_eq!(
        v.violations,
        vec![
            "b's heartbeat via n2 (31.000s..31.020s) was answered NOT_FOUND, but its register was acknowledged via \
             n2 at 0.040s"
                .to_string()
        ]
    );
}

#[test]
fn fault_intervals_pair_starts_with_heals_per_node_and_merge() {
    // Proves the nemesis timeline becomes merged intervals: partition to heal, kill and pause per node, an unhealed pause to the end.
    let ev = |t_s: u64, phase: Phase, fault: &str, nodes: &[&str]| Event {
        t_ns: t_s * 1_000 * MS,
        phase,
        fault: fault.into(),
        nodes: nodes.iter().map(|n| n.to_string()).collect(),
        detail: String::new(),
        ok: true,
    };
    let timeline = vec![
        ev(2, Phase::Start, "isolate", &["n1"]),
        ev(7, Phase::Heal, "partition", &["n1", "n2", "n3"]),
        ev(9, Phase::Start, "kill", &["n2"]),
        ev(11, Phase::Start, "pause", &["n3"]),
        ev(12, Phase::Heal, "kill", &["n2"]),
        ev(20, Phase::Heal, "pause", &["n1"]),
    ];
    let s = 1_000 * MS;
    assert_eq!(fault_intervals(&timeline, s, 30 * s), vec![(s, 7 * s), (8 * s, 30 * s)]);
}
