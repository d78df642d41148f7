//! In-process raft clusters over the real gRPC transport on 127.0.0.1: one leader, failover
//! after the leader is stopped, restart of every node from its data dir, and fencing — a
//! partitioned leader stops being *server* before any other node becomes server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use muster::consensus::leadership::Role;
use muster::consensus::network::Faults;
use muster::consensus::raft::{Consensus, RaftConfig, RaftTiming};
use muster::consensus::{Machine, RaftNode};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A test machine: the list of applied payloads.
#[derive(Default)]
struct Applied(Vec<Vec<u8>>);

impl Machine for Applied {
    fn apply(&mut self, index: u64, payload: &[u8]) -> Vec<u8> {
        self.0.push(payload.to_vec());
        index.to_be_bytes().to_vec()
    }
    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).unwrap()
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.0 = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// (node id, role, when) for every leadership change any node published.
type Timeline = Arc<Mutex<Vec<(u64, Role, Instant)>>>;

struct Member {
    id: u64,
    addr: String,
    dir: std::path::PathBuf,
    c: Consensus<Applied>,
    stop: CancellationToken,
    server: JoinHandle<()>,
}

async fn start_member(
    id: u64,
    addr: Option<String>,
    dir: std::path::PathBuf,
    faults: Faults,
    tl: Timeline,
) -> Member {
    let listener = TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:0")).await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let cfg = RaftConfig {
        id,
        node: RaftNode { api_addr: addr.clone(), name: format!("n{id}") },
        data_dir: dir.clone(),
        timing: RaftTiming::local(),
        faults,
        tls: None,
    };
    let c = Consensus::start(cfg, Applied::default()).await.unwrap();
    let stop = CancellationToken::new();
    let svc = c.grpc_service();
    let s = stop.clone();
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                s.cancelled_owned(),
            )
            .await;
    });
    let mut rx = c.leadership();
    tokio::spawn(async move {
        loop {
            let role = rx.borrow_and_update().role;
            tl.lock().unwrap().push((id, role, Instant::now()));
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
    Member { id, addr, dir, c, stop, server }
}

impl Member {
    async fn stop(self) -> (u64, String, std::path::PathBuf) {
        self.c.shutdown().await;
        self.stop.cancel();
        let _ = self.server.await;
        (self.id, self.addr, self.dir)
    }
}

async fn cluster(n: u64, tmp: &tempfile::TempDir, faults: &Faults, tl: &Timeline) -> Vec<Member> {
    let mut ms = Vec::new();
    for id in 1..=n {
        ms.push(start_member(id, None, tmp.path().join(format!("n{id}")), faults.clone(), tl.clone()).await);
    }
    let members: BTreeMap<u64, RaftNode> = ms
        .iter()
        .map(|m| (m.id, RaftNode { api_addr: m.addr.clone(), name: format!("n{}", m.id) }))
        .collect();
    ms[0].c.initialize(members).await.unwrap();
    ms
}

/// Waits until exactly one of `ms` is server; returns its index.
async fn wait_server(ms: &[Member], what: &str) -> usize {
    wait_server_not(ms, None, what).await
}

/// Waits until exactly one of `ms` is server and it is not `not`; returns its index.
async fn wait_server_not(ms: &[Member], not: Option<u64>, what: &str) -> usize {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let servers: Vec<usize> = ms
            .iter()
            .enumerate()
            .filter(|(_, m)| m.c.leadership().borrow().role == Role::Server)
            .map(|(i, _)| i)
            .collect();
        if servers.len() == 1 && Some(ms[servers[0]].id) != not {
            return servers[0];
        }
        assert!(Instant::now() < end, "timed out waiting for one server: {what} (servers now: {servers:?})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_applied(m: &Member, n: usize) {
    let end = Instant::now() + Duration::from_secs(20);
    while m.c.reader().read(|a| a.0.len()) < n {
        assert!(Instant::now() < end, "node {} did not apply {n} entries", m.id);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn propose_all(m: &Member, from: usize, to: usize) {
    for i in from..to {
        m.c.propose(format!("e{i}").into_bytes()).await.unwrap();
    }
}

async fn failover(n: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let (faults, tl) = (Faults::default(), Timeline::default());
    let mut ms = cluster(n, &tmp, &faults, &tl).await;
    let leader = wait_server(&ms, "first election").await;
    propose_all(&ms[leader], 0, 10).await;
    let old = ms.remove(leader);
    let old_id = old.id;
    old.stop().await;
    let next = wait_server(&ms, "failover after the leader stopped").await;
    assert_ne!(ms[next].id, old_id);
    propose_all(&ms[next], 10, 20).await;
    for m in &ms {
        wait_applied(m, 20).await;
        let got = m.c.reader().read(|a| a.0.clone());
        let want: Vec<Vec<u8>> = (0..20).map(|i| format!("e{i}").into_bytes()).collect();
        // Blank leader entries are not proposals: the machine sees exactly what was proposed.
        assert_eq!(got, want, "node {} registry after failover", m.id);
    }
    for m in ms {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_one_server_and_fail_over_with_the_log_intact() {
    // Proves a 3-node cluster has exactly one server, and after the leader stops another node
    // takes over with every committed entry, applied once, in order.
    failover(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_elect_one_server_and_fail_over_with_the_log_intact() {
    // Proves the same for 5 nodes.
    failover(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_restarted_from_its_data_dir_comes_back_with_the_same_state() {
    // Proves durability: stop all three nodes, start them again on the same dirs and
    // addresses, and the cluster elects a leader and holds the same entries.
    let tmp = tempfile::tempdir().unwrap();
    let (faults, tl) = (Faults::default(), Timeline::default());
    let ms = cluster(3, &tmp, &faults, &tl).await;
    let leader = wait_server(&ms, "first election").await;
    propose_all(&ms[leader], 0, 25).await;
    for m in &ms {
        wait_applied(m, 25).await;
    }
    let mut saved = Vec::new();
    for m in ms {
        saved.push(m.stop().await);
    }
    let mut ms = Vec::new();
    for (id, addr, dir) in saved {
        ms.push(start_member(id, Some(addr), dir, faults.clone(), tl.clone()).await);
    }
    let leader = wait_server(&ms, "election after restart").await;
    propose_all(&ms[leader], 25, 26).await;
    for m in &ms {
        wait_applied(m, 26).await;
        assert_eq!(m.c.reader().read(|a| a.0[24].clone()), b"e24".to_vec());
    }
    for m in ms {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_stops_being_server_before_another_node_becomes_server() {
    // Proves fencing: cut the leader off; from the leadership timestamps, its server role ends
    // strictly before any other node's server role begins. Repeated to catch unlucky timing.
    let tmp = tempfile::tempdir().unwrap();
    let (faults, tl) = (Faults::default(), Timeline::default());
    let ms = cluster(3, &tmp, &faults, &tl).await;
    for round in 0..3 {
        let leader = wait_server(&ms, "election").await;
        let old = ms[leader].id;
        let others: Vec<u64> = ms.iter().map(|m| m.id).filter(|id| *id != old).collect();
        let cut_at = Instant::now();
        faults.isolate(old, &others);
        let next = wait_server_not(&ms, Some(old), "a new server on the majority side").await;
        assert_ne!(ms[next].id, old, "round {round}");
        let events = tl.lock().unwrap().clone();
        let old_end = events
            .iter()
            .filter(|(id, role, t)| *id == old && *role != Role::Server && *t >= cut_at)
            .map(|(_, _, t)| *t)
            .min()
            .expect("the old leader published the end of its server role");
        let new_start = events
            .iter()
            .filter(|(id, role, t)| *id != old && *role == Role::Server && *t >= cut_at)
            .map(|(_, _, t)| *t)
            .min()
            .unwrap();
        assert!(
            old_end < new_start,
            "round {round}: old server ended {:?} after the cut, new began {:?}",
            old_end - cut_at,
            new_start - cut_at
        );
        faults.heal();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for m in ms {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_different_clusters_refuse_each_others_raft_messages() {
    // Proves the cluster tag: two voters tagged with different clusters never elect a leader
    // (each refuses the other's votes and entries); once both carry the same cluster they do.
    let tmp = tempfile::tempdir().unwrap();
    let (faults, tl) = (Faults::default(), Timeline::default());
    let ms = cluster(2, &tmp, &faults, &tl).await;
    // `cluster` already initialized them; tag them apart before any election can finish.
    ms[0].c.set_cluster(Some("aaa".into()));
    ms[1].c.set_cluster(Some("bbb".into()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leaders: Vec<Option<u64>> = ms.iter().map(|m| m.c.leadership().borrow().leader_id).collect();
    // A leader elected in the few ms before the tags were set cannot keep its lease either.
    assert!(
        ms.iter().all(|m| m.c.leadership().borrow().role != Role::Server),
        "a server across two clusters: leaders seen {leaders:?}"
    );
    ms[1].c.set_cluster(Some("aaa".into()));
    wait_server(&ms, "an election once both are in one cluster").await;
    for m in ms {
        m.stop().await;
    }
}
