//! TXT records of a registry service (Beacon's keys, a `status` key, then the service's own
//! `mdns_txt_records`) and of the node itself, kept within DNS limits.
//!
//! Limits: each `key=value` string at most 255 bytes (RFC 1035; a long value is truncated, an
//! entry whose key alone does not fit is skipped) and the whole record at most 1300 bytes (RFC
//! 6763 §6.2's ceiling; entries past it are skipped). Keys are printable ASCII without `=`
//! (RFC 6763 §6.4) and unique ignoring case: Beacon's keys come first and win over a custom
//! entry of the same name. Every change is reported as a note. Pure: must not import tokio or
//! I/O.

use super::names::truncate_bytes;
use crate::registry::Service;

/// RFC 1035: one character-string of a TXT record.
pub const TXT_STRING_BYTES_MAX: usize = 255;
/// RFC 6763 §6.2: TXT records above this size are not recommended (one Ethernet packet).
pub const TXT_RECORD_BYTES_MAX: usize = 1300;

/// The TXT entries of `s`, in order: `service_id`, `name`, `type`, `protocol`, `version`,
/// `tags` (comma-joined), `description`, `status`, then `mdns_txt_records` by key.
pub fn service_txt(s: &Service, notes: &mut Vec<String>) -> Vec<(String, String)> {
    let standard = [
        ("service_id", s.id.as_str().to_string()),
        ("name", s.name.clone()),
        ("type", s.service_type.clone()),
        ("protocol", s.protocol.clone()),
        ("version", s.version.clone().unwrap_or_default()),
        ("tags", s.tags.join(",")),
        ("description", s.description.clone().unwrap_or_default()),
        ("status", s.status.as_str().to_string()),
    ];
    let mut b = TxtBuilder::default();
    for (k, v) in standard {
        b.push(k, &v, notes);
    }
    for (k, v) in &s.mdns_txt_records {
        b.push(k, v, notes);
    }
    b.entries
}

/// Builds a TXT record entry by entry within the limits.
#[derive(Debug, Default)]
pub struct TxtBuilder {
    entries: Vec<(String, String)>,
    bytes: usize,
}

impl TxtBuilder {
    /// Adds `key=value`, truncated, skipped or refused as the limits say (with a note).
    pub fn push(&mut self, key: &str, value: &str, notes: &mut Vec<String>) {
        if key.is_empty() || key.contains('=') || !key.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            notes.push(format!("TXT key '{key}' is not printable ASCII without '=' (RFC 6763); skipped"));
            return;
        }
        if self.entries.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)) {
            notes.push(format!("TXT key '{key}' is given twice (keys ignore case); the first one is kept"));
            return;
        }
        if key.len() + 1 > TXT_STRING_BYTES_MAX {
            notes.push(format!(
                "TXT key '{key}' is longer than a TXT string ({TXT_STRING_BYTES_MAX} bytes); skipped"
            ));
            return;
        }
        let room = TXT_STRING_BYTES_MAX - key.len() - 1;
        let kept = truncate_bytes(value, room);
        if kept.len() < value.len() {
            notes.push(format!(
                "TXT '{key}' is {} bytes with its value; truncated to {TXT_STRING_BYTES_MAX}",
                key.len() + 1 + value.len()
            ));
        }
        // One length byte per string.
        let size = 1 + key.len() + 1 + kept.len();
        if self.bytes + size > TXT_RECORD_BYTES_MAX {
            notes.push(format!(
                "TXT '{key}' would take the record past {TXT_RECORD_BYTES_MAX} bytes (RFC 6763 §6.2); skipped"
            ));
            return;
        }
        self.bytes += size;
        self.entries.push((key.to_string(), kept.to_string()));
    }

    pub fn finish(self) -> Vec<(String, String)> {
        self.entries
    }
}
