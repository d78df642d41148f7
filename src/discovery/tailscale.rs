//! Tailscale peers as join candidates: online peers' Tailscale IPs from
//! `tailscale status --json`, polled.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::gossip::net::GossipHandle;

/// How often `tailscale status` is asked.
const POLL: Duration = Duration::from_secs(30);
/// How long one `tailscale status` may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Online peers' Tailscale IPs in `tailscale status --json` output.
pub fn parse_status(json: &str) -> Result<Vec<IpAddr>, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let mut out = Vec::new();
    let Some(peers) = v.get("Peer").and_then(|p| p.as_object()) else { return Ok(out) };
    for peer in peers.values() {
        if peer.get("Online").and_then(|o| o.as_bool()) != Some(true) {
            continue;
        }
        let ips = peer.get("TailscaleIPs").and_then(|i| i.as_array()).cloned().unwrap_or_default();
        out.extend(ips.iter().filter_map(|ip| ip.as_str()?.parse::<IpAddr>().ok()));
    }
    Ok(out)
}

/// Polls Tailscale and joins peers that are not members yet, on the gossip `port`.
pub async fn run_tailscale(gossip: GossipHandle, port: u16, shutdown: CancellationToken) {
    tracing::info!("discovery: tailscale peers become join candidates");
    loop {
        let out = tokio::time::timeout(
            COMMAND_TIMEOUT,
            tokio::process::Command::new("tailscale").args(["status", "--json"]).kill_on_drop(true).output(),
        )
        .await;
        match out {
            Ok(Ok(o)) if o.status.success() => match parse_status(&String::from_utf8_lossy(&o.stdout)) {
                Ok(ips) => {
                    let known: Vec<IpAddr> = gossip.members().borrow().iter().map(|m| m.addr).collect();
                    let new: Vec<SocketAddr> = ips
                        .into_iter()
                        .filter(|ip| !known.contains(ip))
                        .map(|ip| SocketAddr::new(ip, port))
                        .collect();
                    if !new.is_empty() {
                        match gossip.join(new.clone()).await {
                            Ok(n) => tracing::info!(
                                candidates = new.len(),
                                joined = n,
                                "discovery: joined tailscale peers"
                            ),
                            Err(e) => {
                                tracing::debug!(error = %e, "discovery: tailscale peers did not answer")
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "discovery: cannot read tailscale status"),
            },
            Ok(Ok(o)) => {
                tracing::warn!(code = ?o.status.code(), "discovery: `tailscale status` failed; is tailscaled running?")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "discovery: cannot run `tailscale`"),
            Err(_) => tracing::warn!("discovery: `tailscale status` timed out"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_online_peers_count() {
        // Proves the parser keeps online peers' IPs and skips offline ones.
        let json = r#"{"Self":{"TailscaleIPs":["100.64.0.1"]},"Peer":{
            "a":{"Online":true,"TailscaleIPs":["100.64.0.2","fd7a::2"]},
            "b":{"Online":false,"TailscaleIPs":["100.64.0.3"]}}}"#;
        let ips = parse_status(json).unwrap();
        assert_eq!(ips.len(), 2);
        assert!(ips.contains(&"100.64.0.2".parse().unwrap()));
        assert!(parse_status("nope").is_err());
    }
}
