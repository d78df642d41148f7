//! `muster drill failover`: an operator's failover drill on a live cluster. Moves leadership to
//! another voter (or, with `--kill-leader`, crashes the leader: test clusters whose nodes run
//! with `--allow-crash-drill`) and reports, step by step with times, until the new server's
//! stack has converged and every other live node's proxy stack points at it.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use super::http;
use super::members::target;
use super::secure::Secure;
use super::services::{call, connect, print_json, print_table, request, Conn};
use crate::api::grpc::pb::cluster as pb;
use crate::api::grpc::pb::cluster::cluster_client::ClusterClient;

/// How often the drill looks again.
const POLL: Duration = Duration::from_millis(200);

/// `muster drill` flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct DrillArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(subcommand)]
    pub command: DrillCommand,
}

/// The drills.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum DrillCommand {
    /// Move leadership to another voter and time the stack transition on every node.
    Failover {
        /// Give up after this many seconds (1–3600).
        #[arg(long, default_value_t = 120, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
        /// Crash the leader instead of asking it to hand over (its nodes must run with
        /// --allow-crash-drill; for test clusters).
        #[arg(long)]
        kill_leader: bool,
    },
}

/// One step of the drill and when it was reached, since the hand-over was asked for.
struct Step {
    what: String,
    after: Duration,
}

/// Runs the drill and prints its steps.
pub async fn run(args: &DrillArgs) -> anyhow::Result<()> {
    let DrillCommand::Failover { timeout, kill_leader } = args.command;
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let status = status_of(&args.conn.addr, &args.conn.secure).await?;
    let old =
        status.leader.clone().ok_or_else(|| anyhow!("the node at {} knows no leader", args.conn.addr))?;
    if status.voters.len() < 2 {
        bail!("the cluster has {} voter(s); a failover needs at least two", status.voters.len());
    }
    let nodes: Vec<pb::RaftMember> = status.voters.iter().chain(status.learners.iter()).cloned().collect();
    let start = Instant::now();
    let mut steps = Vec::new();
    let mut leader_client = ClusterClient::new(connect(&old.address, &args.conn.secure).await?);
    if kill_leader {
        let crashed = call(leader_client.crash(request(pb::CrashRequest {})))
            .await
            .with_context(|| format!("the leader {} refused to crash", old.name))?;
        steps.push(Step {
            what: format!("crashed {} (its pid {} ends)", old.name, crashed.pid),
            after: start.elapsed(),
        });
    } else {
        call(leader_client.transfer_leadership(request(pb::TransferLeadershipRequest { target_id: None })))
            .await
            .with_context(|| format!("the leader {} refused the hand-over", old.name))?;
        steps.push(Step {
            what: format!("asked {} to hand leadership over", old.name),
            after: start.elapsed(),
        });
    }
    // The nodes that can answer from now on (a crashed leader cannot).
    let live: Vec<&pb::RaftMember> = nodes.iter().filter(|n| !kill_leader || n.id != old.id).collect();

    let (new, term) = wait(deadline, "a new leader", || async {
        for n in &live {
            if let Ok(s) = status_of(&n.address, &args.conn.secure).await {
                if let Some(l) = s.leader.filter(|l| l.id != old.id) {
                    return Some((l, s.term));
                }
            }
        }
        None
    })
    .await?;
    steps.push(Step { what: format!("{} leads (term {term})", new.name), after: start.elapsed() });

    wait(deadline, "the new server's stack", || async {
        let s = stack_of(&new.address, &args.conn.secure).await.ok()?;
        let serving = s.pointer("/want/stack")?.as_str()? == "server";
        let converged = s.pointer("/observed/converged").and_then(Value::as_bool).unwrap_or(true);
        (serving && converged).then_some(())
    })
    .await?;
    steps.push(Step { what: format!("{}'s server stack runs", new.name), after: start.elapsed() });

    for node in live.iter().filter(|n| n.id != new.id) {
        wait(deadline, &format!("{}'s proxy stack pointed at {}", node.name, new.name), || async {
            let s = stack_of(&node.address, &args.conn.secure).await.ok()?;
            let pointed = s.pointer("/want/stack")?.as_str()? == "proxy"
                && s.pointer("/want/server/node")?.as_str()? == new.name;
            let converged = s.pointer("/observed/converged").and_then(Value::as_bool).unwrap_or(true);
            (pointed && converged).then_some(())
        })
        .await?;
        steps.push(Step {
            what: format!("{}'s proxy stack points at {}", node.name, new.name),
            after: start.elapsed(),
        });
    }

    if args.conn.json {
        let list: Vec<Value> =
            steps.iter().map(|s| json!({"step": s.what, "after_ms": s.after.as_millis() as u64})).collect();
        return print_json(&json!({"from": old.name, "to": new.name, "steps": list}));
    }
    let mut rows = vec![vec!["AFTER".to_string(), "STEP".to_string()]];
    for s in &steps {
        rows.push(vec![format!("{:.2} s", s.after.as_secs_f64()), s.what.clone()]);
    }
    print_table(&rows)
}

async fn status_of(addr: &str, secure: &Secure) -> anyhow::Result<pb::StatusResponse> {
    let mut client = ClusterClient::new(connect(addr, secure).await?);
    call(client.status(request(pb::StatusRequest {}))).await
}

async fn stack_of(addr: &str, secure: &Secure) -> anyhow::Result<Value> {
    let addr = target(addr);
    let r = http::get_with(&addr, "/v1/stack", Duration::from_millis(http::DEADLINE_MS), secure).await?;
    if r.status != 200 {
        bail!("{addr} answered {} to /v1/stack", r.status);
    }
    Ok(serde_json::from_slice(&r.body)?)
}

/// Polls `f` until it gives a value, or fails at `deadline` naming `what`.
async fn wait<T, F, Fut>(deadline: Instant, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("gave up waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}
