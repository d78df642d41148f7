//! Writes during a leader failover, against three real muster processes on 127.0.0.1: several
//! writers register services with unique ids through every node while the leader is killed
//! with `kill -9`. Afterwards every write either succeeded or failed with a clear retryable
//! error, every acknowledged write is on both survivors (linearizable List) at the revision it
//! was acknowledged with, the full watch history from revision 1 shows each id registered
//! exactly once (no write was lost after its acknowledgement, none was applied twice), and a
//! write that failed but was applied anyway was answered with an open outcome (UNKNOWN), never
//! with an "unavailable, retry" that would make a retrying client register it twice. A write
//! that reaches a survivor while no leader is reachable waits for the next leader (up to the
//! server's write timeout) rather than failing at once.
//!
//! The writers use the crate's generated tonic client (`muster::api::grpc::pb`); each id is sent
//! exactly once, so an `ALREADY_EXISTS` answer or a second `registered` event can only come
//! from the cluster re-proposing a write.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use muster::api::grpc::pb::cluster::{cluster_client::ClusterClient, StatusRequest};
use muster::api::grpc::pb::registry::registry_client::RegistryClient;
use muster::api::grpc::pb::registry::{EventKind, ListRequest, RegisterRequest, WatchRequest};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

const ELECT: Duration = Duration::from_secs(30);
const WRITERS: usize = 4;
const WRITES_PER_WRITER_MAX: usize = 150;
/// The writers stop this long after the kill, or at `WRITE_PHASE_MAX`, even with writes left.
const AFTER_KILL: Duration = Duration::from_secs(20);
const WRITE_PHASE_MAX: Duration = Duration::from_secs(60);
/// The leader is killed once this many writes were acknowledged.
const KILL_AFTER_OK: usize = 40;
/// Longer than the server's own write deadline (2 × 5 s + 1 s), so the server's answer arrives.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a survivor holds a write that finds no reachable leader, at least (the server
/// holds it for its write timeout, 5 s).
const HOLD_MIN: Duration = Duration::from_millis(4_500);
/// Only services of this type are written, listed and watched.
const TYPE: &str = "failover";
/// No lease lapses during the test.
const TTL_S: u32 = 3_600;
/// A node unknown to the writers: none killed yet.
const NONE: usize = usize::MAX;

/// What the client saw for one write.
#[derive(Debug, Clone)]
enum Outcome {
    Ok { revision: u64 },
    Failed { code: Code, message: String },
}

#[derive(Debug, Clone)]
struct Write {
    id: String,
    /// Index of the node the write was sent to.
    node: usize,
    /// Whether the writer knew of the kill when it sent the write.
    sent_after_kill: bool,
    /// When the write was sent and answered, since the writers started.
    sent: Duration,
    answered: Duration,
    outcome: Outcome,
}

fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(CLIENT_TIMEOUT)
        .connect_lazy()
}

fn register_request(id: &str, n: usize) -> RegisterRequest {
    RegisterRequest {
        service_id: id.to_string(),
        name: format!("svc-{id}"),
        r#type: TYPE.to_string(),
        host: "10.0.0.1".to_string(),
        port: 1_000 + n as u32,
        ttl_seconds: Some(TTL_S),
        ..Default::default()
    }
}

/// What the writers and the test share.
struct Shared {
    start: Instant,
    /// The killed node's index, or `NONE`.
    dead: AtomicUsize,
    /// Acknowledged writes so far.
    ok: AtomicUsize,
    /// The writers stop once this many ms have passed since `start`.
    stop_ms: AtomicU64,
    log: Mutex<Vec<Write>>,
}

/// One writer: up to `WRITES_PER_WRITER_MAX` registrations, round-robin over the nodes that
/// are not known to be dead, until `stop_ms` has passed.
async fn writer(w: usize, addrs: Vec<SocketAddr>, shared: Arc<Shared>) {
    let Shared { start, dead, ok, stop_ms, log } = &*shared;
    let mut clients: Vec<RegistryClient<Channel>> =
        addrs.iter().map(|a| RegistryClient::new(channel(*a))).collect();
    for n in 0..WRITES_PER_WRITER_MAX {
        if start.elapsed().as_millis() as u64 >= stop_ms.load(Ordering::SeqCst) {
            return;
        }
        let killed = dead.load(Ordering::SeqCst);
        let mut node = (w + n) % addrs.len();
        if node == killed {
            node = (node + 1) % addrs.len();
        }
        let id = format!("w{w}-{n:03}");
        let sent = start.elapsed();
        let outcome = match clients[node].register(register_request(&id, n)).await {
            Ok(r) => {
                let r = r.into_inner();
                assert_eq!(
                    r.service.as_ref().map(|s| s.service_id.as_str()),
                    Some(id.as_str()),
                    "a Register answer carries the registered id"
                );
                ok.fetch_add(1, Ordering::SeqCst);
                Outcome::Ok { revision: r.revision }
            }
            Err(s) => Outcome::Failed { code: s.code(), message: s.message().to_string() },
        };
        let sent_after_kill = killed != NONE;
        log.lock().unwrap().push(Write {
            id,
            node,
            sent_after_kill,
            sent,
            answered: start.elapsed(),
            outcome,
        });
    }
}

/// The leader's name once the given nodes agree on one leader (among `voters` voters, if given).
fn agreed_leader(
    rt: &tokio::runtime::Runtime,
    addrs: &[SocketAddr],
    voters: Option<usize>,
) -> Option<String> {
    let mut leader: Option<String> = None;
    for addr in addrs {
        let s = rt.block_on(async {
            let mut c = ClusterClient::new(channel(*addr));
            c.status(StatusRequest {}).await.map(|r| r.into_inner())
        });
        let s = s.ok()?;
        let name = s.leader?.name;
        if voters.is_some_and(|v| v != s.voters.len())
            || name.is_empty()
            || leader.as_ref().is_some_and(|l| *l != name)
        {
            return None;
        }
        leader = Some(name);
    }
    leader
}

/// Every `TYPE` service id on a node (linearizable List, every page) and the revision read.
async fn list_ids(addr: SocketAddr) -> Result<(BTreeSet<String>, u64), tonic::Status> {
    let mut client = RegistryClient::new(channel(addr));
    let mut ids = BTreeSet::new();
    let mut revision = 0;
    for page in 0..100u32 {
        let req = ListRequest {
            r#type: Some(TYPE.into()),
            limit: Some(100),
            skip: page * 100,
            ..Default::default()
        };
        let r = client.list(req).await?.into_inner();
        revision = revision.max(r.revision);
        let n = r.services.len();
        ids.extend(r.services.into_iter().map(|s| s.service_id));
        if n < 100 || ids.len() as u64 >= r.total {
            assert_eq!(ids.len() as u64, r.total, "the pages add up to the List total");
            return Ok((ids, revision));
        }
    }
    panic!("more than 100 pages of services: the test writes at most {}", WRITERS * WRITES_PER_WRITER_MAX);
}

/// The `TYPE` events of a Watch from revision 1, read until a progress notification at or
/// beyond `through` (the history is replayed before the stream goes idle): (revision, kind, id).
async fn history(addr: SocketAddr, through: u64) -> Vec<(u64, EventKind, String)> {
    let mut client = RegistryClient::new(channel(addr));
    let req = WatchRequest { start_revision: 1, r#type: Some(TYPE.into()) };
    let mut stream = client.watch(req).await.expect("a Watch from revision 1 starts").into_inner();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let next = tokio::time::timeout_at(deadline, stream.message()).await;
        let msg = next
            .unwrap_or_else(|_| panic!("no progress notification at revision {through} within 30 s"))
            .expect("the watch stream stays healthy")
            .expect("the watch stream does not end");
        assert_eq!(msg.compacted, None, "revision 1 is still in the default history");
        if let Some(e) = msg.event {
            let kind = EventKind::try_from(e.kind).expect("a known event kind");
            events.push((e.revision, kind, e.service.map(|s| s.service_id).unwrap_or_default()));
        } else if msg.progress && msg.revision >= through {
            return events;
        }
    }
}

/// A failure a client can act on: retry (UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED), or read
/// then retry (UNKNOWN, DEADLINE_EXCEEDED). A write sent to the node being killed may also see
/// the client's own CANCELLED.
fn retryable(code: Code, to_killed_node: bool) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Unknown | Code::DeadlineExceeded | Code::Aborted | Code::ResourceExhausted
    ) || (to_killed_node && code == Code::Cancelled)
}

/// A failure that leaves the write's outcome open (the proto's UNKNOWN: read before retrying).
/// Any other code tells the client the write was not done, so it may retry blindly.
fn outcome_open(code: Code) -> bool {
    matches!(code, Code::Unknown | Code::DeadlineExceeded | Code::Cancelled)
}

/// Words a server-side failure message uses to name the situation.
const SITUATION_WORDS: &[&str] =
    &["leader", "quorum", "unavailable", "outcome unknown", "election", "did not finish", "busy"];

#[test]
fn writes_during_a_leader_kill_are_acknowledged_once_or_fail_clearly() {
    // Proves, with the leader killed mid-run under four concurrent writers: every write is
    // acknowledged or fails with a retryable code and a message naming the situation, every
    // acknowledged write survives on both remaining nodes at its acknowledged revision, and
    // the watch history shows each id registered at most once (exactly once if acknowledged).
    let a = Muster::start("fa", &["--profile", "local"]);
    let join = a.gossip.to_string();
    let b = Muster::start("fb", &["--profile", "local", "--join", &join]);
    let c = Muster::start("fc", &["--profile", "local", "--join", &join]);
    let mut nodes = [a, b, c];
    let addrs: Vec<SocketAddr> = nodes.iter().map(|m| m.http).collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    let leader = wait_for(ELECT, "one leader and three voters, agreed by every node", || {
        agreed_leader(&rt, &addrs, Some(3))
    });
    let killed = nodes.iter().position(|m| m.name == leader).unwrap();

    let start = Instant::now();
    let shared = Arc::new(Shared {
        start,
        dead: AtomicUsize::new(NONE),
        ok: AtomicUsize::new(0),
        stop_ms: AtomicU64::new(WRITE_PHASE_MAX.as_millis() as u64),
        log: Mutex::new(Vec::new()),
    });
    let tasks: Vec<_> = (0..WRITERS).map(|w| rt.spawn(writer(w, addrs.clone(), shared.clone()))).collect();

    wait_for(
        WRITE_PHASE_MAX - AFTER_KILL,
        &format!("{KILL_AFTER_OK} acknowledged writes before the kill"),
        || (shared.ok.load(Ordering::SeqCst) >= KILL_AFTER_OK).then_some(()),
    );
    let ok_before_kill = shared.ok.load(Ordering::SeqCst);
    nodes[killed].proc.kill9();
    shared.dead.store(killed, Ordering::SeqCst);
    let killed_at = start.elapsed();
    shared.stop_ms.fetch_min((killed_at + AFTER_KILL).as_millis() as u64, Ordering::SeqCst);
    for t in tasks {
        rt.block_on(t).expect("a writer task panicked");
    }
    let write_phase = start.elapsed();
    let writes = shared.log.lock().unwrap().clone();
    let survivors: Vec<SocketAddr> =
        addrs.iter().enumerate().filter(|(i, _)| *i != killed).map(|(_, a)| *a).collect();

    // The summary, printed before any assertion so that a failure shows it too.
    let mut by_code: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for w in &writes {
        if let Outcome::Failed { code, message } = &w.outcome {
            *by_code.entry(format!("{code:?}")).or_default() += 1;
            let reason: String = message.chars().filter(|c| !c.is_ascii_digit()).collect();
            *by_reason.entry(format!("{code:?} {reason}")).or_default() += 1;
        }
    }
    let is_ok = |w: &&Write| matches!(w.outcome, Outcome::Ok { .. });
    let ok_total = writes.iter().filter(is_ok).count();
    let ok_after_kill = writes.iter().filter(|w| w.sent_after_kill).filter(is_ok).count();
    let first_ack_after_kill =
        writes.iter().filter(|w| w.sent_after_kill).filter(is_ok).map(|w| w.answered).min();
    let mut latencies: Vec<Duration> =
        writes.iter().filter(|w| !w.sent_after_kill).filter(is_ok).map(|w| w.answered - w.sent).collect();
    latencies.sort();
    println!(
        "failover summary: {} writes in {write_phase:.1?} (leader {leader} killed at {killed_at:.1?} after \
         {ok_before_kill} acks, median ack {:.0?}): ok {ok_total} (sent after the kill {ok_after_kill}, the \
         first answered {:.1?} after it), failed {by_code:?}",
        writes.len(),
        latencies.get(latencies.len() / 2),
        first_ack_after_kill.map(|t| t.saturating_sub(killed_at)),
    );
    for (reason, n) in &by_reason {
        println!("  failed {n:>4} × {reason}");
    }

    // 1. Every failure is retryable and says why; the killed node's own failures are transport
    //    errors, the survivors' name the situation.
    for w in &writes {
        let Outcome::Failed { code, message } = &w.outcome else { continue };
        assert!(
            retryable(*code, w.node == killed),
            "a write during failover fails with a retryable code (UNAVAILABLE, UNKNOWN, DEADLINE_EXCEEDED, \
             ABORTED, RESOURCE_EXHAUSTED), never {code:?}: {w:?}"
        );
        assert!(!message.trim().is_empty(), "a failed write carries a message: {w:?}");
        if w.node != killed {
            let lower = message.to_lowercase();
            assert!(
                SITUATION_WORDS.iter().any(|word| lower.contains(word)),
                "a survivor's failure names the situation (one of {SITUATION_WORDS:?}): {w:?}"
            );
        }
    }
    // A survivor holds a write while it has no reachable leader (up to the server's 5 s write
    // timeout) instead of refusing it at once: a write sent after the kill fails UNAVAILABLE
    // only once it has waited that long.
    for w in writes.iter().filter(|w| w.sent_after_kill) {
        if let Outcome::Failed { code: Code::Unavailable, .. } = &w.outcome {
            assert!(
                w.answered - w.sent >= HOLD_MIN,
                "a write sent to a survivor after the kill waits at least {HOLD_MIN:?} for a leader before \
                 it fails UNAVAILABLE: {w:?}"
            );
        }
    }
    assert!(
        ok_after_kill > 0,
        "writes sent after the kill are acknowledged once a new leader leads (none in {AFTER_KILL:?})"
    );

    // 2. A new leader among the survivors, and every acknowledged write on both of them.
    let new_leader = wait_for(ELECT, "the two survivors to agree on a new leader", || {
        agreed_leader(&rt, &survivors, None).filter(|l| *l != leader)
    });
    let lists: Vec<(BTreeSet<String>, u64)> = survivors
        .iter()
        .map(|a| rt.block_on(list_ids(*a)).unwrap_or_else(|s| panic!("a linearizable List on {a}: {s:?}")))
        .collect();
    assert_eq!(lists[0].0, lists[1].0, "both survivors list the same services (linearizable reads)");
    let present = &lists[0].0;
    let sent: BTreeSet<&str> = writes.iter().map(|w| w.id.as_str()).collect();
    for w in &writes {
        if matches!(w.outcome, Outcome::Ok { .. }) {
            assert!(present.contains(&w.id), "acknowledged write {} is on the survivors: {w:?}", w.id);
        }
    }
    for id in present {
        assert!(sent.contains(id.as_str()), "{id} is listed but no writer sent it");
    }

    // 3. The full history: each id registered exactly once, at its acknowledged revision, and
    //    the same history on both survivors.
    let through = lists.iter().map(|l| l.1).max().unwrap();
    let histories: Vec<Vec<(u64, EventKind, String)>> =
        survivors.iter().map(|a| rt.block_on(history(*a, through))).collect();
    assert_eq!(histories[0], histories[1], "both survivors replay the same history");
    let mut registered: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (revision, kind, id) in &histories[0] {
        assert_eq!(*kind, EventKind::ServiceRegistered, "only registrations happened: {id} at {revision}");
        registered.entry(id.as_str()).or_default().push(*revision);
    }
    for (id, revisions) in &registered {
        assert_eq!(revisions.len(), 1, "{id} is registered exactly once, not at revisions {revisions:?}");
        assert!(present.contains(*id), "{id} has a registered event, so it is listed");
    }
    for id in present {
        assert!(registered.contains_key(id.as_str()), "listed {id} has a registered event in the history");
    }
    for w in &writes {
        if let Outcome::Ok { revision } = w.outcome {
            assert_eq!(
                registered.get(w.id.as_str()).map(Vec::as_slice),
                Some(&[revision][..]),
                "acknowledged {} is registered once, at the revision its answer named",
                w.id
            );
        }
    }
    // 4. A write that failed but was applied anyway was answered with an open outcome: one
    //    answered "unavailable, retry" would be registered twice by a client that retries
    //    with a fresh id (or get ALREADY_EXISTS with the same one).
    let applied_despite_error: Vec<&Write> = writes
        .iter()
        .filter(|w| matches!(w.outcome, Outcome::Failed { .. }) && present.contains(&w.id))
        .collect();
    println!(
        "failover check: new leader {new_leader}; {} services listed and registered once each; \
         {} failed writes were applied anyway: {applied_despite_error:?}",
        present.len(),
        applied_despite_error.len()
    );
    for w in &applied_despite_error {
        let Outcome::Failed { code, .. } = &w.outcome else { continue };
        assert!(
            outcome_open(*code),
            "a failed write that was applied anyway was answered UNKNOWN or DEADLINE_EXCEEDED (outcome \
             open), not {code:?}: {w:?}"
        );
    }
}
