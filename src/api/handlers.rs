//! The route handlers: read the membership view, shape the seed's JSON. No side effects.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Serialize;

use super::{ApiError, ApiState, MemberFilter, HTTP_PORT_TAG};
use crate::logging::{format_rfc3339, unix_ms_now, Precision};
use crate::membership::{counts, MemberInfo, MemberStatus, Mode, RaftClusterInfo};

#[derive(Debug, Serialize)]
pub(super) struct Health {
    status: &'static str,
    node: String,
    cluster: String,
    version: &'static str,
    uptime_seconds: u64,
    members: MemberCounts,
    raft: RaftHealth,
}

/// This node's view of raft, for `/health`.
#[derive(Debug, Serialize)]
struct RaftHealth {
    term: u64,
    /// The leader's member name, when one is known.
    leader: Option<String>,
    /// This node's role: server, proxy or unknown.
    role: crate::consensus::leadership::Role,
    voters: usize,
    learners: usize,
}

#[derive(Debug, Serialize)]
struct MemberCounts {
    alive: usize,
    failed: usize,
    left: usize,
    leaving: usize,
    total: usize,
}

/// `GET /health`: always 200 while the process serves; the counts say how healthy the view is.
pub(super) async fn health(State(state): State<Arc<ApiState>>) -> Json<Health> {
    let members = state.members_now();
    let by_status = counts(&members);
    let count = |s| by_status.get(&s).copied().unwrap_or(0);
    let lead = state.leadership.borrow().clone();
    Json(Health {
        raft: RaftHealth {
            term: lead.term,
            leader: lead.leader_name.clone(),
            role: lead.role,
            voters: lead.voters.len(),
            learners: lead.learners.len(),
        },
        status: "ok",
        node: state.node_name.clone(),
        cluster: state.cluster.clone(),
        version: state.version,
        uptime_seconds: state.started.elapsed().as_secs(),
        members: MemberCounts {
            alive: count(MemberStatus::Alive),
            failed: count(MemberStatus::Failed),
            left: count(MemberStatus::Left),
            leaving: count(MemberStatus::Leaving),
            total: members.len(),
        },
    })
}

/// The seed's `/discovery` answer.
#[derive(Debug, Serialize)]
pub(super) struct Discovery {
    node_id: String,
    mode: Mode,
    discovered_servers: Vec<DiscoveredServer>,
    /// This node's raft cluster, other raft clusters in gossip (they merge), past merges.
    raft_cluster: RaftClusterInfo,
    /// The stack this node wants and runs, and its last transition (absent without a
    /// supervisor).
    #[serde(skip_serializing_if = "Option::is_none")]
    stack: Option<crate::supervisor::supervise::SupervisorStatus>,
}

#[derive(Debug, Serialize)]
struct DiscoveredServer {
    host: IpAddr,
    port: u16,
    node_id: String,
    mode: Mode,
    /// RFC 3339 UTC.
    last_seen: String,
}

/// `GET /discovery`: every alive member but this node, with its API port from its
/// `http_port` tag (else 9999). This node's own mode stays `unknown` until leadership exists.
pub(super) async fn discovery(State(state): State<Arc<ApiState>>) -> Json<Discovery> {
    let members = state.members_now();
    let now_ms = unix_ms_now();
    let discovered_servers = members
        .iter()
        .filter(|m| m.status == MemberStatus::Alive && m.name != state.node_name)
        .filter_map(|m| Some((m, api_port(m)?)))
        .map(|(m, port)| DiscoveredServer {
            host: m.addr,
            port,
            node_id: m.name.clone(),
            mode: m.mode,
            last_seen: last_seen(now_ms, m.last_seen_ms_ago),
        })
        .collect();
    let mode = members.iter().find(|m| m.name == state.node_name).map_or(Mode::Unknown, |m| m.mode);
    let raft_cluster = state.raft_cluster.borrow().clone();
    let stack = state.supervisor.as_ref().map(|s| s.borrow().clone());
    Json(Discovery { node_id: state.node_name.clone(), mode, discovered_servers, raft_cluster, stack })
}

/// `GET /v1/stack`: the supervisor's status (`muster stack status`); 503 without a supervisor.
pub(super) async fn stack(
    State(state): State<Arc<ApiState>>,
) -> Result<Json<crate::supervisor::supervise::SupervisorStatus>, (axum::http::StatusCode, String)> {
    match &state.supervisor {
        Some(s) => Ok(Json(s.borrow().clone())),
        None => {
            Err((axum::http::StatusCode::SERVICE_UNAVAILABLE, "no stack supervisor runs on this node".into()))
        }
    }
}

/// The member's API port from its `http_port` tag. Only muster nodes carry the tag: plain Serf
/// agents in the same cluster have no API and are not listed.
fn api_port(m: &MemberInfo) -> Option<u16> {
    m.tags.get(HTTP_PORT_TAG).and_then(|p| p.trim().parse().ok())
}

fn last_seen(now_ms: i64, ago_ms: u64) -> String {
    let ago_ms = i64::try_from(ago_ms).unwrap_or(i64::MAX);
    format_rfc3339(now_ms.saturating_sub(ago_ms), Precision::Millis)
}

/// `GET /v1/members[?status=S][&tag=K=V]...`: the members, sorted by name, filtered.
pub(super) async fn members(
    State(state): State<Arc<ApiState>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Vec<MemberInfo>>, ApiError> {
    let Query(pairs) = query.map_err(|rejection| ApiError::BadQuery {
        param: "query".to_string(),
        reason: rejection.body_text(),
    })?;
    let filter = MemberFilter::from_query(&pairs)?;
    let members = state.members_now();
    let mut out: Vec<MemberInfo> = members.iter().filter(|m| filter.matches(m)).cloned().collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_seen_subtracts_the_age() {
        // Proves last_seen is now minus the age, and that absurd ages do not overflow.
        assert_eq!(last_seen(1_735_689_600_000, 1_500), "2024-12-31T23:59:58.500Z");
        let ancient = last_seen(0, u64::MAX); // must not panic on overflow
        assert!(ancient.starts_with('-'), "{ancient}");
    }
}
