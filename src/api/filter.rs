//! Member filters shared by `GET /v1/members` and `muster members`: `status=` and repeatable
//! `tag=KEY=VALUE`, with one grammar for both sides.

use crate::membership::{MemberInfo, MemberStatus};

/// Which members to list. Empty means all. Statuses are alternatives (any may match); tags
/// must all match exactly (Serf treats tag values as regular expressions; muster does not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberFilter {
    pub statuses: Vec<MemberStatus>,
    pub tags: Vec<(String, String)>,
}

/// A filter value that does not parse. `param()` names the query parameter (and flag).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("'{value}' is not one of none, alive, leaving, left, failed")]
    Status { value: String },
    #[error("'{value}' is not KEY=VALUE with a non-empty KEY")]
    Tag { value: String },
    #[error("'{name}' is not a filter; use status or tag")]
    Unknown { name: String },
}

impl FilterError {
    /// The query parameter (and flag) the bad value was given for.
    pub fn param(&self) -> &str {
        match self {
            FilterError::Status { .. } => "status",
            FilterError::Tag { .. } => "tag",
            FilterError::Unknown { name } => name,
        }
    }
}

impl MemberFilter {
    /// Builds a filter from decoded query pairs; any other parameter is an error.
    pub fn from_query(pairs: &[(String, String)]) -> Result<MemberFilter, FilterError> {
        let mut filter = MemberFilter::default();
        for (name, value) in pairs {
            match name.as_str() {
                "status" => filter.add_status(value)?,
                "tag" => filter.add_tag(value)?,
                _ => return Err(FilterError::Unknown { name: name.clone() }),
            }
        }
        Ok(filter)
    }

    pub fn add_status(&mut self, value: &str) -> Result<(), FilterError> {
        let status = MemberStatus::parse(value.trim())
            .ok_or_else(|| FilterError::Status { value: value.to_string() })?;
        self.statuses.push(status);
        Ok(())
    }

    /// Adds `KEY=VALUE` (split at the first `=`).
    pub fn add_tag(&mut self, value: &str) -> Result<(), FilterError> {
        let bad = || FilterError::Tag { value: value.to_string() };
        let (k, v) = value.split_once('=').ok_or_else(bad)?;
        if k.trim().is_empty() {
            return Err(bad());
        }
        self.tags.push((k.trim().to_string(), v.to_string()));
        Ok(())
    }

    pub fn matches(&self, member: &MemberInfo) -> bool {
        let status_ok = self.statuses.is_empty() || self.statuses.contains(&member.status);
        status_ok && self.tags.iter().all(|(k, v)| member.tags.get(k).is_some_and(|have| have == v))
    }

    /// The filter as a query string (`status=alive&tag=role%3Dweb`), empty when it has none.
    pub fn to_query(&self) -> String {
        let statuses = self.statuses.iter().map(|s| format!("status={}", s.as_str()));
        let tags = self.tags.iter().map(|(k, v)| format!("tag={}", percent_encode(&format!("{k}={v}"))));
        statuses.chain(tags).collect::<Vec<_>>().join("&")
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Mode;
    use std::collections::BTreeMap;

    fn member(status: MemberStatus, tags: &[(&str, &str)]) -> MemberInfo {
        MemberInfo {
            name: "m".into(),
            addr: "10.0.0.1".parse().unwrap(),
            port: 7946,
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            status,
            protocol: [1, 5, 2, 2, 5, 4],
            incarnation: 1,
            last_seen_ms_ago: 0,
            mode: Mode::Unknown,
        }
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn filters_match_status_and_every_tag() {
        // Proves statuses are alternatives, tags are all required, and values match exactly.
        let f = MemberFilter::from_query(&pairs(&[
            ("status", "alive"),
            ("status", "leaving"),
            ("tag", "role=web"),
            ("tag", "dc=a=b"),
        ]))
        .unwrap();
        assert!(f.matches(&member(MemberStatus::Alive, &[("role", "web"), ("dc", "a=b")])));
        assert!(f.matches(&member(MemberStatus::Leaving, &[("role", "web"), ("dc", "a=b")])));
        assert!(!f.matches(&member(MemberStatus::Failed, &[("role", "web"), ("dc", "a=b")])));
        assert!(!f.matches(&member(MemberStatus::Alive, &[("role", "web")])));
        assert!(!f.matches(&member(MemberStatus::Alive, &[("role", "webx"), ("dc", "a=b")])));
        assert!(MemberFilter::default().matches(&member(MemberStatus::Left, &[])));
    }

    #[test]
    fn bad_filters_name_their_parameter() {
        // Proves each kind of bad input is rejected with the parameter it belongs to.
        let err = |p: &[(&str, &str)]| MemberFilter::from_query(&pairs(p)).unwrap_err();
        assert_eq!(err(&[("status", "dead")]).param(), "status");
        assert_eq!(err(&[("tag", "novalue")]).param(), "tag");
        assert_eq!(err(&[("tag", "=v")]).param(), "tag");
        assert_eq!(err(&[("limit", "3")]).param(), "limit");
    }

    #[test]
    fn query_string_round_trips_through_the_server_decoder() {
        // Proves to_query encodes '=' and spaces so serde_urlencoded decodes the same filter.
        let mut f = MemberFilter::default();
        f.add_status("failed").unwrap();
        f.add_tag("role=web server&x").unwrap();
        let q = f.to_query();
        assert_eq!(q, "status=failed&tag=role%3Dweb%20server%26x");
        let decoded: Vec<(String, String)> = serde_urlencoded_decode(&q);
        assert_eq!(MemberFilter::from_query(&decoded).unwrap(), f);
    }

    /// The decoder axum's `Query` uses, through axum's own re-export path.
    fn serde_urlencoded_decode(q: &str) -> Vec<(String, String)> {
        let uri: axum::http::Uri = format!("/v1/members?{q}").parse().unwrap();
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri).unwrap().0
    }
}
