//! Lease and health semantics: Renew, Expire (idempotent on replay), SetHealth, Cleanup,
//! ExtendLeases.

use super::*;

fn with_services(ids: &[&str], ttl_seconds: u32) -> Registry {
    let mut reg = Registry::new(HISTORY_MAX_DEFAULT);
    for id in ids {
        let mut new = svc(id);
        new.ttl_seconds = ttl_seconds;
        register(&mut reg, new, T0);
    }
    reg
}

#[test]
fn renew_moves_the_lease_and_revives_an_expired_service() {
    // Proves Renew sets last_heartbeat and expires_at from now, and expired → active with one event.
    let mut reg = with_services(&["a", "b"], 10);
    assert_eq!(expire(&mut reg, &["b"], T0 + 10_000), [sid("b")]);
    let applied = renew(&mut reg, &["a", "b"], T0 + 12_000);
    for id in ["a", "b"] {
        let s = reg.get(&sid(id)).unwrap();
        assert_eq!(
            (s.last_heartbeat_ms, s.expires_at_ms, s.status),
            (T0 + 12_000, T0 + 22_000, Status::Active)
        );
    }
    assert_eq!(reg.get(&sid("a")).unwrap().updated_at_ms, T0, "a plain renewal is not a record change");
    assert_eq!(applied.events.len(), 1);
    assert_eq!(
        (applied.events[0].kind, applied.events[0].service.id.as_str()),
        (EventKind::ServiceUpdated, "b")
    );
    assert_eq!(applied.outcome, Outcome::Renewed { renewed: vec![sid("a"), sid("b")], missing: vec![] });
}

#[test]
fn renew_keeps_unhealthy_and_inactive_statuses() {
    // Proves a heartbeat only revives expired services; health and operator decisions stand.
    let mut reg = with_services(&["sick", "off"], 10);
    run(&mut reg, Command::SetHealth { id: sid("sick"), healthy: false, at_ms: T0 }).unwrap();
    let patch = ServicePatch { status: Some(Status::Inactive), ..Default::default() };
    run(&mut reg, Command::Update { id: sid("off"), patch, now_ms: T0 }).unwrap();
    let applied = renew(&mut reg, &["sick", "off"], T0 + 1);
    assert!(applied.events.is_empty());
    assert_eq!((status(&reg, "sick"), status(&reg, "off")), (Status::Unhealthy, Status::Inactive));
}

#[test]
fn renew_skips_and_reports_unknown_ids() {
    // Proves a batch with a deregistered id still renews the others.
    let mut reg = with_services(&["a"], 10);
    let applied = renew(&mut reg, &["gone", "a"], T0 + 1);
    assert_eq!(applied.outcome, Outcome::Renewed { renewed: vec![sid("a")], missing: vec![sid("gone")] });
    assert_eq!(reg.get(&sid("a")).unwrap().expires_at_ms, T0 + 1 + 10_000);
}

#[test]
fn renew_ttl_override_is_bounded_and_one_bad_override_refuses_the_batch() {
    // Proves `?ttl=` overrides use 10–86400 s, do not change the stored ttl, and a bad one changes nothing.
    let mut reg = with_services(&["a", "b"], 300);
    for ttl in [10, 86_400] {
        let ids_with_ttl = vec![(sid("a"), Some(ttl))];
        run(&mut reg, Command::Renew { ids_with_ttl, now_ms: T0 + 1 }).unwrap();
        let a = reg.get(&sid("a")).unwrap();
        assert_eq!((a.expires_at_ms, a.ttl_seconds), (T0 + 1 + u64::from(ttl) * 1_000, 300));
    }
    let before = bytes(&reg);
    for ttl in [9, 86_401] {
        let ids_with_ttl = vec![(sid("b"), None), (sid("a"), Some(ttl))];
        let err = run(&mut reg, Command::Renew { ids_with_ttl, now_ms: T0 + 2 }).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("invalid command: renew of a: ttl must be 10–86400 seconds (got {ttl})")
        );
        assert_eq!(bytes(&reg), before);
    }
}

#[test]
fn expire_only_expires_services_whose_lease_ended_by_at() {
    // Proves Expire checks expires_at_ms <= at_ms itself, ignoring listed ids that are not due or unknown.
    let mut reg = with_services(&["a", "b"], 10);
    renew(&mut reg, &["b"], T0 + 5_000);
    let expired = expire(&mut reg, &["a", "b", "ghost"], T0 + 10_000);
    assert_eq!(expired, [sid("a")]);
    assert_eq!((status(&reg, "a"), status(&reg, "b")), (Status::Expired, Status::Active));
    let a = reg.get(&sid("a")).unwrap();
    assert_eq!(a.updated_at_ms, T0 + 10_000);
    assert_eq!(expire(&mut reg, &["b"], T0 + 14_999), Vec::<ServiceId>::new());
    assert_eq!(expire(&mut reg, &["b"], T0 + 15_000), [sid("b")]);
}

#[test]
fn expire_replayed_changes_nothing() {
    // Proves the same Expire applied again (a retried proposal) neither re-expires nor emits events.
    let mut reg = with_services(&["a", "b"], 10);
    let cmd = Command::Expire { ids: vec![sid("a"), sid("b")], at_ms: T0 + 10_000 };
    let first = run(&mut reg, cmd.clone()).unwrap();
    assert_eq!(first.events.len(), 2);
    assert!(first
        .events
        .iter()
        .all(|e| e.kind == EventKind::ServiceExpired && e.service.status == Status::Expired));
    let services_after_first: Vec<Service> = reg.services().cloned().collect();
    let again = run(&mut reg, cmd).unwrap();
    assert_eq!(again.outcome, Outcome::Expired { ids: vec![] });
    assert!(again.events.is_empty());
    assert_eq!(reg.services().cloned().collect::<Vec<_>>(), services_after_first);
}

#[test]
fn a_renewal_that_wins_the_race_keeps_its_service() {
    // Proves a renewed service is neither an expiry candidate nor expired by a stale Expire.
    let mut reg = with_services(&["a"], 10);
    assert_eq!(reg.expired_candidates(T0 + 10_000), [sid("a")]);
    let stale = Command::Expire { ids: reg.expired_candidates(T0 + 10_000), at_ms: T0 + 10_000 };
    renew(&mut reg, &["a"], T0 + 9_000);
    assert!(reg.expired_candidates(T0 + 10_000).is_empty());
    assert!(run(&mut reg, stale).unwrap().events.is_empty());
    assert_eq!(status(&reg, "a"), Status::Active);
}

#[test]
fn set_health_flips_active_and_unhealthy_only() {
    // Proves failing checks make active services unhealthy, passing ones restore them, others stay put.
    let mut reg = with_services(&["a", "off", "old"], 10);
    let patch = ServicePatch { status: Some(Status::Inactive), ..Default::default() };
    run(&mut reg, Command::Update { id: sid("off"), patch, now_ms: T0 }).unwrap();
    expire(&mut reg, &["old"], T0 + 10_000);

    let set = |reg: &mut Registry, id: &str, healthy: bool| {
        run(reg, Command::SetHealth { id: sid(id), healthy, at_ms: T0 + 11_000 }).unwrap()
    };
    let applied = set(&mut reg, "a", false);
    assert_eq!(applied.events[0].kind, EventKind::HealthStatusChanged);
    assert_eq!(
        (status(&reg, "a"), reg.get(&sid("a")).unwrap().updated_at_ms),
        (Status::Unhealthy, T0 + 11_000)
    );
    assert!(set(&mut reg, "a", false).events.is_empty());
    assert_eq!(set(&mut reg, "a", true).events[0].service.status, Status::Active);
    assert!(set(&mut reg, "a", true).events.is_empty());
    for (id, expected) in [("off", Status::Inactive), ("old", Status::Expired)] {
        for healthy in [false, true] {
            let applied = set(&mut reg, id, healthy);
            assert!(matches!(applied.outcome, Outcome::HealthSet { changed: false, .. }));
            assert_eq!(status(&reg, id), expected);
        }
    }
    let err = run(&mut reg, Command::SetHealth { id: sid("ghost"), healthy: true, at_ms: T0 }).unwrap_err();
    assert_eq!(err.to_string(), "not found: ghost");
}

#[test]
fn cleanup_removes_expired_services_whose_lease_ended_before_at() {
    // Proves Cleanup removes only expired services with expires_at_ms < at_ms, each with an event.
    let mut reg = with_services(&["a", "b", "live"], 10);
    renew(&mut reg, &["b"], T0 + 1);
    expire(&mut reg, &["a", "b"], T0 + 20_000);
    let boundary = run(&mut reg, Command::Cleanup { at_ms: T0 + 10_000 }).unwrap();
    assert_eq!(boundary.outcome, Outcome::CleanedUp { ids: vec![] }, "expires_at == at_ms stays");
    let applied = run(&mut reg, Command::Cleanup { at_ms: T0 + 10_001 }).unwrap();
    assert_eq!(applied.outcome, Outcome::CleanedUp { ids: vec![sid("a")] });
    assert_eq!(applied.events[0].kind, EventKind::ServiceDeregistered);
    assert_eq!(applied.events[0].service.status, Status::Expired);
    assert!(reg.get(&sid("a")).is_none());
    run(&mut reg, Command::Cleanup { at_ms: T0 + 1_000_000 }).unwrap();
    assert_eq!(reg.services().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["live"]);
}

#[test]
fn extend_leases_renews_every_unexpired_lease_from_now_plus_by_ms() {
    // Proves ExtendLeases raises leases to now+ttl+by, never shortens, skips expired, emits no event.
    let mut reg = with_services(&["short", "sick", "old"], 10);
    let mut long = svc("long");
    long.ttl_seconds = 3_600;
    register(&mut reg, long, T0);
    expire(&mut reg, &["old"], T0 + 10_000);
    run(&mut reg, Command::SetHealth { id: sid("sick"), healthy: false, at_ms: T0 }).unwrap();
    run(&mut reg, Command::Renew { ids_with_ttl: vec![(sid("long"), None)], now_ms: T0 + 14_000 }).unwrap();
    let applied = run(&mut reg, Command::ExtendLeases { by_ms: 30_000, now_ms: T0 + 15_000 }).unwrap();
    assert_eq!(applied.outcome, Outcome::LeasesExtended { count: 3 });
    assert!(applied.events.is_empty());
    let end = |id: &str| reg.get(&sid(id)).unwrap().expires_at_ms;
    assert_eq!((end("short"), end("sick")), (T0 + 55_000, T0 + 55_000));
    assert_eq!(end("long"), T0 + 15_000 + 3_600_000 + 30_000);
    assert_eq!((end("old"), status(&reg, "old")), (T0 + 10_000, Status::Expired));
    assert!(reg.expired_candidates(T0 + 54_999).is_empty());
    // A lease already beyond now+ttl+by is left alone.
    let applied = run(&mut reg, Command::ExtendLeases { by_ms: 1, now_ms: T0 + 15_000 }).unwrap();
    assert_eq!(applied.outcome, Outcome::LeasesExtended { count: 0 });
}

#[test]
fn extend_leases_is_bounded() {
    // Proves by_ms must be 1–86400000 and a refused extension changes nothing.
    let mut reg = with_services(&["a"], 10);
    let before = bytes(&reg);
    for by_ms in [0, 86_400_001] {
        let err = run(&mut reg, Command::ExtendLeases { by_ms, now_ms: T0 }).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("invalid command: by_ms must be 1–86400000 milliseconds (got {by_ms})")
        );
    }
    assert_eq!(bytes(&reg), before);
    for by_ms in [1, 86_400_000] {
        run(&mut reg, Command::ExtendLeases { by_ms, now_ms: T0 }).unwrap();
    }
    assert_eq!(reg.get(&sid("a")).unwrap().expires_at_ms, T0 + 10_000 + 86_400_000);
}
