//! A muster cluster as Docker containers on a private bridge network of its own, driven
//! through the `docker` CLI (every call with a timeout). Owns the containers, the network,
//! the data volumes, the DOCKER-USER accept rule and the host files (gossip key, stack file)
//! of one run; [`Cluster`] removes all of them on drop. Finds containers by the run's label,
//! never by name alone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use muster::api::grpc::pb::cluster::{cluster_client::ClusterClient, StatusRequest, StatusResponse};
use tonic::transport::{Channel, Endpoint};

use crate::cmd;

/// The image `scripts/mkimage.sh` builds from our own binary; never pulled.
pub const IMAGE: &str = "muster:dev";
/// The label every object of a run carries, valued with the run id.
pub const RUN_LABEL: &str = "muster.cluster-test.run";
/// gRPC and raft port of every node.
pub const API_PORT: u16 = 9999;
/// Gossip port of every node.
pub const GOSSIP_PORT: u16 = 7946;

/// Where each node finds the stack file when the run has stacks (bind-mounted, read-only).
const STACK_FILE_IN_NODE: &str = "/etc/muster/stack.yml";
/// The run's environment file for `docker run --env-file`: the run's gossip key as
/// `MUSTER_ENCRYPT`, so the key is in no command line and no error message.
const GOSSIP_ENV_FILE: &str = "gossip.env";
/// The Docker socket, mounted into every node of a run with stacks.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// The stack file of runs with stacks: one idle server container and one idle proxy container
/// pointed at the server, from the same image as the nodes (never pulled).
pub const STACK_FILE: &str = r#"services:
  api:
    image: muster:dev
    command: ["idle"]
    init: true
    profiles: [server]
  proxy:
    image: muster:dev
    command: ["idle"]
    init: true
    profiles: [proxy]
    environment:
      SERVER_URL: "http://${MUSTER_SERVER_HOST}:8080"
"#;

/// A docker call that changes state (run, kill, start): generous for a loaded 2-core machine.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(60);
/// A docker call that only reads.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(15);
/// One Cluster/Status call.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// Subnets tried before giving up (another run or network may hold one).
const SUBNET_ATTEMPTS: u32 = 8;
/// Pause between readiness polls.
const READY_POLL: Duration = Duration::from_millis(500);

/// How a run's cluster is built.
#[derive(Debug, Clone)]
pub struct Options {
    /// Nodes started at once (n1 first, the others retry-joining n1).
    pub nodes: usize,
    /// Further nodes created but not started: [`Cluster::start_spare`] adds them later.
    pub spares: usize,
    /// Every node runs the supervisor with [`STACK_FILE`] and the host's Docker socket, with a
    /// stop timeout of 1 s; node names are then unique per run (`n1-<run id>`) because the
    /// stack containers are named and labelled after them on the one shared engine.
    pub stacks: bool,
}

/// One node: its container and address.
#[derive(Debug, Clone)]
pub struct Node {
    /// Gossip name: `n1`..`nN`, or `n1-<run id>`.. in runs with stacks.
    pub name: String,
    /// Container name (unique per run).
    pub container: String,
    /// Data volume name.
    pub volume: String,
    /// Fixed address on the run's network.
    pub ip: String,
}

impl Node {
    /// `http://IP:9999`, what clients connect to.
    pub fn api_url(&self) -> String {
        format!("http://{}:{API_PORT}", self.ip)
    }
}

/// The cluster of one run.
#[derive(Debug)]
pub struct Cluster {
    /// Unique id of the run (in names and labels).
    pub run_id: String,
    /// Docker network name.
    pub network: String,
    /// Linux bridge device of the network (for the DOCKER-USER rule).
    pub bridge: String,
    /// The nodes, index 0 is `n1` (spares included).
    pub nodes: Vec<Node>,
    /// Whether the nodes run stacks.
    pub stacks: bool,
    /// The nodes that are meant to be in the cluster now: started and not removed (a killed or
    /// paused node stays a member; it is expected back).
    members: Mutex<BTreeSet<usize>>,
    /// Nodes that left for good ([`Cluster::remove`]).
    removed: Mutex<BTreeSet<usize>>,
    /// The run's files on the host: the gossip key's env file, and the stack file when the run
    /// has stacks.
    run_dir: Option<PathBuf>,
    docker_user_rule: bool,
}

/// What every node said when the cluster was found settled.
#[derive(Debug, Clone)]
pub struct Settled {
    /// Index of the leader in [`Cluster::nodes`].
    pub leader: usize,
    /// The raft term the leader reported.
    pub term: u64,
}

fn docker(args: &[&str]) -> Result<String> {
    cmd::run("docker", args, DOCKER_TIMEOUT)
}

/// Writes a new gossip key as `MUSTER_ENCRYPT=<key>` to `path`, readable by this user only.
/// The nodes run the `local` profile, which would gossip in clear text, but encrypt as a
/// production cluster does, with a key of this run.
fn write_gossip_env(path: &Path) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "MUSTER_ENCRYPT={}", muster::gossip::wire::generate_key())
        .with_context(|| format!("writing {}", path.display()))
}

impl Cluster {
    /// Creates the network, volumes and `n` nodes (n1 first, the others retry-joining n1) and
    /// returns as soon as the containers run; call [`Cluster::wait_settled`] next. On any
    /// error, what was already created is removed (the half-built value is dropped).
    pub fn start(n: usize, run_id: &str) -> Result<Cluster> {
        Cluster::start_with(&Options { nodes: n, spares: 0, stacks: false }, run_id)
    }

    /// [`Cluster::start`] with spare nodes and stacks as `opts` says.
    pub fn start_with(opts: &Options, run_id: &str) -> Result<Cluster> {
        let (n, total) = (opts.nodes, opts.nodes + opts.spares);
        if n == 0 || total > 200 {
            bail!("a cluster has 1..=200 nodes, not {n} (+{} spares)", opts.spares);
        }
        let label = format!("{RUN_LABEL}={run_id}");
        let network = format!("mct-{run_id}");
        // Linux limits device names to 15 characters.
        let bridge: String = format!("mct{run_id}").chars().take(15).collect();
        let mut cluster = Cluster {
            run_id: run_id.to_string(),
            network: network.clone(),
            bridge: bridge.clone(),
            nodes: Vec::new(),
            stacks: opts.stacks,
            members: Mutex::new((0..n).collect()),
            removed: Mutex::new(BTreeSet::new()),
            run_dir: None,
            docker_user_rule: false,
        };
        let third = cluster.create_network(&label)?;
        cluster.allow_forwarding()?;
        let dir = std::env::temp_dir().join(format!("mct-{run_id}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        cluster.run_dir = Some(dir.clone());
        write_gossip_env(&dir.join(GOSSIP_ENV_FILE))?;
        if opts.stacks {
            std::fs::write(dir.join("stack.yml"), STACK_FILE)?;
        }
        for i in 0..total {
            let name = if opts.stacks { format!("n{}-{run_id}", i + 1) } else { format!("n{}", i + 1) };
            cluster.nodes.push(Node {
                container: format!("mct-{run_id}-{name}"),
                volume: format!("mct-{run_id}-{name}"),
                ip: format!("172.31.{third}.{}", 10 + i),
                name,
            });
        }
        let seed_addr = format!("{}:{GOSSIP_PORT}", cluster.nodes[0].ip);
        for i in 0..total {
            cluster.run_node(i, &label, (i > 0).then_some(seed_addr.as_str()), i < n)?;
        }
        Ok(cluster)
    }

    /// The nodes meant to be in the cluster now, in index order.
    pub fn members(&self) -> Vec<usize> {
        self.members.lock().map(|m| m.iter().copied().collect()).unwrap_or_default()
    }

    /// The voters a settled cluster of the current members has (muster's autopilot: 1, 3 or 5).
    pub fn voters_wanted(&self) -> usize {
        match self.members().len() {
            0..=2 => 1,
            3 | 4 => 3,
            _ => 5,
        }
    }

    /// Starts spare node `i` (created at start, never run yet, or removed before): it joins n1.
    pub fn start_spare(&self, i: usize) -> Result<()> {
        docker(&["start", self.container(i)?])?;
        if let Ok(mut m) = self.members.lock() {
            m.insert(i);
        }
        if let Ok(mut r) = self.removed.lock() {
            r.remove(&i);
        }
        Ok(())
    }

    /// Stops node `i` gracefully (SIGTERM: it hands leadership over and leaves) and takes it out
    /// of the members; the autopilot drops it from the voters after its grace period.
    pub fn remove(&self, i: usize) -> Result<()> {
        docker(&["stop", "-t", "20", self.container(i)?])?;
        if let Ok(mut m) = self.members.lock() {
            m.remove(&i);
        }
        if let Ok(mut r) = self.removed.lock() {
            r.insert(i);
        }
        Ok(())
    }

    /// Whether node `i` left for good.
    pub fn removed(&self, i: usize) -> bool {
        self.removed.lock().map(|r| r.contains(&i)).unwrap_or(false)
    }

    /// A /24 in 172.31.X.0 not taken yet, tried from a run-derived X on.
    fn create_network(&self, label: &str) -> Result<u32> {
        let base: u32 = self.run_id.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        let mut last_err = anyhow!("no subnet tried");
        for attempt in 0..SUBNET_ATTEMPTS {
            let third = (base + attempt * 37) % 250 + 1;
            let subnet = format!("172.31.{third}.0/24");
            let gateway = format!("172.31.{third}.1");
            let bridge_opt = format!("com.docker.network.bridge.name={}", self.bridge);
            let res = docker(&[
                "network",
                "create",
                "--driver",
                "bridge",
                "--subnet",
                &subnet,
                "--gateway",
                &gateway,
                "--label",
                label,
                "-o",
                &bridge_opt,
                &self.network,
            ]);
            match res {
                Ok(_) => return Ok(third),
                Err(e) => last_err = e,
            }
        }
        Err(last_err.context(format!("no free 172.31.X.0/24 after {SUBNET_ATTEMPTS} attempts")))
    }

    /// Accepts forwarding within our bridge in DOCKER-USER, in case the host's FORWARD policy
    /// would drop it (see DESIGN.md, "Facts about these machines"); removed on drop.
    fn allow_forwarding(&mut self) -> Result<()> {
        let rule = ["DOCKER-USER", "-i", &self.bridge, "-o", &self.bridge, "-j", "ACCEPT"];
        let mut insert = vec!["-w", "-I"];
        insert.extend_from_slice(&rule);
        cmd::run("iptables", &insert, INSPECT_TIMEOUT).context("adding our DOCKER-USER rule")?;
        self.docker_user_rule = true;
        Ok(())
    }

    /// Creates node `i`'s volume and container, and starts it when `start`.
    fn run_node(&self, i: usize, label: &str, join: Option<&str>, start: bool) -> Result<()> {
        let node = &self.nodes[i];
        docker(&["volume", "create", "--label", label, &node.volume])?;
        let bind = format!("{}:{GOSSIP_PORT}", node.ip);
        let http = format!("{}:{API_PORT}", node.ip);
        let mount = format!("{}:/data", node.volume);
        let node_label = format!("muster.cluster-test.node={}", node.name);
        let socket_mount = format!("{DOCKER_SOCKET}:{DOCKER_SOCKET}");
        let run_dir = self.run_dir.as_ref().ok_or_else(|| anyhow!("run {} has no files", self.run_id))?;
        let env_file = run_dir.join(GOSSIP_ENV_FILE).display().to_string();
        let stack_mount =
            self.stacks.then(|| format!("{}:{STACK_FILE_IN_NODE}:ro", run_dir.join("stack.yml").display()));
        let mut args = vec![if start { "run" } else { "create" }];
        if start {
            args.push("-d");
        }
        args.extend_from_slice(&[
            "--name",
            &node.container,
            "--hostname",
            &node.name,
            "--network",
            &self.network,
            "--ip",
            &node.ip,
            "--label",
            label,
            "--label",
            &node_label,
            "--cap-add",
            "NET_ADMIN",
            "--env-file",
            &env_file,
            "-v",
            &mount,
        ]);
        if let Some(stack_mount) = &stack_mount {
            args.extend_from_slice(&["-v", &socket_mount, "-v", stack_mount]);
        }
        args.extend_from_slice(&[
            IMAGE,
            "agent",
            "--node",
            &node.name,
            "--bind",
            &bind,
            "--advertise",
            &bind,
            "--http-addr",
            &http,
            "--discovery",
            "serf",
            "--profile",
            "local",
            "--data-dir",
            "/data",
            "--log-format",
            "json",
        ]);
        if stack_mount.is_some() {
            args.extend_from_slice(&["--stack-file", STACK_FILE_IN_NODE, "--stack-stop-timeout", "1s"]);
        }
        if let Some(join) = join {
            args.extend_from_slice(&[
                "--retry-join",
                join,
                "--retry-interval",
                "500ms",
                "--retry-interval-max",
                "2s",
            ]);
        }
        docker(&args).with_context(|| format!("starting {}", node.name))?;
        Ok(())
    }

    /// A gRPC channel to node `i` (connects lazily; each call carries its own deadline).
    pub fn channel(&self, i: usize) -> Result<Channel> {
        let node = self.nodes.get(i).ok_or_else(|| anyhow!("no node {i}"))?;
        Ok(Endpoint::from_shared(node.api_url())?.connect_timeout(Duration::from_secs(1)).connect_lazy())
    }

    /// Node `i`'s Cluster/Status, within [`STATUS_TIMEOUT`].
    pub async fn status(&self, i: usize) -> Result<StatusResponse> {
        let mut client = ClusterClient::new(self.channel(i)?);
        let call = client.status(StatusRequest {});
        let resp = tokio::time::timeout(STATUS_TIMEOUT, call)
            .await
            .map_err(|_| anyhow!("{}: Status took over {STATUS_TIMEOUT:?}", self.nodes[i].name))??;
        Ok(resp.into_inner())
    }

    /// One look at every node in `among`: Ok when each answers Status naming the same leader
    /// (one of `among`) and `voters` voters; otherwise an error saying who disagreed.
    pub async fn settled_once(&self, among: &[usize], voters: usize) -> Result<Settled> {
        let mut leader_name: Option<String> = None;
        let mut term = 0;
        for &i in among {
            let st = self.status(i).await?;
            let name = st.leader.as_ref().map(|l| l.name.clone()).unwrap_or_default();
            if name.is_empty() {
                bail!("{} knows no leader", self.nodes[i].name);
            }
            if st.voters.len() != voters {
                bail!("{} sees {} voters, want {voters}", self.nodes[i].name, st.voters.len());
            }
            match &leader_name {
                None => {
                    leader_name = Some(name);
                    term = st.term;
                }
                Some(l) if *l != name => bail!("{} follows {name}, others {l}", self.nodes[i].name),
                Some(_) => {}
            }
        }
        let name = leader_name.ok_or_else(|| anyhow!("no nodes asked"))?;
        let leader = self.index_of(&name).ok_or_else(|| anyhow!("leader {name} is not one of ours"))?;
        if !among.contains(&leader) {
            bail!("leader {name} is not among the nodes asked");
        }
        Ok(Settled { leader, term })
    }

    /// Waits until [`Cluster::settled_once`] holds for every member (with the voters the
    /// autopilot keeps for that many), or `within` passes (then
    /// the error carries the last disagreement).
    pub async fn wait_settled(&self, within: Duration) -> Result<Settled> {
        self.wait_settled_among(&self.members(), self.voters_wanted(), within).await
    }

    /// [`Cluster::wait_settled`] over a subset (e.g. while one node is down).
    pub async fn wait_settled_among(
        &self,
        among: &[usize],
        voters: usize,
        within: Duration,
    ) -> Result<Settled> {
        let deadline = Instant::now() + within;
        let max_polls = within.as_millis() / READY_POLL.as_millis() + 2;
        let mut last = anyhow!("not asked yet");
        for _ in 0..max_polls {
            match self.settled_once(among, voters).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(READY_POLL).await;
        }
        Err(last.context(format!("cluster not settled within {within:?}")))
    }

    /// The index of the node with gossip name `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    fn container(&self, i: usize) -> Result<&str> {
        self.nodes.get(i).map(|n| n.container.as_str()).ok_or_else(|| anyhow!("no node {i}"))
    }

    /// The ids of node `i`'s stack containers that are running (none in runs without stacks).
    fn stack_containers(&self, i: usize) -> Result<Vec<String>> {
        if !self.stacks {
            return Ok(Vec::new());
        }
        let filter = format!("label=muster.node={}", self.nodes[i].name);
        let out = cmd::run("docker", &["ps", "-q", "--filter", &filter], INSPECT_TIMEOUT)?;
        Ok(out.split_whitespace().map(String::from).collect())
    }

    /// SIGKILL node `i` (the container stops; its data volume stays). In a run with stacks
    /// this is the whole host dying: its stack containers are killed in the same call.
    pub fn kill(&self, i: usize) -> Result<()> {
        let stack = self.stack_containers(i)?;
        let mut args = vec!["kill", "-s", "KILL", self.container(i)?];
        args.extend(stack.iter().map(String::as_str));
        docker(&args).map(|_| ())
    }

    /// SIGSTOP to node `i`'s muster process only (a hung process; its watchdog and its stack
    /// containers keep running).
    pub fn freeze(&self, i: usize) -> Result<()> {
        let pid = self.pid(i)?.to_string();
        cmd::run("kill", &["-STOP", &pid], INSPECT_TIMEOUT).map(|_| ())
    }

    /// SIGCONT to node `i`'s muster process.
    pub fn thaw(&self, i: usize) -> Result<()> {
        let pid = self.pid(i)?.to_string();
        cmd::run("kill", &["-CONT", &pid], INSPECT_TIMEOUT).map(|_| ())
    }

    /// Starts node `i` again after [`Cluster::kill`] (same address, same data).
    pub fn start_node(&self, i: usize) -> Result<()> {
        docker(&["start", self.container(i)?]).map(|_| ())
    }

    /// `docker restart` of node `i`: SIGTERM, then SIGKILL after 10 s, then start.
    pub fn restart(&self, i: usize) -> Result<()> {
        docker(&["restart", "-t", "10", self.container(i)?]).map(|_| ())
    }

    /// Freezes node `i` (cgroup freezer, like SIGSTOP to every process). In a run with stacks
    /// this is the whole host freezing: its stack containers are paused in the same call.
    pub fn pause(&self, i: usize) -> Result<()> {
        let stack = self.stack_containers(i)?;
        let mut args = vec!["pause", self.container(i)?];
        args.extend(stack.iter().map(String::as_str));
        docker(&args).map(|_| ())
    }

    /// Thaws node `i` (and, with stacks, whatever of its stack is paused).
    pub fn unpause(&self, i: usize) -> Result<()> {
        let mut args = vec!["unpause".to_string(), self.container(i)?.to_string()];
        if self.stacks {
            let filter = format!("label=muster.node={}", self.nodes[i].name);
            let out = cmd::run(
                "docker",
                &["ps", "-q", "--filter", &filter, "--filter", "status=paused"],
                INSPECT_TIMEOUT,
            )?;
            args.extend(out.split_whitespace().map(String::from));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args).map(|_| ())
    }

    /// Brings member `i` back to running whatever was done to it: started if it is stopped,
    /// unpaused if paused, continued if its process was stopped. Returns what it did.
    pub fn revive(&self, i: usize) -> Result<Option<&'static str>> {
        let state =
            cmd::run("docker", &["inspect", "-f", "{{.State.Status}}", self.container(i)?], INSPECT_TIMEOUT)?;
        match state.trim() {
            "paused" => self.unpause(i).map(|()| Some("unpaused")),
            "exited" | "created" | "dead" => self.start_node(i).map(|()| Some("started")),
            _ => {
                // A stopped (T) process in a running container: SIGCONT is harmless otherwise.
                let stat =
                    std::fs::read_to_string(format!("/proc/{}/stat", self.pid(i)?)).unwrap_or_default();
                let stopped =
                    stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('T'));
                if stopped {
                    self.thaw(i)?;
                    return Ok(Some("continued"));
                }
                Ok(None)
            }
        }
    }

    /// The host PID of node `i`'s main process (0 or an error when it is not running).
    pub fn pid(&self, i: usize) -> Result<u32> {
        let out =
            cmd::run("docker", &["inspect", "-f", "{{.State.Pid}}", self.container(i)?], INSPECT_TIMEOUT)?;
        let pid: u32 = out.parse().with_context(|| format!("docker inspect printed {out:?} as the pid"))?;
        if pid == 0 {
            bail!("{} is not running", self.nodes[i].name);
        }
        Ok(pid)
    }

    /// The last `lines` log lines of node `i` (for failure reports).
    pub fn logs(&self, i: usize, lines: usize) -> Result<String> {
        let tail = lines.to_string();
        let out = cmd::run_raw("docker", &["logs", "--tail", &tail, self.container(i)?], INSPECT_TIMEOUT)?;
        Ok(format!("{}{}", out.stdout, out.stderr))
    }

    /// Removes everything labelled with this run: containers (with their anonymous volumes),
    /// the named volumes, the network, and our DOCKER-USER rule. Best effort; reports what it
    /// could not remove on stderr.
    pub fn cleanup(&mut self) {
        let filter = format!("label={RUN_LABEL}={}", self.run_id);
        let remove = |what: &str, list: &[&str], rm: &[&str]| match cmd::run("docker", list, INSPECT_TIMEOUT)
        {
            Ok(ids) => {
                let ids: Vec<&str> = ids.split_whitespace().collect();
                if !ids.is_empty() {
                    let mut args = rm.to_vec();
                    args.extend(ids);
                    if let Err(e) = docker(&args) {
                        eprintln!("cleanup: removing {what}: {e:#}");
                    }
                }
            }
            Err(e) => eprintln!("cleanup: listing {what}: {e:#}"),
        };
        remove("containers", &["ps", "-aq", "--filter", &filter], &["rm", "-f", "-v"]);
        if self.stacks {
            // What the nodes' supervisors created on the shared engine.
            for node in &self.nodes {
                let by_node = format!("label=muster.node={}", node.name);
                remove("stack containers", &["ps", "-aq", "--filter", &by_node], &["rm", "-f", "-v"]);
                remove("stack networks", &["network", "ls", "-q", "--filter", &by_node], &["network", "rm"]);
            }
        }
        if let Some(dir) = self.run_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        remove("volumes", &["volume", "ls", "-q", "--filter", &filter], &["volume", "rm", "-f"]);
        remove("networks", &["network", "ls", "-q", "--filter", &filter], &["network", "rm"]);
        if self.docker_user_rule {
            let args = ["-w", "-D", "DOCKER-USER", "-i", &self.bridge, "-o", &self.bridge, "-j", "ACCEPT"];
            match cmd::run("iptables", &args, INSPECT_TIMEOUT) {
                Ok(_) => self.docker_user_rule = false,
                Err(e) => eprintln!("cleanup: removing our DOCKER-USER rule: {e:#}"),
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::env::var_os("MUSTER_CT_KEEP").is_some() {
            eprintln!("MUSTER_CT_KEEP is set: leaving run {} in place (label {RUN_LABEL})", self.run_id);
            return;
        }
        self.cleanup();
    }
}
