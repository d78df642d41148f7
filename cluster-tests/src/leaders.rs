//! The leadership poller: every [`Limits::interval`] it asks every node its `Cluster/Status`
//! at once, each call with a short deadline so a paused or partitioned node cannot hold up the
//! others, and records what each node believed: the leader's gossip name and the raft term, or
//! why it did not answer. The samples go to `leaders.jsonl` and the leadership lanes of
//! [`crate::timeline`]. Uses `cluster` (for the nodes' channels) and `history::RunClock`;
//! nothing imports it but the tests and the report.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use muster::api::grpc::pb::cluster::{cluster_client::ClusterClient, StatusRequest};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::cluster::Cluster;
use crate::history::{code_name, RunClock};

/// One line of `leaders.jsonl`: what one node said at one poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Nanoseconds since the run started, when the answer (or the deadline) came.
    pub t_ns: u64,
    /// Gossip name of the node asked.
    pub node: String,
    /// The leader the node knew (None: it answered but knew none, or it did not answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The raft term the node reported (None when it did not answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    /// Why the node gave no answer (deadline, refused connection, gRPC error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The poller's pace and bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time between the starts of two polls of every node.
    pub interval: Duration,
    /// How long one node's Status may take before it counts as no answer.
    pub deadline: Duration,
    /// Samples kept at most; the poller stops when it has this many.
    pub samples_max: usize,
}

impl Limits {
    /// For a run: four looks a second (raft elections here take a second or more), a deadline
    /// well under the 2 s of [`Cluster::status`] so one frozen node costs a poll 400 ms, and
    /// room for well over an hour of three nodes (100,000 × ~120 bytes of JSONL, ~12 MB).
    pub const DEFAULT: Limits = Limits {
        interval: Duration::from_millis(250),
        deadline: Duration::from_millis(400),
        samples_max: 100_000,
    };
}

/// What an answering node said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The leader's gossip name (None: no leader known).
    pub leader: Option<String>,
    pub term: u64,
}

/// Polls every node of `cluster` with [`Limits::DEFAULT`] until `stop` is set (checked before
/// every poll) or the sample cap is reached; returns the samples in time order.
pub async fn run(cluster: Arc<Cluster>, clock: RunClock, stop: Arc<AtomicBool>) -> Vec<Sample> {
    let names: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    // One lazily connecting channel per node for the whole run; it reconnects by itself.
    let clients: Vec<Result<ClusterClient<_>, String>> = (0..names.len())
        .map(|i| cluster.channel(i).map(ClusterClient::new).map_err(|e| format!("no channel: {e:#}")))
        .collect();
    let probe = move |i: usize| {
        let client = clients.get(i).cloned().unwrap_or_else(|| Err(format!("no node {i}")));
        async move {
            let mut client = client?;
            let status = client
                .status(StatusRequest {})
                .await
                .map_err(|s| format!("{}: {}", code_name(s.code()), s.message()))?
                .into_inner();
            let leader = status.leader.map(|l| l.name).filter(|n| !n.is_empty());
            Ok(Answer { leader, term: status.term })
        }
    };
    poll(names, probe, clock, stop, Limits::DEFAULT).await
}

/// The poll loop over any `probe` (node index → its answer), so it can be tested without a
/// cluster. Each round asks every node concurrently and waits at most `limits.deadline`.
async fn poll<P, F>(
    names: Vec<String>,
    probe: P,
    clock: RunClock,
    stop: Arc<AtomicBool>,
    limits: Limits,
) -> Vec<Sample>
where
    P: Fn(usize) -> F,
    F: Future<Output = Result<Answer, String>> + Send + 'static,
{
    let mut samples = Vec::new();
    if names.is_empty() {
        return samples;
    }
    let mut ticker = tokio::time::interval(limits.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Every round adds at least one sample unless a poll task panicked, so this bounds the loop.
    for _ in 0..limits.samples_max {
        ticker.tick().await;
        if stop.load(Ordering::Relaxed) || samples.len() >= limits.samples_max {
            break;
        }
        let mut round = JoinSet::new();
        for i in 0..names.len() {
            let asked = probe(i);
            let deadline = limits.deadline;
            round.spawn(async move {
                let answer = match tokio::time::timeout(deadline, asked).await {
                    Ok(answer) => answer,
                    Err(_) => Err(format!("no answer within {deadline:?}")),
                };
                (clock.now_ns(), i, answer)
            });
        }
        let mut got = Vec::with_capacity(names.len());
        while let Some(joined) = round.join_next().await {
            match joined {
                Ok(one) => got.push(one),
                Err(e) => eprintln!("leaders: a poll task failed: {e}"),
            }
        }
        got.sort_by_key(|(t_ns, i, _)| (*t_ns, *i));
        for (t_ns, i, answer) in got {
            if samples.len() >= limits.samples_max {
                break;
            }
            samples.push(sample(t_ns, &names[i], answer));
        }
    }
    debug_assert!(samples.len() <= limits.samples_max);
    debug_assert!(samples.windows(2).all(|w| w[0].t_ns <= w[1].t_ns));
    samples
}

fn sample(t_ns: u64, node: &str, answer: Result<Answer, String>) -> Sample {
    match answer {
        Ok(a) => Sample { t_ns, node: node.into(), leader: a.leader, term: Some(a.term), error: None },
        Err(e) => Sample { t_ns, node: node.into(), leader: None, term: None, error: Some(e) },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn names() -> Vec<String> {
        vec!["n1".into(), "n2".into(), "n3".into()]
    }

    const FAST: Limits =
        Limits { interval: Duration::from_millis(10), deadline: Duration::from_millis(50), samples_max: 30 };

    #[tokio::test]
    async fn a_silent_node_costs_one_deadline_and_the_cap_ends_the_poll() {
        // Proves that a node that never answers is recorded as such each round while the others' answers are still recorded, and that the sample cap stops the poller.
        let probe = |i: usize| async move {
            match i {
                0 => Ok(Answer { leader: Some("n1".into()), term: 2 }),
                1 => std::future::pending().await,
                _ => Err("UNAVAILABLE: refused".to_string()),
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let samples = poll(names(), probe, RunClock::start(), stop, FAST).await;
        assert_eq!(samples.len(), 30);
        for (node, want) in [("n1", 10), ("n2", 10), ("n3", 10)] {
            assert_eq!(samples.iter().filter(|s| s.node == node).count(), want, "{node}");
        }
        for s in &samples {
            match s.node.as_str() {
                "n1" => assert_eq!((s.leader.as_deref(), s.term, &s.error), (Some("n1"), Some(2), &None)),
                "n2" => assert!(s.error.as_deref().is_some_and(|e| e.contains("no answer within")), "{s:?}"),
                _ => assert_eq!((s.term, s.error.as_deref()), (None, Some("UNAVAILABLE: refused"))),
            }
        }
        assert!(samples.windows(2).all(|w| w[0].t_ns <= w[1].t_ns));
    }

    #[tokio::test]
    async fn the_stop_flag_ends_the_poll_after_the_current_round() {
        // Proves the stop flag is honoured before the next round: set during round 3, nothing after it is asked.
        let stop = Arc::new(AtomicBool::new(false));
        let asked = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (stop.clone(), asked.clone());
        let probe = move |_: usize| {
            if count.fetch_add(1, Ordering::Relaxed) + 1 == 9 {
                flag.store(true, Ordering::Relaxed);
            }
            async { Ok(Answer { leader: None, term: 1 }) }
        };
        let limits = Limits { samples_max: 1000, ..FAST };
        let samples = poll(names(), probe, RunClock::start(), stop, limits).await;
        assert_eq!(samples.len(), 9);
        assert_eq!(asked.load(Ordering::Relaxed), 9);
        assert!(samples.iter().all(|s| s.leader.is_none() && s.term == Some(1)));
    }

    #[test]
    fn a_sample_round_trips_through_one_json_line_without_empty_fields() {
        // Proves the leaders.jsonl shape: absent fields are left out and the line reads back.
        let s = Sample { t_ns: 5, node: "n2".into(), leader: Some("n1".into()), term: Some(3), error: None };
        let line = serde_json::to_string(&s).unwrap();
        assert_eq!(line, r#"{"t_ns":5,"node":"n2","leader":"n1","term":3}"#);
        assert_eq!(serde_json::from_str::<Sample>(&line).unwrap(), s);
    }
}
