//! Raft benchmark: an in-process 3-node cluster on this machine, over the real gRPC transport
//! on 127.0.0.1 and the real redb store (fsync per commit), replicating the service registry.
//!
//! ```sh
//! cargo bench --bench raft                        # or `make bench`, after the gossip benchmark
//! RAFT_BENCH_PROFILE=local RAFT_BENCH_SECS=2 cargo bench --bench raft
//! ```
//!
//! Every cluster is built as in `tests/raft_cluster.rs`: three
//! `Consensus<RegistryMachine>` members, each serving its `grpc_service()` with tonic on its own
//! 127.0.0.1 listener, data dirs under one temporary directory, initialized with all three as
//! voters; the benchmark waits until one member is *server* (leader with the quorum lease and
//! past the lock delay). Proposals are `Register` commands of a fresh service id, proposed on
//! the leader with `Consensus::propose`; only proposals whose decoded answer is `Ok` count.
//!
//! Sections, in the order they run (one function each; each returns rows of the table):
//! - **disk floor** ([`disk_floor`]): after `sync(1)` wrote back what was already dirty, in the
//!   data dir's filesystem, a 4 KiB write followed by `File::sync_data`, appending to a growing
//!   file and overwriting one block; and a redb transaction inserting one log-entry-sized value,
//!   committed with `Durability::Immediate` (what the raft log store does per append). One
//!   commit cannot be faster than these.
//! - **registrations** ([`registrations`]): for each count of concurrent proposers (1, 16, 64),
//!   a fresh cluster; every proposer loops `propose` → wait for the answer → next, until the
//!   time per point runs out or the cap on proposals is reached. Reports committed
//!   registrations per second (over the time until the last answer) and the p50/p99 latency of
//!   one proposal (from `propose` to the leader's answer, i.e. committed on a quorum and
//!   applied on the leader).
//! - **heartbeats** ([`heartbeats`]): one cluster with 1000 registered services and the
//!   leader's `Registrar` and lease keeper running; for each count of concurrent clients, every
//!   client heartbeats services in turn through `Registrar::heartbeat` on the leader. A
//!   heartbeat is renewed in the leader's memory and acknowledged; the keeper checkpoints all
//!   of them into the log once a second. Reports acknowledged heartbeats per second and p50/p99.
//! - **failover** ([`failover`]): a fresh cluster each run, with one writer proposing in a loop
//!   against whichever member it believes leads (following `NotLeader` hints, trying the next
//!   member when no leader is known or the member is stopped). After a second of steady
//!   writes the leader is stopped the way the tests stop it (`Consensus::shutdown` and the
//!   cancellation of its gRPC server); measured from that instant: until a survivor is raft
//!   leader in a newer term, and until the writer's next committed registration on another
//!   member. Reports every run and the median.
//!
//! Output: a markdown table on stdout, preceded by the machine (CPUs, CPU model, kernel, load
//! average before and after the run: other work on the machine skews every figure), the data
//! dir's filesystem and the raft timing profile; progress goes to stderr.
//!
//! Environment (defaults): `RAFT_BENCH_PROFILE` (`lan`, the production profile; or `local`),
//! `RAFT_BENCH_SECS` (5, per proposer count), `RAFT_BENCH_MAX_OPS` (100000 proposals, per
//! proposer count), `RAFT_BENCH_PROPOSERS` ("1 16 64"), `RAFT_BENCH_FAILOVERS` (3),
//! `RAFT_BENCH_FSYNC_OPS` (200) and `RAFT_BENCH_FSYNC_SECS` (3) bound each disk-floor row,
//! `RAFT_BENCH_DIR` (the system temp dir: where the temporary data dirs are created, so the
//! disk under test can be chosen).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use muster::consensus::leadership::Role;
use muster::consensus::network::Faults;
use muster::consensus::raft::{Consensus, ConsensusError, RaftConfig, RaftTiming};
use muster::consensus::RaftNode;
use muster::registry::{Command, NewService, Registry, Revision, ServiceId, HISTORY_MAX_DEFAULT};
use muster::replicated::registrar::{run_lease_keeper, LeaseConfig, Registrar, SystemClock};
use muster::replicated::{decode_answer, encode_command, RegistryMachine};
use support::{filesystem, load_average, machine, ms, number, percentile_ms, revision};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long to wait for a leader, or for the next commit after a failover, before giving up.
const WAIT_MAX: Duration = Duration::from_secs(30);
/// Steady writes before the leader is stopped in a failover run.
const FAILOVER_WARMUP: Duration = Duration::from_secs(1);
/// Sequential registrations on a new cluster before a measured point starts.
const WARMUP_OPS: usize = 20;
/// A proposal that has no answer after this long counts as failed (failover writer only).
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(2);

type Node = Consensus<RegistryMachine>;

fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`: measure only when
    // `cargo bench` asks.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("raft bench: skipped (run it with `cargo bench --bench raft` or `make bench`)");
        return;
    }
    let env = Env::from_env();
    let load_before = load_average();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let rows = rt.block_on(async {
        let mut rows = Vec::new();
        rows.extend(disk_floor(&env).await);
        rows.extend(registrations(&env).await);
        rows.extend(heartbeats(&env).await);
        rows.extend(failover(&env).await);
        rows
    });
    print!("{}", env.header(&load_before, &load_average()));
    print!("{}", table(&rows));
}

// ---------------------------------------------------------------------------------------------
// Settings and machine description

struct Env {
    profile: String,
    timing: RaftTiming,
    secs: Duration,
    max_ops: usize,
    proposers: Vec<usize>,
    failovers: usize,
    fsync_ops: usize,
    fsync_secs: Duration,
    /// The directory the temporary data dirs are created in.
    parent: PathBuf,
}

impl Env {
    fn from_env() -> Env {
        let profile = std::env::var("RAFT_BENCH_PROFILE").unwrap_or_else(|_| "lan".to_owned());
        let timing = match profile.as_str() {
            "lan" => RaftTiming::lan(),
            "local" => RaftTiming::local(),
            other => panic!("RAFT_BENCH_PROFILE must be lan or local (got {other:?})"),
        };
        let proposers = support::counts("RAFT_BENCH_PROPOSERS", "1 16 64");
        Env {
            profile,
            timing,
            secs: Duration::from_secs_f64(number("RAFT_BENCH_SECS", 5.0)),
            max_ops: number("RAFT_BENCH_MAX_OPS", 100_000.0) as usize,
            proposers,
            failovers: number("RAFT_BENCH_FAILOVERS", 3.0) as usize,
            fsync_ops: number("RAFT_BENCH_FSYNC_OPS", 200.0) as usize,
            fsync_secs: Duration::from_secs_f64(number("RAFT_BENCH_FSYNC_SECS", 3.0)),
            parent: std::env::var_os("RAFT_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir),
        }
    }

    /// A new, empty temporary directory for one cluster (removed when dropped).
    fn tempdir(&self) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("muster-raft-bench.")
            .tempdir_in(&self.parent)
            .unwrap_or_else(|e| panic!("cannot create a temp dir in {}: {e}", self.parent.display()))
    }

    /// The lines above the table; `load_*` are the load averages before and after the run.
    fn header(&self, load_before: &str, load_after: &str) -> String {
        let t = self.timing;
        format!(
            "## muster raft benchmark ({})\n\n\
             - machine: {}; load average (1, 5, 15 min) \
             {load_before} before the run, {load_after} after\n\
             - data dirs: under {} ({})\n\
             - raft profile: {} (heartbeat {} ms, election {}–{} ms, lease {} ms)\n\
             - per proposer count: {:.1} s or {} proposals; failover runs: {}; disk floor: {} ops or {:.1} s\n\n",
            revision(),
            machine(),
            self.parent.display(),
            filesystem(&self.parent),
            self.profile,
            t.heartbeat_ms,
            t.election_min_ms,
            t.election_max_ms,
            t.lease_ms,
            self.secs.as_secs_f64(),
            self.max_ops,
            self.failovers,
            self.fsync_ops,
            self.fsync_secs.as_secs_f64(),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The table

/// One line of the result table.
struct Row {
    measure: String,
    n: usize,
    per_s: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    note: String,
}

impl Row {
    /// A row of `n` timed operations that took `elapsed` in all, with their latencies.
    fn timed(measure: impl Into<String>, lat: &mut [Duration], elapsed: Duration, note: String) -> Row {
        lat.sort_unstable();
        Row {
            measure: measure.into(),
            n: lat.len(),
            per_s: (!lat.is_empty()).then(|| lat.len() as f64 / elapsed.as_secs_f64()),
            p50_ms: percentile_ms(lat, 0.50),
            p99_ms: percentile_ms(lat, 0.99),
            note,
        }
    }
}

fn table(rows: &[Row]) -> String {
    let opt = |v: Option<f64>, prec: usize| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.prec$}"));
    let mut s =
        String::from("| measure | n | per s | p50 ms | p99 ms | notes |\n|---|---:|---:|---:|---:|---|\n");
    for r in rows {
        s += &format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.measure,
            r.n,
            opt(r.per_s, 1),
            opt(r.p50_ms, 2),
            opt(r.p99_ms, 2),
            r.note
        );
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Section: the disk floor

async fn disk_floor(env: &Env) -> Vec<Row> {
    let dir = env.tempdir();
    let path = dir.path().to_owned();
    let (ops, secs) = (env.fsync_ops, env.fsync_secs);
    eprintln!("raft bench: disk floor in {} ({})", path.display(), filesystem(&path));
    let rows = tokio::task::spawn_blocking(move || {
        // Write back what is already dirty (the build that just linked this binary, say), so the
        // first fsyncs do not pay for it.
        let _ = std::process::Command::new("sync").status();
        vec![
            write_sync(&path.join("append.bin"), false, ops, secs),
            write_sync(&path.join("overwrite.bin"), true, ops, secs),
            redb_commits(&path.join("floor.redb"), ops, secs),
        ]
    })
    .await
    .expect("disk floor task");
    drop(dir);
    rows
}

/// 4 KiB written then `sync_data`, `ops` times or for `secs`: appended to a growing file, or
/// over the first block of a file again and again.
fn write_sync(path: &Path, overwrite: bool, ops: usize, secs: Duration) -> Row {
    let mut f =
        OpenOptions::new().create(true).truncate(true).read(true).write(true).open(path).expect("open");
    let block = vec![0xa5_u8; 4096];
    if overwrite {
        f.write_all(&block).and_then(|_| f.sync_all()).expect("first block");
    }
    let (mut lat, elapsed) = timed_loop(ops, secs, || {
        if overwrite {
            f.seek(SeekFrom::Start(0)).expect("seek");
        }
        f.write_all(&block).expect("write");
        f.sync_data().expect("sync_data");
    });
    let (what, note) = if overwrite {
        ("overwrite", "the same block again: data only")
    } else {
        ("append", "the file grows: its size is flushed too")
    };
    Row::timed(format!("disk: 4 KiB {what} + `sync_data`"), &mut lat, elapsed, note.to_owned())
}

/// One redb write transaction per op inserting one value of the size of a registration's log
/// entry, committed with `Durability::Immediate`, as the raft log store appends.
fn redb_commits(path: &Path, ops: usize, secs: Duration) -> Row {
    use redb::{Database, Durability, TableDefinition};
    const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
    let db = Database::builder().set_cache_size(4 * 1024 * 1024).create(path).expect("redb create");
    let value = register_payload("bench-redb-0000000000", 0);
    let mut index = 0_u64;
    let (mut lat, elapsed) = timed_loop(ops, secs, || {
        index += 1;
        let mut txn = db.begin_write().expect("begin_write");
        txn.set_durability(Durability::Immediate).expect("durability");
        txn.open_table(LOG).expect("table").insert(index, value.as_slice()).expect("insert");
        txn.commit().expect("commit");
    });
    let note = format!("one {} B value per transaction, as the raft log store appends", value.len());
    Row::timed("disk: redb insert + commit (`Durability::Immediate`)", &mut lat, elapsed, note)
}

/// Runs `op` up to `ops` times or until `secs` passed; returns each run's duration and the total.
fn timed_loop(ops: usize, secs: Duration, mut op: impl FnMut()) -> (Vec<Duration>, Duration) {
    let start = Instant::now();
    let mut lat = Vec::with_capacity(ops);
    while lat.len() < ops && start.elapsed() < secs {
        let t = Instant::now();
        op();
        lat.push(t.elapsed());
    }
    (lat, start.elapsed())
}

// ---------------------------------------------------------------------------------------------
// Section: registrations per second

async fn registrations(env: &Env) -> Vec<Row> {
    let mut rows = Vec::new();
    for &proposers in &env.proposers {
        let cluster = Cluster::start(env).await;
        let leader = cluster.members[cluster.wait_server().await].c.clone();
        for i in 0..WARMUP_OPS {
            register(&leader, &format!("warmup-{i}")).await.expect("warm-up registration");
        }
        eprintln!("raft bench: {proposers} proposer(s) for {:.1} s", env.secs.as_secs_f64());
        let issued = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let deadline = start + env.secs;
        let tasks: Vec<JoinHandle<(Vec<Duration>, usize)>> = (0..proposers)
            .map(|p| {
                let (leader, issued, max_ops) = (leader.clone(), issued.clone(), env.max_ops);
                tokio::spawn(async move {
                    let (mut lat, mut failed) = (Vec::new(), 0);
                    while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < max_ops {
                        let t = Instant::now();
                        match register(&leader, &format!("p{p}-{}", lat.len() + failed)).await {
                            Ok(()) => lat.push(t.elapsed()),
                            Err(_) => failed += 1,
                        }
                    }
                    (lat, failed)
                })
            })
            .collect();
        let (mut lat, mut failed) = (Vec::new(), 0);
        for t in tasks {
            let (l, f) = t.await.expect("proposer task");
            lat.extend(l);
            failed += f;
        }
        let elapsed = start.elapsed();
        let mut notes = Vec::new();
        if issued.load(Ordering::Relaxed) >= env.max_ops {
            notes.push(format!("stopped by the cap of {} proposals", env.max_ops));
        }
        if failed > 0 {
            notes.push(format!("{failed} proposals failed"));
        }
        let note = notes.join("; ");
        let plural = if proposers == 1 { "" } else { "s" };
        let row = Row::timed(format!("register, {proposers} proposer{plural}"), &mut lat, elapsed, note);
        eprintln!("raft bench:   {} committed, {:.1}/s", row.n, row.per_s.unwrap_or(0.0));
        rows.push(row);
        cluster.stop().await;
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// Section: heartbeats

/// Services registered before the heartbeat runs.
const HEARTBEAT_SERVICES: usize = 1_000;

/// Heartbeats taken by the leader's registrar (renewed in memory; the lease keeper
/// checkpoints them into the log once a second, so the disk sees one entry per second, not
/// one per heartbeat), with 1/16/64 concurrent heartbeaters over 1000 services.
async fn heartbeats(env: &Env) -> Vec<Row> {
    let cluster = Cluster::start(env).await;
    let leader = cluster.members[cluster.wait_server().await].c.clone();
    let applied = Arc::new(tokio::sync::watch::channel(Revision(0)).0);
    let lease = LeaseConfig::for_timing(env.timing);
    let reg = Arc::new(Registrar::new(leader.clone(), Arc::new(SystemClock), lease, applied));
    let stop = CancellationToken::new();
    let keeper = tokio::spawn(run_lease_keeper(reg.clone(), stop.clone()));
    let ids: Arc<Vec<ServiceId>> =
        Arc::new((0..HEARTBEAT_SERVICES).map(|i| ServiceId::new(format!("hb-{i}"))).collect());
    let chunks: Vec<JoinHandle<()>> = (0..16)
        .map(|c| {
            let (reg, ids) = (reg.clone(), ids.clone());
            tokio::spawn(async move {
                for id in ids.iter().skip(c).step_by(16) {
                    let s = NewService::new(id.clone(), "bench-camera", "http", "10.1.0.5", 8080);
                    reg.register(s).await.expect("registration before the heartbeats");
                }
            })
        })
        .collect();
    for c in chunks {
        c.await.expect("registering task");
    }
    let mut rows = Vec::new();
    for &beaters in &env.proposers {
        eprintln!("raft bench: {beaters} heartbeater(s) for {:.1} s", env.secs.as_secs_f64());
        let issued = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let deadline = start + env.secs;
        let tasks: Vec<JoinHandle<(Vec<Duration>, usize)>> = (0..beaters)
            .map(|b| {
                let (reg, ids, issued, max_ops) =
                    (reg.clone(), ids.clone(), issued.clone(), env.max_ops * 10);
                tokio::spawn(async move {
                    let (mut lat, mut failed) = (Vec::new(), 0);
                    let mut i = b;
                    while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < max_ops {
                        let t = Instant::now();
                        match reg.heartbeat(&ids[i % ids.len()], None).await {
                            Ok(_) => lat.push(t.elapsed()),
                            Err(_) => failed += 1,
                        }
                        i += beaters;
                        // Yield so that heartbeaters share the runtime like real clients.
                        tokio::task::yield_now().await;
                    }
                    (lat, failed)
                })
            })
            .collect();
        let (mut lat, mut failed) = (Vec::new(), 0);
        for t in tasks {
            let (l, f) = t.await.expect("heartbeat task");
            lat.extend(l);
            failed += f;
        }
        let elapsed = start.elapsed();
        let note = if failed > 0 { format!("{failed} heartbeats failed") } else { String::new() };
        let plural = if beaters == 1 { "" } else { "s" };
        let row = Row::timed(format!("heartbeat, {beaters} client{plural}"), &mut lat, elapsed, note);
        eprintln!("raft bench:   {} heartbeats, {:.1}/s", row.n, row.per_s.unwrap_or(0.0));
        rows.push(row);
    }
    stop.cancel();
    let _ = keeper.await;
    let renewed = reg.read_local(|r| r.services().filter(|s| s.last_heartbeat_ms > s.created_at_ms).count());
    eprintln!("raft bench:   {renewed} of {HEARTBEAT_SERVICES} services carry a checkpointed heartbeat");
    cluster.stop().await;
    rows
}

// ---------------------------------------------------------------------------------------------
// Section: failover

async fn failover(env: &Env) -> Vec<Row> {
    let (mut elected, mut committed) = (Vec::new(), Vec::new());
    for run in 1..=env.failovers {
        let mut cluster = Cluster::start(env).await;
        let leader = cluster.wait_server().await;
        let nodes: Vec<Arc<Node>> = cluster.members.iter().map(|m| m.c.clone()).collect();
        let commits = Commits::default();
        let stop_writer = CancellationToken::new();
        let writer = tokio::spawn(steady_writer(nodes, commits.clone(), stop_writer.clone()));
        tokio::time::sleep(FAILOVER_WARMUP).await;

        let old = cluster.members.remove(leader);
        let (old_id, old_term) = (old.id, old.c.leadership().borrow().term);
        let before = commits.lock().unwrap().len();
        eprintln!(
            "raft bench: failover {run}/{}: stopping leader n{old_id} ({before} writes so far)",
            env.failovers
        );
        let killed = Instant::now();
        let (_, new_leader, next_commit) = tokio::join!(
            old.stop(),
            wait_new_leader(&cluster.members, old_term, killed),
            wait_commit_after(&commits, killed, old_id),
        );
        let (id, term, elected_at) = new_leader;
        let (e, c) = (elected_at - killed, next_commit - killed);
        eprintln!(
            "raft bench:   n{id} leads in term {term} after {:.0} ms; next commit after {:.0} ms",
            ms(e),
            ms(c)
        );
        elected.push(e);
        committed.push(c);
        stop_writer.cancel();
        writer.await.expect("writer task");
        cluster.stop().await;
    }
    let runs = |v: &[Duration]| v.iter().map(|d| format!("{:.0}", ms(*d))).collect::<Vec<_>>().join(", ");
    let median = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v.get(v.len() / 2).map(|d| ms(*d))
    };
    let row = |measure: &str, v: &[Duration]| Row {
        measure: measure.to_owned(),
        n: v.len(),
        per_s: None,
        p50_ms: median(v),
        p99_ms: None,
        note: format!("runs: {} ms (median in p50)", runs(v)),
    };
    vec![
        row("failover: stop leader → new leader elected", &elected),
        row("failover: stop leader → next committed write", &committed),
    ]
}

/// When each committed write of the failover writer got its answer, and from which member.
type Commits = Arc<Mutex<Vec<(Instant, u64)>>>;

/// One proposer writing registrations in a loop against the member it believes leads.
async fn steady_writer(nodes: Vec<Arc<Node>>, commits: Commits, stop: CancellationToken) {
    let mut target = 0;
    let mut seq = 0_u64;
    while !stop.is_cancelled() {
        let node = &nodes[target];
        seq += 1;
        let payload = register_payload(&format!("w-{seq}"), unix_ms());
        match tokio::time::timeout(PROPOSE_TIMEOUT, node.propose(payload)).await {
            Ok(Ok((_, answer))) if decode_answer(&answer).is_ok() => {
                commits.lock().unwrap().push((Instant::now(), node.id()));
            }
            Ok(Err(ConsensusError::NotLeader { leader_id: Some(id), .. }))
                if nodes.iter().any(|n| n.id() == id) && id != node.id() =>
            {
                target = nodes.iter().position(|n| n.id() == id).unwrap_or(0);
            }
            // No leader known yet, a stopped member, a timeout, or a refused answer: the next one.
            _ => {
                target = (target + 1) % nodes.len();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
}

/// Waits until a member is raft leader in a term after `old_term`; (its id, term, when seen).
async fn wait_new_leader(members: &[Member], old_term: u64, since: Instant) -> (u64, u64, Instant) {
    loop {
        for m in members {
            let l = m.c.leadership().borrow().clone();
            if l.leader_id == Some(m.id) && l.term > old_term {
                return (m.id, l.term, Instant::now());
            }
        }
        assert!(since.elapsed() < WAIT_MAX, "no new leader {WAIT_MAX:?} after the old one stopped");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits for the first write committed after `since` by a member other than `not`.
async fn wait_commit_after(commits: &Commits, since: Instant, not: u64) -> Instant {
    loop {
        let first = commits.lock().unwrap().iter().find(|(t, id)| *t > since && *id != not).map(|(t, _)| *t);
        if let Some(t) = first {
            return t;
        }
        assert!(since.elapsed() < WAIT_MAX, "no write committed {WAIT_MAX:?} after the leader stopped");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster

struct Member {
    id: u64,
    c: Arc<Node>,
    stop: CancellationToken,
    server: JoinHandle<()>,
}

impl Member {
    async fn start(id: u64, dir: PathBuf, timing: RaftTiming) -> (Member, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr").to_string();
        let cfg = RaftConfig {
            id,
            node: RaftNode { api_addr: addr.clone(), name: format!("n{id}") },
            data_dir: dir,
            timing,
            faults: Faults::default(),
            tls: None,
        };
        let machine = RegistryMachine::new(Registry::new(HISTORY_MAX_DEFAULT));
        let c = Arc::new(Consensus::start(cfg, machine).await.expect("raft start"));
        let stop = CancellationToken::new();
        let (svc, s) = (c.grpc_service(), stop.clone());
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    s.cancelled_owned(),
                )
                .await;
        });
        (Member { id, c, stop, server }, addr)
    }

    /// Stops raft and the member's gRPC server, as `tests/raft_cluster.rs` does.
    async fn stop(self) {
        self.c.shutdown().await;
        self.stop.cancel();
        let _ = self.server.await;
    }
}

struct Cluster {
    members: Vec<Member>,
    /// Holds the data dirs; removed on drop, after the members stopped.
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Three voters on 127.0.0.1, initialized by the first.
    async fn start(env: &Env) -> Cluster {
        let dir = env.tempdir();
        let mut members = Vec::new();
        let mut nodes = BTreeMap::new();
        for id in 1..=3 {
            let (m, addr) = Member::start(id, dir.path().join(format!("n{id}")), env.timing).await;
            nodes.insert(id, RaftNode { api_addr: addr, name: format!("n{id}") });
            members.push(m);
        }
        members[0].c.initialize(nodes).await.expect("initialize");
        Cluster { members, dir }
    }

    /// Waits until exactly one member is server; returns its index.
    async fn wait_server(&self) -> usize {
        let end = Instant::now() + WAIT_MAX;
        loop {
            let servers: Vec<usize> = (0..self.members.len())
                .filter(|&i| self.members[i].c.leadership().borrow().role == Role::Server)
                .collect();
            if let [one] = servers[..] {
                return one;
            }
            assert!(Instant::now() < end, "no single server after {WAIT_MAX:?} (servers: {servers:?})");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(self) {
        for m in self.members {
            m.stop().await;
        }
        drop(self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// Proposals

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The encoded `Register` command for a new service `id`.
fn register_payload(id: &str, now_ms: u64) -> Vec<u8> {
    let service = NewService::new(ServiceId::new(id), "bench-camera", "http", "10.1.0.5", 8080);
    encode_command(&Command::Register { service, now_ms })
}

/// Proposes one registration on `node`; Ok only when it committed and the registry accepted it.
async fn register(node: &Node, id: &str) -> Result<(), String> {
    let (_, answer) = node.propose(register_payload(id, unix_ms())).await.map_err(|e| e.to_string())?;
    decode_answer(&answer).map(drop).map_err(|e| e.to_string())
}
