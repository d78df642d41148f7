//! The real `serf` CLI against a muster node's Serf RPC port (`--rpc-addr`), side by side with
//! a real `serf agent`: members, event, join, leave, info, auth, streams, rtt and
//! get-coordinate, and `muster event` against both. Every process runs on 127.0.0.1 and is killed when its guard drops.
// Helpers outside #[test] functions (here and in `common`) may panic: a failed helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use muster::serf_rpc::client::RpcClient;
use muster::serf_rpc::frame::FrameReader;
use muster::serf_rpc::proto::{self as p, StreamRecord};
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(30);

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn alive(members: Result<Vec<Value>, String>, name: &str) -> Option<()> {
    members.ok()?.iter().any(|m| m["name"] == name && m["status"] == "alive").then_some(())
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

/// Everything a command printed (the `serf` CLI prints its errors on stdout).
fn printed(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn muster_cli(args: &[&str]) -> Output {
    Command::new(muster_bin()).args(args).output().unwrap()
}

/// A muster node and a Go agent that list each other alive.
fn pair(muster_extra: &[&str], go_extra: &[&str]) -> (SerfAgent, Muster) {
    let go = SerfAgent::start("go1", go_extra);
    let mut extra = vec!["--profile", "local", "--join"];
    let bind = go.bind.to_string();
    extra.push(&bind);
    extra.extend_from_slice(muster_extra);
    let m = Muster::start("m1", &extra);
    wait_for(CONVERGE, "go1 to list m1 alive", || alive(go.try_members(), "m1"));
    wait_for(CONVERGE, "m1's RPC to list go1 alive", || alive(serf_members(m.rpc), "go1"));
    (go, m)
}

#[test]
fn serf_members_json_from_muster_matches_the_go_agents_answer() {
    // Proves `serf members -format=json` against muster prints the same keys and, member by member, the same objects as against the Go agent.
    let (go, m) = pair(&["--tag", "zone=a"], &["-tag", "role=web"]);
    let by_name = |ms: Vec<Value>| {
        ms.into_iter().map(|v| (v["name"].as_str().unwrap_or("").to_string(), v)).collect::<Vec<_>>()
    };
    let from_go = by_name(go.try_members().unwrap());
    let from_muster = wait_for(CONVERGE, "both views to agree on every member", || {
        let ms = by_name(serf_members(m.rpc).ok()?);
        let mut a = ms.clone();
        let mut b = from_go.clone();
        a.sort_by(|x, y| x.0.cmp(&y.0));
        b.sort_by(|x, y| x.0.cmp(&y.0));
        (a == b).then_some(ms)
    });
    assert_eq!(from_muster.len(), 2);
    for (name, v) in &from_muster {
        assert_eq!(
            keys(v),
            ["addr", "name", "port", "protocol", "status", "tags"].map(String::from).into(),
            "{name}: {v}"
        );
        assert_eq!(keys(&v["protocol"]), ["max", "min", "version"].map(String::from).into(), "{name}: {v}");
    }
    let go1 = &from_muster.iter().find(|(n, _)| n == "go1").unwrap().1;
    assert_eq!(go1["addr"], go.bind.to_string());
    assert_eq!(go1["tags"]["role"], "web");
    let m1 = &from_muster.iter().find(|(n, _)| n == "m1").unwrap().1;
    assert_eq!(
        (m1["addr"].as_str(), m1["tags"]["zone"].as_str()),
        (Some(m.gossip.to_string().as_str()), Some("a"))
    );

    // The CLI's filters go through members-filtered; Serf anchors the regexps.
    let out = serf_cli(m.rpc, &["members", "-format=json", "-tag", "role=w.*", "-status=alive"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    let names: Vec<&str> =
        v["members"].as_array().unwrap().iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(names, ["go1"], "{}", text(&out));
    let out = serf_cli(m.rpc, &["members", "-name=m"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "anchored: 'm' must not match m1\n{}",
        text(&out)
    );
}

#[test]
fn serf_event_through_muster_reaches_the_go_agents_handler() {
    // Proves `serf event -rpc-addr=<muster> deploy v1` is gossiped and runs the Go agent's event handler.
    let tmp = tempfile::tempdir().unwrap();
    let out_file = tmp.path().join("events.txt");
    let script = handler_script(tmp.path(), &out_file);
    let (_go, m) = pair(&[], &[&format!("-event-handler=user:deploy={}", script.display())]);
    let sent = serf_cli(m.rpc, &["event", "deploy", "v1"]);
    assert!(sent.status.success(), "{}", text(&sent));
    assert_eq!(
        String::from_utf8_lossy(&sent.stdout).trim(),
        "Event 'deploy' dispatched! Coalescing enabled: true"
    );
    wait_for(CONVERGE, "the Go agent's handler to record `user deploy v1`", || {
        std::fs::read_to_string(&out_file).ok()?.lines().any(|l| l.trim() == "user deploy v1").then_some(())
    });
}

#[test]
fn serf_join_through_muster_joins_the_go_agent() {
    // Proves `serf join -rpc-addr=<muster> <go addr>` answers like the Go agent and the two become members.
    let go = SerfAgent::start("go1", &[]);
    let m = Muster::start("m1", &["--profile", "local"]);
    let out = serf_cli(m.rpc, &["join", &go.bind.to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Successfully joined cluster by contacting 1 nodes."
    );
    wait_for(CONVERGE, "go1 to list m1 alive", || alive(go.try_members(), "m1"));

    let dead = format!("127.0.0.1:{}", free_port());
    let out = serf_cli(m.rpc, &["join", &dead]);
    assert!(!out.status.success(), "joining nothing must fail\n{}", text(&out));
    assert!(printed(&out).contains("Error joining the cluster"), "{}", text(&out));
}

#[test]
fn serf_leave_through_muster_leaves_gracefully() {
    // Proves `serf leave -rpc-addr=<muster>` completes, the Go agent then lists m1 as left, not
    // failed, and the muster process exits 0 afterwards, as a Go agent does.
    let (go, mut m) = pair(&[], &[]);
    let out = serf_cli(m.rpc, &["leave"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Graceful leave complete");
    wait_for(CONVERGE, "go1 to list m1 as left", || (go.status_of("m1")? == "left").then_some(()));
    let st = m.proc.wait_exit(Duration::from_secs(20));
    assert!(st.success(), "muster exits 0 after serf leave, got {st:?}");
}

#[test]
fn serf_info_against_muster_prints_the_sections() {
    // Proves `serf info` exits 0 against muster and prints agent, serf and runtime sections, as text and JSON.
    let m = Muster::start("m1", &["--profile", "local"]);
    let out = serf_cli(m.rpc, &["info"]);
    assert!(out.status.success(), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    for want in [
        "agent:",
        "\tname = m1",
        "serf:",
        "\tmembers = 1",
        "\tmember_time = ",
        "\tevent_time = ",
        "runtime:",
        "tags:",
    ] {
        assert!(s.contains(want), "missing {want:?} in:\n{s}");
    }
    let out = serf_cli(m.rpc, &["info", "-format=json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    for key in ["members", "failed", "left", "member_time", "event_time", "query_time"] {
        assert!(v["serf"][key].is_string(), "serf.{key} in {v}");
    }
}

#[test]
fn an_rpc_auth_token_is_required_when_configured() {
    // Proves --rpc-auth: the CLI without it or with a wrong one is refused with Serf's messages, the right one works.
    let m = Muster::start("m1", &["--profile", "local", "--rpc-auth", "sekrit"]);
    let none = serf_cli(m.rpc, &["members"]);
    assert!(!none.status.success() && printed(&none).contains("Authentication required"), "{}", text(&none));
    let wrong = serf_cli(m.rpc, &["members", "-rpc-auth=nope"]);
    assert!(
        !wrong.status.success() && printed(&wrong).contains("Invalid authentication token"),
        "{}",
        text(&wrong)
    );
    let right = serf_cli(m.rpc, &["members", "-rpc-auth=sekrit"]);
    assert!(
        right.status.success() && String::from_utf8_lossy(&right.stdout).contains("m1"),
        "{}",
        text(&right)
    );
    let ev = muster_cli(&["event", "--rpc-addr", &m.rpc.to_string(), "--rpc-auth", "sekrit", "deploy", "v1"]);
    assert!(ev.status.success(), "{}", text(&ev));
    let ev = muster_cli(&["event", "--rpc-addr", &m.rpc.to_string(), "deploy", "v1"]);
    assert!(
        !ev.status.success() && String::from_utf8_lossy(&ev.stderr).contains("--rpc-auth"),
        "{}",
        text(&ev)
    );
}

#[test]
fn muster_event_speaks_to_muster_and_to_the_go_agent() {
    // Proves `muster event` is a working Serf RPC client: against the Go agent, against muster, and with a clear error when nothing listens.
    let tmp = tempfile::tempdir().unwrap();
    let out_file = tmp.path().join("events.txt");
    let script = handler_script(tmp.path(), &out_file);
    let (go, m) = pair(&[], &[&format!("-event-handler=user={}", script.display())]);
    let via_go = muster_cli(&["event", "--rpc-addr", &go.rpc.to_string(), "from-go-rpc", "p1"]);
    assert!(via_go.status.success(), "{}", text(&via_go));
    assert_eq!(
        String::from_utf8_lossy(&via_go.stdout).trim(),
        "Event 'from-go-rpc' dispatched! Coalescing enabled: true"
    );
    let via_m =
        muster_cli(&["event", "--rpc-addr", &m.rpc.to_string(), "--coalesce=false", "from-muster-rpc", "p2"]);
    assert!(via_m.status.success(), "{}", text(&via_m));
    assert_eq!(
        String::from_utf8_lossy(&via_m.stdout).trim(),
        "Event 'from-muster-rpc' dispatched! Coalescing enabled: false"
    );
    for want in ["user from-go-rpc p1", "user from-muster-rpc p2"] {
        wait_for(CONVERGE, &format!("the Go agent's handler to record `{want}`"), || {
            std::fs::read_to_string(&out_file).ok()?.lines().any(|l| l.trim() == want).then_some(())
        });
    }
    let nobody: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let out = muster_cli(&["event", "--rpc-addr", &nobody.to_string(), "x"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Serf RPC agent answers"), "{}", text(&out));
}

/// The next user-event record on a client's stream.
async fn next_user(c: &mut RpcClient) -> StreamRecord {
    loop {
        match c.next_record(CONVERGE).await.unwrap() {
            Some(r) if r.event == "user" => return r,
            Some(_) => continue,
            None => panic!("no user event within {CONVERGE:?}"),
        }
    }
}

#[test]
fn streams_from_muster_and_the_go_agent_carry_the_same_records() {
    // Proves `stream` against muster yields the records the Go agent streams for the same user event, and member-join.
    let (go, m) = pair(&[], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut from_m = rt.block_on(async {
        let mut from_m = RpcClient::connect(m.rpc, None, Duration::from_secs(10)).await.unwrap();
        let mut from_go = RpcClient::connect(go.rpc, None, Duration::from_secs(10)).await.unwrap();
        from_m.stream("member-join,user:deploy").await.unwrap();
        from_go.stream("member-join,user:deploy").await.unwrap();
        let sent = serf_cli(go.rpc, &["event", "deploy", "v3"]);
        assert!(sent.status.success(), "{}", text(&sent));
        let a = next_user(&mut from_m).await;
        let b = next_user(&mut from_go).await;
        assert_eq!((a.name.as_str(), a.payload.as_slice()), ("deploy", &b"v3"[..]));
        assert_eq!(a, b, "muster's record must equal the Go agent's");
        from_m
    });

    let _go2 = SerfAgent::start("go2", &[&format!("-join={}", m.gossip)]);
    rt.block_on(async {
        loop {
            let r = from_m
                .next_record(CONVERGE)
                .await
                .unwrap()
                .expect("no member-join for go2 within the deadline");
            if let Some(x) = r.members.iter().find(|x| x.name == "go2").filter(|_| r.event == "member-join") {
                assert_eq!((x.status.as_str(), x.addr.len()), ("alive", 4));
                break;
            }
        }
    });
}

/// `serf rtt` against `rpc`: the estimate in ms when it printed `Estimated <a> <-> <b> rtt: X ms`.
fn serf_rtt(rpc: SocketAddr, nodes: &[&str], a: &str, b: &str) -> Option<f64> {
    let mut args = vec!["rtt"];
    args.extend_from_slice(nodes);
    let out = serf_cli(rpc, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("Estimated {a} <-> {b} rtt: ");
    let ms = stdout.trim().strip_prefix(&prefix)?.strip_suffix(" ms")?.parse().ok()?;
    out.status.success().then_some(ms)
}

#[test]
fn serf_rtt_works_against_muster_and_the_go_agent() {
    // Proves Vivaldi coordinates interoperate: each side caches the other's coordinate from probe acks, so `serf rtt` answers a sane loopback estimate (0 < rtt < 100 ms) from both agents' RPC, for two nodes and for one node against the local one.
    let (go, m) = pair(&[], &[]);
    // Probes run every second (Go's LAN config and muster's `local` profile); the first
    // completed probe each way caches the peer's coordinate.
    let cross = wait_for(CONVERGE, "both agents to estimate go1 <-> m1", || {
        Some((serf_rtt(m.rpc, &["go1", "m1"], "go1", "m1")?, serf_rtt(go.rpc, &["go1", "m1"], "go1", "m1")?))
    });
    // One node name: the other end is the agent's own node. An estimate to oneself is twice
    // the height plus adjustments: small, maybe 0.000 ms once rounded, never negative.
    let one_arg = [
        ("muster", m.rpc, "go1", "go1", "m1"),
        ("muster", m.rpc, "m1", "m1", "m1"),
        ("go", go.rpc, "m1", "m1", "go1"),
        ("go", go.rpc, "go1", "go1", "go1"),
    ];
    let mut printed = vec![
        format!("via muster: Estimated go1 <-> m1 rtt: {:.3} ms", cross.0),
        format!("via go: Estimated go1 <-> m1 rtt: {:.3} ms", cross.1),
    ];
    for (who, rpc, node, a, b) in one_arg {
        let ms = serf_rtt(rpc, &[node], a, b)
            .unwrap_or_else(|| panic!("serf rtt {node} via {who}: {}", text(&serf_cli(rpc, &["rtt", node]))));
        assert!((0.0..100.0).contains(&ms), "{a} <-> {b} via {who}: {ms} ms");
        assert!(a == b || ms > 0.0, "{a} <-> {b} via {who}: {ms} ms");
        printed.push(format!("via {who}: Estimated {a} <-> {b} rtt: {ms:.3} ms"));
    }
    for (who, ms) in [("muster", cross.0), ("go", cross.1)] {
        assert!(ms > 0.0 && ms < 100.0, "go1 <-> m1 via {who}: {ms} ms");
    }
    println!("{}", printed.join("\n"));

    // muster's own coordinate moved off the origin (its error drops below Serf's 1.5 start),
    // and the Go agent holds a coordinate for m1 that it could only have read from our acks.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut from_m = RpcClient::connect(m.rpc, None, Duration::from_secs(10)).await.unwrap();
        let mut from_go = RpcClient::connect(go.rpc, None, Duration::from_secs(10)).await.unwrap();
        let own = from_m.get_coordinate("m1").await.unwrap().expect("m1's own coordinate");
        assert!(own.error < 1.5, "m1 never updated its coordinate: {own:?}");
        let seen_by_go = from_go.get_coordinate("m1").await.unwrap().expect("go1's coordinate for m1");
        assert_eq!(seen_by_go.vec.len(), 8);
        let go_seen_by_m = from_m.get_coordinate("go1").await.unwrap().expect("m1's coordinate for go1");
        assert_eq!(go_seen_by_m.vec.len(), 8);
    });
    let info = serf_cli(m.rpc, &["info", "-format=json"]);
    let v: Value = serde_json::from_slice(&info.stdout).unwrap_or_else(|_| panic!("{}", text(&info)));
    assert_eq!(v["serf"]["coordinate_resets"], "0", "{v}");
}

/// The next whole msgpack value the agent sent.
async fn next_raw(rd: &mut FrameReader<tokio::net::tcp::OwnedReadHalf>) -> Vec<u8> {
    let v = tokio::time::timeout(Duration::from_secs(10), rd.next_value()).await.expect("no answer in time");
    v.unwrap().expect("the agent closed the connection")
}

/// Handshake, then one raw `get-coordinate` request: the answer's header and body bytes.
async fn raw_get_coordinate(rpc: SocketAddr, node: &str) -> (p::ResponseHeader, Vec<u8>) {
    use tokio::io::AsyncWriteExt;
    let (rd, mut wr) = tokio::net::TcpStream::connect(rpc).await.unwrap().into_split();
    let mut rd = FrameReader::new(rd, 1 << 20, Duration::from_secs(10));
    let hs = p::HandshakeRequest { version: p::IPC_VERSION };
    wr.write_all(&muster::serf_rpc::encode_request(p::HANDSHAKE, 0, Some(&hs)).unwrap()).await.unwrap();
    let h: p::ResponseHeader = rmp_serde::from_slice(&next_raw(&mut rd).await).unwrap();
    assert_eq!(h.error, "", "handshake with {rpc}");
    let req = p::CoordinateRequest { node: node.to_string() };
    wr.write_all(&muster::serf_rpc::encode_request(p::GET_COORDINATE, 1, Some(&req)).unwrap()).await.unwrap();
    let header = rmp_serde::from_slice(&next_raw(&mut rd).await).unwrap();
    (header, next_raw(&mut rd).await)
}

#[test]
fn get_coordinate_for_an_unknown_node_answers_alike_from_both_agents() {
    // Proves the raw get-coordinate exchange for an unknown node: both agents answer header {Error: "", Seq: 1} and the same body bytes, Ok false with a zero coordinate.
    let go = SerfAgent::start("go1", &[]);
    let m = Muster::start("m1", &["--profile", "local"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (from_go, from_m) = rt.block_on(async {
        (raw_get_coordinate(go.rpc, "nobody").await, raw_get_coordinate(m.rpc, "nobody").await)
    });
    let want_header = p::ResponseHeader { error: String::new(), seq: 1 };
    assert_eq!((&from_go.0, &from_m.0), (&want_header, &want_header));
    assert_eq!(from_m.1, from_go.1, "muster's body must be the Go agent's bytes");
    let body: p::CoordinateResponse = rmp_serde::from_slice(&from_m.1).unwrap();
    assert_eq!(body, p::CoordinateResponse::default());
    assert!(!body.ok);
}

/// `serf monitor -rpc-addr=<rpc> -log-level=<level>`, printing into `log`; killed on drop.
fn serf_monitor(rpc: SocketAddr, level: &str, log: std::path::PathBuf) -> Proc {
    let mut cmd = Command::new("serf");
    cmd.arg("monitor").arg(format!("-rpc-addr={rpc}")).arg(format!("-log-level={level}"));
    Proc::spawn(&mut cmd, log)
}

/// The log lines a `serf monitor` printed (it also prints the events of its stream).
fn log_lines(printed: &str) -> Vec<String> {
    printed.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())).map(String::from).collect()
}

/// Whether `line` has Go's logger shape: `YYYY/MM/DD HH:MM:SS [LEVEL] `, LEVEL one of Serf's.
fn serf_shaped(line: &str) -> bool {
    let b = line.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let date_time = line.len() > 21
        && digits(0..4)
        && b[4] == b'/'
        && digits(5..7)
        && b[7] == b'/'
        && digits(8..10)
        && b[10] == b' '
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b' ';
    date_time
        && ["TRACE", "DEBUG", "INFO", "WARN", "ERR"]
            .iter()
            .any(|l| line[20..].starts_with(&format!("[{l}] ")))
}

#[test]
fn serf_monitor_streams_an_info_nodes_debug_lines_shaped_like_the_go_agents() {
    // Proves `serf monitor -log-level=debug` against a muster node logging at INFO replays its recent lines, then shows the DEBUG and INFO lines of a later `serf event` while stderr stays at INFO, every line in the Go agent's shape, as the same monitor against the Go agent shows its own.
    let (go, m) = pair(&["--log-level", "info"], &[]);
    let tmp = tempfile::tempdir().unwrap();
    let mut from_m = serf_monitor(m.rpc, "debug", tmp.path().join("m1.monitor"));
    let mut from_go = serf_monitor(go.rpc, "debug", tmp.path().join("go1.monitor"));
    wait_for(CONVERGE, "muster's monitor to replay its start-up lines", || {
        from_m.log_text().contains("[INFO] serf-rpc: listening").then_some(())
    });
    wait_for(CONVERGE, "the Go agent's monitor to attach", || {
        from_go.log_text().contains("[INFO] agent.ipc: Accepted client").then_some(())
    });

    let sent = serf_cli(m.rpc, &["event", "monitor-probe", "p1"]);
    assert!(sent.status.success(), "{}", text(&sent));
    let find = |p: &Proc, parts: &[&str]| {
        log_lines(&p.log_text()).into_iter().find(|l| parts.iter().all(|part| l.contains(part)))
    };
    let debug_m = wait_for(CONVERGE, "muster's monitor to show the DEBUG line of the event request", || {
        find(&from_m, &["[DEBUG] serf-rpc: request", "command=event"])
    });
    let info_m = wait_for(CONVERGE, "muster's monitor to show the event it sent", || {
        find(&from_m, &["[INFO] serf: sent user event", "event=monitor-probe"])
    });
    let debug_go = wait_for(CONVERGE, "the Go agent's monitor to show the gossiped event", || {
        find(&from_go, &["[DEBUG] serf: messageUserEventType: monitor-probe"])
    });
    let info_go = wait_for(CONVERGE, "the Go agent's monitor to show the event it handled", || {
        find(&from_go, &["[INFO] agent: Received event: user-event: monitor-probe"])
    });
    println!("muster:\n  {debug_m}\n  {info_m}\nGo agent:\n  {debug_go}\n  {info_go}");

    for (who, p) in [("muster", &from_m), ("the Go agent", &from_go)] {
        let lines = log_lines(&p.log_text());
        let odd: Vec<&String> = lines.iter().filter(|l| !serf_shaped(l)).collect();
        assert!(odd.is_empty(), "lines from {who}'s monitor not in Serf's shape: {odd:#?}");
    }
    assert!(
        !m.log_text().contains("command=event"),
        "muster's own log is at INFO, yet it has the DEBUG line:\n{}",
        m.log_text()
    );
    for p in [&mut from_m, &mut from_go] {
        let running = p.child.as_mut().unwrap().try_wait().unwrap().is_none();
        assert!(running, "the monitor ended early:\n{}", p.log_text());
        p.kill9();
    }
}

#[test]
fn serf_monitor_with_an_unknown_level_fails_alike_against_both() {
    // Proves `serf monitor -log-level=bogus` exits 1 with the same output against muster as against the Go agent ("Unknown log level: BOGUS").
    let go = SerfAgent::start("go1", &[]);
    let m = Muster::start("m1", &["--profile", "local"]);
    let tmp = tempfile::tempdir().unwrap();
    let mut outs = Vec::new();
    for (name, rpc) in [("m1", m.rpc), ("go1", go.rpc)] {
        let mut p = serf_monitor(rpc, "bogus", tmp.path().join(name));
        let st = p.wait_exit(Duration::from_secs(20));
        outs.push((st.code(), p.log_text()));
    }
    assert_eq!(outs[0], outs[1], "muster, then the Go agent");
    assert_eq!(outs[0].0, Some(1));
    assert_eq!(outs[0].1.trim(), "Error starting monitor: Unknown log level: BOGUS");
}
