//! [`Registry`] and its only write path, [`Registry::apply`]: one [`Command`] at one revision.
//!
//! Every handler checks everything first and mutates only once nothing can fail, so a refused
//! command leaves services, history and revision exactly as they were. Must not import tokio,
//! clocks, randomness, I/O or other muster modules.

use std::collections::BTreeMap;

use super::command::{Applied, CheckResult, Command, Outcome};
use super::error::RegistryError;
use super::events::{Event, EventKind, History};
use super::model::{HealthCheck, NewService, Revision, Service, ServiceId, ServicePatch, Status};
use super::validate;

/// The replicated registry. Compare two with `==`; `snapshot()` gives the same bytes for equal
/// registries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    pub(crate) revision: Revision,
    pub(crate) services: BTreeMap<ServiceId, Service>,
    pub(crate) history: History,
}

/// What one handler did, before the revision is recorded.
struct Step {
    outcome: Outcome,
    events: Vec<Event>,
}

impl Registry {
    /// An empty registry keeping the last `history_max` events (0 keeps none: every resume is
    /// then compacted).
    pub fn new(history_max: usize) -> Registry {
        Registry { revision: Revision(0), services: BTreeMap::new(), history: History::new(history_max) }
    }

    /// The revision of the last accepted command (whether or not it produced events).
    pub fn revision(&self) -> Revision {
        self.revision
    }

    pub fn history_max(&self) -> usize {
        self.history.max()
    }

    /// Keeps the last `history_max` events from now on; a smaller bound compacts the oldest
    /// (whole revisions) at once. Services and revision are untouched.
    pub fn set_history_max(&mut self, history_max: usize) {
        self.history.set_max(history_max);
    }

    /// Applies `cmd` as the log entry at `revision`, which must be after the last one applied.
    /// On error nothing changed, not even the revision; the caller reports the error to the
    /// client and moves on to the next entry.
    pub fn apply(&mut self, revision: Revision, cmd: &Command) -> Result<Applied, RegistryError> {
        if revision <= self.revision {
            return Err(RegistryError::StaleRevision { revision, last: self.revision });
        }
        let step = match cmd {
            Command::Register { service, now_ms } => self.register(revision, service, *now_ms),
            Command::Update { id, patch, now_ms } => self.update(revision, id, patch, *now_ms),
            Command::Deregister { id, now_ms: _ } => self.deregister(revision, id),
            Command::Renew { ids_with_ttl, now_ms } => self.renew(revision, ids_with_ttl, *now_ms),
            Command::Expire { ids, at_ms } => Ok(self.expire(revision, ids, *at_ms)),
            Command::SetHealth { id, healthy, at_ms } => self.set_health(revision, id, *healthy, *at_ms),
            Command::HealthChecked { results } => self.health_checked(revision, results),
            Command::Cleanup { at_ms } => Ok(self.cleanup(revision, *at_ms)),
            Command::ExtendLeases { by_ms, now_ms } => self.extend_leases(*by_ms, *now_ms),
        }?;
        debug_assert!(step.events.iter().all(|event| event.revision == revision));
        self.revision = revision;
        self.history.extend(step.events.iter().cloned());
        Ok(Applied { revision, outcome: step.outcome, events: step.events })
    }

    fn register(&mut self, revision: Revision, new: &NewService, now_ms: u64) -> Result<Step, RegistryError> {
        validate::new_service(new)?;
        if self.services.contains_key(&new.id) {
            return Err(RegistryError::AlreadyRegistered { id: new.id.clone() });
        }
        let port = validate::port(new.port).map_err(RegistryError::invalid_service)?;
        let service = Service {
            id: new.id.clone(),
            name: new.name.clone(),
            service_type: new.service_type.clone(),
            host: new.host.clone(),
            port,
            protocol: new.protocol.clone(),
            tags: validate::dedup_tags(&new.tags),
            metadata: new.metadata.clone(),
            ttl_seconds: new.ttl_seconds,
            status: Status::Active,
            health_check_url: new.health_check_url.clone(),
            health_check_interval: new.health_check_interval,
            health_check_timeout: new.health_check_timeout,
            health_check_unhealthy_threshold: new.health_check_unhealthy_threshold,
            health_check_healthy_threshold: new.health_check_healthy_threshold,
            last_health_check: None,
            mdns_service_type: new.mdns_service_type.clone(),
            mdns_txt_records: new.mdns_txt_records.clone(),
            description: new.description.clone(),
            version: new.version.clone(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            last_heartbeat_ms: now_ms,
            expires_at_ms: lease_end(now_ms, new.ttl_seconds),
        };
        self.services.insert(service.id.clone(), service.clone());
        let event = Event { revision, kind: EventKind::ServiceRegistered, service: service.clone() };
        Ok(Step { outcome: Outcome::Registered { service }, events: vec![event] })
    }

    fn update(
        &mut self,
        revision: Revision,
        id: &ServiceId,
        patch: &ServicePatch,
        now_ms: u64,
    ) -> Result<Step, RegistryError> {
        let current = self.services.get(id).ok_or_else(|| not_found(id))?;
        validate::patch(patch)?;
        let mut next = current.clone();
        patch_into(&mut next, patch)?;
        if next == *current {
            return Ok(Step {
                outcome: Outcome::Updated { service: next, changed: false },
                events: Vec::new(),
            });
        }
        next.updated_at_ms = now_ms;
        self.services.insert(id.clone(), next.clone());
        let event = Event { revision, kind: EventKind::ServiceUpdated, service: next.clone() };
        Ok(Step { outcome: Outcome::Updated { service: next, changed: true }, events: vec![event] })
    }

    fn deregister(&mut self, revision: Revision, id: &ServiceId) -> Result<Step, RegistryError> {
        let service = self.services.remove(id).ok_or_else(|| not_found(id))?;
        let event = Event { revision, kind: EventKind::ServiceDeregistered, service: service.clone() };
        Ok(Step { outcome: Outcome::Deregistered { service }, events: vec![event] })
    }

    fn renew(
        &mut self,
        revision: Revision,
        ids_with_ttl: &[(ServiceId, Option<u32>)],
        now_ms: u64,
    ) -> Result<Step, RegistryError> {
        for (id, ttl) in ids_with_ttl {
            if let Some(ttl) = ttl {
                validate::ttl_seconds(*ttl).map_err(|reason| RegistryError::InvalidCommand {
                    reason: format!("renew of {id}: {reason}"),
                })?;
            }
        }
        let (mut renewed, mut missing, mut events) = (Vec::new(), Vec::new(), Vec::new());
        for (id, ttl) in ids_with_ttl {
            let Some(service) = self.services.get_mut(id) else {
                missing.push(id.clone());
                continue;
            };
            service.last_heartbeat_ms = now_ms;
            service.expires_at_ms = lease_end(now_ms, ttl.unwrap_or(service.ttl_seconds));
            if service.status == Status::Expired {
                service.status = Status::Active;
                service.updated_at_ms = now_ms;
                events.push(Event { revision, kind: EventKind::ServiceUpdated, service: service.clone() });
            }
            renewed.push(id.clone());
        }
        Ok(Step { outcome: Outcome::Renewed { renewed, missing }, events })
    }

    fn expire(&mut self, revision: Revision, ids: &[ServiceId], at_ms: u64) -> Step {
        let (mut expired, mut events) = (Vec::new(), Vec::new());
        for id in ids {
            let Some(service) = self.services.get_mut(id) else { continue };
            if service.status == Status::Expired || service.expires_at_ms > at_ms {
                continue;
            }
            service.status = Status::Expired;
            service.updated_at_ms = at_ms;
            events.push(Event { revision, kind: EventKind::ServiceExpired, service: service.clone() });
            expired.push(id.clone());
        }
        Step { outcome: Outcome::Expired { ids: expired }, events }
    }

    fn set_health(
        &mut self,
        revision: Revision,
        id: &ServiceId,
        healthy: bool,
        at_ms: u64,
    ) -> Result<Step, RegistryError> {
        let service = self.services.get_mut(id).ok_or_else(|| not_found(id))?;
        let next = match (service.status, healthy) {
            (Status::Active, false) => Status::Unhealthy,
            (Status::Unhealthy, true) => Status::Active,
            _ => {
                let outcome = Outcome::HealthSet { service: service.clone(), changed: false };
                return Ok(Step { outcome, events: Vec::new() });
            }
        };
        service.status = next;
        service.updated_at_ms = at_ms;
        let event = Event { revision, kind: EventKind::HealthStatusChanged, service: service.clone() };
        Ok(Step {
            outcome: Outcome::HealthSet { service: service.clone(), changed: true },
            events: vec![event],
        })
    }

    fn health_checked(&mut self, revision: Revision, results: &[CheckResult]) -> Result<Step, RegistryError> {
        validate::check_results(results).map_err(|reason| RegistryError::InvalidCommand { reason })?;
        let (mut changed, mut skipped, mut events) = (Vec::new(), Vec::new(), Vec::new());
        for result in results {
            let Some(service) = self.services.get_mut(&result.id) else {
                skipped.push(result.id.clone());
                continue;
            };
            let checked = service.health_check_url.is_some()
                && matches!(service.status, Status::Active | Status::Unhealthy);
            let stale = service.last_health_check.as_ref().is_some_and(|last| last.at_ms > result.at_ms);
            if !checked || stale {
                skipped.push(result.id.clone());
                continue;
            }
            if record_check(service, result) {
                events.push(Event {
                    revision,
                    kind: EventKind::HealthStatusChanged,
                    service: service.clone(),
                });
                if !changed.contains(&result.id) {
                    changed.push(result.id.clone());
                }
            }
        }
        Ok(Step { outcome: Outcome::HealthChecked { changed, skipped }, events })
    }

    fn cleanup(&mut self, revision: Revision, at_ms: u64) -> Step {
        let doomed: Vec<ServiceId> = self
            .services
            .values()
            .filter(|s| s.status == Status::Expired && s.expires_at_ms < at_ms)
            .map(|s| s.id.clone())
            .collect();
        let mut events = Vec::with_capacity(doomed.len());
        for id in &doomed {
            if let Some(service) = self.services.remove(id) {
                events.push(Event { revision, kind: EventKind::ServiceDeregistered, service });
            }
        }
        Step { outcome: Outcome::CleanedUp { ids: doomed }, events }
    }

    fn extend_leases(&mut self, by_ms: u64, now_ms: u64) -> Result<Step, RegistryError> {
        validate::extend_by_ms(by_ms).map_err(|reason| RegistryError::InvalidCommand { reason })?;
        let mut count = 0;
        for service in self.services.values_mut() {
            let floor_ms = lease_end(now_ms, service.ttl_seconds).saturating_add(by_ms);
            if service.status != Status::Expired && service.expires_at_ms < floor_ms {
                service.expires_at_ms = floor_ms;
                count += 1;
            }
        }
        Ok(Step { outcome: Outcome::LeasesExtended { count }, events: Vec::new() })
    }
}

/// Records one check on a checked service: the run counters, the last result, and the status
/// change when a run reaches its threshold. True when the status changed.
fn record_check(service: &mut Service, result: &CheckResult) -> bool {
    let (failures, successes) = match &service.last_health_check {
        Some(last) => (last.consecutive_failures, last.consecutive_successes),
        None => (0, 0),
    };
    let (failures, successes) =
        if result.ok { (0, successes.saturating_add(1)) } else { (failures.saturating_add(1), 0) };
    service.last_health_check = Some(HealthCheck {
        at_ms: result.at_ms,
        ok: result.ok,
        latency_ms: result.latency_ms,
        error: result.error.clone(),
        consecutive_failures: failures,
        consecutive_successes: successes,
    });
    let next = match service.status {
        Status::Active if failures >= service.health_check_unhealthy_threshold => Status::Unhealthy,
        Status::Unhealthy if successes >= service.health_check_healthy_threshold => Status::Active,
        _ => return false,
    };
    service.status = next;
    service.updated_at_ms = result.at_ms;
    true
}

fn not_found(id: &ServiceId) -> RegistryError {
    RegistryError::NotFound { id: id.clone() }
}

/// When a lease taken at `now_ms` for `ttl_seconds` ends.
fn lease_end(now_ms: u64, ttl_seconds: u32) -> u64 {
    now_ms.saturating_add(u64::from(ttl_seconds) * 1_000)
}

/// Copies the fields `patch` sets into `service`; the patch was validated already.
fn patch_into(service: &mut Service, patch: &ServicePatch) -> Result<(), RegistryError> {
    fn set<T: Clone>(field: &mut T, value: &Option<T>) {
        if let Some(value) = value {
            *field = value.clone();
        }
    }
    set(&mut service.name, &patch.name);
    set(&mut service.service_type, &patch.service_type);
    set(&mut service.host, &patch.host);
    if let Some(port) = patch.port {
        service.port = validate::port(port).map_err(RegistryError::invalid_service)?;
    }
    set(&mut service.protocol, &patch.protocol);
    if let Some(tags) = &patch.tags {
        service.tags = validate::dedup_tags(tags);
    }
    set(&mut service.metadata, &patch.metadata);
    set(&mut service.ttl_seconds, &patch.ttl_seconds);
    set(&mut service.status, &patch.status);
    if let Some(url) = &patch.health_check_url {
        if *url != service.health_check_url {
            // A new check starts from nothing; without a check nothing keeps a service unhealthy.
            service.last_health_check = None;
            if service.status == Status::Unhealthy {
                service.status = Status::Active;
            }
        }
        service.health_check_url = url.clone();
    }
    set(&mut service.health_check_interval, &patch.health_check_interval);
    set(&mut service.health_check_timeout, &patch.health_check_timeout);
    set(&mut service.health_check_unhealthy_threshold, &patch.health_check_unhealthy_threshold);
    set(&mut service.health_check_healthy_threshold, &patch.health_check_healthy_threshold);
    set(&mut service.mdns_service_type, &patch.mdns_service_type);
    set(&mut service.mdns_txt_records, &patch.mdns_txt_records);
    set(&mut service.description, &patch.description);
    set(&mut service.version, &patch.version);
    Ok(())
}
