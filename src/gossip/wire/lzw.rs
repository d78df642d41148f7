//! memberlist's compression: Go's `compress/lzw` (LSB bit order, 8-bit literals) via `weezl`,
//! and the compress message `[9]` + msgpack `{Algo: 0, Buf: <lzw>}` that wraps it.
//! Upstream: hashicorp/memberlist `util.go` (`compressPayload`, `decompressBuffer`).

use serde::{Deserialize, Serialize};
use weezl::{BitOrder, LzwStatus};

use super::error::WireError;
use super::memberlist::MessageType;
use super::msgpack::{self, bytes};

/// The only algorithm memberlist defines.
const LZW_ALGO: u64 = 0;
/// Literal width of Go's `lzw.NewWriter(w, lzw.LSB, 8)`.
const LIT_WIDTH: u8 = 8;
/// Largest output we inflate, like Go's `maxDecompressedBytes` (2 × 20 MiB push state).
pub const MAX_DECOMPRESSED_BYTES: usize = 40 * 1024 * 1024;
/// Output chunk while inflating.
const CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct Compress {
    algo: u64,
    #[serde(with = "bytes")]
    buf: Vec<u8>,
}

/// LZW-compresses `data` exactly like Go's `compress/lzw` writer (clear code first, end code last).
pub fn compress(data: &[u8]) -> Result<Vec<u8>, WireError> {
    weezl::encode::Encoder::new(BitOrder::Lsb, LIT_WIDTH)
        .encode(data)
        .map_err(|e| WireError::Lzw { context: "compression", reason: e.to_string() })
}

/// Inflates Go LZW output; the end code is required and output is capped at
/// [`MAX_DECOMPRESSED_BYTES`].
pub fn decompress(data: &[u8]) -> Result<Vec<u8>, WireError> {
    decompress_at_most(data, MAX_DECOMPRESSED_BYTES)
}

/// [`decompress`] with a smaller cap (a UDP packet's contents are far smaller than a stream's).
pub fn decompress_at_most(data: &[u8], max_bytes: usize) -> Result<Vec<u8>, WireError> {
    let max_bytes = max_bytes.min(MAX_DECOMPRESSED_BYTES);
    let mut decoder = weezl::decode::Decoder::new(BitOrder::Lsb, LIT_WIDTH);
    let mut out = Vec::new();
    let mut chunk = vec![0u8; CHUNK_BYTES];
    let mut input = data;
    loop {
        let res = decoder.decode_bytes(input, &mut chunk);
        input = &input[res.consumed_in..];
        out.extend_from_slice(&chunk[..res.consumed_out]);
        if out.len() > max_bytes {
            return Err(WireError::TooLarge {
                context: "decompressed payload",
                len: out.len(),
                max: max_bytes,
            });
        }
        match res.status {
            Ok(LzwStatus::Done) => return Ok(out),
            Ok(LzwStatus::Ok) => {}
            Ok(LzwStatus::NoProgress) => {
                return Err(WireError::Lzw {
                    context: "decompression",
                    reason: format!("stream ended without an end code after {} bytes of output", out.len()),
                })
            }
            Err(e) => return Err(WireError::Lzw { context: "decompression", reason: e.to_string() }),
        }
    }
}

/// `[9]` + msgpack `{Algo: 0, Buf: bin}` around the LZW of `payload`.
pub fn encode_compress_msg(payload: &[u8]) -> Result<Vec<u8>, WireError> {
    let msg = Compress { algo: LZW_ALGO, buf: compress(payload)? };
    let mut out = vec![MessageType::Compress as u8];
    msgpack::write_named(&mut out, &msg, "compress message")?;
    Ok(out)
}

/// Inverse of [`encode_compress_msg`]: `buf` starts with the `[9]` type byte. Returns the
/// inflated payload (itself a message starting with a type byte).
pub fn decode_compress_msg(buf: &[u8]) -> Result<Vec<u8>, WireError> {
    match buf.split_first() {
        Some((&ty, body)) if ty == MessageType::Compress as u8 => decode_compress_body(body),
        Some((&ty, _)) => Err(WireError::UnexpectedType { context: "a compress message", ty }),
        None => Err(WireError::Empty { context: "compress message" }),
    }
}

/// Decodes the msgpack `{Algo, Buf}` after the `[9]` byte and inflates `Buf`.
pub(crate) fn decode_compress_body(body: &[u8]) -> Result<Vec<u8>, WireError> {
    decode_compress_body_at_most(body, MAX_DECOMPRESSED_BYTES)
}

/// [`decode_compress_body`] inflating at most `max_bytes`.
pub(crate) fn decode_compress_body_at_most(body: &[u8], max_bytes: usize) -> Result<Vec<u8>, WireError> {
    let msg: Compress = msgpack::decode(body, "compress message")?;
    if msg.algo != LZW_ALGO {
        return Err(WireError::UnknownCompression { algo: msg.algo });
    }
    decompress_at_most(&msg.buf, max_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_small_empty_and_large_inputs() {
        // Proves compress/decompress are inverse, including past the 4096-code table reset.
        let mut big = Vec::new();
        let mut x: u32 = 12345;
        for _ in 0..200_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            big.push((x >> 24) as u8 % 7 + b'a');
        }
        for data in [&b""[..], b"a", b"hello hello hello hello", &big] {
            assert_eq!(decompress(&compress(data).unwrap()).unwrap(), data);
        }
    }

    #[test]
    fn compress_message_round_trips_and_rejects_unknown_algo() {
        // Proves the [9]{Algo,Buf} wrapper round-trips and Algo != 0 is a clear error.
        let msg = encode_compress_msg(b"payload payload").unwrap();
        assert_eq!(msg[0], 9);
        assert_eq!(decode_compress_msg(&msg).unwrap(), b"payload payload");

        let bad = Compress { algo: 3, buf: compress(b"x").unwrap() };
        let mut buf = vec![9u8];
        msgpack::write_named(&mut buf, &bad, "t").unwrap();
        let err = decode_compress_msg(&buf).unwrap_err();
        assert_eq!(err, WireError::UnknownCompression { algo: 3 });
        assert!(err.to_string().contains("unknown algorithm 3"));
    }

    #[test]
    fn missing_end_code_is_an_error() {
        // Proves a truncated LZW stream is rejected, as Go's reader does.
        let full = compress(b"abcabcabcabcabcabc").unwrap();
        assert!(decompress(&full[..full.len() - 2]).is_err());
    }
}
