//! The registry replicated by raft: the adapter that makes [`Registry`] the raft state machine
//! ([`RegistryMachine`]) and the leader's lease keeper ([`lease`]) that turns heartbeats and
//! the clock into `Renew`, `Expire` and `ExtendLeases` proposals, driven on the leader by
//! [`registrar::run_lease_keeper`]; [`registrar::Registrar`] is the write path the APIs use.
//!
//! Sits above both `consensus` and `registry` (neither imports the other); `node` composes it.

pub mod carry;
pub mod forward;
pub mod lease;
pub mod registrar;

use std::sync::Arc;

use tokio::sync::watch;

use crate::consensus::Machine;
use crate::metrics::REGISTRY;
use crate::registry::{Applied, Command, Outcome, Registry, RegistryError, RegistrySnapshot, Revision};

/// Commands and answers travel through the raft log as JSON (self-describing, so absent and
/// null patch fields stay distinct).
pub fn encode_command(cmd: &Command) -> Vec<u8> {
    serde_json::to_vec(cmd).unwrap_or_default()
}

/// Decodes the machine's answer to a proposal.
pub fn decode_answer(bytes: &[u8]) -> Result<Applied, RegistryError> {
    match serde_json::from_slice::<Result<Applied, RegistryError>>(bytes) {
        Ok(r) => r,
        Err(e) => Err(RegistryError::InvalidCommand {
            reason: format!("undecodable answer from the state machine: {e}"),
        }),
    }
}

/// Counts what a command this node proposed as leader did, in the node's metrics: each
/// registration and expiry once in the cluster, where it was committed.
fn count_committed(outcome: &Outcome) {
    match outcome {
        Outcome::Registered { .. } => REGISTRY.registrations.inc(),
        Outcome::Expired { ids } => REGISTRY.expirations.add(ids.len() as u64),
        _ => {}
    }
}

/// Announces the registry's revision after every applied command (for watchers).
pub type AppliedTx = Arc<watch::Sender<Revision>>;

/// [`Registry`] as the raft state machine.
pub struct RegistryMachine {
    pub registry: Registry,
    applied: Option<AppliedTx>,
}

impl RegistryMachine {
    pub fn new(registry: Registry) -> Self {
        RegistryMachine { registry, applied: None }
    }

    /// A machine that publishes its revision on `applied` after every apply and restore.
    pub fn announcing(registry: Registry, applied: AppliedTx) -> Self {
        RegistryMachine { registry, applied: Some(applied) }
    }

    fn announce(&self) {
        if let Some(tx) = &self.applied {
            tx.send_replace(self.registry.revision());
        }
    }
}

impl Machine for RegistryMachine {
    fn apply(&mut self, index: u64, payload: &[u8]) -> Vec<u8> {
        let result = match serde_json::from_slice::<Command>(payload) {
            Ok(cmd) => self.registry.apply(Revision(index), &cmd),
            Err(e) => Err(RegistryError::InvalidCommand { reason: format!("undecodable command: {e}") }),
        };
        self.announce();
        serde_json::to_vec(&result).unwrap_or_default()
    }

    fn snapshot(&self) -> Vec<u8> {
        match self.registry.snapshot_bytes() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "registry: cannot encode a snapshot");
                Vec::new()
            }
        }
    }

    /// Keeps this node's history bound (`--history-max`), not the snapshot's: a snapshot may
    /// come from a leader with another bound, or from before a restart with a new value.
    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let snap = RegistrySnapshot::from_bytes(bytes).map_err(|e| e.to_string())?;
        let history_max = self.registry.history_max();
        self.registry = Registry::restore(snap).map_err(|e| e.to_string())?;
        self.registry.set_history_max(history_max);
        self.announce();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{NewService, Outcome};

    fn register(id: &str) -> Command {
        let s = NewService::new(crate::registry::ServiceId::new(id), "cam", "http", "10.1.0.5", 8080);
        Command::Register { service: s, now_ms: 1_000 }
    }

    #[test]
    fn the_machine_applies_encoded_commands_and_round_trips_snapshots() {
        // Proves the adapter: a JSON command applies at its log index, bad bytes become an
        // error answer (not a panic), and snapshot → restore gives the same registry.
        let mut m = RegistryMachine::new(Registry::new(100));
        let answer = decode_answer(&m.apply(3, &encode_command(&register("a1")))).unwrap();
        assert_eq!(answer.revision, Revision(3));
        assert!(matches!(answer.outcome, Outcome::Registered { .. }));
        assert!(decode_answer(&m.apply(4, b"not json")).is_err());
        let mut other = RegistryMachine::new(Registry::new(100));
        other.restore(&m.snapshot()).unwrap();
        assert_eq!(other.snapshot(), m.snapshot());
        assert!(other.restore(b"{}").is_err());
    }

    #[test]
    fn a_restored_snapshot_keeps_this_nodes_history_bound() {
        // Proves --history-max survives a snapshot taken under another bound (a restart with a
        // new value, or a leader's snapshot): the machine keeps its own bound, compacts the
        // oldest events beyond it, and services and revision come from the snapshot.
        let mut big = RegistryMachine::new(Registry::new(100));
        for i in 1..=30u64 {
            big.apply(i, &encode_command(&register(&format!("s{i}"))));
        }
        let mut small = RegistryMachine::new(Registry::new(20));
        small.restore(&big.snapshot()).unwrap();
        assert_eq!(small.registry.history_max(), 20, "the local bound, not the snapshot's 100");
        assert_eq!(small.registry.history_len(), 20, "the oldest 10 events were compacted");
        assert_eq!(small.registry.revision(), Revision(30));
        assert_eq!(small.registry.len(), 30);
        match small.registry.events_since(Revision(0)) {
            Err(RegistryError::Compacted { oldest_available, .. }) => {
                assert_eq!(oldest_available, Revision(10))
            }
            other => panic!("expected compacted through revision 10, got {other:?}"),
        }
        let mut grown = RegistryMachine::new(Registry::new(1_000));
        grown.restore(&small.snapshot()).unwrap();
        assert_eq!((grown.registry.history_max(), grown.registry.history_len()), (1_000, 20));
    }
}
