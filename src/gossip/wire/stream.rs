//! Stream framing for memberlist's TCP side (one message per connection direction): label
//! header, optional `[10][len u32][vsn][nonce][ct+tag]` encryption, optional `[9]{Algo,Buf}`
//! compression, then push/pull, ping, ack, user or err. Decoding is incremental: `None` until
//! the buffer holds a whole message. Upstream: hashicorp/memberlist `net.go` (`readStream`,
//! `sendLocalState`, `readRemoteState`, `encryptLocalState`, `readUserMsg`). Re-exported by `codec`.

use super::codec::{label_header, strip_label, Security};
use super::error::WireError;
use super::keyring::{ENCRYPTION_VERSION, ENCRYPT_OVERHEAD_BYTES};
use super::lzw;
use super::memberlist::{
    Ack, ErrResp, MessageType, Ping, PushNodeState, PushPullHeader, UserMsgHeader, HAS_LABEL,
};
use super::msgpack;

/// Go's `maxPushStateBytes`: largest encrypted stream, user state or user message we accept.
pub const MAX_PUSH_STATE_BYTES: usize = 20 * 1024 * 1024;
/// Node states one push/pull may carry. Go's `maxPushStateNodes` is 1 Mi; we take 64 Ki,
/// more members than a Serf cluster reaches in practice. A state decodes into about 100 bytes
/// of memory even from its 1-byte form (`{}`, every field default), so with Go's count a
/// compressed push/pull of a few KiB became 200 MB per stream; at 64 Ki it is at most ~14 MB
/// (times the driver's inbound stream limit).
pub const MAX_PUSH_STATE_NODES: usize = 64 * 1024;
/// Largest msgpack length field the incremental scanner believes.
const MAX_MSGPACK_LEN: usize = lzw::MAX_DECOMPRESSED_BYTES;
const ENCRYPT_HEADER_BYTES: usize = 5;

/// Messages that travel on a TCP stream (one per connection direction).
#[derive(Debug, Clone, PartialEq)]
pub enum StreamMessage {
    /// TCP fallback probe; answered with `Ack` on the same stream.
    Ping(Ping),
    /// Full state exchange; `user_state` is Serf's push/pull message.
    PushPull {
        header: PushPullHeader,
        states: Vec<PushNodeState>,
        user_state: Vec<u8>,
    },
    /// A user message (Serf payload) sent reliably.
    User(Vec<u8>),
    Err(ErrResp),
    Ack(Ack),
}

fn count_u32(context: &'static str, len: usize) -> Result<u32, WireError> {
    u32::try_from(len).map_err(|_| WireError::TooLarge { context, len, max: u32::MAX as usize })
}

/// Type byte + body, before compression/encryption. For push/pull the header's `nodes` and
/// `user_state_len` are taken from `states` and `user_state` (only `join` is read).
fn encode_body(msg: &StreamMessage) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    match msg {
        StreamMessage::Ping(p) => {
            out.push(MessageType::Ping as u8);
            msgpack::write_named(&mut out, p, "ping")?;
        }
        StreamMessage::Ack(a) => {
            out.push(MessageType::Ack as u8);
            msgpack::write_named(&mut out, a, "ack")?;
        }
        StreamMessage::Err(e) => {
            out.push(MessageType::Err as u8);
            msgpack::write_named(&mut out, e, "err")?;
        }
        StreamMessage::PushPull { header, states, user_state } => {
            let header = PushPullHeader {
                nodes: count_u32("push/pull node count", states.len())?,
                user_state_len: count_u32("push/pull user state", user_state.len())?,
                join: header.join,
            };
            out.push(MessageType::PushPull as u8);
            msgpack::write_named(&mut out, &header, "push/pull header")?;
            for s in states {
                msgpack::write_named(&mut out, s, "push/pull node state")?;
            }
            out.extend_from_slice(user_state);
        }
        StreamMessage::User(payload) => {
            let header = UserMsgHeader { user_msg_len: count_u32("user message", payload.len())? };
            out.push(MessageType::User as u8);
            msgpack::write_named(&mut out, &header, "user message header")?;
            out.extend_from_slice(payload);
        }
    }
    Ok(out)
}

/// Label header (plaintext, first), then the message; compressed when `compress`, then
/// encrypted (version 1, additional data = `[10][len]` + label) when there is a keyring.
pub fn encode_stream(msg: &StreamMessage, compress: bool, sec: &Security) -> Result<Vec<u8>, WireError> {
    let mut body = encode_body(msg)?;
    if compress {
        body = lzw::encode_compress_msg(&body)?;
    }
    let mut out = label_header(sec.label)?;
    match sec.keyring {
        None => out.extend_from_slice(&body),
        Some(ring) => {
            let enc_len = count_u32("encrypted stream", ENCRYPT_OVERHEAD_BYTES + body.len())?;
            let mut aad = Vec::with_capacity(ENCRYPT_HEADER_BYTES + sec.label.len());
            aad.push(MessageType::Encrypt as u8);
            aad.extend_from_slice(&enc_len.to_be_bytes());
            out.extend_from_slice(&aad);
            aad.extend_from_slice(sec.label.as_bytes());
            out.extend_from_slice(&ring.encrypt(ENCRYPTION_VERSION, &body, &aad)?);
        }
    }
    Ok(out)
}

/// Incremental decode of what a peer wrote on a stream: `Ok(None)` while `buf` is a prefix
/// of a message (read more and call again), `Ok(Some((msg, consumed)))` once whole, `Err`
/// for bytes that can never become a valid message (wrong label, unknown type, bad key,
/// oversized lengths). Compressed or encrypted bodies must be complete inside their frame.
pub fn decode_stream(buf: &[u8], sec: &Security) -> Result<Option<(StreamMessage, usize)>, WireError> {
    // Wait for the whole label header before judging it.
    match buf {
        [] | [HAS_LABEL] => return Ok(None),
        [HAS_LABEL, len, rest @ ..] if *len > 0 && rest.len() < usize::from(*len) => return Ok(None),
        _ => {}
    }
    let rest = strip_label(buf, sec.label, "stream")?;
    let label_len = buf.len() - rest.len();
    let Some(&ty) = rest.first() else {
        return Ok(None);
    };
    if ty != MessageType::Encrypt as u8 {
        if sec.keyring.is_some() && sec.verify_incoming {
            return Err(WireError::NotEncrypted { context: "stream" });
        }
        return Ok(parse_plain(rest, true)?.map(|(m, used)| (m, label_len + used)));
    }
    let ring = sec.keyring.ok_or(WireError::EncryptedWithoutKeyring { context: "stream" })?;
    let Some(head) = rest.get(..ENCRYPT_HEADER_BYTES) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_PUSH_STATE_BYTES {
        return Err(WireError::TooLarge { context: "encrypted stream", len, max: MAX_PUSH_STATE_BYTES });
    }
    let Some(ct) = rest.get(ENCRYPT_HEADER_BYTES..ENCRYPT_HEADER_BYTES + len) else {
        return Ok(None);
    };
    let mut aad = head.to_vec();
    aad.extend_from_slice(sec.label.as_bytes());
    let plain = ring.decrypt(ct, &aad)?;
    let (msg, _) = parse_plain(&plain, true)?.ok_or(WireError::Truncated {
        context: "decrypted stream message",
        need: plain.len() + 1,
        have: plain.len(),
    })?;
    Ok(Some((msg, label_len + ENCRYPT_HEADER_BYTES + len)))
}

/// Length of the msgpack value at `buf[pos..]`, or return `Ok(None)` from the caller.
macro_rules! value_at {
    ($buf:expr, $pos:expr) => {
        match msgpack::value_len(&$buf[$pos..], MAX_MSGPACK_LEN)? {
            Some(n) => n,
            None => return Ok(None),
        }
    };
}

/// Raw bytes `buf[pos..pos+len]` after checking `len` against the limit, or `Ok(None)`.
fn raw_at<'b>(
    buf: &'b [u8],
    pos: usize,
    len: usize,
    context: &'static str,
) -> Result<Option<&'b [u8]>, WireError> {
    if len > MAX_PUSH_STATE_BYTES {
        return Err(WireError::TooLarge { context, len, max: MAX_PUSH_STATE_BYTES });
    }
    Ok(buf.get(pos..pos + len))
}

/// One unencrypted message at the start of `buf`; `None` if `buf` ends inside it.
fn parse_plain(buf: &[u8], allow_compress: bool) -> Result<Option<(StreamMessage, usize)>, WireError> {
    let Some(&ty) = buf.first() else {
        return Ok(None);
    };
    let t = MessageType::try_from(ty)?;
    let pos = 1;
    let msg = match t {
        MessageType::Compress if allow_compress => {
            let n = value_at!(buf, pos);
            let inner = lzw::decode_compress_body(&buf[pos..pos + n])?;
            let (msg, _) = parse_plain(&inner, false)?.ok_or(WireError::Truncated {
                context: "decompressed stream message",
                need: inner.len() + 1,
                have: inner.len(),
            })?;
            return Ok(Some((msg, pos + n)));
        }
        MessageType::Ping | MessageType::Ack | MessageType::Err => {
            let n = value_at!(buf, pos);
            let body = &buf[pos..pos + n];
            let msg = match t {
                MessageType::Ping => StreamMessage::Ping(msgpack::decode(body, "ping")?),
                MessageType::Ack => StreamMessage::Ack(msgpack::decode(body, "ack")?),
                _ => StreamMessage::Err(msgpack::decode(body, "err")?),
            };
            (msg, pos + n)
        }
        MessageType::User => {
            let n = value_at!(buf, pos);
            let header: UserMsgHeader = msgpack::decode(&buf[pos..pos + n], "user message header")?;
            let len = header.user_msg_len as usize;
            let Some(payload) = raw_at(buf, pos + n, len, "user message")? else {
                return Ok(None);
            };
            (StreamMessage::User(payload.to_vec()), pos + n + len)
        }
        MessageType::PushPull => {
            let n = value_at!(buf, pos);
            let header: PushPullHeader = msgpack::decode(&buf[pos..pos + n], "push/pull header")?;
            let nodes = header.nodes as usize;
            if nodes > MAX_PUSH_STATE_NODES {
                return Err(WireError::TooLarge {
                    context: "push/pull node count",
                    len: nodes,
                    max: MAX_PUSH_STATE_NODES,
                });
            }
            let mut at = pos + n;
            let mut states = Vec::with_capacity(nodes.min(1024));
            for _ in 0..nodes {
                let k = value_at!(buf, at);
                states.push(msgpack::decode(&buf[at..at + k], "push/pull node state")?);
                at += k;
            }
            let len = header.user_state_len as usize;
            let Some(user_state) = raw_at(buf, at, len, "push/pull user state")? else {
                return Ok(None);
            };
            let user_state = user_state.to_vec();
            let msg = StreamMessage::PushPull { header, states, user_state };
            (msg, at + len)
        }
        _ => return Err(WireError::UnexpectedType { context: "a stream", ty }),
    };
    Ok(Some(msg))
}
