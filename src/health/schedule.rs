//! [`Schedule`]: when the leader checks each service. Pure: time arrives as `now_ms`, the
//! services as arguments; no clock, no I/O, no tokio. Must not import anything but `registry`.
//!
//! Each checked service has a next due time. A service new to the schedule (registered, or
//! seen first after an election) is first checked within `FIRST_SPREAD_MS_MAX` or its interval,
//! whichever is shorter, spread by its id so that a new leader does not check everything at
//! once. After a check starts, the next is due one interval after the planned time (not after
//! the check ends), so a slow check does not stretch the cadence; a leader that fell behind
//! skips the missed beats instead of catching up in a burst.

use std::collections::BTreeMap;

use crate::registry::validate::{check_target, CheckTarget};
use crate::registry::{Service, ServiceId, Status};

/// The longest a newly seen service waits for its first check.
pub const FIRST_SPREAD_MS_MAX: u64 = 2_000;

/// One check to run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub id: ServiceId,
    pub target: CheckTarget,
    /// The check's time limit: the service's timeout, at most its interval.
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Planned {
    url: String,
    target: CheckTarget,
    interval_ms: u64,
    timeout_ms: u64,
    next_ms: u64,
    in_flight: bool,
}

/// The leader's check plan; dropped when it stops leading.
#[derive(Debug, Default)]
pub struct Schedule {
    planned: BTreeMap<ServiceId, Planned>,
}

impl Schedule {
    pub fn new() -> Schedule {
        Schedule::default()
    }

    pub fn len(&self) -> usize {
        self.planned.len()
    }

    pub fn is_empty(&self) -> bool {
        self.planned.is_empty()
    }

    /// Follows the registry: services with a check URL that are `active` or `unhealthy` are
    /// planned; others leave the plan. A changed URL or interval starts the service over.
    pub fn sync<'a>(&mut self, services: impl IntoIterator<Item = &'a Service>, now_ms: u64) {
        let mut keep = BTreeMap::new();
        for service in services {
            let Some(url) = &service.health_check_url else { continue };
            if !matches!(service.status, Status::Active | Status::Unhealthy) {
                continue;
            }
            let Some(target) = check_target(url) else { continue };
            let interval_ms = u64::from(service.health_check_interval.max(1)) * 1_000;
            let timeout_ms = (u64::from(service.health_check_timeout.max(1)) * 1_000).min(interval_ms);
            let planned = match self.planned.remove(&service.id) {
                Some(mut p) if p.url == *url && p.interval_ms == interval_ms => {
                    p.timeout_ms = timeout_ms;
                    p
                }
                _ => Planned {
                    url: url.clone(),
                    target,
                    interval_ms,
                    timeout_ms,
                    next_ms: now_ms + first_delay_ms(&service.id, interval_ms),
                    in_flight: false,
                },
            };
            keep.insert(service.id.clone(), planned);
        }
        self.planned = keep;
    }

    /// The checks due at `now_ms`, at most `max`, marked in flight until [`Schedule::done`].
    pub fn due(&mut self, now_ms: u64, max: usize) -> Vec<Due> {
        let mut out = Vec::new();
        for (id, p) in self.planned.iter_mut() {
            if out.len() >= max {
                break;
            }
            if p.in_flight || p.next_ms > now_ms {
                continue;
            }
            p.in_flight = true;
            out.push(Due { id: id.clone(), target: p.target.clone(), timeout_ms: p.timeout_ms });
        }
        out
    }

    /// A check of `id` finished at `now_ms`: plans the next one interval after the last planned
    /// time, or one interval from now when that is already past.
    pub fn done(&mut self, id: &ServiceId, now_ms: u64) {
        if let Some(p) = self.planned.get_mut(id) {
            p.in_flight = false;
            let next = p.next_ms + p.interval_ms;
            p.next_ms = if next > now_ms { next } else { now_ms + p.interval_ms };
        }
    }

    /// When the earliest check that is not in flight is due.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.planned.values().filter(|p| !p.in_flight).map(|p| p.next_ms).min()
    }
}

/// A delay in `[0, min(interval, FIRST_SPREAD_MS_MAX))` derived from the id (FNV-1a), so the
/// same service gets the same slot on every leader and new leaders spread their first checks.
fn first_delay_ms(id: &ServiceId, interval_ms: u64) -> u64 {
    let span = interval_ms.clamp(1, FIRST_SPREAD_MS_MAX);
    let hash = id
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    hash % span
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{NewService, Registry};

    fn registry_with(services: &[(&str, Option<&str>, u32)]) -> Registry {
        let mut r = Registry::new(100);
        for (i, (id, url, interval)) in services.iter().enumerate() {
            let mut new = NewService::new(ServiceId::from(*id), "svc", "http", "127.0.0.1", 80);
            new.health_check_url = url.map(String::from);
            new.health_check_interval = *interval;
            let cmd = crate::registry::Command::Register { service: new, now_ms: 0 };
            r.apply(crate::registry::Revision(i as u64 + 1), &cmd).unwrap();
        }
        r
    }

    #[test]
    fn only_services_with_a_url_are_planned_and_first_checks_are_spread() {
        // Proves the plan follows the URLs and first checks come within the spread, once.
        let r = registry_with(&[
            ("a", Some("http://x/health"), 10),
            ("b", None, 10),
            ("c", Some("tcp://x:1"), 10),
        ]);
        let mut s = Schedule::new();
        s.sync(r.services(), 1_000);
        assert_eq!(s.len(), 2);
        assert!(s.due(999, 10).is_empty(), "nothing is due before now");
        let due = s.due(1_000 + FIRST_SPREAD_MS_MAX, 10);
        let ids: Vec<_> = due.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(due[1].target, CheckTarget::Tcp { host: "x".into(), port: 1 });
        assert!(s.due(1_000_000, 10).is_empty(), "in-flight checks are not handed out twice");
    }

    #[test]
    fn the_cadence_follows_the_plan_not_the_check_duration_and_skips_missed_beats() {
        // Proves next = planned + interval; a leader that fell behind does not burst.
        let r = registry_with(&[("a", Some("http://x/"), 10)]);
        let mut s = Schedule::new();
        s.sync(r.services(), 0);
        let first = s.next_due_ms().unwrap();
        assert_eq!(s.due(first, 1).len(), 1);
        s.done(&ServiceId::from("a"), first + 3_000);
        assert_eq!(s.next_due_ms(), Some(first + 10_000));
        assert_eq!(s.due(first + 10_000, 1).len(), 1);
        s.done(&ServiceId::from("a"), first + 55_000);
        assert_eq!(s.next_due_ms(), Some(first + 65_000), "missed beats are skipped");
    }

    #[test]
    fn a_changed_url_starts_over_and_gone_or_inactive_services_leave() {
        // Proves sync replaces, keeps and drops plans as the registry changes.
        let mut r = registry_with(&[("a", Some("http://x/"), 10), ("b", Some("http://y/"), 10)]);
        let mut s = Schedule::new();
        s.sync(r.services(), 0);
        let _ = s.due(100_000, 10);
        let patch = crate::registry::ServicePatch { status: Some(Status::Inactive), ..Default::default() };
        let cmd = crate::registry::Command::Update { id: ServiceId::from("b"), patch, now_ms: 1 };
        r.apply(crate::registry::Revision(10), &cmd).unwrap();
        let patch = crate::registry::ServicePatch {
            health_check_url: Some(Some("http://z/".into())),
            ..Default::default()
        };
        let cmd = crate::registry::Command::Update { id: ServiceId::from("a"), patch, now_ms: 1 };
        r.apply(crate::registry::Revision(11), &cmd).unwrap();
        s.sync(r.services(), 200_000);
        assert_eq!(s.len(), 1, "the inactive service left the plan");
        let due = s.due(200_000 + FIRST_SPREAD_MS_MAX, 10);
        assert_eq!(due.len(), 1, "the new URL is planned afresh, not in flight");
        assert!(matches!(&due[0].target, CheckTarget::Http { host, .. } if host == "z"));
    }

    #[test]
    fn the_timeout_never_exceeds_the_interval() {
        // Proves a 5 s timeout on a 2 s interval is cut to 2 s.
        let r = registry_with(&[("a", Some("http://x/"), 2)]);
        let mut s = Schedule::new();
        s.sync(r.services(), 0);
        assert_eq!(s.due(10_000, 1)[0].timeout_ms, 2_000);
    }
}
