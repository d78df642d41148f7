//! Revisions, event order, `events_since` (strictly after, compacted), and the JSON names
//! watchers and Beacon clients see.

use super::*;

#[test]
fn every_change_is_an_event_stamped_with_its_revision_in_order() {
    // Proves events carry the applying revision and come back oldest first.
    let mut reg = Registry::new(HISTORY_MAX_DEFAULT);
    register(&mut reg, svc("a"), T0);
    register(&mut reg, svc("b"), T0);
    run(&mut reg, Command::SetHealth { id: sid("a"), healthy: false, at_ms: T0 }).unwrap();
    run(&mut reg, Command::Deregister { id: sid("b"), now_ms: T0 }).unwrap();
    let seen: Vec<(u64, EventKind, String)> = reg
        .events_since(Revision(0))
        .unwrap()
        .into_iter()
        .map(|e| (e.revision.0, e.kind, e.service.id.0))
        .collect();
    assert_eq!(
        seen,
        [
            (1, EventKind::ServiceRegistered, "a".into()),
            (2, EventKind::ServiceRegistered, "b".into()),
            (3, EventKind::HealthStatusChanged, "a".into()),
            (4, EventKind::ServiceDeregistered, "b".into()),
        ]
    );
}

#[test]
fn the_revision_advances_for_accepted_commands_without_events() {
    // Proves revision() is the last accepted command's revision even when it changed no service.
    let mut reg = Registry::new(HISTORY_MAX_DEFAULT);
    register(&mut reg, svc("a"), T0);
    reg.apply(Revision(10), &Command::Expire { ids: vec![sid("a")], at_ms: T0 }).unwrap();
    reg.apply(Revision(11), &Command::ExtendLeases { by_ms: 1, now_ms: T0 }).unwrap();
    reg.apply(Revision(12), &Command::Cleanup { at_ms: T0 }).unwrap();
    assert_eq!(reg.revision(), Revision(12));
    assert_eq!(reg.history_len(), 1);
    assert_eq!(reg.events_since(Revision(1)).unwrap(), []);
}

#[test]
fn events_since_returns_strictly_later_events() {
    // Proves events_since(r) excludes r itself, and is empty at or beyond the current revision.
    let mut reg = Registry::new(HISTORY_MAX_DEFAULT);
    for id in ["a", "b", "c"] {
        register(&mut reg, svc(id), T0);
    }
    let revisions = |after: u64| -> Vec<u64> {
        reg.events_since(Revision(after)).unwrap().iter().map(|e| e.revision.0).collect()
    };
    assert_eq!(revisions(0), [1, 2, 3]);
    assert_eq!(revisions(1), [2, 3]);
    assert_eq!(revisions(3), Vec::<u64>::new());
    assert_eq!(revisions(99), Vec::<u64>::new());
}

#[test]
fn events_since_a_compacted_revision_is_an_explicit_error() {
    // Proves a watcher behind the trimmed history gets Compacted with the smallest acceptable revision.
    let mut reg = Registry::new(3);
    for id in ["a", "b", "c", "d", "e"] {
        register(&mut reg, svc(id), T0);
    }
    assert_eq!(reg.history_len(), 3);
    assert_eq!(reg.oldest_available(), Revision(2));
    for after in [0, 1] {
        let err = reg.events_since(Revision(after)).unwrap_err();
        assert_eq!(
            err,
            RegistryError::Compacted { requested: Revision(after), oldest_available: Revision(2) }
        );
    }
    let msg = reg.events_since(Revision(1)).unwrap_err().to_string();
    assert!(msg.starts_with("compacted: events after revision 1 were dropped"), "{msg}");
    let kept: Vec<u64> = reg.events_since(Revision(2)).unwrap().iter().map(|e| e.revision.0).collect();
    assert_eq!(kept, [3, 4, 5]);
}

#[test]
fn compaction_drops_a_multi_event_revision_whole() {
    // Proves that a multi-event command is kept or compacted as a whole: resuming before it is
    // refused, no half of it lingers, and the snapshot of that history restores.
    let mut reg = Registry::new(3);
    for id in ["a", "b", "c"] {
        let mut new = svc(id);
        new.ttl_seconds = 10;
        register(&mut reg, new, T0);
    }
    let applied =
        run(&mut reg, Command::Expire { ids: vec![sid("a"), sid("b"), sid("c")], at_ms: T0 + 10_000 })
            .unwrap();
    assert_eq!(applied.events.len(), 3);
    assert_eq!(reg.oldest_available(), Revision(3));
    run(&mut reg, Command::Deregister { id: sid("a"), now_ms: T0 }).unwrap();
    assert_eq!(reg.oldest_available(), Revision(4), "one of revision 4's three events was dropped");
    assert!(matches!(reg.events_since(Revision(3)), Err(RegistryError::Compacted { .. })));
    assert_eq!(reg.events_since(Revision(4)).unwrap().len(), 1);
    assert_eq!(reg.history_len(), 1, "the rest of revision 4 went with its first event");
    Registry::restore(reg.snapshot()).unwrap();
}

#[test]
fn a_history_of_zero_keeps_nothing() {
    // Proves history_max 0 is honoured: every resume from before the current revision is compacted.
    let mut reg = Registry::new(0);
    register(&mut reg, svc("a"), T0);
    assert_eq!(reg.history_len(), 0);
    assert!(matches!(reg.events_since(Revision(0)), Err(RegistryError::Compacted { .. })));
    assert_eq!(reg.events_since(Revision(1)).unwrap(), []);
}

#[test]
fn json_names_match_beacon() {
    // Proves the service and event JSON use Beacon's names (service_id, type, ttl, lowercase status, event names).
    let mut reg = Registry::new(HISTORY_MAX_DEFAULT);
    let applied = run(&mut reg, Command::Register { service: svc("a"), now_ms: T0 }).unwrap();
    let json = serde_json::to_value(&applied.events[0]).unwrap();
    assert_eq!(json["kind"], "service_registered");
    assert_eq!(json["revision"], 1);
    let service = &json["service"];
    for (key, value) in [
        ("service_id", serde_json::json!("a")),
        ("type", serde_json::json!("api")),
        ("ttl", serde_json::json!(300)),
        ("status", serde_json::json!("active")),
        ("protocol", serde_json::json!("http")),
        ("health_check_interval", serde_json::json!(60)),
        ("health_check_url", serde_json::Value::Null),
    ] {
        assert_eq!(service[key], value, "{key}");
    }
    let names: Vec<String> = [
        EventKind::ServiceRegistered,
        EventKind::ServiceUpdated,
        EventKind::ServiceDeregistered,
        EventKind::ServiceExpired,
        EventKind::HealthStatusChanged,
    ]
    .iter()
    .map(|kind| {
        let encoded = serde_json::to_value(kind).unwrap();
        assert_eq!(encoded, kind.as_str());
        kind.to_string()
    })
    .collect();
    assert_eq!(
        names,
        [
            "service_registered",
            "service_updated",
            "service_deregistered",
            "service_expired",
            "health_status_changed"
        ]
    );
}

#[test]
fn a_beacon_registration_body_decodes_with_defaults() {
    // Proves a Beacon ServiceCreate JSON body (no id, defaults omitted) decodes into NewService.
    let body = r#"{"name":"homegrow-client","type":"iot","host":"192.168.1.100","port":8080,
                  "tags":["iot","sensors"],"metadata":{"version":"1.0.0"}}"#;
    let new: NewService = serde_json::from_str(body).unwrap();
    assert_eq!(new.id, ServiceId::default());
    assert_eq!((new.protocol.as_str(), new.ttl_seconds, new.health_check_interval), ("http", 300, 60));
    assert_eq!(new.tags, ["iot", "sensors"]);
    let err = super::super::validate::new_service(&new).unwrap_err();
    assert_eq!(err.to_string(), "invalid service: service_id must be 1–64 characters (got 0)");
}
