//! Register, update and deregister semantics, refusals, and stale revisions.

use std::collections::BTreeMap;

use super::*;

#[test]
fn register_stores_an_active_service_with_a_lease_from_now() {
    // Proves Register sets status, all four times, dedups tags and keeps optional fields.
    let mut reg = Registry::new(HISTORY_MAX_DEFAULT);
    let mut new = svc("a");
    new.ttl_seconds = 30;
    new.tags = vec!["x".into(), "y".into(), "x".into()];
    new.description = Some("front door".into());
    let applied = run(&mut reg, Command::Register { service: new, now_ms: T0 }).unwrap();
    let stored = reg.get(&sid("a")).unwrap().clone();
    assert_eq!(applied.outcome, Outcome::Registered { service: stored.clone() });
    assert_eq!(stored.status, Status::Active);
    assert_eq!((stored.created_at_ms, stored.updated_at_ms, stored.last_heartbeat_ms), (T0, T0, T0));
    assert_eq!(stored.expires_at_ms, T0 + 30_000);
    assert_eq!(stored.tags, ["x", "y"]);
    assert_eq!(stored.description.as_deref(), Some("front door"));
    assert_eq!((stored.port, stored.protocol.as_str(), stored.health_check_interval), (8080, "http", 60));
    assert_eq!(reg.revision(), Revision(1));
}

#[test]
fn registering_an_existing_id_is_refused_and_changes_nothing() {
    // Proves a duplicate id yields `already registered: <id>` and leaves state and revision alone.
    let mut reg = Registry::new(HISTORY_MAX_DEFAULT);
    register(&mut reg, svc("a"), T0);
    let before = bytes(&reg);
    let err = run(&mut reg, Command::Register { service: svc("a"), now_ms: T0 + 1 }).unwrap_err();
    assert_eq!(err, RegistryError::AlreadyRegistered { id: sid("a") });
    assert_eq!(err.to_string(), "already registered: a");
    assert_eq!(bytes(&reg), before);
    assert_eq!(reg.revision(), Revision(1));
}

#[test]
fn an_invalid_registration_changes_nothing() {
    // Proves a refused Register leaves services, history and revision untouched.
    let mut reg = Registry::new(HISTORY_MAX_DEFAULT);
    let before = bytes(&reg);
    let mut new = svc("a");
    new.port = 0;
    let err = run(&mut reg, Command::Register { service: new, now_ms: T0 }).unwrap_err();
    assert!(matches!(err, RegistryError::InvalidService { .. }), "{err:?}");
    assert_eq!(bytes(&reg), before);
    assert!(reg.is_empty());
}

#[test]
fn a_revision_at_or_before_the_last_applied_is_refused() {
    // Proves apply never runs the same log index twice nor goes backwards.
    let mut reg = Registry::new(HISTORY_MAX_DEFAULT);
    reg.apply(Revision(5), &Command::Register { service: svc("a"), now_ms: T0 }).unwrap();
    let before = bytes(&reg);
    for revision in [Revision(5), Revision(4), Revision(0)] {
        let err = reg.apply(revision, &Command::Register { service: svc("b"), now_ms: T0 }).unwrap_err();
        assert_eq!(err, RegistryError::StaleRevision { revision, last: Revision(5) });
    }
    assert_eq!(bytes(&reg), before);
    reg.apply(Revision(9), &Command::Register { service: svc("b"), now_ms: T0 }).unwrap();
    assert_eq!(reg.revision(), Revision(9));
}

#[test]
fn update_changes_the_fields_the_patch_sets_and_emits_service_updated() {
    // Proves Update merges the patch, bumps updated_at, keeps the lease and emits one event.
    let mut reg = Registry::new(HISTORY_MAX_DEFAULT);
    let old = register(&mut reg, svc("a"), T0);
    let patch = ServicePatch {
        host: Some("10.0.0.2".into()),
        port: Some(9090),
        tags: Some(vec!["b".into(), "b".into(), "a".into()]),
        metadata: Some(BTreeMap::from([("zone".into(), "eu".into())])),
        status: Some(Status::Inactive),
        ..Default::default()
    };
    let applied = run(&mut reg, Command::Update { id: sid("a"), patch, now_ms: T0 + 5 }).unwrap();
    let new = reg.get(&sid("a")).unwrap().clone();
    assert_eq!((new.host.as_str(), new.port, new.status), ("10.0.0.2", 9090, Status::Inactive));
    assert_eq!(new.tags, ["b", "a"]);
    assert_eq!(new.metadata["zone"], "eu");
    assert_eq!(new.updated_at_ms, T0 + 5);
    assert_eq!((new.name, new.created_at_ms, new.expires_at_ms), (old.name, T0, old.expires_at_ms));
    assert_eq!(
        applied.outcome,
        Outcome::Updated { service: reg.get(&sid("a")).unwrap().clone(), changed: true }
    );
    assert_eq!(applied.events.len(), 1);
    assert_eq!(applied.events[0].kind, EventKind::ServiceUpdated);
}

#[test]
fn an_update_that_changes_nothing_emits_nothing() {
    // Proves an empty or same-valued patch is accepted, advances the revision, but adds no event.
    let mut reg = Registry::new(HISTORY_MAX_DEFAULT);
    let old = register(&mut reg, svc("a"), T0);
    for patch in [ServicePatch::default(), ServicePatch { port: Some(8080), ..Default::default() }] {
        let applied = run(&mut reg, Command::Update { id: sid("a"), patch, now_ms: T0 + 9 }).unwrap();
        assert_eq!(applied.outcome, Outcome::Updated { service: old.clone(), changed: false });
        assert!(applied.events.is_empty());
    }
    assert_eq!(reg.get(&sid("a")), Some(&old));
    assert_eq!(reg.revision(), Revision(3));
    assert_eq!(reg.history_len(), 1);
}

#[test]
fn null_in_a_patch_clears_an_optional_field_and_absence_keeps_it() {
    // Proves the three states of an optional patch field: absent keeps, null clears, a value sets.
    let mut reg = Registry::new(HISTORY_MAX_DEFAULT);
    let mut new = svc("a");
    new.description = Some("d".into());
    new.version = Some("1.0".into());
    new.health_check_url = Some("http://h/health".into());
    register(&mut reg, new, T0);
    let patch: ServicePatch =
        serde_json::from_str(r#"{"description": null, "version": "2.0"}"#).expect("patch json");
    run(&mut reg, Command::Update { id: sid("a"), patch, now_ms: T0 }).unwrap();
    let s = reg.get(&sid("a")).unwrap();
    assert_eq!(s.description, None);
    assert_eq!(s.version.as_deref(), Some("2.0"));
    assert_eq!(s.health_check_url.as_deref(), Some("http://h/health"));
}

#[test]
fn updating_an_unknown_or_with_an_invalid_patch_is_refused() {
    // Proves `not found: <id>` for unknown ids, and a bad patch changes nothing.
    let mut reg = Registry::new(HISTORY_MAX_DEFAULT);
    register(&mut reg, svc("a"), T0);
    let before = bytes(&reg);
    let err = run(&mut reg, Command::Update { id: sid("ghost"), patch: ServicePatch::default(), now_ms: T0 })
        .unwrap_err();
    assert_eq!(err.to_string(), "not found: ghost");
    let patch = ServicePatch { name: Some("ok".into()), port: Some(0), ..Default::default() };
    let err = run(&mut reg, Command::Update { id: sid("a"), patch, now_ms: T0 }).unwrap_err();
    assert_eq!(err.to_string(), "invalid service: port must be 1–65535 (got 0)");
    assert_eq!(bytes(&reg), before);
}

#[test]
fn a_new_ttl_applies_from_the_next_renewal() {
    // Proves Update of ttl leaves the current lease and the next heartbeat uses the new length.
    let mut reg = Registry::new(HISTORY_MAX_DEFAULT);
    register(&mut reg, svc("a"), T0);
    let patch = ServicePatch { ttl_seconds: Some(20), ..Default::default() };
    run(&mut reg, Command::Update { id: sid("a"), patch, now_ms: T0 + 1 }).unwrap();
    assert_eq!(reg.get(&sid("a")).unwrap().expires_at_ms, T0 + 300_000);
    renew(&mut reg, &["a"], T0 + 2);
    assert_eq!(reg.get(&sid("a")).unwrap().expires_at_ms, T0 + 2 + 20_000);
}

#[test]
fn deregister_removes_the_service_and_reports_its_last_state() {
    // Proves Deregister removes, emits service_deregistered with the last state, and refuses unknown ids.
    let mut reg = Registry::new(HISTORY_MAX_DEFAULT);
    let last = register(&mut reg, svc("a"), T0);
    let applied = run(&mut reg, Command::Deregister { id: sid("a"), now_ms: T0 + 7 }).unwrap();
    assert_eq!(applied.outcome, Outcome::Deregistered { service: last.clone() });
    assert_eq!(
        applied.events,
        [Event { revision: Revision(2), kind: EventKind::ServiceDeregistered, service: last }]
    );
    assert!(reg.get(&sid("a")).is_none());
    let err = run(&mut reg, Command::Deregister { id: sid("a"), now_ms: T0 + 8 }).unwrap_err();
    assert_eq!(err, RegistryError::NotFound { id: sid("a") });
    assert_eq!(reg.revision(), Revision(2));
}

#[test]
fn an_id_can_be_registered_again_after_deregistration() {
    // Proves deregistration frees the id for a fresh registration with fresh times.
    let mut reg = Registry::new(HISTORY_MAX_DEFAULT);
    register(&mut reg, svc("a"), T0);
    run(&mut reg, Command::Deregister { id: sid("a"), now_ms: T0 + 1 }).unwrap();
    let again = register(&mut reg, svc("a"), T0 + 2);
    assert_eq!(again.created_at_ms, T0 + 2);
}

#[test]
fn commands_round_trip_through_json_keeping_absent_apart_from_null() {
    // Proves the log encoding keeps every command, including patch fields that are absent vs null.
    let patch =
        ServicePatch { description: Some(None), version: Some(Some("2".into())), ..Default::default() };
    let commands = [
        Command::Register { service: svc("a"), now_ms: T0 },
        Command::Update { id: sid("a"), patch, now_ms: T0 },
        Command::Deregister { id: sid("a"), now_ms: T0 },
        Command::Renew { ids_with_ttl: vec![(sid("a"), Some(30)), (sid("b"), None)], now_ms: T0 },
        Command::Expire { ids: vec![sid("a")], at_ms: T0 },
        Command::SetHealth { id: sid("a"), healthy: false, at_ms: T0 },
        Command::HealthChecked {
            results: vec![CheckResult {
                id: sid("a"),
                at_ms: T0,
                ok: false,
                latency_ms: 3,
                error: Some("x".into()),
            }],
        },
        Command::Cleanup { at_ms: T0 },
        Command::ExtendLeases { by_ms: 15_000, now_ms: T0 },
    ];
    for cmd in commands {
        let json = serde_json::to_string(&cmd).unwrap();
        assert!(json.starts_with(&format!("{{\"{}\":", cmd.name())), "{json}");
        assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), cmd, "{json}");
    }
}
