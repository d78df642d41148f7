//! TTL clients and the TTL observer, producing a [`TtlRecord`] for [`crate::check_ttl`].
//!
//! Each TTL client is one sequential process with its own seeded RNG. It registers
//! [`SERVICES_PER_CLIENT`] services of type [`SERVICE_TYPE`] (not the workload's type, so the
//! workload's watchers and checkers never see them) with a [`TTL_SECONDS`] lease, ids
//! `h<client>-s<n>`, then heartbeats each of them every 2–4 s (`Registry/Heartbeat`, no ttl
//! override). One service per client, chosen by the seed, stops being heartbeated at a random
//! time within [`STOP_WITHIN`] of its registration, so it expires during the run. Every Register
//! and Heartbeat goes to a node chosen at random and is recorded as a [`TtlOp`].
//!
//! The observer (`heartbeat/observer.rs`) follows `Registry/Watch` (type [`SERVICE_TYPE`], from
//! revision 1) and records every event with the service's lease fields. A broken or silent
//! stream is resumed on another random node from the last revision seen, not the one after it,
//! since several expiries can share one revision; events are de-duplicated by (revision, id).
//! After the stop flag is set and the clients have ended, it takes a linearizable List, follows
//! on until it has seen that revision (at most [`CATCH_UP`]) and returns: every expiry committed
//! before that read has then been seen.
//!
//! Calling it from a whole-cluster test, alongside the workload and with the same stop flag
//! (its result taken after the final heal, so the fault intervals are complete):
//!
//! ```ignore
//! let ttl = tokio::spawn(heartbeat::run(targets.clone(), 2, seed, clock, stop.clone()));
//! // ... the nemesis schedule; then stop.store(true, ..), the final heal ...
//! let rec = tokio::time::timeout(heartbeat::DRAIN_MAX, ttl).await.expect("TTL run stuck").unwrap();
//! let faults = check_ttl::fault_intervals(&nemesis.timeline(), check_ttl::FAULT_LEAD_NS, clock.now_ns());
//! verdicts.push(check_ttl::ttl_bounds(&rec, &faults, &check_ttl::TtlParams::lan()));
//! history::write_jsonl(&dir.join("ttl-ops.jsonl"), &rec.ops).unwrap();
//! history::write_jsonl(&dir.join("ttl-events.jsonl"), &rec.events).unwrap();
//! ```
//!
//! With [`run`] the final read comes right after the stop flag, so lateness is judged only for
//! services whose bound passed by then; faults late in the run extend the stopped services'
//! bounds, possibly past the read, and the checker's explanation then counts them as not
//! judged. [`run_lingering`] with about 20 s judges every service (at that cost in run time);
//! expiries seen are checked for "not early" either way.
//!
//! Uses `history` (clock, outcome table), `watch` (event kinds, stream records, stop flags) and
//! `workload::Targets`; nothing imports it but the tests.

mod observer;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use muster::api::grpc::pb::registry::{registry_client::RegistryClient, HeartbeatRequest, RegisterRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;
use tonic::Status;

use crate::history::{classify, Outcome, RunClock};
use crate::watch::{Kind, Record, WatchStop};
use crate::workload::{Targets, OP_TIMEOUT};

/// Service type of every TTL service.
pub const SERVICE_TYPE: &str = "ct-ttl";
/// Lease length of every TTL service (muster's minimum).
pub const TTL_SECONDS: u32 = 10;
/// Services each client registers.
pub const SERVICES_PER_CLIENT: usize = 3;
/// Gap between two heartbeats of one service, drawn in this range (ms).
const BEAT_MS: std::ops::Range<u64> = 2_000..4_000;
/// A service chosen to stop is last heartbeated within this long after its registration.
pub const STOP_WITHIN: Duration = Duration::from_secs(8);
/// Slack on top of [`OP_TIMEOUT`] before a client stops waiting itself.
pub(crate) const OP_SLACK: Duration = Duration::from_millis(500);
/// Register attempts per service before the client gives up on it.
const REGISTER_TRIES_MAX: usize = 10;
/// Pause after a failed call, and the step of every wait (stop flag checks).
pub(crate) const STEP: Duration = Duration::from_millis(200);
/// Upper bound on one client's loop turns (calls and waits), whatever the stop flag says.
const TURNS_MAX: usize = 20_000;
/// Upper bound on the wait for the stop flag once every client has ended (no clients).
const RUN_MAX: Duration = Duration::from_secs(3600);
/// After the clients end: the final read, then the observer reaching its revision.
pub const CATCH_UP: Duration = Duration::from_secs(30);
/// How long [`run`] may take after the stop flag is set (plus the linger of [`run_lingering`]):
/// a client's last call (3.5 s), the final read ([`CATCH_UP`] + one call), the observer's
/// catch-up ([`CATCH_UP`]) and its last open attempt (3 s), plus a second.
pub const DRAIN_MAX: Duration = Duration::from_secs(72);

/// Which lease call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TtlCall {
    Register,
    Heartbeat,
}

/// One Register or Heartbeat of a TTL service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtlOp {
    pub client: usize,
    /// Gossip name of the node it went to.
    pub node: String,
    pub call: TtlCall,
    pub id: String,
    pub invoke_ns: u64,
    pub complete_ns: u64,
    pub outcome: Outcome,
    /// The gRPC code name for a failed or unknown call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The error message, shortened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The lease end (unix ms) the node answered, for an acknowledged call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

/// One event the observer saw, with the service's lease fields (unix ms, leader's clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtlEvent {
    /// Run-clock time it was received.
    pub at_ns: u64,
    pub revision: u64,
    pub kind: Kind,
    pub id: String,
    pub expires_at_ms: u64,
    pub last_heartbeat_ms: u64,
    /// For an expiry: the time the leader decided it.
    pub updated_at_ms: u64,
    pub ttl_seconds: u32,
}

/// The linearizable read taken after the clients ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalRead {
    /// Run-clock time the read was sent: every commit before it is at or below `revision`.
    pub read_ns: u64,
    pub revision: u64,
}

/// Everything a TTL run produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtlRecord {
    /// Unix ms at run-clock 0 ([`RunClock::unix_ms`]).
    pub start_unix_ms: u64,
    /// The lease every service was registered with.
    pub ttl_seconds: u32,
    /// Every call, by invoke time.
    pub ops: Vec<TtlOp>,
    /// Services whose client stopped heartbeating them on purpose → when it did (run ns).
    pub stopped: BTreeMap<String, u64>,
    /// Every event the observer saw, once each, in delivery order.
    pub events: Vec<TtlEvent>,
    /// The observer's stream openings, breaks and compaction answers.
    pub streams: Vec<Record>,
    pub final_read: Option<FinalRead>,
    /// The highest revision whose events the observer has all seen (a progress notification's,
    /// or one below an event's).
    pub observed_through: u64,
}

/// Runs `clients` TTL clients and the observer until `stop` is set, then lets the observer
/// catch up (see the module doc). Client `c` uses the seed `seed + 3000 + c`, the observer one
/// derived from `seed + 2000`.
pub async fn run(
    targets: Targets,
    clients: usize,
    seed: u64,
    clock: RunClock,
    stop: Arc<AtomicBool>,
) -> TtlRecord {
    run_lingering(targets, clients, seed, clock, stop, Duration::ZERO).await
}

/// [`run`], with the observer following on for `linger` after the stop flag before the final
/// read (the clients have stopped by then), so that the last services' expiries are seen.
/// Lingering ttl + 2 failover windows + 3 s (about 19 s with the lan profile) after the last
/// fault's heal lets every service be judged for lateness.
pub async fn run_lingering(
    targets: Targets,
    clients: usize,
    seed: u64,
    clock: RunClock,
    stop: Arc<AtomicBool>,
    linger: Duration,
) -> TtlRecord {
    let mut rec =
        TtlRecord { start_unix_ms: clock.unix_ms(0), ttl_seconds: TTL_SECONDS, ..Default::default() };
    if targets.channels.is_empty() {
        return rec;
    }
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(2000));
    let obs_stop = Arc::new(WatchStop::default());
    let obs_rng = StdRng::seed_from_u64(rng.random());
    let observing = tokio::spawn(observer::observe(targets.clone(), obs_rng, clock, obs_stop.clone()));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (targets, stop) = (targets.clone(), stop.clone());
        let rng = StdRng::seed_from_u64(seed.wrapping_add(3000 + c as u64));
        tasks.push(tokio::spawn(async move { client(c, targets, rng, clock, stop).await }));
    }
    for t in tasks {
        if let Ok((ops, stopped)) = t.await {
            rec.ops.extend(ops);
            rec.stopped.extend(stopped);
        }
    }
    rec.ops.sort_by_key(|o| (o.invoke_ns, o.client));
    for _ in 0..RUN_MAX.as_millis() / STEP.as_millis() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(STEP).await;
    }
    tokio::time::sleep(linger).await;
    rec.final_read = observer::final_read(&targets, &mut rng, clock).await;
    match rec.final_read {
        Some(f) => obs_stop.until.store(f.revision.max(1), Ordering::Relaxed),
        None => obs_stop.give_up.store(true, Ordering::Relaxed),
    }
    let mut observing = observing;
    let observed = match tokio::time::timeout(CATCH_UP, &mut observing).await {
        Ok(o) => o.ok(),
        Err(_) => {
            obs_stop.give_up.store(true, Ordering::Relaxed);
            observing.await.ok()
        }
    };
    if let Some(o) = observed {
        (rec.events, rec.streams, rec.observed_through) = (o.events, o.streams, o.through);
    }
    rec
}

/// One call with the deadline: the lease end the node answered.
async fn perform(ch: Channel, call: TtlCall, id: &str) -> Result<Option<u64>, Status> {
    let mut c = RegistryClient::new(ch);
    let fut = async {
        let service = match call {
            TtlCall::Register => {
                let mut req = tonic::Request::new(RegisterRequest {
                    service_id: id.to_string(),
                    name: format!("ct-{id}"),
                    r#type: SERVICE_TYPE.into(),
                    host: "10.255.0.2".into(),
                    port: 8080,
                    ttl_seconds: Some(TTL_SECONDS),
                    ..Default::default()
                });
                req.set_timeout(OP_TIMEOUT);
                c.register(req).await?.into_inner().service
            }
            TtlCall::Heartbeat => {
                let mut req =
                    tonic::Request::new(HeartbeatRequest { service_id: id.to_string(), ttl_seconds: None });
                req.set_timeout(OP_TIMEOUT);
                c.heartbeat(req).await?.into_inner().service
            }
        };
        Ok(service.and_then(|s| u64::try_from(s.expires_at_ms).ok()))
    };
    match tokio::time::timeout(OP_TIMEOUT + OP_SLACK, fut).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded("client gave up waiting")),
    }
}

/// Sends `call` for `id` to a random node and records it.
async fn call(
    c: usize,
    targets: &Targets,
    rng: &mut StdRng,
    clock: RunClock,
    call: TtlCall,
    id: &str,
) -> TtlOp {
    let n = rng.random_range(0..targets.channels.len());
    let invoke_ns = clock.now_ns();
    let res = perform(targets.channels[n].clone(), call, id).await;
    let complete_ns = clock.now_ns();
    let (outcome, code, error, expires_at_ms) = match res {
        Ok(lease_end) => (Outcome::Ok, None, None, lease_end),
        Err(status) => {
            let (outcome, code) = classify(&status, true);
            (outcome, Some(code), Some(status.message().chars().take(200).collect()), None)
        }
    };
    let node = targets.names[n].clone();
    TtlOp {
        client: c,
        node,
        call,
        id: id.to_string(),
        invoke_ns,
        complete_ns,
        outcome,
        code,
        error,
        expires_at_ms,
    }
}

/// One service a client looks after.
struct Leased {
    id: String,
    next_ns: u64,
    /// When the client stops heartbeating it, if it was chosen to.
    stop_ns: Option<u64>,
    /// Whether a register or heartbeat of it was acknowledged.
    acked: bool,
}

fn beat_gap_ns(rng: &mut StdRng) -> u64 {
    rng.random_range(BEAT_MS) * 1_000_000
}

async fn client(
    c: usize,
    targets: Targets,
    mut rng: StdRng,
    clock: RunClock,
    stop: Arc<AtomicBool>,
) -> (Vec<TtlOp>, BTreeMap<String, u64>) {
    let (mut ops, mut stopped) = (Vec::new(), BTreeMap::new());
    let stopper = rng.random_range(0..SERVICES_PER_CLIENT);
    let mut leased = Vec::new();
    for n in 1..=SERVICES_PER_CLIENT {
        let id = format!("h{c}-s{n}");
        for _ in 0..REGISTER_TRIES_MAX {
            if stop.load(Ordering::Relaxed) {
                return (ops, stopped);
            }
            let op = call(c, &targets, &mut rng, clock, TtlCall::Register, &id).await;
            // ALREADY_EXISTS: an earlier attempt with an unknown outcome was applied.
            let taken = op.outcome != Outcome::Fail || op.code.as_deref() == Some("ALREADY_EXISTS");
            let now_ns = op.complete_ns;
            ops.push(op);
            if taken {
                let stop_within = STOP_WITHIN.as_nanos() as u64;
                let stop_ns = (n - 1 == stopper).then(|| now_ns + rng.random_range(0..stop_within));
                let next_ns = now_ns + beat_gap_ns(&mut rng);
                leased.push(Leased {
                    id,
                    next_ns,
                    stop_ns,
                    acked: ops.last().is_some_and(|o| o.outcome == Outcome::Ok),
                });
                break;
            }
            tokio::time::sleep(STEP).await;
        }
    }
    for _ in 0..TURNS_MAX {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Some(k) = (0..leased.len()).min_by_key(|&k| leased[k].next_ns) else {
            tokio::time::sleep(STEP).await;
            continue;
        };
        if leased[k].stop_ns.is_some_and(|s| s < leased[k].next_ns) {
            let gone = leased.swap_remove(k);
            stopped.insert(gone.id, clock.now_ns());
            continue;
        }
        let wait_ns = leased[k].next_ns.saturating_sub(clock.now_ns());
        if wait_ns > 0 {
            tokio::time::sleep(Duration::from_nanos(wait_ns).min(STEP)).await;
            continue;
        }
        let mut op = call(c, &targets, &mut rng, clock, TtlCall::Heartbeat, &leased[k].id).await;
        // Not there and never acknowledged: the register with an unknown outcome did not land.
        if !leased[k].acked && op.code.as_deref() == Some("NOT_FOUND") {
            ops.push(op);
            op = call(c, &targets, &mut rng, clock, TtlCall::Register, &leased[k].id).await;
        }
        leased[k].acked |= op.outcome == Outcome::Ok;
        leased[k].next_ns = op.complete_ns + beat_gap_ns(&mut rng);
        ops.push(op);
    }
    (ops, stopped)
}
