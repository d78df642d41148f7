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

/// Advertises this node and joins every member found, until shutdown.
pub async fn run_mdns(
    gossip: GossipHandle,
    cluster: String,
    node: String,
    advertise: SocketAddr,
    shutdown: CancellationToken,
) {
    let daemon = match ServiceDaemon::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "discovery: mDNS unavailable");
            return;
        }
    };
    let ty = mdns_service_type(&cluster);
    let host = format!("{}.local.", node.replace('.', "-"));
    let txt = [("cluster", cluster.as_str())];
    match ServiceInfo::new(&ty, &node, &host, advertise.ip(), advertise.port(), &txt[..]) {
        Ok(info) => {
            if let Err(e) = daemon.register(info) {
                tracing::warn!(error = %e, "discovery: cannot advertise over mDNS");
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
    let _ = daemon.shutdown();
}

fn is_unusable(ip: IpAddr) -> bool {
    ip.is_unspecified() || ip.is_multicast()
}
