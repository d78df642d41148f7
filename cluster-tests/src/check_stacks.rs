//! "At most one server stack runs at any instant", from Docker's container events: per node,
//! the intervals in which its server stack had at least one running (and not paused: a frozen
//! host serves nothing) container; any two nodes' intervals that overlap are a violation, with
//! one bounded exception: a host that froze while it was the server (its node and stack paused
//! together) resumes its stack for the instant until its watchdog, thawed with it, kills it;
//! an overlap that begins when such a stack is unpaused and lasts at most [`THAW_GRACE_NS`] is
//! reported in the explanation, not as a violation. Nothing running on a frozen host can act
//! before it thaws. Also reads those events from `docker events`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::check::{secs, Verdict};
use crate::cmd;

/// How long a thawed host's server stack may overlap another node's: the watchdog's poll
/// (100 ms) plus a forced removal by the Docker engine, with room for a loaded machine.
pub const THAW_GRACE_NS: u64 = 500_000_000;

/// The stack name of the server stack (label `muster.stack`).
pub const SERVER_STACK: &str = "server";
const LABEL_NODE: &str = "muster.node";
const LABEL_STACK: &str = "muster.stack";

/// What happened to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Start,
    Die,
    Stop,
    Destroy,
    /// Frozen (the host froze): it serves nothing until unpaused.
    Pause,
    Unpause,
}

/// One Docker container event of a stack container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerEvent {
    /// Unix time in nanoseconds (Docker's `timeNano`).
    pub time_ns: u64,
    pub action: Action,
    /// The node whose supervisor runs it (label `muster.node`).
    pub node: String,
    /// Its stack (label `muster.stack`).
    pub stack: String,
    pub container: String,
}

/// A span in which one node had server containers running; `end` None: still running at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub node: String,
    pub start_ns: u64,
    pub end_ns: Option<u64>,
    /// The span began when a paused container was unpaused (its host thawed).
    pub thawed: bool,
}

/// Per node, the spans in which its server stack had any running container, in time order.
pub fn running_spans(events: &[ContainerEvent]) -> Vec<Running> {
    let mut events: Vec<&ContainerEvent> = events.iter().filter(|e| e.stack == SERVER_STACK).collect();
    events.sort_by_key(|e| e.time_ns);
    let mut running: BTreeMap<&str, (BTreeSet<&str>, u64, bool)> = BTreeMap::new();
    let mut spans = Vec::new();
    for e in events {
        let (set, since, thawed) = running.entry(&e.node).or_default();
        let was = !set.is_empty();
        match e.action {
            Action::Start | Action::Unpause => {
                set.insert(&e.container);
            }
            Action::Die | Action::Stop | Action::Destroy | Action::Pause => {
                set.remove(e.container.as_str());
            }
        }
        match (was, set.is_empty()) {
            (false, false) => {
                *since = e.time_ns;
                *thawed = e.action == Action::Unpause;
            }
            (true, true) => spans.push(Running {
                node: e.node.clone(),
                start_ns: *since,
                end_ns: Some(e.time_ns),
                thawed: *thawed,
            }),
            _ => {}
        }
    }
    for (node, (set, since, thawed)) in running {
        if !set.is_empty() {
            spans.push(Running { node: node.to_string(), start_ns: since, end_ns: None, thawed });
        }
    }
    spans.sort_by_key(|s| s.start_ns);
    spans
}

/// "At most one server stack": reports every pair of different nodes whose running spans
/// overlap, with the overlap. A container that dies at the instant another node's starts is a
/// clean handover. Times are shown relative to the first event.
pub fn at_most_one_server_stack(events: &[ContainerEvent]) -> Verdict {
    let spans = running_spans(events);
    let origin = events.iter().map(|e| e.time_ns).min().unwrap_or(0);
    let rel = |t: u64| secs(t.saturating_sub(origin));
    let mut violations = Vec::new();
    let mut thaws = Vec::new();
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            if a.node == b.node {
                continue;
            }
            let start = a.start_ns.max(b.start_ns);
            let end = match (a.end_ns, b.end_ns) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
            if end.is_some_and(|e| e <= start) {
                continue;
            }
            let until = end.map_or("the end of the record".to_string(), rel);
            let length = end.map_or(String::new(), |e| format!(" ({:.0} ms)", (e - start) as f64 / 1e6));
            let thawed = [a, b].into_iter().find(|s| s.thawed && s.start_ns == start);
            if let (Some(t), Some(e)) = (thawed, end) {
                if e - start <= THAW_GRACE_NS {
                    thaws.push(format!("{} thawed at {}{length}", t.node, rel(start)));
                    continue;
                }
            }
            violations.push(format!(
                "{} and {} both ran server containers from {} to {until}{length}",
                a.node,
                b.node,
                rel(start)
            ));
        }
    }
    let nodes: BTreeSet<&str> = spans.iter().map(|s| s.node.as_str()).collect();
    let mut checked = format!(
        "{} server container event(s), {} running span(s) on {} node(s)",
        events.len(),
        spans.len(),
        nodes.len()
    );
    if !thaws.is_empty() {
        checked.push_str(&format!(
            "; {} overlap(s) right after a frozen host thawed, each within {} ms: {}",
            thaws.len(),
            THAW_GRACE_NS / 1_000_000,
            thaws.join(", ")
        ));
    }
    Verdict::from("at-most-one-server-stack", checked, violations)
}

/// Parses one line of `docker events --format '{{json .}}'`; None for other events.
pub fn parse_event(line: &str) -> Option<ContainerEvent> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("Type").and_then(|t| t.as_str()) != Some("container") {
        return None;
    }
    let action = match v.get("Action")?.as_str()? {
        "start" => Action::Start,
        "die" => Action::Die,
        "stop" => Action::Stop,
        "destroy" => Action::Destroy,
        "pause" => Action::Pause,
        "unpause" => Action::Unpause,
        _ => return None,
    };
    let attrs = v.get("Actor")?.get("Attributes")?;
    Some(ContainerEvent {
        time_ns: v.get("timeNano")?.as_u64()?,
        action,
        node: attrs.get(LABEL_NODE)?.as_str()?.to_string(),
        stack: attrs.get(LABEL_STACK)?.as_str()?.to_string(),
        container: v.get("Actor")?.get("ID")?.as_str()?.to_string(),
    })
}

/// The server-stack container events of `nodes` between two Unix times (seconds), from the
/// Docker daemon's event log.
pub fn read_events(since_unix: f64, until_unix: f64, nodes: &[String]) -> Result<Vec<ContainerEvent>> {
    if until_unix < since_unix {
        bail!("the event window ends ({until_unix}) before it starts ({since_unix})");
    }
    let (since, until) = (format!("{since_unix:.3}"), format!("{until_unix:.3}"));
    let filter = format!("label={LABEL_STACK}={SERVER_STACK}");
    let out = cmd::run(
        "docker",
        &[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "type=container",
            "--filter",
            &filter,
            "--format",
            "{{json .}}",
        ],
        Duration::from_secs(30),
    )
    .context("docker events")?;
    Ok(out.lines().filter_map(parse_event).filter(|e| nodes.contains(&e.node)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(t_ms: u64, action: Action, node: &str, container: &str) -> ContainerEvent {
        ContainerEvent {
            time_ns: t_ms * 1_000_000,
            action,
            node: node.into(),
            stack: SERVER_STACK.into(),
            container: container.into(),
        }
    }

    #[test]
    fn a_clean_handover_between_nodes_passes() {
        // Proves stop-then-start on another node (even at the same instant) is not an overlap.
        let events = [
            e(0, Action::Start, "n1", "a"),
            e(10, Action::Start, "n1", "b"),
            e(500, Action::Die, "n1", "a"),
            e(600, Action::Stop, "n1", "b"),
            e(600, Action::Start, "n2", "c"),
            e(700, Action::Destroy, "n1", "b"),
            e(900, Action::Start, "n2", "d"),
        ];
        let v = at_most_one_server_stack(&events);
        assert!(v.ok, "{v:?}");
        let spans = running_spans(&events);
        assert_eq!(spans.len(), 2, "{spans:?}");
        assert_eq!((spans[0].start_ns, spans[0].end_ns), (0, Some(600_000_000)));
        assert_eq!(spans[1].end_ns, None);
    }

    #[test]
    fn two_nodes_running_server_containers_at_once_are_reported_with_the_overlap() {
        // Proves an overlap of two nodes' server stacks is a violation naming nodes and interval.
        let mut events = vec![
            e(0, Action::Start, "n1", "a"),
            e(400, Action::Start, "n2", "b"),
            e(650, Action::Die, "n1", "a"),
            e(1000, Action::Start, "n3", "c"),
        ];
        // Other stacks never count.
        events.push(ContainerEvent { stack: "web".into(), ..e(100, Action::Start, "n3", "w") });
        let v = at_most_one_server_stack(&events);
        assert!(!v.ok);
        assert_eq!(v.violations.len(), 2, "{v:?}");
        assert_eq!(v.violations[0], "n1 and n2 both ran server containers from 0.400s to 0.650s (250 ms)");
        assert!(
            v.violations[1].starts_with("n2 and n3 both ran server containers from 1.000s to the end"),
            "{v:?}"
        );
    }

    #[test]
    fn a_paused_server_stack_does_not_count_as_running() {
        // Proves a frozen host's stack (paused containers) is not an overlap, and that a stack
        // started again (not thawed) while another node's runs is one.
        let events = [
            e(0, Action::Start, "n1", "a"),
            e(100, Action::Pause, "n1", "a"),
            e(400, Action::Start, "n2", "b"),
            e(800, Action::Die, "n1", "a"),
            e(900, Action::Start, "n1", "a"),
            e(950, Action::Die, "n1", "a"),
        ];
        let v = at_most_one_server_stack(&events);
        assert!(!v.ok);
        assert_eq!(v.violations, vec!["n2 and n1 both ran server containers from 0.900s to 0.950s (50 ms)"]);
        let v = at_most_one_server_stack(&events[..3]);
        assert!(v.ok, "{v:?}");
    }

    #[test]
    fn a_thawed_host_may_overlap_briefly_but_not_longer() {
        // Proves the thaw exception is bounded: the old server's stack, unpaused while another
        // node serves, is tolerated for THAW_GRACE_NS and reported; longer is a violation.
        let events = |die_ms: u64| {
            vec![
                e(0, Action::Start, "n1", "a"),
                e(100, Action::Pause, "n1", "a"),
                e(400, Action::Start, "n2", "b"),
                e(900, Action::Unpause, "n1", "a"),
                e(die_ms, Action::Die, "n1", "a"),
            ]
        };
        let v = at_most_one_server_stack(&events(1_020));
        assert!(v.ok, "{v:?}");
        assert!(v.explanation.contains("n1 thawed at 0.900s (120 ms)"), "{}", v.explanation);
        let v = at_most_one_server_stack(&events(1_500));
        assert!(!v.ok);
        assert_eq!(v.violations, vec!["n2 and n1 both ran server containers from 0.900s to 1.500s (600 ms)"]);
    }

    #[test]
    fn a_docker_events_line_parses_into_a_container_event() {
        // Proves the reader understands Docker's JSON event format and skips other actions.
        let line = r#"{"status":"start","id":"abc","Type":"container","Action":"start","Actor":{"ID":"abc","Attributes":{"muster.node":"n1","muster.stack":"server","image":"muster:dev"}},"scope":"local","time":1,"timeNano":1000000123}"#;
        assert_eq!(
            parse_event(line),
            Some(ContainerEvent {
                time_ns: 1_000_000_123,
                action: Action::Start,
                node: "n1".into(),
                stack: "server".into(),
                container: "abc".into()
            })
        );
        assert_eq!(parse_event(&line.replace(r#""Action":"start""#, r#""Action":"create""#)), None);
    }
}
