//! Msgpack plumbing shared by the wire structs: serde helpers that accept what Go's old
//! go-msgpack writes (`[]byte` as *str*, possibly not UTF-8; nil for empty slices and maps),
//! a scanner that measures one msgpack value without decoding it (for incremental streams),
//! and map-encoding helpers. Private to `wire`; imports nothing from the rest of muster.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

use serde::de::{DeserializeOwned, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::error::WireError;

/// Bytes that arrive as msgpack bin, str (any bytes), an array of small ints, or nil.
struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("bytes as msgpack bin, str, array of ints or nil")
    }
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }
    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
        Ok(v.as_bytes().to_vec())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Vec<u8>, E> {
        Ok(Vec::new())
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Vec<u8>, E> {
        Ok(Vec::new())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}

/// A string that may arrive as str (even non-UTF-8, decoded lossily), bin or nil.
struct StringVisitor;

impl<'de> Visitor<'de> for StringVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string as msgpack str, bin or nil")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<String, E> {
        Ok(String::from_utf8_lossy(v).into_owned())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
}

/// Element type for lenient byte lists.
struct LBytes(Vec<u8>);

impl<'de> Deserialize<'de> for LBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BytesVisitor).map(LBytes)
    }
}

/// Element/key type for lenient string lists and maps.
#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct LString(pub(crate) String);

impl<'de> Deserialize<'de> for LString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StringVisitor).map(LString)
    }
}

/// `#[serde(with = "bytes")]`: encode as msgpack bin, decode leniently.
pub(crate) mod bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_any(BytesVisitor)
    }
}

/// `#[serde(deserialize_with = "string")]`: str, bin or nil.
pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(StringVisitor)
}

/// `#[serde(with = "bytes_list")]`: Go `[][]byte`, each element lenient, nil list → empty.
pub(crate) mod bytes_list {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|b| serde_bytes::Bytes::new(b)))
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let list: Option<Vec<LBytes>> = Option::deserialize(d)?;
        Ok(list.unwrap_or_default().into_iter().map(|b| b.0).collect())
    }
}

/// `#[serde(deserialize_with = "string_list")]`: Go `[]string`, nil → empty.
pub(crate) fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list: Option<Vec<LString>> = Option::deserialize(d)?;
    Ok(list.unwrap_or_default().into_iter().map(|s| s.0).collect())
}

/// `#[serde(deserialize_with = "seq")]`: Go `[]*T`/`[]T`; nil list → empty, nil elements dropped.
pub(crate) fn seq<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let list: Option<Vec<Option<T>>> = Option::deserialize(d)?;
    Ok(list.unwrap_or_default().into_iter().flatten().collect())
}

/// `#[serde(deserialize_with = "string_map")]`: Go `map[string]V`, nil → empty.
pub(crate) fn string_map<'de, D, V>(d: D) -> Result<HashMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    let map: Option<HashMap<LString, V>> = Option::deserialize(d)?;
    Ok(map.unwrap_or_default().into_iter().map(|(k, v)| (k.0, v)).collect())
}

/// Appends `v` as a msgpack map keyed by field names.
pub(crate) fn write_named<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    v: &T,
    context: &'static str,
) -> Result<(), WireError> {
    rmp_serde::encode::write_named(out, v).map_err(|e| WireError::Encode { context, reason: e.to_string() })
}

/// `[ty]` + msgpack map of `v`. Encoding the wire structs into a `Vec` cannot fail (no I/O, no
/// unknown-length sequences, no fallible `Serialize`); should it ever, the result is the bare
/// type byte, which every receiver rejects as truncated, and debug builds assert.
pub(crate) fn encode_typed<T: Serialize + ?Sized>(ty: u8, v: &T, context: &'static str) -> Vec<u8> {
    let mut out = vec![ty];
    if let Err(err) = write_named(&mut out, v, context) {
        debug_assert!(false, "{err}");
        out.truncate(1);
    }
    out
}

/// Decodes one msgpack value (trailing bytes are ignored, like Go's stream decoder).
pub(crate) fn decode<T: DeserializeOwned>(buf: &[u8], context: &'static str) -> Result<T, WireError> {
    rmp_serde::from_slice(buf).map_err(|e| WireError::msgpack(context, e))
}

/// Measures the msgpack value at the start of `buf` without decoding it: `Ok(Some(len))` when
/// it is complete, `Ok(None)` when `buf` ends inside it, `Err` for a byte that is no msgpack
/// marker or a declared length above `max_len` (so garbage cannot make a reader wait forever).
pub(crate) fn value_len(buf: &[u8], max_len: usize) -> Result<Option<usize>, WireError> {
    let mut pos = 0usize;
    let mut pending: usize = 1; // values still to walk over
    while pending > 0 {
        pending -= 1;
        let Some(&marker) = buf.get(pos) else {
            return Ok(None);
        };
        pos += 1;
        // (bytes of the length field, fixed payload bytes, children per unit of length, extra
        // payload bytes beyond the length); `pending` already counts fixmap/fixarray children.
        let (len_bytes, fixed, children_per_len, extra): (usize, usize, usize, usize) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0, 0, 0),
            0x80..=0x8f => {
                pending += 2 * usize::from(marker & 0x0f);
                (0, 0, 0, 0)
            }
            0x90..=0x9f => {
                pending += usize::from(marker & 0x0f);
                (0, 0, 0, 0)
            }
            0xa0..=0xbf => (0, usize::from(marker & 0x1f), 0, 0),
            0xc4 | 0xd9 => (1, 0, 0, 0),
            0xc5 | 0xda => (2, 0, 0, 0),
            0xc6 | 0xdb => (4, 0, 0, 0),
            0xc7 => (1, 0, 0, 1), // ext: length, then a type byte, then data
            0xc8 => (2, 0, 0, 1),
            0xc9 => (4, 0, 0, 1),
            0xca | 0xce | 0xd2 => (0, 4, 0, 0),
            0xcb | 0xcf | 0xd3 => (0, 8, 0, 0),
            0xcc | 0xd0 => (0, 1, 0, 0),
            0xcd | 0xd1 => (0, 2, 0, 0),
            0xd4 => (0, 2, 0, 0),
            0xd5 => (0, 3, 0, 0),
            0xd6 => (0, 5, 0, 0),
            0xd7 => (0, 9, 0, 0),
            0xd8 => (0, 17, 0, 0),
            0xdc => (2, 0, 1, 0),
            0xdd => (4, 0, 1, 0),
            0xde => (2, 0, 2, 0),
            0xdf => (4, 0, 2, 0),
            0xc1 => {
                return Err(WireError::Msgpack {
                    context: "msgpack value",
                    reason: "marker 0xc1 is never used".to_owned(),
                })
            }
        };
        let mut skip = fixed;
        if len_bytes > 0 {
            let Some(field) = buf.get(pos..pos + len_bytes) else {
                return Ok(None);
            };
            pos += len_bytes;
            let len = field.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if len > max_len {
                return Err(WireError::TooLarge { context: "msgpack length", len, max: max_len });
            }
            if children_per_len > 0 {
                pending += children_per_len * len;
            } else {
                skip = len + extra;
            }
        }
        pos = pos.saturating_add(skip);
        if pos > buf.len() {
            return Ok(None);
        }
        if pending > max_len {
            return Err(WireError::TooLarge { context: "msgpack element count", len: pending, max: max_len });
        }
    }
    Ok(Some(pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, rename_all = "PascalCase")]
    struct Sample {
        #[serde(with = "bytes")]
        addr: Vec<u8>,
        #[serde(deserialize_with = "string")]
        node: String,
        #[serde(deserialize_with = "string_list")]
        left: Vec<String>,
    }

    #[test]
    fn lenient_fields_accept_go_encodings() {
        // Proves bytes accept str (non-UTF-8), strings accept nil, lists accept nil.
        // {"Addr": str "\x7f\x00\x00\x01", "Node": nil, "Left": nil}
        let mut buf = vec![0x83, 0xa4];
        buf.extend_from_slice(b"Addr");
        buf.extend_from_slice(&[0xa4, 0x7f, 0x00, 0x00, 0xff]);
        buf.push(0xa4);
        buf.extend_from_slice(b"Node");
        buf.push(0xc0);
        buf.push(0xa4);
        buf.extend_from_slice(b"Left");
        buf.push(0xc0);
        let s: Sample = decode(&buf, "sample").unwrap();
        assert_eq!(s.addr, vec![0x7f, 0, 0, 0xff]);
        assert_eq!(s.node, "");
        assert!(s.left.is_empty());
        // Array of ints also works for bytes.
        let v: Sample = decode(&[0x81, 0xa4, b'A', b'd', b'd', b'r', 0x92, 1, 2], "s").unwrap();
        assert_eq!(v.addr, vec![1, 2]);
    }

    #[test]
    fn value_len_measures_and_detects_truncation() {
        // Proves the scanner finds the exact end of nested values and reports every prefix as incomplete.
        let s = Sample { addr: vec![1; 300], node: "n".repeat(40), left: vec!["a".into(), "b".into()] };
        let mut buf = Vec::new();
        write_named(&mut buf, &s, "sample").unwrap();
        let total = buf.len();
        buf.extend_from_slice(&[0xc3, 0xc3]);
        assert_eq!(value_len(&buf, 1 << 20).unwrap(), Some(total));
        for cut in 0..total {
            assert_eq!(value_len(&buf[..cut], 1 << 20).unwrap(), None, "prefix {cut}");
        }
        assert!(value_len(&[0xc1], 10).is_err());
        assert!(value_len(&[0xdb, 0xff, 0xff, 0xff, 0xff], 1000).is_err());
    }
}
