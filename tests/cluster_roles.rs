//! Real muster processes on 127.0.0.1 elect exactly one server over gossip + raft: a lone node
//! bootstraps itself, three nodes form one cluster with one server and two proxies, the server's
//! `kill -9` hands the role to another node, two nodes started at the same instant form one
//! cluster, never two, two clusters that meet later merge (services included), and a leader
//! that leaves hands leadership over first.

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

/// A unary gRPC call with the real grpcurl; the JSON answer, or None on any error.
fn grpc(m: &Muster, method: &str, body: &str) -> Option<String> {
    let out = std::process::Command::new("grpcurl")
        .args(["-plaintext", "-max-time", "10", "-d", body, &m.http.to_string(), method])
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
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

#[test]
fn two_clusters_that_meet_later_merge_the_smaller_into_the_larger() {
    // Proves the merge rule on real processes: a lone node (cluster A) and a two-node cluster
    // (B) that booted apart meet through a gossip join; A yields (smaller), discards its raft
    // state and becomes a member of B; one server for all three; /discovery records the merge.
    let a = Muster::start("lone", &["--profile", "local"]);
    let b1 = Muster::start("b1", &["--profile", "local"]);
    let b2 = Muster::start("b2", &["--profile", "local", "--join", &b1.gossip.to_string()]);
    let cid =
        |m: &Muster, of: &str| m.member(of).and_then(|v| v["tags"]["cluster_id"].as_str().map(String::from));
    let a_cluster = wait_for(ELECT, "the lone node's own cluster", || cid(&a, "lone"));
    let b_cluster = wait_for(ELECT, "b1 and b2 in one cluster", || {
        let (x, y) = (cid(&b1, "b1")?, cid(&b1, "b2")?);
        (x == y).then_some(x)
    });
    assert_ne!(a_cluster, b_cluster);
    wait_for(ELECT, "b's two voters", || {
        (health(&b1)?["raft"]["voters"] == 2 || health(&b1)?["raft"]["learners"] == 1).then_some(())
    });
    // A service registered in the lone cluster only.
    let reg = r#"{"service_id":"cam-lone","name":"cam","type":"http","host":"10.9.0.1","port":8080}"#;
    wait_for(ELECT, "a registration on the lone node", || {
        grpc(&a, "muster.registry.v1.Registry/Register", reg)
    });
    // The clusters meet: the lone node joins b1's gossip (serf's CLI on its RPC port).
    let out = serf_cli(a.rpc, &["join", &b1.gossip.to_string()]);
    assert!(out.status.success(), "serf join: {}", String::from_utf8_lossy(&out.stderr));
    wait_for(Duration::from_secs(60), "the lone node to carry b's cluster id, seen from b1", || {
        (cid(&b1, "lone")? == b_cluster).then_some(())
    });
    wait_for(ELECT, "one server all three agree on", || {
        let (s, agree) = servers(&[&a, &b1, &b2]);
        (s.len() == 1 && agree && s[0] != "lone").then_some(())
    });
    let d = get(&a, "/discovery").unwrap();
    let merges = d["raft_cluster"]["merges"].as_array().cloned().unwrap_or_default();
    assert_eq!(merges.len(), 1, "{d}");
    assert_eq!(merges[0]["from"]["id"], a_cluster.as_str(), "{d}");
    assert_eq!(merges[0]["into"]["id"], b_cluster.as_str(), "{d}");
    assert_eq!(d["raft_cluster"]["id"], b_cluster.as_str(), "{d}");
    assert!(a.log_text().contains("cluster: merging"), "the merge is logged");
    // Its services came along: b1 (never in the lone cluster) serves the registration.
    let got = wait_for(ELECT, "the lone cluster's service in the merged cluster", || {
        grpc(&b1, "muster.registry.v1.Registry/Get", r#"{"service_id":"cam-lone"}"#)
    });
    assert!(got.contains("10.9.0.1"), "{got}");
    for m in [&b1, &b2] {
        let d = get(m, "/discovery").unwrap();
        assert_eq!(d["raft_cluster"]["merges"].as_array().map(Vec::len), Some(0), "{d}");
    }
}

#[test]
fn a_leader_that_leaves_gracefully_hands_leadership_over_first() {
    // Proves the graceful-leave rule: SIGTERM to the server makes it transfer leadership to
    // another voter before it leaves, and the other two agree on the new server.
    let a = Muster::start("ha", &["--profile", "local"]);
    let join = a.gossip.to_string();
    let b = Muster::start("hb", &["--profile", "local", "--join", &join]);
    let c = Muster::start("hc", &["--profile", "local", "--join", &join]);
    let mut all = vec![a, b, c];
    let first = wait_for(ELECT, "one server that all three agree on", || {
        let refs: Vec<&Muster> = all.iter().collect();
        let (s, agree) = servers(&refs);
        (s.len() == 1 && agree).then(|| s[0].clone())
    });
    wait_for(ELECT, "three voters known to every node", || {
        all.iter().all(|m| health(m).is_some_and(|h| h["raft"]["voters"] == 3)).then_some(())
    });
    let idx = all.iter().position(|m| m.name == first).unwrap();
    let mut leaving = all.remove(idx);
    leaving.proc.signal("TERM");
    assert!(leaving.proc.wait_exit(Duration::from_secs(30)).success());
    let log = leaving.log_text();
    assert!(log.contains("raft: leadership handed over before leaving"), "no hand-over in the log:\n{log}");
    wait_for(ELECT, "a new server the two others agree on", || {
        let refs: Vec<&Muster> = all.iter().collect();
        let (s, agree) = servers(&refs);
        (s.len() == 1 && agree && s[0] != first).then_some(())
    });
}

#[test]
fn leadership_moves_to_a_server_role_node_once_it_votes() {
    // Proves `--role server` makes a node preferred: two auto nodes form the cluster, a
    // server-role node joins last, and once the autopilot made it a voter the leader hands
    // leadership (and with it the server role) to it.
    let a = Muster::start("pa", &["--profile", "local"]);
    let join = a.gossip.to_string();
    let b = Muster::start("pb", &["--profile", "local", "--join", &join]);
    wait_for(ELECT, "a server among the two auto nodes", || {
        let (s, agree) = servers(&[&a, &b]);
        (s.len() == 1 && agree).then_some(())
    });
    let p = Muster::start("pp", &["--profile", "local", "--role", "server", "--join", &join]);
    wait_for(ELECT, "the server-role node is the server, agreed by all three", || {
        let (s, agree) = servers(&[&a, &b, &p]);
        (s == ["pp"] && agree).then_some(())
    });
}
