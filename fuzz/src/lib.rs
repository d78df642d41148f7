//! What the fuzz targets in `fuzz_targets/` share: the gossip [`Security`] a target picks by
//! its first input byte, and [`GossipNode`], a fresh set of the node's pure gossip cores that
//! handles decoded messages the way the gossip driver does. The seed corpora are written by
//! `seeds` (an ignored test: see its doc).
//!
//! Everything here calls muster's own functions (the ones the node calls on network bytes);
//! nothing re-implements a decoder.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use muster::gossip::coordinate::{CoordinateClient, CoordinateConfig};
use muster::gossip::serf::{QueryEvent, Serf, SerfConfig, SerfEffect, SerfEvent, INTERNAL_QUERY_PREFIX};
use muster::gossip::swim::{Effect, LocalNode, Swim, Timing};
use muster::gossip::wire::{
    decode_ping_payload, decode_raw, decode_tags, serf_type, Keyring, Message, PushNodeState, Security,
    SerfConflictMember, SerfFilter, SerfKeyRequest, SerfKeyResponse, SerfMessage, SerfRelayHeader,
};

#[cfg(test)]
mod seeds;

/// The label the keyed [`Security`] variants use.
pub const LABEL: &str = "fuzz-cluster";
/// Primary (AES-256) and secondary (AES-128) keys of the fuzz keyring, so decryption tries
/// more than one key and key size.
pub const PRIMARY_KEY: [u8; 32] = [0x5a; 32];
pub const SECONDARY_KEY: [u8; 16] = [0xa5; 16];

/// The fuzz keyring (built once).
pub fn keyring() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| match Keyring::new(PRIMARY_KEY.to_vec(), vec![SECONDARY_KEY.to_vec()]) {
        Ok(ring) => ring,
        Err(e) => panic!("the fuzz keyring is invalid: {e}"),
    })
}

/// Which [`Security`] an input is decoded under: its first byte modulo 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No label, no keyring: the plain decoders.
    Plain = 0,
    /// Label and keyring; plaintext still accepted (Go's default).
    Keyed = 1,
    /// Label and keyring; plaintext refused (`verify_incoming`).
    KeyedStrict = 2,
    /// Label only.
    Labelled = 3,
}

impl Mode {
    pub fn of(selector: u8) -> Mode {
        match selector % 4 {
            0 => Mode::Plain,
            1 => Mode::Keyed,
            2 => Mode::KeyedStrict,
            _ => Mode::Labelled,
        }
    }

    pub fn security(self) -> Security<'static> {
        match self {
            Mode::Plain => Security::default(),
            Mode::Keyed => Security { label: LABEL, keyring: Some(keyring()), verify_incoming: false },
            Mode::KeyedStrict => Security { label: LABEL, keyring: Some(keyring()), verify_incoming: true },
            Mode::Labelled => Security { label: LABEL, keyring: None, verify_incoming: false },
        }
    }
}

/// Bound on effect rounds per input: a message can cause effects that cause effects.
const PUMP_ROUNDS_MAX: usize = 8;

/// One node's gossip cores (memberlist state machine, Serf state machine, Vivaldi client),
/// new for every input so inputs do not influence each other.
pub struct GossipNode {
    pub swim: Swim,
    pub serf: Serf,
    pub coords: CoordinateClient,
    pub now: Instant,
}

impl GossipNode {
    pub fn new() -> GossipNode {
        let now = Instant::now();
        let local = LocalNode {
            name: "fuzz-node".into(),
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 7946,
            meta: Vec::new(),
        };
        let coords = match CoordinateClient::new(CoordinateConfig::default(), 1) {
            Ok(c) => c,
            Err(e) => panic!("the default coordinate config is invalid: {e}"),
        };
        GossipNode {
            swim: Swim::new(local, Timing::lan(), 1, now),
            serf: Serf::new("fuzz-node".into(), SerfConfig::default(), 1, now),
            coords,
            now,
        }
    }

    /// A message that arrived in a UDP packet (or a stream's user message), as the driver's
    /// `on_packet` hands it to swim, plus the decoders the node runs on its parts later.
    pub fn on_message(&mut self, from: SocketAddr, msg: Message) {
        match &msg {
            Message::Alive(a) => {
                decode_tags(&a.meta);
            }
            Message::Ack(a) if !a.payload.is_empty() => self.on_ack_payload(&a.payload),
            Message::User(payload) => serf_payload(payload),
            _ => {}
        }
        self.swim.handle_message(from, msg, self.now);
        self.pump();
    }

    /// A push/pull's remote state, as the driver's `merge` applies it.
    pub fn on_push_pull(&mut self, states: Vec<PushNodeState>, user_state: &[u8], join: bool) {
        for s in &states {
            decode_tags(&s.meta);
        }
        self.swim.merge_remote(states, self.now);
        self.pump();
        self.serf.merge_remote_state(user_state, join, self.now);
        self.pump();
    }

    /// A ping ack's payload: Serf's coordinate, as `coords::on_ping_complete` reads it.
    fn on_ack_payload(&mut self, payload: &[u8]) {
        if let Ok(theirs) = decode_ping_payload(payload) {
            let _ = self.coords.update("peer", &theirs, Duration::from_millis(3));
        }
    }

    /// Routes effects between the cores like the driver's `pump` (sockets left out).
    fn pump(&mut self) {
        for _ in 0..PUMP_ROUNDS_MAX {
            let swim_effects = self.swim.take_effects();
            let serf_effects = self.serf.take_effects();
            if swim_effects.is_empty() && serf_effects.is_empty() {
                return;
            }
            for e in swim_effects {
                match e {
                    Effect::Member(ev) => self.serf.handle_member_event(ev, self.now),
                    Effect::User(payload) => self.serf.handle_user_msg(&payload, self.now),
                    Effect::PingComplete { payload, .. } => self.on_ack_payload(&payload),
                    _ => {}
                }
            }
            for e in serf_effects {
                match e {
                    SerfEffect::Broadcast { key, payload } => self.swim.queue_user_broadcast(key, payload),
                    SerfEffect::Event(SerfEvent::Query(q)) => internal_query(&q),
                    _ => {}
                }
            }
        }
    }
}

impl Default for GossipNode {
    fn default() -> Self {
        GossipNode::new()
    }
}

/// Every decoder the node may run on one Serf payload (a memberlist user message), beyond the
/// Serf core's own `handle_user_msg`: the raw kinds' bodies, relay headers and their inner
/// message, query filters.
pub fn serf_payload(buf: &[u8]) {
    let Ok(msg) = SerfMessage::decode(buf) else { return };
    match msg {
        SerfMessage::Query(q) => {
            for raw in &q.filters {
                let _ = SerfFilter::decode(raw);
            }
            if q.name.starts_with(INTERNAL_QUERY_PREFIX) {
                key_request(&q.payload);
            }
        }
        SerfMessage::QueryResponse(r) => {
            // The asker of a key or conflict query reads the answer's payload.
            key_or_conflict_response(&r.payload);
        }
        SerfMessage::Relay(raw) => {
            if let Ok((_header, inner)) = SerfRelayHeader::decode_relay(&raw) {
                let _ = SerfMessage::decode(&inner);
            }
        }
        SerfMessage::KeyRequest(raw) => {
            let _ = decode_raw::<SerfKeyRequest>(&raw);
        }
        SerfMessage::KeyResponse(raw) => {
            let _ = decode_raw::<SerfKeyResponse>(&raw);
        }
        SerfMessage::ConflictResponse(raw) => {
            let _ = decode_raw::<Option<SerfConflictMember>>(&raw);
        }
        _ => {}
    }
}

/// An internal query that passed the filters, as the driver's `internal_query` answers it.
fn internal_query(q: &QueryEvent) {
    if q.name.starts_with(INTERNAL_QUERY_PREFIX) {
        key_request(&q.payload);
    }
}

/// A key query's payload and the keyring change it asks for (`change_keyring`), on a copy.
fn key_request(payload: &[u8]) {
    if let Some((&serf_type::KEY_REQUEST, body)) = payload.split_first() {
        if let Ok(req) = decode_raw::<SerfKeyRequest>(body) {
            let mut ring = keyring().clone();
            let _ = ring.install(req.key.clone());
            let _ = ring.use_key(&req.key);
            let _ = ring.remove(&req.key);
        }
    }
}

/// The answers to our key and conflict queries (`KeyOpResult::add`, `name_conflict`).
fn key_or_conflict_response(payload: &[u8]) {
    match payload.split_first() {
        Some((&serf_type::KEY_RESPONSE, body)) => {
            let _ = decode_raw::<SerfKeyResponse>(body);
        }
        Some((&serf_type::CONFLICT_RESPONSE, body)) => {
            let _ = decode_raw::<Option<SerfConflictMember>>(body);
        }
        _ => {}
    }
}
