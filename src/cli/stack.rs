//! `muster stack status`: what a node's supervisor wants and runs, its last transition with
//! reason and timing, and its hooks, from `GET /v1/stack` on the node's API.

use std::time::Duration;

use anyhow::{anyhow, Context};
use serde_json::Value;

use super::http;
use super::members::target;
use super::services::{print_json, print_table, write_stdout, Conn};

/// `muster stack` flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct StackArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(subcommand)]
    pub command: StackCommand,
}

/// The `muster stack` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum StackCommand {
    /// Show the stack this node wants and runs, and its last transition.
    Status,
}

/// Fetches and prints the supervisor's status.
pub async fn run(args: &StackArgs) -> anyhow::Result<()> {
    let StackCommand::Status = args.command;
    let addr = target(&args.conn.addr);
    let response =
        http::get_with(&addr, "/v1/stack", Duration::from_millis(http::DEADLINE_MS), &args.conn.secure)
            .await
            .with_context(|| format!("cannot reach the node at {addr}"))?;
    if response.status != 200 {
        let text = String::from_utf8_lossy(&response.body).trim().to_string();
        return Err(anyhow!("the node at {addr} answered {}: {text}", response.status));
    }
    let status: Value = serde_json::from_slice(&response.body)
        .with_context(|| format!("the node at {addr} sent an unreadable stack status"))?;
    if args.conn.json {
        return print_json(&status);
    }
    print_table(&summary_rows(&status))?;
    let containers = status.pointer("/observed/containers").and_then(Value::as_array);
    if let Some(containers) = containers.filter(|c| !c.is_empty()) {
        write_stdout("\n")?;
        let mut rows = vec![["SERVICE", "STACK", "EPOCH", "STATE", "CONTAINER"].map(String::from).to_vec()];
        for c in containers {
            let field = |k: &str| c.get(k).map(text).unwrap_or_default();
            rows.push(vec![field("service"), field("stack"), field("epoch"), field("state"), field("name")]);
        }
        print_table(&rows)?;
    }
    let hooks = status.get("hooks").and_then(Value::as_array);
    if let Some(hooks) = hooks.filter(|h| !h.is_empty()) {
        write_stdout("\n")?;
        let mut rows = vec![["HOOK", "SCRIPT", "OUTCOME", "TOOK"].map(String::from).to_vec()];
        for h in hooks {
            let field = |k: &str| h.get(k).map(text).unwrap_or_default();
            rows.push(vec![
                field("hook"),
                field("script"),
                field("outcome"),
                format!("{} ms", field("duration_ms")),
            ]);
        }
        print_table(&rows)?;
    }
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn want_text(w: Option<&Value>) -> String {
    let Some(w) = w else { return "-".into() };
    let stack = w.get("stack").map(text).unwrap_or_else(|| "-".into());
    if stack == "-" {
        return "none".into();
    }
    let epoch = w.get("epoch").map(text).unwrap_or_default();
    let server = w.pointer("/server/node").map(text).unwrap_or_else(|| "-".into());
    let addr = w.pointer("/server/addr").map(text).unwrap_or_default();
    format!("{stack} (epoch {epoch}, server {server} at {addr})")
}

fn summary_rows(s: &Value) -> Vec<Vec<String>> {
    let mut rows = vec![
        vec!["WANTS".to_string(), want_text(s.get("want"))],
        vec!["STACK FILE".into(), s.get("stack_file").map(text).unwrap_or_else(|| "-".into())],
    ];
    if let Some(d) = s.get("docker").map(text) {
        rows.push(vec!["DOCKER".into(), d]);
    }
    if let Some(t) = s.get("last_transition").filter(|t| !t.is_null()) {
        let at_ms = t.get("at_unix_ms").and_then(Value::as_i64).unwrap_or(0);
        let at = crate::logging::format_rfc3339(at_ms, crate::logging::Precision::Millis);
        rows.push(vec![
            "LAST TRANSITION".into(),
            format!("{} → {} at {at}", want_text(t.get("from")), want_text(t.get("to"))),
        ]);
        rows.push(vec!["REASON".into(), t.get("reason").map(text).unwrap_or_default()]);
    }
    if let Some(e) = s.get("last_error").filter(|e| !e.is_null()) {
        rows.push(vec!["LAST ERROR".into(), text(e)]);
    }
    rows
}
