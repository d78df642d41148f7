//! Packet framing for memberlist's UDP side: compound, LZW compression, hasCrc, AES-GCM
//! encryption and the label header, in Go's order (upstream: hashicorp/memberlist `net.go`
//! `rawSendMsgPacket`/`ingestPacket`, `util.go`, `label.go`). Stream framing lives in
//! `stream` and is re-exported here, so `codec` is the one entry point for framing.

use super::error::WireError;
use super::keyring::{Keyring, ENCRYPTION_VERSION, ENCRYPT_OVERHEAD_BYTES};
use super::lzw;
use super::memberlist::{Message, MessageType, HAS_LABEL};

pub use super::stream::{decode_stream, encode_stream, StreamMessage};

/// At most this many parts in one compound (the count is one byte).
pub const MAX_COMPOUND_PARTS: usize = 255;
/// Go's default UDP buffer, the usual `max_bytes` for [`encode_packets`].
pub const UDP_BUFFER_BYTES: usize = 1400;
/// Nesting of compress/compound we follow before giving up on a packet.
const MAX_NESTING: usize = 4;
/// Compound parts and messages one packet may hold in all, however nested: Go sends at most
/// 255 (one compound). Without a total, nested compounds of empty parts inside a compressed
/// packet made millions of entries from a few kilobytes.
pub const MAX_PACKET_PARTS: usize = 1024;
/// Bytes one packet may inflate to in all: Go compresses at most one UDP payload (< 64 KiB).
pub const MAX_PACKET_DECOMPRESSED_BYTES: usize = 1024 * 1024;
const CRC_HEADER_BYTES: usize = 5;

/// Who we are on the wire: label, keys and whether plaintext is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct Security<'a> {
    /// `""` = no label header.
    pub label: &'a str,
    pub keyring: Option<&'a Keyring>,
    /// With a keyring: reject input that is not encrypted (Go's `GossipVerifyIncoming`).
    pub verify_incoming: bool,
}

/// Per-packet options decided by the caller.
#[derive(Debug, Clone, Copy, Default)]
pub struct PacketOptions {
    /// Add the hasCrc header; memberlist does when the peer's max protocol is ≥ 5.
    pub crc: bool,
    /// LZW-compress, kept only if smaller (like Go).
    pub compress: bool,
}

/// `[244][len][label]`, or nothing for an empty label.
pub(crate) fn label_header(label: &str) -> Result<Vec<u8>, WireError> {
    if label.is_empty() {
        return Ok(Vec::new());
    }
    let len = u8::try_from(label.len()).map_err(|_| WireError::LabelTooLong { len: label.len() })?;
    let mut out = Vec::with_capacity(2 + label.len());
    out.push(HAS_LABEL);
    out.push(len);
    out.extend_from_slice(label.as_bytes());
    Ok(out)
}

/// Bytes the label header adds.
fn label_overhead(label: &str) -> usize {
    if label.is_empty() {
        0
    } else {
        2 + label.len()
    }
}

/// `[7][count][len u16 BE]×count` + bodies.
fn compound(msgs: &[Vec<u8>]) -> Result<Vec<u8>, WireError> {
    let count = u8::try_from(msgs.len()).map_err(|_| WireError::TooLarge {
        context: "compound part count",
        len: msgs.len(),
        max: MAX_COMPOUND_PARTS,
    })?;
    let mut out = Vec::with_capacity(2 + 2 * msgs.len() + msgs.iter().map(Vec::len).sum::<usize>());
    out.push(MessageType::Compound as u8);
    out.push(count);
    for m in msgs {
        let len = u16::try_from(m.len()).map_err(|_| WireError::TooLarge {
            context: "compound part",
            len: m.len(),
            max: usize::from(u16::MAX),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
    }
    for m in msgs {
        out.extend_from_slice(m);
    }
    Ok(out)
}

/// Builds one UDP packet from already-encoded messages: one message stays bare, several
/// become a compound; then compression (kept only if smaller), CRC, encryption with the
/// primary key (version 1, additional data = label), and the label header outermost.
pub fn encode_packet(msgs: &[Vec<u8>], opts: PacketOptions, sec: &Security) -> Result<Vec<u8>, WireError> {
    let mut payload = match msgs {
        [] => return Err(WireError::Empty { context: "packet" }),
        [one] => one.clone(),
        many => compound(many)?,
    };
    if opts.compress {
        let c = lzw::encode_compress_msg(&payload)?;
        if c.len() < payload.len() {
            payload = c;
        }
    }
    if opts.crc {
        let crc = crc32fast::hash(&payload);
        let mut with = Vec::with_capacity(CRC_HEADER_BYTES + payload.len());
        with.push(MessageType::HasCrc as u8);
        with.extend_from_slice(&crc.to_be_bytes());
        with.extend_from_slice(&payload);
        payload = with;
    }
    if let Some(ring) = sec.keyring {
        payload = ring.encrypt(ENCRYPTION_VERSION, &payload, sec.label.as_bytes())?;
    }
    let mut out = label_header(sec.label)?;
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Packs messages, in order and greedily, into packets of at most `max_bytes` each (counting
/// compound, CRC, encryption and label overhead; compression only ever shrinks). A message
/// that cannot fit alone is an error naming its size.
pub fn encode_packets(
    msgs: &[Vec<u8>],
    max_bytes: usize,
    opts: PacketOptions,
    sec: &Security,
) -> Result<Vec<Vec<u8>>, WireError> {
    let overhead = label_overhead(sec.label)
        + if opts.crc { CRC_HEADER_BYTES } else { 0 }
        + if sec.keyring.is_some() { ENCRYPT_OVERHEAD_BYTES } else { 0 };
    let mut packets = Vec::new();
    let mut start = 0; // first message of the packet being filled
    let mut body_sum = 0; // sum of the lengths of msgs[start..i]
    for (i, m) in msgs.iter().enumerate() {
        if m.len() + overhead > max_bytes {
            return Err(WireError::TooLarge {
                context: "message with packet overhead",
                len: m.len() + overhead,
                max: max_bytes,
            });
        }
        let count = i - start;
        // Size if `m` joins: a compound of count + 1 parts (count ≥ 1 here).
        let joined = 2 + 2 * (count + 1) + body_sum + m.len();
        if count > 0 && (count == MAX_COMPOUND_PARTS || joined + overhead > max_bytes) {
            packets.push(encode_packet(&msgs[start..i], opts, sec)?);
            start = i;
            body_sum = 0;
        }
        body_sum += m.len();
    }
    if start < msgs.len() {
        packets.push(encode_packet(&msgs[start..], opts, sec)?);
    }
    Ok(packets)
}

/// Removes a label header and checks it against ours; returns the rest.
pub(crate) fn strip_label<'b>(
    buf: &'b [u8],
    want: &str,
    context: &'static str,
) -> Result<&'b [u8], WireError> {
    let (got, rest) = match buf {
        [HAS_LABEL, rest @ ..] => {
            let (&len, rest) = rest.split_first().ok_or(WireError::Truncated {
                context: "label header",
                need: 2,
                have: 1,
            })?;
            let len = usize::from(len);
            if len == 0 {
                return Err(WireError::EmptyLabel);
            }
            if rest.len() < len {
                return Err(WireError::Truncated { context: "label header", need: 2 + len, have: buf.len() });
            }
            (&rest[..len], &rest[len..])
        }
        _ => (&[][..], buf),
    };
    if got != want.as_bytes() {
        return Err(WireError::LabelMismatch {
            context,
            got: String::from_utf8_lossy(got).into_owned(),
            want: want.to_owned(),
        });
    }
    Ok(rest)
}

/// Receives one UDP packet: label (must equal ours), decrypt (every key, vsn 0 and 1),
/// hasCrc (verified), then compress/compound recursively. Returns every message decoded.
///
/// Per-part errors inside a compound (a truncated tail, an unknown type, a bad body) are
/// skipped like Go does, as long as at least one message decoded; only when nothing decoded
/// is the first such error returned. Label, decryption and CRC errors always fail the packet.
pub fn decode_packet(buf: &[u8], sec: &Security) -> Result<Vec<Message>, WireError> {
    let rest = strip_label(buf, sec.label, "packet")?;
    let plain;
    let mut body = rest;
    if let Some(ring) = sec.keyring {
        match ring.decrypt(rest, sec.label.as_bytes()) {
            Ok(p) => {
                plain = p;
                body = &plain;
            }
            Err(e) if sec.verify_incoming => return Err(e),
            Err(_) => {} // Go: treat as plaintext when not verifying incoming
        }
    }
    if body.len() >= CRC_HEADER_BYTES && body[0] == MessageType::HasCrc as u8 {
        let expected = u32::from_be_bytes([body[1], body[2], body[3], body[4]]);
        let actual = crc32fast::hash(&body[CRC_HEADER_BYTES..]);
        if expected != actual {
            return Err(WireError::CrcMismatch { expected, actual });
        }
        body = &body[CRC_HEADER_BYTES..];
    }
    let mut u = Unpacked {
        out: Vec::new(),
        first_error: None,
        parts_left: MAX_PACKET_PARTS,
        inflate_left: MAX_PACKET_DECOMPRESSED_BYTES,
    };
    unpack(body, 0, &mut u);
    match u.first_error {
        Some(e) if u.out.is_empty() => Err(e),
        _ => Ok(u.out),
    }
}

/// What unpacking one packet found so far, and what it may still spend.
struct Unpacked {
    out: Vec<Message>,
    /// Only the first error is ever reported, so only it is kept.
    first_error: Option<WireError>,
    /// Parts (messages, compounds, compress messages) still allowed: [`MAX_PACKET_PARTS`].
    parts_left: usize,
    /// Bytes still allowed to inflate: [`MAX_PACKET_DECOMPRESSED_BYTES`].
    inflate_left: usize,
}

impl Unpacked {
    fn error(&mut self, e: WireError) {
        self.first_error.get_or_insert(e);
    }
}

/// Go's `handleCommand`: unwraps compound and compress, decodes everything else, within the
/// packet's budgets (parts beyond [`MAX_PACKET_PARTS`] are dropped with one error).
fn unpack(buf: &[u8], depth: usize, u: &mut Unpacked) {
    if depth > MAX_NESTING {
        u.error(WireError::TooLarge { context: "compress/compound nesting", len: depth, max: MAX_NESTING });
        return;
    }
    if u.parts_left == 0 {
        u.error(WireError::TooLarge {
            context: "messages in one packet",
            len: MAX_PACKET_PARTS + 1,
            max: MAX_PACKET_PARTS,
        });
        return;
    }
    u.parts_left -= 1;
    match buf.first() {
        Some(&t) if t == MessageType::Compound as u8 => match split_compound(&buf[1..]) {
            Ok((parts, truncated)) => {
                for p in parts {
                    unpack(p, depth + 1, u);
                }
                if let Some(e) = truncated {
                    u.error(e);
                }
            }
            Err(e) => u.error(e),
        },
        Some(&t) if t == MessageType::Compress as u8 => {
            match lzw::decode_compress_body_at_most(&buf[1..], u.inflate_left) {
                Ok(inner) => {
                    u.inflate_left -= inner.len();
                    unpack(&inner, depth + 1, u);
                }
                Err(e) => u.error(e),
            }
        }
        _ => match Message::decode(buf) {
            Ok(m) => u.out.push(m),
            Err(e) => u.error(e),
        },
    }
}

/// The complete parts of a compound body (after `[7]`) and an error if some were truncated.
fn split_compound(buf: &[u8]) -> Result<(Vec<&[u8]>, Option<WireError>), WireError> {
    let (&n, rest) = buf.split_first().ok_or(WireError::Empty { context: "compound message" })?;
    let n = usize::from(n);
    if rest.len() < 2 * n {
        return Err(WireError::Truncated { context: "compound length table", need: 2 * n, have: rest.len() });
    }
    let (lens, mut bodies) = rest.split_at(2 * n);
    let mut parts = Vec::with_capacity(n);
    for (idx, l) in lens.chunks_exact(2).enumerate() {
        let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
        if bodies.len() < len {
            let e = WireError::CompoundTruncated { truncated: n - idx, total: n };
            return Ok((parts, Some(e)));
        }
        let (part, tail) = bodies.split_at(len);
        parts.push(part);
        bodies = tail;
    }
    Ok((parts, None))
}
