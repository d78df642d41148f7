//! mDNS discovery against the real agent: a muster node and `serf agent -discover` find each
//! other on a network of our own (two network namespaces joined by a veth pair), with no join
//! addresses given to either. Needs root and iproute2 (`make test` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn muster_and_serf_agent_discover_each_other_over_mdns() {
    // Proves mDNS compatibility: `serf agent -discover=mtest` and `muster --discovery mdns
    // --cluster mtest` on a private link join one cluster without any join address, gossiping
    // with one key (the lan profile's default needs one).
    let net = common::netns::VethPair::new("mst", 7, None);
    let tmp = tempfile::tempdir().unwrap();
    let key = gossip_key();

    let mut go_cmd = Command::new("ip");
    go_cmd.args(["netns", "exec", &net.b, "serf", "agent", "-node=go1", "-bind=10.251.7.2:7946"]);
    go_cmd.args([
        "-rpc-addr=127.0.0.1:7373",
        "-discover=mtest",
        "-log-level=debug",
        &format!("-encrypt={key}"),
    ]);
    let go = Proc::spawn(&mut go_cmd, tmp.path().join("go1.log"));

    let mut m_cmd = Command::new("ip");
    m_cmd.args(["netns", "exec", &net.a]).arg(muster_bin());
    m_cmd.args(["agent", "--node", "m1", "--bind", "10.251.7.1:7946", "--http-addr", "10.251.7.1:9999"]);
    m_cmd.args(["--discovery", "mdns", "--cluster", "mtest", "--encrypt", &key, "--data-dir"]);
    m_cmd.arg(tmp.path().join("data"));
    m_cmd.env("LOG_FORMAT", "text").env("LOG_NO_COLOR", "1").env_remove("SERF_JOIN");
    let m = Proc::spawn(&mut m_cmd, tmp.path().join("m1.log"));

    let members_on_a = || -> Option<Vec<serde_json::Value>> {
        let out = Command::new("ip")
            .args(["netns", "exec", &net.a])
            .arg(muster_bin())
            .args(["members", "--json", "--http-addr", "10.251.7.1:9999"])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    };
    let members_on_b = || -> Option<Vec<serde_json::Value>> {
        let out = Command::new("ip")
            .args(["netns", "exec", &net.b, "serf", "members", "-rpc-addr=127.0.0.1:7373", "-format=json"])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["members"].as_array().cloned()
    };
    let has_alive = |list: Vec<serde_json::Value>, name: &str| {
        list.iter().any(|x| x["name"] == name && x["status"] == "alive").then_some(())
    };
    let why = || format!("\n--- muster log ---\n{}\n--- serf log ---\n{}", m.log_text(), go.log_text());
    let within = Duration::from_secs(40);
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(within, "muster to list go1 alive", || has_alive(members_on_a()?, "go1"));
        wait_for(within, "the serf agent to list m1 alive", || has_alive(members_on_b()?, "m1"));
    }));
    if ok.is_err() {
        panic!("mDNS discovery failed{}", why());
    }
    assert!(m.log_text().contains("discovery: joined members found over mDNS"), "{}", why());
}
