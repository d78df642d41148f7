//! "Watch streams are ordered, gap-free and consistent with the final state", over the
//! records of [`crate::watch`] watchers, the operation history and the final registry.
//!
//! Each watcher's records split into streams (an `Open` and what followed until a `Break`);
//! a stream opened at revision `s` that saw events or progress through revision `t` covers
//! `s..=t`. The reference for what happened at a revision is the union of every watcher's
//! events plus every acknowledged write whose revision is known. Per watcher:
//! - ordered: event revisions never go back, and one (revision, id) is never delivered twice
//!   (revisions only repeat for several services changed by one revision);
//! - gap-free: a resume starts right after what was covered before; every reference event in a
//!   covered range was delivered; all watchers agree on what an event was;
//! - final state: a watcher that covered through the final listing's revision ends, for each id
//!   it saw, on that id's final state (present with the same version, or absent after a removal);
//!   one that covered everything from revision 1 also saw every id the listing has.

use std::collections::BTreeMap;

use crate::check::{secs, Verdict};
use crate::history::{Call, Op, Outcome};
use crate::watch::{Kind, Record, Watcher};

/// The registry after the run: a linearizable listing and the revision it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalState {
    pub revision: u64,
    pub services: BTreeMap<String, u64>,
}

/// What happened to one id at one revision, and who said so.
#[derive(Debug, Clone)]
struct Said {
    kind: Kind,
    version: Option<u64>,
    by: String,
}

/// One unbroken stream of a watcher.
struct Stream<'a> {
    node: &'a str,
    start: u64,
    through: u64,
    events: Vec<(u64, Kind, &'a str, Option<u64>)>,
}

fn streams(w: &Watcher) -> Vec<Stream<'_>> {
    let mut out: Vec<Stream> = Vec::new();
    let mut open = false;
    for r in &w.records {
        match r {
            Record::Open { node, start, .. } => {
                let through = start.saturating_sub(1);
                out.push(Stream { node, start: *start, through, events: Vec::new() });
                open = true;
            }
            Record::Event { revision, kind, id, version, .. } => {
                if let (true, Some(s)) = (open, out.last_mut()) {
                    s.events.push((*revision, *kind, id, *version));
                    s.through = s.through.max(*revision);
                }
            }
            Record::Progress { revision, .. } => {
                if let (true, Some(s)) = (open, out.last_mut()) {
                    s.through = s.through.max(*revision);
                }
            }
            Record::Break { .. } | Record::Compacted { .. } => open = false,
        }
    }
    out
}

fn expected_kind(call: &Call) -> Option<(Kind, Option<u64>)> {
    match call {
        Call::Register { version, .. } => Some((Kind::Registered, Some(*version))),
        Call::Update { version, .. } => Some((Kind::Updated, Some(*version))),
        Call::Deregister { .. } => Some((Kind::Deregistered, None)),
        _ => None,
    }
}

/// Checks every watcher; see the module comment for the rules.
pub fn watch_streams(watchers: &[Watcher], ops: &[Op], final_state: Option<&FinalState>) -> Verdict {
    let mut violations = Vec::new();
    let all: Vec<(usize, Vec<Stream>)> = watchers.iter().map(|w| (w.watcher, streams(w))).collect();

    // The reference: (revision, id) → what happened. Acknowledged writes first.
    let mut reference: BTreeMap<(u64, &str), Said> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.outcome == Outcome::Ok) {
        let (Some(rev), Some(id), Some((kind, version))) =
            (op.revision, op.call.id(), expected_kind(&op.call))
        else {
            continue;
        };
        let by = format!("the write acknowledged at {} via {}", secs(op.complete_ns), op.node);
        reference.insert((rev, id), Said { kind, version: if kind.removes() { None } else { version }, by });
    }
    for (w, ss) in &all {
        for s in ss {
            for &(rev, kind, id, version) in &s.events {
                let version = if kind.removes() { None } else { version };
                let by = format!("watcher {w} (on {})", s.node);
                match reference.get(&(rev, id)) {
                    None => {
                        reference.insert((rev, id), Said { kind, version, by });
                    }
                    Some(r) if r.kind != kind || r.version != version => violations.push(format!(
                        "watcher {w} (on {}) saw {id} {kind:?} version {version:?} at r{rev}, but {} says {:?} version {:?}",
                        s.node, r.by, r.kind, r.version
                    )),
                    Some(_) => {}
                }
            }
        }
    }

    let mut events_seen = 0usize;
    let mut reached_final = 0usize;
    for (w, ss) in &all {
        // Ordered, across resumes too.
        let mut last: Option<(u64, &str)> = None;
        let mut delivered: BTreeMap<(u64, &str), ()> = BTreeMap::new();
        let mut covered_through: Option<u64> = None;
        for (k, s) in ss.iter().enumerate() {
            if let Some(t) = covered_through {
                if s.start > t + 1 {
                    violations.push(format!(
                        "watcher {w} resumed on {} at r{} after covering only through r{t}: r{}..=r{} were skipped",
                        s.node,
                        s.start,
                        t + 1,
                        s.start - 1
                    ));
                }
            }
            for &(rev, kind, id, _) in &s.events {
                events_seen += 1;
                if rev < s.start {
                    violations.push(format!(
                        "watcher {w} stream {k} on {} started at r{} but delivered r{rev} ({id} {kind:?})",
                        s.node, s.start
                    ));
                }
                if let Some((lr, lid)) = last {
                    if rev < lr {
                        violations.push(format!(
                            "watcher {w} on {} delivered r{rev} ({id} {kind:?}) after r{lr} ({lid}): out of order",
                            s.node
                        ));
                    }
                }
                if delivered.insert((rev, id), ()).is_some() {
                    violations.push(format!("watcher {w} on {} delivered r{rev} ({id}) twice", s.node));
                }
                last = Some((rev, id));
            }
            // Gap-free within what the stream covered.
            for ((rev, id), said) in reference.range((s.start, "")..) {
                if *rev > s.through {
                    break;
                }
                if !s.events.iter().any(|e| e.0 == *rev && e.2 == *id) {
                    violations.push(format!(
                        "watcher {w} missed {id} {:?} at r{rev} (from {}) while its stream on {} covered r{}..=r{}",
                        said.kind, said.by, s.node, s.start, s.through
                    ));
                }
            }
            covered_through = Some(covered_through.map_or(s.through, |t| t.max(s.through)));
        }
        // Consistent with the final state.
        let (Some(f), Some(first), Some(t)) = (final_state, ss.first(), covered_through) else { continue };
        if t < f.revision {
            continue;
        }
        reached_final += 1;
        let mut last_of: BTreeMap<&str, (u64, Kind, Option<u64>)> = BTreeMap::new();
        for s in ss {
            for &(rev, kind, id, version) in &s.events {
                last_of.insert(id, (rev, kind, version));
            }
        }
        for (id, (rev, kind, version)) in &last_of {
            match (f.services.get(*id), kind.removes()) {
                (Some(v), true) => violations.push(format!(
                    "watcher {w}'s last event for {id} is {kind:?} at r{rev}, but the final listing (r{}) has it at version {v}",
                    f.revision
                )),
                (None, false) => violations.push(format!(
                    "watcher {w}'s last event for {id} is {kind:?} at r{rev}, but the final listing (r{}) lacks it",
                    f.revision
                )),
                (Some(v), false) if *version != Some(*v) => violations.push(format!(
                    "watcher {w}'s last event for {id} (r{rev}) has version {version:?}, the final listing (r{}) version {v}",
                    f.revision
                )),
                _ => {}
            }
        }
        if first.start <= 1 {
            for id in f.services.keys().filter(|id| !last_of.contains_key(id.as_str())) {
                violations.push(format!(
                    "watcher {w} watched from r1 through r{t} but never saw {id}, which the final listing (r{}) has",
                    f.revision
                ));
            }
        }
    }
    let resumes: usize = all.iter().map(|(_, ss)| ss.len().saturating_sub(1)).sum();
    let checked = format!(
        "{} watcher(s), {events_seen} events, {resumes} resume(s), {} reference events{}",
        watchers.len(),
        reference.len(),
        final_state
            .map(|f| format!(", final listing at r{} reached by {reached_final}", f.revision))
            .unwrap_or_default()
    );
    Verdict::from("watch-streams", checked, violations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(node: &str, start: u64) -> Record {
        Record::Open { at_ns: 0, node: node.into(), start }
    }

    fn ev(revision: u64, kind: Kind, id: &str, version: Option<u64>) -> Record {
        Record::Event { at_ns: 0, revision, kind, id: id.into(), version }
    }

    fn brk() -> Record {
        Record::Break { at_ns: 0, error: "UNAVAILABLE: gone".into() }
    }

    fn progress(revision: u64) -> Record {
        Record::Progress { at_ns: 0, revision }
    }

    fn w(watcher: usize, records: Vec<Record>) -> Watcher {
        Watcher { watcher, records }
    }

    fn write(call: Call, revision: u64) -> Op {
        Op {
            client: 0,
            node: "n1".into(),
            call,
            invoke_ns: revision * 1_000_000,
            complete_ns: revision * 1_000_000 + 1,
            outcome: Outcome::Ok,
            code: None,
            error: None,
            value: None,
            revision: Some(revision),
        }
    }

    fn ops() -> Vec<Op> {
        vec![
            write(Call::Register { id: "a".into(), version: 1 }, 1),
            write(Call::Register { id: "b".into(), version: 1 }, 2),
            write(Call::Update { id: "a".into(), version: 2 }, 3),
            write(Call::Deregister { id: "b".into() }, 4),
        ]
    }

    fn full(node: &str) -> Vec<Record> {
        vec![
            open(node, 1),
            ev(1, Kind::Registered, "a", Some(1)),
            ev(2, Kind::Registered, "b", Some(1)),
            ev(3, Kind::Updated, "a", Some(2)),
            ev(4, Kind::Deregistered, "b", Some(1)),
            progress(4),
        ]
    }

    fn final_state() -> FinalState {
        FinalState { revision: 4, services: BTreeMap::from([("a".to_string(), 2)]) }
    }

    #[test]
    fn watchers_that_saw_every_write_in_order_across_a_resume_pass() {
        // Proves the checker accepts a full watcher, one resumed mid-way and one from the current revision.
        let resumed = vec![
            open("n1", 1),
            ev(1, Kind::Registered, "a", Some(1)),
            ev(2, Kind::Registered, "b", Some(1)),
            brk(),
            open("n2", 3),
            ev(3, Kind::Updated, "a", Some(2)),
            ev(4, Kind::Deregistered, "b", Some(1)),
        ];
        let late =
            vec![open("n3", 3), ev(3, Kind::Updated, "a", Some(2)), ev(4, Kind::Deregistered, "b", None)];
        let v = watch_streams(&[w(0, full("n1")), w(1, resumed), w(2, late)], &ops(), Some(&final_state()));
        assert!(v.ok, "{v:?}");
    }

    #[test]
    fn a_gap_within_one_stream_is_reported_with_the_missed_event() {
        // Proves a stream that skipped an event another watcher saw is a violation.
        let mut gappy = full("n2");
        gappy.remove(2); // r2: b registered
        let v = watch_streams(&[w(0, full("n1")), w(1, gappy)], &[], None);
        assert!(!v.ok);
        assert_eq!(v.violations.len(), 1, "{v:?}");
        assert!(
            v.violations[0].contains("watcher 1 missed b Registered at r2 (from watcher 0 (on n1))"),
            "{v:?}"
        );
    }

    #[test]
    fn a_reordered_stream_is_reported() {
        // Proves events delivered with a revision going back are a violation.
        let mut swapped = full("n1");
        swapped.swap(2, 3);
        let v = watch_streams(&[w(0, swapped)], &ops(), None);
        assert!(!v.ok);
        assert!(
            v.violations.iter().any(|m| m.contains("delivered r2 (b Registered) after r3 (a): out of order")),
            "{v:?}"
        );
    }

    #[test]
    fn a_missing_acknowledged_write_is_reported_even_if_no_watcher_saw_it() {
        // Proves an acknowledged write at a covered revision must appear in every covering watcher.
        let mut missing = full("n1");
        missing.remove(3); // r3: a updated to 2
        let v = watch_streams(&[w(0, missing)], &ops(), None);
        assert!(!v.ok);
        let all = v.violations.join("\n");
        assert!(all.contains("watcher 0 missed a Updated at r3 (from the write acknowledged at"), "{all}");
    }

    #[test]
    fn a_resume_that_skips_revisions_and_a_stale_final_state_are_reported() {
        // Proves a gap across a resume and a last event disagreeing with the final listing are violations.
        let skipping =
            vec![open("n1", 1), ev(1, Kind::Registered, "a", Some(1)), brk(), open("n2", 4), progress(4)];
        let v = watch_streams(&[w(0, skipping)], &[], Some(&final_state()));
        let all = v.violations.join("\n");
        assert!(
            all.contains("resumed on n2 at r4 after covering only through r1: r2..=r3 were skipped"),
            "{all}"
        );
        assert!(
            all.contains("last event for a (r1) has version Some(1), the final listing (r4) version 2"),
            "{all}"
        );
    }

    #[test]
    fn a_watcher_disagreeing_with_an_acknowledged_write_is_reported() {
        // Proves two accounts of one revision that differ are a violation.
        let mut wrong = full("n1");
        wrong[3] = ev(3, Kind::Updated, "a", Some(7));
        let v = watch_streams(&[w(0, wrong)], &ops(), None);
        assert!(!v.ok);
        assert!(v.violations[0].contains("saw a Updated version Some(7) at r3"), "{v:?}");
    }
}
