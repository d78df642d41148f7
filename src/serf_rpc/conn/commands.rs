//! The Serf agent commands that act on the cluster rather than read it: `force-leave`, `tags`,
//! `query` (answered by a stream of acks, responses and a final `done`), `respond` (to a query
//! a `stream` showed), and the four key commands run as cluster-wide key queries.
//!
//! Upstream: hashicorp/serf `cmd/serf/command/agent/ipc.go` (`handleForceLeave`, `handleTags`,
//! `handleQuery`, `handleRespond`, the key handlers) and `ipc_query_response_stream.go`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_bytes::ByteBuf;

use super::{Conn, ConnError, QUERIES_MAX};
use crate::gossip::net::GossipError;
use crate::gossip::net::KeyOp;
use crate::gossip::serf::{QueryParams, QueryReply, SerfError, INTERNAL_QUERY_PREFIX};
use crate::serf_rpc::proto::{self as p};

impl Conn {
    pub(super) async fn force_leave(&mut self, seq: u64) -> Result<(), ConnError> {
        let req: p::ForceLeaveRequest = self.body(p::FORCE_LEAVE).await?;
        tracing::info!(peer.addr = %self.peer, member = %req.node, prune = req.prune, "serf-rpc: force-leave");
        let error = match self.shared.gossip.force_leave(&req.node, req.prune).await {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        };
        self.reply(seq, &error).await
    }

    /// `tags -set/-delete`. Tags muster manages for its own cluster (raft id and address,
    /// cluster id, role, API port) are refused: changing them would break the node's place in
    /// the raft cluster.
    pub(super) async fn tags(&mut self, seq: u64) -> Result<(), ConnError> {
        let req: p::TagsRequest = self.body(p::TAGS).await?;
        let set = req.tags.unwrap_or_default();
        let delete = req.delete_tags.unwrap_or_default();
        let managed: Vec<&String> = set
            .keys()
            .chain(delete.iter())
            .filter(|k| self.shared.cfg.managed_tags.iter().any(|m| m == *k))
            .collect();
        if let Some(k) = managed.first() {
            let error = format!(
                "tag {k:?} is managed by muster (it places this node in its raft cluster) and cannot be set or deleted; \
                 managed tags: {}",
                self.shared.cfg.managed_tags.join(", ")
            );
            return self.reply(seq, &error).await;
        }
        tracing::info!(peer.addr = %self.peer, set = ?set.keys().collect::<Vec<_>>(), delete = ?delete, "serf-rpc: tags");
        let error = match self.shared.gossip.update_tags(set, delete).await {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        };
        self.reply(seq, &error).await
    }

    pub(super) async fn query(&mut self, seq: u64) -> Result<(), ConnError> {
        let req: p::QueryRequest = self.body(p::QUERY).await?;
        let payload = req.payload.map(ByteBuf::into_vec);
        if req.name.starts_with(INTERNAL_QUERY_PREFIX)
            && (req.name != format!("{INTERNAL_QUERY_PREFIX}ping") || payload.is_some())
        {
            let error = format!("Queries cannot contain the '{INTERNAL_QUERY_PREFIX}' prefix");
            return self.reply(seq, &error).await;
        }
        if req.timeout < 0 {
            return self
                .reply(seq, &format!("query timeout must not be negative (got {} ns)", req.timeout))
                .await;
        }
        let params = QueryParams {
            filter_nodes: req.filter_nodes.unwrap_or_default(),
            filter_tags: req.filter_tags.unwrap_or_default(),
            request_ack: req.request_ack,
            relay_factor: req.relay_factor,
            timeout: Duration::from_nanos(req.timeout.unsigned_abs()),
        };
        let Ok(slot) = self.queries.clone().try_acquire_owned() else {
            let error = format!(
                "too many queries in flight on this connection (limit {QUERIES_MAX}); wait for one to finish"
            );
            return self.reply(seq, &error).await;
        };
        let mut answers =
            match self.shared.gossip.query(&req.name, payload.as_deref().unwrap_or_default(), params).await {
                Ok(s) => s,
                Err(e) => return self.reply(seq, &e.to_string()).await,
            };
        tracing::debug!(peer.addr = %self.peer, query = %req.name, ltime = answers.key.ltime, "serf-rpc: query sent");
        self.reply(seq, "").await?;
        let (out, cancel, peer) = (self.out.clone(), self.cancel.clone(), self.peer);
        tokio::spawn(async move {
            let _slot = slot;
            loop {
                let next = tokio::select! {
                    _ = cancel.cancelled() => return,
                    n = answers.next() => n,
                };
                let rec = match next {
                    Some(QueryReply::Ack { from }) => {
                        p::QueryRecord { from, payload: None, kind: p::QUERY_RECORD_ACK.into() }
                    }
                    Some(QueryReply::Response { from, payload }) => p::QueryRecord {
                        from,
                        payload: Some(ByteBuf::from(payload)),
                        kind: p::QUERY_RECORD_RESPONSE.into(),
                    },
                    None => p::QueryRecord { kind: p::QUERY_RECORD_DONE.into(), ..Default::default() },
                };
                let done = rec.kind == p::QUERY_RECORD_DONE;
                let frame = match p::encode_response(seq, "", Some(&rec)) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!(peer.addr = %peer, error = %e, "serf-rpc: cannot encode a query record");
                        return;
                    }
                };
                if out.send(frame).await.is_err() || done {
                    return;
                }
            }
        });
        Ok(())
    }

    pub(super) async fn respond(&mut self, seq: u64) -> Result<(), ConnError> {
        let req: p::RespondRequest = self.body(p::RESPOND).await?;
        let key = match self.pending.lookup(req.id) {
            Ok(key) => key,
            Err(error) => return self.reply(seq, &error).await,
        };
        let payload = req.payload.map(ByteBuf::into_vec).unwrap_or_default();
        let error = match self.shared.gossip.respond(key, &payload).await {
            Ok(()) => String::new(),
            Err(GossipError::Serf(SerfError::NoSuchQuery)) => p::INVALID_QUERY_ID.to_string(),
            Err(e) => e.to_string(),
        };
        self.reply(seq, &error).await
    }

    pub(super) async fn key(&mut self, seq: u64, op: KeyOp) -> Result<(), ConnError> {
        let key = match op {
            KeyOp::List => String::new(),
            _ => {
                let command = match op {
                    KeyOp::Install => p::INSTALL_KEY,
                    KeyOp::Use => p::USE_KEY,
                    _ => p::REMOVE_KEY,
                };
                self.body::<p::KeyRequest>(command).await?.key
            }
        };
        tracing::info!(peer.addr = %self.peer, op = ?op, "serf-rpc: key command");
        let (error, resp) = match self.shared.gossip.key_op(op, &key).await {
            Ok(r) => {
                let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
                let resp = p::KeyResponse {
                    keys: (op == KeyOp::List).then(|| {
                        r.keys.iter().map(|(k, n)| (k.clone(), count(*n))).collect::<BTreeMap<_, _>>()
                    }),
                    messages: Some(r.messages),
                    num_err: count(r.num_err),
                    num_nodes: count(r.num_nodes),
                    num_resp: count(r.num_resp),
                };
                (r.error.unwrap_or_default(), resp)
            }
            Err(e) => (e.to_string(), p::KeyResponse::default()),
        };
        self.send(p::encode_response(seq, &error, Some(&resp))?).await
    }
}
