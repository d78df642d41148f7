//! `GET /metrics`: fills [`crate::metrics::NodeView`] from what the API already watches (the
//! membership view, the leadership, the local registry, the supervisor's status) and answers
//! the Prometheus text with the counted families. Reads only; counts nothing itself.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;

use super::ApiState;
use crate::membership::MemberStatus;
use crate::metrics::{self, MemberCounts, NodeView, ServiceCounts};

pub(super) async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    metrics::http::response(metrics::render(&view(&state)))
}

fn view(state: &ApiState) -> NodeView {
    let mut members = MemberCounts::default();
    for m in state.members_now().iter() {
        let slot = match m.status {
            MemberStatus::Alive => &mut members.alive,
            MemberStatus::Leaving => &mut members.leaving,
            MemberStatus::Left => &mut members.left,
            MemberStatus::Failed => &mut members.failed,
            MemberStatus::None => &mut members.none,
        };
        *slot += 1;
    }
    let services = match &state.registrar {
        Some(r) => {
            let c = r.read_local(|r| r.counts_by_status());
            let n = |v: usize| v as u64;
            ServiceCounts {
                active: n(c.active),
                inactive: n(c.inactive),
                expired: n(c.expired),
                unhealthy: n(c.unhealthy),
            }
        }
        None => ServiceCounts::default(),
    };
    let stack = match &state.supervisor {
        Some(s) => s.borrow().want.stack.map_or("none", |k| k.as_str()),
        None => "none",
    };
    NodeView {
        version: state.version.to_string(),
        members,
        raft_term: state.leadership.borrow().term,
        services,
        stack: stack.to_string(),
    }
}
