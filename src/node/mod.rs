//! The composition root: builds every part of a node from one [`Config`], spawns each
//! long-lived task on one tracker with one cancellation token, and shuts down in reverse
//! order on SIGINT/SIGTERM (the supervisor wants no new stack → a leader hands leadership
//! over → a server's stack is drained → stop the API → leave the gossip cluster → stop the
//! rest). The `supervisor` submodule wires the stack supervisor to the leadership.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, ApiState};
use crate::cluster::{self, ClusterConfig};
use crate::config::{Config, Profile};
use crate::consensus::network::Faults;
use crate::consensus::raft::{Consensus, RaftConfig, RaftTiming};
use crate::consensus::RaftNode;
use crate::discovery::{self, retry_join};
use crate::event_handlers;
use crate::gossip::net::{self as gossip, GossipConfig};
use crate::gossip::serf::SerfConfig;
use crate::gossip::swim::Timing;
use crate::gossip::wire::{decode_key, Keyring};
use crate::logging::tee::LogTee;
use crate::registry::{Registry, Revision, HISTORY_MAX_DEFAULT};
use crate::replicated::forward::ForwardService;
use crate::replicated::registrar::{run_lease_keeper, LeaseConfig, Registrar, SystemClock};
use crate::replicated::{AppliedTx, RegistryMachine};
use crate::serf_rpc::{self, RpcConfig};

mod protect;
mod supervisor;

// `config` may not import the registry, so its default is a copy; this keeps the two equal.
const _: () = assert!(crate::config::defaults::HISTORY_MAX == HISTORY_MAX_DEFAULT);

/// How long shutdown waits for tasks after the leave.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a leaving leader waits for another voter to take over.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a graceful leave may take before we stop anyway.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the mDNS daemon may take to stop at shutdown.
const MDNS_STOP_WAIT: Duration = Duration::from_secs(2);

/// Runs a node until a signal asks it to stop. `logs` is the log tee `logging::init` returned
/// (what `serf monitor` reads).
pub async fn run(config: Config, logs: LogTee) -> anyhow::Result<()> {
    config.validate()?;
    // An unusable stack file stops the node before it joins anything.
    supervisor::check(&config)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let serf_dir = config.data_dir.join("serf");
    std::fs::create_dir_all(&serf_dir).with_context(|| format!("cannot create {}", serf_dir.display()))?;

    let shutdown = CancellationToken::new();
    let api_shutdown = shutdown.child_token();
    let tracker = TaskTracker::new();
    let keyring_path = config.keyring_file.clone().unwrap_or_else(|| serf_dir.join(LOCAL_KEYRING));
    let keyring = load_keyring(&config, &keyring_path)?;
    // After the load, so a keyring persisted in the data dir counts as a key.
    config.check_gossip_key(keyring.is_some())?;
    for warning in config.exposure_warnings(keyring.is_some()) {
        tracing::warn!("SECURITY: {warning}");
    }
    let advertise = advertise_addr(&config);
    let node_id = load_or_create_node_id(&config.data_dir)?;
    let tls = protect::load_tls(&config)?;
    let tokens = protect::load_tokens(&config)?;
    let reload = protect::reload_on_sighup(
        tls.clone(),
        tokens.clone().zip(config.tokens_file.clone()),
        shutdown.clone(),
    )?;
    tracker.spawn(reload);

    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on --http-addr {}", config.http_addr))?;
    let http_port = listener.local_addr()?.port();
    tracing::info!(addr = %listener.local_addr()?, node.id = %format!("{node_id:x}"), "http: listening");

    let cluster_cfg = ClusterConfig {
        id: node_id,
        name: config.node.clone(),
        api_addr: SocketAddr::new(advertise.ip(), http_port).to_string(),
        role: config.role.to_string(),
        tags: {
            let mut t = config.tags.clone();
            t.entry("http_port".to_string()).or_insert_with(|| http_port.to_string());
            t
        },
        bootstrap_window: bootstrap_window(config.profile),
        grace: Duration::from_millis(config.voter_grace_ms),
        data_dir: config.data_dir.clone(),
    };
    let known_cluster = cluster::load_cluster_id(&config.data_dir);
    let tags = cluster::tags_for(&cluster_cfg, known_cluster.as_ref());

    let name_lost = CancellationToken::new();
    let gossip_cfg = GossipConfig {
        node: config.node.clone(),
        bind: config.bind,
        advertise,
        tags,
        timing: timing_for(config.profile),
        serf: SerfConfig::default(),
        keyring,
        label: String::new(),
        snapshot_path: Some(serf_dir.join("local.snapshot")),
        rejoin_after_leave: config.rejoin_after_leave,
        keyring_path: Some(keyring_path),
        tags_path: Some(serf_dir.join(LOCAL_TAGS)),
        name_lost: Some(name_lost.clone()),
        seed: rand::random(),
    };
    let (gossip, gossip_task) = gossip::start(gossip_cfg, shutdown.clone()).await?;
    let advertise = SocketAddr::new(advertise.ip(), gossip.local_addr().port());

    let raft_cfg = RaftConfig {
        id: node_id,
        node: RaftNode { api_addr: cluster_cfg.api_addr.clone(), name: config.node.clone() },
        data_dir: config.data_dir.clone(),
        timing: raft_timing_for(config.profile),
        faults: Faults::default(),
        tls: tls.clone(),
    };
    let applied: AppliedTx = Arc::new(tokio::sync::watch::channel(Revision(0)).0);
    let machine = {
        let (applied, history_max) = (applied.clone(), config.history_max);
        move || RegistryMachine::announcing(Registry::new(history_max), applied.clone())
    };
    let consensus = Arc::new(Consensus::start(raft_cfg, machine()).await?);
    let registrar = Arc::new(Registrar::new(
        consensus.clone(),
        Arc::new(SystemClock),
        LeaseConfig::for_timing(raft_timing_for(config.profile)),
        applied,
    ));
    tracker.spawn(run_lease_keeper(registrar.clone(), api_shutdown.clone()));
    let check_tls = crate::health::client_tls(config.tls.as_ref().map(|t| t.ca.as_path()))
        .context("https health checks")?;
    tracker.spawn(crate::health::run(
        registrar.clone(),
        crate::health::Prober::new(check_tls),
        crate::health::HealthConfig::default(),
        api_shutdown.clone(),
    ));
    let supervisor = supervisor::start(&config, &cluster_cfg.api_addr, &consensus, &tracker, &shutdown).await;
    let (members_tx, members_rx) = tokio::sync::watch::channel(gossip.members().borrow().clone());
    let (raft_cluster_tx, raft_cluster_rx) = tokio::sync::watch::channel(Default::default());
    // The controller stops with the API, before the leave: nothing may re-announce us after it.
    tracker.spawn(cluster::run(
        cluster_cfg,
        gossip.clone(),
        consensus.clone(),
        machine,
        cluster::Outputs { members: members_tx, raft_cluster: raft_cluster_tx },
        api_shutdown.clone(),
    ));

    let members_view = members_rx.clone();
    tracker.spawn(crate::replicated::carry::run(
        registrar.clone(),
        raft_cluster_rx.clone(),
        api_shutdown.clone(),
    ));
    let api_limits = Arc::new(api::limits::ApiLimits::new(
        config.api_streams_max,
        config.api_streams_per_client_max,
        api::ratelimit::WriteRate { per_s: config.write_rate_per_s, burst: config.write_burst },
    ));
    let state = ApiState {
        node_name: config.node.clone(),
        cluster: config.cluster.clone(),
        version: env!("CARGO_PKG_VERSION"),
        started: Instant::now(),
        members: members_rx,
        leadership: consensus.leadership(),
        raft_cluster: raft_cluster_rx,
        registrar: Some(registrar.clone()),
        supervisor: Some(supervisor.status.clone()),
        limits: api_limits.clone(),
    };
    // Raft RPCs and the public gRPC API ride the API listener as HTTP/2 gRPC under their
    // service paths.
    let public = api::grpc::Services::new(
        config.node.clone(),
        registrar.clone(),
        consensus.clone(),
        members_view.clone(),
        config.allow_crash_drill,
        api_limits.streams.clone(),
        api_shutdown.clone(),
    )
    .await?;
    let grpc = axum::Router::new()
        .route_service("/muster.raft.v1.Raft/{*rpc}", consensus.grpc_service())
        .route_service("/muster.internal.v1.Forward/{*rpc}", ForwardService::server(&registrar))
        .route_service("/muster.registry.v1.Registry/{*rpc}", public.registry)
        .route_service("/muster.cluster.v1.Cluster/{*rpc}", public.cluster)
        .route_service("/grpc.reflection.v1.ServerReflection/{*rpc}", public.reflection_v1)
        .route_service("/grpc.reflection.v1alpha.ServerReflection/{*rpc}", public.reflection_v1alpha)
        .route_service("/grpc.health.v1.Health/{*rpc}", public.health);
    let serve = api::ServeOptions {
        listen: api::listen::ListenOptions { tls: tls.clone(), ..Default::default() },
        access: Arc::new(api::access::Access {
            tokens: tokens.clone(),
            node_cluster: tls.as_ref().map(|t| t.cluster().to_string()),
            writes: Some(api_limits.writes.clone()),
        }),
    };
    let api_task = tracker.spawn(api::serve_with(listener, state, grpc, serve, api_shutdown.clone()));

    let rpc_listener = tokio::net::TcpListener::bind(config.rpc_addr)
        .await
        .with_context(|| format!("cannot listen on --rpc-addr {}", config.rpc_addr))?;
    let left_by_rpc = CancellationToken::new();
    let handlers = config
        .event_handlers
        .iter()
        .map(|s| {
            event_handlers::HandlerSpec::parse(s).map_err(|e| anyhow::anyhow!("--event-handler {s:?}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rpc_cfg = RpcConfig {
        addr: config.rpc_addr,
        auth_key: config.rpc_auth.clone(),
        tokens: tokens.clone(),
        node_name: config.node.clone(),
        on_leave: left_by_rpc.clone(),
        managed_tags: managed_tags(),
        event_handlers: handlers.iter().flat_map(|h| h.labels()).collect(),
        logs,
    };
    tracker.spawn(serf_rpc::serve(rpc_listener, rpc_cfg, gossip.clone(), api_shutdown.clone()));
    tracker.spawn(event_handlers::run(handlers, gossip.clone(), config.node.clone(), api_shutdown.clone()));

    let port = crate::config::defaults::GOSSIP_PORT;
    if !config.join.is_empty() {
        match discovery::retry::join_all(&gossip, &config.join, port).await {
            Ok(n) => tracing::info!(joined = n, addrs = ?config.join, "gossip: joined the cluster"),
            Err(e) => {
                shutdown.cancel();
                bail!("cannot join any of --join/SERF_JOIN {:?}: {e}", config.join);
            }
        }
    }
    if !config.retry_join.is_empty() {
        let (g, addrs, s) = (gossip.clone(), config.retry_join.clone(), shutdown.clone());
        let (first, max, attempts) =
            (config.retry_interval_ms, config.retry_interval_max_ms, config.retry_max);
        let fatal = shutdown.clone();
        tracker.spawn(async move {
            if let Err(e) = retry_join(g, addrs, first, max, attempts, port, s).await {
                if !matches!(e, gossip::GossipError::Closed) {
                    tracing::error!(error = %e, "retry-join: out of attempts; stopping the node");
                    fatal.cancel();
                }
            }
        });
    }
    let sources = discovery::choose(config.discovery, discovery::on_path("tailscale"));
    tracing::info!(backend = %config.discovery, mdns = sources.mdns, tailscale = sources.tailscale,
        static_joins = config.join.len() + config.retry_join.len(), "discovery: sources chosen");
    // One mDNS daemon for browsing and announcing: a reply sent by unicast to port 5353 (the
    // Go agent answers that way) reaches only one of the sockets bound there.
    let mdns = if sources.mdns || config.mdns_announce {
        match mdns_sd::ServiceDaemon::new() {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!(error = %e, "mDNS unavailable: no mDNS discovery or announcements");
                None
            }
        }
    } else {
        None
    };
    if let (true, Some(daemon)) = (sources.mdns, &mdns) {
        tracker.spawn(discovery::run_mdns(
            daemon.clone(),
            gossip.clone(),
            config.cluster.clone(),
            config.node.clone(),
            advertise,
            shutdown.clone(),
        ));
    }
    if sources.tailscale {
        tracker.spawn(discovery::run_tailscale(gossip.clone(), advertise.port(), shutdown.clone()));
    }
    tracing::info!(
        mdns_announce = config.mdns_announce,
        "announce: mDNS announcements of services and the API"
    );
    if let (true, Some(daemon)) = (config.mdns_announce, &mdns) {
        let announce_cfg = crate::announce::AnnounceConfig {
            node: config.node.clone(),
            cluster: config.cluster.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            api_addr: SocketAddr::new(config.http_addr.ip(), http_port),
            tls: tls.is_some(),
            services_max: crate::announce::ANNOUNCED_SERVICES_MAX,
        };
        tracker.spawn(crate::announce::run(
            daemon.clone(),
            announce_cfg,
            registrar.clone(),
            consensus.leadership(),
            api_shutdown.clone(),
        ));
    }
    tracker.close();

    let reason = tokio::select! {
        s = wait_for_signal() => s,
        _ = left_by_rpc.cancelled() => "left the cluster (serf leave)".to_string(),
        _ = name_lost.cancelled() => "another member holds this node's name (name conflict)".to_string(),
        _ = shutdown.cancelled() => "fatal error".to_string(),
    };
    tracing::info!(reason = %reason, "node: shutting down");
    let draining = supervisor.stop_front();
    if reason != "fatal error" {
        hand_over_leadership(&consensus, &members_view).await;
    }
    if draining {
        supervisor.drained().await;
    }
    api_shutdown.cancel();
    // A node that lost a name conflict says nothing more: a leave under the contested name
    // would be taken as the other holder's.
    if !name_lost.is_cancelled() {
        match tokio::time::timeout(LEAVE_TIMEOUT, gossip.leave()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "node: leave failed"),
            Err(_) => tracing::warn!("node: leave timed out"),
        }
    }
    shutdown.cancel();
    consensus.shutdown().await;
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        tracing::warn!("node: tasks did not stop within the grace period");
    }
    if let Some(daemon) = mdns {
        if let Ok(rx) = daemon.shutdown() {
            let _ = tokio::time::timeout(MDNS_STOP_WAIT, rx.recv_async()).await;
        }
    }
    let _ = gossip_task.await;
    if let Ok(Err(e)) = api_task.await {
        tracing::warn!(error = %e, "http: server ended with an error");
    }
    tracing::info!("node: stopped");
    if reason == "fatal error" {
        bail!("node stopped after a fatal error (see the log above)");
    }
    if name_lost.is_cancelled() {
        bail!(
            "another member of the cluster holds the name {:?}; start this node with a unique --node",
            config.node
        );
    }
    Ok(())
}

/// A leader that leaves gracefully first hands leadership to another voter that gossip shows
/// alive, so the cluster does not wait out an election timeout.
async fn hand_over_leadership<M: crate::consensus::Machine>(
    consensus: &Consensus<M>,
    members: &tokio::sync::watch::Receiver<Arc<Vec<crate::membership::MemberInfo>>>,
) {
    let lead = consensus.leadership().borrow().clone();
    if lead.leader_id != Some(consensus.id()) {
        return;
    }
    let alive = cluster::plan::eligible(&members.borrow());
    let Some(to) = lead.voters.iter().copied().find(|v| *v != consensus.id() && alive.contains_key(v)) else {
        return;
    };
    let name = alive.get(&to).map(|e| e.node.name.clone()).unwrap_or_default();
    match consensus.transfer_leadership(to, HAND_OVER_TIMEOUT).await {
        Ok(()) => tracing::info!(to = %name, "raft: leadership handed over before leaving"),
        Err(e) => tracing::warn!(to = %name, error = %e,
            "raft: leadership hand-over failed; the others elect a leader after the election timeout"),
    }
}

fn raft_timing_for(p: Profile) -> RaftTiming {
    match p {
        Profile::Lan => RaftTiming::lan(),
        Profile::Wan => RaftTiming::wan(),
        Profile::Local => RaftTiming::local(),
    }
}

/// How long a node without raft state watches gossip before it may bootstrap.
fn bootstrap_window(p: Profile) -> Duration {
    match p {
        Profile::Lan => Duration::from_secs(2),
        Profile::Wan => Duration::from_secs(5),
        Profile::Local => Duration::from_secs(1),
    }
}

/// This node's raft id: random, persisted in the data dir, never reused (a wiped data dir is
/// a new node).
fn load_or_create_node_id(dir: &Path) -> anyhow::Result<u64> {
    let path = dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(s) => u64::from_str_radix(s.trim(), 16)
            .with_context(|| format!("{} is not a hex node id", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id: u64 = rand::random::<u64>() | 1;
            std::fs::write(&path, format!("{id:x}\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn timing_for(p: Profile) -> Timing {
    match p {
        Profile::Lan => Timing::lan(),
        Profile::Wan => Timing::wan(),
        Profile::Local => Timing::local(),
    }
}

async fn wait_for_signal() -> String {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        let _ = tokio::signal::ctrl_c().await;
        return "interrupt".into();
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM".into(),
        _ = int.recv() => "SIGINT".into(),
    }
}

/// The address we tell others: `--advertise`, else the bind address, else this host's first
/// private IPv4 address, else loopback.
fn advertise_addr(config: &Config) -> SocketAddr {
    if let Some(a) = config.advertise {
        return a;
    }
    if !config.bind.ip().is_unspecified() {
        return config.bind;
    }
    let ip = if_addrs::get_if_addrs()
        .ok()
        .and_then(|ifs| {
            ifs.into_iter()
                .filter(|i| !i.is_loopback())
                .map(|i| i.ip())
                .find(|ip| matches!(ip, IpAddr::V4(v4) if v4.is_private()))
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    SocketAddr::new(ip, config.bind.port())
}

/// Tags the node sets itself; Serf RPC `tags` may not change them.
fn managed_tags() -> Vec<String> {
    use crate::cluster::plan::{CLUSTER_BORN_TAG, CLUSTER_ID_TAG, RAFT_ADDR_TAG, ROLE_TAG};
    [
        crate::membership::RAFT_ID_TAG,
        RAFT_ADDR_TAG,
        CLUSTER_ID_TAG,
        CLUSTER_BORN_TAG,
        ROLE_TAG,
        crate::api::HTTP_PORT_TAG,
    ]
    .iter()
    .map(|t| t.to_string())
    .collect()
}

/// The keyring file in the data dir when `--keyring-file` is not given (Serf's name for it).
const LOCAL_KEYRING: &str = "local.keyring";
/// Tags set or deleted over Serf RPC, kept across restarts.
const LOCAL_TAGS: &str = "local.tags";

/// The keyring: the file at `path` (`--keyring-file`, or the data dir's, which key rotations
/// keep up to date) when it exists, else a new one from `--encrypt`, written to `path` so a
/// rotation survives a restart. An existing file wins over `--encrypt`, as in Consul: a key
/// rotated away must not come back as primary from an old command line; a `--encrypt` key
/// missing from the file is reported.
fn load_keyring(config: &Config, path: &Path) -> anyhow::Result<Option<Keyring>> {
    let key = match &config.encrypt_key {
        Some(k) => Some(decode_key(k).context("invalid --encrypt key")?),
        None => None,
    };
    if path.exists() {
        let ring = read_keyring_file(path)?;
        if let Some(k) = key {
            if !ring.keys().contains(&k) {
                tracing::warn!(path = %path.display(),
                    "gossip: the --encrypt key is not in the keyring file, which wins (a rotation may have removed it); \
                     delete the file to start over from --encrypt");
            }
        }
        tracing::info!(path = %path.display(), keys = ring.keys().len(), "gossip: keyring loaded");
        return Ok(Some(ring));
    }
    match key {
        Some(k) => {
            let ring = Keyring::new(k, Vec::new())?;
            write_keyring_file(path, &ring)?;
            Ok(Some(ring))
        }
        None if config.keyring_file.is_some() => bail!(
            "--keyring-file {} does not exist and no --encrypt key was given to create it",
            path.display()
        ),
        None => Ok(None),
    }
}

fn read_keyring_file(path: &Path) -> anyhow::Result<Keyring> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read keyring file {}", path.display()))?;
    let list: Vec<String> = serde_json::from_str(&text)
        .with_context(|| format!("keyring file {} must be a JSON list of base64 keys", path.display()))?;
    Keyring::from_base64_list(&list).with_context(|| format!("keyring file {}", path.display()))
}

fn write_keyring_file(path: &Path, ring: &Keyring) -> anyhow::Result<()> {
    crate::gossip::net::write_keyring(path, ring)
        .with_context(|| format!("cannot write keyring file {}", path.display()))
}
