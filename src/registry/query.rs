//! Pure reads of a [`Registry`]: lookup, filtered and paged listing, discovery, type and tag
//! counts, lease candidates for the leader, status counts, and the event history.
//!
//! Results are ordered deterministically (services by name, then id; maps by key), so every node
//! answers the same. Must not mutate the registry or import anything outside `registry`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::apply::Registry;
use super::error::RegistryError;
use super::events::Event;
use super::model::{Revision, Service, ServiceId, Status};
use super::validate;

/// Beacon's list filters. Empty or `None` matches everything; every given tag must be present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Filter {
    #[serde(rename = "type")]
    pub service_type: Option<String>,
    pub tags: Vec<String>,
    pub protocol: Option<String>,
    pub status: Option<Status>,
    /// Page size, 1–100.
    pub limit: usize,
    /// Matching services to pass over before the page starts.
    pub skip: usize,
}

impl Default for Filter {
    fn default() -> Filter {
        Filter {
            service_type: None,
            tags: Vec::new(),
            protocol: None,
            status: None,
            limit: validate::LIST_LIMIT_DEFAULT,
            skip: 0,
        }
    }
}

impl Filter {
    fn matches(&self, service: &Service) -> bool {
        self.service_type.as_ref().is_none_or(|t| *t == service.service_type)
            && self.protocol.as_ref().is_none_or(|p| *p == service.protocol)
            && self.status.is_none_or(|s| s == service.status)
            && has_all_tags(service, &self.tags)
    }
}

/// How many services are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    pub active: usize,
    pub inactive: usize,
    pub expired: usize,
    pub unhealthy: usize,
}

impl StatusCounts {
    pub fn total(&self) -> usize {
        self.active + self.inactive + self.expired + self.unhealthy
    }

    pub fn get(&self, status: Status) -> usize {
        match status {
            Status::Active => self.active,
            Status::Inactive => self.inactive,
            Status::Expired => self.expired,
            Status::Unhealthy => self.unhealthy,
        }
    }
}

fn has_all_tags(service: &Service, tags: &[String]) -> bool {
    tags.iter().all(|tag| service.tags.contains(tag))
}

/// Sorts by name, then id (ids are unique, so the order is total).
fn sorted(mut services: Vec<&Service>) -> Vec<&Service> {
    services.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    services
}

impl Registry {
    pub fn get(&self, id: &ServiceId) -> Option<&Service> {
        self.services.get(id)
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Every service, in id order.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.values()
    }

    /// One page of the services matching `filter`, by name then id, and how many match in all.
    /// Every status is listed unless `filter.status` narrows it.
    pub fn list(&self, filter: &Filter) -> Result<(Vec<Service>, usize), RegistryError> {
        validate::list_limit(filter.limit).map_err(|reason| RegistryError::InvalidFilter { reason })?;
        let matching = sorted(self.services.values().filter(|s| filter.matches(s)).collect());
        let total = matching.len();
        let page = matching.into_iter().skip(filter.skip).take(filter.limit).cloned().collect();
        Ok((page, total))
    }

    /// Active services of a type (any type if `None`) carrying every tag in `tags`, by name
    /// then id: what a client should connect to.
    pub fn discover(&self, service_type: Option<&str>, tags: &[String]) -> Vec<Service> {
        let found = self.services.values().filter(|s| {
            s.status == Status::Active
                && service_type.is_none_or(|t| t == s.service_type)
                && has_all_tags(s, tags)
        });
        sorted(found.collect()).into_iter().cloned().collect()
    }

    /// Service types with how many services have each, expired services left out (as Beacon
    /// leaves out lapsed ones).
    pub fn types(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for service in self.services.values().filter(|s| s.status != Status::Expired) {
            *counts.entry(service.service_type.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Tags with how many services carry each, expired services left out.
    pub fn tags(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for service in self.services.values().filter(|s| s.status != Status::Expired) {
            for tag in &service.tags {
                *counts.entry(tag.clone()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Ids whose lease ended at or before `now_ms` and that are not yet expired, in id order:
    /// what the leader proposes in `Command::Expire`.
    pub fn expired_candidates(&self, now_ms: u64) -> Vec<ServiceId> {
        self.services
            .values()
            .filter(|s| s.status != Status::Expired && s.expires_at_ms <= now_ms)
            .map(|s| s.id.clone())
            .collect()
    }

    pub fn counts_by_status(&self) -> StatusCounts {
        let mut counts = StatusCounts::default();
        for service in self.services.values() {
            match service.status {
                Status::Active => counts.active += 1,
                Status::Inactive => counts.inactive += 1,
                Status::Expired => counts.expired += 1,
                Status::Unhealthy => counts.unhealthy += 1,
            }
        }
        counts
    }

    /// The non-expired service at this name, host and port with the smallest id, if any.
    /// Beacon turns a registration that matches one into an update; the API may do the same.
    pub fn find_by_endpoint(&self, name: &str, host: &str, port: u16) -> Option<&Service> {
        self.services
            .values()
            .find(|s| s.status != Status::Expired && s.name == name && s.host == host && s.port == port)
    }

    /// Every event with a revision strictly after `after`, oldest first (empty when `after` is
    /// the current revision or later). `Compacted` when some of them were dropped already.
    pub fn events_since(&self, after: Revision) -> Result<Vec<Event>, RegistryError> {
        self.history.since(after)
    }

    /// The smallest revision `events_since` accepts.
    pub fn oldest_available(&self) -> Revision {
        self.history.compacted_through()
    }

    /// How many events the history holds now.
    pub fn history_len(&self) -> usize {
        self.history.len()
    }
}
