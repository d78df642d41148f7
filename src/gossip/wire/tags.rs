//! Serf tags in memberlist's node `Meta`: `0xFF` + msgpack map string → string, at most
//! [`META_MAX_BYTES`]. A meta without the magic byte is an old (protocol < 3) node whose whole
//! meta is its `role`. Upstream: hashicorp/serf `serf/serf.go` (`encodeTags`, `decodeTags`).

use std::collections::BTreeMap;

use super::error::WireError;
use super::msgpack::{self, LString};

/// First byte of a tags meta.
pub const TAG_MAGIC_BYTE: u8 = 0xFF;
/// memberlist's `MetaMaxSize`.
pub const META_MAX_BYTES: usize = 512;

/// `0xFF` + msgpack map; fails (naming the size) above 512 bytes.
pub fn encode_tags(tags: &BTreeMap<String, String>) -> Result<Vec<u8>, WireError> {
    let mut out = vec![TAG_MAGIC_BYTE];
    rmp_serde::encode::write(&mut out, tags)
        .map_err(|e| WireError::Encode { context: "tags", reason: e.to_string() })?;
    if out.len() > META_MAX_BYTES {
        return Err(WireError::TagsTooLarge { size: out.len(), max: META_MAX_BYTES });
    }
    Ok(out)
}

/// Tags from a node's meta. Empty meta → no tags; no magic byte → `{"role": meta}`; an
/// undecodable map → no tags (Go logs and keeps what it has; we keep nothing).
pub fn decode_tags(meta: &[u8]) -> BTreeMap<String, String> {
    match meta.split_first() {
        None => BTreeMap::new(),
        Some((&TAG_MAGIC_BYTE, body)) => {
            msgpack::decode::<Option<BTreeMap<LString, Option<LString>>>>(body, "tags")
                .ok()
                .flatten()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.0, v.map(|v| v.0).unwrap_or_default()))
                .collect()
        }
        Some(_) => BTreeMap::from([("role".to_owned(), String::from_utf8_lossy(meta).into_owned())]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_old_style_role() {
        // Proves encode/decode inverse, role-only compatibility and empty meta.
        let tags =
            BTreeMap::from([("role".to_owned(), "web".to_owned()), ("dc".to_owned(), "lab".to_owned())]);
        let meta = encode_tags(&tags).unwrap();
        assert_eq!(meta[0], 0xFF);
        assert_eq!(decode_tags(&meta), tags);
        assert_eq!(decode_tags(b"db"), BTreeMap::from([("role".to_owned(), "db".to_owned())]));
        assert!(decode_tags(b"").is_empty());
        assert!(decode_tags(&[0xFF, 0xc1]).is_empty());
    }

    #[test]
    fn oversized_tags_are_rejected_naming_the_size() {
        // Proves the 512-byte meta limit is enforced with the size in the message.
        let tags = BTreeMap::from([("big".to_owned(), "x".repeat(600))]);
        let err = encode_tags(&tags).unwrap_err();
        assert!(matches!(err, WireError::TagsTooLarge { size, max: 512 } if size > 600));
        assert!(err.to_string().contains("limit is 512"));
    }
}
