//! Fencing on the real Docker engine: three muster nodes and an agent-role node, each in a
//! network namespace of its own joined by a bridge in a fifth ("hub") namespace, all running
//! stacks on the local engine. The server is cut off by iptables rules in its own namespace; Docker's event
//! stream shows its server stack stopped before the new server's stack started; after the
//! heal the old server runs the proxy stack pointed at the new one; the agent never runs the
//! server stack. Needs root, iproute2 and
//! iptables (`make test` installs them). Prints the measured times.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod supervisor_support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use supervisor_support::{build_image, server_events, unique_node, unix_now_ns, Cleanup, IDLE_STACK};

const STACK: &str = IDLE_STACK;

const WAIT: Duration = Duration::from_secs(90);
/// Three voters and (the last) an agent-role node.
const NODES: usize = 4;
const AGENT: usize = 3;

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Namespaces `<p>0..<p>3` with 10.253.<k>.<i+1>/24 on a veth whose other end is on a bridge
/// in `<p>h`; removed on drop.
struct Net {
    prefix: String,
    subnet: u32,
}

impl Net {
    fn new() -> Net {
        let id = std::process::id();
        let net = Net { prefix: format!("msp{}", id % 100_000), subnet: 100 + id % 100 };
        let p = &net.prefix;
        let hub = format!("{p}h");
        run("ip", &["netns", "add", &hub]);
        run("ip", &["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        run("ip", &["-n", &hub, "link", "set", "br0", "up"]);
        for i in 0..NODES {
            let (ns, inner, outer) = (net.ns(i), format!("{p}i{i}"), format!("{p}o{i}"));
            run("ip", &["netns", "add", &ns]);
            run("ip", &["link", "add", &inner, "type", "veth", "peer", "name", &outer]);
            run("ip", &["link", "set", &inner, "netns", &ns]);
            run("ip", &["link", "set", &outer, "netns", &hub]);
            run("ip", &["-n", &hub, "link", "set", &outer, "master", "br0", "up"]);
            run("ip", &["-n", &ns, "addr", "add", &format!("{}/24", net.ip(i)), "dev", &inner]);
            run("ip", &["-n", &ns, "link", "set", &inner, "up"]);
            run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    fn ns(&self, i: usize) -> String {
        format!("{}{i}", self.prefix)
    }

    fn ip(&self, i: usize) -> String {
        format!("10.253.{}.{}", self.subnet, i + 1)
    }

    /// Drops everything on node `i`'s link, both ways (a chain of our own in its namespace).
    fn cut(&self, i: usize) {
        let (ns, dev) = (self.ns(i), format!("{}i{i}", self.prefix));
        let ipt = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns, "iptables"];
            all.extend_from_slice(args);
            run("ip", &all);
        };
        ipt(&["-N", "MUSTER_NEMESIS"]);
        ipt(&["-A", "MUSTER_NEMESIS", "-j", "DROP"]);
        ipt(&["-I", "INPUT", "-i", &dev, "-j", "MUSTER_NEMESIS"]);
        ipt(&["-I", "OUTPUT", "-o", &dev, "-j", "MUSTER_NEMESIS"]);
    }

    fn heal(&self, i: usize) {
        let (ns, dev) = (self.ns(i), format!("{}i{i}", self.prefix));
        let ipt = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns, "iptables"];
            all.extend_from_slice(args);
            run("ip", &all);
        };
        ipt(&["-D", "INPUT", "-i", &dev, "-j", "MUSTER_NEMESIS"]);
        ipt(&["-D", "OUTPUT", "-o", &dev, "-j", "MUSTER_NEMESIS"]);
        ipt(&["-F", "MUSTER_NEMESIS"]);
        ipt(&["-X", "MUSTER_NEMESIS"]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in (0..NODES).map(|i| self.ns(i)).chain([format!("{}h", self.prefix)]) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

/// A muster node inside namespace `ns`, listening on `ip` (killed when dropped).
struct NsNode {
    name: String,
    ns: String,
    api: String,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl NsNode {
    fn start(name: &str, ns: &str, ip: &str, join: Option<&str>, stack: &str, agent: bool) -> NsNode {
        let dir = tempfile::tempdir().unwrap();
        let api = format!("{ip}:9999");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(muster_bin()).arg("agent");
        cmd.args(["--node", name, "--bind", &format!("{ip}:7946"), "--http-addr", &api]);
        cmd.args(["--rpc-addr", "127.0.0.1:7373", "--discovery", "serf", "--profile", "local"]);
        cmd.args(["--stack-file", stack, "--stack-stop-timeout", "1s", "--data-dir"])
            .arg(dir.path().join("data"));
        if agent {
            cmd.args(["--role", "agent"]);
        }
        if let Some(j) = join {
            cmd.args(["--retry-join", j, "--retry-interval", "200ms"]);
        }
        cmd.env("LOG_FORMAT", "text").env("LOG_NO_COLOR", "1").env_remove("SERF_JOIN").env_remove("ROLE");
        let proc = Proc::spawn(&mut cmd, dir.path().join(format!("{name}.log")));
        NsNode { name: name.into(), ns: ns.into(), api, _proc: proc, _dir: dir }
    }

    /// `muster stack status --json` of this node, from inside its namespace.
    fn stack(&self) -> Option<serde_json::Value> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(muster_bin())
            .args(["stack", "status", "--json", "--addr", &self.api])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }
}

/// Running muster containers per node and stack: `(node, stack)` → count.
fn running() -> BTreeMap<(String, String), usize> {
    let out = run(
        "docker",
        &[
            "ps",
            "--filter",
            "label=muster.node",
            "--format",
            "{{.Label \"muster.node\"}} {{.Label \"muster.stack\"}}",
        ],
    );
    let mut m = BTreeMap::new();
    for line in out.lines() {
        if let Some((node, stack)) = line.split_once(' ') {
            *m.entry((node.to_string(), stack.to_string())).or_insert(0) += 1;
        }
    }
    m
}

fn server_node(names: &[String]) -> Option<String> {
    let r = running();
    let servers: Vec<&String> =
        names.iter().filter(|n| r.get(&((*n).clone(), "server".into())) == Some(&2)).collect();
    match servers[..] {
        [one] => Some(one.clone()),
        _ => None,
    }
}

#[test]
fn a_cut_off_server_stops_its_stack_before_the_new_server_starts_one() {
    // Proves fencing end to end: with the server's link dropped, Docker's own event stream
    // shows every container of the old server stack dead before any container of the new
    // server stack starts; after the heal the old server runs the proxy stack pointed at the
    // new server.
    build_image();
    let net = Net::new();
    let base = unique_node("sp");
    let names: Vec<String> = (0..NODES).map(|i| format!("{base}-{i}")).collect();
    let _cleanup: Vec<Cleanup> = names.iter().map(|n| Cleanup::new(n)).collect();
    let dir = tempfile::tempdir().unwrap();
    let stack = dir.path().join("stack.yml");
    std::fs::write(&stack, STACK).unwrap();
    let stack = stack.to_str().unwrap();
    let join = format!("{}:7946", net.ip(0));
    let nodes: Vec<NsNode> = (0..NODES)
        .map(|i| {
            let join = (i > 0).then_some(join.as_str());
            NsNode::start(&names[i], &net.ns(i), &net.ip(i), join, stack, i == AGENT)
        })
        .collect();
    let agent = names[AGENT].clone();
    let agent_never_serves = || {
        let n = running().get(&(agent.clone(), "server".into())).copied().unwrap_or(0);
        assert_eq!(n, 0, "the agent-role node runs server containers");
    };

    let old = wait_for(WAIT, "one node running the server stack and three the proxy stack", || {
        agent_never_serves();
        let server = server_node(&names)?;
        let r = running();
        let proxies =
            names.iter().filter(|n| **n != server && r.get(&((*n).clone(), "proxy".into())) == Some(&1));
        (proxies.count() == NODES - 1).then_some(server)
    });
    let old_i = names.iter().position(|n| *n == old).unwrap();
    println!("{old} runs the server stack; cutting it off");

    let since = unix_now_ns();
    let cut_at = Instant::now();
    net.cut(old_i);
    let new = wait_for(WAIT, "another node's server stack running", || {
        agent_never_serves();
        let r = running();
        names.iter().find(|n| **n != old && r.get(&((*n).clone(), "server".into())) == Some(&2)).cloned()
    });
    let moved = cut_at.elapsed();
    let until = unix_now_ns();

    // Docker's event stream between the cut and now, for both nodes' server containers.
    let events = server_events(since, until);
    let mut old_died: Vec<u128> = Vec::new();
    let mut new_started: Vec<u128> = Vec::new();
    for (t, action, node) in &events {
        if *node == old && action == "die" {
            old_died.push(*t);
        }
        if *node == new && action == "start" {
            new_started.push(*t);
        }
        assert!(
            *node != agent,
            "the agent-role node's server containers show in Docker's events: {events:?}"
        );
    }
    assert_eq!(old_died.len(), 2, "both old server containers died after the cut: {events:?}");
    assert!(!new_started.is_empty(), "the new server's containers started: {events:?}");
    let (last_death, first_start) = (*old_died.iter().max().unwrap(), *new_started.iter().min().unwrap());
    assert!(
        last_death < first_start,
        "the old server stack is down before the new one starts (last death {last_death}, first start \
         {first_start}): {events:?}"
    );
    println!(
        "cut → old stack down {:.2} s, new stack up {:.2} s later ({:.2} s between them); new server {new}",
        (last_death - since) as f64 / 1e9,
        (first_start - since) as f64 / 1e9,
        (first_start - last_death) as f64 / 1e9,
    );
    println!("cut → new server stack running (seen by docker ps): {moved:.1?}");

    net.heal(old_i);
    let healed = Instant::now();
    let new_api = nodes.iter().find(|n| n.name == new).unwrap().api.clone();
    wait_for(WAIT, "the old server running the proxy stack pointed at the new server", || {
        agent_never_serves();
        let s = nodes[old_i].stack()?;
        let want = s.get("want")?;
        let pointed = want.get("stack")?.as_str()? == "proxy"
            && want.pointer("/server/addr")?.as_str()? == new_api
            && s.pointer("/observed/converged")?.as_bool()?;
        (pointed && running().get(&(old.clone(), "proxy".into())) == Some(&1)).then_some(())
    });
    println!("heal → {old} runs the proxy stack pointed at {new} after {:.1?}", healed.elapsed());
    assert_eq!(server_node(&names), Some(new), "still exactly one server stack after the heal");
}
