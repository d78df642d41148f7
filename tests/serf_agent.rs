//! The Serf agent surface of a muster node against real Go `serf agent`s in one cluster: the
//! `serf` CLI's `query`, `tags`, `force-leave` and `keys` pointed at muster and at a Go agent,
//! event-handler scripts written for Go agents, PyPI's `serfclient`, and a key rotation with
//! gossip running throughout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{serf_cli, serf_members, wait_for, Muster, SerfAgent};
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(30);

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn alive_on(rpc: std::net::SocketAddr, name: &str) -> Option<()> {
    let ms = serf_members(rpc).ok()?;
    ms.iter().any(|m| m["name"] == name && m["status"] == "alive").then_some(())
}

fn status_on(rpc: std::net::SocketAddr, name: &str) -> Option<String> {
    let ms = serf_members(rpc).ok()?;
    ms.iter().find(|m| m["name"] == name).map(|m| m["status"].as_str().unwrap_or("").to_string())
}

fn tags_on(rpc: std::net::SocketAddr, name: &str) -> Option<BTreeMap<String, String>> {
    let ms = serf_members(rpc).ok()?;
    let m = ms.into_iter().find(|m| m["name"] == name)?;
    serde_json::from_value(m["tags"].clone()).ok()
}

fn executable(path: &Path, body: &str) -> PathBuf {
    std::fs::write(path, body).unwrap();
    let _ = Command::new("chmod").arg("+x").arg(path).status();
    path.to_path_buf()
}

/// A Go agent `go1` and a muster node `m1` (plus `extra` Go agents), all alive everywhere.
fn cluster(
    go_extra: &[&str],
    muster_extra: &[&str],
    more_go: &[&str],
) -> (SerfAgent, Muster, Vec<SerfAgent>) {
    let go = SerfAgent::start("go1", go_extra);
    let bind = go.bind.to_string();
    let mut extra = vec!["--profile", "local", "--join", &bind];
    extra.extend_from_slice(muster_extra);
    let m = Muster::start("m1", &extra);
    let join = format!("-join={bind}");
    let others: Vec<SerfAgent> = more_go.iter().map(|n| SerfAgent::start(n, &[&join])).collect();
    let mut names = vec!["go1", "m1"];
    names.extend_from_slice(more_go);
    for n in &names {
        wait_for(CONVERGE, &format!("m1 and go1 to list {n} alive"), || {
            alive_on(m.rpc, n).and(alive_on(go.rpc, n))
        });
    }
    (go, m, others)
}

/// `serf query -format=json`: the acks and the responses by member.
fn query_json(rpc: std::net::SocketAddr, args: &[&str]) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let mut all = vec!["query", "-format=json"];
    all.extend_from_slice(args);
    let out = serf_cli(rpc, &all);
    assert!(out.status.success(), "serf {all:?}: {}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let acks = v["Acks"].as_array().map(|a| a.iter().filter_map(|x| x.as_str()).map(String::from).collect());
    let resp = v["Responses"].as_object().map(|o| {
        o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect::<BTreeMap<_, _>>()
    });
    (acks.unwrap_or_default(), resp.unwrap_or_default())
}

#[test]
fn serf_query_is_answered_by_muster_and_go_handlers_whichever_agent_asks() {
    // Proves `serf query` through muster and through the Go agent reaches both, each answered
    // by a `query:uptime` handler's stdout, with acks, node and tag filters working alike.
    let dir = tempfile::tempdir().unwrap();
    let script =
        executable(&dir.path().join("uptime.sh"), "#!/bin/sh\necho \"up on $SERF_SELF_NAME: $(cat)\"\n");
    let handler = format!("query:uptime={}", script.display());
    let (go, m, _) = cluster(
        &[&format!("-event-handler={handler}"), "-tag", "role=web"],
        &["--event-handler", &handler, "--tag", "role=db"],
        &[],
    );
    for (asker, rpc) in [("muster", m.rpc), ("go", go.rpc)] {
        let (acks, resp) = query_json(rpc, &["uptime", "ping"]);
        assert_eq!(acks, BTreeSet::from(["go1".to_string(), "m1".to_string()]), "asked through {asker}");
        assert_eq!(
            resp.get("m1").map(String::as_str),
            Some("up on m1: ping\n"),
            "asked through {asker}: {resp:?}"
        );
        assert_eq!(
            resp.get("go1").map(String::as_str),
            Some("up on go1: ping\n"),
            "asked through {asker}: {resp:?}"
        );

        let (acks, resp) = query_json(rpc, &["-node=m1", "uptime"]);
        assert_eq!(
            (acks.len(), resp.keys().map(String::as_str).collect::<Vec<_>>()),
            (1, vec!["m1"]),
            "node filter via {asker}"
        );
        let (_, resp) = query_json(rpc, &["-tag", "role=^w", "uptime"]);
        assert_eq!(resp.keys().collect::<Vec<_>>(), vec!["go1"], "tag filter via {asker}");
        let (acks, _) = query_json(rpc, &["-no-ack", "uptime"]);
        assert!(acks.is_empty(), "no acks were asked for via {asker}");
        // Relayed copies of each answer arrive too; each member still counts once.
        let (acks, resp) = query_json(rpc, &["-relay-factor=1", "uptime", "r"]);
        assert_eq!((acks.len(), resp.len()), (2, 2), "relay factor via {asker}: {resp:?}");
    }
    // Serf's own query names are refused, as the Go agent refuses them.
    for rpc in [m.rpc, go.rpc] {
        let out = serf_cli(rpc, &["query", "_serf_install-key", "x"]);
        assert!(
            !out.status.success() && text(&out).contains("Queries cannot contain the '_serf_' prefix"),
            "{}",
            text(&out)
        );
    }
    // A bad tag regexp is a clear error from muster (the Go agent sends it and nobody answers).
    let out = serf_cli(m.rpc, &["query", "-tag", "role=([", "uptime"]);
    assert!(
        !out.status.success() && text(&out).contains("invalid regexp in the query filter for tag \"role\""),
        "{}",
        text(&out)
    );
}

#[test]
fn serf_tags_set_and_delete_through_muster_gossip_like_the_go_agent() {
    // Proves `serf tags -set/-delete` against muster changes its gossiped tags as the same
    // command changes the Go agent's, that they survive a restart, and that muster's own
    // cluster tags are refused with a clear message.
    let (go, m, _) = cluster(&[], &["--tag", "zone=a"], &[]);
    for (who, rpc) in [("m1", m.rpc), ("go1", go.rpc)] {
        let out = serf_cli(rpc, &["tags", "-set", "color=blue", "-set", "size=xl"]);
        assert!(out.status.success(), "{who}: {}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Successfully updated agent tags", "{who}");
        for seen_by in [m.rpc, go.rpc] {
            wait_for(CONVERGE, &format!("{who}'s new tags everywhere"), || {
                let t = tags_on(seen_by, who)?;
                (t.get("color").map(String::as_str) == Some("blue")
                    && t.get("size").map(String::as_str) == Some("xl"))
                .then_some(())
            });
        }
        let out = serf_cli(rpc, &["tags", "-delete", "color"]);
        assert!(out.status.success(), "{who}: {}", text(&out));
        wait_for(CONVERGE, &format!("{who}'s deleted tag gone on the other agent"), || {
            let other = if who == "m1" { go.rpc } else { m.rpc };
            let t = tags_on(other, who)?;
            (!t.contains_key("color") && t.contains_key("size")).then_some(())
        });
    }
    let t = tags_on(go.rpc, "m1").unwrap();
    assert_eq!(t.get("zone").map(String::as_str), Some("a"), "the node's own tags stay: {t:?}");
    let out = serf_cli(m.rpc, &["tags", "-set", "raft_id=1"]);
    assert!(
        !out.status.success() && text(&out).contains("tag \"raft_id\" is managed by muster"),
        "{}",
        text(&out)
    );
    let out = serf_cli(m.rpc, &["tags", "-delete", "cluster_id"]);
    assert!(!out.status.success() && text(&out).contains("is managed by muster"), "{}", text(&out));

    // The tags set over RPC are kept in the data dir.
    let Muster { dir, proc: mut p, gossip, http, rpc, .. } = m;
    p.signal("TERM");
    p.wait_exit(Duration::from_secs(20));
    let bind = go.bind.to_string();
    let ports = Some((gossip.port(), http.port(), rpc.port()));
    let m = Muster::start_in("m1", &["--profile", "local", "--join", &bind, "--tag", "zone=a"], dir, ports);
    wait_for(CONVERGE, "the restarted m1 to gossip size=xl again", || {
        (alive_on(go.rpc, "m1").is_some()
            && tags_on(go.rpc, "m1")?.get("size").map(String::as_str) == Some("xl"))
        .then_some(())
    });
    drop(m);
}

#[test]
fn serf_force_leave_through_muster_marks_a_failed_member_left_and_prune_erases_it() {
    // Proves `serf force-leave` against muster turns a dead Go agent `left` on every member,
    // `-prune` removes another from every member list, and an unknown name is an error.
    let (go, m, mut others) = cluster(&[], &[], &["go2", "go3"]);
    for o in &mut others {
        o.proc.kill9();
    }
    for n in ["go2", "go3"] {
        wait_for(Duration::from_secs(60), &format!("{n} failed on m1 and go1"), || {
            (status_on(m.rpc, n)? == "failed" && status_on(go.rpc, n)? == "failed").then_some(())
        });
    }
    let out = serf_cli(m.rpc, &["force-leave", "go2"]);
    assert!(out.status.success() && text(&out).trim().is_empty(), "{}", text(&out));
    for rpc in [m.rpc, go.rpc] {
        wait_for(CONVERGE, "go2 left everywhere", || (status_on(rpc, "go2")? == "left").then_some(()));
    }
    let out = serf_cli(m.rpc, &["force-leave", "-prune", "go3"]);
    assert!(out.status.success(), "{}", text(&out));
    let gone = |rpc| serf_members(rpc).ok().filter(|ms| !ms.iter().any(|x| x["name"] == "go3"));
    let end = Instant::now() + CONVERGE;
    while (gone(m.rpc).is_none() || gone(go.rpc).is_none()) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    if gone(m.rpc).is_none() || gone(go.rpc).is_none() {
        let go3 = |rpc| serf_members(rpc).ok().and_then(|ms| ms.into_iter().find(|x| x["name"] == "go3"));
        let lines = |t: String| {
            t.lines().filter(|l| l.contains("go3")).map(String::from).collect::<Vec<_>>().join("\n")
        };
        panic!(
            "go3 not gone from every member list:\nm1 sees {:?}\ngo1 sees {:?}\nm1 log:\n{}\ngo1 log:\n{}",
            go3(m.rpc),
            go3(go.rpc),
            lines(m.log_text()),
            lines(go.log_text())
        );
    }
    let out = serf_cli(m.rpc, &["force-leave", "nobody"]);
    assert!(!out.status.success() && text(&out).contains("no member named \"nobody\""), "{}", text(&out));
}

/// A handler that records Serf's environment and stdin per event and answers queries.
fn recording_handler(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let out = dir.join(format!("{name}-events"));
    std::fs::create_dir_all(&out).unwrap();
    let body = format!(
        "#!/bin/sh\nf={}/$SERF_EVENT-$SERF_USER_EVENT$SERF_QUERY_NAME\n\
         {{ echo ---; env | grep '^SERF_' | sort; echo stdin:; cat; }} >> \"$f\"\n\
         [ \"$SERF_EVENT\" = query ] && echo \"answer from $SERF_SELF_NAME\"\nexit 0\n",
        out.display()
    );
    (executable(&dir.join(format!("{name}.sh")), &body), out)
}

/// The last record in `dir/file`: its SERF_ variables and its stdin.
fn last_record(dir: &Path, file: &str, must_contain: &str) -> Option<(BTreeMap<String, String>, String)> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    let rec = text.split("---\n").filter(|r| r.contains(must_contain)).last()?;
    let (env, stdin) = rec.split_once("stdin:\n")?;
    let env =
        env.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Some((env, stdin.to_string()))
}

#[test]
fn an_event_handler_written_for_go_agents_sees_the_same_environment_under_muster() {
    // Proves one script, run as the event handler of a Go agent and of muster, gets the same
    // Serf variables and stdin for a member-join, a user event and a query, and that its
    // stdout answers the query on both.
    let dir = tempfile::tempdir().unwrap();
    let (go_script, go_out) = recording_handler(dir.path(), "go");
    let (mu_script, mu_out) = recording_handler(dir.path(), "mu");
    let (go, m, _) = cluster(
        &[&format!("-event-handler={}", go_script.display()), "-tag", "role=web", "-tag", "dc-name=east"],
        &["--event-handler", &mu_script.display().to_string(), "--tag", "role=web", "--tag", "dc-name=east"],
        &[],
    );
    let _go2 = SerfAgent::start("go2", &[&format!("-join={}", go.bind), "-tag", "role=cache"]);
    let joined = |d: &Path| last_record(d, "member-join-", "go2\t");
    let (go_env, go_stdin) = wait_for(CONVERGE, "go1's handler to see go2 join", || joined(&go_out));
    let (mu_env, mu_stdin) = wait_for(CONVERGE, "m1's handler to see go2 join", || joined(&mu_out));
    // Both agents coalesce member events, so a batch may hold other members too; go2's line
    // is the same on both.
    let line = |stdin: &str| stdin.lines().find(|l| l.starts_with("go2\t")).map(String::from);
    assert_eq!(line(&go_stdin), line(&mu_stdin), "member-join stdin");
    assert_eq!(line(&go_stdin).as_deref(), Some("go2\t127.0.0.1\tcache\trole=cache"), "{go_stdin:?}");
    let shared = ["SERF_EVENT", "SERF_SELF_ROLE", "SERF_TAG_ROLE", "SERF_TAG_DC_NAME"];
    let pick = |e: &BTreeMap<String, String>, keys: &[&str]| {
        keys.iter().map(|k| (k.to_string(), e.get(*k).cloned())).collect::<Vec<_>>()
    };
    assert_eq!(pick(&go_env, &shared), pick(&mu_env, &shared), "member-join env");
    assert_eq!((go_env["SERF_SELF_NAME"].as_str(), mu_env["SERF_SELF_NAME"].as_str()), ("go1", "m1"));

    let out = serf_cli(m.rpc, &["event", "deploy", "v42"]);
    assert!(out.status.success(), "{}", text(&out));
    let user = |d: &Path| last_record(d, "user-deploy", "v42");
    let (go_env, go_stdin) = wait_for(CONVERGE, "go1's handler to see the user event", || user(&go_out));
    let (mu_env, mu_stdin) = wait_for(CONVERGE, "m1's handler to see the user event", || user(&mu_out));
    let keys = ["SERF_EVENT", "SERF_USER_EVENT", "SERF_USER_LTIME", "SERF_SELF_ROLE", "SERF_TAG_DC_NAME"];
    assert_eq!(pick(&go_env, &keys), pick(&mu_env, &keys), "user event env");
    assert_eq!((go_stdin.as_str(), mu_stdin.as_str()), ("v42\n", "v42\n"));

    let (_, resp) = query_json(go.rpc, &["-node=go1", "-node=m1", "status", "please"]);
    assert_eq!(resp.get("go1").map(String::as_str), Some("answer from go1\n"), "{resp:?}");
    assert_eq!(resp.get("m1").map(String::as_str), Some("answer from m1\n"), "{resp:?}");
    let q = |d: &Path| last_record(d, "query-status", "please");
    let (go_env, go_stdin) = wait_for(CONVERGE, "go1's query record", || q(&go_out));
    let (mu_env, mu_stdin) = wait_for(CONVERGE, "m1's query record", || q(&mu_out));
    let keys = ["SERF_EVENT", "SERF_QUERY_NAME", "SERF_QUERY_LTIME", "SERF_SELF_ROLE"];
    assert_eq!(pick(&go_env, &keys), pick(&mu_env, &keys), "query env");
    assert_eq!(go_stdin, mu_stdin);
    assert!(!go_env.contains_key("SERF_USER_EVENT") && !mu_env.contains_key("SERF_USER_EVENT"));
}

#[test]
fn pypi_serfclient_lists_members_sends_events_and_streams_against_muster() {
    // Proves a Serf client library (PyPI `serfclient`) works against muster as against the Go
    // agent: members, event, and a stream that delivers the event.
    let (go, m, _) = cluster(&[], &[], &[]);
    let script = r#"
import sys, serfclient, threading, time
def g(d, k):
    # msgpack 1.x gives str keys, older releases bytes.
    return d[k] if k in d else d[k.encode()]
def s(v):
    return v.decode() if isinstance(v, bytes) else v
host, port = sys.argv[1].rsplit(':', 1)
c = serfclient.SerfClient(host=host, port=int(port), timeout=10)
names = sorted(s(g(m, 'Name')) for m in g(c.members().body, 'Members'))
print('members', ','.join(names))
st = serfclient.SerfClient(host=host, port=int(port), timeout=10)
def fire():
    time.sleep(1.0)
    serfclient.SerfClient(host=host, port=int(port)).event('py-ev', 'hello', coalesce=False)
threading.Thread(target=fire, daemon=True).start()
for r in st.stream('user:py-ev').body:
    for part in (r.head, r.body):
        if isinstance(part, dict) and s(part.get('Name', part.get(b'Name'))) == 'py-ev':
            print('event', 'py-ev', s(g(part, 'Payload')))
            sys.exit(0)
"#;
    for (who, rpc) in [("go1", go.rpc), ("m1", m.rpc)] {
        let out = Command::new("python3")
            .args(["-c", script, &rpc.to_string()])
            .output()
            .expect("python3 with serfclient (make test installs it)");
        let printed = text(&out);
        assert!(out.status.success(), "{who}: {printed}");
        assert!(printed.contains("members go1,m1"), "{who}: {printed}");
        assert!(printed.contains("event py-ev hello"), "{who}: {printed}");
    }
}

/// `serf keys -list` as key → "[n/total]".
fn key_list(rpc: std::net::SocketAddr) -> BTreeMap<String, String> {
    let out = serf_cli(rpc, &["keys", "-list"]);
    assert!(out.status.success(), "keys -list via {rpc}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(" ["))
        .map(|(k, n)| (k.trim().to_string(), format!("[{n}")))
        .collect()
}

#[test]
fn a_key_rotation_across_muster_nodes_and_go_agents_keeps_gossip_flowing() {
    // Proves install → use → remove of a gossip key through the `serf` CLI, alternating muster
    // and a Go agent as the asker, reaches 2 muster nodes and 2 Go agents, prints what the Go
    // agent prints, loses no user event sent during the rotation, and survives a restart.
    let key1 = String::from_utf8(Command::new("serf").arg("keygen").output().unwrap().stdout).unwrap();
    let key2 =
        String::from_utf8(Command::new(common::muster_bin()).arg("keygen").output().unwrap().stdout).unwrap();
    let (key1, key2) = (key1.trim().to_string(), key2.trim().to_string());
    let dir = tempfile::tempdir().unwrap();
    let enc = format!("-encrypt={key1}");
    let mut handlers = Vec::new();
    let mut seen = Vec::new();
    for n in ["go1", "go2", "m1", "m2"] {
        let out = dir.path().join(format!("{n}.events"));
        let body = format!("#!/bin/sh\necho \"$SERF_USER_EVENT\" >> {}\n", out.display());
        handlers.push(executable(&dir.path().join(format!("{n}.sh")), &body));
        seen.push(out);
    }
    let go1 = SerfAgent::start("go1", &[&enc, &format!("-event-handler=user={}", handlers[0].display())]);
    let join = go1.bind.to_string();
    let go2 = SerfAgent::start(
        "go2",
        &[&enc, &format!("-join={join}"), &format!("-event-handler=user={}", handlers[1].display())],
    );
    let mu = |name: &str, h: &Path| {
        let h = format!("user={}", h.display());
        Muster::start(
            name,
            &["--profile", "local", "--encrypt", &key1, "--join", &join, "--event-handler", &h],
        )
    };
    let m1 = mu("m1", &handlers[2]);
    let m2 = mu("m2", &handlers[3]);
    let rpcs = [go1.rpc, go2.rpc, m1.rpc, m2.rpc];
    for rpc in rpcs {
        for n in ["go1", "go2", "m1", "m2"] {
            wait_for(CONVERGE, &format!("{n} alive everywhere"), || alive_on(rpc, n));
        }
    }
    let before = key_list(m1.rpc);
    assert_eq!(before, key_list(go1.rpc), "the same listing from muster and from the Go agent");
    assert_eq!(before, BTreeMap::from([(key1.clone(), "[4/4]".to_string())]));

    // Gossip throughout: a user event every 200 ms from alternating agents.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0usize;
            let end = Instant::now() + Duration::from_secs(120);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end && sent < 500 {
                let out = serf_cli(rpcs[sent % rpcs.len()], &["event", &format!("tick-{sent}")]);
                assert!(out.status.success(), "tick {sent}: {}", text(&out));
                sent += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            sent
        })
    };
    let step = |rpc, args: &[&str], says: &str| {
        let out = serf_cli(rpc, args);
        assert!(out.status.success() && text(&out).contains(says), "serf {args:?}: {}", text(&out));
    };
    step(m1.rpc, &["keys", "-install", &key2], "Successfully installed key!");
    let both = BTreeMap::from([(key1.clone(), "[4/4]".to_string()), (key2.clone(), "[4/4]".to_string())]);
    assert_eq!(key_list(go2.rpc), both);
    assert_eq!(key_list(m2.rpc), both);
    step(go1.rpc, &["keys", "-use", &key2], "Successfully changed primary key!");
    // Removing the primary fails on every member, through muster as through Go.
    for rpc in [m1.rpc, go1.rpc] {
        let out = serf_cli(rpc, &["keys", "-remove", &key2]);
        assert!(!out.status.success() && text(&out).contains("4/4 nodes reported failure"), "{}", text(&out));
    }
    step(m2.rpc, &["keys", "-remove", &key1], "Successfully removed key!");
    let after = BTreeMap::from([(key2.clone(), "[4/4]".to_string())]);
    assert_eq!(key_list(m1.rpc), after);
    assert_eq!(key_list(go2.rpc), after);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = ticker.join().unwrap();
    assert!(sent >= 10, "only {sent} events went out during the rotation");
    for (n, file) in ["go1", "go2", "m1", "m2"].iter().zip(&seen) {
        let got: BTreeSet<String> = wait_for(CONVERGE, &format!("{n} to see every tick"), || {
            let t = std::fs::read_to_string(file).ok()?;
            let got: BTreeSet<String> =
                t.lines().filter(|l| l.starts_with("tick-")).map(String::from).collect();
            (got.len() == sent).then_some(got)
        });
        assert_eq!(got.len(), sent, "{n}");
    }

    // The rotated keyring is what a restarted muster node comes back with.
    let keyring = m1.dir.path().join("data/serf/local.keyring");
    let ring: Vec<String> = serde_json::from_str(&std::fs::read_to_string(&keyring).unwrap()).unwrap();
    assert_eq!(ring, vec![key2.clone()]);
    let Muster { dir: d1, proc: mut p1, gossip, http, rpc, .. } = m1;
    p1.signal("TERM");
    p1.wait_exit(Duration::from_secs(20));
    let ports = Some((gossip.port(), http.port(), rpc.port()));
    let m1 = Muster::start_in("m1", &["--profile", "local", "--encrypt", &key1, "--join", &join], d1, ports);
    wait_for(CONVERGE, "the restarted m1 alive on go2 with the new key", || alive_on(go2.rpc, "m1"));
    assert!(m1.log_text().contains("the --encrypt key is not in the keyring file"), "{}", m1.log_text());
}

#[test]
fn a_stream_client_answers_queries_with_respond_on_muster_as_on_the_go_agent() {
    // Proves the RPC `respond`: a client streaming `query:greet` from muster and one from the
    // Go agent each answer the query a `serf query` sent; a second answer and an unknown id
    // are refused by both.
    use muster::serf_rpc::client::RpcClient;
    use muster::serf_rpc::proto::RespondRequest;
    let (go, m, _) = cluster(&[], &[], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let wait = Duration::from_secs(10);
    let mut clients = rt.block_on(async {
        let mut cm = RpcClient::connect(m.rpc, None, wait).await.unwrap();
        let mut cg = RpcClient::connect(go.rpc, None, wait).await.unwrap();
        cm.stream("query:greet").await.unwrap();
        cg.stream("query:greet").await.unwrap();
        [("m1", cm), ("go1", cg)]
    });
    let go_rpc = go.rpc;
    let asker = std::thread::spawn(move || query_json(go_rpc, &["-timeout=6s", "greet", "hi"]));
    rt.block_on(async {
        for (who, c) in clients.iter_mut() {
            let r =
                c.next_record(CONVERGE).await.unwrap().unwrap_or_else(|| panic!("{who}: no query record"));
            assert_eq!(
                (r.event.as_str(), r.name.as_str(), r.payload.as_slice()),
                ("query", "greet", &b"hi"[..]),
                "{who}"
            );
            let answer =
                RespondRequest { id: r.id, payload: Some(format!("hello from {who}").into_bytes().into()) };
            c.call::<_, ()>("respond", Some(&answer), false).await.unwrap_or_else(|e| panic!("{who}: {e}"));
            let again = c.call::<_, ()>("respond", Some(&answer), false).await;
            assert!(again.unwrap_err().to_string().contains("response already sent"), "{who}");
            let unknown = RespondRequest { id: 999, payload: None };
            let e = c.call::<_, ()>("respond", Some(&unknown), false).await.unwrap_err();
            assert!(e.to_string().contains("No pending queries matching ID"), "{who}: {e}");
        }
    });
    let (_, resp) = asker.join().unwrap();
    assert_eq!(resp.get("m1").map(String::as_str), Some("hello from m1"), "{resp:?}");
    assert_eq!(resp.get("go1").map(String::as_str), Some("hello from go1"), "{resp:?}");
}

#[test]
fn a_second_node_with_a_taken_name_loses_serfs_conflict_vote_and_stops() {
    // Proves name-conflict resolution: a muster node started under a name the cluster already
    // knows at another address asks the cluster (`_serf_conflict`), finds itself in the
    // minority and exits with an error, while the first holder stays alive on every member.
    let (go, m, _) = cluster(&[], &[], &["go2"]);
    let bind = go.bind.to_string();
    let dir = tempfile::tempdir().unwrap();
    let (g, h, r) = (common::free_port(), common::free_port(), common::free_port());
    let mut cmd = Command::new(common::muster_bin());
    cmd.args(["agent", "--node", "m1", "--profile", "local", "--discovery", "serf", "--join", &bind])
        .args(["--bind", &format!("127.0.0.1:{g}"), "--http-addr", &format!("127.0.0.1:{h}")])
        .args(["--rpc-addr", &format!("127.0.0.1:{r}"), "--data-dir"])
        .arg(dir.path().join("data"))
        .env("LOG_FORMAT", "text")
        .env("LOG_NO_COLOR", "1")
        .env_remove("SERF_JOIN");
    let mut twin = common::Proc::spawn(&mut cmd, dir.path().join("twin.log"));
    let status = twin.wait_exit(Duration::from_secs(60));
    let log = twin.log_text();
    assert!(!status.success(), "the twin must fail: {log}");
    assert!(log.contains("minority in the name conflict"), "{log}");
    assert!(log.contains("start this node with a unique --node"), "{log}");
    for rpc in [go.rpc, m.rpc] {
        let members = serf_members(rpc).unwrap();
        let m1 = members.iter().find(|x| x["name"] == "m1").unwrap();
        assert_eq!(
            (m1["addr"].as_str(), m1["status"].as_str()),
            (Some(m.gossip.to_string().as_str()), Some("alive"))
        );
    }
}

#[test]
fn serf_info_from_muster_has_the_go_agents_sections_and_keys() {
    // Proves `serf info -format=json` against muster prints the same sections and `serf` keys
    // as against the Go agent in the same encrypted cluster, with the same clocks after they
    // settle, `encrypted = true` and the event handlers listed as Serf lists them.
    let key = String::from_utf8(Command::new("serf").arg("keygen").output().unwrap().stdout).unwrap();
    let key = key.trim().to_string();
    let (go, m, _) = cluster(
        &[&format!("-encrypt={key}"), "-event-handler=query:uptime=/bin/true"],
        &["--encrypt", &key, "--event-handler", "query:uptime=/bin/true"],
        &[],
    );
    let info = |rpc| {
        let out = serf_cli(rpc, &["info", "-format=json"]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
    };
    let keys =
        |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<BTreeSet<_>>()).unwrap_or_default();
    let out = serf_cli(go.rpc, &["event", "settle", "x"]);
    assert!(out.status.success(), "{}", text(&out));
    let (g, mu) = wait_for(CONVERGE, "both agents to report the same event clock", || {
        let (g, mu) = (info(go.rpc), info(m.rpc));
        (g["serf"]["event_time"] == mu["serf"]["event_time"]).then_some((g, mu))
    });
    assert_eq!(keys(&g), keys(&mu), "sections");
    assert_eq!(keys(&g["serf"]), keys(&mu["serf"]), "serf keys");
    assert_eq!(
        (g["serf"]["encrypted"].as_str(), mu["serf"]["encrypted"].as_str()),
        (Some("true"), Some("true"))
    );
    assert_eq!(g["event_handlers"], mu["event_handlers"]);
    assert_eq!(mu["event_handlers"]["query:uptime"], "/bin/true");
}
