//! `GET /v1/raft`: this node's view of raft with names: the leader, the term, this node's
//! role, and the voters and learners each with its member name (from the members' `raft_id`
//! gossip tag; empty when gossip does not show it). `/health` only counts voters and learners.
//! Reads two watches; decides nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::api::ApiState;
use crate::consensus::leadership::Role;
use crate::membership::{MemberInfo, RAFT_ID_TAG};

/// The answer of `GET /v1/raft`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(super) struct RaftView {
    /// This node's member name.
    node: String,
    term: u64,
    /// The leader's member name, when one is known.
    leader: Option<String>,
    /// The leader's raft id (hex), when one is known.
    leader_id: Option<String>,
    /// This node's role: server, proxy or unknown.
    role: Role,
    voters: Vec<RaftMember>,
    learners: Vec<RaftMember>,
}

/// One voter or learner.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct RaftMember {
    /// The raft id as the `raft_id` tag writes it (lowercase hex).
    id: String,
    /// Its member name; empty when no member carries the id.
    name: String,
}

/// Raft id → member name, from the members' `raft_id` tags.
fn names(members: &[MemberInfo]) -> BTreeMap<u64, String> {
    members
        .iter()
        .filter_map(|m| Some((u64::from_str_radix(m.tags.get(RAFT_ID_TAG)?, 16).ok()?, m.name.clone())))
        .collect()
}

fn named(ids: &BTreeSet<u64>, names: &BTreeMap<u64, String>) -> Vec<RaftMember> {
    let mut out: Vec<RaftMember> = ids
        .iter()
        .map(|id| RaftMember { id: format!("{id:x}"), name: names.get(id).cloned().unwrap_or_default() })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    out
}

/// The view from a leadership value and the members.
fn view(node: &str, lead: &crate::consensus::leadership::Leadership, members: &[MemberInfo]) -> RaftView {
    let names = names(members);
    RaftView {
        node: node.to_string(),
        term: lead.term,
        leader: lead.leader_name.clone(),
        leader_id: lead.leader_id.map(|id| format!("{id:x}")),
        role: lead.role,
        voters: named(&lead.voters, &names),
        learners: named(&lead.learners, &names),
    }
}

/// `GET /v1/raft`.
pub(super) async fn raft(State(state): State<Arc<ApiState>>) -> Json<RaftView> {
    let lead = state.leadership.borrow().clone();
    let members = state.members_now();
    Json(view(&state.node_name, &lead, &members))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::leadership::Leadership;
    use crate::membership::{MemberStatus, Mode};

    fn member(name: &str, raft_id: Option<&str>) -> MemberInfo {
        let mut tags = BTreeMap::new();
        if let Some(id) = raft_id {
            tags.insert(RAFT_ID_TAG.to_string(), id.to_string());
        }
        MemberInfo {
            name: name.into(),
            addr: "127.0.0.1".parse().unwrap(),
            port: 7946,
            tags,
            status: MemberStatus::Alive,
            protocol: [0; 6],
            incarnation: 1,
            last_seen_ms_ago: 0,
            mode: Mode::Unknown,
        }
    }

    #[test]
    fn voters_and_learners_get_their_member_names() {
        // Proves ids are matched to members through the hex raft_id tag, an id no member
        // carries keeps an empty name, and plain Serf agents (no tag) are ignored.
        let mut lead = Leadership::unknown();
        lead.term = 7;
        lead.leader_id = Some(0xab);
        lead.leader_name = Some("b".into());
        lead.role = Role::Proxy;
        lead.voters = [0xab, 0x1f, 0x99].into();
        lead.learners = [0x5].into();
        let members =
            [member("b", Some("ab")), member("a", Some("1f")), member("l", Some("5")), member("serf", None)];
        let v = view("a", &lead, &members);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["term"], 7);
        assert_eq!(json["leader"], "b");
        assert_eq!(json["leader_id"], "ab");
        assert_eq!(json["role"], "proxy");
        assert_eq!(
            json["voters"],
            serde_json::json!([{"id": "99", "name": ""}, {"id": "1f", "name": "a"}, {"id": "ab", "name": "b"}])
        );
        assert_eq!(json["learners"], serde_json::json!([{"id": "5", "name": "l"}]));
    }
}
