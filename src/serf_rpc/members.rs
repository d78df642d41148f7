//! `members` and `members-filtered`: the member list as Serf's RPC shows it, and Serf's filter
//! (every given tag, the status and the name matched as whole-text regular expressions; an
//! empty status or name matches everything; a tag a member lacks is matched as "").

use std::collections::BTreeMap;

use super::proto::{MemberRecord, MembersResponse};
use crate::go_regexp::{Regex, RegexError};
use crate::membership::MemberInfo;

/// A compiled `members-filtered` request.
pub struct MemberFilter {
    tags: Vec<(String, Regex)>,
    status: Option<Regex>,
    name: Option<Regex>,
}

impl MemberFilter {
    pub fn new(
        tags: &BTreeMap<String, String>,
        status: &str,
        name: &str,
    ) -> Result<MemberFilter, RegexError> {
        let optional = |p: &str| if p.is_empty() { Ok(None) } else { Regex::anchored(p).map(Some) };
        Ok(MemberFilter {
            tags: tags
                .iter()
                .map(|(k, p)| Ok((k.clone(), Regex::anchored(p)?)))
                .collect::<Result<_, RegexError>>()?,
            status: optional(status)?,
            name: optional(name)?,
        })
    }

    pub fn matches(&self, m: &MemberInfo) -> bool {
        self.tags.iter().all(|(k, re)| re.is_match(m.tags.get(k).map(String::as_str).unwrap_or("")))
            && self.status.as_ref().is_none_or(|re| re.is_match(m.status.as_str()))
            && self.name.as_ref().is_none_or(|re| re.is_match(&m.name))
    }
}

/// The `members` answer, optionally filtered, in the order the member view lists them.
pub fn response(members: &[MemberInfo], filter: Option<&MemberFilter>) -> MembersResponse {
    MembersResponse {
        members: members
            .iter()
            .filter(|m| filter.is_none_or(|f| f.matches(m)))
            .map(MemberRecord::from)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{MemberStatus, Mode};

    fn info(name: &str, status: MemberStatus, tags: &[(&str, &str)]) -> MemberInfo {
        MemberInfo {
            name: name.into(),
            addr: "10.0.0.1".parse().unwrap(),
            port: 7946,
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            status,
            protocol: [1, 5, 2, 2, 5, 4],
            incarnation: 1,
            last_seen_ms_ago: 0,
            mode: Mode::Unknown,
        }
    }

    fn names(r: &MembersResponse) -> Vec<&str> {
        r.members.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn the_filter_combines_tags_status_and_name_like_serf() {
        // Proves Serf's semantics: all tags must match, empty status/name match all, a missing tag is "".
        let ms = [
            info("web-1", MemberStatus::Alive, &[("role", "web")]),
            info("web-2", MemberStatus::Failed, &[("role", "web")]),
            info("db-1", MemberStatus::Alive, &[("role", "db")]),
            info("bare", MemberStatus::Alive, &[]),
        ];
        let f = |tags: &[(&str, &str)], status: &str, name: &str| {
            let tags = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            names(&response(&ms, Some(&MemberFilter::new(&tags, status, name).unwrap()))).join(",")
        };
        assert_eq!(f(&[], "", ""), "web-1,web-2,db-1,bare");
        assert_eq!(f(&[("role", "w.*")], "", ""), "web-1,web-2");
        assert_eq!(f(&[("role", "w.*")], "alive", ""), "web-1");
        assert_eq!(f(&[], "alive|failed", "web-.*"), "web-1,web-2");
        assert_eq!(f(&[("role", "")], "", ""), "bare");
        assert_eq!(f(&[("role", "we")], "", ""), "", "anchored: a prefix is not a match");
        assert!(MemberFilter::new(&BTreeMap::new(), "(", "").is_err());
    }
}
