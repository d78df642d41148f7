//! The `stream` command: Serf's event filter (`member-join,user:deploy,*`) and the task that
//! forwards matching gossip events to one client as `{Seq, Error}` + record frames.
//!
//! A stream never blocks anything: it offers each frame to the connection's bounded write
//! queue and ends itself (with a log line) when the queue is full or when it lagged behind the
//! gossip event channel. Imports `proto` and the gossip event type; nothing else of the node.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_bytes::ByteBuf;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::proto::{self, MemberEventRecord, MemberRecord, QueryEventRecord, UserEventRecord};
use crate::gossip::serf::{QueryKey, SerfEvent};

/// Queries remembered per connection for `respond` at most; a query shown while this many are
/// pending is not remembered, and `respond` to it names this limit.
pub const PENDING_QUERIES_MAX: usize = 1024;
/// Ids of queries not remembered, kept (newest) so `respond` can say why.
const FORGOTTEN_IDS_MAX: usize = 256;

/// The queries a connection's streams showed, numbered per connection as the Go agent does,
/// until their deadline.
#[derive(Clone, Default)]
pub struct PendingQueries(Arc<Mutex<Pending>>);

#[derive(Default)]
struct Pending {
    last_id: u64,
    queries: HashMap<u64, (QueryKey, Instant)>,
    /// Ids not remembered because [`PENDING_QUERIES_MAX`] were pending, oldest first.
    forgotten: std::collections::VecDeque<u64>,
}

impl PendingQueries {
    /// Numbers a query; it can be answered through `respond` until its deadline.
    pub fn register(&self, key: QueryKey, deadline: Instant) -> u64 {
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        p.last_id += 1;
        let id = p.last_id;
        let now = Instant::now();
        p.queries.retain(|_, (_, d)| *d >= now);
        if p.queries.len() < PENDING_QUERIES_MAX {
            p.queries.insert(id, (key, deadline));
        } else {
            if p.forgotten.len() >= FORGOTTEN_IDS_MAX {
                p.forgotten.pop_front();
            }
            p.forgotten.push_back(id);
        }
        id
    }

    /// The query numbered `id`, while it may still be answered.
    pub fn get(&self, id: u64) -> Option<QueryKey> {
        let p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        p.queries.get(&id).filter(|(_, d)| *d >= Instant::now()).map(|(k, _)| *k)
    }

    /// [`PendingQueries::get`], or the answer's error: Go's "No pending queries matching ID",
    /// or, for a query not remembered, one naming [`PENDING_QUERIES_MAX`].
    pub fn lookup(&self, id: u64) -> Result<QueryKey, String> {
        if let Some(key) = self.get(id) {
            return Ok(key);
        }
        let p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if p.forgotten.contains(&id) {
            return Err(format!(
                "{}: query {id} arrived while {PENDING_QUERIES_MAX} queries were pending on this connection \
                 (the limit), so it cannot be answered from here",
                proto::INVALID_QUERY_ID
            ));
        }
        Err(proto::INVALID_QUERY_ID.to_string())
    }
}

/// One `type[:name]` entry of a stream filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    event: String,
    /// For `user:NAME` and `query:NAME`: only events with this exact name.
    name: Option<String>,
}

const EVENT_TYPES: &[&str] =
    &["member-join", "member-leave", "member-failed", "member-update", "member-reap", "user", "query", "*"];

/// Parses Serf's filter list; `""` means everything. Err on an unknown event type.
pub fn parse_filters(spec: &str) -> Result<Vec<EventFilter>, String> {
    let spec = if spec.is_empty() { "*" } else { spec };
    spec.split(',')
        .map(|item| {
            let (event, name) = match item.split_once(':') {
                Some((kind @ ("user" | "query"), name)) => {
                    (kind, Some(name.to_string()).filter(|n| !n.is_empty()))
                }
                _ => (item, None),
            };
            if EVENT_TYPES.contains(&event) {
                Ok(EventFilter { event: event.to_string(), name })
            } else {
                Err(item.to_string())
            }
        })
        .collect()
}

impl EventFilter {
    /// Whether events of this type (`member-join`, `user`, ...) pass, names aside.
    pub fn matches_type(&self, kind: &str) -> bool {
        self.event == "*" || self.event == kind
    }

    /// Serf's label for the filter in `serf info`: `event:name` (`member-join:`, `user:deploy`).
    pub fn label(&self) -> String {
        format!("{}:{}", self.event, self.name.as_deref().unwrap_or(""))
    }

    pub fn matches(&self, e: &SerfEvent) -> bool {
        if !self.matches_type(proto::event_type(e)) {
            return false;
        }
        match (e, &self.name) {
            (SerfEvent::User { name, .. }, Some(want)) => name == want,
            (SerfEvent::Query(q), Some(want)) => &q.name == want,
            _ => true,
        }
    }
}

/// The record a stream sends for an event (header excluded). `query_id` numbers queries per
/// connection, as the Go agent does for `respond`.
pub fn encode_record(seq: u64, e: &SerfEvent, query_id: u64) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let event = proto::event_type(e).to_string();
    match e {
        SerfEvent::MemberJoin(m)
        | SerfEvent::MemberLeave(m)
        | SerfEvent::MemberFailed(m)
        | SerfEvent::MemberUpdate(m)
        | SerfEvent::MemberReap(m) => {
            let rec = MemberEventRecord { event, members: vec![MemberRecord::from(m)] };
            proto::encode_response(seq, "", Some(&rec))
        }
        SerfEvent::User { ltime, name, payload, coalesce } => {
            let rec = UserEventRecord {
                coalesce: *coalesce,
                event,
                ltime: *ltime,
                name: name.clone(),
                payload: ByteBuf::from(payload.clone()),
            };
            proto::encode_response(seq, "", Some(&rec))
        }
        SerfEvent::Query(q) => {
            let rec = QueryEventRecord {
                event,
                id: query_id,
                ltime: q.key.ltime,
                name: q.name.clone(),
                payload: ByteBuf::from(q.payload.clone()),
            };
            proto::encode_response(seq, "", Some(&rec))
        }
    }
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// `stop`, the connection closed, or the node is shutting down.
    Stopped,
    /// The client did not read fast enough and its write queue filled up.
    ClientTooSlow,
    /// The stream fell behind the gossip event channel and missed events.
    Lagged { missed: u64 },
    /// Gossip shut down.
    GossipClosed,
}

/// Forwards matching events until stopped; returns why it ended (already logged).
pub async fn run(
    peer: SocketAddr,
    seq: u64,
    filters: Vec<EventFilter>,
    mut events: broadcast::Receiver<SerfEvent>,
    out: mpsc::Sender<Vec<u8>>,
    pending: PendingQueries,
    stop: CancellationToken,
) -> StreamEnd {
    let mut query_id = 0u64;
    let end = loop {
        let event = tokio::select! {
            _ = stop.cancelled() => break StreamEnd::Stopped,
            e = events.recv() => e,
        };
        let event = match event {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(missed)) => break StreamEnd::Lagged { missed },
            Err(broadcast::error::RecvError::Closed) => break StreamEnd::GossipClosed,
        };
        if !filters.iter().any(|f| f.matches(&event)) {
            continue;
        }
        if let SerfEvent::Query(q) = &event {
            query_id = pending.register(q.key, q.deadline);
        }
        let frame = match encode_record(seq, &event, query_id) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(peer.addr = %peer, seq, error = %e, "serf-rpc: cannot encode a stream record; skipping it");
                continue;
            }
        };
        match out.try_send(frame) {
            Ok(()) => {
                tracing::trace!(peer.addr = %peer, seq, event = proto::event_type(&event), "serf-rpc: streamed event")
            }
            Err(mpsc::error::TrySendError::Full(_)) => break StreamEnd::ClientTooSlow,
            Err(mpsc::error::TrySendError::Closed(_)) => break StreamEnd::Stopped,
        }
    };
    // Mark the stream finished so its Seq can be reused.
    stop.cancel();
    match end {
        StreamEnd::Stopped => tracing::debug!(peer.addr = %peer, seq, "serf-rpc: stream stopped"),
        StreamEnd::ClientTooSlow => {
            tracing::warn!(peer.addr = %peer, seq, "serf-rpc: client is not reading its stream; dropping the stream")
        }
        StreamEnd::Lagged { missed } => {
            tracing::warn!(peer.addr = %peer, seq, missed, "serf-rpc: stream fell behind the event channel; dropping the stream")
        }
        StreamEnd::GossipClosed => {
            tracing::debug!(peer.addr = %peer, seq, "serf-rpc: gossip closed; stream ended")
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> SerfEvent {
        SerfEvent::User { ltime: 7, name: name.into(), payload: b"v1".to_vec(), coalesce: true }
    }

    #[test]
    fn filters_parse_like_serf() {
        // Proves Serf's filter grammar: "" is everything, user:NAME narrows, unknown types fail.
        assert!(parse_filters("").unwrap()[0].matches(&user("x")));
        let f = parse_filters("member-join,user:deploy").unwrap();
        assert!(f.iter().any(|f| f.matches(&user("deploy"))));
        assert!(!f.iter().any(|f| f.matches(&user("other"))));
        assert!(parse_filters("user:").unwrap()[0].matches(&user("anything")));
        assert_eq!(parse_filters("member-join,bogus"), Err("bogus".to_string()));
        assert_eq!(parse_filters(" user"), Err(" user".to_string()), "no trimming, as in Go");
    }

    #[test]
    fn a_user_record_has_the_go_agents_bytes() {
        // Proves the user-event record matches, byte for byte, what Serf 0.8.2 streamed for `serf event deploy v2`.
        let got = encode_record(
            2,
            &SerfEvent::User { ltime: 1, name: "deploy".into(), payload: b"v2".to_vec(), coalesce: true },
            0,
        )
        .unwrap();
        let want = "82a54572726f72a0a353657102\
                    85a8436f616c65736365c3a54576656e74a475736572a54c54696d6501a44e616d65a66465706c6f79a75061796c6f6164c4027632";
        assert_eq!(hex(&got), want);
    }

    #[test]
    fn a_member_join_record_has_the_go_agents_bytes() {
        // Proves the member-event record matches what Serf 0.8.2 streamed when go2 (127.0.0.1:17947, no tags) joined.
        let m = crate::gossip::serf::Member {
            name: "go2".into(),
            addr: "127.0.0.1".parse().unwrap(),
            port: 17947,
            tags: Default::default(),
            status: crate::membership::MemberStatus::Alive,
            vsn: [1, 5, 2, 2, 5, 5],
            incarnation: 1,
            status_ltime: 3,
            leave_time: None,
        };
        let got = encode_record(2, &SerfEvent::MemberJoin(m), 0).unwrap();
        let want = "82a54572726f72a0a353657102\
                    82a54576656e74ab6d656d6265722d6a6f696ea74d656d62657273918ba441646472c4047f000001ab44656c65676174654375\
                    7205ab44656c65676174654d617805ab44656c65676174654d696e02a44e616d65a3676f32a4506f7274cd461bab50726f746f\
                    636f6c43757202ab50726f746f636f6c4d617805ab50726f746f636f6c4d696e01a6537461747573a5616c697665a45461677380";
        assert_eq!(hex(&got), want);
    }

    pub(crate) fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
