//! After a merge, the services of the cluster that yielded are registered again in the cluster
//! it joined, so a merge loses no service. The controller saved the old registry (a snapshot
//! under `<data-dir>/merged/`) before discarding the raft state; once this node is a member of
//! the new cluster, every live service from that file that the new cluster does not know is
//! proposed as a fresh registration (through the leader, from any node). Every node of the
//! old cluster does this; the registry refuses the duplicates (`already registered`), so the
//! result is the same whoever gets there first. A marker file records that a saved state was
//! carried over, so a restart does not do it again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::registrar::{Registrar, RegistrarError};
use crate::membership::RaftClusterInfo;
use crate::registry::{NewService, RegistryError, RegistrySnapshot, Service, Status};

/// How long the carry-over keeps retrying one saved state before it gives up (and says so).
const GIVE_UP_AFTER: Duration = Duration::from_secs(300);

/// The registration that puts `s` back: its own id and fields, a fresh lease.
pub fn to_new(s: &Service) -> NewService {
    NewService {
        id: s.id.clone(),
        name: s.name.clone(),
        service_type: s.service_type.clone(),
        host: s.host.clone(),
        port: u32::from(s.port),
        protocol: s.protocol.clone(),
        tags: s.tags.clone(),
        metadata: s.metadata.clone(),
        ttl_seconds: s.ttl_seconds,
        health_check_url: s.health_check_url.clone(),
        health_check_interval: s.health_check_interval,
        health_check_timeout: s.health_check_timeout,
        health_check_unhealthy_threshold: s.health_check_unhealthy_threshold,
        health_check_healthy_threshold: s.health_check_healthy_threshold,
        mdns_service_type: s.mdns_service_type.clone(),
        mdns_txt_records: s.mdns_txt_records.clone(),
        description: s.description.clone(),
        version: s.version.clone(),
    }
}

/// The services of a saved registry worth carrying over: all but the expired ones.
pub fn live_services(snapshot: &RegistrySnapshot) -> Vec<&Service> {
    snapshot.services.iter().filter(|s| s.status != Status::Expired).collect()
}

fn marker(saved: &Path) -> PathBuf {
    saved.with_extension("carried")
}

/// Watches the controller's merge records and carries each saved state over once this node
/// is in the cluster it merged into. Runs until `shutdown`.
pub async fn run(
    registrar: Arc<Registrar>,
    mut info: watch::Receiver<RaftClusterInfo>,
    shutdown: CancellationToken,
) {
    loop {
        let now = info.borrow_and_update().clone();
        for m in &now.merges {
            let Some(saved) = m.saved_state.as_deref().map(PathBuf::from) else { continue };
            if now.id.as_deref() != Some(m.into.id.as_str()) || marker(&saved).exists() {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = carry_over(&registrar, &saved) => {}
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = info.changed() => if r.is_err() { return },
        }
    }
}

async fn carry_over(registrar: &Registrar, saved: &Path) {
    let snapshot = match std::fs::read(saved)
        .map_err(|e| e.to_string())
        .and_then(|b| RegistrySnapshot::from_bytes(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(path = %saved.display(), error = %e, "merge: cannot read the saved registry; its services are not carried over");
            return;
        }
    };
    let services = live_services(&snapshot);
    let (mut added, mut present) = (0usize, 0usize);
    let deadline = tokio::time::Instant::now() + GIVE_UP_AFTER;
    for s in services.iter().copied() {
        loop {
            match registrar.register(to_new(s)).await {
                Ok(_) => added += 1,
                Err(RegistrarError::Registry(RegistryError::AlreadyRegistered { .. })) => present += 1,
                Err(RegistrarError::Registry(e)) => {
                    tracing::warn!(service = %s.id.as_str(), error = %e, "merge: a saved service was refused");
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "merge: carry-over waits for the new cluster");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(path = %saved.display(), error = %e, "merge: gave up carrying the saved services over");
                    return;
                }
            }
            break;
        }
    }
    if let Err(e) = std::fs::write(marker(saved), format!("{added} registered, {present} already present\n"))
    {
        tracing::warn!(error = %e, "merge: cannot write the carry-over marker");
    }
    tracing::info!(
        path = %saved.display(), registered = added, already_present = present,
        "merge: the old cluster's live services are registered in the new cluster"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Command, Registry, Revision, ServiceId};

    #[test]
    fn a_saved_registry_carries_over_its_live_services_with_their_fields() {
        // Proves the conversion: every field a registration carries survives, and expired
        // services are left behind.
        let mut r = Registry::new(10);
        let mut a = NewService::new(ServiceId::new("a"), "cam", "http", "10.0.0.1", 8080);
        a.tags = vec!["x".into()];
        a.metadata.insert("k".into(), "v".into());
        a.ttl_seconds = 60;
        let b = NewService::new(ServiceId::new("b"), "old", "http", "10.0.0.2", 80);
        r.apply(Revision(1), &Command::Register { service: a.clone(), now_ms: 0 }).unwrap();
        r.apply(Revision(2), &Command::Register { service: b, now_ms: 0 }).unwrap();
        r.apply(Revision(3), &Command::Expire { ids: vec![ServiceId::new("b")], at_ms: 400_000 }).unwrap();
        let snap = r.snapshot();
        let live = live_services(&snap);
        assert_eq!(live.len(), 1);
        assert_eq!(to_new(live[0]), a);
    }
}
