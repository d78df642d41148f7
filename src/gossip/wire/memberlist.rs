//! memberlist's message structs and the packet-level [`Message`] enum: one type byte, then a
//! msgpack map keyed by the Go field names. Upstream: hashicorp/memberlist `net.go` (`ping`,
//! `indirectPingReq`, `ackResp`, `nackResp`, `errResp`, `suspect`, `alive`, `dead`,
//! `pushPullHeader`, `pushNodeState`, `userMsgHeader`). Framing (compound, compress, CRC,
//! encryption, labels) lives in `codec`; this file knows only single plain messages.

use serde::{Deserialize, Serialize};

use super::error::WireError;
use super::msgpack::{self, bytes, string};

/// memberlist's message type byte. Append-only upstream: the numbers are the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    Ping = 0,
    IndirectPing = 1,
    Ack = 2,
    Suspect = 3,
    Alive = 4,
    Dead = 5,
    PushPull = 6,
    Compound = 7,
    User = 8,
    Compress = 9,
    Encrypt = 10,
    Nack = 11,
    HasCrc = 12,
    Err = 13,
}

/// First byte of a label header `[244][len u8][label]`; chosen to never collide with a type.
pub const HAS_LABEL: u8 = 244;

impl TryFrom<u8> for MessageType {
    type Error = WireError;

    fn try_from(b: u8) -> Result<Self, WireError> {
        use MessageType as T;
        Ok(match b {
            0 => T::Ping,
            1 => T::IndirectPing,
            2 => T::Ack,
            3 => T::Suspect,
            4 => T::Alive,
            5 => T::Dead,
            6 => T::PushPull,
            7 => T::Compound,
            8 => T::User,
            9 => T::Compress,
            10 => T::Encrypt,
            11 => T::Nack,
            12 => T::HasCrc,
            13 => T::Err,
            ty => return Err(WireError::UnknownType { context: "memberlist", ty }),
        })
    }
}

/// Direct probe. `source_*` are empty/zero when the sender wants the reply at the UDP source.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Ping {
    pub seq_no: u32,
    /// The name of the node we think we are probing; the receiver checks it.
    #[serde(deserialize_with = "string")]
    pub node: String,
    #[serde(with = "bytes", skip_serializing_if = "Vec::is_empty")]
    pub source_addr: Vec<u8>,
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub source_port: u16,
    #[serde(deserialize_with = "string", skip_serializing_if = "String::is_empty")]
    pub source_node: String,
}

/// Ask a peer to probe `target:port` for us; `nack` asks for a nack if it cannot reach it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct IndirectPing {
    pub seq_no: u32,
    #[serde(with = "bytes")]
    pub target: Vec<u8>,
    pub port: u16,
    #[serde(deserialize_with = "string")]
    pub node: String,
    pub nack: bool,
    #[serde(with = "bytes", skip_serializing_if = "Vec::is_empty")]
    pub source_addr: Vec<u8>,
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub source_port: u16,
    #[serde(deserialize_with = "string", skip_serializing_if = "String::is_empty")]
    pub source_node: String,
}

/// Answer to a ping; Serf puts `[1]` + its msgpack network coordinate in `payload`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Ack {
    pub seq_no: u32,
    #[serde(with = "bytes")]
    pub payload: Vec<u8>,
}

/// Sent by an indirect prober that got no ack in time.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Nack {
    pub seq_no: u32,
}

/// Error relayed over a stream (Go's `errResp`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ErrResp {
    #[serde(deserialize_with = "string")]
    pub error: String,
}

/// `from` suspects `node` at `incarnation`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Suspect {
    pub incarnation: u32,
    #[serde(deserialize_with = "string")]
    pub node: String,
    #[serde(deserialize_with = "string")]
    pub from: String,
}

/// `node` is alive at `incarnation`; also how a node joins and refutes suspicion.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Alive {
    pub incarnation: u32,
    #[serde(deserialize_with = "string")]
    pub node: String,
    /// 4 or 16 raw IP bytes.
    #[serde(with = "bytes")]
    pub addr: Vec<u8>,
    pub port: u16,
    /// Serf tags (see `tags`), at most 512 bytes.
    #[serde(with = "bytes")]
    pub meta: Vec<u8>,
    /// `[pmin, pmax, pcur, dmin, dmax, dcur]`.
    #[serde(with = "bytes")]
    pub vsn: Vec<u8>,
}

/// `from` declares `node` dead; `from == node` means the node left.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Dead {
    pub incarnation: u32,
    #[serde(deserialize_with = "string")]
    pub node: String,
    #[serde(deserialize_with = "string")]
    pub from: String,
}

/// First map of a push/pull stream: how many node states and user-state bytes follow.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct PushPullHeader {
    pub nodes: u32,
    pub user_state_len: u32,
    pub join: bool,
}

/// One member as carried in a push/pull.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct PushNodeState {
    #[serde(deserialize_with = "string")]
    pub name: String,
    #[serde(with = "bytes")]
    pub addr: Vec<u8>,
    pub port: u16,
    #[serde(with = "bytes")]
    pub meta: Vec<u8>,
    pub incarnation: u32,
    /// 0 alive, 1 suspect, 2 dead, 3 left.
    pub state: u8,
    #[serde(with = "bytes")]
    pub vsn: Vec<u8>,
}

/// Header of a user message sent over a stream; `user_msg_len` raw bytes follow.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct UserMsgHeader {
    pub user_msg_len: u32,
}

fn is_zero_u16(v: &u16) -> bool {
    *v == 0
}

/// One decoded packet-level message (after framing was removed).
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Ping(Ping),
    IndirectPing(IndirectPing),
    Ack(Ack),
    Nack(Nack),
    Suspect(Suspect),
    Alive(Alive),
    Dead(Dead),
    /// The payload after the type byte (for muster: a Serf message).
    User(Vec<u8>),
    Err(ErrResp),
}

impl Message {
    /// Its type byte.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Ping(_) => MessageType::Ping,
            Message::IndirectPing(_) => MessageType::IndirectPing,
            Message::Ack(_) => MessageType::Ack,
            Message::Nack(_) => MessageType::Nack,
            Message::Suspect(_) => MessageType::Suspect,
            Message::Alive(_) => MessageType::Alive,
            Message::Dead(_) => MessageType::Dead,
            Message::User(_) => MessageType::User,
            Message::Err(_) => MessageType::Err,
        }
    }

    /// Type byte + msgpack map; `User` is `[8]` + the raw payload.
    pub fn encode(&self) -> Vec<u8> {
        let ty = self.message_type() as u8;
        match self {
            Message::Ping(m) => msgpack::encode_typed(ty, m, "ping"),
            Message::IndirectPing(m) => msgpack::encode_typed(ty, m, "indirect ping"),
            Message::Ack(m) => msgpack::encode_typed(ty, m, "ack"),
            Message::Nack(m) => msgpack::encode_typed(ty, m, "nack"),
            Message::Suspect(m) => msgpack::encode_typed(ty, m, "suspect"),
            Message::Alive(m) => msgpack::encode_typed(ty, m, "alive"),
            Message::Dead(m) => msgpack::encode_typed(ty, m, "dead"),
            Message::Err(m) => msgpack::encode_typed(ty, m, "err"),
            Message::User(payload) => {
                let mut out = Vec::with_capacity(1 + payload.len());
                out.push(ty);
                out.extend_from_slice(payload);
                out
            }
        }
    }

    /// Decodes one plain message (no compound, compress, CRC, encryption or label).
    pub fn decode(buf: &[u8]) -> Result<Message, WireError> {
        let (&ty, body) = buf.split_first().ok_or(WireError::Empty { context: "memberlist message" })?;
        Ok(match MessageType::try_from(ty)? {
            MessageType::Ping => Message::Ping(msgpack::decode(body, "ping")?),
            MessageType::IndirectPing => Message::IndirectPing(msgpack::decode(body, "indirect ping")?),
            MessageType::Ack => Message::Ack(msgpack::decode(body, "ack")?),
            MessageType::Nack => Message::Nack(msgpack::decode(body, "nack")?),
            MessageType::Suspect => Message::Suspect(msgpack::decode(body, "suspect")?),
            MessageType::Alive => Message::Alive(msgpack::decode(body, "alive")?),
            MessageType::Dead => Message::Dead(msgpack::decode(body, "dead")?),
            MessageType::Err => Message::Err(msgpack::decode(body, "err")?),
            MessageType::User => Message::User(body.to_vec()),
            MessageType::PushPull
            | MessageType::Compound
            | MessageType::Compress
            | MessageType::Encrypt
            | MessageType::HasCrc => {
                return Err(WireError::UnexpectedType { context: "a plain packet message", ty })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        // Proves encode/decode are inverse for each variant, including empty fields.
        let msgs = vec![
            Message::Ping(Ping {
                seq_no: 7,
                node: "go1".into(),
                source_addr: vec![127, 0, 0, 1],
                source_port: 7946,
                source_node: "m1".into(),
            }),
            Message::Ping(Ping { seq_no: 8, node: "go1".into(), ..Default::default() }),
            Message::IndirectPing(IndirectPing {
                seq_no: 1,
                target: vec![10, 0, 0, 2],
                port: 7946,
                node: "b".into(),
                nack: true,
                ..Default::default()
            }),
            Message::Ack(Ack { seq_no: u32::MAX, payload: vec![1, 2, 3] }),
            Message::Nack(Nack { seq_no: 3 }),
            Message::Suspect(Suspect { incarnation: 2, node: "b".into(), from: "a".into() }),
            Message::Alive(Alive {
                incarnation: 1,
                node: "a".into(),
                addr: vec![127, 0, 0, 1],
                port: 7946,
                meta: vec![0xff, 0x80],
                vsn: vec![1, 5, 2, 2, 5, 4],
            }),
            Message::Dead(Dead { incarnation: 9, node: "a".into(), from: "a".into() }),
            Message::User(vec![3, 0x80]),
            Message::Err(ErrResp { error: "boom".into() }),
        ];
        for m in msgs {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn framing_types_and_garbage_are_rejected() {
        // Proves plain decoding refuses framing bytes, unknown types and empty input.
        assert!(matches!(Message::decode(&[7, 0]), Err(WireError::UnexpectedType { ty: 7, .. })));
        assert!(matches!(Message::decode(&[200]), Err(WireError::UnknownType { ty: 200, .. })));
        assert!(matches!(Message::decode(&[]), Err(WireError::Empty { .. })));
        assert!(Message::decode(&[0, 0xc1]).is_err());
        assert_eq!(MessageType::try_from(12).unwrap(), MessageType::HasCrc);
    }
}
