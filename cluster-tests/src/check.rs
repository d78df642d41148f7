//! Checkers: pure functions from a history and final observations to a [`Verdict`], one
//! property each, with a readable explanation of every violation. No I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::history::{Call, Op, Outcome};

/// Violations listed in full in a verdict; the rest are counted.
const VIOLATIONS_SHOWN: usize = 20;

/// A checker's judgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub checker: String,
    pub ok: bool,
    /// One paragraph for people.
    pub explanation: String,
    /// The first violations, each one sentence.
    pub violations: Vec<String>,
}

impl Verdict {
    pub(crate) fn from(checker: &str, checked: String, mut violations: Vec<String>) -> Verdict {
        let ok = violations.is_empty();
        let total = violations.len();
        violations.truncate(VIOLATIONS_SHOWN);
        let explanation = if ok {
            format!("ok: {checked}")
        } else {
            let more = total.saturating_sub(VIOLATIONS_SHOWN);
            let more = if more > 0 { format!(" ({more} more not shown)") } else { String::new() };
            format!("{total} violation(s){more} while checking {checked}; first: {}", violations[0])
        };
        Verdict { checker: checker.into(), ok, explanation, violations }
    }
}

pub(crate) fn secs(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

/// What the history says about one service id.
#[derive(Default)]
struct IdFacts<'a> {
    register_ok: Option<&'a Op>,
    register_maybe: bool,
    deregister_ok: Option<&'a Op>,
    deregister_maybe: bool,
    /// Highest acknowledged write version and the op that wrote it.
    acked: Option<(u64, &'a Op)>,
    /// Versions of writes that were acknowledged.
    ok_versions: BTreeSet<u64>,
    /// Versions of writes whose outcome is unknown.
    unknown_versions: BTreeSet<u64>,
}

fn facts(ops: &[Op]) -> BTreeMap<&str, IdFacts<'_>> {
    let mut by_id: BTreeMap<&str, IdFacts> = BTreeMap::new();
    for op in ops {
        let Some(id) = op.call.id() else { continue };
        let f = by_id.entry(id).or_default();
        let written = match &op.call {
            Call::Register { version, .. } | Call::Update { version, .. } => Some(*version),
            _ => None,
        };
        match (&op.call, op.outcome) {
            (Call::Register { .. }, Outcome::Ok) => f.register_ok = Some(op),
            (Call::Register { .. }, Outcome::Unknown) => f.register_maybe = true,
            (Call::Deregister { .. }, Outcome::Ok) => f.deregister_ok = Some(op),
            (Call::Deregister { .. }, Outcome::Unknown) => f.deregister_maybe = true,
            _ => {}
        }
        if let Some(v) = written {
            match op.outcome {
                Outcome::Ok => {
                    f.ok_versions.insert(v);
                    if f.acked.is_none_or(|(a, _)| v > a) {
                        f.acked = Some((v, op));
                    }
                }
                Outcome::Unknown => {
                    f.unknown_versions.insert(v);
                }
                Outcome::Fail => {}
            }
        }
    }
    by_id
}

/// "No acknowledged write lost", checked against each node's final linearizable listing
/// (`finals`: node → id → version), taken after the heal with no client running. Per id
/// (every id is written by one sequential client, versions growing):
/// - an acknowledged register not followed by an acknowledged or unknown deregister is present;
/// - an acknowledged deregister leaves the id absent;
/// - a present id was registered (ok or unknown): failed writes have no effect;
/// - a present id's version was written by an ok or unknown write; below the highest
///   acknowledged version only an unknown write's version may remain (it may land late).
pub fn no_acknowledged_write_lost(ops: &[Op], finals: &BTreeMap<String, BTreeMap<String, u64>>) -> Verdict {
    let by_id = facts(ops);
    let mut violations = Vec::new();
    if finals.is_empty() {
        violations.push("no node's final listing was read".to_string());
    }
    for (node, listing) in finals {
        for (id, f) in &by_id {
            let present = listing.get(*id);
            match (present, f.register_ok, f.deregister_ok) {
                (Some(_), _, Some(d)) => violations.push(format!(
                    "{id} is on {node}, but its deregister was acknowledged at {} via {}",
                    secs(d.complete_ns),
                    d.node
                )),
                (None, Some(r), None) if !f.deregister_maybe => violations.push(format!(
                    "{id} was registered (acknowledged at {} via {}) and never deregistered, but {node} does not list it",
                    secs(r.complete_ns),
                    r.node
                )),
                (Some(_), None, _) if !f.register_maybe => {
                    violations.push(format!("{id} is on {node}, but every register of it failed"));
                    // Its version cannot be right either; one cause, one report.
                    continue;
                }
                _ => {}
            }
            let Some(&v) = present else { continue };
            if !f.ok_versions.contains(&v) && !f.unknown_versions.contains(&v) {
                violations
                    .push(format!("{id} on {node} has version {v}, which no ok or unknown write wrote"));
            } else if let Some((acked, op)) = f.acked {
                if v < acked && !f.unknown_versions.contains(&v) {
                    violations.push(format!(
                        "{id} on {node} has version {v}, older than version {acked} acknowledged at {} via {}",
                        secs(op.complete_ns),
                        op.node
                    ));
                }
            }
        }
        for id in listing.keys() {
            if !by_id.contains_key(id.as_str()) {
                violations.push(format!("{node} lists {id}, which no client wrote"));
            }
        }
    }
    let acked = by_id.values().filter(|f| f.register_ok.is_some()).count();
    let checked = format!(
        "{} ids ({acked} acknowledged registers) against {} node listing(s)",
        by_id.len(),
        finals.len()
    );
    Verdict::from("no-acknowledged-write-lost", checked, violations)
}

/// What one node said after the heal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub node: String,
    /// The leader's gossip name, None when it knows none.
    pub leader: Option<String>,
    /// The voters' names, sorted.
    pub voters: Vec<String>,
    /// Its own copy of the registry (a stale List): id → version.
    pub services: Option<BTreeMap<String, u64>>,
    /// Why Status or List failed.
    pub error: Option<String>,
}

/// "Converged after heal": every node answers, all name the same leader and voters, and
/// every node's own registry copy is identical.
pub fn converged(views: &[NodeView]) -> Verdict {
    let mut violations = Vec::new();
    if views.is_empty() {
        violations.push("no node was asked".to_string());
    }
    for v in views {
        if let Some(e) = &v.error {
            violations.push(format!("{} did not answer: {e}", v.node));
        }
        if v.leader.is_none() {
            violations.push(format!("{} knows no leader", v.node));
        }
    }
    if let Some(first) = views.first() {
        for v in &views[1..] {
            if v.leader != first.leader {
                violations.push(format!(
                    "{} follows {:?} but {} follows {:?}",
                    v.node, v.leader, first.node, first.leader
                ));
            }
            if v.voters != first.voters {
                violations.push(format!(
                    "{} sees voters {:?} but {} sees {:?}",
                    v.node, v.voters, first.node, first.voters
                ));
            }
            if let (Some(a), Some(b)) = (&first.services, &v.services) {
                violations.extend(diff(&first.node, a, &v.node, b));
            }
        }
    }
    let checked = format!("{} node(s): leader, voters and registry copy", views.len());
    Verdict::from("converged-after-heal", checked, violations)
}

fn diff(an: &str, a: &BTreeMap<String, u64>, bn: &str, b: &BTreeMap<String, u64>) -> Vec<String> {
    let mut out = Vec::new();
    for (id, va) in a {
        match b.get(id) {
            None => out.push(format!("{id} is on {an} (version {va}) but not on {bn}")),
            Some(vb) if vb != va => out.push(format!("{id} has version {va} on {an} but {vb} on {bn}")),
            Some(_) => {}
        }
    }
    for (id, vb) in b {
        if !a.contains_key(id) {
            out.push(format!("{id} is on {bn} (version {vb}) but not on {an}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: usize, call: Call, t: u64, outcome: Outcome) -> Op {
        Op {
            client,
            node: "n1".into(),
            call,
            invoke_ns: t * 1_000_000,
            complete_ns: t * 1_000_000 + 500_000,
            outcome,
            code: None,
            error: None,
            value: None,
            revision: None,
        }
    }

    fn reg(id: &str, t: u64, o: Outcome) -> Op {
        op(0, Call::Register { id: id.into(), version: 1 }, t, o)
    }

    fn upd(id: &str, v: u64, t: u64, o: Outcome) -> Op {
        op(0, Call::Update { id: id.into(), version: v }, t, o)
    }

    fn dereg(id: &str, t: u64, o: Outcome) -> Op {
        op(0, Call::Deregister { id: id.into() }, t, o)
    }

    fn finals(nodes: &[(&str, &[(&str, u64)])]) -> BTreeMap<String, BTreeMap<String, u64>> {
        nodes
            .iter()
            .map(|(n, l)| (n.to_string(), l.iter().map(|(id, v)| (id.to_string(), *v)).collect()))
            .collect()
    }

    /// A history where every rule has something to check: kept, deregistered, maybe written.
    fn good_history() -> Vec<Op> {
        vec![
            reg("a", 1, Outcome::Ok),
            upd("a", 2, 2, Outcome::Ok),
            upd("a", 3, 3, Outcome::Unknown),
            reg("b", 4, Outcome::Ok),
            dereg("b", 5, Outcome::Ok),
            reg("c", 6, Outcome::Unknown),
            reg("d", 7, Outcome::Fail),
            reg("e", 8, Outcome::Ok),
            dereg("e", 9, Outcome::Unknown),
        ]
    }

    #[test]
    fn a_history_whose_final_state_keeps_every_acknowledged_write_passes() {
        // Proves the checker accepts what the rules allow: unknown writes either way.
        let h = good_history();
        let v = no_acknowledged_write_lost(
            &h,
            &finals(&[("n1", &[("a", 3), ("c", 1)]), ("n2", &[("a", 2), ("e", 1)])]),
        );
        assert!(v.ok, "{v:?}");
    }

    #[test]
    fn a_lost_acknowledged_register_is_reported_with_the_node_and_time() {
        // Proves a missing acknowledged write is a violation naming id, node and ack time.
        let v = no_acknowledged_write_lost(&good_history(), &finals(&[("n1", &[("a", 2)]), ("n2", &[])]));
        assert!(!v.ok);
        assert_eq!(v.violations.len(), 1, "{v:?}");
        assert!(v.violations[0].contains("a was registered") && v.violations[0].contains("n2"), "{v:?}");
        assert!(v.explanation.contains("acknowledged at 0.00"), "{}", v.explanation);
    }

    #[test]
    fn a_resurrected_a_failed_and_a_rolled_back_write_are_each_reported() {
        // Proves the other three rules fire: deregistered-but-present, failed-but-visible,
        // and a version older than an acknowledged one.
        let h = good_history();
        let v = no_acknowledged_write_lost(&h, &finals(&[("n1", &[("a", 1), ("b", 1), ("d", 1)])]));
        assert!(!v.ok);
        let all = v.violations.join("\n");
        assert!(all.contains("b is on n1, but its deregister was acknowledged"), "{all}");
        assert!(all.contains("d is on n1, but every register of it failed"), "{all}");
        assert!(all.contains("a on n1 has version 1, older than version 2"), "{all}");
        assert_eq!(v.violations.len(), 3, "{all}");
    }

    #[test]
    fn a_version_nobody_wrote_and_an_unknown_id_are_reported() {
        // Proves values that cannot come from the history are violations.
        let v = no_acknowledged_write_lost(&good_history(), &finals(&[("n1", &[("a", 9), ("zz", 1)])]));
        let all = v.violations.join("\n");
        assert!(all.contains("version 9, which no ok or unknown write wrote"), "{all}");
        assert!(all.contains("lists zz, which no client wrote"), "{all}");
    }

    fn view(node: &str, leader: Option<&str>, services: &[(&str, u64)]) -> NodeView {
        NodeView {
            node: node.into(),
            leader: leader.map(String::from),
            voters: vec!["n1".into(), "n2".into(), "n3".into()],
            services: Some(services.iter().map(|(i, v)| (i.to_string(), *v)).collect()),
            error: None,
        }
    }

    #[test]
    fn nodes_agreeing_on_leader_voters_and_contents_have_converged() {
        // Proves the convergence checker passes identical views.
        let views = [view("n1", Some("n2"), &[("a", 1)]), view("n2", Some("n2"), &[("a", 1)])];
        assert!(converged(&views).ok);
    }

    #[test]
    fn a_split_leader_a_diverged_copy_and_a_silent_node_are_reported() {
        // Proves each kind of disagreement after a heal is a violation.
        let mut silent = view("n3", None, &[]);
        silent.services = None;
        silent.error = Some("Status took over 2s".into());
        let views = [
            view("n1", Some("n1"), &[("a", 1), ("b", 2)]),
            view("n2", Some("n2"), &[("a", 2), ("c", 1)]),
            silent,
        ];
        let v = converged(&views);
        assert!(!v.ok);
        let all = v.violations.join("\n");
        assert!(all.contains("n2 follows Some(\"n2\") but n1 follows Some(\"n1\")"), "{all}");
        assert!(all.contains("a has version 1 on n1 but 2 on n2"), "{all}");
        assert!(all.contains("b is on n1 (version 2) but not on n2"), "{all}");
        assert!(all.contains("c is on n2 (version 1) but not on n1"), "{all}");
        assert!(all.contains("n3 did not answer"), "{all}");
        assert!(all.contains("n3 knows no leader"), "{all}");
    }
}
