//! The operator CLI over the node's gRPC API (`muster services …`, `muster status`, `muster
//! leader transfer`) driven as an operator would: the real `muster` binary against a
//! three-node cluster of real processes on 127.0.0.1, checking stdout tables and JSON, stderr
//! status codes and exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Output;
use std::time::Duration;

use common::*;
use serde_json::Value;

const ELECT: Duration = Duration::from_secs(30);
/// A ttl-10 s service (the registry's minimum) expires within one lease check after its ttl.
const EXPIRE_WAIT: Duration = Duration::from_secs(40);

/// Runs `muster <args> --addr <node's API address>`.
fn muster(m: &Muster, args: &[&str]) -> Output {
    std::process::Command::new(muster_bin())
        .args(args)
        .args(["--addr", &m.http.to_string()])
        .output()
        .expect("run muster")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a command that must succeed; its stdout.
fn ok(m: &Muster, args: &[&str]) -> String {
    let o = muster(m, args);
    assert!(o.status.success(), "want muster {args:?} to succeed, got {:?}: {}", o.status, stderr(&o));
    stdout(&o)
}

/// Runs a command with `--json` that must succeed; its stdout as JSON.
fn ok_json(m: &Muster, args: &[&str]) -> Value {
    let out = ok(m, &[args, &["--json"]].concat());
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("want JSON from muster {args:?} --json ({e}): {out}"))
}

/// Runs a command that must fail with exit code 1 and `code` on stderr; its stderr.
fn fails(m: &Muster, args: &[&str], code: &str) -> String {
    let o = muster(m, args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "want muster {args:?} to exit 1, stderr: {err}");
    assert!(err.contains(code), "want {code} on stderr of muster {args:?}, got: {err}");
    err
}

/// `muster status --json` on `m`, if it answers and knows a leader.
fn status(m: &Muster) -> Option<Value> {
    let o = muster(m, &["status", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).ok()?;
    v["leader"]["name"].is_string().then_some(v)
}

/// Waits until every node's `muster status` names the same leader and three voters; the
/// leader's name.
fn agreed_leader(all: &[Muster], what: &str) -> String {
    wait_for(ELECT, what, || {
        let views: Vec<Value> = all.iter().map(status).collect::<Option<_>>()?;
        let leader = views[0]["leader"]["name"].as_str()?.to_string();
        views
            .iter()
            .all(|v| {
                v["leader"]["name"] == leader.as_str() && v["voters"].as_array().map(Vec::len) == Some(3)
            })
            .then_some(leader)
    })
}

/// Starts three nodes (local profile) joined through the first; them and the leader's name.
fn cluster() -> (Vec<Muster>, String) {
    let a = Muster::start("ca", &["--profile", "local"]);
    let join = a.gossip.to_string();
    let b = Muster::start("cb", &["--profile", "local", "--join", &join]);
    let c = Muster::start("cc", &["--profile", "local", "--join", &join]);
    let all = vec![a, b, c];
    let leader = agreed_leader(&all, "one leader and three voters, agreed by every node's `muster status`");
    (all, leader)
}

#[test]
fn services_status_and_leader_commands_drive_the_grpc_api() {
    // Proves, on a three-node cluster: `muster leader transfer` on a follower is refused with
    // FAILED_PRECONDITION naming the leader, and on the leader with --to hands leadership to
    // that voter (its output and every node's `muster status` say so); the CLI round-trips a
    // service through register → list (table and JSON) → get → heartbeat → update → discover
    // → deregister; types and tags count services; a ttl-10 s service shows in `expired` once
    // its lease lapses and `cleanup` removes it; errors exit 1 with the gRPC code.
    let (all, leader) = cluster();
    let by_name = |name: &str| all.iter().find(|m| m.name == name).unwrap();
    let (lead, follower) = (by_name(&leader), all.iter().find(|m| m.name != leader).unwrap());

    let new_leader = leader_transfer(&all, lead, follower);
    let lead = by_name(&new_leader);
    let via = all.iter().find(|m| m.name != new_leader).unwrap(); // writes through a follower

    // The short-lived service first, so its lease runs while the rest of the test does.
    let short = ["services", "register", "--id", "cli-short", "--name", "tmp", "--type", "scratch"];
    let reg = ok(via, &[&short[..], &["--host", "10.0.0.7", "--port", "7000", "--ttl", "10"]].concat());
    assert!(reg.contains("cli-short"), "want the registered id printed: {reg}");

    round_trip(via, lead);
    update_discover_types_tags(via, lead);
    expire_and_clean_up(via, lead);

    let table = ok(lead, &["status"]);
    let line = table.lines().find(|l| l.starts_with("LEADER")).unwrap_or_default();
    assert!(line.contains(&new_leader), "want LEADER {new_leader} in `muster status`: {table}");
    assert!(
        table.lines().any(|l| l.starts_with("MODE") && l.contains("server")),
        "want MODE server: {table}"
    );
}

/// `muster leader transfer`: refused on a follower, done on the leader towards `to`; the new
/// leader's name.
fn leader_transfer(all: &[Muster], lead: &Muster, to: &Muster) -> String {
    let err = fails(to, &["leader", "transfer"], "FAILED_PRECONDITION");
    assert!(
        err.contains("not the leader") && err.contains(&lead.http.to_string()),
        "want the refusal to name the leader's address {}: {err}",
        lead.http
    );
    let voters = status(lead).unwrap()["voters"].clone();
    let target = voters.as_array().unwrap().iter().find(|v| v["name"] == to.name.as_str()).unwrap();
    let id = target["id"].as_str().unwrap();
    let out = ok(lead, &["leader", "transfer", "--to", id]);
    let line = out.lines().find(|l| l.starts_with("LEADER")).unwrap_or_default();
    assert!(
        line.contains(&to.name) && line.contains(id),
        "want the transfer's output to name the new leader {} ({id}): {out}",
        to.name
    );
    let agreed = agreed_leader(all, "every node to agree on the leader after the transfer");
    assert_eq!(agreed, to.name, "want leadership moved from {} to {}", lead.name, to.name);
    agreed
}

/// register → list → get → heartbeat → deregister, and the errors of a missing service and a
/// bad field.
fn round_trip(via: &Muster, lead: &Muster) {
    let id = "cli-web-1";
    let register = [
        "services",
        "register",
        "--id",
        id,
        "--name",
        "web",
        "--type",
        "api",
        "--host",
        "10.0.0.5",
        "--port",
        "8080",
        "--tag",
        "blue",
        "--tag",
        "eu",
        "--ttl",
        "30",
        "--protocol",
        "grpc",
        "--meta",
        "team=edge",
        "--description",
        "front door",
    ];
    let reg = ok(via, &register);
    assert!(reg.contains(id) && reg.contains("grpc://10.0.0.5:8080"), "want id and address: {reg}");
    assert!(reg.lines().any(|l| l.starts_with("METADATA") && l.contains("team=edge")), "{reg}");

    let table = ok(lead, &["services", "list", "--type", "api", "--tag", "blue"]);
    assert!(table.lines().next().unwrap().starts_with("ID"), "want a header: {table}");
    assert!(
        table.lines().any(|l| l.starts_with(id) && l.contains("ACTIVE") && l.contains("blue,eu")),
        "want {id} ACTIVE with tags blue,eu: {table}"
    );
    let json = ok_json(lead, &["services", "list", "--type", "api"]);
    assert_eq!(json["total"], 1, "{json}");
    assert_eq!(json["services"][0]["service_id"], id, "{json}");
    assert_eq!(json["services"][0]["ttl_seconds"], 30, "{json}");

    let got = ok_json(via, &["services", "get", id]);
    assert_eq!((got["service"]["name"].as_str(), got["service"]["port"].as_u64()), (Some("web"), Some(8080)));
    assert_eq!(got["service"]["description"], "front door", "{got}");
    assert!(ok(via, &["services", "get", id]).contains("10.0.0.5"));

    let before = got["service"]["expires_at_ms"].as_i64().unwrap();
    let hb = ok_json(via, &["services", "heartbeat", id, "--ttl", "60"]);
    assert!(hb["service"]["expires_at_ms"].as_i64().unwrap() > before, "want the lease extended: {hb}");

    assert!(ok(via, &["services", "deregister", id]).contains(id));
    fails(via, &["services", "get", id], "NOT_FOUND");
    let left = ok(lead, &["services", "list", "--type", "api"]);
    assert_eq!(left.lines().count(), 1, "want only the header left: {left}");

    let bad = ["services", "register", "--name", "x", "--type", "api", "--host", "h", "--port", "0"];
    let err = fails(via, &bad, "INVALID_ARGUMENT");
    assert!(err.contains("port"), "want the bad field named: {err}");
}

/// update (only the fields given; clearing; unchanged), discover (active only), types, tags.
fn update_discover_types_tags(via: &Muster, lead: &Muster) {
    let base = ["services", "register", "--name", "api", "--type", "api", "--host", "10.0.0.8"];
    ok(
        via,
        &[&base[..], &["--id", "api-1", "--port", "81", "--tag", "blue", "--description", "one"]].concat(),
    );
    ok(via, &[&base[..], &["--id", "api-2", "--port", "82", "--tag", "green"]].concat());

    let change =
        ["services", "update", "api-1", "--port", "9090", "--tag", "green", "--tag", "v2", "--meta", "k=v"];
    let up = ok_json(via, &[&change[..], &["--status", "inactive"]].concat());
    let s = &up["service"];
    assert_eq!(
        (s["port"].as_u64(), s["status"].as_str(), s["tags"].clone(), s["metadata"]["k"].as_str()),
        (Some(9090), Some("INACTIVE"), serde_json::json!(["green", "v2"]), Some("v")),
        "want port, status, tags and metadata replaced: {up}"
    );
    assert_eq!(
        (s["name"].as_str(), s["host"].as_str(), s["description"].as_str()),
        (Some("api"), Some("10.0.0.8"), Some("one")),
        "want the fields not given kept: {up}"
    );
    assert!(up["revision"].as_u64().is_some_and(|r| r > 0), "want the revision: {up}");

    // Inactive services are not discovered; active again, they are.
    let found = ok_json(lead, &["services", "discover", "--type", "api", "--tag", "green"]);
    let ids: Vec<&str> =
        found["services"].as_array().unwrap().iter().filter_map(|s| s["service_id"].as_str()).collect();
    assert_eq!(ids, ["api-2"], "want only the active green service discovered: {found}");
    let up = ok_json(via, &["services", "update", "api-1", "--status", "active", "--description", ""]);
    assert!(up["service"]["description"].is_null(), "want an empty --description to clear it: {up}");
    let table = ok(lead, &["services", "discover", "--type", "api", "--tag", "green"]);
    assert!(table.lines().next().unwrap().starts_with("ID"), "want a header: {table}");
    assert!(
        table.lines().any(|l| l.starts_with("api-1")) && table.lines().any(|l| l.starts_with("api-2")),
        "want both green services discovered once api-1 is active: {table}"
    );

    let same = muster(via, &["services", "update", "api-1", "--port", "9090"]);
    assert!(same.status.success(), "want an update to the same value to succeed: {}", stderr(&same));
    assert!(stderr(&same).contains("nothing changed"), "want it to say nothing changed: {}", stderr(&same));
    fails(via, &["services", "update", "nope", "--port", "1"], "NOT_FOUND");
    let err = fails(via, &["services", "update", "api-1", "--port", "0"], "INVALID_ARGUMENT");
    assert!(err.contains("port"), "want the bad field named: {err}");

    // api-1, api-2 and the short-lived scratch service (not expired yet).
    let types = ok_json(lead, &["services", "types"]);
    assert_eq!(types["types"], serde_json::json!({"api": 2, "scratch": 1}), "want types counted: {types}");
    let table = ok(lead, &["services", "tags"]);
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        [vec!["TAG", "SERVICES"], vec!["green", "2"], vec!["v2", "1"]],
        "want tags counted, by name: {table}"
    );
}

/// A ttl-10 s service shows in `expired` once its lease lapses, leaves `types`, and `cleanup`
/// removes it.
fn expire_and_clean_up(via: &Muster, lead: &Muster) {
    let expired = wait_for(EXPIRE_WAIT, "cli-short to show in `muster services expired`", || {
        let v = ok_json(lead, &["services", "expired"]);
        (v["total"] == 1).then_some(v)
    });
    let s = &expired["services"][0];
    assert_eq!(
        (s["service_id"].as_str(), s["status"].as_str()),
        (Some("cli-short"), Some("EXPIRED")),
        "{expired}"
    );
    let table = ok(via, &["services", "expired"]);
    assert!(
        table.lines().any(|l| l.starts_with("cli-short") && l.contains("EXPIRED")),
        "want cli-short EXPIRED in the table: {table}"
    );
    let types = ok_json(via, &["services", "types"]);
    assert_eq!(
        types["types"],
        serde_json::json!({"api": 2}),
        "want expired services left out of types: {types}"
    );

    let out = ok(via, &["services", "cleanup"]);
    assert_eq!(out, "removed 1 expired service\ncli-short\n", "want cleanup to name what it removed");
    let again = ok_json(via, &["services", "cleanup"]);
    assert_eq!(again["removed_ids"], serde_json::json!([]), "want nothing left to clean up: {again}");
    let none = ok_json(lead, &["services", "expired"]);
    assert_eq!(none["total"], 0, "want no expired service after cleanup: {none}");
    fails(lead, &["services", "get", "cli-short"], "NOT_FOUND");
}
