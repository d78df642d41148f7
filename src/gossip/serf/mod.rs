//! Serf's layer over memberlist, as a pure state machine: the three Lamport clocks, join and
//! leave intents, tags, user events with de-duplication, push/pull state, and reaping.
//!
//! Inputs: member events from `swim`, Serf payloads from user messages and push/pull, calls
//! from the node (user events, leave). Outputs: [`SerfEffect`]s (broadcasts to queue, events
//! to publish, reconnect attempts). Time is an argument. Must not import `gossip::net`.

mod clock;
mod events;
mod intents;
mod query;
pub mod snapshot;

pub use clock::LamportClock;
pub use events::EventBuffer;
pub use query::{
    QueryEvent, QueryKey, QueryParams, QueryReply, INTERNAL_QUERY_PREFIX, QUERY_RESPONSE_SIZE_LIMIT,
    QUERY_SIZE_LIMIT,
};

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::gossip::swim::{MemberEvent, Node, NodeState};
use crate::gossip::wire::{
    decode_tags, SerfJoin, SerfLeave, SerfMessage, SerfPushPull, SerfUserEvent, SerfUserEvents,
};
use crate::membership::{MemberInfo, MemberStatus, Mode};
use intents::{IntentKind, Intents};

/// Go's `UserEventSizeLimit` hard cap (the configurable limit defaults to 512).
pub const USER_EVENT_SIZE_SANE_LIMIT: usize = 9 * 1024;

/// Serf-level settings (Go's `serf.DefaultConfig`).
#[derive(Debug, Clone)]
pub struct SerfConfig {
    /// Largest name + payload of a user event, before and after encoding.
    pub user_event_size_limit: usize,
    /// User events remembered for de-duplication, by Lamport time.
    pub event_buffer: usize,
    /// Queries remembered for de-duplication.
    pub query_buffer: usize,
    /// How often failed and left members are checked for reaping.
    pub reap_interval: Duration,
    /// How often we try to reconnect to a failed member.
    pub reconnect_interval: Duration,
    /// A failed member is forgotten after this long.
    pub reconnect_timeout: Duration,
    /// A left member is forgotten after this long.
    pub tombstone_timeout: Duration,
    /// Intents about members we do not know yet are kept this long.
    pub recent_intent_timeout: Duration,
}

impl Default for SerfConfig {
    fn default() -> Self {
        SerfConfig {
            user_event_size_limit: 512,
            event_buffer: 512,
            query_buffer: 512,
            reap_interval: Duration::from_secs(15),
            reconnect_interval: Duration::from_secs(30),
            reconnect_timeout: Duration::from_secs(24 * 3600),
            tombstone_timeout: Duration::from_secs(24 * 3600),
            recent_intent_timeout: Duration::from_secs(5 * 60),
        }
    }
}

/// Errors a caller of the Serf core can get.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SerfError {
    #[error("user event exceeds the configured limit of {limit} bytes (name + payload is {size} bytes)")]
    UserEventTooLarge { size: usize, limit: usize },
    #[error("encoded user event exceeds the configured limit of {limit} bytes (encoded size {size} bytes)")]
    EncodedUserEventTooLarge { size: usize, limit: usize },
    #[error("user event name must not be empty")]
    EmptyEventName,
    #[error("query name must not be empty")]
    EmptyQueryName,
    #[error("query exceeds limit of {limit} bytes (encoded size {size} bytes)")]
    QueryTooLarge { size: usize, limit: usize },
    #[error("invalid regexp in the query filter for tag {tag:?}: {reason}")]
    BadTagFilter { tag: String, reason: String },
    #[error("response exceeds limit of {limit} bytes (encoded size {size} bytes)")]
    ResponseTooLarge { size: usize, limit: usize },
    #[error("response already sent")]
    ResponseAlreadySent,
    #[error("response is past the deadline")]
    ResponsePastDeadline,
    #[error("no pending query with that id (it ended or was never received)")]
    NoSuchQuery,
    #[error("no member named {0:?} is known")]
    UnknownMember(String),
    #[error("gossip has not started yet")]
    NotStarted,
}

/// A member as Serf tracks it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub name: String,
    pub addr: IpAddr,
    pub port: u16,
    pub tags: BTreeMap<String, String>,
    pub status: MemberStatus,
    pub vsn: [u8; 6],
    pub incarnation: u32,
    pub status_ltime: u64,
    /// When it failed or left (for reaping).
    pub leave_time: Option<Instant>,
}

impl Member {
    pub fn info(&self, now: Instant) -> MemberInfo {
        MemberInfo {
            name: self.name.clone(),
            addr: self.addr,
            port: self.port,
            tags: self.tags.clone(),
            status: self.status,
            protocol: self.vsn,
            incarnation: self.incarnation,
            // An alive member is seen now (probes would have said otherwise); others were
            // last seen when they failed or left.
            last_seen_ms_ago: match (self.status, self.leave_time) {
                (MemberStatus::Alive, _) | (_, None) => 0,
                (_, Some(t)) => now.saturating_duration_since(t).as_millis() as u64,
            },
            mode: Mode::Unknown,
        }
    }
}

/// Events Serf publishes (what `serf monitor` and event handlers see).
#[derive(Debug, Clone, PartialEq)]
pub enum SerfEvent {
    MemberJoin(Member),
    MemberLeave(Member),
    MemberFailed(Member),
    MemberUpdate(Member),
    MemberReap(Member),
    User { ltime: u64, name: String, payload: Vec<u8>, coalesce: bool },
    Query(QueryEvent),
}

impl SerfEvent {
    /// The member a member event is about (`None` for user events and queries).
    pub fn member(&self) -> Option<&Member> {
        match self {
            SerfEvent::MemberJoin(m)
            | SerfEvent::MemberLeave(m)
            | SerfEvent::MemberFailed(m)
            | SerfEvent::MemberUpdate(m)
            | SerfEvent::MemberReap(m) => Some(m),
            SerfEvent::User { .. } | SerfEvent::Query(_) => None,
        }
    }
}

/// Something the driver must do for the Serf core.
#[derive(Debug, Clone, PartialEq)]
pub enum SerfEffect {
    /// Queue this Serf payload on the gossip broadcast queue.
    Broadcast { key: Option<String>, payload: Vec<u8> },
    /// Publish an event.
    Event(SerfEvent),
    /// Try to rejoin a failed member at this address.
    Reconnect(SocketAddr),
    /// Send this Serf payload straight to an address (memberlist's `SendToAddress`).
    SendTo { to: SocketAddr, payload: Vec<u8> },
    /// An ack or response to our query sent at query time `ltime`.
    QueryReply { ltime: u64, reply: QueryReply },
    /// Our query sent at `ltime` reached its deadline.
    QueryDone { ltime: u64 },
}

/// The Serf state machine.
pub struct Serf {
    name: String,
    config: SerfConfig,
    clock: LamportClock,
    event_clock: LamportClock,
    query_clock: LamportClock,
    members: BTreeMap<String, Member>,
    intents: Intents,
    events: EventBuffer,
    queries_seen: HashMap<u64, Vec<u32>>,
    outgoing: BTreeMap<u64, query::Outgoing>,
    incoming: HashMap<QueryKey, query::Incoming>,
    /// Members to erase (a pruning force-leave of a leaving member) once their leave is done.
    prunes: Vec<(Instant, String)>,
    event_min_time: u64,
    query_min_time: u64,
    /// Ignore events carried by a join's push/pull (Serf's default, `-replay` off).
    ignore_old_events: bool,
    leaving: bool,
    next_reap: Instant,
    next_reconnect: Instant,
    rng: StdRng,
    effects: Vec<SerfEffect>,
}

impl Serf {
    pub fn new(name: String, config: SerfConfig, seed: u64, now: Instant) -> Serf {
        Serf {
            name,
            events: EventBuffer::new(config.event_buffer.max(1)),
            next_reap: now + config.reap_interval,
            next_reconnect: now + config.reconnect_interval,
            config,
            clock: LamportClock::default(),
            event_clock: LamportClock::default(),
            query_clock: LamportClock::default(),
            members: BTreeMap::new(),
            intents: Intents::default(),
            queries_seen: HashMap::new(),
            outgoing: BTreeMap::new(),
            incoming: HashMap::new(),
            prunes: Vec::new(),
            event_min_time: 0,
            query_min_time: 0,
            ignore_old_events: true,
            leaving: false,
            rng: StdRng::seed_from_u64(seed ^ 0x5e7f),
            effects: Vec::new(),
        }
    }

    pub fn take_effects(&mut self) -> Vec<SerfEffect> {
        std::mem::take(&mut self.effects)
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.get(name)
    }

    /// The three clocks: member, event, query.
    pub fn clocks(&self) -> (u64, u64, u64) {
        (self.clock.time(), self.event_clock.time(), self.query_clock.time())
    }

    /// Restores clocks from a snapshot so a restarted node does not reuse Lamport times.
    pub fn restore_clocks(&mut self, member: u64, event: u64, query: u64) {
        self.clock.witness(member);
        self.event_clock.witness(event);
        self.query_clock.witness(query);
        // Events up to the snapshot were already delivered before the restart.
        self.event_min_time = self.event_min_time.max(event);
        self.query_min_time = self.query_min_time.max(query);
    }

    pub fn set_ignore_old_events(&mut self, ignore: bool) {
        self.ignore_old_events = ignore;
    }

    pub fn next_deadline(&self) -> Instant {
        let mut t = self.next_reap.min(self.next_reconnect);
        if let Some(q) = self.next_query_deadline() {
            t = t.min(q);
        }
        if let Some(p) = self.prunes.iter().map(|(t, _)| *t).min() {
            t = t.min(p);
        }
        t
    }

    fn broadcast(&mut self, key: Option<String>, msg: &SerfMessage) {
        self.effects.push(SerfEffect::Broadcast { key, payload: msg.encode() });
    }

    fn emit(&mut self, e: SerfEvent) {
        self.effects.push(SerfEffect::Event(e));
    }

    /// A member change reported by memberlist.
    pub fn handle_member_event(&mut self, ev: MemberEvent, now: Instant) {
        match ev {
            MemberEvent::Join(n) => self.node_join(n),
            MemberEvent::Update(n) => self.node_update(n),
            MemberEvent::Leave(n) => self.node_leave(n, now),
        }
    }

    fn node_join(&mut self, n: Node) {
        let tags = decode_tags(&n.meta);
        let member = match self.members.get_mut(&n.name) {
            Some(m) => {
                m.status = MemberStatus::Alive;
                m.leave_time = None;
                m.addr = n.addr;
                m.port = n.port;
                m.tags = tags;
                m.vsn = n.vsn;
                m.incarnation = n.incarnation;
                m.clone()
            }
            None => {
                let mut m = Member {
                    name: n.name.clone(),
                    addr: n.addr,
                    port: n.port,
                    tags,
                    status: MemberStatus::Alive,
                    vsn: n.vsn,
                    incarnation: n.incarnation,
                    status_ltime: 0,
                    leave_time: None,
                };
                if let Some(t) = self.intents.take(&n.name, IntentKind::Join) {
                    m.status_ltime = t;
                }
                if let Some(t) = self.intents.take(&n.name, IntentKind::Leave) {
                    m.status = MemberStatus::Leaving;
                    m.status_ltime = t;
                }
                self.members.insert(n.name.clone(), m.clone());
                m
            }
        };
        tracing::info!(member = %member.name, peer.addr = %member.addr, "serf: member joined");
        self.emit(SerfEvent::MemberJoin(member));
    }

    fn node_update(&mut self, n: Node) {
        let Some(m) = self.members.get_mut(&n.name) else { return };
        m.addr = n.addr;
        m.port = n.port;
        m.tags = decode_tags(&n.meta);
        m.vsn = n.vsn;
        m.incarnation = n.incarnation;
        let m = m.clone();
        tracing::info!(member = %m.name, "serf: member updated");
        self.emit(SerfEvent::MemberUpdate(m));
    }

    fn node_leave(&mut self, n: Node, now: Instant) {
        let Some(m) = self.members.get_mut(&n.name) else { return };
        let left = match m.status {
            MemberStatus::Leaving => true,
            MemberStatus::Alive => n.state == NodeState::Left,
            _ => return,
        };
        m.status = if left { MemberStatus::Left } else { MemberStatus::Failed };
        m.leave_time = Some(now);
        m.incarnation = n.incarnation;
        let m = m.clone();
        if left {
            tracing::info!(member = %m.name, "serf: member left");
            self.emit(SerfEvent::MemberLeave(m));
        } else {
            tracing::info!(member = %m.name, "serf: member failed");
            self.emit(SerfEvent::MemberFailed(m));
        }
    }

    /// A Serf payload from a memberlist user message.
    pub fn handle_user_msg(&mut self, buf: &[u8], now: Instant) {
        let msg = match SerfMessage::decode(buf) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "serf: dropping an undecodable message");
                return;
            }
        };
        match msg {
            SerfMessage::Join(j) => {
                if self.join_intent(&j, now) {
                    self.broadcast(None, &SerfMessage::Join(j));
                }
            }
            SerfMessage::Leave(l) => {
                if self.leave_intent(&l, now) {
                    self.broadcast(None, &SerfMessage::Leave(l));
                }
            }
            SerfMessage::UserEvent(e) => {
                if self.user_event_in(&e) {
                    self.broadcast(None, &SerfMessage::UserEvent(e));
                }
            }
            SerfMessage::Query(q) => {
                if self.query_in(&q, now) {
                    self.broadcast(None, &SerfMessage::Query(q));
                }
            }
            SerfMessage::QueryResponse(r) => self.query_response_in(r, now),
            SerfMessage::Relay(raw) => self.relay_in(&raw),
            SerfMessage::PushPull(pp) => self.merge_push_pull(pp, false, now),
            other => tracing::debug!(kind = ?std::mem::discriminant(&other), "serf: ignoring message kind"),
        }
    }

    fn join_intent(&mut self, j: &SerfJoin, now: Instant) -> bool {
        self.clock.witness(j.l_time);
        let Some(m) = self.members.get_mut(&j.node) else {
            return self.intents.upsert(&j.node, IntentKind::Join, j.l_time, now);
        };
        if j.l_time <= m.status_ltime {
            return false;
        }
        m.status_ltime = j.l_time;
        if m.status == MemberStatus::Leaving {
            m.status = MemberStatus::Alive;
        }
        true
    }

    fn leave_intent(&mut self, l: &SerfLeave, now: Instant) -> bool {
        self.clock.witness(l.l_time);
        let Some(m) = self.members.get(&l.node) else {
            return self.intents.upsert(&l.node, IntentKind::Leave, l.l_time, now);
        };
        if l.l_time <= m.status_ltime {
            return false;
        }
        if l.node == self.name && !self.leaving {
            tracing::debug!("serf: refuting an older leave intent");
            self.broadcast_join();
            return false;
        }
        let Some(m) = self.members.get_mut(&l.node) else { return false };
        m.status_ltime = l.l_time;
        let forward = match m.status {
            MemberStatus::Alive => {
                m.status = MemberStatus::Leaving;
                true
            }
            MemberStatus::Failed => {
                m.status = MemberStatus::Left;
                let m = m.clone();
                tracing::info!(member = %m.name, "serf: member left (forced)");
                self.emit(SerfEvent::MemberLeave(m));
                true
            }
            MemberStatus::Leaving | MemberStatus::Left => true,
            MemberStatus::None => false,
        };
        if forward && l.prune {
            self.prune(&l.node, now);
        }
        forward
    }

    /// Forgets a member for good: at once when it has left or failed; a leaving member first
    /// gets the time a graceful leave takes (Serf's broadcast timeout + propagation delay).
    fn prune(&mut self, name: &str, now: Instant) {
        match self.members.get(name).map(|m| m.status) {
            Some(MemberStatus::Leaving) => self.prunes.push((now + PRUNE_LEAVING_DELAY, name.to_string())),
            Some(_) => self.erase(name),
            None => {}
        }
    }

    fn run_prunes(&mut self, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.prunes).into_iter().partition(|(t, _)| *t <= now);
        self.prunes = later;
        for (_, name) in due {
            self.erase(&name);
        }
    }

    fn erase(&mut self, name: &str) {
        if let Some(m) = self.members.remove(name) {
            tracing::info!(member = %m.name, peer.addr = %m.addr, "serf: member reaped (forced)");
            self.emit(SerfEvent::MemberReap(m));
        }
    }

    /// Serf's force-leave: marks a failed member left (so nobody reconnects to it), and with
    /// `prune` erases it from every member list at once.
    pub fn force_leave(&mut self, node: &str, prune: bool, now: Instant) -> Result<(), SerfError> {
        if !self.members.contains_key(node) {
            return Err(SerfError::UnknownMember(node.to_string()));
        }
        // A fresh time (Serf sends the current one, then ticks): newer than any status seen.
        let l = SerfLeave { l_time: self.clock.increment(), node: node.to_string(), prune };
        tracing::info!(member = %node, prune, "serf: force-leaving a member");
        self.leave_intent(&l, now);
        self.broadcast(None, &SerfMessage::Leave(l));
        Ok(())
    }

    /// Announces (or re-announces) that we are a member, with a fresh member-clock time.
    pub fn broadcast_join(&mut self) {
        let j = SerfJoin { l_time: self.clock.time(), node: self.name.clone() };
        self.clock.witness(j.l_time);
        if let Some(m) = self.members.get_mut(&self.name) {
            if j.l_time > m.status_ltime {
                m.status_ltime = j.l_time;
            }
        }
        self.broadcast(None, &SerfMessage::Join(j));
    }

    /// Starts a graceful leave: the leave intent goes out first (memberlist's leave follows).
    pub fn leave(&mut self, now: Instant) {
        self.leaving = true;
        let l = SerfLeave { l_time: self.clock.time(), node: self.name.clone(), prune: false };
        self.leave_intent(&l, now);
        self.broadcast(Some(LEAVE_KEY.to_string()), &SerfMessage::Leave(l));
    }

    /// Sends a user event to the cluster.
    pub fn user_event(&mut self, name: &str, payload: &[u8], coalesce: bool) -> Result<(), SerfError> {
        if name.is_empty() {
            return Err(SerfError::EmptyEventName);
        }
        let size = name.len() + payload.len();
        let limit = self.config.user_event_size_limit.min(USER_EVENT_SIZE_SANE_LIMIT);
        if size > limit {
            return Err(SerfError::UserEventTooLarge { size, limit });
        }
        let e = SerfUserEvent {
            l_time: self.event_clock.time(),
            name: name.to_string(),
            payload: payload.to_vec(),
            cc: coalesce,
        };
        let msg = SerfMessage::UserEvent(e.clone());
        let encoded = msg.encode().len();
        if encoded > limit {
            return Err(SerfError::EncodedUserEventTooLarge { size: encoded, limit });
        }
        self.event_clock.increment();
        self.user_event_in(&e);
        self.broadcast(None, &msg);
        Ok(())
    }

    /// Records a received user event; true when it is new (and so re-broadcast).
    fn user_event_in(&mut self, e: &SerfUserEvent) -> bool {
        self.event_clock.witness(e.l_time);
        if e.l_time < self.event_min_time {
            return false;
        }
        let cur = self.event_clock.time();
        let window = self.events.capacity() as u64;
        if cur > window && e.l_time < cur - window {
            tracing::warn!(event = %e.name, ltime = e.l_time, current = cur, "serf: dropping an event older than the event buffer");
            return false;
        }
        if !self.events.add(e.l_time, &e.name, &e.payload) {
            return false;
        }
        self.emit(SerfEvent::User {
            ltime: e.l_time,
            name: e.name.clone(),
            payload: e.payload.clone(),
            coalesce: e.cc,
        });
        true
    }

    /// Our state for a push/pull, encoded as Serf's push/pull message.
    pub fn local_state(&self) -> Vec<u8> {
        let pp = SerfPushPull {
            l_time: self.clock.time(),
            status_l_times: self.members.values().map(|m| (m.name.clone(), m.status_ltime)).collect(),
            left_members: self
                .members
                .values()
                .filter(|m| m.status == MemberStatus::Left)
                .map(|m| m.name.clone())
                .collect(),
            event_l_time: self.event_clock.time(),
            events: self.events.all(),
            query_l_time: self.query_clock.time(),
        };
        SerfMessage::PushPull(pp).encode()
    }

    /// Merges a remote push/pull user state; `join` when it came with a join.
    pub fn merge_remote_state(&mut self, buf: &[u8], join: bool, now: Instant) {
        if buf.is_empty() {
            return;
        }
        match SerfMessage::decode(buf) {
            Ok(SerfMessage::PushPull(pp)) => self.merge_push_pull(pp, join, now),
            Ok(_) => tracing::warn!("serf: push/pull state was not a push/pull message"),
            Err(e) => tracing::warn!(error = %e, "serf: dropping undecodable push/pull state"),
        }
    }

    fn merge_push_pull(&mut self, pp: SerfPushPull, join: bool, now: Instant) {
        if pp.l_time > 0 {
            self.clock.witness(pp.l_time - 1);
        }
        if pp.event_l_time > 0 {
            self.event_clock.witness(pp.event_l_time - 1);
        }
        if pp.query_l_time > 0 {
            self.query_clock.witness(pp.query_l_time - 1);
        }
        // A left member's status time is the time of its leave as the remote knows it. Taken as
        // it is (as Serf does), a remote that has not yet seen a rejoin cannot mark the member
        // leaving again: its rejoin's join time is at least as new.
        for name in &pp.left_members {
            let t = pp.status_l_times.get(name).copied().unwrap_or(0);
            self.leave_intent(&SerfLeave { l_time: t, node: name.clone(), prune: false }, now);
        }
        for (name, t) in &pp.status_l_times {
            if pp.left_members.contains(name) {
                continue;
            }
            self.join_intent(&SerfJoin { l_time: *t, node: name.clone() }, now);
        }
        if join && self.ignore_old_events && pp.event_l_time > self.event_min_time {
            self.event_min_time = pp.event_l_time;
        }
        for batch in pp.events {
            let SerfUserEvents { l_time, events } = batch;
            for e in events {
                let ue = SerfUserEvent { l_time, name: e.name, payload: e.payload, cc: false };
                self.user_event_in(&ue);
            }
        }
    }

    /// Periodic work: reaping and reconnect attempts.
    pub fn tick(&mut self, now: Instant) {
        self.expire_queries(now);
        self.run_prunes(now);
        if now >= self.next_reap {
            self.next_reap = now + self.config.reap_interval;
            self.reap(now);
        }
        if now >= self.next_reconnect {
            self.next_reconnect = now + self.config.reconnect_interval;
            self.reconnect();
        }
    }

    fn reap(&mut self, now: Instant) {
        let (failed_ttl, left_ttl) = (self.config.reconnect_timeout, self.config.tombstone_timeout);
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| match (m.status, m.leave_time) {
                (MemberStatus::Failed, Some(t)) => now.saturating_duration_since(t) > failed_ttl,
                (MemberStatus::Left, Some(t)) => now.saturating_duration_since(t) > left_ttl,
                _ => false,
            })
            .map(|m| m.name.clone())
            .collect();
        for name in gone {
            if let Some(m) = self.members.remove(&name) {
                tracing::info!(member = %m.name, status = %m.status, "serf: reaping member");
                self.emit(SerfEvent::MemberReap(m));
            }
        }
        self.intents.reap(now, self.config.recent_intent_timeout);
    }

    fn reconnect(&mut self) {
        let failed: Vec<SocketAddr> = self
            .members
            .values()
            .filter(|m| m.status == MemberStatus::Failed)
            .map(|m| SocketAddr::new(m.addr, m.port))
            .collect();
        if failed.is_empty() {
            return;
        }
        let alive = self.members.values().filter(|m| m.status == MemberStatus::Alive).count().max(1);
        // Like Serf: the chance to try shrinks as the healthy part of the cluster grows.
        let prob = failed.len() as f64 / alive as f64;
        if self.rng.random_range(0.0..1.0) > prob {
            return;
        }
        let pick = failed[self.rng.random_range(0..failed.len())];
        self.effects.push(SerfEffect::Reconnect(pick));
    }

    /// The view other layers read.
    pub fn member_infos(&self, now: Instant) -> Vec<MemberInfo> {
        self.members.values().map(|m| m.info(now)).collect()
    }
}

/// How long a pruning force-leave waits for a leaving member to finish (Serf: 5 s + 1 s).
const PRUNE_LEAVING_DELAY: Duration = Duration::from_secs(6);

/// The broadcast key of our own leave intent, so the driver can wait for it to go out.
pub const LEAVE_KEY: &str = "serf-leave-intent";

#[cfg(test)]
mod tests;

#[cfg(test)]
mod query_tests;
