//! mDNS discovery compatible with `serf agent -discover=<cluster>`: advertise and browse
//! `_serf_<cluster>._tcp.local.`, and join what answers.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio_util::sync::CancellationToken;

use crate::gossip::net::GossipHandle;

/// The DNS-SD type Serf's `-discover=NAME` uses.
pub fn mdns_service_type(cluster: &str) -> String {
    format!("_serf_{cluster}._tcp.local.")
}

/// Advertises this node and joins every member found, until shutdown; then withdraws the
/// record. `daemon` is the node's one mDNS daemon (see [`crate::node`]): the Go agent answers a
/// query by unicast to port 5353, which reaches only one of the sockets bound there, so the
/// node browses and announces through a single daemon.
pub async fn run_mdns(
    daemon: ServiceDaemon,
    gossip: GossipHandle,
    cluster: String,
    node: String,
    advertise: SocketAddr,
    shutdown: CancellationToken,
) {
    let ty = mdns_service_type(&cluster);
    let host = format!("{}.local.", node.replace('.', "-"));
    let txt = [("cluster", cluster.as_str())];
    let mut advertised = None;
    match ServiceInfo::new(&ty, &node, &host, advertise.ip(), advertise.port(), &txt[..]) {
        Ok(info) => {
            let fullname = info.get_fullname().to_string();
            match daemon.register(info) {
                Ok(()) => advertised = Some(fullname),
                Err(e) => tracing::warn!(error = %e, "discovery: cannot advertise over mDNS"),
            }
        }
        Err(e) => tracing::warn!(error = %e, "discovery: cannot build the mDNS record"),
    }
    let rx = match daemon.browse(&ty) {
        Ok(rx) => rx,
        Err(e) => {
            tracing::warn!(error = %e, "discovery: cannot browse mDNS");
            return;
        }
    };
    tracing::info!(service = %ty, "discovery: mDNS advertising and browsing");
    let mut tried: HashSet<SocketAddr> = HashSet::new();
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = rx.recv_async() => ev,
        };
        let Ok(ev) = ev else { break };
        if let ServiceEvent::ServiceResolved(info) = ev {
            let port = info.get_port();
            let addrs: Vec<SocketAddr> = info
                .get_addresses()
                .iter()
                .map(|ip| SocketAddr::new(*ip, port))
                .filter(|a| *a != advertise && !is_unusable(a.ip()))
                .collect();
            let known: Vec<SocketAddr> =
                gossip.members().borrow().iter().map(|m| SocketAddr::new(m.addr, m.port)).collect();
            let new: Vec<SocketAddr> =
                addrs.into_iter().filter(|a| !known.contains(a) && tried.insert(*a)).collect();
            if new.is_empty() {
                continue;
            }
            match gossip.join(new.clone()).await {
                Ok(n) => {
                    tracing::info!(found = ?new, joined = n, "discovery: joined members found over mDNS")
                }
                Err(e) => {
                    tracing::warn!(found = ?new, error = %e, "discovery: members found over mDNS did not answer");
                    for a in new {
                        tried.remove(&a);
                    }
                }
            }
        }
    }
    let _ = daemon.stop_browse(&ty);
    if let Some(fullname) = advertised {
        if let Ok(rx) = daemon.unregister(&fullname) {
            let _ = tokio::time::timeout(GOODBYE_WAIT, rx.recv_async()).await;
        }
    }
}

/// How long the goodbye for this node's record may take to go out at shutdown.
const GOODBYE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

fn is_unusable(ip: IpAddr) -> bool {
    ip.is_unspecified() || ip.is_multicast()
}
