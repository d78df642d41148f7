//! Snapshot → restore equality, byte round trips, and refusal of self-contradicting snapshots.

use super::super::snapshot::SNAPSHOT_FORMAT;
use super::*;

/// A registry with services in several statuses and a history that has been compacted.
fn busy() -> Registry {
    let mut reg = Registry::new(4);
    for id in ["a", "b", "c", "d"] {
        let mut new = svc(id);
        new.ttl_seconds = 10;
        new.tags = vec!["t".into(), id.into()];
        register(&mut reg, new, T0);
    }
    expire(&mut reg, &["b"], T0 + 10_000);
    run(&mut reg, Command::SetHealth { id: sid("c"), healthy: false, at_ms: T0 }).unwrap();
    run(&mut reg, Command::Deregister { id: sid("d"), now_ms: T0 }).unwrap();
    reg
}

#[test]
fn restore_gives_an_equal_registry_with_identical_bytes() {
    // Proves snapshot → bytes → restore reproduces services, revision, history and compaction point.
    let reg = busy();
    assert_eq!(reg.oldest_available(), Revision(3), "the fixture must exercise compaction");
    let encoded = bytes(&reg);
    let restored = Registry::restore(RegistrySnapshot::from_bytes(&encoded).unwrap()).unwrap();
    assert_eq!(restored, reg);
    assert_eq!(bytes(&restored), encoded);
    assert_eq!(restored.events_since(Revision(3)).unwrap(), reg.events_since(Revision(3)).unwrap());
    assert_eq!(restored.events_since(Revision(2)), reg.events_since(Revision(2)));
}

#[test]
fn a_restored_registry_continues_exactly_like_the_original() {
    // Proves the restored registry applies later commands to the same state as the original.
    let mut original = busy();
    let mut restored = Registry::restore(original.snapshot()).unwrap();
    let later = [
        Command::Renew { ids_with_ttl: vec![(sid("b"), Some(60))], now_ms: T0 + 20_000 },
        Command::Register { service: svc("e"), now_ms: T0 + 20_000 },
        Command::Cleanup { at_ms: T0 + 99_000 },
    ];
    for cmd in later {
        let a = run(&mut original, cmd.clone());
        let b = run(&mut restored, cmd);
        assert_eq!(a, b);
    }
    assert_eq!(bytes(&original), bytes(&restored));
}

#[test]
fn an_empty_registry_round_trips() {
    // Proves the trivial snapshot restores to a fresh registry with the same history bound.
    let reg = Registry::new(7);
    let restored = Registry::restore(reg.snapshot()).unwrap();
    assert_eq!(restored, reg);
    assert_eq!(restored.history_max(), 7);
}

#[test]
fn restore_refuses_snapshots_that_contradict_themselves() {
    // Proves restore checks format, unique ids, event order and bounds, each with a reason.
    let good = busy().snapshot();
    let refused = |mutate: &dyn Fn(&mut RegistrySnapshot), needle: &str| {
        let mut snapshot = good.clone();
        mutate(&mut snapshot);
        let err = Registry::restore(snapshot).unwrap_err();
        assert!(matches!(err, RegistryError::InvalidSnapshot { .. }), "{err:?}");
        assert!(err.to_string().contains(needle), "{err} lacks {needle:?}");
    };
    refused(&|s| s.format = SNAPSHOT_FORMAT + 1, "format 2 is not the supported format 1");
    refused(&|s| s.services.push(s.services[0].clone()), "service a appears twice");
    refused(&|s| s.events.reverse(), "out of order");
    refused(&|s| s.revision = Revision(5), "out of order");
    refused(&|s| s.compacted_through = Revision(7), "out of order");
    refused(&|s| s.compacted_through = Revision(99), "beyond the snapshot's revision");
    refused(&|s| s.history_max = 3, "4 events exceed history_max 3");
    assert!(Registry::restore(good).is_ok());
}

#[test]
fn undecodable_bytes_are_an_invalid_snapshot() {
    // Proves from_bytes reports garbage as a snapshot error rather than panicking.
    let err = RegistrySnapshot::from_bytes(b"{not json").unwrap_err();
    assert!(err.to_string().starts_with("invalid snapshot: cannot decode:"), "{err}");
}

#[test]
fn snapshot_bytes_encoded_in_place_equal_the_copied_snapshot() {
    // Proves the borrowing encoder writes exactly the bytes of the copied snapshot (so either
    // restores the same registry), for an empty and for a busy, compacted registry.
    for reg in [Registry::new(10), busy()] {
        let in_place = reg.snapshot_bytes().unwrap();
        assert_eq!(in_place, reg.snapshot().to_bytes().unwrap());
        assert_eq!(Registry::restore(RegistrySnapshot::from_bytes(&in_place).unwrap()).unwrap(), reg);
    }
}
