//! muster nodes and real HashiCorp `serf agent`s in one cluster: joins both ways, tags, user
//! events, failure detection, graceful leave, encryption, larger mixed clusters and rejoin
//! from the snapshot. Every process runs on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const CONVERGE: Duration = Duration::from_secs(30);
/// The Go agents here run without `-encrypt` (Serf's default), so the muster nodes that gossip
/// with them opt out of the lan profile's gossip key.
const CLEAR_TEXT: &str = "--insecure-gossip";
/// LAN failure detection is about 6 s in Serf; leave generous room on a loaded 2-core machine.
const DETECT: Duration = Duration::from_secs(45);

fn alive_with_tag(m: Option<serde_json::Value>, k: &str, v: &str) -> Option<()> {
    let m = m?;
    (m["status"] == "alive" && m["tags"][k] == v).then_some(())
}

#[test]
fn muster_joins_a_serf_agent_and_each_lists_the_other_alive_with_tags() {
    // Proves a muster node joins a Go agent: `serf members` shows it alive with its tags and
    // `muster members` shows the agent alive with its tags.
    let go = SerfAgent::start("go1", &["-tag", "role=web"]);
    let m = Muster::start("m1", &[CLEAR_TEXT, "--join", &go.bind.to_string(), "--tag", "zone=a"]);
    wait_for(CONVERGE, "go1 to list m1 alive with zone=a", || alive_with_tag(go.member("m1"), "zone", "a"));
    wait_for(CONVERGE, "m1 to list go1 alive with role=web", || {
        alive_with_tag(m.member("go1"), "role", "web")
    });
    let detailed = go.cli(&["members", "-detailed"]);
    let text = String::from_utf8_lossy(&detailed.stdout);
    assert!(
        text.contains("m1") && text.contains("alive") && text.contains("zone=a"),
        "serf members -detailed:\n{text}"
    );
}

#[test]
fn a_serf_agent_joins_muster() {
    // Proves the reverse join: a Go agent started with -join=<muster> becomes a member of both.
    let m = Muster::start("m1", &[CLEAR_TEXT, "--tag", "zone=b"]);
    let go = SerfAgent::start("go1", &["-tag", "role=db", &format!("-join={}", m.gossip)]);
    wait_for(CONVERGE, "m1 to list go1 alive with role=db", || alive_with_tag(m.member("go1"), "role", "db"));
    wait_for(CONVERGE, "go1 to list m1 alive with zone=b", || alive_with_tag(go.member("m1"), "zone", "b"));
}

#[test]
fn user_events_cross_both_ways() {
    // Proves user events: `serf event` on the Go agent is received by muster, and an event
    // sent through muster reaches the Go agent's event handler.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("events.txt");
    let script = handler_script(tmp.path(), &out);
    let go = SerfAgent::start("go1", &[&format!("-event-handler=user={}", script.display())]);
    let m = Muster::start("m1", &[CLEAR_TEXT, "--join", &go.bind.to_string()]);
    wait_for(CONVERGE, "go1 to list m1 alive", || (go.status_of("m1")? == "alive").then_some(()));

    let sent = go.cli(&["event", "from-go", "payload-1"]);
    assert!(sent.status.success(), "serf event failed: {}", String::from_utf8_lossy(&sent.stderr));
    wait_for(CONVERGE, "muster to log the user event from-go", || {
        let log = m.log_text();
        log.lines()
            .any(|l| l.contains("serf: user event") && l.contains("from-go") && l.contains("payload-1"))
            .then_some(())
    });

    let sent = Command::new(muster_bin())
        .args(["event", "--rpc-addr", &m.rpc.to_string(), "from-muster", "payload-2"])
        .output()
        .unwrap();
    assert!(sent.status.success(), "muster event failed: {}", String::from_utf8_lossy(&sent.stderr));
    wait_for(CONVERGE, "the Go agent's handler to see from-muster", || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        text.lines().any(|l| l.starts_with("user from-muster") && l.contains("payload-2")).then_some(())
    });
}

#[test]
fn oversized_user_event_is_refused_with_a_clear_error() {
    // Proves the 512-byte limit: name + payload over it is an error that names the limit.
    let key = keygen();
    let m = Muster::start("m1", &["--encrypt", &key]);
    let big = "x".repeat(600);
    let out = Command::new(muster_bin())
        .args(["event", "--rpc-addr", &m.rpc.to_string(), "big", &big])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("512"), "error should name the limit: {err}");
}

#[test]
fn kill_minus_nine_is_detected_as_failed_both_ways() {
    // Proves failure detection across implementations: kill -9 of muster → the Go agent marks
    // it failed; kill -9 of a Go agent → muster marks it failed.
    let go1 = SerfAgent::start("go1", &[]);
    let mut go2 = SerfAgent::start("go2", &[&format!("-join={}", go1.bind)]);
    let mut m = Muster::start("m1", &[CLEAR_TEXT, "--join", &go1.bind.to_string()]);
    wait_for(CONVERGE, "all three alive on m1", || {
        (m.status_of("go1")? == "alive" && m.status_of("go2")? == "alive").then_some(())
    });
    wait_for(CONVERGE, "go1 to list m1 alive", || (go1.status_of("m1")? == "alive").then_some(()));

    go2.proc.kill9();
    wait_for(DETECT, "m1 to mark go2 failed", || (m.status_of("go2")? == "failed").then_some(()));

    m.proc.kill9();
    wait_for(DETECT, "go1 to mark m1 failed", || (go1.status_of("m1")? == "failed").then_some(()));
}

#[test]
fn graceful_leave_shows_left_both_ways() {
    // Proves graceful leave: SIGTERM to muster → the Go agent shows it `left`; `serf leave` on
    // the agent → muster shows it `left`.
    let go1 = SerfAgent::start("go1", &[]);
    let mut go2 = SerfAgent::start("go2", &[&format!("-join={}", go1.bind)]);
    let mut m = Muster::start("m1", &[CLEAR_TEXT, "--join", &go1.bind.to_string()]);
    wait_for(CONVERGE, "m1 to list go2 alive", || (m.status_of("go2")? == "alive").then_some(()));
    wait_for(CONVERGE, "go1 to list m1 alive", || (go1.status_of("m1")? == "alive").then_some(()));

    let left = go2.cli(&["leave"]);
    assert!(left.status.success());
    go2.proc.wait_exit(Duration::from_secs(20));
    wait_for(CONVERGE, "m1 to show go2 left", || (m.status_of("go2")? == "left").then_some(()));

    m.proc.signal("TERM");
    let st = m.proc.wait_exit(Duration::from_secs(30));
    assert!(st.success(), "muster exits 0 after SIGTERM, got {st:?}");
    let seen = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(CONVERGE, "go1 to show m1 left", || (go1.status_of("m1")? == "left").then_some(()));
    }));
    if seen.is_err() {
        panic!("go1 never showed m1 left\n--- m1 ---\n{}\n--- go1 ---\n{}", m.log_text(), go1.log_text());
    }
}

fn keygen() -> String {
    let out = Command::new(muster_bin()).arg("keygen").output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn encryption_same_key_joins_other_key_or_none_does_not() {
    // Proves the keyring: same -encrypt key talks; a different key or no key joins nothing,
    // and both sides log why.
    let key = keygen();
    let other = keygen();
    assert_ne!(key, other);
    let go = SerfAgent::start("go1", &[&format!("-encrypt={key}")]);
    let m1 = Muster::start("m1", &["--encrypt", &key, "--join", &go.bind.to_string()]);
    wait_for(CONVERGE, "go1 to list encrypted m1 alive", || (go.status_of("m1")? == "alive").then_some(()));
    wait_for(CONVERGE, "m1 to list go1 alive", || (m1.status_of("go1")? == "alive").then_some(()));

    let retry = ["--retry-join", &go.bind.to_string(), "--retry-interval", "500ms"];
    let wrong = Muster::start("m2", &[&["--encrypt", other.as_str()], &retry[..]].concat());
    let none = Muster::start("m3", &[&[CLEAR_TEXT][..], &retry[..]].concat());
    wait_for(CONVERGE, "m2 and m3 to log failed join attempts", || {
        (wrong.log_text().contains("retry-join: attempt failed")
            && none.log_text().contains("retry-join: attempt failed"))
        .then_some(())
    });
    wait_for(CONVERGE, "the Go agent to log why it refused them", || {
        let log = go.log_text().to_lowercase();
        (log.contains("decrypt") || log.contains("encrypt")).then_some(())
    });
    assert!(
        go.status_of("m2").is_none() && go.status_of("m3").is_none(),
        "no keyless or wrong-key member joined"
    );
    assert_eq!(wrong.try_members().unwrap().len(), 1);
    assert_eq!(none.try_members().unwrap().len(), 1);
}

#[test]
fn five_node_mixed_cluster_converges() {
    // Proves a mixed cluster of 3 muster nodes and 2 Go agents converges: every member lists
    // all five alive.
    let go1 = SerfAgent::start("go1", &[]);
    let go2 = SerfAgent::start("go2", &[&format!("-join={}", go1.bind)]);
    let ms: Vec<Muster> = (1..=3)
        .map(|i| Muster::start(&format!("m{i}"), &[CLEAR_TEXT, "--join", &go1.bind.to_string()]))
        .collect();
    let names = ["go1", "go2", "m1", "m2", "m3"];
    let all_alive = |list: Vec<serde_json::Value>| {
        names.iter().all(|n| list.iter().any(|m| m["name"] == *n && m["status"] == "alive")).then_some(())
    };
    for a in [&go1, &go2] {
        wait_for(CONVERGE, &format!("{} to list all five alive", a.name), || {
            all_alive(a.try_members().ok()?)
        });
    }
    for m in &ms {
        wait_for(CONVERGE, &format!("{} to list all five alive", m.name), || {
            all_alive(m.try_members().ok()?)
        });
    }
}

#[test]
fn ten_muster_nodes_converge_and_detect_a_killed_node() {
    // Proves a 10-node muster-only cluster (one gossip key, as lan nodes need) converges and
    // every survivor marks a kill -9'd node failed.
    let key = keygen();
    let first = Muster::start("n0", &["--encrypt", &key]);
    let join = ["--encrypt", &key, "--join", &first.gossip.to_string()];
    let mut rest: Vec<Muster> = (1..10).map(|i| Muster::start(&format!("n{i}"), &join)).collect();
    let alive_count =
        |m: &Muster| m.try_members().ok().map(|l| l.iter().filter(|x| x["status"] == "alive").count());
    wait_for(Duration::from_secs(60), "all 10 nodes to list 10 alive", || {
        (alive_count(&first)? == 10 && rest.iter().all(|m| alive_count(m) == Some(10))).then_some(())
    });
    let mut victim = rest.pop().unwrap();
    victim.proc.kill9();
    wait_for(DETECT, "every survivor to mark n9 failed", || {
        (first.status_of("n9")? == "failed"
            && rest.iter().all(|m| m.status_of("n9").as_deref() == Some("failed")))
        .then_some(())
    });
}

#[test]
fn a_restarted_node_rejoins_from_its_snapshot() {
    // Proves the snapshot: a muster node restarted with its data dir and no join flags rejoins
    // the members it knew.
    let go = SerfAgent::start("go1", &[]);
    let m = Muster::start("m1", &[CLEAR_TEXT, "--join", &go.bind.to_string()]);
    wait_for(CONVERGE, "m1 to list go1 alive", || (m.status_of("go1")? == "alive").then_some(()));
    // Give the snapshot writer (once a second) a moment, then crash.
    wait_for(Duration::from_secs(10), "the snapshot to name go1", || {
        let s = std::fs::read_to_string(m.dir.path().join("data/serf/local.snapshot")).ok()?;
        s.contains("alive: go1").then_some(())
    });
    let ports = (m.gossip.port(), m.http.port(), m.rpc.port());
    let Muster { dir, mut proc, .. } = m;
    proc.kill9();
    let m2 = Muster::start_in("m1", &[CLEAR_TEXT], dir, Some(ports));
    wait_for(CONVERGE, "restarted m1 to list go1 alive", || (m2.status_of("go1")? == "alive").then_some(()));
    wait_for(DETECT, "go1 to list m1 alive again", || (go.status_of("m1")? == "alive").then_some(()));
}

#[test]
fn a_seed_node_restarted_gracefully_rejoins_its_cluster_instead_of_staying_alone() {
    // Proves --rejoin-after-leave: a node stopped gracefully (SIGTERM: it leaves) and started
    // again with its data dir and no join flags rejoins the members it knew (the default, so a
    // restart never leaves it alone); with --rejoin-after-leave=false it stays alone, as Serf
    // does without -rejoin.
    let go = SerfAgent::start("go1", &[]);
    let m = Muster::start("m1", &[CLEAR_TEXT, "--join", &go.bind.to_string()]);
    wait_for(CONVERGE, "m1 to list go1 alive", || (m.status_of("go1")? == "alive").then_some(()));
    let mut m = m;
    for rejoin in [true, false] {
        wait_for(Duration::from_secs(10), "the snapshot to name go1", || {
            let s = std::fs::read_to_string(m.dir.path().join("data/serf/local.snapshot")).ok()?;
            s.contains("alive: go1").then_some(())
        });
        let ports = (m.gossip.port(), m.http.port(), m.rpc.port());
        m.proc.signal("TERM");
        assert!(m.proc.wait_exit(Duration::from_secs(30)).success());
        wait_for(DETECT, "go1 to list m1 left", || (go.status_of("m1")? == "left").then_some(()));
        let Muster { dir, .. } = m;
        let flag = if rejoin { "--rejoin-after-leave" } else { "--rejoin-after-leave=false" };
        m = Muster::start_in("m1", &[CLEAR_TEXT, flag], dir, Some(ports));
        if rejoin {
            wait_for(CONVERGE, "restarted m1 to list go1 alive", || {
                (m.status_of("go1")? == "alive").then_some(())
            });
            wait_for(DETECT, "go1 to list m1 alive again", || (go.status_of("m1")? == "alive").then_some(()));
        } else {
            std::thread::sleep(Duration::from_secs(3));
            assert_eq!(m.status_of("go1"), None, "m1 rejoined although told not to: {:?}", m.try_members());
            assert_eq!(go.status_of("m1").as_deref(), Some("left"));
        }
    }
}

#[test]
fn bad_flags_exit_non_zero_naming_the_flag() {
    // Proves flag validation: a bad --role or --encrypt exits non-zero with a message naming it.
    let out = Command::new(muster_bin()).args(["agent", "--role", "boss"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--role") && err.contains("auto"), "{err}");
    let out = Command::new(muster_bin()).args(["agent", "--encrypt", "c2hvcnQ="]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--encrypt"), "{err}");
}
