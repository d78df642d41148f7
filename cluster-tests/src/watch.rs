//! Watch clients: each follows `Registry/Watch` (services of the workload's type) on a node
//! chosen at random, from revision 1 or from the current revision (a linearizable List's
//! revision + 1), and records every event, progress notification, stream break and resume.
//! A broken or silent stream is resumed on another random node from the last revision seen + 1;
//! a `compacted` answer is recorded and ends that watcher. The records are checked by
//! [`crate::check_watch`].
//!
//! Limitation: the resume point assumes one event per revision, which holds for the workload
//! (one service per write, TTLs far longer than a run); a revision shared by several events
//! (Cleanup, expiry sweeps) could lose its later events if a stream broke between them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use muster::api::grpc::pb::registry::{
    registry_client::RegistryClient, EventKind, ListRequest, WatchRequest, WatchResponse,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use crate::history::{code_name, RunClock};
use crate::workload::{version_of, Targets, OP_TIMEOUT, SERVICE_TYPE};

/// How long a watcher waits for one message before it checks whether to stop.
const POLL: Duration = Duration::from_millis(500);
/// A stream that sent nothing (not even a progress notification, due every 2 s) for this long
/// is treated as broken.
const SILENT: Duration = Duration::from_secs(5);
/// Pause before reconnecting after a break.
const BACKOFF: Duration = Duration::from_millis(200);
/// Upper bound on one watcher's loop turns (messages, polls and reconnects).
const TURNS_MAX: usize = 200_000;

/// What one look at an open watch stream found.
pub(crate) enum Polled {
    /// A message that is not a compaction notice.
    Message(Box<WatchResponse>),
    /// The node answered that the events through this revision are gone.
    Compacted(u64),
    /// The stream failed, ended or went silent for over [`SILENT`].
    Broken(String),
    /// Nothing within [`POLL`]; the stream is alive.
    Idle,
}

/// Waits up to [`POLL`] for the next message on `s`, and returns when it looked (run clock)
/// with what it found; `last_msg_ns` is when the stream last said anything.
pub(crate) async fn poll(
    s: &mut tonic::Streaming<WatchResponse>,
    clock: RunClock,
    last_msg_ns: &mut u64,
) -> (u64, Polled) {
    let msg = tokio::time::timeout(POLL, s.message()).await;
    let at_ns = clock.now_ns();
    let polled = match msg {
        Err(_) if at_ns.saturating_sub(*last_msg_ns) > SILENT.as_nanos() as u64 => {
            Polled::Broken(format!("silent for over {SILENT:?}"))
        }
        Err(_) => Polled::Idle,
        Ok(Ok(None)) => Polled::Broken("the stream ended".to_string()),
        Ok(Err(st)) => Polled::Broken(format!("{}: {}", code_name(st.code()), st.message())),
        Ok(Ok(Some(m))) => {
            *last_msg_ns = at_ns;
            match m.compacted {
                Some(compacted) => Polled::Compacted(compacted),
                None => Polled::Message(Box::new(m)),
            }
        }
    };
    (at_ns, polled)
}

/// What happened to a service, as the watch said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Registered,
    Updated,
    Deregistered,
    Expired,
    Health,
    Unknown,
}

impl Kind {
    /// The kind of a wire `EventKind` value.
    pub fn of(k: i32) -> Kind {
        match EventKind::try_from(k) {
            Ok(EventKind::ServiceRegistered) => Kind::Registered,
            Ok(EventKind::ServiceUpdated) => Kind::Updated,
            Ok(EventKind::ServiceDeregistered) => Kind::Deregistered,
            Ok(EventKind::ServiceExpired) => Kind::Expired,
            Ok(EventKind::HealthStatusChanged) => Kind::Health,
            _ => Kind::Unknown,
        }
    }

    /// Whether the service is gone after this event.
    pub fn removes(self) -> bool {
        matches!(self, Kind::Deregistered | Kind::Expired)
    }
}

/// One line of a watcher's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rec", rename_all = "lowercase")]
pub enum Record {
    /// A stream was opened (first time or resume) on `node` from revision `start`.
    Open { at_ns: u64, node: String, start: u64 },
    /// One event.
    Event { at_ns: u64, revision: u64, kind: Kind, id: String, version: Option<u64> },
    /// Nothing else changed through `revision`.
    Progress { at_ns: u64, revision: u64 },
    /// The stream failed, ended or went silent.
    Break { at_ns: u64, error: String },
    /// The node answered that events through `compacted` are gone; the watcher ended.
    Compacted { at_ns: u64, compacted: u64 },
}

/// Everything one watcher saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watcher {
    pub watcher: usize,
    pub records: Vec<Record>,
}

/// When the watchers stop: after `until` (non-zero) has been seen, or when `give_up` is set.
#[derive(Debug, Default)]
pub struct WatchStop {
    pub until: AtomicU64,
    pub give_up: AtomicBool,
}

impl WatchStop {
    fn done(&self, seen: u64) -> bool {
        let until = self.until.load(Ordering::Relaxed);
        self.give_up.load(Ordering::Relaxed) || (until > 0 && seen >= until)
    }
}

/// Runs `n` watchers until `stop` says so; even-numbered ones start at revision 1, odd ones at
/// the current revision. Watcher `w` uses the seed `seed + 1000 + w`.
pub async fn run(
    targets: Targets,
    n: usize,
    seed: u64,
    clock: RunClock,
    stop: Arc<WatchStop>,
) -> Vec<Watcher> {
    let mut tasks = Vec::new();
    for w in 0..n {
        let (targets, stop) = (targets.clone(), stop.clone());
        let rng = StdRng::seed_from_u64(seed.wrapping_add(1000 + w as u64));
        tasks.push(tokio::spawn(async move { watcher(w, targets, rng, clock, stop).await }));
    }
    let mut out = Vec::new();
    for t in tasks {
        if let Ok(w) = t.await {
            out.push(w);
        }
    }
    out
}

/// The revision a linearizable List of one node saw.
async fn current_revision(ch: Channel) -> Result<u64, String> {
    let mut req = tonic::Request::new(ListRequest {
        r#type: Some(SERVICE_TYPE.into()),
        limit: Some(1),
        ..Default::default()
    });
    req.set_timeout(OP_TIMEOUT);
    match tokio::time::timeout(OP_TIMEOUT + POLL, RegistryClient::new(ch).list(req)).await {
        Ok(Ok(r)) => Ok(r.into_inner().revision),
        Ok(Err(s)) => Err(format!("List: {}: {}", code_name(s.code()), s.message())),
        Err(_) => Err("List: client gave up waiting".into()),
    }
}

async fn watcher(
    w: usize,
    targets: Targets,
    mut rng: StdRng,
    clock: RunClock,
    stop: Arc<WatchStop>,
) -> Watcher {
    let mut out = Watcher { watcher: w, records: Vec::new() };
    if targets.channels.is_empty() {
        return out;
    }
    // The highest revision seen through; the next stream starts after it.
    let mut seen: Option<u64> = if w % 2 == 0 { Some(0) } else { None };
    let mut stream: Option<tonic::Streaming<WatchResponse>> = None;
    let mut last_msg_ns = 0;
    for _ in 0..TURNS_MAX {
        if seen.is_some_and(|s| stop.done(s)) || stop.give_up.load(Ordering::Relaxed) {
            break;
        }
        let Some(s) = stream.as_mut() else {
            let n = rng.random_range(0..targets.channels.len());
            let ch = targets.channels[n].clone();
            let start = match seen {
                Some(s) => s + 1,
                None => match current_revision(ch.clone()).await {
                    Ok(r) => r + 1,
                    Err(error) => {
                        out.records.push(Record::Break { at_ns: clock.now_ns(), error });
                        tokio::time::sleep(BACKOFF).await;
                        continue;
                    }
                },
            };
            let req = WatchRequest { start_revision: start, r#type: Some(SERVICE_TYPE.into()) };
            match tokio::time::timeout(OP_TIMEOUT, RegistryClient::new(ch).watch(req)).await {
                Ok(Ok(r)) => {
                    let at_ns = clock.now_ns();
                    out.records.push(Record::Open { at_ns, node: targets.names[n].clone(), start });
                    seen = Some(start - 1);
                    last_msg_ns = at_ns;
                    stream = Some(r.into_inner());
                }
                Ok(Err(s)) => {
                    let error = format!("Watch: {}: {}", code_name(s.code()), s.message());
                    out.records.push(Record::Break { at_ns: clock.now_ns(), error });
                    tokio::time::sleep(BACKOFF).await;
                }
                Err(_) => {
                    let error = "Watch: no answer within the deadline".to_string();
                    out.records.push(Record::Break { at_ns: clock.now_ns(), error });
                }
            }
            continue;
        };
        let (at_ns, polled) = poll(s, clock, &mut last_msg_ns).await;
        let broken = match polled {
            Polled::Idle => None,
            Polled::Broken(error) => Some(error),
            Polled::Compacted(compacted) => {
                out.records.push(Record::Compacted { at_ns, compacted });
                break;
            }
            Polled::Message(m) => {
                if let Some(e) = m.event {
                    let (id, version) = match &e.service {
                        Some(svc) => (svc.service_id.clone(), svc.metadata.get("v").map(|_| version_of(svc))),
                        None => (String::new(), None),
                    };
                    let kind = Kind::of(e.kind);
                    out.records.push(Record::Event { at_ns, revision: e.revision, kind, id, version });
                    seen = seen.max(Some(e.revision));
                } else if m.progress {
                    out.records.push(Record::Progress { at_ns, revision: m.revision });
                    seen = seen.max(Some(m.revision));
                }
                None
            }
        };
        if let Some(error) = broken {
            out.records.push(Record::Break { at_ns, error });
            stream = None;
            tokio::time::sleep(BACKOFF).await;
        }
    }
    out
}
