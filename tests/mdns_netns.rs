//! mDNS discovery against the real agent: a muster node and `serf agent -discover` find each
//! other on a network of our own (two network namespaces joined by a veth pair), with no join
//! addresses given to either. Each direction has its own test: the Go agent polls once at start
//! and then once a minute, so the one that starts second is found by the other's browse or
//! poll, never by chance. Needs root and iproute2 (`make test` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::netns::VethPair;
use common::*;

/// How long the Go agent's start-up poll lasts (its mDNS client's query timeout), with margin.
const SERF_POLL_DONE: Duration = Duration::from_millis(2500);
const WITHIN: Duration = Duration::from_secs(40);

fn start_serf(net: &VethPair, n: u8, key: &str, log: std::path::PathBuf) -> Proc {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &net.b, "serf", "agent", "-node=go1"]);
    cmd.args([
        format!("-bind=10.251.{n}.2:7946").as_str(),
        "-rpc-addr=127.0.0.1:7373",
        "-discover=mtest",
        "-log-level=debug",
        &format!("-encrypt={key}"),
    ]);
    Proc::spawn(&mut cmd, log)
}

fn start_muster(net: &VethPair, n: u8, key: &str, dir: &std::path::Path) -> Proc {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &net.a]).arg(muster_bin());
    cmd.args(["agent", "--node", "m1", "--bind", &format!("10.251.{n}.1:7946")]);
    cmd.args(["--http-addr", &format!("10.251.{n}.1:9999")]);
    cmd.args(["--discovery", "mdns", "--cluster", "mtest", "--encrypt", key, "--data-dir"]);
    cmd.arg(dir.join("data"));
    cmd.env("LOG_FORMAT", "text").env("LOG_NO_COLOR", "1").env_remove("SERF_JOIN");
    Proc::spawn(&mut cmd, dir.join("m1.log"))
}

/// Members as `muster members --json` inside namespace `a` shows them.
fn members_on_a(net: &VethPair, n: u8) -> Option<Vec<serde_json::Value>> {
    let out = Command::new("ip")
        .args(["netns", "exec", &net.a])
        .arg(muster_bin())
        .args(["members", "--json", "--http-addr", &format!("10.251.{n}.1:9999")])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// Members as `serf members -format=json` inside namespace `b` shows them.
fn members_on_b(net: &VethPair) -> Option<Vec<serde_json::Value>> {
    let out = Command::new("ip")
        .args(["netns", "exec", &net.b, "serf", "members", "-rpc-addr=127.0.0.1:7373", "-format=json"])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["members"].as_array().cloned()
}

fn has_alive(list: Vec<serde_json::Value>, name: &str) -> Option<()> {
    list.iter().any(|x| x["name"] == name && x["status"] == "alive").then_some(())
}

/// Waits until each side lists the other alive; on failure panics with both logs.
fn both_see_each_other(net: &VethPair, n: u8, m: &Proc, go: &Proc) {
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(WITHIN, "muster to list go1 alive", || has_alive(members_on_a(net, n)?, "go1"));
        wait_for(WITHIN, "the serf agent to list m1 alive", || has_alive(members_on_b(net)?, "m1"));
    }));
    if ok.is_err() {
        panic!("mDNS discovery failed{}", logs(m, go));
    }
}

/// Whether the agent's log shows it joining `addr` (its mDNS poll's join; it joins what the
/// poll found, its own address included).
fn agent_joined(go: &Proc, addr: &str) -> bool {
    go.log_text().lines().any(|l| l.contains("agent: joining: [") && l.contains(addr))
}

fn logs(m: &Proc, go: &Proc) -> String {
    format!("\n--- muster log ---\n{}\n--- serf log ---\n{}", m.log_text(), go.log_text())
}

#[test]
fn muster_browses_and_finds_a_serf_agent_that_started_first() {
    // The agent's start-up poll is over before muster starts, and its next one is a minute
    // away: the cluster forms only if muster's browse finds the agent (the agent answers by
    // unicast to port 5353) and muster joins it.
    let n = 7;
    let net = VethPair::new("msf", n, None);
    let tmp = tempfile::tempdir().unwrap();
    let key = gossip_key();
    let go = start_serf(&net, n, &key, tmp.path().join("go1.log"));
    wait_for(WITHIN, "the serf agent's RPC", || members_on_b(&net));
    std::thread::sleep(SERF_POLL_DONE);
    let m = start_muster(&net, n, &key, tmp.path());
    both_see_each_other(&net, n, &m, &go);
    assert!(m.log_text().contains("discovery: joined members found over mDNS"), "{}", logs(&m, &go));
    let muster_addr = format!("10.251.{n}.1:7946");
    assert!(!agent_joined(&go, &muster_addr), "the agent's own poll found muster{}", logs(&m, &go));
}

#[test]
fn a_serf_agent_polls_and_finds_muster_that_started_first() {
    // muster is up and advertising before the agent starts; the agent's start-up poll must
    // find it (muster answers the query) and the agent joins it.
    let n = 8;
    let net = VethPair::new("msm", n, None);
    let tmp = tempfile::tempdir().unwrap();
    let key = gossip_key();
    let m = start_muster(&net, n, &key, tmp.path());
    wait_for(WITHIN, "muster's API", || members_on_a(&net, n));
    wait_for(WITHIN, "muster to advertise over mDNS", || {
        m.log_text().contains("discovery: mDNS advertising and browsing").then_some(())
    });
    // mdns-sd probes a new name for about 750 ms before it answers for it.
    std::thread::sleep(Duration::from_millis(1500));
    let go = start_serf(&net, n, &key, tmp.path().join("go1.log"));
    both_see_each_other(&net, n, &m, &go);
    let muster_addr = format!("10.251.{n}.1:7946");
    assert!(agent_joined(&go, &muster_addr), "the agent's poll did not find muster{}", logs(&m, &go));
    assert!(!go.log_text().contains("Failed to poll"), "{}", logs(&m, &go));
}
