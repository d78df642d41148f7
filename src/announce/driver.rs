//! The thin tokio driver around the pure core: follows the registry (its applied-revision
//! watch), the leadership (for the node's `mode`), the interfaces and the host-name cache;
//! debounces; computes [`desired`] and [`plan`]; and applies the steps to an mdns-sd daemon.
//! On shutdown it withdraws everything (goodbye packets) before the daemon stops.
//!
//! Failures are logged (throttled) and retried on the next pass, never fatal.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mdns_sd::{ServiceDaemon, ServiceInfo};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::plan::{desired, node_announcements, plan, Announcement, Effect, NodeInfo, Note};
use super::resolve::HostCache;
use super::subnet::{host_ip, Subnet};
use super::AnnounceError;
use crate::consensus::leadership::{Leadership, Role};
use crate::logging::throttle::Throttle;
use crate::registry::{Service, Status};
use crate::replicated::registrar::Registrar;

/// How long a burst of registry changes is gathered before one pass.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// A pass at least this often: interfaces come and go, lookups expire, failed steps retry.
const REFRESH: Duration = Duration::from_secs(10);
/// Host-name lookups in flight at most, and how long one may take.
const LOOKUPS_MAX: usize = 8;
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the daemon's "busy" answer is retried for one step, and the pause between tries.
const BUSY_RETRIES_MAX: u32 = 50;
const BUSY_PAUSE: Duration = Duration::from_millis(20);
/// How long shutdown waits for the goodbyes to go out.
const GOODBYE_WAIT: Duration = Duration::from_secs(2);
/// At most one warning line per interval for each kind of failure.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// What the driver needs to know about this node.
#[derive(Debug, Clone)]
pub struct AnnounceConfig {
    pub node: String,
    pub cluster: String,
    pub version: String,
    /// The API listener's address (an unspecified IP: every interface address of its family).
    pub api_addr: SocketAddr,
    pub tls: bool,
    /// Registry services announced at most.
    pub services_max: usize,
}

/// Announces the registry's services and the node until `shutdown`, then withdraws them.
/// `daemon` is the node's one mDNS daemon, shared with discovery; the node stops it.
pub async fn run(
    daemon: ServiceDaemon,
    cfg: AnnounceConfig,
    registrar: Arc<Registrar>,
    mut leadership: watch::Receiver<Leadership>,
    shutdown: CancellationToken,
) {
    tracing::info!(services_max = cfg.services_max, "announce: publishing registry services over mDNS");
    let mut d = Driver::new(cfg, daemon);
    let mut applied = registrar.subscribe();
    let mut tick = tokio::time::interval(REFRESH);
    let (mut registry_open, mut leadership_open) = (true, true);
    let mut dirty = true;
    loop {
        if dirty {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(DEBOUNCE) => {}
            }
            let services = registrar.read_local(|r| r.services().cloned().collect::<Vec<Service>>());
            let mode = mode_of(&leadership.borrow());
            d.pass(&services, mode).await;
            dirty = false;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = applied.changed(), if registry_open => { registry_open = r.is_ok(); dirty = true; }
            r = leadership.changed(), if leadership_open => { leadership_open = r.is_ok(); dirty = true; }
            _ = tick.tick() => dirty = true,
            Some(done) = d.lookups.join_next(), if !d.lookups.is_empty() => {
                if let Ok((name, addrs)) = done {
                    dirty |= d.hosts.store(&name, addrs, Instant::now());
                }
            }
        }
    }
    d.withdraw_all().await;
}

/// `server` or `proxy` for the node's TXT `mode`; nothing while no leader is known.
fn mode_of(l: &Leadership) -> Option<String> {
    match l.role {
        Role::Server => Some("server".to_string()),
        Role::Proxy => Some("proxy".to_string()),
        Role::Unknown => None,
    }
}

struct Driver {
    cfg: AnnounceConfig,
    daemon: ServiceDaemon,
    announced: BTreeMap<String, Announcement>,
    hosts: HostCache,
    lookups: JoinSet<(String, Option<Vec<IpAddr>>)>,
    /// The notes logged already, so each is logged once while it holds.
    logged: BTreeSet<Note>,
    over_cap: Throttle,
    failures: Throttle,
}

impl Driver {
    fn new(cfg: AnnounceConfig, daemon: ServiceDaemon) -> Driver {
        Driver {
            cfg,
            daemon,
            announced: BTreeMap::new(),
            hosts: HostCache::default(),
            lookups: JoinSet::new(),
            logged: BTreeSet::new(),
            over_cap: Throttle::new(WARN_EVERY),
            failures: Throttle::new(WARN_EVERY),
        }
    }

    /// One pass: what should be published now, and the steps to get there.
    async fn pass(&mut self, services: &[Service], mode: Option<String>) {
        let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
        let subnets: Vec<Subnet> = interfaces
            .iter()
            .filter(|i| !i.is_loopback())
            .filter_map(|i| match &i.addr {
                if_addrs::IfAddr::V4(a) => Subnet::from_netmask(IpAddr::V4(a.ip), IpAddr::V4(a.netmask)),
                if_addrs::IfAddr::V6(a) => Subnet::from_netmask(IpAddr::V6(a.ip), IpAddr::V6(a.netmask)),
            })
            .collect();
        self.lookup_names(services);
        let mut node_notes = Vec::new();
        let info = NodeInfo {
            node: self.cfg.node.clone(),
            cluster: self.cfg.cluster.clone(),
            version: self.cfg.version.clone(),
            api_port: self.cfg.api_addr.port(),
            addrs: api_addrs(self.cfg.api_addr.ip(), &subnets),
            tls: self.cfg.tls,
            mode,
        };
        let node = node_announcements(&info, &mut node_notes);
        let resolved = self.hosts.resolved();
        let mut want = desired(services, &subnets, &resolved, node, &self.announced, self.cfg.services_max);
        want.notes.extend(node_notes.into_iter().map(|text| Note { service: None, text }));
        self.log_notes(want.notes);
        if want.over_cap > 0 {
            if let Some(held) = self.over_cap.hit(Instant::now()) {
                tracing::warn!(
                    left_out = want.over_cap,
                    cap = self.cfg.services_max,
                    held_back = held,
                    "announce: more services qualify than the cap; the newest are not announced"
                );
            }
        }
        let steps = plan(&self.announced, &want.announcements);
        if steps.is_empty() {
            return;
        }
        let (mut published, mut withdrawn) = (0usize, 0usize);
        for step in steps {
            match self.apply(step).await {
                Ok(Some(true)) => published += 1,
                Ok(Some(false)) => withdrawn += 1,
                Ok(None) => {}
                Err(e) => {
                    if let Some(held) = self.failures.hit(Instant::now()) {
                        tracing::warn!(error = %e, held_back = held, "announce: mDNS step failed; retried on the next pass");
                    }
                }
            }
        }
        tracing::info!(
            published,
            withdrawn,
            announced = self.announced.len(),
            "announce: mDNS records updated"
        );
    }

    /// Starts lookups for the host names of services that might be announced.
    fn lookup_names(&mut self, services: &[Service]) {
        let wanted: BTreeSet<String> = services
            .iter()
            .filter(|s| matches!(s.status, Status::Active | Status::Unhealthy))
            .filter(|s| host_ip(&s.host).is_none())
            .map(|s| s.host.trim().to_string())
            .collect();
        self.hosts.retain(&wanted);
        let room = LOOKUPS_MAX.saturating_sub(self.lookups.len());
        for name in self.hosts.due(&wanted, Instant::now(), room) {
            self.hosts.started(&name);
            self.lookups.spawn(async move {
                let lookup = tokio::net::lookup_host((name.clone(), 0));
                let found = tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await;
                let addrs = match found {
                    Ok(Ok(it)) => Some(it.map(|a| a.ip()).collect::<Vec<_>>()),
                    Ok(Err(e)) => {
                        tracing::debug!(host = %name, error = %e, "announce: host name did not resolve");
                        None
                    }
                    Err(_) => {
                        tracing::debug!(host = %name, "announce: host name lookup timed out");
                        None
                    }
                };
                (name, addrs)
            });
        }
    }

    /// Logs each note once while it holds.
    fn log_notes(&mut self, notes: Vec<Note>) {
        let now: BTreeSet<Note> = notes.into_iter().collect();
        for n in now.difference(&self.logged) {
            match &n.service {
                Some(id) => tracing::warn!(service.id = %id, "announce: {}", n.text),
                None => tracing::warn!("announce: {}", n.text),
            }
        }
        self.logged = now;
    }

    /// Applies one step: `Some(true)` published, `Some(false)` withdrawn.
    async fn apply(&mut self, step: Effect) -> Result<Option<bool>, AnnounceError> {
        match step {
            Effect::Announce(a) => {
                let info = service_info(&a)?;
                retry_busy(|| self.daemon.register(info.clone())).await?;
                tracing::debug!(fullname = %a.fullname(), service.id = ?a.service, addrs = ?a.addrs, port = a.port,
                    "announce: published");
                self.announced.insert(a.key(), a);
                Ok(Some(true))
            }
            Effect::Withdraw { fullname, service } => {
                let _ = retry_busy(|| self.daemon.unregister(&fullname)).await?;
                tracing::debug!(fullname = %fullname, service.id = ?service, "announce: withdrawn");
                self.announced.remove(&fullname.to_lowercase());
                Ok(Some(false))
            }
        }
    }

    /// Sends the goodbye for everything announced and waits (bounded) for it to go out.
    async fn withdraw_all(mut self) {
        self.lookups.abort_all();
        let mut pending = Vec::new();
        for a in self.announced.values() {
            match retry_busy(|| self.daemon.unregister(&a.fullname())).await {
                Ok(rx) => pending.push(rx),
                Err(e) => tracing::warn!(fullname = %a.fullname(), error = %e, "announce: cannot withdraw"),
            }
        }
        let count = pending.len();
        let wait = async {
            for rx in pending {
                let _ = rx.recv_async().await;
            }
        };
        if tokio::time::timeout(GOODBYE_WAIT, wait).await.is_err() {
            tracing::warn!("announce: not every goodbye went out before the deadline");
        }
        tracing::info!(withdrawn = count, "announce: mDNS records withdrawn");
    }
}

/// The API's addresses to announce: the listener's own IP, or for an unspecified IP every
/// address of that family on this node's subnets.
fn api_addrs(ip: IpAddr, subnets: &[Subnet]) -> Vec<IpAddr> {
    if !ip.is_unspecified() {
        return vec![ip];
    }
    subnets.iter().map(|s| s.addr).filter(|a| a.is_ipv4() == ip.is_ipv4() || ip.is_ipv6()).collect()
}

/// The mdns-sd record of an announcement. Registry services are published without probing:
/// every node on the link publishes the same records for them, and probing would rename one.
fn service_info(a: &Announcement) -> Result<ServiceInfo, AnnounceError> {
    let txt: Vec<(&str, &str)> = a.txt.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut info =
        ServiceInfo::new(&a.service_type, &a.instance, &a.host_name, &a.addrs[..], a.port, &txt[..])
            .map_err(|e| AnnounceError::Record { fullname: a.fullname(), reason: e.to_string() })?;
    if a.service.is_some() {
        info.set_requires_probe(false);
    }
    Ok(info)
}

/// Runs a daemon call, retrying (bounded) while its command queue is full.
async fn retry_busy<T>(mut call: impl FnMut() -> mdns_sd::Result<T>) -> Result<T, AnnounceError> {
    let mut tries = 0;
    loop {
        match call() {
            Ok(v) => return Ok(v),
            Err(mdns_sd::Error::Again) if tries < BUSY_RETRIES_MAX => {
                tries += 1;
                tokio::time::sleep(BUSY_PAUSE).await;
            }
            Err(e) => return Err(AnnounceError::Daemon(e.to_string())),
        }
    }
}
