//! The operator CLI over the node's gRPC API (`muster services …`, `muster status`) driven as
//! an operator would: the real `muster` binary against one real node on 127.0.0.1, checking
//! stdout tables and JSON, stderr status codes and exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Output;
use std::time::Duration;

use common::*;
use serde_json::Value;

const ELECT: Duration = Duration::from_secs(30);

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
    assert!(o.status.success(), "muster {args:?} failed ({:?}): {}", o.status, stderr(&o));
    stdout(&o)
}

/// The node's `GET /health` as JSON.
fn health(m: &Muster) -> Option<Value> {
    let url = format!("http://{}/health", m.http);
    let out = std::process::Command::new("curl").args(["-s", "--max-time", "5", &url]).output().ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

#[test]
fn services_and_status_commands_drive_the_grpc_api() {
    // Proves the CLI round-trips a service through register → list (table and JSON) → get →
    // heartbeat → deregister over gRPC, that a missing service exits 1 with NOT_FOUND on
    // stderr, that a bad field exits 1 naming it, and that `muster status` names the leader.
    let m = Muster::start("solo", &["--profile", "local"]);
    wait_for(ELECT, "solo to be server", || (health(&m)?["raft"]["role"] == "server").then_some(()));

    let id = "cli-web-1";
    let reg = ok(
        &m,
        &[
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
        ],
    );
    assert!(reg.contains(id) && reg.contains("grpc://10.0.0.5:8080"), "{reg}");

    let table = ok(&m, &["services", "list", "--type", "api", "--tag", "blue"]);
    assert!(table.lines().next().unwrap().starts_with("ID"), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with(id) && l.contains("ACTIVE") && l.contains("blue,eu")),
        "{table}"
    );
    let json: Value = serde_json::from_str(&ok(&m, &["services", "list", "--json"])).unwrap();
    assert_eq!(json["total"], 1, "{json}");
    assert_eq!(json["services"][0]["service_id"], id, "{json}");
    assert_eq!(json["services"][0]["ttl_seconds"], 30, "{json}");

    let got: Value = serde_json::from_str(&ok(&m, &["services", "get", id, "--json"])).unwrap();
    assert_eq!((got["service"]["name"].as_str(), got["service"]["port"].as_u64()), (Some("web"), Some(8080)));
    assert!(ok(&m, &["services", "get", id]).contains("10.0.0.5"));

    let before = got["service"]["expires_at_ms"].as_i64().unwrap();
    let hb: Value =
        serde_json::from_str(&ok(&m, &["services", "heartbeat", id, "--ttl", "60", "--json"])).unwrap();
    assert!(hb["service"]["expires_at_ms"].as_i64().unwrap() > before, "lease not extended: {hb}");

    assert!(ok(&m, &["services", "deregister", id]).contains(id));
    let gone = muster(&m, &["services", "get", id]);
    assert_eq!(gone.status.code(), Some(1), "{}", stderr(&gone));
    assert!(stderr(&gone).contains("NOT_FOUND"), "{}", stderr(&gone));
    assert!(ok(&m, &["services", "list"]).lines().count() == 1, "only the header is left");

    let bad =
        muster(&m, &["services", "register", "--name", "x", "--type", "api", "--host", "h", "--port", "0"]);
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("INVALID_ARGUMENT") && stderr(&bad).contains("port"), "{}", stderr(&bad));

    let status = ok(&m, &["status"]);
    let leader = status.lines().find(|l| l.starts_with("LEADER")).unwrap_or_default();
    assert!(leader.contains("solo"), "{status}");
    assert!(status.lines().any(|l| l.starts_with("MODE") && l.contains("server")), "{status}");
    let js: Value = serde_json::from_str(&ok(&m, &["status", "--json"])).unwrap();
    assert_eq!(
        (js["leader"]["name"].as_str(), js["voters"].as_array().map(Vec::len)),
        (Some("solo"), Some(1))
    );
}
