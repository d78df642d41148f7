//! Framing for Serf RPC: msgpack values sent back to back with no length prefix. Owns
//! [`value_len`] (how long the complete value at the start of a buffer is, or that more bytes
//! are needed) and [`FrameReader`] (reads one whole value at a time from a socket, bounded).
//!
//! Knows nothing about commands; must not import the rest of `serf_rpc`.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a buffer does not hold a msgpack value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("byte 0x{marker:02x} at offset {offset} is not a msgpack marker")]
    BadMarker { marker: u8, offset: usize },
    #[error("msgpack value nests deeper than {max} levels")]
    TooDeep { max: usize },
}

/// Containers nested deeper than this are refused (Go's decoder has a similar limit).
const DEPTH_MAX: usize = 64;

/// The length of the complete msgpack value at the start of `buf`, `Ok(None)` when `buf` ends
/// inside it, or an error for bytes that can never be msgpack.
pub fn value_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    // `pending[d]` counts the values still expected at nesting depth d.
    let mut pending: Vec<u64> = vec![1];
    let mut pos = 0usize;
    while let Some(left) = pending.last_mut() {
        if *left == 0 {
            pending.pop();
            continue;
        }
        *left -= 1;
        let Some(&marker) = buf.get(pos) else { return Ok(None) };
        let (head, body, children) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (1, 0, 0),
            0x80..=0x8f => (1, 0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (1, 0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (1, u64::from(marker & 0x1f), 0),
            0xcc | 0xd0 => (2, 0, 0),
            0xcd | 0xd1 | 0xd4 => (3, 0, 0),
            0xd5 => (4, 0, 0),
            0xce | 0xd2 | 0xca => (5, 0, 0),
            0xd6 => (6, 0, 0),
            0xcf | 0xd3 | 0xcb => (9, 0, 0),
            0xd7 => (10, 0, 0),
            0xd8 => (18, 0, 0),
            0xc4 | 0xd9 => (2, sized(buf, pos, 1)?, 0),
            0xc5 | 0xda => (3, sized(buf, pos, 2)?, 0),
            0xc6 | 0xdb => (5, sized(buf, pos, 4)?, 0),
            // ext 8/16/32: length, then a type byte, then the data.
            0xc7 => (3, sized(buf, pos, 1)?, 0),
            0xc8 => (4, sized(buf, pos, 2)?, 0),
            0xc9 => (6, sized(buf, pos, 4)?, 0),
            0xdc => (3, 0, sized(buf, pos, 2)?),
            0xdd => (5, 0, sized(buf, pos, 4)?),
            0xde => (3, 0, 2 * sized(buf, pos, 2)?),
            0xdf => (5, 0, 2 * sized(buf, pos, 4)?),
            0xc1 => return Err(FrameError::BadMarker { marker, offset: pos }),
        };
        let Some(end) = (pos as u64).checked_add(head).and_then(|e| e.checked_add(body)) else {
            return Ok(None);
        };
        if end > buf.len() as u64 {
            return Ok(None);
        }
        pos = end as usize;
        if children > 0 {
            if pending.len() >= DEPTH_MAX {
                return Err(FrameError::TooDeep { max: DEPTH_MAX });
            }
            pending.push(children);
        }
    }
    Ok(Some(pos))
}

/// The big-endian length of `width` bytes after the marker at `pos`; `u64::MAX` (never
/// complete, so "need more") when the buffer ends first.
fn sized(buf: &[u8], pos: usize, width: usize) -> Result<u64, FrameError> {
    let Some(bytes) = buf.get(pos + 1..pos + 1 + width) else { return Ok(u64::MAX / 4) };
    Ok(bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
}

/// Why reading a value failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed in the middle of a value ({bytes} bytes buffered)")]
    Truncated { bytes: usize },
    #[error("not msgpack: {0}")]
    Garbage(#[from] FrameError),
    #[error("msgpack value larger than {max} bytes (the limit for one value)")]
    TooLarge { max: usize },
    #[error("no more bytes of a started value within {timeout:?}")]
    Stalled { timeout: std::time::Duration },
}

/// Reads whole msgpack values from a byte stream, keeping at most `max_bytes` buffered. Once
/// a value has started, the rest must arrive within `partial_timeout` (idling between values
/// is not limited).
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out.
    start: usize,
    max_bytes: usize,
    partial_timeout: std::time::Duration,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max_bytes: usize, partial_timeout: std::time::Duration) -> Self {
        FrameReader { inner, buf: Vec::new(), start: 0, max_bytes, partial_timeout }
    }

    /// The stream, for draining what is left after an error.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The next complete value's bytes; `Ok(None)` on a clean end of stream between values.
    pub async fn next_value(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        let mut chunk = [0u8; 8192];
        loop {
            let pending = &self.buf[self.start..];
            if !pending.is_empty() {
                if let Some(n) = value_len(pending)? {
                    let value = pending[..n].to_vec();
                    self.start += n;
                    if self.start == self.buf.len() {
                        self.buf.clear();
                        self.start = 0;
                    }
                    return Ok(Some(value));
                }
            }
            if self.buf.len() - self.start >= self.max_bytes {
                return Err(ReadError::TooLarge { max: self.max_bytes });
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let want = chunk.len().min(self.max_bytes - self.buf.len());
            let n = if self.buf.is_empty() {
                self.inner.read(&mut chunk[..want]).await?
            } else {
                let timeout = self.partial_timeout;
                tokio::time::timeout(timeout, self.inner.read(&mut chunk[..want]))
                    .await
                    .map_err(|_| ReadError::Stalled { timeout })??
            };
            if n == 0 {
                return match self.buf.len() {
                    0 => Ok(None),
                    bytes => Err(ReadError::Truncated { bytes }),
                };
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOW: std::time::Duration = std::time::Duration::from_secs(5);

    #[test]
    fn every_prefix_of_a_value_needs_more_and_the_whole_value_is_measured() {
        // Proves incremental framing: each strict prefix asks for more, the whole reports its length.
        let mut v = rmp_serde::to_vec_named(&serde_json::json!({
            "Command": "members-filtered", "Seq": 70000u64, "Tags": {"role": "w.*"},
            "List": [1, -5, 3.5, null, true], "Long": "x".repeat(300),
        }))
        .unwrap();
        let whole = v.len();
        v.extend_from_slice(&[0x81, 0xa1]); // the start of the next value
        for cut in 0..whole {
            assert_eq!(value_len(&v[..cut]), Ok(None), "prefix of {cut} bytes");
        }
        assert_eq!(value_len(&v), Ok(Some(whole)));
    }

    #[test]
    fn bin_and_ext_lengths_are_counted() {
        // Proves bin8/bin16 and ext lengths move the cursor by their declared sizes.
        assert_eq!(value_len(&[0xc4, 0x02, 1, 2, 9]), Ok(Some(4)));
        assert_eq!(value_len(&[0xc5, 0x00, 0x03, 1, 2]), Ok(None));
        assert_eq!(value_len(&[0xc7, 0x01, 0x05, 0xaa]), Ok(Some(4)));
        assert_eq!(value_len(&[0xd4, 0x01, 0x02]), Ok(Some(3)));
    }

    #[test]
    fn the_reserved_marker_and_absurd_nesting_are_garbage() {
        // Proves bytes that can never become msgpack are refused instead of waited on.
        assert!(matches!(value_len(&[0xc1]), Err(FrameError::BadMarker { marker: 0xc1, offset: 0 })));
        assert!(matches!(value_len(&[0x81, 0xa1, b'k', 0xc1]), Err(FrameError::BadMarker { offset: 3, .. })));
        assert_eq!(value_len(&[0x91; 100]), Err(FrameError::TooDeep { max: DEPTH_MAX }));
    }

    #[tokio::test]
    async fn the_reader_joins_values_split_across_reads_and_rejects_oversized_ones() {
        // Proves FrameReader returns values whole whatever the read boundaries, and bounds its buffer.
        let a = rmp_serde::to_vec_named(&serde_json::json!({"Command": "handshake", "Seq": 1})).unwrap();
        let b = rmp_serde::to_vec_named(&serde_json::json!({"Version": 1})).unwrap();
        let (mut tx, rx) = tokio::io::duplex(3);
        let all = [a.clone(), b.clone()].concat();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for byte in all {
                tx.write_all(&[byte]).await.unwrap();
            }
        });
        let mut r = FrameReader::new(rx, 1024, SLOW);
        assert_eq!(r.next_value().await.unwrap(), Some(a));
        assert_eq!(r.next_value().await.unwrap(), Some(b));
        assert!(r.next_value().await.unwrap().is_none());

        let big = rmp_serde::to_vec_named(&serde_json::json!({"Payload": "y".repeat(5000)})).unwrap();
        let mut r = FrameReader::new(&big[..], 1024, SLOW);
        assert!(matches!(r.next_value().await, Err(ReadError::TooLarge { max: 1024 })));
        let mut r = FrameReader::new(&big[..100], 1024, SLOW);
        assert!(matches!(r.next_value().await, Err(ReadError::Truncated { bytes: 100 })));
    }

    #[tokio::test]
    async fn a_value_that_stops_half_way_times_out_but_idling_between_values_does_not() {
        // Proves a client cannot hold a connection with half a request, while a quiet one may wait.
        let short = std::time::Duration::from_millis(100);
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut r = FrameReader::new(rx, 1024, short);
        let idle = tokio::time::timeout(short * 4, r.next_value()).await;
        assert!(idle.is_err(), "an idle stream is not an error");
        use tokio::io::AsyncWriteExt;
        tx.write_all(&[0x82, 0xa1]).await.unwrap();
        assert!(matches!(r.next_value().await, Err(ReadError::Stalled { .. })));
    }
}
