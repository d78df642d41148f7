//! Leadership becomes Docker stacks, across real muster processes on 127.0.0.1 sharing the
//! local Docker engine (each node's containers carry its `muster.node` label, so every node
//! sees only its own): exactly one node runs the server stack, every other node (an agent-role
//! node too) runs the proxy stack pointed at the server; `muster drill failover` moves the
//! server and reports each step; after `muster drill failover --kill-leader` (the server's
//! muster ends as kill -9 would end it) another node's server stack runs and the proxies are
//! re-pointed at it; the agent never runs the server stack; a hung server's stack is stopped by
//! its watchdog.
//! Prints the measured transition times.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod supervisor_support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use supervisor_support::{build_image, server_events, unique_node, unix_now_ns, Cleanup, IDLE_STACK};

const STACK: &str = IDLE_STACK;

/// The longest a stack takes to appear (election, stack delay, container start).
const WAIT: Duration = Duration::from_secs(90);

/// One running container muster owns.
#[derive(Debug, Clone)]
struct Running {
    name: String,
    stack: String,
    service: String,
}

/// The running containers of each of `nodes`, by node name.
fn running(nodes: &[String]) -> BTreeMap<String, Vec<Running>> {
    let out = Command::new("docker")
        .args(["ps", "--filter", "label=muster.node", "--format"])
        .arg("{{.Names}}\t{{.Label \"muster.node\"}}\t{{.Label \"muster.stack\"}}\t{{.Label \"muster.service\"}}")
        .output()
        .expect("docker ps");
    assert!(out.status.success(), "docker ps failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut by_node: BTreeMap<String, Vec<Running>> = nodes.iter().map(|n| (n.clone(), Vec::new())).collect();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if let [name, node, stack, service] = f[..] {
            if let Some(list) = by_node.get_mut(node) {
                list.push(Running { name: name.into(), stack: stack.into(), service: service.into() });
            }
        }
    }
    by_node
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn env_of(container: &str) -> BTreeMap<String, String> {
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{range .Config.Env}}{{println .}}{{end}}", container])
        .output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// The node running the whole server stack while every other live node runs exactly the
/// proxy stack pointed at it (by `MUSTER_SERVER_ADDR`); `None` until then.
fn settled(live: &[&Muster], names: &[String]) -> Option<String> {
    let by_node = running(names);
    let has = |node: &str, stack: &str| by_node[node].iter().filter(|r| r.stack == stack).count();
    let servers: Vec<&&Muster> = live.iter().filter(|m| has(&m.name, "server") == 2).collect();
    let [server] = servers[..] else { return None };
    for m in live.iter().filter(|m| m.name != server.name) {
        let proxies: Vec<&Running> = by_node[&m.name].iter().collect();
        let [proxy] = proxies[..] else { return None };
        if proxy.stack != "proxy" || proxy.service != "camera-proxy" {
            return None;
        }
        if env_of(&proxy.name).get("MUSTER_SERVER_ADDR") != Some(&server.http.to_string()) {
            return None;
        }
    }
    Some(server.name.clone())
}

#[test]
fn one_server_stack_proxies_follow_it_and_a_kill_moves_it() {
    // Proves on the real engine: one server stack, proxies everywhere else with the server in
    // their environment, the agent never serving, the failover drill (hand-over), and after the
    // crash drill (`--kill-leader`: the server's muster ends as with kill -9) a new server stack
    // with re-pointed proxies, the crashed node's stack stopped by its watchdog first.
    build_image();
    let base = unique_node("sc");
    let names: Vec<String> = ["a", "b", "c", "g"].iter().map(|s| format!("{base}-{s}")).collect();
    let _cleanup: Vec<Cleanup> = names.iter().map(|n| Cleanup::new(n)).collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stack.yml");
    std::fs::write(&file, STACK).unwrap();
    let file = file.to_str().unwrap();
    let common =
        ["--profile", "local", "--stack-file", file, "--stack-stop-timeout", "1s", "--allow-crash-drill"];
    let a = Muster::start(&names[0], &common);
    let join = a.gossip.to_string();
    let with_join = |extra: &[&'static str]| -> Vec<String> {
        common.iter().chain(["--join", join.as_str()].iter()).chain(extra).map(|s| s.to_string()).collect()
    };
    let (b_args, g_args) = (with_join(&[]), with_join(&["--role", "agent"]));
    let b = Muster::start(&names[1], &refs(&b_args));
    let c = Muster::start(&names[2], &refs(&b_args));
    let g = Muster::start(&names[3], &refs(&g_args));
    let mut nodes = [a, b, c, g];
    let agent = names[3].clone();
    let agent_never_serves = |names: &[String]| {
        let on_agent = running(names).remove(&agent).unwrap_or_default();
        assert!(
            on_agent.iter().all(|r| r.stack != "server"),
            "the agent-role node runs a server container: {on_agent:?}"
        );
    };

    let started = Instant::now();
    let server = wait_for(WAIT, "one server stack and three proxy stacks pointed at it", || {
        agent_never_serves(&names);
        let live: Vec<&Muster> = nodes.iter().collect();
        settled(&live, &names)
    });
    println!("first start: {server} runs the server stack, proxies pointed at it, {:.1?} after the last node started", started.elapsed());
    let by_node = running(&names);
    let proxy = by_node.iter().find(|(n, _)| **n != server).and_then(|(_, r)| r.first()).unwrap();
    assert_eq!(env_of(&proxy.name)["CAPTURE_DAEMON_URL"], "http://127.0.0.1:8080");
    assert_ne!(server, agent, "the agent-role node is never the server");

    // The operator's drill: leadership moves, and the drill waits until the new server's stack
    // runs and every other node's proxies point at it.
    let drilled = Instant::now();
    let out = Command::new(muster_bin())
        .args(["drill", "failover", "--timeout", "90", "--addr", &nodes[0].http.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "the drill succeeds: {text}{}", String::from_utf8_lossy(&out.stderr));
    println!("muster drill failover ({:.1?}):\n{text}", drilled.elapsed());
    let after_drill = wait_for(WAIT, "one server stack after the drill", || {
        agent_never_serves(&names);
        let live: Vec<&Muster> = nodes.iter().collect();
        settled(&live, &names)
    });
    assert_ne!(after_drill, server, "the drill moved the server stack");
    assert!(text.contains(&format!("{after_drill}'s server stack runs")), "{text}");
    let server = after_drill;

    // The crash drill: the leader's process ends as a crash would (what kill -9 leaves behind:
    // no leave, no hand-over, no drain); its watchdog must take its server stack down.
    let killed = nodes.iter().position(|m| m.name == server).unwrap();
    let since = unix_now_ns();
    let t0 = Instant::now();
    let out = Command::new(muster_bin())
        .args(["drill", "failover", "--kill-leader", "--timeout", "90", "--addr", &nodes[0].http.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "the crash drill succeeds: {text}{}", String::from_utf8_lossy(&out.stderr));
    println!("muster drill failover --kill-leader ({:.1?}):\n{text}", t0.elapsed());
    assert!(text.contains(&format!("crashed {server}")), "{text}");
    let status = nodes[killed].proc.wait_exit(Duration::from_secs(10));
    assert!(!status.success(), "the crashed node ended abnormally: {status:?}");
    let survivors: Vec<String> = names.iter().filter(|n| **n != server).cloned().collect();
    let new_server =
        wait_for(WAIT, "a survivor's server stack, with every other survivor's proxies re-pointed", || {
            agent_never_serves(&names);
            let live: Vec<&Muster> = nodes.iter().filter(|m| m.name != server).collect();
            settled(&live, &survivors)
        });
    println!(
        "after the crash of {server}'s muster: {new_server} runs the server stack and the proxies point at it \
         {:.1?} later (raft failover + lock delay + stack delay of the 1 s stop timeout + 2 s + container start)",
        t0.elapsed()
    );
    assert_ne!(new_server, server);
    // The killed node's watchdog stopped its server stack before the new one started.
    let left = running(&names).remove(&server).unwrap_or_default();
    assert!(left.iter().all(|r| r.stack != "server"), "the killed node's server stack is stopped: {left:?}");
    let events = server_events(since, unix_now_ns());
    let died: Vec<u128> =
        events.iter().filter(|(_, a, n)| *n == server && a == "die").map(|(t, _, _)| *t).collect();
    let started: Vec<u128> =
        events.iter().filter(|(_, a, n)| *n == new_server && a == "start").map(|(t, _, _)| *t).collect();
    assert_eq!(died.len(), 2, "both of the killed node's server containers died: {events:?}");
    let (last_death, first_start) = (*died.iter().max().unwrap(), *started.iter().min().unwrap());
    assert!(last_death < first_start, "the dead node's stack is down before the new one starts: {events:?}");
    println!(
        "crash → the dead node's watchdog had its server stack down {:.2} s later, the new server's \
         stack started {:.2} s after the kill",
        (last_death - since) as f64 / 1e9,
        (first_start - since) as f64 / 1e9
    );
}

/// `muster stack status --json` of a node.
fn stack_status(m: &Muster) -> Option<serde_json::Value> {
    let out = Command::new(muster_bin())
        .args(["stack", "status", "--json", "--addr", &m.http.to_string()])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

#[test]
fn a_lone_node_runs_its_server_stack_labelled_with_its_epoch() {
    // Proves the one-node case on the real engine: the node bootstraps, becomes server and
    // runs the whole server stack; docker shows each container with muster's labels and the
    // epoch (the raft term) that `muster stack status` reports, and MUSTER_EPOCH inside.
    build_image();
    let name = unique_node("sl");
    let _cleanup = Cleanup::new(&name);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stack.yml");
    std::fs::write(&file, STACK).unwrap();
    let started = Instant::now();
    let m = Muster::start(
        &name,
        &["--profile", "local", "--stack-file", file.to_str().unwrap(), "--stack-stop-timeout", "1s"],
    );
    let epoch = wait_for(WAIT, "the lone node's server stack converged", || {
        let s = stack_status(&m)?;
        let converged =
            s.pointer("/observed/converged")?.as_bool()? && s.pointer("/want/stack")?.as_str()? == "server";
        let n = running(std::slice::from_ref(&name)).remove(&name)?.len();
        (converged && n == 2).then(|| s.pointer("/want/epoch").and_then(|e| e.as_u64()))?
    });
    println!("lone node: server stack (epoch {epoch}) running {:.1?} after start", started.elapsed());
    let out = Command::new("docker")
        .args(["ps", "--filter", &format!("label=muster.node={name}"), "--format"])
        .arg("{{.Names}} {{.Label \"muster.stack\"}} {{.Label \"muster.epoch\"}} {{.Label \"muster.service\"}}")
        .output()
        .unwrap();
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
    lines.sort();
    println!("docker ps:\n{}", lines.join("\n"));
    assert_eq!(
        lines,
        vec![
            format!("muster-{name}-server-api server {epoch} api"),
            format!("muster-{name}-server-db server {epoch} db"),
        ]
    );
    assert_eq!(env_of(&format!("muster-{name}-server-api"))["MUSTER_EPOCH"], epoch.to_string());
}

#[test]
fn without_docker_the_node_says_so_once_runs_its_hooks_and_serves() {
    // Proves the no-Docker case: with a stack file but no engine at --docker-socket the node
    // reports "disabled: no Docker engine at …" (status and one log line), still runs its
    // on-promote hook with the transition in the environment, and serves its API.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stack.yml");
    std::fs::write(&file, STACK).unwrap();
    let out = dir.path().join("promoted");
    let hook = dir.path().join("promote.sh");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\necho \"$MUSTER_ROLE $MUSTER_EPOCH $MUSTER_SERVER_ADDR\" > {}\n", out.display()),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let socket = dir.path().join("no-docker.sock");
    let m = Muster::start(
        "nodocker",
        &[
            "--profile",
            "local",
            "--stack-file",
            file.to_str().unwrap(),
            "--docker-socket",
            socket.to_str().unwrap(),
            "--on-promote",
            hook.to_str().unwrap(),
            "--stack-stop-timeout",
            "1s",
        ],
    );
    let line = wait_for(WAIT, "the on-promote hook's output", || std::fs::read_to_string(&out).ok());
    let epoch = line.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(line.trim(), format!("server {epoch} {}", m.http));
    let s = stack_status(&m).expect("stack status answers");
    let disabled = format!("disabled: no Docker engine at {}", socket.display());
    assert_eq!(s["docker"].as_str(), Some(disabled.as_str()), "{s}");
    assert_eq!(s["observed"], serde_json::Value::Null);
    let lines = m.log_text().lines().filter(|l| l.contains(&disabled)).count();
    assert_eq!(lines, 1, "said once: {}", m.log_text());
    let status = Command::new(muster_bin()).args(["status", "--addr", &m.http.to_string()]).output().unwrap();
    assert!(status.status.success(), "the API serves: {}", String::from_utf8_lossy(&status.stderr));
}

#[test]
fn a_hung_server_has_its_stack_stopped_by_the_watchdog_and_back_when_it_resumes() {
    // Proves the watchdog's fence: a serving node stopped with SIGSTOP (hung: it cannot stop
    // its own stack) has its server containers stopped by its watchdog once the fence lapses,
    // well before a next server could start its stack (election + stop timeout + 2 s); after
    // SIGCONT the node, still the server, runs its stack again.
    build_image();
    let name = unique_node("sf");
    let _cleanup = Cleanup::new(&name);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stack.yml");
    std::fs::write(&file, STACK).unwrap();
    let mut m = Muster::start(
        &name,
        &["--profile", "local", "--stack-file", file.to_str().unwrap(), "--stack-stop-timeout", "1s"],
    );
    let count = |name: &String| running(std::slice::from_ref(name)).remove(name).map_or(0, |l| l.len());
    wait_for(WAIT, "the lone node's server stack running", || (count(&name) == 2).then_some(()));
    let stopped_at = unix_now_ns();
    let frozen = Instant::now();
    m.proc.signal("STOP");
    wait_for(Duration::from_secs(20), "the watchdog stopping the hung node's server stack", || {
        (count(&name) == 0).then_some(())
    });
    let gone_after = frozen.elapsed();
    let events = server_events(stopped_at, unix_now_ns());
    // Only this node's containers: other tests may run stacks on the same engine meanwhile.
    let first_stop =
        events.iter().find(|(_, action, node)| *node == name && (action == "die" || action == "stop"));
    let first_stop_s = first_stop.map(|(t, _, _)| (*t - stopped_at) as f64 / 1e9);
    println!("SIGSTOP → first server container stopping {first_stop_s:?} s, all gone {gone_after:.2?}");
    let first_stop_s = first_stop_s.expect("no stop event of a server container after SIGSTOP");
    // The fence is 1.5 s plus a 0.1 s poll; generous for a loaded machine, and far below the
    // next server's earliest start (election ≥ 0.3 s + 1 s stop timeout + 2 s).
    assert!(first_stop_s >= 1.2, "stopped before the fence could lapse ({first_stop_s} s): not the fence");
    assert!(first_stop_s < 3.0, "the fence took {first_stop_s} s");
    m.proc.signal("CONT");
    wait_for(WAIT, "the resumed node's server stack running again", || (count(&name) == 2).then_some(()));
    assert!(m.proc.child.as_mut().unwrap().try_wait().unwrap().is_none(), "the node died");
}
