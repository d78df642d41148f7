//! The one task that owns the `swim` and `serf` cores: it reads UDP packets, commands from the
//! node and results from TCP tasks, runs the cores' timers, and carries out their effects.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod queries;

pub use queries::{write_keyring, KeyOp, KeyOpResult, QueryStream};

use super::coords::{CoordinateView, Coordinates};
use super::stream::{self, RemoteState};
use super::GossipError;
use crate::gossip::serf::snapshot::Snapshot;
use crate::gossip::serf::{
    QueryKey, QueryParams, QueryReply, Serf, SerfConfig, SerfEffect, SerfError, SerfEvent, LEAVE_KEY,
};
use crate::gossip::swim::{Effect, LocalNode, Swim, Timing};
use crate::gossip::wire::{
    decode_packet, encode_packets, encode_tags, Ack, Keyring, PacketOptions, PushPullHeader, Security,
    SerfCoordinate, StreamMessage,
};
use crate::logging::throttle::Throttle;
use crate::membership::{MemberInfo, MemberStatus};
use crate::metrics::{Direction, Transport, GOSSIP};

/// Commands queued to the driver at most.
const COMMANDS_MAX: usize = 256;
/// Results from TCP tasks queued at most.
const INTERNAL_MAX: usize = 1024;
/// Events buffered for slow subscribers before they lag.
const EVENTS_MAX: usize = 1024;
/// One warning per peer address this often when its packets cannot be decoded.
const DECODE_WARN_EVERY: Duration = Duration::from_secs(10);
/// Inbound TCP streams (push/pull, TCP pings, user messages) served at once. A peer opens one
/// per exchange and closes it; more than this at once is a flood, closed on accept.
pub const STREAMS_IN_MAX: usize = 128;
/// At most one warning per this long about refused or failed inbound streams (each one is
/// logged at debug).
const STREAM_WARN_EVERY: Duration = Duration::from_secs(10);
/// How long a graceful leave waits for each broadcast to go out, and then to propagate.
const BROADCAST_TIMEOUT: Duration = Duration::from_secs(5);
const LEAVE_PROPAGATE_DELAY: Duration = Duration::from_secs(1);
/// How often the member list and the snapshot are refreshed (see [`Driver::run`]).
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// Everything the driver needs.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    pub node: String,
    pub bind: SocketAddr,
    /// The address other members reach us at (not unspecified).
    pub advertise: SocketAddr,
    pub tags: BTreeMap<String, String>,
    pub timing: Timing,
    pub serf: SerfConfig,
    pub keyring: Option<Keyring>,
    /// memberlist label ("" for none); packets with another label are rejected.
    pub label: String,
    /// Where the member snapshot lives; `None` keeps no snapshot.
    pub snapshot_path: Option<PathBuf>,
    /// Rejoin the snapshot's members on start even after a graceful leave (Serf's `-rejoin`).
    pub rejoin_after_leave: bool,
    /// Where the keyring is written when a key query changes it (`None`: not persisted).
    pub keyring_path: Option<PathBuf>,
    /// Where tags set or deleted over Serf RPC are kept across restarts (`None`: not kept).
    pub tags_path: Option<PathBuf>,
    /// Cancelled when another member holds this node's name by majority (Serf's name-conflict
    /// resolution): the node must stop, as a Go agent does.
    pub name_lost: Option<CancellationToken>,
    /// Seed for the cores' randomness.
    pub seed: u64,
}

enum Command {
    Join {
        addrs: Vec<SocketAddr>,
        reply: oneshot::Sender<Result<usize, GossipError>>,
    },
    UserEvent {
        name: String,
        payload: Vec<u8>,
        coalesce: bool,
        reply: oneshot::Sender<Result<(), SerfError>>,
    },
    Leave {
        reply: oneshot::Sender<()>,
    },
    SetTags {
        tags: BTreeMap<String, String>,
        reply: oneshot::Sender<Result<(), GossipError>>,
    },
    UpdateTags {
        set: BTreeMap<String, String>,
        delete: Vec<String>,
        reply: oneshot::Sender<Result<(), GossipError>>,
    },
    Query {
        name: String,
        payload: Vec<u8>,
        params: QueryParams,
        reply: oneshot::Sender<Result<QueryStream, GossipError>>,
    },
    Respond {
        key: QueryKey,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<(), SerfError>>,
    },
    ForceLeave {
        node: String,
        prune: bool,
        reply: oneshot::Sender<Result<(), SerfError>>,
    },
    Stats {
        reply: oneshot::Sender<GossipStats>,
    },
}

/// Serf's own numbers for `serf info` (the `serf` section of the Go agent's `stats`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GossipStats {
    pub member_time: u64,
    pub event_time: u64,
    pub query_time: u64,
    /// Lifeguard's local health (0 is healthy).
    pub health_score: u32,
    /// Serf messages waiting to be gossiped: join/leave intents, user events, queries.
    pub intent_queue: usize,
    pub event_queue: usize,
    pub query_queue: usize,
    pub encrypted: bool,
    pub coordinate_resets: u64,
}

enum Internal {
    PushPullIn {
        remote: RemoteState,
        join: bool,
        reply: oneshot::Sender<StreamMessage>,
    },
    Merge {
        remote: RemoteState,
        join: bool,
    },
    JoinDone {
        ok: usize,
        tried: usize,
        errors: Vec<String>,
        reply: Option<oneshot::Sender<Result<usize, GossipError>>>,
    },
    TcpPing {
        seq: u32,
        ok: bool,
    },
    ConflictVerdict {
        responses: usize,
        matching: usize,
    },
    User {
        from: SocketAddr,
        payload: Vec<u8>,
    },
}

/// How the rest of the node talks to gossip. Cheap to clone.
#[derive(Clone)]
pub struct GossipHandle {
    cmd: mpsc::Sender<Command>,
    members: watch::Receiver<Arc<Vec<MemberInfo>>>,
    events: broadcast::Sender<SerfEvent>,
    local_addr: SocketAddr,
    coords: Arc<CoordinateView>,
}

impl GossipHandle {
    /// Joins through the given addresses; Ok with how many answered.
    pub async fn join(&self, addrs: Vec<SocketAddr>) -> Result<usize, GossipError> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(Command::Join { addrs, reply }).await.map_err(|_| GossipError::Closed)?;
        rx.await.map_err(|_| GossipError::Closed)?
    }

    /// Sends a user event to every member (Serf's `serf event`).
    pub async fn user_event(&self, name: &str, payload: &[u8], coalesce: bool) -> Result<(), GossipError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::UserEvent { name: name.to_string(), payload: payload.to_vec(), coalesce, reply };
        self.cmd.send(cmd).await.map_err(|_| GossipError::Closed)?;
        Ok(rx.await.map_err(|_| GossipError::Closed)??)
    }

    /// Leaves gracefully: returns once the leave has been told and given time to spread.
    pub async fn leave(&self) -> Result<(), GossipError> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(Command::Leave { reply }).await.map_err(|_| GossipError::Closed)?;
        rx.await.map_err(|_| GossipError::Closed)
    }

    /// Replaces this member's tags and gossips them (a higher incarnation of our alive).
    pub async fn set_tags(&self, tags: BTreeMap<String, String>) -> Result<(), GossipError> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(Command::SetTags { tags, reply }).await.map_err(|_| GossipError::Closed)?;
        rx.await.map_err(|_| GossipError::Closed)?
    }

    /// Sets and deletes tags on top of the ones [`GossipHandle::set_tags`] gives (Serf's
    /// `tags -set/-delete`); they are kept across restarts when the node has a data dir.
    pub async fn update_tags(
        &self,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    ) -> Result<(), GossipError> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(Command::UpdateTags { set, delete, reply }).await.map_err(|_| GossipError::Closed)?;
        rx.await.map_err(|_| GossipError::Closed)?
    }

    /// Sends a query; the stream yields acks and responses and ends at the deadline.
    pub async fn query(
        &self,
        name: &str,
        payload: &[u8],
        params: QueryParams,
    ) -> Result<QueryStream, GossipError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Query { name: name.to_string(), payload: payload.to_vec(), params, reply };
        self.cmd.send(cmd).await.map_err(|_| GossipError::Closed)?;
        rx.await.map_err(|_| GossipError::Closed)?
    }

    /// Answers a query this node received (once, before its deadline).
    pub async fn respond(&self, key: QueryKey, payload: &[u8]) -> Result<(), GossipError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::Respond { key, payload: payload.to_vec(), reply })
            .await
            .map_err(|_| GossipError::Closed)?;
        Ok(rx.await.map_err(|_| GossipError::Closed)??)
    }

    /// Serf's clocks, queues and health for `serf info`.
    pub async fn stats(&self) -> Result<GossipStats, GossipError> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(Command::Stats { reply }).await.map_err(|_| GossipError::Closed)?;
        rx.await.map_err(|_| GossipError::Closed)
    }

    /// Serf's force-leave: a failed member becomes left; `prune` erases it everywhere.
    pub async fn force_leave(&self, node: &str, prune: bool) -> Result<(), GossipError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::ForceLeave { node: node.to_string(), prune, reply };
        self.cmd.send(cmd).await.map_err(|_| GossipError::Closed)?;
        Ok(rx.await.map_err(|_| GossipError::Closed)??)
    }

    pub fn members(&self) -> watch::Receiver<Arc<Vec<MemberInfo>>> {
        self.members.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<SerfEvent> {
        self.events.subscribe()
    }

    /// The address the gossip sockets are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The last network coordinate known for `node` (ours too), as Serf's
    /// `GetCachedCoordinate`: learned from direct probes, forgotten when a member is reaped.
    pub fn coordinate(&self, node: &str) -> Option<SerfCoordinate> {
        self.coords.get(node)
    }

    /// How many times our coordinate went invalid and was reset (Serf's `coordinate_resets`).
    pub fn coordinate_resets(&self) -> u64 {
        self.coords.resets()
    }
}

/// With port 0 the system picks a free UDP port; TCP must then take the same port, which
/// another program may hold already: pick again, a bounded number of times.
const EPHEMERAL_BIND_TRIES: usize = 8;

/// Binds UDP and TCP on one port (gossip's convention, as in memberlist).
async fn bind_pair(bind: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), GossipError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let udp = UdpSocket::bind(bind).await.map_err(|source| GossipError::Bind { addr: bind, source })?;
        let local_addr = udp.local_addr().map_err(GossipError::Io)?;
        match TcpListener::bind(local_addr).await {
            Ok(tcp) => return Ok((udp, tcp, local_addr)),
            Err(e)
                if bind.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && tries < EPHEMERAL_BIND_TRIES =>
            {
                tracing::debug!(port = local_addr.port(), "gossip: TCP port taken; picking another");
            }
            Err(source) => return Err(GossipError::Bind { addr: local_addr, source }),
        }
    }
}

/// Binds the sockets, restores the snapshot and spawns the driver.
pub async fn start(
    cfg: GossipConfig,
    shutdown: CancellationToken,
) -> Result<(GossipHandle, JoinHandle<()>), GossipError> {
    let (udp, tcp, local_addr) = bind_pair(cfg.bind).await?;
    let advertise = if cfg.advertise.port() == 0 {
        SocketAddr::new(cfg.advertise.ip(), local_addr.port())
    } else {
        cfg.advertise
    };
    let tag_overlay = queries::load_tag_overlay(cfg.tags_path.as_deref());
    let meta = encode_tags(&queries::apply_overlay(&cfg.tags, &tag_overlay)).map_err(GossipError::Wire)?;
    let now = Instant::now();
    let local = LocalNode { name: cfg.node.clone(), addr: advertise.ip(), port: advertise.port(), meta };
    let mut swim = Swim::new(local, cfg.timing.clone(), cfg.seed, now);
    let coords = Coordinates::new(&cfg.node, cfg.seed)?;
    swim.set_ack_payload(coords.ack_payload());
    let coords_view = coords.view();
    let mut serf = Serf::new(cfg.node.clone(), cfg.serf.clone(), cfg.seed, now);

    let mut rejoin = Vec::new();
    if let Some(path) = &cfg.snapshot_path {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let (snap, skipped) = Snapshot::parse(&text);
                serf.restore_clocks(snap.clock, snap.event_clock, snap.query_clock);
                if !snap.left || cfg.rejoin_after_leave {
                    rejoin = snap.alive.iter().filter(|(n, _)| *n != cfg.node).map(|(_, a)| *a).collect();
                }
                tracing::info!(path = %path.display(), members = rejoin.len(), skipped, left = snap.left,
                    rejoin_after_leave = cfg.rejoin_after_leave, "gossip: restored snapshot");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "gossip: cannot read snapshot"),
        }
    }

    let (cmd_tx, cmd_rx) = mpsc::channel(COMMANDS_MAX);
    let (int_tx, int_rx) = mpsc::channel(INTERNAL_MAX);
    let (members_tx, members_rx) = watch::channel(Arc::new(Vec::new()));
    let (events_tx, _) = broadcast::channel(EVENTS_MAX);
    let sec = Arc::new(SecCell::new(Sec { label: cfg.label.clone(), keyring: cfg.keyring.clone() }));
    tracing::info!(
        node.id = %cfg.node, bind = %local_addr, advertise = %advertise, encrypted = cfg.keyring.is_some(),
        "gossip: listening on udp+tcp"
    );

    let accept = tokio::spawn(accept_loop(
        tcp,
        int_tx.clone(),
        sec.clone(),
        cfg.node.clone(),
        cfg.timing.tcp_timeout,
        shutdown.clone(),
    ));
    let mut driver = Driver {
        swim,
        serf,
        udp: Arc::new(udp),
        sec,
        int_tx,
        members_tx,
        events_tx: events_tx.clone(),
        snapshot_path: cfg.snapshot_path.clone(),
        snapshot_dirty: true,
        leave: None,
        left: false,
        decode_warned: HashMap::new(),
        timing: cfg.timing.clone(),
        node: cfg.node.clone(),
        base_tags: cfg.tags.clone(),
        tag_overlay,
        tags_path: cfg.tags_path.clone(),
        keyring_path: cfg.keyring_path.clone(),
        queries: HashMap::new(),
        name_lost: cfg.name_lost.clone(),
        conflict_checked: None,
        coords,
    };
    driver.pump(now);
    let task = tokio::spawn(async move {
        driver.run(cmd_rx, int_rx, shutdown).await;
        accept.abort();
    });
    let handle =
        GossipHandle { cmd: cmd_tx, members: members_rx, events: events_tx, local_addr, coords: coords_view };
    if !rejoin.is_empty() {
        let h = handle.clone();
        tokio::spawn(async move {
            match h.join(rejoin).await {
                Ok(n) => tracing::info!(answered = n, "gossip: rejoined members from the snapshot"),
                Err(e) => tracing::warn!(error = %e, "gossip: could not rejoin any member from the snapshot"),
            }
        });
    }
    Ok((handle, task))
}

/// Security settings shared with TCP tasks.
#[derive(Clone)]
struct Sec {
    label: String,
    keyring: Option<Keyring>,
}

/// The current [`Sec`]; a key query replaces it, connections take the one current when they
/// start.
struct SecCell(std::sync::RwLock<Arc<Sec>>);

impl SecCell {
    fn new(sec: Sec) -> Self {
        SecCell(std::sync::RwLock::new(Arc::new(sec)))
    }

    fn get(&self) -> Arc<Sec> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, sec: Sec) {
        match self.0.write() {
            Ok(mut g) => *g = Arc::new(sec),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(sec),
        }
    }
}

impl Sec {
    fn view(&self) -> Security<'_> {
        Security { label: &self.label, keyring: self.keyring.as_ref(), verify_incoming: true }
    }
}

enum LeaveStage {
    Intent,
    Dead,
    Propagate,
}

struct Leave {
    stage: LeaveStage,
    until: Instant,
    replies: Vec<oneshot::Sender<()>>,
}

struct Driver {
    swim: Swim,
    serf: Serf,
    udp: Arc<UdpSocket>,
    sec: Arc<SecCell>,
    int_tx: mpsc::Sender<Internal>,
    members_tx: watch::Sender<Arc<Vec<MemberInfo>>>,
    events_tx: broadcast::Sender<SerfEvent>,
    snapshot_path: Option<PathBuf>,
    snapshot_dirty: bool,
    leave: Option<Leave>,
    left: bool,
    decode_warned: HashMap<IpAddr, Instant>,
    timing: Timing,
    node: String,
    /// Tags from the node ([`GossipHandle::set_tags`]) and those set/deleted over Serf RPC.
    base_tags: BTreeMap<String, String>,
    tag_overlay: BTreeMap<String, Option<String>>,
    tags_path: Option<PathBuf>,
    keyring_path: Option<PathBuf>,
    /// Our running queries by query time: where their answers go.
    queries: HashMap<u64, mpsc::Sender<QueryReply>>,
    name_lost: Option<CancellationToken>,
    /// When we last asked the cluster about a conflict over our name.
    conflict_checked: Option<Instant>,
    coords: Coordinates,
}

impl Driver {
    async fn run(
        &mut self,
        mut cmd_rx: mpsc::Receiver<Command>,
        mut int_rx: mpsc::Receiver<Internal>,
        shutdown: CancellationToken,
    ) {
        let mut buf = vec![0u8; 65536];
        // The member list (for the ages of failed members) and the snapshot are refreshed
        // once a second, on whatever wakes the driver then (the probe rounds do, every
        // second); only a driver with nothing else to do wakes for it, a second late.
        let mut next_refresh = Instant::now() + REFRESH_EVERY;
        let udp = self.udp.clone();
        loop {
            let deadline = self.next_deadline().min(next_refresh + REFRESH_EVERY);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = udp.recv_from(&mut buf) => match r {
                    Ok((n, from)) => self.on_packet(from, &buf[..n]),
                    Err(e) => tracing::debug!(error = %e, "gossip: udp receive error"),
                },
                Some(cmd) = cmd_rx.recv() => self.on_command(cmd),
                Some(i) = int_rx.recv() => self.on_internal(i),
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
            let now = Instant::now();
            if now >= next_refresh {
                next_refresh = now + REFRESH_EVERY;
                self.publish(now);
                self.write_snapshot();
            }
            if now >= self.swim.next_deadline() {
                self.swim.tick(now);
            }
            if now >= self.serf.next_deadline() {
                self.serf.tick(now);
            }
            self.advance_leave(now);
            self.pump(now);
            let tally = self.swim.tally();
            GOSSIP.probe_totals(tally.probes, tally.probes_failed, tally.suspicions);
        }
        self.write_snapshot();
    }

    fn next_deadline(&self) -> Instant {
        let mut t = self.swim.next_deadline().min(self.serf.next_deadline());
        if let Some(l) = &self.leave {
            // Poll the leave every gossip interval: broadcasts go out on gossip rounds.
            t = t.min(l.until).min(Instant::now() + self.timing.gossip_interval);
        }
        t
    }

    fn on_packet(&mut self, from: SocketAddr, bytes: &[u8]) {
        let msgs = match decode_packet(bytes, &self.sec.get().view()) {
            Ok(m) => m,
            Err(e) => {
                GOSSIP.traffic(Transport::Udp, Direction::Received, 0, bytes.len() as u64);
                let now = Instant::now();
                let warn = self
                    .decode_warned
                    .get(&from.ip())
                    .is_none_or(|t| now.duration_since(*t) >= DECODE_WARN_EVERY);
                if warn {
                    self.decode_warned.insert(from.ip(), now);
                    if self.decode_warned.len() > 4096 {
                        self.decode_warned.clear();
                    }
                    tracing::warn!(peer.addr = %from, error = %e, "gossip: dropping a packet we cannot read");
                }
                return;
            }
        };
        GOSSIP.traffic(Transport::Udp, Direction::Received, msgs.len() as u64, bytes.len() as u64);
        let now = Instant::now();
        for m in msgs {
            self.swim.handle_message(from, m, now);
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Join { addrs, reply } => self.start_join(addrs, Some(reply)),
            Command::UserEvent { name, payload, coalesce, reply } => {
                let r = self.serf.user_event(&name, &payload, coalesce);
                if r.is_ok() {
                    tracing::info!(event = %name, bytes = payload.len(), "serf: sent user event");
                }
                let _ = reply.send(r);
            }
            Command::SetTags { tags, reply } => {
                let r = self.apply_tags(&tags, &self.tag_overlay.clone(), now);
                if r.is_ok() {
                    self.base_tags = tags;
                }
                let _ = reply.send(r);
            }
            Command::UpdateTags { set, delete, reply } => {
                let _ = reply.send(self.update_tags(set, delete, now));
            }
            Command::Query { name, payload, params, reply } => {
                let _ = reply.send(self.start_query(&name, &payload, params, now));
            }
            Command::Respond { key, payload, reply } => {
                let _ = reply.send(self.serf.respond(key, &payload, now));
            }
            Command::ForceLeave { node, prune, reply } => {
                let _ = reply.send(self.serf.force_leave(&node, prune, now));
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            Command::Leave { reply } => {
                if self.left {
                    let _ = reply.send(());
                    return;
                }
                match &mut self.leave {
                    Some(l) => l.replies.push(reply),
                    None => {
                        tracing::info!("gossip: leaving the cluster gracefully");
                        self.serf.leave(now);
                        self.leave = Some(Leave {
                            stage: LeaveStage::Intent,
                            until: now + BROADCAST_TIMEOUT,
                            replies: vec![reply],
                        });
                    }
                }
            }
        }
    }

    fn advance_leave(&mut self, now: Instant) {
        let Some(l) = &mut self.leave else { return };
        match l.stage {
            LeaveStage::Intent => {
                if !self.swim.user_broadcast_queued(LEAVE_KEY) || now >= l.until {
                    self.swim.leave(now);
                    l.stage = LeaveStage::Dead;
                    l.until = now + BROADCAST_TIMEOUT;
                }
            }
            LeaveStage::Dead => {
                if self.swim.leave_sent() || now >= l.until {
                    l.stage = LeaveStage::Propagate;
                    l.until = now + LEAVE_PROPAGATE_DELAY;
                }
            }
            LeaveStage::Propagate => {
                if now >= l.until {
                    if let Some(l) = self.leave.take() {
                        for r in l.replies {
                            let _ = r.send(());
                        }
                    }
                    self.left = true;
                    self.snapshot_dirty = true;
                    self.write_snapshot();
                    tracing::info!("gossip: left the cluster");
                }
            }
        }
    }

    fn on_internal(&mut self, i: Internal) {
        let now = Instant::now();
        match i {
            Internal::PushPullIn { remote, join, reply } => {
                let _ = reply.send(self.local_push_pull(join));
                self.merge(remote, join, now);
            }
            Internal::Merge { remote, join } => self.merge(remote, join, now),
            Internal::JoinDone { ok, tried, errors, reply } => {
                if ok > 0 {
                    self.serf.broadcast_join();
                }
                let result = if ok > 0 || tried == 0 {
                    Ok(ok)
                } else {
                    Err(GossipError::JoinFailed { tried, errors: errors.join("; ") })
                };
                match reply {
                    Some(r) => {
                        let _ = r.send(result);
                    }
                    None => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "gossip: reconnect failed");
                        }
                    }
                }
            }
            Internal::TcpPing { seq, ok } => self.swim.tcp_ping_result(seq, ok, now),
            Internal::ConflictVerdict { responses, matching } => self.conflict_verdict(responses, matching),
            Internal::User { from, payload } => {
                self.swim.handle_message(from, crate::gossip::wire::Message::User(payload), now)
            }
        }
    }

    fn merge(&mut self, remote: RemoteState, join: bool, now: Instant) {
        self.swim.merge_remote(remote.states, now);
        self.pump(now);
        self.serf.merge_remote_state(&remote.user_state, join, now);
    }

    fn local_push_pull(&self, join: bool) -> StreamMessage {
        let states = self.swim.local_state();
        let user_state = self.serf.local_state();
        let header =
            PushPullHeader { nodes: states.len() as u32, user_state_len: user_state.len() as u32, join };
        StreamMessage::PushPull { header, states, user_state }
    }

    fn start_join(
        &mut self,
        addrs: Vec<SocketAddr>,
        reply: Option<oneshot::Sender<Result<usize, GossipError>>>,
    ) {
        let ours = self.local_push_pull(true);
        let sec = self.sec.get();
        let tx = self.int_tx.clone();
        let deadline = self.timing.tcp_timeout;
        tokio::spawn(async move {
            let mut ok = 0;
            let mut errors = Vec::new();
            for a in &addrs {
                match stream::push_pull(*a, ours.clone(), &sec.view(), deadline).await {
                    Ok(remote) => {
                        ok += 1;
                        if tx.send(Internal::Merge { remote, join: true }).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(peer.addr = %a, error = %e, "gossip: join attempt failed");
                        errors.push(format!("{a}: {e}"));
                    }
                }
            }
            let _ = tx.send(Internal::JoinDone { ok, tried: addrs.len(), errors, reply }).await;
        });
    }

    /// Carries out the cores' effects until neither has more.
    fn pump(&mut self, now: Instant) {
        for _ in 0..64 {
            let effects = self.swim.take_effects();
            let serf_effects = self.serf.take_effects();
            if effects.is_empty() && serf_effects.is_empty() {
                return;
            }
            for e in effects {
                self.do_effect(e, now);
            }
            for e in serf_effects {
                self.do_serf_effect(e);
            }
        }
        tracing::warn!("gossip: effect loop did not settle; continuing next turn");
    }

    fn do_effect(&mut self, e: Effect, now: Instant) {
        match e {
            Effect::Send { to, msgs, crc } => {
                let opts = PacketOptions { crc, compress: false };
                match encode_packets(&msgs, self.timing.udp_buffer_bytes, opts, &self.sec.get().view()) {
                    Ok(packets) => {
                        let mut sent_bytes = 0;
                        for p in packets {
                            match self.udp.try_send_to(&p, to) {
                                Ok(n) => sent_bytes += n,
                                Err(err) => {
                                    tracing::debug!(peer.addr = %to, error = %err, "gossip: udp send failed")
                                }
                            }
                        }
                        GOSSIP.traffic(Transport::Udp, Direction::Sent, msgs.len() as u64, sent_bytes as u64);
                    }
                    Err(err) => tracing::warn!(peer.addr = %to, error = %err, "gossip: cannot encode packet"),
                }
            }
            Effect::TcpPing { to, ping, deadline } => {
                let sec = self.sec.get();
                let tx = self.int_tx.clone();
                let wait = deadline.saturating_duration_since(now).max(Duration::from_millis(10));
                tokio::spawn(async move {
                    let seq = ping.seq_no;
                    let ok = matches!(stream::tcp_ping(to, ping, &sec.view(), wait).await, Ok(true));
                    let _ = tx.send(Internal::TcpPing { seq, ok }).await;
                });
            }
            Effect::PushPull { to, join } => {
                let ours = self.local_push_pull(join);
                let sec = self.sec.get();
                let tx = self.int_tx.clone();
                let deadline = self.timing.tcp_timeout;
                tokio::spawn(async move {
                    match stream::push_pull(to, ours, &sec.view(), deadline).await {
                        Ok(remote) => {
                            let _ = tx.send(Internal::Merge { remote, join }).await;
                        }
                        Err(e) => tracing::debug!(peer.addr = %to, error = %e, "gossip: push/pull failed"),
                    }
                });
            }
            Effect::Member(ev) => {
                self.snapshot_dirty = true;
                self.serf.handle_member_event(ev, now);
                self.publish(now);
            }
            Effect::User(payload) => self.serf.handle_user_msg(&payload, now),
            Effect::PingComplete { node, rtt, payload } => {
                if let Some(ack_payload) = self.coords.on_ping_complete(&node, rtt, &payload) {
                    self.swim.set_ack_payload(ack_payload);
                }
            }
            Effect::NameConflict { other } => self.name_conflict(other, now),
        }
    }

    fn do_serf_effect(&mut self, e: SerfEffect) {
        match e {
            SerfEffect::Broadcast { key, payload } => self.swim.queue_user_broadcast(key, payload),
            SerfEffect::Event(ev) => {
                if let SerfEvent::MemberReap(m) = &ev {
                    self.coords.forget(&m.name);
                }
                if let SerfEvent::User { name, payload, ltime, .. } = &ev {
                    tracing::info!(event = %name, ltime, payload = %String::from_utf8_lossy(payload), "serf: user event");
                }
                if let SerfEvent::Query(q) = &ev {
                    if q.name.starts_with(crate::gossip::serf::INTERNAL_QUERY_PREFIX) {
                        self.internal_query(q);
                        return;
                    }
                    tracing::info!(query = %q.name, ltime = q.key.ltime, from = %q.source, "serf: query");
                }
                let _ = self.events_tx.send(ev);
            }
            SerfEffect::SendTo { to, payload } => self.send_user(to, payload),
            SerfEffect::QueryReply { ltime, reply } => self.route_reply(ltime, reply),
            SerfEffect::QueryDone { ltime } => {
                self.queries.remove(&ltime);
            }
            SerfEffect::Reconnect(addr) => {
                tracing::debug!(peer.addr = %addr, "gossip: trying to reconnect to a failed member");
                self.start_join(vec![addr], None);
            }
        }
    }

    fn stats(&self) -> GossipStats {
        use crate::gossip::wire::serf_type;
        let (member_time, event_time, query_time) = self.serf.clocks();
        let mut s = GossipStats {
            member_time,
            event_time,
            query_time,
            health_score: self.swim.awareness(),
            encrypted: self.sec.get().keyring.is_some(),
            coordinate_resets: self.coords.view().resets(),
            ..GossipStats::default()
        };
        for m in self.swim.user_broadcasts() {
            match m.first() {
                Some(&serf_type::USER_EVENT) => s.event_queue += 1,
                Some(&serf_type::QUERY) => s.query_queue += 1,
                _ => s.intent_queue += 1,
            }
        }
        s
    }

    /// Publishes the member list if it changed: its watchers wake only for news.
    fn publish(&self, now: Instant) {
        let members = self.serf.member_infos(now);
        self.members_tx.send_if_modified(|cur| {
            let changed = **cur != members;
            if changed {
                *cur = Arc::new(members);
            }
            changed
        });
    }

    fn write_snapshot(&mut self) {
        if !self.snapshot_dirty {
            return;
        }
        let Some(path) = &self.snapshot_path else { return };
        self.snapshot_dirty = false;
        let (clock, event_clock, query_clock) = self.serf.clocks();
        let alive = self
            .serf
            .members()
            .filter(|m| m.status == MemberStatus::Alive && m.name != self.node)
            .map(|m| (m.name.clone(), SocketAddr::new(m.addr, m.port)))
            .collect();
        let snap = Snapshot { alive, clock, event_clock, query_clock, left: self.left };
        let tmp = path.with_extension("tmp");
        let r = std::fs::write(&tmp, snap.render()).and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = r {
            tracing::warn!(path = %path.display(), error = %e, "gossip: cannot write snapshot");
        }
    }
}

/// Accepts inbound streams, at most [`STREAMS_IN_MAX`] at once (more are closed at once);
/// each must finish within three `deadline`s (read, hand to the driver, answer).
async fn accept_loop(
    listener: TcpListener,
    tx: mpsc::Sender<Internal>,
    sec: Arc<SecCell>,
    node: String,
    deadline: Duration,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(STREAMS_IN_MAX));
    let mut refused = Throttle::new(STREAM_WARN_EVERY);
    let failed = Arc::new(std::sync::Mutex::new(Throttle::new(STREAM_WARN_EVERY)));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((conn, from)) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::debug!(peer.addr = %from, max = STREAMS_IN_MAX, "gossip: too many inbound streams; closing one");
                    if let Some(held_back) = refused.hit(Instant::now()) {
                        tracing::warn!(peer.addr = %from, max = STREAMS_IN_MAX, held_back, "gossip: too many inbound streams; closing new ones at once");
                    }
                    drop(conn);
                    continue;
                };
                let (tx, sec, node, failed) = (tx.clone(), sec.get(), node.clone(), failed.clone());
                tokio::spawn(async move {
                    let served =
                        tokio::time::timeout(deadline * 3, handle_conn(conn, from, tx, sec, node, deadline));
                    let error = match served.await {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e),
                        Err(_) => Some(GossipError::Timeout { what: "serving an inbound stream" }),
                    };
                    drop(slot);
                    if let Some(e) = error {
                        tracing::debug!(peer.addr = %from, error = %e, "gossip: stream from peer failed");
                        let warn = failed.lock().unwrap_or_else(|p| p.into_inner()).hit(Instant::now());
                        if let Some(held_back) = warn {
                            tracing::warn!(peer.addr = %from, error = %e, held_back, "gossip: stream from peer failed");
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "gossip: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle_conn(
    mut conn: TcpStream,
    from: SocketAddr,
    tx: mpsc::Sender<Internal>,
    sec: Arc<Sec>,
    node: String,
    deadline: Duration,
) -> Result<(), GossipError> {
    let _ = conn.set_nodelay(true);
    let msg = stream::read_message(&mut conn, &sec.view(), deadline).await?;
    match msg {
        StreamMessage::PushPull { header, states, user_state } => {
            let (reply, rx) = oneshot::channel();
            let remote = RemoteState { states, user_state };
            tx.send(Internal::PushPullIn { remote, join: header.join, reply })
                .await
                .map_err(|_| GossipError::Closed)?;
            let ours = rx.await.map_err(|_| GossipError::Closed)?;
            stream::write_message(&mut conn, &ours, &sec.view(), deadline).await
        }
        StreamMessage::Ping(p) => {
            if !p.node.is_empty() && p.node != node {
                tracing::warn!(peer.addr = %from, node = %p.node, "gossip: got a TCP ping for another node name");
                return Ok(());
            }
            let ack = StreamMessage::Ack(Ack { seq_no: p.seq_no, payload: Vec::new() });
            stream::write_message(&mut conn, &ack, &sec.view(), deadline).await
        }
        StreamMessage::User(payload) => {
            tx.send(Internal::User { from, payload }).await.map_err(|_| GossipError::Closed)
        }
        StreamMessage::Err(e) => Err(GossipError::Remote { error: e.error }),
        StreamMessage::Ack(_) => Err(GossipError::Unexpected { expected: "request" }),
    }
}
