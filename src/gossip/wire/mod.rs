//! Codecs for the memberlist and Serf wire protocols. Pure: bytes in, values out — no sockets,
//! no clock, no tokio; randomness only for AES-GCM nonces and new keys.
//!
//! Layout: `memberlist` (memberlist message structs, [`Message`]), `serf` (Serf messages carried
//! as user payloads), `codec` (UDP packet framing, and stream framing re-exported from
//! `stream`), `lzw` (compression), `keyring` (AES-GCM keys), `tags` (Serf tags in node meta),
//! `error` ([`WireError`]). `msgpack` holds the private serde leniency for Go's encodings.
//! Must not import anything from the rest of muster; everything else imports from here.
//!
//! Golden bytes captured from real `serf agent`s are in `tests/fixtures/wire/` and checked by
//! `golden_tests`.

pub mod codec;
pub mod error;
pub mod keyring;
pub mod lzw;
pub mod memberlist;
mod msgpack;
pub mod serf;
mod stream;
pub mod tags;

#[cfg(test)]
mod codec_tests;
#[cfg(test)]
mod golden_tests;

pub use codec::{
    decode_packet, decode_stream, encode_packet, encode_packets, encode_stream, PacketOptions, Security,
    StreamMessage, MAX_COMPOUND_PARTS, UDP_BUFFER_BYTES,
};
pub use error::WireError;
pub use keyring::{decode_key, generate_key, Keyring, ENCRYPTION_VERSION, ENCRYPT_OVERHEAD_BYTES};
pub use lzw::{compress, decode_compress_msg, decompress, encode_compress_msg};
pub use memberlist::{
    Ack, Alive, Dead, ErrResp, IndirectPing, Message, MessageType, Nack, Ping, PushNodeState, PushPullHeader,
    Suspect, UserMsgHeader, HAS_LABEL,
};
pub use serf::{
    decode_ping_payload, decode_raw, encode_ping_payload, serf_type, SerfConflictMember, SerfCoordinate,
    SerfFilter, SerfJoin, SerfKeyRequest, SerfKeyResponse, SerfLeave, SerfMessage, SerfPushPull, SerfQuery,
    SerfQueryResponse, SerfRelayHeader, SerfUdpAddr, SerfUserEvent, SerfUserEventEntry, SerfUserEvents,
    PING_VERSION, QUERY_FLAG_ACK, QUERY_FLAG_NO_BROADCAST,
};
pub use stream::{MAX_PUSH_STATE_BYTES, MAX_PUSH_STATE_NODES};
pub use tags::{decode_tags, encode_tags, META_MAX_BYTES, TAG_MAGIC_BYTE};
