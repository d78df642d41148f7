//! Serf's messages, carried as memberlist user payloads: one Serf type byte, then a msgpack
//! map with the Go field names. Upstream (the table below mirrors it): hashicorp/serf
//! `serf/messages.go` (join, leave, pushPull, userEvent, query, queryResponse, relayHeader,
//! filters), `serf/serf.go` (`userEvents`), `serf/internal_query.go` (`nodeKeyResponse`),
//! `serf/keymanager.go` (`keyRequest`), `serf/ping_delegate.go` + `coordinate/` (ack payload).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::error::WireError;
use super::msgpack::{self, bytes, bytes_list, seq, string, string_list, string_map};

/// Serf type bytes (first byte of a memberlist user message).
pub mod serf_type {
    pub const LEAVE: u8 = 0;
    pub const JOIN: u8 = 1;
    pub const PUSH_PULL: u8 = 2;
    pub const USER_EVENT: u8 = 3;
    pub const QUERY: u8 = 4;
    pub const QUERY_RESPONSE: u8 = 5;
    pub const CONFLICT_RESPONSE: u8 = 6;
    pub const KEY_REQUEST: u8 = 7;
    pub const KEY_RESPONSE: u8 = 8;
    pub const RELAY: u8 = 9;
}

/// Query flag: every receiver that passes the filters acks.
pub const QUERY_FLAG_ACK: u32 = 1;
/// Query flag: do not re-broadcast.
pub const QUERY_FLAG_NO_BROADCAST: u32 = 2;
/// Ack payload version (`PingVersion`) that precedes the coordinate.
pub const PING_VERSION: u8 = 1;

/// `messageLeave`: `node` intends to leave at `l_time`; `prune` also forgets it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SerfLeave {
    pub l_time: u64,
    #[serde(deserialize_with = "string")]
    pub node: String,
    pub prune: bool,
}

/// `messageJoin`: associates `node` with member-clock time `l_time`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SerfJoin {
    pub l_time: u64,
    #[serde(deserialize_with = "string")]
    pub node: String,
}

/// `userEvent` inside the push/pull event buffer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SerfUserEventEntry {
    #[serde(deserialize_with = "string")]
    pub name: String,
    #[serde(with = "bytes")]
    pub payload: Vec<u8>,
}

/// `userEvents`: the events seen at one event-clock time.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SerfUserEvents {
    pub l_time: u64,
    #[serde(deserialize_with = "seq")]
    pub events: Vec<SerfUserEventEntry>,
}

/// `messagePushPull`: Serf's state, carried as memberlist push/pull user state.
/// Go sends its whole event ring (nil slots included); nil entries are dropped on decode.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SerfPushPull {
    pub l_time: u64,
    #[serde(deserialize_with = "string_map")]
    pub status_l_times: HashMap<String, u64>,
    #[serde(deserialize_with = "string_list")]
    pub left_members: Vec<String>,
    pub event_l_time: u64,
    #[serde(deserialize_with = "seq")]
    pub events: Vec<SerfUserEvents>,
    pub query_l_time: u64,
}

/// `messageUserEvent`; `cc` = may be coalesced.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SerfUserEvent {
    pub l_time: u64,
    #[serde(deserialize_with = "string")]
    pub name: String,
    #[serde(with = "bytes")]
    pub payload: Vec<u8>,
    #[serde(rename = "CC")]
    pub cc: bool,
}

/// `messageQuery`; `timeout` is a Go `time.Duration` in nanoseconds.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SerfQuery {
    pub l_time: u64,
    #[serde(rename = "ID")]
    pub id: u32,
    #[serde(with = "bytes")]
    pub addr: Vec<u8>,
    pub port: u16,
    #[serde(deserialize_with = "string")]
    pub source_node: String,
    /// Each filter is a [`SerfFilter`] encoding.
    #[serde(with = "bytes_list")]
    pub filters: Vec<Vec<u8>>,
    pub flags: u32,
    pub relay_factor: u8,
    pub timeout: i64,
    #[serde(deserialize_with = "string")]
    pub name: String,
    #[serde(with = "bytes")]
    pub payload: Vec<u8>,
}

/// `messageQueryResponse` (an ack when `flags` has [`QUERY_FLAG_ACK`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SerfQueryResponse {
    pub l_time: u64,
    #[serde(rename = "ID")]
    pub id: u32,
    #[serde(deserialize_with = "string")]
    pub from: String,
    pub flags: u32,
    #[serde(with = "bytes")]
    pub payload: Vec<u8>,
}

/// Go's `net.UDPAddr` as go-msgpack writes it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SerfUdpAddr {
    #[serde(rename = "IP", with = "bytes")]
    pub ip: Vec<u8>,
    #[serde(rename = "Port")]
    pub port: u16,
    #[serde(rename = "Zone", deserialize_with = "string")]
    pub zone: String,
}

/// `relayHeader`: where a relayed query response must finally go.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SerfRelayHeader {
    pub dest_addr: SerfUdpAddr,
    #[serde(deserialize_with = "string")]
    pub dest_name: String,
}

impl SerfRelayHeader {
    /// A whole relay message: `[9]` + this header + `inner` (an encoded Serf message).
    pub fn encode_relay(&self, inner: &[u8]) -> Vec<u8> {
        let mut out = msgpack::encode_typed(serf_type::RELAY, self, "relay header");
        out.extend_from_slice(inner);
        out
    }

    /// Splits the raw bytes of [`SerfMessage::Relay`] into the header and the inner message.
    pub fn decode_relay(raw: &[u8]) -> Result<(SerfRelayHeader, Vec<u8>), WireError> {
        let end = msgpack::value_len(raw, raw.len())?.ok_or(WireError::Truncated {
            context: "relay header",
            need: raw.len() + 1,
            have: raw.len(),
        })?;
        let header = msgpack::decode(&raw[..end], "relay header")?;
        Ok((header, raw[end..].to_vec()))
    }
}

/// A query filter: `[0]` + msgpack node list, or `[1]` + msgpack `{Tag, Expr}` (a regexp).
#[derive(Debug, Clone, PartialEq)]
pub enum SerfFilter {
    Nodes(Vec<String>),
    Tag { tag: String, expr: String },
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct FilterTag {
    #[serde(deserialize_with = "string")]
    tag: String,
    #[serde(deserialize_with = "string")]
    expr: String,
}

#[derive(Deserialize)]
struct NodeList(#[serde(deserialize_with = "string_list")] Vec<String>);

impl SerfFilter {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            SerfFilter::Nodes(nodes) => msgpack::encode_typed(0, nodes, "node filter"),
            SerfFilter::Tag { tag, expr } => {
                let f = FilterTag { tag: tag.clone(), expr: expr.clone() };
                msgpack::encode_typed(1, &f, "tag filter")
            }
        }
    }

    pub fn decode(buf: &[u8]) -> Result<SerfFilter, WireError> {
        match buf.split_first() {
            Some((0, body)) => Ok(SerfFilter::Nodes(msgpack::decode::<NodeList>(body, "node filter")?.0)),
            Some((1, body)) => {
                let f: FilterTag = msgpack::decode(body, "tag filter")?;
                Ok(SerfFilter::Tag { tag: f.tag, expr: f.expr })
            }
            Some((&ty, _)) => Err(WireError::UnknownType { context: "serf query filter", ty }),
            None => Err(WireError::Empty { context: "serf query filter" }),
        }
    }
}

/// `keyRequest`: payload of the internal `_serf_*-key` queries (raw of [`SerfMessage::KeyRequest`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SerfKeyRequest {
    #[serde(with = "bytes")]
    pub key: Vec<u8>,
}

/// `nodeKeyResponse`: a node's answer to a key query (raw of [`SerfMessage::KeyResponse`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SerfKeyResponse {
    pub result: bool,
    #[serde(deserialize_with = "string")]
    pub message: String,
    #[serde(deserialize_with = "string_list")]
    pub keys: Vec<String>,
    #[serde(deserialize_with = "string")]
    pub primary_key: String,
}

/// Go's `serf.Member` as a `_serf_conflict` answer carries it (raw of
/// [`SerfMessage::ConflictResponse`]; nil when the member is unknown). `status` is Serf's
/// `MemberStatus` number: none 0, alive 1, leaving 2, left 3, failed 4.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SerfConflictMember {
    #[serde(deserialize_with = "string")]
    pub name: String,
    #[serde(with = "bytes")]
    pub addr: Vec<u8>,
    pub port: u16,
    #[serde(deserialize_with = "string_map")]
    pub tags: HashMap<String, String>,
    pub status: i32,
    pub protocol_min: u8,
    pub protocol_max: u8,
    pub protocol_cur: u8,
    pub delegate_min: u8,
    pub delegate_max: u8,
    pub delegate_cur: u8,
}

/// Decodes the msgpack body of a raw Serf message (e.g. [`SerfKeyRequest`] from `KeyRequest`).
pub fn decode_raw<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, WireError> {
    msgpack::decode(raw, "serf message body")
}

/// Serf's Vivaldi coordinate (`coordinate.Coordinate`), sent in ping acks.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SerfCoordinate {
    #[serde(deserialize_with = "seq")]
    pub vec: Vec<f64>,
    pub error: f64,
    pub adjustment: f64,
    pub height: f64,
}

/// Ack payload: `[PING_VERSION]` + msgpack coordinate.
pub fn encode_ping_payload(coord: &SerfCoordinate) -> Vec<u8> {
    msgpack::encode_typed(PING_VERSION, coord, "coordinate")
}

/// Coordinate from an ack payload; an unknown version byte is an error.
pub fn decode_ping_payload(payload: &[u8]) -> Result<SerfCoordinate, WireError> {
    match payload.split_first() {
        Some((&PING_VERSION, body)) => msgpack::decode(body, "coordinate"),
        Some((&ty, _)) => Err(WireError::UnknownType { context: "serf ping payload version", ty }),
        None => Err(WireError::Empty { context: "serf ping payload" }),
    }
}

/// One Serf message. Conflict/key/relay messages are kept raw (bytes after the type byte).
#[derive(Debug, Clone, PartialEq)]
pub enum SerfMessage {
    Leave(SerfLeave),
    Join(SerfJoin),
    PushPull(SerfPushPull),
    UserEvent(SerfUserEvent),
    Query(SerfQuery),
    QueryResponse(SerfQueryResponse),
    ConflictResponse(Vec<u8>),
    KeyRequest(Vec<u8>),
    KeyResponse(Vec<u8>),
    Relay(Vec<u8>),
}

impl SerfMessage {
    /// Serf type byte + msgpack map (raw variants: type byte + raw bytes).
    pub fn encode(&self) -> Vec<u8> {
        use serf_type::*;
        let raw = |ty: u8, raw: &[u8]| {
            let mut out = Vec::with_capacity(1 + raw.len());
            out.push(ty);
            out.extend_from_slice(raw);
            out
        };
        match self {
            SerfMessage::Leave(m) => msgpack::encode_typed(LEAVE, m, "serf leave"),
            SerfMessage::Join(m) => msgpack::encode_typed(JOIN, m, "serf join"),
            SerfMessage::PushPull(m) => msgpack::encode_typed(PUSH_PULL, m, "serf push/pull"),
            SerfMessage::UserEvent(m) => msgpack::encode_typed(USER_EVENT, m, "serf user event"),
            SerfMessage::Query(m) => msgpack::encode_typed(QUERY, m, "serf query"),
            SerfMessage::QueryResponse(m) => msgpack::encode_typed(QUERY_RESPONSE, m, "serf query response"),
            SerfMessage::ConflictResponse(r) => raw(CONFLICT_RESPONSE, r),
            SerfMessage::KeyRequest(r) => raw(KEY_REQUEST, r),
            SerfMessage::KeyResponse(r) => raw(KEY_RESPONSE, r),
            SerfMessage::Relay(r) => raw(RELAY, r),
        }
    }

    /// Decodes a memberlist user payload.
    pub fn decode(buf: &[u8]) -> Result<SerfMessage, WireError> {
        use serf_type::*;
        let (&ty, body) = buf.split_first().ok_or(WireError::Empty { context: "serf message" })?;
        Ok(match ty {
            LEAVE => SerfMessage::Leave(msgpack::decode(body, "serf leave")?),
            JOIN => SerfMessage::Join(msgpack::decode(body, "serf join")?),
            PUSH_PULL => SerfMessage::PushPull(msgpack::decode(body, "serf push/pull")?),
            USER_EVENT => SerfMessage::UserEvent(msgpack::decode(body, "serf user event")?),
            QUERY => SerfMessage::Query(msgpack::decode(body, "serf query")?),
            QUERY_RESPONSE => SerfMessage::QueryResponse(msgpack::decode(body, "serf query response")?),
            CONFLICT_RESPONSE => SerfMessage::ConflictResponse(body.to_vec()),
            KEY_REQUEST => SerfMessage::KeyRequest(body.to_vec()),
            KEY_RESPONSE => SerfMessage::KeyResponse(body.to_vec()),
            RELAY => SerfMessage::Relay(body.to_vec()),
            ty => return Err(WireError::UnknownType { context: "serf", ty }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_filters_and_key_messages_round_trip() {
        // Proves the relay header, query filters and key query bodies encode as Go decodes them.
        let inner = SerfMessage::QueryResponse(SerfQueryResponse {
            l_time: 4,
            id: 9,
            from: "mu1".into(),
            flags: 0,
            payload: b"pong".to_vec(),
        })
        .encode();
        let header = SerfRelayHeader {
            dest_addr: SerfUdpAddr { ip: vec![127, 0, 0, 1], port: 7946, zone: String::new() },
            dest_name: "go1".into(),
        };
        let relay = header.encode_relay(&inner);
        let SerfMessage::Relay(raw) = SerfMessage::decode(&relay).unwrap() else { panic!("not a relay") };
        assert_eq!(SerfRelayHeader::decode_relay(&raw).unwrap(), (header, inner));

        for f in [
            SerfFilter::Nodes(vec!["a".into(), "b".into()]),
            SerfFilter::Tag { tag: "role".into(), expr: "^web$".into() },
        ] {
            assert_eq!(SerfFilter::decode(&f.encode()).unwrap(), f);
        }
        assert!(SerfFilter::decode(&[7]).is_err());

        let req = SerfKeyRequest { key: vec![1; 32] };
        let msg = SerfMessage::KeyRequest(rmp_serde::to_vec_named(&req).unwrap());
        let SerfMessage::KeyRequest(raw) = SerfMessage::decode(&msg.encode()).unwrap() else { panic!() };
        assert_eq!(decode_raw::<SerfKeyRequest>(&raw).unwrap(), req);
        assert!(matches!(SerfMessage::decode(&[42]), Err(WireError::UnknownType { ty: 42, .. })));
        assert!(decode_ping_payload(&[2, 0x80]).is_err());
    }

    #[test]
    fn push_pull_tolerates_go_nils() {
        // Proves nil maps/lists and nil event-ring slots (as Go sends them) decode to empty values.
        // {"LTime": 1, "StatusLTimes": nil, "LeftMembers": nil, "Events": [nil, {"LTime": 2, "Events": nil}]}
        let mut buf = vec![PUSH_PULL_TY, 0x84, 0xa5];
        buf.extend_from_slice(b"LTime\x01\xacStatusLTimes\xc0\xabLeftMembers\xc0\xa6Events\x92\xc0\x82");
        buf.extend_from_slice(b"\xa5LTime\x02\xa6Events\xc0");
        let SerfMessage::PushPull(pp) = SerfMessage::decode(&buf).unwrap() else { panic!() };
        assert_eq!(pp.l_time, 1);
        assert!(pp.status_l_times.is_empty() && pp.left_members.is_empty());
        assert_eq!(pp.events, vec![SerfUserEvents { l_time: 2, events: vec![] }]);
    }

    const PUSH_PULL_TY: u8 = serf_type::PUSH_PULL;
}
