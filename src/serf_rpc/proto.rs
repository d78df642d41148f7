//! The Serf RPC messages as they travel: command names, the error strings clients compare
//! against, request and response structs with Go's field names, and the member record. The
//! upstream definitions are `cmd/serf/command/agent/ipc.go` and `client/const.go` in
//! hashicorp/serf; the bytes were checked against Debian's `serf` 0.8.2 agent.
//!
//! Fields are declared in alphabetical order because that agent's encoder writes struct fields
//! sorted by name; with `rmp_serde::to_vec_named` we then send the same bytes. Collections that
//! a Go client may send as nil are `Option`s. Pure data: no sockets, no gossip.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::gossip::serf::{Member, SerfEvent};
use crate::gossip::wire::SerfCoordinate;
use crate::membership::{MemberInfo, MemberStatus};

/// The only IPC version Serf has.
pub const IPC_VERSION: i64 = 1;

pub const HANDSHAKE: &str = "handshake";
pub const AUTH: &str = "auth";
pub const EVENT: &str = "event";
pub const JOIN: &str = "join";
pub const MEMBERS: &str = "members";
pub const MEMBERS_FILTERED: &str = "members-filtered";
pub const STREAM: &str = "stream";
pub const STOP: &str = "stop";
pub const LEAVE: &str = "leave";
pub const STATS: &str = "stats";
pub const FORCE_LEAVE: &str = "force-leave";
pub const TAGS: &str = "tags";
pub const QUERY: &str = "query";
pub const RESPOND: &str = "respond";
pub const INSTALL_KEY: &str = "install-key";
pub const USE_KEY: &str = "use-key";
pub const REMOVE_KEY: &str = "remove-key";
pub const LIST_KEYS: &str = "list-keys";

/// `query` stream record types.
pub const QUERY_RECORD_ACK: &str = "ack";
pub const QUERY_RECORD_RESPONSE: &str = "response";
pub const QUERY_RECORD_DONE: &str = "done";
pub const GET_COORDINATE: &str = "get-coordinate";
pub const MONITOR: &str = "monitor";

/// Error strings, exactly as the Go agent sends them (clients compare some of them).
pub const UNSUPPORTED_COMMAND: &str = "Unsupported command";
pub const UNSUPPORTED_IPC_VERSION: &str = "Unsupported IPC version";
pub const DUPLICATE_HANDSHAKE: &str = "Handshake already performed";
pub const HANDSHAKE_REQUIRED: &str = "Handshake required";
pub const INVALID_FILTER: &str = "Invalid event filter";
pub const STREAM_EXISTS: &str = "Stream with given sequence exists";
pub const AUTH_REQUIRED: &str = "Authentication required";
pub const INVALID_AUTH_TOKEN: &str = "Invalid authentication token";
pub const INVALID_QUERY_ID: &str = "No pending queries matching ID";
pub const MONITOR_EXISTS: &str = "Monitor already exists";

/// What the agent does with a command name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Handshake,
    Auth,
    Event,
    Join,
    Members,
    MembersFiltered,
    Stream,
    Stop,
    Leave,
    Stats,
    ForceLeave,
    Tags,
    Query,
    Respond,
    InstallKey,
    UseKey,
    RemoveKey,
    ListKeys,
    GetCoordinate,
    Monitor,
    /// Not a Serf command at all.
    Unknown,
}

impl Command {
    pub fn parse(name: &str) -> Command {
        match name {
            HANDSHAKE => Command::Handshake,
            AUTH => Command::Auth,
            EVENT => Command::Event,
            JOIN => Command::Join,
            MEMBERS => Command::Members,
            MEMBERS_FILTERED => Command::MembersFiltered,
            STREAM => Command::Stream,
            STOP => Command::Stop,
            LEAVE => Command::Leave,
            STATS => Command::Stats,
            FORCE_LEAVE => Command::ForceLeave,
            TAGS => Command::Tags,
            QUERY => Command::Query,
            RESPOND => Command::Respond,
            INSTALL_KEY => Command::InstallKey,
            USE_KEY => Command::UseKey,
            REMOVE_KEY => Command::RemoveKey,
            LIST_KEYS => Command::ListKeys,
            GET_COORDINATE => Command::GetCoordinate,
            MONITOR => Command::Monitor,
            _ => Command::Unknown,
        }
    }

    /// The token scope a command needs when the node has `--tokens-file`: reading the
    /// cluster is `read`, sending events and queries `write`, changing membership, tags or
    /// keys (and listing keys) `operator`.
    pub fn needs(self) -> crate::tokens::Scope {
        use crate::tokens::Scope;
        match self {
            Command::Handshake
            | Command::Auth
            | Command::Members
            | Command::MembersFiltered
            | Command::Stream
            | Command::Stop
            | Command::Stats
            | Command::GetCoordinate
            | Command::Monitor
            | Command::Unknown => Scope::Read,
            Command::Event | Command::Query | Command::Respond => Scope::Write,
            Command::Join
            | Command::Leave
            | Command::ForceLeave
            | Command::Tags
            | Command::InstallKey
            | Command::UseKey
            | Command::RemoveKey
            | Command::ListKeys => Scope::Operator,
        }
    }

    /// Whether a request body follows the header (unknown commands: we cannot tell).
    pub fn has_body(self) -> bool {
        !matches!(
            self,
            Command::Members | Command::Leave | Command::Stats | Command::ListKeys | Command::Unknown
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RequestHeader {
    pub command: String,
    pub seq: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ResponseHeader {
    pub error: String,
    pub seq: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct HandshakeRequest {
    pub version: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct AuthRequest {
    pub auth_key: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct EventRequest {
    pub coalesce: bool,
    pub name: String,
    pub payload: Option<ByteBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct JoinRequest {
    pub existing: Option<Vec<String>>,
    pub replay: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct JoinResponse {
    pub num: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct MembersFilteredRequest {
    pub name: String,
    pub status: String,
    pub tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct MembersResponse {
    #[serde(deserialize_with = "nil_default")]
    pub members: Vec<MemberRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct StreamRequest {
    #[serde(rename = "Type")]
    pub kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct StopRequest {
    pub stop: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ForceLeaveRequest {
    pub node: String,
    pub prune: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct TagsRequest {
    pub delete_tags: Option<Vec<String>>,
    pub tags: Option<BTreeMap<String, String>>,
}

/// `query`; `Timeout` is a Go `time.Duration` (nanoseconds), 0 for the default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct QueryRequest {
    pub filter_nodes: Option<Vec<String>>,
    pub filter_tags: Option<BTreeMap<String, String>>,
    pub name: String,
    pub payload: Option<ByteBuf>,
    pub relay_factor: u8,
    pub request_ack: bool,
    pub timeout: i64,
}

/// One record of a `query` stream: an ack, a response, or the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct QueryRecord {
    pub from: String,
    pub payload: Option<ByteBuf>,
    #[serde(rename = "Type")]
    pub kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RespondRequest {
    #[serde(rename = "ID")]
    pub id: u64,
    #[serde(rename = "Payload")]
    pub payload: Option<ByteBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct KeyRequest {
    pub key: String,
}

/// The answer to the key commands; `Keys` only for `list-keys`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct KeyResponse {
    pub keys: Option<BTreeMap<String, i64>>,
    pub messages: Option<BTreeMap<String, String>>,
    pub num_err: i64,
    pub num_nodes: i64,
    pub num_resp: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CoordinateRequest {
    pub node: String,
}

/// Serf's `coordinate.Coordinate` as the RPC sends it (sorted fields; `Vec` is nil in the
/// zero coordinate of an unknown node). All values in seconds, as in Serf.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CoordinateRecord {
    pub adjustment: f64,
    pub error: f64,
    pub height: f64,
    pub vec: Option<Vec<f64>>,
}

impl From<SerfCoordinate> for CoordinateRecord {
    fn from(c: SerfCoordinate) -> Self {
        CoordinateRecord { adjustment: c.adjustment, error: c.error, height: c.height, vec: Some(c.vec) }
    }
}

impl From<CoordinateRecord> for SerfCoordinate {
    fn from(c: CoordinateRecord) -> Self {
        SerfCoordinate {
            vec: c.vec.unwrap_or_default(),
            error: c.error,
            adjustment: c.adjustment,
            height: c.height,
        }
    }
}

/// `get-coordinate`: `{Coord, Ok}`; an unknown node gets `Ok: false` and a zero coordinate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct CoordinateResponse {
    pub coord: CoordinateRecord,
    pub ok: bool,
}

impl CoordinateResponse {
    pub fn new(cached: Option<SerfCoordinate>) -> Self {
        match cached {
            Some(c) => CoordinateResponse { coord: c.into(), ok: true },
            None => CoordinateResponse::default(),
        }
    }
}

/// `monitor`: the lowest level to stream (`TRACE` … `ERR`, any case).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct MonitorRequest {
    pub log_level: String,
}

/// `{Log}`: one log line on a monitor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct LogRecord {
    pub log: String,
}

/// `stats`: section → key → value, all strings (what `serf info` prints).
pub type StatsResponse = BTreeMap<String, BTreeMap<String, String>>;

/// One member as Serf's RPC shows it. `Addr` is Go's `net.IP` bytes: the agent sends 4 bytes
/// for an IPv4 member (what memberlist stored) and 16 for IPv6.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct MemberRecord {
    pub addr: ByteBuf,
    pub delegate_cur: u8,
    pub delegate_max: u8,
    pub delegate_min: u8,
    pub name: String,
    pub port: u16,
    pub protocol_cur: u8,
    pub protocol_max: u8,
    pub protocol_min: u8,
    pub status: String,
    #[serde(deserialize_with = "nil_default")]
    pub tags: BTreeMap<String, String>,
}

impl MemberRecord {
    fn new(
        name: &str,
        addr: IpAddr,
        port: u16,
        tags: &BTreeMap<String, String>,
        status: MemberStatus,
        vsn: [u8; 6],
    ) -> Self {
        let addr = match addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        MemberRecord {
            addr: ByteBuf::from(addr),
            delegate_cur: vsn[5],
            delegate_max: vsn[4],
            delegate_min: vsn[3],
            name: name.to_string(),
            port,
            protocol_cur: vsn[2],
            protocol_max: vsn[1],
            protocol_min: vsn[0],
            status: status.as_str().to_string(),
            tags: tags.clone(),
        }
    }

    /// The address as an `IpAddr`, if it has 4 or 16 bytes.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.addr.len() {
            4 => <[u8; 4]>::try_from(self.addr.as_slice()).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(self.addr.as_slice()).ok().map(IpAddr::from),
            _ => None,
        }
    }
}

impl From<&MemberInfo> for MemberRecord {
    fn from(m: &MemberInfo) -> Self {
        MemberRecord::new(&m.name, m.addr, m.port, &m.tags, m.status, m.protocol)
    }
}

impl From<&Member> for MemberRecord {
    fn from(m: &Member) -> Self {
        MemberRecord::new(&m.name, m.addr, m.port, &m.tags, m.status, m.vsn)
    }
}

/// `{Event, Members}`: a member event on a stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct MemberEventRecord {
    pub event: String,
    #[serde(deserialize_with = "nil_default")]
    pub members: Vec<MemberRecord>,
}

/// `{Coalesce, Event: "user", LTime, Name, Payload}`: a user event on a stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserEventRecord {
    #[serde(rename = "Coalesce")]
    pub coalesce: bool,
    #[serde(rename = "Event")]
    pub event: String,
    #[serde(rename = "LTime")]
    pub ltime: u64,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Payload")]
    #[serde(deserialize_with = "nil_default")]
    pub payload: ByteBuf,
}

/// `{Event: "query", ID, LTime, Name, Payload}`: a query on a stream (`respond` is not served).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueryEventRecord {
    #[serde(rename = "Event")]
    pub event: String,
    #[serde(rename = "ID")]
    pub id: u64,
    #[serde(rename = "LTime")]
    pub ltime: u64,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Payload")]
    #[serde(deserialize_with = "nil_default")]
    pub payload: ByteBuf,
}

/// Any stream record, for clients: the fields of all three shapes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamRecord {
    #[serde(rename = "Coalesce")]
    pub coalesce: bool,
    #[serde(rename = "Event")]
    pub event: String,
    #[serde(rename = "ID")]
    pub id: u64,
    #[serde(rename = "LTime")]
    pub ltime: u64,
    #[serde(rename = "Members")]
    #[serde(deserialize_with = "nil_default")]
    pub members: Vec<MemberRecord>,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Payload")]
    #[serde(deserialize_with = "nil_default")]
    pub payload: ByteBuf,
}

/// Serf's name for an event type, as stream filters and records spell it.
pub fn event_type(e: &SerfEvent) -> &'static str {
    match e {
        SerfEvent::MemberJoin(_) => "member-join",
        SerfEvent::MemberLeave(_) => "member-leave",
        SerfEvent::MemberFailed(_) => "member-failed",
        SerfEvent::MemberUpdate(_) => "member-update",
        SerfEvent::MemberReap(_) => "member-reap",
        SerfEvent::User { .. } => "user",
        SerfEvent::Query(_) => "query",
    }
}

/// Reads nil (what Go sends for a nil slice or map) as the type's default.
fn nil_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A response header followed by an optional body, encoded as one write.
pub fn encode_response<B: Serialize>(
    seq: u64,
    error: &str,
    body: Option<&B>,
) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let mut out = rmp_serde::to_vec_named(&ResponseHeader { error: error.to_string(), seq })?;
    if let Some(b) = body {
        out.extend(rmp_serde::to_vec_named(b)?);
    }
    Ok(out)
}
