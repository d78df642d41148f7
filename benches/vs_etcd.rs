//! muster against etcd, in one run on this machine: a 3-node muster cluster (the real `muster`
//! binary, `lan` profile, redb with fsync per commit) and a 3-member etcd cluster (Debian's
//! `etcd-server`, its defaults: fsync per commit, heartbeat 100 ms, election 1 s), every
//! process on 127.0.0.1 with its data dir on the same filesystem, driven through each one's
//! native gRPC API by clients in this process.
//!
//! ```sh
//! cargo bench --bench vs_etcd                     # or `make bench`, which installs etcd first
//! VS_ETCD_SECS=2 VS_ETCD_CLIENTS="1 16" cargo bench --bench vs_etcd
//! ```
//!
//! Rows, in the order they run (muster's cluster first, then etcd's; each cluster is started
//! once, and every client has its own gRPC connection):
//! - **writes**: for each client count (1, 16, 64), every client loops: write → wait for the
//!   answer → next, against the leader, until the time per point runs out or the cap on
//!   operations is reached. muster: `Registry/Register` of a new service (a fresh id, name,
//!   type, host, port: about 60 bytes); etcd: `KV/Put` of a new key with a 64-byte value.
//!   Then 16 clients spread round-robin over all three members (followers forward to the
//!   leader). Reports acknowledged writes per second and the p50/p99 of one write.
//! - **heartbeats**: each client first registers its own service (muster) or grants its own
//!   lease (etcd), then opens one stream and loops: send a heartbeat → wait for its answer.
//!   muster: `Registry/KeepAlive`; etcd: `Lease/LeaseKeepAlive`. Both against the leader.
//! - **watch**: one watcher on a follower (muster `Registry/Watch` filtered by type; etcd
//!   `Watch` on a key prefix); one writer on the leader writes sequentially. Latency: from the
//!   moment the write is sent to the moment the watcher holds the event.
//! - **kill -9 → next write**: a writer loops over the two other members (one attempt each,
//!   1 s deadline, round-robin) after the leader is killed with SIGKILL; measured from the
//!   kill to the first acknowledged write. The killed member is restarted on its data dir and
//!   the cluster settles before the next run. Reports each run and the median.
//! - **RSS**: the largest resident set of the three members, idle (after the cluster settled)
//!   and under load (sampled every 100 ms during the 64-client writes).
//!
//! Output: a markdown table on stdout, preceded by the machine, the load average before and
//! after, the data dirs' filesystem and the settings; progress goes to stderr.
//!
//! Environment (defaults): `VS_ETCD_SECS` (3, per point), `VS_ETCD_MAX_OPS` (200000, per
//! point), `VS_ETCD_CLIENTS` ("1 16 64"), `VS_ETCD_WATCH_EVENTS` (500), `VS_ETCD_FAILOVERS`
//! (3), `VS_ETCD_DIR` (the bench's target temp dir: where data dirs go), `ETCD_BIN` (`etcd` on
//! PATH), `MUSTER_BIN` (the binary cargo built with this bench), `VS_ETCD_ONLY` (`muster` or
//! `etcd`: measure one side only).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use muster::api::grpc::pb::cluster::cluster_client::ClusterClient;
use muster::api::grpc::pb::cluster::{Mode, StatusRequest};
use muster::api::grpc::pb::registry::registry_client::RegistryClient;
use muster::api::grpc::pb::registry::{HeartbeatRequest, KeepAliveResponse, RegisterRequest, WatchRequest};
use support::{counts, filesystem, load_average, machine, median, ms, number, percentile_ms, revision};
use tokio::sync::mpsc;
use tonic::transport::Channel;

fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`: measure only when
    // `cargo bench` asks.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("vs_etcd bench: skipped (run it with `cargo bench --bench vs_etcd` or `make bench`)");
        return;
    }
    let s = Settings::from_env();
    let load_before = load_average();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let mut rows = Vec::new();
    let mut rss = Vec::new();
    rt.block_on(async {
        for kind in [Kind::Muster, Kind::Etcd].into_iter().filter(|k| s.only.is_none_or(|o| o == *k)) {
            let (r, m) = measure(kind, &s).await;
            rows.push((kind, r));
            rss.push((kind, m));
        }
    });
    print!("{}", s.header(&load_before, &load_average()));
    print!("{}", table(&rows, &rss));
}

// ---------------------------------------------------------------------------------------------
// Settings

struct Settings {
    secs: Duration,
    max_ops: usize,
    clients: Vec<usize>,
    watch_events: usize,
    failovers: usize,
    parent: PathBuf,
    etcd: PathBuf,
    muster: PathBuf,
    /// Measure only this system (`VS_ETCD_ONLY`), for quick looks at one side.
    only: Option<Kind>,
}

impl Settings {
    fn from_env() -> Settings {
        let etcd = std::env::var_os("ETCD_BIN").map(PathBuf::from).or_else(|| on_path("etcd")).unwrap_or_else(|| {
            panic!("etcd is not installed: apt-get install etcd-server (or set ETCD_BIN); `make bench` installs it")
        });
        let parent = std::env::var_os("VS_ETCD_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
        let only = match std::env::var("VS_ETCD_ONLY").as_deref() {
            Ok("muster") => Some(Kind::Muster),
            Ok("etcd") => Some(Kind::Etcd),
            Ok("") | Err(_) => None,
            Ok(other) => panic!("VS_ETCD_ONLY must be muster or etcd (got {other:?})"),
        };
        Settings {
            only,
            secs: Duration::from_secs_f64(number("VS_ETCD_SECS", 3.0)),
            max_ops: number("VS_ETCD_MAX_OPS", 200_000.0) as usize,
            clients: counts("VS_ETCD_CLIENTS", "1 16 64"),
            watch_events: number("VS_ETCD_WATCH_EVENTS", 500.0) as usize,
            failovers: number("VS_ETCD_FAILOVERS", 3.0) as usize,
            parent,
            etcd,
            muster: std::env::var_os("MUSTER_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_muster"))),
        }
    }

    fn header(&self, load_before: &str, load_after: &str) -> String {
        let etcd_version = Command::new(&self.etcd)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_owned))
            .unwrap_or_else(|| "etcd ?".to_owned());
        format!(
            "## muster vs etcd ({})\n\n\
             - machine: {}; load average (1, 5, 15 min) {load_before} before the run, {load_after} after\n\
             - data dirs: under {} ({})\n\
             - muster: 3 nodes, profile lan; {etcd_version}: 3 members, defaults\n\
             - per point: {:.1} s or {} operations; watch: {} events; kill -9 runs: {}\n\n",
            revision(),
            machine(),
            self.parent.display(),
            filesystem(&self.parent),
            self.secs.as_secs_f64(),
            self.max_ops,
            self.watch_events,
            self.failovers,
        )
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// `n` distinct free ports: every listener stays open until all are chosen, so the kernel
/// cannot hand the same port out twice (two members on one port made a run hang).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")).collect();
    held.iter().map(|l| l.local_addr().expect("local addr").port()).collect()
}

// ---------------------------------------------------------------------------------------------
// Clusters of real processes

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Muster,
    Etcd,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Muster => "muster",
            Kind::Etcd => "etcd",
        }
    }
}

struct Member {
    /// The gRPC address clients use.
    api: SocketAddr,
    /// muster: the gossip address others join.
    gossip: SocketAddr,
    bin: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn spawn(&mut self, extra: &[String]) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open log");
        let child = Command::new(&self.bin)
            .args(&self.args)
            .args(extra)
            .env("LOG_LEVEL", "warn")
            .env("LOG_FORMAT", "text")
            .env("LOG_NO_COLOR", "1")
            .env_remove("SERF_JOIN")
            .env_remove("ROLE")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Resident set in MB, from /proc.
    fn rss_mb(&self) -> Option<f64> {
        rss_of(self.child.as_ref()?.id())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
    }
}

struct Cluster {
    kind: Kind,
    members: Vec<Member>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(kind: Kind, s: &Settings) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix(&format!("vs-etcd-{}.", kind.name()))
            .tempdir_in(&s.parent)
            .unwrap_or_else(|e| panic!("cannot create a temp dir in {}: {e}", s.parent.display()));
        let mut members = Vec::new();
        match kind {
            Kind::Muster => {
                // The lan profile gossips encrypted: the three nodes share a key of this run.
                let key = muster::gossip::wire::generate_key();
                let ports = free_ports(9);
                for i in 0..3 {
                    let (api, gossip, rpc) = (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]);
                    let args = vec![
                        "agent".to_owned(),
                        "--node".into(),
                        format!("m{i}"),
                        "--bind".into(),
                        format!("127.0.0.1:{gossip}"),
                        "--http-addr".into(),
                        format!("127.0.0.1:{api}"),
                        "--rpc-addr".into(),
                        format!("127.0.0.1:{rpc}"),
                        "--discovery".into(),
                        "serf".into(),
                        "--profile".into(),
                        "lan".into(),
                        "--encrypt".into(),
                        key.clone(),
                        // Every bench client shares 127.0.0.1 and etcd has no per-client limit.
                        "--write-rate".into(),
                        "0".into(),
                        "--data-dir".into(),
                        dir.path().join(format!("m{i}")).display().to_string(),
                    ];
                    members.push(Member {
                        api: format!("127.0.0.1:{api}").parse().unwrap(),
                        gossip: format!("127.0.0.1:{gossip}").parse().unwrap(),
                        bin: s.muster.clone(),
                        args,
                        log: dir.path().join(format!("m{i}.log")),
                        child: None,
                    });
                }
                // The first node bootstraps alone; the others join it.
                members[0].spawn(&[]);
                let first = members[0].api;
                wait_until(Duration::from_secs(30), "the first muster node to lead", || async move {
                    muster_status(first).await.is_some_and(|st| st.mode == Mode::Server as i32)
                })
                .await;
                let join = vec!["--join".to_owned(), members[0].gossip.to_string()];
                for m in &mut members[1..] {
                    m.spawn(&join);
                }
            }
            Kind::Etcd => {
                let ports = free_ports(6);
                let peers: Vec<u16> = ports[..3].to_vec();
                let initial = peers
                    .iter()
                    .enumerate()
                    .map(|(i, p)| format!("e{i}=http://127.0.0.1:{p}"))
                    .collect::<Vec<_>>()
                    .join(",");
                for (i, peer) in peers.iter().enumerate() {
                    let client = ports[3 + i];
                    let args = [
                        "--name".to_owned(),
                        format!("e{i}"),
                        "--data-dir".into(),
                        dir.path().join(format!("e{i}")).display().to_string(),
                        "--listen-client-urls".into(),
                        format!("http://127.0.0.1:{client}"),
                        "--advertise-client-urls".into(),
                        format!("http://127.0.0.1:{client}"),
                        "--listen-peer-urls".into(),
                        format!("http://127.0.0.1:{peer}"),
                        "--initial-advertise-peer-urls".into(),
                        format!("http://127.0.0.1:{peer}"),
                        "--initial-cluster".into(),
                        initial.clone(),
                        "--initial-cluster-token".into(),
                        "vs-muster".into(),
                        "--initial-cluster-state".into(),
                        "new".into(),
                        "--logger".into(),
                        "zap".into(),
                        "--log-level".into(),
                        "warn".into(),
                    ];
                    let mut m = Member {
                        api: format!("127.0.0.1:{client}").parse().unwrap(),
                        gossip: format!("127.0.0.1:{peer}").parse().unwrap(),
                        bin: s.etcd.clone(),
                        args: args.to_vec(),
                        log: dir.path().join(format!("e{i}.log")),
                        child: None,
                    };
                    m.spawn(&[]);
                    members.push(m);
                }
            }
        }
        let cluster = Cluster { kind, members, _dir: dir };
        cluster.settle().await;
        cluster
    }

    /// Waits until every running member answers and agrees on one leader (muster: with three
    /// voters and the leader serving), then a second more; returns the leader's index.
    async fn settle(&self) -> usize {
        let started = Instant::now();
        let leader =
            wait_until_some(Duration::from_secs(60), "the cluster to settle", || self.agreed_leader()).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        eprintln!(
            "vs_etcd: {} settled in {} ms, leader {}",
            self.kind.name(),
            started.elapsed().as_millis(),
            leader
        );
        leader
    }

    async fn agreed_leader(&self) -> Option<usize> {
        let mut seen = None;
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            let leader = match self.kind {
                Kind::Muster => {
                    let st = muster_status(m.api).await?;
                    if st.voters.len() != 3 {
                        return None;
                    }
                    let addr: SocketAddr = st.leader?.address.parse().ok()?;
                    self.members.iter().position(|x| x.api == addr)?
                }
                Kind::Etcd => {
                    let mut c =
                        etcd_client::Client::connect([format!("http://{}", m.api)], None).await.ok()?;
                    let st = tokio::time::timeout(Duration::from_secs(1), c.status()).await.ok()?.ok()?;
                    let leader_id = st.leader();
                    let mut found = None;
                    for (i, x) in self.members.iter().enumerate().filter(|(_, x)| x.child.is_some()) {
                        let mut c =
                            etcd_client::Client::connect([format!("http://{}", x.api)], None).await.ok()?;
                        let st = tokio::time::timeout(Duration::from_secs(1), c.status()).await.ok()?.ok()?;
                        if st.header()?.member_id() == leader_id {
                            found = Some(i);
                        }
                    }
                    found?
                }
            };
            if seen.is_some_and(|s| s != leader) {
                return None;
            }
            seen = Some(leader);
        }
        if self.kind == Kind::Muster {
            let st = muster_status(self.members[seen?].api).await?;
            if st.mode != Mode::Server as i32 {
                return None;
            }
        }
        seen
    }

    /// Restarts a killed member on its data dir (muster: joining the others).
    fn restart(&mut self, i: usize) {
        let extra: Vec<String> = match self.kind {
            Kind::Muster => self
                .members
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .flat_map(|(_, m)| ["--join".to_owned(), m.gossip.to_string()])
                .collect(),
            Kind::Etcd => Vec::new(),
        };
        self.members[i].spawn(&extra);
    }

    fn max_rss_mb(&self) -> f64 {
        self.members.iter().filter_map(Member::rss_mb).fold(0.0, f64::max)
    }
}

async fn muster_status(api: SocketAddr) -> Option<muster::api::grpc::pb::cluster::StatusResponse> {
    let fut = async {
        let ch = Channel::from_shared(format!("http://{api}")).ok()?.connect().await.ok()?;
        ClusterClient::new(ch).status(StatusRequest {}).await.ok().map(|r| r.into_inner())
    };
    tokio::time::timeout(Duration::from_secs(1), fut).await.ok().flatten()
}

async fn wait_until<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_until_some(within, what, || {
        let fut = f();
        async move { fut.await.then_some(()) }
    })
    .await
}

async fn wait_until_some<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

/// One client with its own connection.
enum Client {
    Muster(RegistryClient<Channel>),
    Etcd(Box<etcd_client::Client>),
}

/// A small service: what a registration carries.
fn registration(id: String, service_type: &str) -> RegisterRequest {
    RegisterRequest {
        service_id: id,
        name: "bench".into(),
        r#type: service_type.into(),
        host: "10.0.0.1".into(),
        port: 8080,
        ..Default::default()
    }
}

const ETCD_VALUE: [u8; 64] = [b'v'; 64];

impl Client {
    async fn connect(kind: Kind, api: SocketAddr) -> Client {
        match kind {
            Kind::Muster => {
                let ch = Channel::from_shared(format!("http://{api}"))
                    .unwrap()
                    .connect()
                    .await
                    .expect("connect to muster");
                Client::Muster(RegistryClient::new(ch))
            }
            Kind::Etcd => Client::Etcd(Box::new(
                etcd_client::Client::connect([format!("http://{api}")], None).await.expect("connect to etcd"),
            )),
        }
    }

    /// One write of a new key/service, acknowledged.
    async fn write(&mut self, key: String, kind_tag: &str) -> Result<(), String> {
        match self {
            Client::Muster(c) => {
                c.register(registration(key, kind_tag)).await.map(|_| ()).map_err(|s| s.to_string())
            }
            Client::Etcd(c) => c
                .put(format!("/{kind_tag}/{key}"), ETCD_VALUE.to_vec(), None)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }
}

/// One heartbeat stream for one service (muster) or lease (etcd).
enum Beats {
    Muster { id: String, tx: mpsc::Sender<HeartbeatRequest>, rx: tonic::Streaming<KeepAliveResponse> },
    Etcd { keeper: etcd_client::LeaseKeeper, stream: etcd_client::LeaseKeepAliveStream },
}

impl Beats {
    async fn open(client: Client, id: String) -> Beats {
        match client {
            Client::Muster(mut c) => {
                let mut req = registration(id.clone(), "beat");
                req.ttl_seconds = Some(300);
                c.register(req).await.expect("register the heartbeat service");
                let (tx, rx) = mpsc::channel::<HeartbeatRequest>(1);
                let requests =
                    futures_util::stream::unfold(
                        rx,
                        |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
                    );
                let rx = c.keep_alive(requests).await.expect("open KeepAlive").into_inner();
                Beats::Muster { id, tx, rx }
            }
            Client::Etcd(mut c) => {
                let lease = c.lease_grant(300, None).await.expect("grant a lease").id();
                let (keeper, stream) = c.lease_keep_alive(lease).await.expect("open LeaseKeepAlive");
                Beats::Etcd { keeper, stream }
            }
        }
    }

    async fn beat(&mut self) -> Result<(), String> {
        match self {
            Beats::Muster { id, tx, rx } => {
                tx.send(HeartbeatRequest { service_id: id.clone(), ttl_seconds: None })
                    .await
                    .map_err(|e| e.to_string())?;
                match rx.message().await {
                    Ok(Some(r)) if r.error.is_none() => Ok(()),
                    Ok(Some(r)) => Err(format!("refused: {:?}", r.error)),
                    Ok(None) => Err("stream ended".into()),
                    Err(s) => Err(s.to_string()),
                }
            }
            Beats::Etcd { keeper, stream } => {
                keeper.keep_alive().await.map_err(|e| e.to_string())?;
                match stream.message().await {
                    Ok(Some(r)) if r.ttl() > 0 => Ok(()),
                    Ok(Some(_)) => Err("lease gone".into()),
                    Ok(None) => Err("stream ended".into()),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements

/// One row's figures for one system.
#[derive(Default, Clone)]
struct Cell {
    n: usize,
    per_s: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    errors: usize,
    note: String,
}

impl Cell {
    fn timed(lat: &mut [Duration], elapsed: Duration, errors: usize) -> Cell {
        lat.sort_unstable();
        Cell {
            n: lat.len(),
            per_s: (!lat.is_empty()).then(|| lat.len() as f64 / elapsed.as_secs_f64()),
            p50_ms: percentile_ms(lat, 0.50),
            p99_ms: percentile_ms(lat, 0.99),
            errors,
            note: String::new(),
        }
    }
}

/// What the RSS sampler and loops share.
struct Rss {
    idle: f64,
    load: f64,
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

fn next_key(prefix: &str) -> String {
    format!("{prefix}-{}", NEXT_KEY.fetch_add(1, Ordering::Relaxed))
}

async fn measure(kind: Kind, s: &Settings) -> (Vec<(String, Cell)>, Rss) {
    eprintln!("vs_etcd: starting {}", kind.name());
    let mut cluster = Cluster::start(kind, s).await;
    let idle = cluster.max_rss_mb();
    let mut rows = Vec::new();
    let mut load = 0.0f64;

    let leader = cluster.settle().await;
    let everyone: Vec<SocketAddr> = cluster.members.iter().map(|m| m.api).collect();
    let leader_api = everyone[leader];
    for &n in &s.clients {
        let sampling = Arc::new(AtomicBool::new(n == *s.clients.iter().max().unwrap_or(&0)));
        let peak = Arc::new(Mutex::new(0.0f64));
        let sampler = {
            let pids: Vec<u32> =
                cluster.members.iter().filter_map(|m| m.child.as_ref().map(Child::id)).collect();
            let (sampling, peak) = (sampling.clone(), peak.clone());
            tokio::spawn(async move {
                while sampling.load(Ordering::Relaxed) {
                    for pid in &pids {
                        if let Some(mb) = rss_of(*pid) {
                            let mut p = peak.lock().unwrap();
                            *p = p.max(mb);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let cell = writes(kind, &vec![leader_api; n], s).await;
        sampling.store(false, Ordering::Relaxed);
        let _ = sampler.await;
        load = load.max(*peak.lock().unwrap());
        eprintln!("vs_etcd: {} writes, {n} clients: {:.0}/s", kind.name(), cell.per_s.unwrap_or(0.0));
        rows.push((format!("write, {n} client{} on the leader", if n == 1 { "" } else { "s" }), cell));
    }
    let spread: Vec<SocketAddr> = (0..16).map(|i| everyone[i % everyone.len()]).collect();
    let cell = writes(kind, &spread, s).await;
    eprintln!("vs_etcd: {} writes, 16 clients spread: {:.0}/s", kind.name(), cell.per_s.unwrap_or(0.0));
    rows.push(("write, 16 clients over all members".to_owned(), cell));

    for &n in &s.clients {
        let cell = heartbeats(kind, leader_api, n, s).await;
        eprintln!("vs_etcd: {} heartbeats, {n} clients: {:.0}/s", kind.name(), cell.per_s.unwrap_or(0.0));
        rows.push((format!("heartbeat, {n} client{}", if n == 1 { "" } else { "s" }), cell));
    }

    let follower = everyone[(leader + 1) % everyone.len()];
    let cell = watch(kind, leader_api, follower, s).await;
    eprintln!("vs_etcd: {} watch p50 {:.2} ms", kind.name(), cell.p50_ms.unwrap_or(0.0));
    rows.push(("watch notification (watcher on a follower)".to_owned(), cell));

    let cell = failovers(&mut cluster, s).await;
    eprintln!("vs_etcd: {} kill -9 → next write: {}", kind.name(), cell.note);
    rows.push(("kill -9 of the leader → next write".to_owned(), cell));
    (rows, Rss { idle, load })
}

fn rss_of(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs one client per address, each looping `op` until the time or the shared cap runs out.
async fn closed_loop<C, F, Fut>(clients: Vec<C>, s: &Settings, op: F) -> Cell
where
    C: Send + 'static,
    F: Fn(C) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = (C, Result<(), String>)> + Send,
{
    let budget = Arc::new(AtomicU64::new(s.max_ops as u64));
    let started = Instant::now();
    let deadline = started + s.secs;
    let mut tasks = Vec::new();
    for c in clients {
        let (budget, op) = (budget.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = c;
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < deadline && budget.fetch_sub(1, Ordering::Relaxed) > 0 {
                let t = Instant::now();
                let (back, r) = match tokio::time::timeout(Duration::from_secs(5), op(c)).await {
                    Ok(v) => v,
                    Err(_) => panic!("an operation took more than 5 s"),
                };
                c = back;
                match r {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(e) => {
                        errors += 1;
                        if errors == 1 {
                            eprintln!("vs_etcd: error: {e}");
                        }
                    }
                }
            }
            (lat, errors, Instant::now())
        }));
    }
    let (mut lat, mut errors, mut last) = (Vec::new(), 0, started);
    for t in tasks {
        let (l, e, end) = t.await.expect("client task");
        lat.extend(l);
        errors += e;
        last = last.max(end);
    }
    Cell::timed(&mut lat, last - started, errors)
}

async fn writes(kind: Kind, targets: &[SocketAddr], s: &Settings) -> Cell {
    let mut clients = Vec::new();
    for &a in targets {
        clients.push(Client::connect(kind, a).await);
    }
    closed_loop(clients, s, |mut c: Client| async move {
        let r = c.write(next_key("w"), "bench").await;
        (c, r)
    })
    .await
}

async fn heartbeats(kind: Kind, leader: SocketAddr, n: usize, s: &Settings) -> Cell {
    let mut beats = Vec::new();
    for _ in 0..n {
        beats.push(Beats::open(Client::connect(kind, leader).await, next_key("hb")).await);
    }
    closed_loop(beats, s, |mut b: Beats| async move {
        let r = b.beat().await;
        (b, r)
    })
    .await
}

async fn watch(kind: Kind, leader: SocketAddr, follower: SocketAddr, s: &Settings) -> Cell {
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let got: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let ready = Arc::new(tokio::sync::Notify::new());
    let watcher = {
        let (sent, got, ready) = (sent.clone(), got.clone(), ready.clone());
        let want = s.watch_events;
        tokio::spawn(async move {
            let record = |key: &str| {
                if let Some(t) = sent.lock().unwrap().get(key) {
                    got.lock().unwrap().push(t.elapsed());
                }
            };
            match Client::connect(kind, follower).await {
                Client::Muster(mut c) => {
                    let req = WatchRequest { start_revision: 0, r#type: Some("watched".into()) };
                    let mut stream = c.watch(req).await.expect("open Watch").into_inner();
                    ready.notify_one();
                    while got.lock().unwrap().len() < want {
                        match stream.message().await {
                            Ok(Some(m)) => {
                                if let Some(svc) = m.event.and_then(|e| e.service) {
                                    record(&svc.service_id);
                                }
                            }
                            _ => break,
                        }
                    }
                }
                Client::Etcd(mut c) => {
                    let opts = etcd_client::WatchOptions::new().with_prefix();
                    let mut stream = c.watch("/watched/", Some(opts)).await.expect("open Watch");
                    ready.notify_one();
                    while got.lock().unwrap().len() < want {
                        match stream.message().await {
                            Ok(Some(m)) => {
                                for e in m.events() {
                                    if let Some(kv) = e.kv() {
                                        let key = String::from_utf8_lossy(kv.key()).into_owned();
                                        record(key.trim_start_matches("/watched/"));
                                    }
                                }
                            }
                            _ => break,
                        }
                    }
                }
            }
        })
    };
    ready.notified().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut writer = Client::connect(kind, leader).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..s.watch_events {
        let key = next_key("watch");
        sent.lock().unwrap().insert(key.clone(), Instant::now());
        writer.write(key, "watched").await.expect("watched write");
        if Instant::now() > deadline {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), watcher).await;
    let mut lat = got.lock().unwrap().clone();
    let mut cell = Cell::timed(&mut lat, Duration::from_secs(1), 0);
    cell.per_s = None;
    cell.note = format!("{} of {} events seen", cell.n, s.watch_events);
    cell
}

async fn failovers(cluster: &mut Cluster, s: &Settings) -> Cell {
    let mut runs = Vec::new();
    for run in 0..s.failovers {
        let leader = cluster.settle().await;
        let survivors: Vec<SocketAddr> =
            cluster.members.iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, m)| m.api).collect();
        let mut clients = Vec::new();
        for &a in &survivors {
            clients.push(Client::connect(cluster.kind, a).await);
        }
        // Steady writes first, so the clients' connections are warm.
        for c in &mut clients {
            c.write(next_key("pre"), "bench").await.expect("write before the kill");
        }
        let killed = Instant::now();
        cluster.members[leader].kill9();
        let mut i = 0usize;
        let took = loop {
            let c = &mut clients[i % survivors.len()];
            i += 1;
            match tokio::time::timeout(Duration::from_secs(1), c.write(next_key("fo"), "bench")).await {
                Ok(Ok(())) => break killed.elapsed(),
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
            assert!(
                killed.elapsed() < Duration::from_secs(60),
                "{}: no write within 60 s of the kill",
                cluster.kind.name()
            );
        };
        eprintln!(
            "vs_etcd: {} run {run}: next write {} ms after the kill",
            cluster.kind.name(),
            took.as_millis()
        );
        runs.push(ms(took));
        cluster.restart(leader);
    }
    let note = runs.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
    let med = median(&mut runs.clone());
    Cell {
        n: runs.len(),
        per_s: None,
        p50_ms: Some(med),
        p99_ms: None,
        errors: 0,
        note: format!("runs: {note} ms"),
    }
}

// ---------------------------------------------------------------------------------------------
// Output

/// Which system did better on the row's main figure (per second when there is one, else p50).
fn ahead(m: &Cell, e: &Cell) -> &'static str {
    match (m.per_s, e.per_s, m.p50_ms, e.p50_ms) {
        (Some(a), Some(b), _, _) => {
            if a > b {
                "muster"
            } else {
                "etcd"
            }
        }
        (_, _, Some(a), Some(b)) => {
            if a < b {
                "muster"
            } else {
                "etcd"
            }
        }
        _ => "—",
    }
}

fn table(rows: &[(Kind, Vec<(String, Cell)>)], rss: &[(Kind, Rss)]) -> String {
    let opt = |v: Option<f64>, prec: usize| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.prec$}"));
    let find = |k: Kind| rows.iter().find(|(kind, _)| *kind == k).map(|(_, r)| r.as_slice()).unwrap_or(&[]);
    let (m, e) = (find(Kind::Muster), find(Kind::Etcd));
    let mut s = String::from(
        "| measure | muster per s | p50 ms | p99 ms | etcd per s | p50 ms | p99 ms | ratio | ahead |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for (measure, mc) in m {
        let ec = e.iter().find(|(x, _)| x == measure).map(|(_, c)| c.clone()).unwrap_or_default();
        let ratio = match (mc.per_s, ec.per_s, mc.p50_ms, ec.p50_ms) {
            (Some(a), Some(b), _, _) if b > 0.0 => format!("{:.2}×", a / b),
            (None, None, Some(a), Some(b)) if a > 0.0 => format!("{:.2}×", b / a),
            _ => "—".to_owned(),
        };
        s += &format!(
            "| {measure} | {} | {} | {} | {} | {} | {} | {ratio} | {} |\n",
            opt(mc.per_s, 0),
            opt(mc.p50_ms, 2),
            opt(mc.p99_ms, 2),
            opt(ec.per_s, 0),
            opt(ec.p50_ms, 2),
            opt(ec.p99_ms, 2),
            ahead(mc, &ec),
        );
    }
    let rss_of = |k: Kind| {
        rss.iter().find(|(kind, _)| *kind == k).map(|(_, r)| (r.idle, r.load)).unwrap_or((0.0, 0.0))
    };
    let ((mi, ml), (ei, el)) = (rss_of(Kind::Muster), rss_of(Kind::Etcd));
    s += &format!(
        "\n| largest member RSS, MB | muster | etcd |\n|---|---:|---:|\n| idle | {mi:.1} | {ei:.1} |\n| under load (64 writers) | {ml:.1} | {el:.1} |\n"
    );
    s += "\nratio: muster's per s ÷ etcd's, or etcd's p50 ÷ muster's where only latency counts (above 1: muster ahead).\n";
    s += "Notes:\n";
    for (kind, r) in rows {
        for (measure, c) in r {
            if !c.note.is_empty() || c.errors > 0 {
                s += &format!(
                    "- {} / {measure}: {} {}\n",
                    kind.name(),
                    c.note,
                    if c.errors > 0 { format!("({} errors)", c.errors) } else { String::new() }
                );
            }
        }
    }
    s
}
