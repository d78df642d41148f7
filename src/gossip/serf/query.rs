//! Serf queries in the pure core: sending one (filters, ack request, relay factor, timeout),
//! receiving one (de-duplication, filters, the ack, the event that lets someone answer),
//! answering it (directly to the asker, plus `relay_factor` copies through other members), and
//! collecting the acks and responses to our own queries until their deadline.
//!
//! Upstream: hashicorp/serf `serf/query.go`, `serf.go` (`Query`, `handleQuery`,
//! `handleQueryResponse`), `event.go` (`Query.Respond`) and `delegate.go` (relays). Answers go
//! out as [`SerfEffect::SendTo`]: a memberlist user message straight to an address.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use super::{Serf, SerfEffect, SerfError, SerfEvent};
use crate::go_regexp::Regex;
use crate::gossip::swim::{ip_from_bytes, ip_to_bytes};
use crate::gossip::wire::{
    SerfFilter, SerfMessage, SerfQuery, SerfQueryResponse, SerfRelayHeader, SerfUdpAddr, QUERY_FLAG_ACK,
    QUERY_FLAG_NO_BROADCAST,
};
use crate::membership::MemberStatus;

/// Largest encoded query (Serf's `QuerySizeLimit`).
pub const QUERY_SIZE_LIMIT: usize = 1024;
/// Largest encoded query response (Serf's `QueryResponseSizeLimit`).
pub const QUERY_RESPONSE_SIZE_LIMIT: usize = 1024;
/// Queries whose name starts with this are Serf's own (ping, conflict, keys).
pub const INTERNAL_QUERY_PREFIX: &str = "_serf_";
/// Incoming queries remembered for answering at most (older ones are answered no more).
const INCOMING_MAX: usize = 4096;

/// How to send a query (Serf's `QueryParam`). A zero `timeout` is filled in by the caller
/// from the cluster size (Serf's `DefaultQueryTimeout`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryParams {
    /// Only these members process the query (empty: everyone).
    pub filter_nodes: Vec<String>,
    /// Only members whose tag matches the regexp (anywhere in the value) process it.
    pub filter_tags: BTreeMap<String, String>,
    /// Every member that processes the query acks at once.
    pub request_ack: bool,
    /// Each answer is also sent through this many other members.
    pub relay_factor: u8,
    pub timeout: Duration,
}

/// Identifies a query: its query-clock time and random id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryKey {
    pub ltime: u64,
    pub id: u32,
}

/// A query to process (what event handlers and `stream` clients see).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryEvent {
    pub key: QueryKey,
    pub name: String,
    pub payload: Vec<u8>,
    /// The member that asked.
    pub source: String,
    /// Answers after this are refused.
    pub deadline: Instant,
}

/// One answer to a query we sent.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryReply {
    Ack { from: String },
    Response { from: String, payload: Vec<u8> },
}

/// A query we sent, until its deadline.
#[derive(Debug)]
pub(super) struct Outgoing {
    id: u32,
    deadline: Instant,
    acks: HashSet<String>,
    responses: HashSet<String>,
}

/// A query we received and may answer once.
#[derive(Debug)]
pub(super) struct Incoming {
    respond_to: SocketAddr,
    source: String,
    relay_factor: u8,
    deadline: Instant,
    answered: bool,
}

impl Serf {
    /// Sends a query; its acks and responses come back as [`SerfEffect::QueryReply`] with its
    /// time until [`SerfEffect::QueryDone`] at the deadline.
    pub fn query(
        &mut self,
        name: &str,
        payload: &[u8],
        params: &QueryParams,
        now: Instant,
    ) -> Result<QueryKey, SerfError> {
        if name.is_empty() {
            return Err(SerfError::EmptyQueryName);
        }
        let me = self.members.get(&self.name).ok_or(SerfError::NotStarted)?;
        let (addr, port) = (me.addr, me.port);
        let mut filters = Vec::new();
        if !params.filter_nodes.is_empty() {
            filters.push(SerfFilter::Nodes(params.filter_nodes.clone()).encode());
        }
        for (tag, expr) in &params.filter_tags {
            Regex::unanchored(expr)
                .map_err(|e| SerfError::BadTagFilter { tag: tag.clone(), reason: e.to_string() })?;
            filters.push(SerfFilter::Tag { tag: tag.clone(), expr: expr.clone() }.encode());
        }
        let q = SerfQuery {
            l_time: self.query_clock.time(),
            id: self.rng.random::<u32>() & 0x7fff_ffff,
            addr: ip_to_bytes(addr),
            port,
            source_node: self.name.clone(),
            filters,
            flags: if params.request_ack { QUERY_FLAG_ACK } else { 0 },
            relay_factor: params.relay_factor,
            timeout: i64::try_from(params.timeout.as_nanos()).unwrap_or(i64::MAX),
            name: name.to_string(),
            payload: payload.to_vec(),
        };
        let msg = SerfMessage::Query(q.clone());
        let encoded = msg.encode();
        if encoded.len() > QUERY_SIZE_LIMIT {
            return Err(SerfError::QueryTooLarge { size: encoded.len(), limit: QUERY_SIZE_LIMIT });
        }
        let key = QueryKey { ltime: q.l_time, id: q.id };
        let outgoing = Outgoing {
            id: q.id,
            deadline: now + params.timeout,
            acks: HashSet::new(),
            responses: HashSet::new(),
        };
        self.outgoing.insert(q.l_time, outgoing);
        self.query_in(&q, now);
        self.effects.push(SerfEffect::Broadcast { key: None, payload: encoded });
        tracing::debug!(query = %name, ltime = key.ltime, "serf: sent query");
        Ok(key)
    }

    /// Records a received query; true when it is new and may be re-broadcast.
    pub(super) fn query_in(&mut self, q: &SerfQuery, now: Instant) -> bool {
        self.query_clock.witness(q.l_time);
        if q.l_time < self.query_min_time {
            return false;
        }
        let cur = self.query_clock.time();
        let window = self.config.query_buffer as u64;
        if cur > window && q.l_time < cur - window {
            tracing::warn!(query = %q.name, ltime = q.l_time, current = cur, "serf: dropping a query older than the query buffer");
            return false;
        }
        let seen = self.queries_seen.entry(q.l_time).or_default();
        if seen.contains(&q.id) {
            return false;
        }
        seen.push(q.id);
        if self.queries_seen.len() > self.config.query_buffer {
            let floor = cur.saturating_sub(window);
            self.queries_seen.retain(|t, _| *t >= floor);
        }
        let rebroadcast = q.flags & QUERY_FLAG_NO_BROADCAST == 0;
        if !self.should_process(&q.filters) {
            return rebroadcast;
        }
        let Some(respond_to) = ip_from_bytes(&q.addr).map(|ip| SocketAddr::new(ip, q.port)) else {
            tracing::warn!(query = %q.name, from = %q.source_node, "serf: query with an unusable address; not processing it");
            return rebroadcast;
        };
        let key = QueryKey { ltime: q.l_time, id: q.id };
        let deadline = now + Duration::from_nanos(u64::try_from(q.timeout).unwrap_or(0));
        if q.flags & QUERY_FLAG_ACK != 0 {
            let ack = SerfQueryResponse {
                l_time: q.l_time,
                id: q.id,
                from: self.name.clone(),
                flags: QUERY_FLAG_ACK,
                payload: Vec::new(),
            };
            self.send_answer(&ack, respond_to, &q.source_node, q.relay_factor);
        }
        if self.incoming.len() >= INCOMING_MAX {
            self.expire_incoming(now);
        }
        if self.incoming.len() < INCOMING_MAX {
            let incoming = Incoming {
                respond_to,
                source: q.source_node.clone(),
                relay_factor: q.relay_factor,
                deadline,
                answered: false,
            };
            self.incoming.insert(key, incoming);
        }
        self.emit(SerfEvent::Query(QueryEvent {
            key,
            name: q.name.clone(),
            payload: q.payload.clone(),
            source: q.source_node.clone(),
            deadline,
        }));
        rebroadcast
    }

    /// Whether the query's filters select this member (an unreadable filter does not).
    fn should_process(&self, filters: &[Vec<u8>]) -> bool {
        let empty = BTreeMap::new();
        let tags = self.members.get(&self.name).map(|m| &m.tags).unwrap_or(&empty);
        filters.iter().all(|raw| match SerfFilter::decode(raw) {
            Ok(SerfFilter::Nodes(nodes)) => nodes.contains(&self.name),
            Ok(SerfFilter::Tag { tag, expr }) => match Regex::unanchored(&expr) {
                Ok(re) => re.is_match(tags.get(&tag).map(String::as_str).unwrap_or("")),
                Err(e) => {
                    tracing::warn!(tag = %tag, error = %e, "serf: query tag filter cannot be compiled; not processing the query");
                    false
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "serf: query filter cannot be read; not processing the query");
                false
            }
        })
    }

    /// Answers a query we received, once and before its deadline.
    pub fn respond(&mut self, key: QueryKey, payload: &[u8], now: Instant) -> Result<(), SerfError> {
        let Some(q) = self.incoming.get(&key) else {
            return Err(SerfError::NoSuchQuery);
        };
        if q.answered {
            return Err(SerfError::ResponseAlreadySent);
        }
        if now > q.deadline {
            return Err(SerfError::ResponsePastDeadline);
        }
        let resp = SerfQueryResponse {
            l_time: key.ltime,
            id: key.id,
            from: self.name.clone(),
            flags: 0,
            payload: payload.to_vec(),
        };
        let size = SerfMessage::QueryResponse(resp.clone()).encode().len();
        if size > QUERY_RESPONSE_SIZE_LIMIT {
            return Err(SerfError::ResponseTooLarge { size, limit: QUERY_RESPONSE_SIZE_LIMIT });
        }
        let (to, source, relay_factor) = (q.respond_to, q.source.clone(), q.relay_factor);
        if let Some(q) = self.incoming.get_mut(&key) {
            q.answered = true;
        }
        self.send_answer(&resp, to, &source, relay_factor);
        Ok(())
    }

    /// Sends an ack or response to the asker, and `relay_factor` copies through others.
    fn send_answer(&mut self, resp: &SerfQueryResponse, to: SocketAddr, dest_name: &str, relay_factor: u8) {
        let inner = SerfMessage::QueryResponse(resp.clone()).encode();
        self.effects.push(SerfEffect::SendTo { to, payload: inner.clone() });
        if relay_factor == 0 || self.members.len() < usize::from(relay_factor) + 1 {
            return;
        }
        let header = SerfRelayHeader {
            dest_addr: SerfUdpAddr { ip: ip_to_bytes(to.ip()), port: to.port(), zone: String::new() },
            dest_name: dest_name.to_string(),
        };
        let relay = header.encode_relay(&inner);
        if relay.len() > QUERY_RESPONSE_SIZE_LIMIT {
            tracing::warn!(
                bytes = relay.len(),
                limit = QUERY_RESPONSE_SIZE_LIMIT,
                "serf: relayed response over the limit; sent directly only"
            );
            return;
        }
        let mut candidates: Vec<SocketAddr> = self
            .members
            .values()
            .filter(|m| m.status == MemberStatus::Alive && m.vsn[1] >= 5 && m.name != self.name)
            .map(|m| SocketAddr::new(m.addr, m.port))
            .collect();
        for _ in 0..relay_factor {
            if candidates.is_empty() {
                break;
            }
            let via = candidates.swap_remove(self.rng.random_range(0..candidates.len()));
            self.effects.push(SerfEffect::SendTo { to: via, payload: relay.clone() });
        }
    }

    /// An ack or response to one of our queries.
    pub(super) fn query_response_in(&mut self, r: SerfQueryResponse, now: Instant) {
        let Some(q) = self.outgoing.get_mut(&r.l_time) else {
            tracing::debug!(ltime = r.l_time, from = %r.from, "serf: reply for a query that is not running");
            return;
        };
        if q.id != r.id {
            tracing::warn!(ltime = r.l_time, ours = q.id, theirs = r.id, from = %r.from, "serf: query reply id mismatch");
            return;
        }
        if now > q.deadline {
            return;
        }
        let reply = if r.flags & QUERY_FLAG_ACK != 0 {
            if !q.acks.insert(r.from.clone()) {
                return;
            }
            QueryReply::Ack { from: r.from }
        } else {
            if !q.responses.insert(r.from.clone()) {
                return;
            }
            QueryReply::Response { from: r.from, payload: r.payload }
        };
        self.effects.push(SerfEffect::QueryReply { ltime: r.l_time, reply });
    }

    /// A relayed answer: forward the inner message to its destination.
    pub(super) fn relay_in(&mut self, raw: &[u8]) {
        match SerfRelayHeader::decode_relay(raw) {
            Ok((header, inner)) => match ip_from_bytes(&header.dest_addr.ip) {
                Some(ip) => {
                    let to = SocketAddr::new(ip, header.dest_addr.port);
                    tracing::debug!(peer.addr = %to, "serf: relaying a query response");
                    self.effects.push(SerfEffect::SendTo { to, payload: inner });
                }
                None => tracing::warn!("serf: relay header without a usable address"),
            },
            Err(e) => tracing::warn!(error = %e, "serf: cannot read a relay header"),
        }
    }

    /// Closes our queries past their deadline and forgets stale incoming ones.
    pub(super) fn expire_queries(&mut self, now: Instant) {
        let done: Vec<u64> =
            self.outgoing.iter().filter(|(_, q)| now >= q.deadline).map(|(t, _)| *t).collect();
        for ltime in done {
            self.outgoing.remove(&ltime);
            self.effects.push(SerfEffect::QueryDone { ltime });
        }
        self.expire_incoming(now);
    }

    fn expire_incoming(&mut self, now: Instant) {
        self.incoming.retain(|_, q| now <= q.deadline);
    }

    /// The earliest deadline of a query we sent.
    pub(super) fn next_query_deadline(&self) -> Option<Instant> {
        self.outgoing.values().map(|q| q.deadline).min()
    }
}
