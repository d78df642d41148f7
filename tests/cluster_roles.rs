//! Real muster processes on 127.0.0.1 elect exactly one server over gossip + raft: a lone node
//! bootstraps itself, three nodes form one cluster with one server and two proxies, the server's
//! `kill -9` hands the role to another node, and two nodes started at the same instant form
//! one cluster, never two.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const ELECT: Duration = Duration::from_secs(30);

/// GETs `path` on the node's API as JSON.
fn get(m: &Muster, path: &str) -> Option<Value> {
    let url = format!("http://{}{path}", m.http);
    let out = std::process::Command::new("curl").args(["-s", &url]).output().ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

fn health(m: &Muster) -> Option<Value> {
    get(m, "/health")
}

fn mode(m: &Muster) -> Option<String> {
    Some(get(m, "/discovery")?["mode"].as_str()?.to_string())
}

/// The names of nodes that say they are server, and whether every node agrees on it.
fn servers(ms: &[&Muster]) -> (Vec<String>, bool) {
    let selves: Vec<String> =
        ms.iter().filter(|m| mode(m).as_deref() == Some("server")).map(|m| m.name.clone()).collect();
    let agree = ms.iter().all(|m| {
        m.try_members().ok().is_some_and(|list| {
            let theirs: Vec<&str> =
                list.iter().filter(|x| x["mode"] == "server").filter_map(|x| x["name"].as_str()).collect();
            theirs == selves.iter().map(String::as_str).collect::<Vec<_>>()
        })
    });
    (selves, agree)
}

#[test]
fn a_lone_node_bootstraps_itself_as_server() {
    // Proves `make run`'s case: one node with no peers becomes server on its own.
    let m = Muster::start("solo", &["--profile", "local", "--tag", "role=web"]);
    wait_for(ELECT, "the lone node to be server", || (mode(&m)? == "server").then_some(()));
    wait_for(ELECT, "its cluster id tag (its own raft id)", || {
        let tags = m.member("solo")?["tags"].clone();
        (tags["cluster_id"].is_string() && tags["raft_id"] == tags["cluster_id"]).then_some(())
    });
    // muster's own tags never overwrite the user's (Serf's conventional `role` tag included).
    let tags = m.member("solo").unwrap()["tags"].clone();
    assert_eq!((tags["role"].as_str(), tags["muster_role"].as_str()), (Some("web"), Some("auto")), "{tags}");
    let h = health(&m).unwrap();
    assert_eq!((h["raft"]["role"].as_str(), h["raft"]["voters"].as_u64()), (Some("server"), Some(1)), "{h}");
}

#[test]
fn three_nodes_have_one_server_and_a_new_one_after_kill_minus_nine() {
    // Proves one server among three, all agreeing, and failover after the server is killed.
    let a = Muster::start("a", &["--profile", "local"]);
    let join = a.gossip.to_string();
    let b = Muster::start("b", &["--profile", "local", "--join", &join]);
    let c = Muster::start("c", &["--profile", "local", "--join", &join]);
    let mut all = vec![a, b, c];
    let first = wait_for(ELECT, "one server that all three agree on", || {
        let refs: Vec<&Muster> = all.iter().collect();
        let (s, agree) = servers(&refs);
        (s.len() == 1 && agree).then(|| s[0].clone())
    });
    let proxies = all.iter().filter(|m| mode(m).as_deref() == Some("proxy")).count();
    assert_eq!(proxies, 2);
    // The autopilot promotes the two learners: wait until every node knows three voters.
    wait_for(ELECT, "three voters known to every node", || {
        all.iter().all(|m| health(m).is_some_and(|h| h["raft"]["voters"] == 3)).then_some(())
    });
    let idx = all.iter().position(|m| m.name == first).unwrap();
    let mut dead = all.remove(idx);
    dead.proc.kill9();
    let second = wait_for(ELECT, "a new server the two survivors agree on", || {
        let refs: Vec<&Muster> = all.iter().collect();
        let (s, agree) = servers(&refs);
        (s.len() == 1 && agree && s[0] != first).then(|| s[0].clone())
    });
    assert_ne!(first, second);
}

#[test]
fn two_nodes_started_at_the_same_instant_form_one_cluster() {
    // Proves bootstrap without split brain: both start together, each told to join the other;
    // exactly one bootstraps and both end with the same cluster id and one server.
    let (pa, pb) = (free_port(), free_port());
    let (ha, hb, ra, rb) = (free_port(), free_port(), free_port(), free_port());
    let ja = format!("127.0.0.1:{pb}");
    let jb = format!("127.0.0.1:{pa}");
    let ta = std::thread::spawn(move || {
        Muster::start_in(
            "x",
            &["--profile", "local", "--retry-join", &ja],
            tempfile::tempdir().unwrap(),
            Some((pa, ha, ra)),
        )
    });
    let tb = std::thread::spawn(move || {
        Muster::start_in(
            "y",
            &["--profile", "local", "--retry-join", &jb],
            tempfile::tempdir().unwrap(),
            Some((pb, hb, rb)),
        )
    });
    let (x, y) = (ta.join().unwrap(), tb.join().unwrap());
    wait_for(ELECT, "one server both agree on", || {
        let (s, agree) = servers(&[&x, &y]);
        (s.len() == 1 && agree).then_some(())
    });
    let cid =
        |m: &Muster, of: &str| m.member(of).and_then(|v| v["tags"]["cluster_id"].as_str().map(String::from));
    wait_for(ELECT, "both to carry the same cluster id, seen from both", || {
        let ids = [cid(&x, "x")?, cid(&x, "y")?, cid(&y, "x")?, cid(&y, "y")?];
        ids.iter().all(|i| *i == ids[0]).then_some(())
    });
}
