//! Faults and their timeline. Partitions are iptables rules in a chain of our own
//! (`MUSTER_NEMESIS`, filter table; the nat table is never touched) inside each node's network
//! namespace, entered from the host with `nsenter -t PID -n`; the image has no iptables of its
//! own. Crashes and freezes go through [`Cluster`]. Every fault's start and heal is recorded
//! as a [`Event`] on the run clock. Uses `cluster` and `history::RunClock`; nothing imports it
//! but the tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::cmd;
use crate::history::RunClock;

/// Our chain in each node's filter table.
pub const CHAIN: &str = "MUSTER_NEMESIS";
/// One nsenter+iptables call.
const IPTABLES_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether `fault` is a network fault, all of which one `partition` heal ends (it flushes our
/// chain everywhere).
pub fn is_partition(fault: &str) -> bool {
    matches!(fault, "isolate" | "split" | "bridge" | "one-way" | "loss" | "partition")
}

/// Whether a fault began or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Start,
    Heal,
}

/// One line of `nemesis.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Nanoseconds since the run started, when the action finished.
    pub t_ns: u64,
    pub phase: Phase,
    /// `isolate`, `split`, `bridge`, `one-way`, `loss`, `partition` (the heal of those),
    /// `kill`, `pause`, `freeze`; and the one-event (heal-only) `restart`, `join`, `leave`.
    pub fault: String,
    /// Gossip names of the nodes acted on.
    pub nodes: Vec<String>,
    /// Free text: the groups of a split, an error.
    pub detail: String,
    /// False when the action failed (the error is in `detail`).
    pub ok: bool,
}

/// Injects faults into one cluster and keeps the timeline.
pub struct Nemesis {
    cluster: Arc<Cluster>,
    clock: RunClock,
    timeline: Mutex<Vec<Event>>,
}

impl Nemesis {
    pub fn new(cluster: Arc<Cluster>, clock: RunClock) -> Nemesis {
        Nemesis { cluster, clock, timeline: Mutex::new(Vec::new()) }
    }

    /// The events so far, in order.
    pub fn timeline(&self) -> Vec<Event> {
        self.timeline.lock().map(|t| t.clone()).unwrap_or_default()
    }

    fn names(&self, nodes: &[usize]) -> Vec<String> {
        nodes.iter().filter_map(|&i| self.cluster.nodes.get(i).map(|n| n.name.clone())).collect()
    }

    fn record(&self, phase: Phase, fault: &str, nodes: &[usize], detail: String, res: &Result<()>) {
        let (ok, detail) = match res {
            Ok(()) => (true, detail),
            Err(e) => (false, format!("{detail} error: {e:#}")),
        };
        let event = Event {
            t_ns: self.clock.now_ns(),
            phase,
            fault: fault.into(),
            nodes: self.names(nodes),
            detail,
            ok,
        };
        eprintln!(
            "nemesis {:>7.3}s {:?} {} {:?} {}",
            event.t_ns as f64 / 1e9,
            event.phase,
            event.fault,
            event.nodes,
            event.detail
        );
        if let Ok(mut t) = self.timeline.lock() {
            t.push(event);
        }
    }

    /// `iptables ARGS` inside node `i`'s network namespace.
    fn iptables(&self, i: usize, args: &[&str]) -> Result<cmd::Output> {
        let pid = self.cluster.pid(i)?.to_string();
        let mut all = vec!["-t", &pid, "-n", "iptables", "-w"];
        all.extend_from_slice(args);
        cmd::run_raw("nsenter", &all, IPTABLES_TIMEOUT)
    }

    fn iptables_ok(&self, i: usize, args: &[&str]) -> Result<()> {
        let out = self.iptables(i, args)?;
        if !out.success {
            bail!("iptables {} in {}: {}", args.join(" "), self.cluster.nodes[i].name, out.stderr.trim());
        }
        Ok(())
    }

    /// Creates our chain in node `i` and jumps to it first from INPUT and OUTPUT (idempotent;
    /// a restarted container has a fresh namespace without them).
    fn ensure_chain(&self, i: usize) -> Result<()> {
        let listed = self.iptables(i, &["-S", CHAIN])?;
        if !listed.success {
            self.iptables_ok(i, &["-N", CHAIN])?;
        }
        for hook in ["INPUT", "OUTPUT"] {
            if !self.iptables(i, &["-C", hook, "-j", CHAIN])?.success {
                self.iptables_ok(i, &["-I", hook, "1", "-j", CHAIN])?;
            }
        }
        Ok(())
    }

    /// Drops, inside node `i`, every packet from or to the addresses of `peers`.
    fn cut_off(&self, i: usize, peers: &[usize]) -> Result<()> {
        self.ensure_chain(i)?;
        for &p in peers {
            let ip = self.cluster.nodes[p].ip.clone();
            self.iptables_ok(i, &["-A", CHAIN, "-s", &ip, "-j", "DROP"])?;
            self.iptables_ok(i, &["-A", CHAIN, "-d", &ip, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Partitions the nodes into `groups`: nodes talk only within their group (clients on the
    /// host still reach every node). Nodes in no group are left alone.
    pub fn split(&self, groups: &[Vec<usize>]) -> Result<()> {
        let res = (|| {
            for (g, group) in groups.iter().enumerate() {
                let others: Vec<usize> =
                    groups.iter().enumerate().filter(|(h, _)| *h != g).flat_map(|(_, o)| o.clone()).collect();
                for &i in group {
                    self.cut_off(i, &others)?;
                }
            }
            Ok(())
        })();
        let all: Vec<usize> = groups.iter().flatten().copied().collect();
        let detail = groups.iter().map(|g| self.names(g).join(",")).collect::<Vec<_>>().join(" | ");
        self.record(Phase::Start, "split", &all, detail, &res);
        res
    }

    /// Cuts node `i` off from every other member.
    pub fn isolate(&self, i: usize) -> Result<()> {
        let others: Vec<usize> = self.cluster.members().into_iter().filter(|&j| j != i).collect();
        let res = self.cut_off(i, &others).and_then(|()| {
            // Both sides drop, so the partition holds even if one side's rules were lost.
            for &o in &others {
                self.cut_off(o, &[i])?;
            }
            Ok(())
        });
        self.record(Phase::Start, "isolate", &[i], String::new(), &res);
        res
    }

    /// A bridge: the nodes split into two halves that cannot talk to each other, except through
    /// `bridge`, which sees both (the classic "majorities overlap in one node" partition).
    pub fn bridge(&self, bridge: usize) -> Result<()> {
        let others: Vec<usize> = self.cluster.members().into_iter().filter(|&j| j != bridge).collect();
        let (left, right) = others.split_at(others.len() / 2);
        let res = (|| {
            for &a in left {
                self.cut_off(a, right)?;
            }
            for &b in right {
                self.cut_off(b, left)?;
            }
            Ok(())
        })();
        let detail = format!(
            "{} | {} | {}",
            self.names(left).join(","),
            self.names(&[bridge])[0],
            self.names(right).join(",")
        );
        self.record(Phase::Start, "bridge", &others, detail, &res);
        res
    }

    /// One-way: node `i` hears nothing from the other members, but what it sends still
    /// arrives (its INPUT drops, its OUTPUT does not).
    pub fn deafen(&self, i: usize) -> Result<()> {
        let others: Vec<usize> = self.cluster.members().into_iter().filter(|&j| j != i).collect();
        let res = (|| {
            self.ensure_chain(i)?;
            for &p in &others {
                let ip = self.cluster.nodes[p].ip.clone();
                self.iptables_ok(i, &["-A", CHAIN, "-s", &ip, "-j", "DROP"])?;
            }
            Ok(())
        })();
        self.record(Phase::Start, "one-way", &[i], "hears no member; is heard".into(), &res);
        res
    }

    /// Random loss: every member drops each packet from another member with probability
    /// `percent`/100 (iptables `statistic`).
    pub fn lossy(&self, percent: u32) -> Result<()> {
        let members = self.cluster.members();
        let probability = format!("{:.2}", f64::from(percent.min(100)) / 100.0);
        let res = (|| {
            for &i in &members {
                self.ensure_chain(i)?;
                for &p in members.iter().filter(|&&p| p != i) {
                    let ip = self.cluster.nodes[p].ip.clone();
                    self.iptables_ok(
                        i,
                        &[
                            "-A",
                            CHAIN,
                            "-s",
                            &ip,
                            "-m",
                            "statistic",
                            "--mode",
                            "random",
                            "--probability",
                            &probability,
                            "-j",
                            "DROP",
                        ],
                    )?;
                }
            }
            Ok(())
        })();
        self.record(Phase::Start, "loss", &members, format!("{percent}% of packets between members"), &res);
        res
    }

    /// Flushes our chain on every node whose namespace exists. A node that is not running has
    /// no rules to flush; its error is noted but does not fail the heal.
    pub fn heal(&self) -> Result<()> {
        let mut notes = Vec::new();
        let mut failed = None;
        for i in 0..self.cluster.nodes.len() {
            match self.iptables(i, &["-F", CHAIN]) {
                Ok(out) if out.success => {}
                // No chain: nothing was cut on this node.
                Ok(_) => {}
                Err(e) => {
                    if self.cluster.pid(i).is_ok() {
                        failed =
                            Some(e.context(format!("flushing {CHAIN} in {}", self.cluster.nodes[i].name)));
                    } else {
                        notes.push(format!("{} not running", self.cluster.nodes[i].name));
                    }
                }
            }
        }
        let res = match failed {
            Some(e) => Err(e),
            None => Ok(()),
        };
        let all: Vec<usize> = (0..self.cluster.nodes.len()).collect();
        self.record(Phase::Heal, "partition", &all, notes.join("; "), &res);
        res
    }

    /// The end of a run: every partition healed and every member running again (started,
    /// unpaused, continued), whatever the schedule left behind.
    pub fn heal_all(&self) -> Result<()> {
        let healed = self.heal();
        let mut done = Vec::new();
        let mut failed = None;
        for i in self.cluster.members() {
            match self.cluster.revive(i) {
                Ok(Some(what)) => done.push(format!("{} {what}", self.cluster.nodes[i].name)),
                Ok(None) => {}
                Err(e) => failed = Some(e.context(format!("reviving {}", self.cluster.nodes[i].name))),
            }
        }
        let res = match failed {
            Some(e) => Err(e),
            None => Ok(()),
        };
        if !done.is_empty() || res.is_err() {
            self.record(Phase::Heal, "revive", &self.cluster.members(), done.join("; "), &res);
        }
        healed.and(res)
    }

    /// SIGKILL node `i`.
    pub fn kill(&self, i: usize) -> Result<()> {
        let res = self.cluster.kill(i);
        self.record(Phase::Start, "kill", &[i], String::new(), &res);
        res
    }

    /// Starts node `i` again after a kill.
    pub fn restart_killed(&self, i: usize) -> Result<()> {
        let res = self.cluster.start_node(i);
        self.record(Phase::Heal, "kill", &[i], "started again".into(), &res);
        res
    }

    /// Freezes node `i`.
    pub fn pause(&self, i: usize) -> Result<()> {
        let res = self.cluster.pause(i);
        self.record(Phase::Start, "pause", &[i], String::new(), &res);
        res
    }

    /// Thaws node `i`.
    pub fn unpause(&self, i: usize) -> Result<()> {
        let res = self.cluster.unpause(i);
        self.record(Phase::Heal, "pause", &[i], String::new(), &res);
        res
    }

    /// SIGSTOP to node `i`'s muster process alone (its watchdog and stack run on).
    pub fn freeze(&self, i: usize) -> Result<()> {
        let res = self.cluster.freeze(i);
        self.record(Phase::Start, "freeze", &[i], "muster process stopped".into(), &res);
        res
    }

    /// SIGCONT to node `i`'s muster process.
    pub fn thaw(&self, i: usize) -> Result<()> {
        let res = self.cluster.thaw(i);
        self.record(Phase::Heal, "freeze", &[i], String::new(), &res);
        res
    }

    /// Membership change: spare node `i` starts and joins (one event).
    pub fn grow(&self, i: usize) -> Result<()> {
        let res = self.cluster.start_spare(i);
        self.record(Phase::Heal, "join", &[i], "a spare node joins".into(), &res);
        res
    }

    /// Membership change: node `i` stops gracefully and leaves for good (one event, recorded
    /// once it has stopped).
    pub fn shrink(&self, i: usize) -> Result<()> {
        let res = self.cluster.remove(i);
        self.record(Phase::Heal, "leave", &[i], "stopped gracefully, gone for good".into(), &res);
        res
    }

    /// `docker restart` of node `i` (graceful stop, then start), one event for both halves.
    pub fn restart(&self, i: usize) -> Result<()> {
        let res = self.cluster.restart(i);
        self.record(Phase::Heal, "restart", &[i], "stopped and started".into(), &res);
        res.context("restart")
    }
}
