//! Service TTL on an in-process 3-node raft cluster (real gRPC transport on 127.0.0.1) with
//! registry time held still: every node's registrar and lease keeper read one manual clock
//! that only the test moves, while raft elects and replicates in real time. A service that is
//! not renewed expires after its ttl (within one check), identically on every node; a renewed
//! one never expires, also when the leader dies holding heartbeats it never checkpointed; and
//! every node restarted from its data dir comes back with the same registry. Also two
//! regressions of the lease and write paths under leader loss, found by `cluster-tests`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use muster::consensus::network::Faults;
use muster::consensus::raft::{Consensus, RaftConfig, RaftTiming};
use muster::consensus::RaftNode;
use muster::registry::{EventKind, NewService, Registry, Revision, Service, ServiceId, Status};
use muster::replicated::registrar::{run_lease_keeper, LeaseConfig, ManualClock, Registrar, RegistrarError};
use muster::replicated::RegistryMachine;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const T0: u64 = 1_700_000_000_000;
/// Real time between the keeper's looks (checkpoint and expiry).
const CHECK: Duration = Duration::from_millis(100);
/// Registry time a new leader adds to every live lease.
const WINDOW: Duration = Duration::from_secs(3);

struct Node {
    id: u64,
    addr: String,
    c: Arc<Consensus<RegistryMachine>>,
    reg: Arc<Registrar>,
    stop: CancellationToken,
    server: JoinHandle<()>,
}

impl Node {
    async fn kill(self) {
        self.stop.cancel();
        self.c.shutdown().await;
        let _ = self.server.await;
    }

    fn service(&self, id: &str) -> Option<Service> {
        self.reg.read_local(|r| r.get(&ServiceId::new(id)).cloned())
    }
}

async fn start(
    id: u64,
    dir: std::path::PathBuf,
    clock: Arc<ManualClock>,
    faults: Faults,
    addr: Option<&str>,
) -> (Node, String) {
    let listener = TcpListener::bind(addr.unwrap_or("127.0.0.1:0")).await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let cfg = RaftConfig {
        id,
        node: RaftNode { api_addr: addr.clone(), name: format!("n{id}") },
        data_dir: dir,
        timing: RaftTiming::local(),
        faults,
        tls: None,
    };
    let applied = Arc::new(tokio::sync::watch::channel(Revision(0)).0);
    let machine = RegistryMachine::announcing(Registry::new(10_000), applied.clone());
    let c = Arc::new(Consensus::start(cfg, machine).await.unwrap());
    let lease = LeaseConfig {
        checkpoint_every: CHECK,
        check_every: CHECK,
        failover_window: WINDOW,
        propose_timeout: Duration::from_secs(3),
    };
    let reg = Arc::new(Registrar::new(c.clone(), clock, lease, applied));
    let stop = CancellationToken::new();
    tokio::spawn(run_lease_keeper(reg.clone(), stop.clone()));
    let svc = c.grpc_service();
    let s = stop.clone();
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                s.cancelled_owned(),
            )
            .await;
    });
    (Node { id, addr: addr.clone(), c, reg, stop, server }, addr)
}

async fn cluster(tmp: &tempfile::TempDir, clock: &Arc<ManualClock>, faults: &Faults) -> Vec<Node> {
    let (mut nodes, mut members) = (Vec::new(), BTreeMap::new());
    for id in 1..=3 {
        let (n, addr) =
            start(id, tmp.path().join(format!("n{id}")), clock.clone(), faults.clone(), None).await;
        members.insert(id, RaftNode { api_addr: addr, name: format!("n{id}") });
        nodes.push(n);
    }
    nodes[0].c.initialize(members).await.unwrap();
    nodes
}

/// Index of the node that is leader and has extended leases for its term (its registrar
/// accepts heartbeats and its keeper runs).
async fn leader(nodes: &[Node]) -> usize {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        for (i, n) in nodes.iter().enumerate() {
            let l = n.c.leadership().borrow().clone();
            if l.leader_id == Some(n.id) {
                return i;
            }
        }
        assert!(Instant::now() < end, "no leader within 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn register(nodes: &[Node], id: &str, ttl_s: u32) -> usize {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let l = leader(nodes).await;
        let mut s = NewService::new(ServiceId::new(id), "cam-1", "http", "10.1.0.5", 8080);
        s.ttl_seconds = ttl_s;
        match nodes[l].reg.register(s).await {
            Ok(_) => return l,
            Err(e) => assert!(Instant::now() < end, "register {id}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Heartbeats `id` at whichever node leads now, retrying through an election.
async fn heartbeat(nodes: &[Node], id: &str) -> usize {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let l = leader(nodes).await;
        match nodes[l].reg.heartbeat_local(&ServiceId::new(id), None) {
            Ok(s) => {
                assert_eq!(s.status, Status::Active);
                return l;
            }
            Err(RegistrarError::NotLeader { .. }) => {}
            Err(e) => panic!("heartbeat {id}: {e}"),
        }
        assert!(Instant::now() < end, "no node took the heartbeat within 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every node's copy of `id` satisfies `ok`.
async fn wait_all(nodes: &[Node], id: &str, what: &str, ok: impl Fn(&Service) -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !nodes.iter().all(|n| n.service(id).is_some_and(|s| ok(&s))) {
        let seen: Vec<_> = nodes.iter().map(|n| n.service(id).map(|s| (s.status, s.expires_at_ms))).collect();
        assert!(Instant::now() < end, "{what}: nodes see {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Lets the keepers run a few checks at the current registry time.
/// Cuts node `l` off from the others (raft messages both ways).
fn cut_off(nodes: &[Node], l: usize, faults: &Faults) {
    let others: Vec<u64> = nodes.iter().map(|n| n.id).filter(|id| *id != nodes[l].id).collect();
    faults.isolate(nodes[l].id, &others);
}

async fn settle() {
    tokio::time::sleep(CHECK * 4).await;
}

fn expired_events(n: &Node, id: &str) -> usize {
    n.reg.read_local(|r| {
        r.events_since(Revision(0))
            .unwrap()
            .iter()
            .filter(|e| e.kind == EventKind::ServiceExpired && e.service.id.as_str() == id)
            .count()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrenewed_service_expires_after_its_ttl_identically_on_every_node() {
    // Proves the expiry rule with time held still: no expiry 1 ms before the ttl however long
    // the keepers run, expiry at the ttl within one check, and every node holds the same
    // expired service (same time, same revision) because the leader logged the decision.
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let nodes = cluster(&tmp, &clock, &Faults::default()).await;
    leader(&nodes).await;
    settle().await;
    register(&nodes, "cam-1", 10).await;
    wait_all(&nodes, "cam-1", "registered everywhere", |s| s.status == Status::Active).await;
    let expires = nodes[0].service("cam-1").unwrap().expires_at_ms;
    assert_eq!(expires, T0 + 10_000);

    clock.set(T0 + 9_999);
    settle().await;
    for n in &nodes {
        assert_eq!(n.service("cam-1").unwrap().status, Status::Active, "node {} expired it early", n.id);
    }
    clock.set(T0 + 10_000);
    wait_all(&nodes, "cam-1", "expired everywhere", |s| s.status == Status::Expired).await;
    let seen: Vec<Service> = nodes.iter().map(|n| n.service("cam-1").unwrap()).collect();
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "nodes disagree: {seen:#?}");
    assert_eq!(seen[0].updated_at_ms, T0 + 10_000, "expired at the ttl, not later");
    let revs: Vec<Revision> = nodes.iter().map(|n| n.reg.read_local(|r| r.revision())).collect();
    assert!(revs.windows(2).all(|w| w[0] == w[1]), "revisions differ: {revs:?}");
    for n in &nodes {
        assert_eq!(expired_events(n, "cam-1"), 1, "node {}", n.id);
    }
    for n in nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_service_never_expires_even_when_the_leader_dies_holding_its_heartbeat() {
    // Proves the failover rule. ttl 10 s, a heartbeat every 9 s of registry time. At +9 s the
    // leader is cut off from the others (so it cannot checkpoint), takes the heartbeat, and is
    // killed; registry time then moves on. Without the new leader's ExtendLeases the service
    // would expire 1 s after the lost heartbeat; with it, it never does. Then heartbeats stop and it does expire
    // (the check can fail).
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let faults = Faults::default();
    let mut nodes = cluster(&tmp, &clock, &faults).await;
    leader(&nodes).await;
    settle().await;
    register(&nodes, "cam-1", 10).await;
    wait_all(&nodes, "cam-1", "registered everywhere", |s| s.status == Status::Active).await;

    let mut killed = false;
    for second in 1..=30u64 {
        clock.set(T0 + second * 1_000);
        if second == 9 && !killed {
            killed = true;
            let l = leader(&nodes).await;
            cut_off(&nodes, l, &faults);
            nodes[l]
                .reg
                .heartbeat_local(&ServiceId::new("cam-1"), None)
                .expect("the cut-off leader takes it");
            tokio::time::sleep(CHECK * 2).await;
            {
                let old = nodes.remove(l);
                let old_id = old.id;
                old.kill().await;
                let next = leader(&nodes).await;
                assert_ne!(nodes[next].id, old_id);
                faults.heal();
            }
        } else if second % 9 == 0 {
            heartbeat(&nodes, "cam-1").await;
        }
        tokio::time::sleep(CHECK * 2).await;
        for n in &nodes {
            let s = n.service("cam-1").unwrap();
            assert_ne!(
                s.status,
                Status::Expired,
                "node {} expired a renewed service at +{second}s: {s:?}",
                n.id
            );
        }
    }
    for n in &nodes {
        assert_eq!(expired_events(n, "cam-1"), 0, "node {}", n.id);
    }
    // No more heartbeats: it expires once its lease (last heartbeat + ttl) has run out.
    let last = nodes[0].service("cam-1").unwrap().expires_at_ms;
    clock.set(last);
    wait_all(&nodes, "cam-1", "expired after heartbeats stopped", |s| s.status == Status::Expired).await;
    for n in nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_quorum_takes_no_heartbeat_it_would_lose() {
    // Regression (found by the cluster tests' ttl-bounds checker): a leader isolated from the
    // other voters still believed it led (raft does not step down without a higher term) and
    // acknowledged heartbeats from memory for as long as the partition lasted; none of them
    // could reach the log, and the majority's new leader expired those services. A leader
    // now takes a heartbeat only while a quorum acknowledged it within the lease.
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let faults = Faults::default();
    let nodes = cluster(&tmp, &clock, &faults).await;
    leader(&nodes).await;
    settle().await;
    register(&nodes, "cam-1", 10).await;
    let l = leader(&nodes).await;
    let id = ServiceId::new("cam-1");
    nodes[l].reg.heartbeat_local(&id, None).expect("a leader with its quorum takes heartbeats");
    cut_off(&nodes, l, &faults);
    // Well past the lease (180 ms with the local timing) and an election.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lead = nodes[l].c.leadership().borrow().clone();
    assert_eq!(lead.leader_id, Some(nodes[l].id), "the cut-off node still believes it leads (the case)");
    match nodes[l].reg.heartbeat_local(&id, None) {
        Err(RegistrarError::Unavailable(m)) => assert!(m.contains("quorum"), "{m}"),
        other => panic!("a cut-off leader acknowledged a heartbeat it cannot keep: {other:?}"),
    }
    faults.heal();
    for n in nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_flight_when_its_leader_stops_is_unknown_not_retried_into_a_second_apply() {
    // Regression (found by the cluster tests' watch-streams checker in a rolling restart): a
    // leader that stopped while a write was in flight answered "raft stopped", which was
    // taken for "not applied"; the write was retried on the next leader and applied twice
    // (the client got the second, empty update's revision, which no event carried). A write
    // whose raft stopped under it is now `Unknown`: it may still commit.
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let faults = Faults::default();
    let mut nodes = cluster(&tmp, &clock, &faults).await;
    leader(&nodes).await;
    settle().await;
    let l = leader(&nodes).await;
    // Cut off, the leader appends the entry but cannot commit it.
    cut_off(&nodes, l, &faults);
    let old = nodes.remove(l);
    let reg = old.reg.clone();
    let write = tokio::spawn(async move {
        reg.register(NewService::new(ServiceId::new("cam-9"), "cam-9", "http", "10.1.0.9", 8080)).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    old.kill().await;
    match tokio::time::timeout(Duration::from_secs(10), write).await.unwrap().unwrap() {
        Err(RegistrarError::Unknown(m)) => assert!(m.contains("may still be applied"), "{m}"),
        other => panic!("a write whose raft stopped under it must be Unknown: {other:?}"),
    }
    faults.heal();
    for n in nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_restarted_from_its_data_dir_comes_back_with_the_same_registry() {
    // Proves durability of the registry itself: register, expire and deregister services,
    // stop all three nodes, start them again on the same dirs and addresses; every node holds
    // a registry byte-identical to the one before.
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let nodes = cluster(&tmp, &clock, &Faults::default()).await;
    leader(&nodes).await;
    settle().await;
    for i in 0..6 {
        register(&nodes, &format!("svc-{i}"), if i < 2 { 10 } else { 300 }).await;
    }
    clock.set(nodes[0].service("svc-1").unwrap().expires_at_ms);
    wait_all(&nodes, "svc-0", "svc-0 expired", |s| s.status == Status::Expired).await;
    let l = leader(&nodes).await;
    nodes[l].reg.deregister(ServiceId::new("svc-5")).await.unwrap();
    let settled = |nodes: &[Node]| {
        let snaps: Vec<_> = nodes.iter().map(|n| n.reg.read_local(|r| r.snapshot())).collect();
        snaps.windows(2).all(|w| w[0] == w[1]).then(|| snaps[0].clone())
    };
    let end = Instant::now() + Duration::from_secs(10);
    let before = loop {
        if let Some(s) = settled(&nodes) {
            break s;
        }
        assert!(Instant::now() < end, "nodes did not converge");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(before.services.len(), 5);
    let mut saved = Vec::new();
    for n in nodes {
        let addr = n.addr.clone();
        let id = n.id;
        n.kill().await;
        saved.push((id, addr));
    }
    let mut again = Vec::new();
    for (id, addr) in &saved {
        let (n, _) =
            start(*id, tmp.path().join(format!("n{id}")), clock.clone(), Faults::default(), Some(addr)).await;
        again.push(n);
    }
    leader(&again).await;
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let snaps: Vec<_> = again.iter().map(|n| n.reg.read_local(|r| r.snapshot())).collect();
        if snaps.iter().all(|s| s.services == before.services) {
            break;
        }
        assert!(Instant::now() < end, "restarted registry differs: {:#?}", snaps[0].services);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in again {
        n.kill().await;
    }
}
