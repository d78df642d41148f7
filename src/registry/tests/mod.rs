//! Unit tests of the registry state machine: deterministic, explicit time, no I/O. Shared
//! helpers live here; each file covers one concern.

mod commands;
mod determinism;
mod events;
mod health;
mod lifecycle;
mod query;
mod snapshot;
mod validate;

use super::*;

/// A fixed "now": 2023-11-14T22:13:20Z in unix milliseconds.
pub(super) const T0: u64 = 1_700_000_000_000;

pub(super) fn sid(id: &str) -> ServiceId {
    ServiceId::new(id)
}

/// A valid registration with every optional field left at its default.
pub(super) fn svc(id: &str) -> NewService {
    NewService::new(sid(id), format!("svc-{id}"), "api", "10.0.0.1", 8080)
}

/// The revision after the registry's current one.
pub(super) fn next(reg: &Registry) -> Revision {
    Revision(reg.revision().0 + 1)
}

/// Applies `cmd` at the next revision.
pub(super) fn run(reg: &mut Registry, cmd: Command) -> Result<Applied, RegistryError> {
    let revision = next(reg);
    reg.apply(revision, &cmd)
}

/// Registers `new` at `now_ms` and returns the stored service.
pub(super) fn register(reg: &mut Registry, new: NewService, now_ms: u64) -> Service {
    let id = new.id.clone();
    run(reg, Command::Register { service: new, now_ms }).expect("register");
    reg.get(&id).cloned().expect("registered service")
}

pub(super) fn renew(reg: &mut Registry, ids: &[&str], now_ms: u64) -> Applied {
    let ids_with_ttl = ids.iter().map(|id| (sid(id), None)).collect();
    run(reg, Command::Renew { ids_with_ttl, now_ms }).expect("renew")
}

pub(super) fn expire(reg: &mut Registry, ids: &[&str], at_ms: u64) -> Vec<ServiceId> {
    let ids = ids.iter().map(|id| sid(id)).collect();
    match run(reg, Command::Expire { ids, at_ms }).expect("expire").outcome {
        Outcome::Expired { ids } => ids,
        other => panic!("expire answered {other:?}"),
    }
}

pub(super) fn status(reg: &Registry, id: &str) -> Status {
    reg.get(&sid(id)).expect("service present").status
}

/// The snapshot's bytes: equal bytes mean equal registries.
pub(super) fn bytes(reg: &Registry) -> Vec<u8> {
    reg.snapshot().to_bytes().expect("encode snapshot")
}

/// `count` copies of `c`.
pub(super) fn chars(c: char, count: usize) -> String {
    std::iter::repeat_n(c, count).collect()
}
