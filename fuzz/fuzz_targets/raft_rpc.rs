//! Raft traffic as `consensus::network` receives it. The first byte picks what the rest is:
//! - 0–4: a request to the `muster.raft.v1.Raft` gRPC service (append-entries, vote, pre-vote,
//!   install-snapshot, transfer-leader): the prost-decoded `RaftMessage`, then its payload
//!   decoded into openraft's request type with the server's own decoding; the normal entries
//!   of an append-entries are then applied in order to a fresh registry state machine (what
//!   `StateMachineStore::apply` does once they commit), an installed snapshot restored into one;
//! - 5–8: a reply as the client decodes it (`Result<Response, String>`);
//! - 9: a raft log entry's proposal straight into the registry state machine's `apply` (the
//!   registry command decoding), after one registration so updates find a service;
//! - 10: a snapshot straight into the state machine's `restore`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster::consensus::network::pb::RaftMessage;
use muster::consensus::types::{SnapshotMeta, Vote};
use muster::consensus::{Machine, TypeConfig};
use muster::fuzzing::raft_decode;
use muster::registry::{Command, NewService, Registry, ServiceId};
use muster::replicated::{encode_command, RegistryMachine};
use openraft::entry::RaftEntry;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::EntryPayload;
use prost::Message;

const HISTORY_MAX: usize = 64;
/// Entries applied per input.
const ENTRIES_MAX: usize = 256;

fn machine() -> RegistryMachine {
    RegistryMachine::new(Registry::new(HISTORY_MAX))
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    match selector % 11 {
        9 => {
            let mut m = machine();
            let id = ServiceId::new("3f2a0c8e-5b7d-4e1a-9c6f-2d8b4a1e7c3d");
            let service = NewService::new(id, "camera", "http", "10.1.0.5", 8080);
            m.apply(1, &encode_command(&Command::Register { service, now_ms: 1_735_689_600_000 }));
            m.apply(2, rest);
        }
        10 => {
            let _ = machine().restore(rest);
        }
        kind => {
            let Ok(msg) = RaftMessage::decode(rest) else { return };
            rpc(kind, &msg.payload);
        }
    }
});

fn rpc(kind: u8, payload: &[u8]) {
    match kind {
        0 => {
            let Ok(req) = raft_decode::<AppendEntriesRequest<TypeConfig>>(payload) else { return };
            let mut m = machine();
            for entry in req.entries.into_iter().take(ENTRIES_MAX) {
                let index = entry.log_id().index();
                if let EntryPayload::Normal(proposal) = entry.payload {
                    m.apply(index, &proposal.0);
                }
            }
        }
        1 | 2 => {
            let _ = raft_decode::<VoteRequest<TypeConfig>>(payload);
        }
        3 => {
            let Ok((_vote, _meta, data)) = raft_decode::<(Vote, SnapshotMeta, serde_bytes::ByteBuf)>(payload)
            else {
                return;
            };
            let _ = machine().restore(&data);
        }
        4 => {
            let _ = raft_decode::<TransferLeaderRequest<TypeConfig>>(payload);
        }
        5 => {
            let _ = raft_decode::<Result<AppendEntriesResponse<TypeConfig>, String>>(payload);
        }
        6 => {
            let _ = raft_decode::<Result<VoteResponse<TypeConfig>, String>>(payload);
        }
        7 => {
            let _ = raft_decode::<Result<SnapshotResponse<TypeConfig>, String>>(payload);
        }
        _ => {
            let _ = raft_decode::<Result<TransferLeaderResponse<TypeConfig>, String>>(payload);
        }
    }
}
