//! `muster status` and `muster leader transfer`: the node's raft view and leadership control
//! over its gRPC Cluster API, with the connection, deadline and error handling of
//! [`super::services`].

use anyhow::anyhow;
use serde_json::{json, Value};

use super::services::{call, connect, print_json, print_table, request, write_stdout, Conn};
use crate::api::grpc::pb::cluster as pb;
use crate::api::grpc::pb::cluster::cluster_client::ClusterClient;

/// `muster status` flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub conn: Conn,
}

/// `muster leader` flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct LeaderArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(subcommand)]
    pub command: LeaderCommand,
}

/// The `muster leader` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum LeaderCommand {
    /// Ask the leader to hand leadership to another voter (call it on the leader).
    Transfer {
        /// Raft id (16 hex digits, the `raft_id` tag) of the voter to hand over to; default:
        /// any other voter gossip shows alive.
        #[arg(long, value_name = "RAFT_ID_HEX")]
        to: Option<String>,
    },
}

/// Prints the node's raft view.
pub async fn run_status(args: &StatusArgs) -> anyhow::Result<()> {
    let mut client = ClusterClient::new(connect(&args.conn.addr, &args.conn.secure).await?);
    let s = call(client.status(request(pb::StatusRequest {}))).await?;
    if args.conn.json {
        return print_json(&json!({
            "node_name": s.node_name,
            "node_id": format!("{:016x}", s.node_id),
            "mode": mode_name(s.mode),
            "leader": s.leader.as_ref().map(member_json),
            "term": s.term,
            "voters": s.voters.iter().map(member_json).collect::<Vec<_>>(),
            "learners": s.learners.iter().map(member_json).collect::<Vec<_>>(),
        }));
    }
    let leader_id = s.leader.as_ref().map(|l| l.id);
    let leader = s.leader.as_ref().map(describe).unwrap_or_else(|| "(none known)".into());
    let rows = vec![
        vec!["NODE".to_string(), format!("{} ({:016x})", s.node_name, s.node_id)],
        vec!["MODE".into(), mode_name(s.mode)],
        vec!["LEADER".into(), leader],
        vec!["TERM".into(), s.term.to_string()],
        vec!["VOTERS".into(), s.voters.len().to_string()],
        vec!["LEARNERS".into(), s.learners.len().to_string()],
    ];
    print_table(&rows)?;
    write_stdout("\n")?;
    let mut rows = vec![["NAME", "RAFT ID", "ADDRESS", "ROLE"].iter().map(|h| h.to_string()).collect()];
    let members = s.voters.iter().map(|m| (m, "voter")).chain(s.learners.iter().map(|m| (m, "learner")));
    for (m, role) in members {
        let role = if Some(m.id) == leader_id { format!("{role},leader") } else { role.to_string() };
        rows.push(vec![or_unknown(&m.name), m.id_hex.clone(), or_unknown(&m.address), role]);
    }
    print_table(&rows)
}

/// Asks for a leadership transfer and prints the leader after it.
pub async fn run_leader(args: &LeaderArgs) -> anyhow::Result<()> {
    let LeaderCommand::Transfer { to } = &args.command;
    let target_id = to.as_deref().map(parse_raft_id).transpose()?;
    let mut client = ClusterClient::new(connect(&args.conn.addr, &args.conn.secure).await?);
    let resp = call(client.transfer_leadership(request(pb::TransferLeadershipRequest { target_id }))).await?;
    if args.conn.json {
        return print_json(&json!({ "leader": resp.leader.as_ref().map(member_json) }));
    }
    let leader = resp.leader.as_ref().map(describe).unwrap_or_else(|| "(none known)".into());
    print_table(&[vec!["LEADER".to_string(), leader]])
}

/// A raft id as 16 hex digits (an optional `0x` prefix is allowed).
fn parse_raft_id(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let hex = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    u64::from_str_radix(hex, 16)
        .map_err(|e| anyhow!("invalid value for --to: {text:?} is not a hex raft id ({e})"))
}

fn mode_name(mode: i32) -> String {
    match pb::Mode::try_from(mode).unwrap_or(pb::Mode::Unspecified) {
        pb::Mode::Server => "server".into(),
        pb::Mode::Proxy => "proxy".into(),
        pb::Mode::Unspecified => "unknown".into(),
    }
}

/// `name (id_hex) address`, leaving out what is unknown.
fn describe(m: &pb::RaftMember) -> String {
    let mut parts = Vec::new();
    if !m.name.is_empty() {
        parts.push(m.name.clone());
    }
    parts.push(format!("({})", m.id_hex));
    if !m.address.is_empty() {
        parts.push(m.address.clone());
    }
    parts.join(" ")
}

fn or_unknown(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

fn member_json(m: &pb::RaftMember) -> Value {
    json!({"id": m.id_hex, "name": m.name, "address": m.address})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_raft_ids_parse_as_hex() {
        // Proves --to takes the gossip tag's hex form, with or without 0x, and rejects junk.
        assert_eq!(parse_raft_id("00000000000000ff").unwrap(), 255);
        assert_eq!(parse_raft_id("0xFF").unwrap(), 255);
        assert!(parse_raft_id("xyz").is_err());
        let m = pb::RaftMember { id: 1, id_hex: "01".into(), name: "a".into(), address: String::new() };
        assert_eq!(describe(&m), "a (01)");
    }
}
