//! mDNS/DNS-SD announcements as a real browser sees them: a muster node in one network
//! namespace and python-zeroconf (tests/fixtures/mdns_browse.py) in another, joined by a veth
//! pair on a subnet of their own. Needs root, iproute2, curl and python3's zeroconf
//! (`scripts/deps.sh` installs them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const API: &str = "10.251.9.1:9999";

/// curl inside namespace `ns`: the status code and the JSON answer.
fn curl(ns: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "curl", "-sS", "--max-time", "10", "-X", method, "-w", "\n%{http_code}"]);
    if body.is_some() {
        cmd.args(["-H", "content-type: application/json", "--data-binary", "@-"]);
    }
    let mut child = cmd
        .arg(format!("http://{API}{path}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run curl (is it installed?)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(body.map(|b| b.to_string()).unwrap_or_default().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Registers `body` once a leader takes writes; the new service's id.
fn register(ns: &str, body: Value) -> String {
    wait_for(Duration::from_secs(30), &format!("registering {body}"), || {
        let (code, answer) = curl(ns, "POST", "/api/v1/services/register", Some(&body));
        (200..300).contains(&code).then(|| answer["service_id"].as_str().unwrap().to_string())
    })
}

/// Every JSON line the browser printed so far.
fn events(log: &PathBuf) -> Vec<Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect()
}

/// The last added/updated event of instance `name` that satisfies `ok`.
fn seen(log: &PathBuf, name: &str, ok: impl Fn(&Value) -> bool) -> Option<Value> {
    events(log)
        .into_iter()
        .rev()
        .find(|e| e["name"] == name && (e["event"] == "added" || e["event"] == "updated") && ok(e))
}

fn removed(log: &PathBuf, name: &str) -> Option<()> {
    events(log).iter().any(|e| e["name"] == name && e["event"] == "removed").then_some(())
}

#[test]
fn a_browser_sees_registered_services_and_the_node_come_and_go() {
    // Proves the announcements end to end: a registered mqtt service shows as _mqtt._tcp with
    // its port, own address and TXT records; mdns_service_type wins; an api service shows as
    // _http._tcp; a service registered by host name carries the name's address; a second
    // service of the same name gets a unique instance; an off-subnet service is not announced;
    // a port change is re-announced; inactive, deregistered and expired services are withdrawn
    // with goodbyes; _muster._tcp and _beacon._tcp carry the API port and are withdrawn when the
    // node stops.
    let net =
        common::netns::VethPair::new("ann", 9, Some("127.0.0.1 localhost\n10.251.9.9 printer.example\n"));
    let tmp = tempfile::tempdir().unwrap();

    let browse = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mdns_browse.py");
    let mut b_cmd = Command::new("ip");
    b_cmd.args(["netns", "exec", &net.b, "python3", "-u"]).arg(&browse).arg("180");
    b_cmd.args(["_mqtt._tcp.local.", "_http._tcp.local.", "_hue._tcp.local.", "_ipp._tcp.local."]);
    b_cmd.args(["_muster._tcp.local.", "_beacon._tcp.local."]);
    let browser = Proc::spawn(&mut b_cmd, tmp.path().join("browse.log"));
    let log = browser.log.clone();

    let mut m_cmd = Command::new("ip");
    m_cmd.args(["netns", "exec", &net.a]).arg(muster_bin());
    m_cmd.args(["agent", "--node", "m1", "--bind", "10.251.9.1:7946", "--http-addr", API]);
    m_cmd.args(["--rpc-addr", "127.0.0.1:7373", "--discovery", "serf", "--profile", "local"]);
    m_cmd.arg("--data-dir").arg(tmp.path().join("data"));
    m_cmd.env("LOG_FORMAT", "text").env("LOG_NO_COLOR", "1").env("LOG_LEVEL", "debug");
    m_cmd.env_remove("SERF_JOIN").env_remove("ROLE").env_remove("DISCOVERY_BACKEND");
    m_cmd.env_remove("MUSTER_MDNS_ANNOUNCE");
    let mut node = Proc::spawn(&mut m_cmd, tmp.path().join("m1.log"));

    let within = Duration::from_secs(30);
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(within, "the browser to start", || {
            events(&log).iter().any(|e| e["event"] == "ready").then_some(())
        });
        for ty in ["_muster._tcp.local.", "_beacon._tcp.local."] {
            let name = format!("m1.{ty}");
            let e = wait_for(within, &format!("{name} with mode=server"), || {
                seen(&log, &name, |e| e["txt"]["mode"] == "server")
            });
            assert_eq!(e["port"], 9999, "{e}");
            assert_eq!(e["addresses"], json!(["10.251.9.1"]), "{e}");
            assert_eq!(e["txt"]["node"], "m1", "{e}");
            assert_eq!(e["txt"]["api"], "grpc,rest,ws", "{e}");
            assert_eq!(e["txt"]["tls"], "off", "{e}");
            assert_eq!(e["txt"]["cluster"], "muster", "{e}");
        }

        // A 10 s lease and no heartbeat: the leader expires it while the rest runs.
        register(
            &net.a,
            json!({"name": "sensor", "type": "mqtt", "host": "10.251.9.10", "port": 1883, "ttl": 10}),
        );
        let broker = register(
            &net.a,
            json!({"name": "broker", "type": "mqtt", "host": "10.251.9.5", "port": 1883,
                   "tags": ["x", "y"], "version": "2.0", "mdns_txt_records": {"room": "kitchen"}}),
        );
        let lamp = register(
            &net.a,
            json!({"name": "lamp", "type": "iot", "host": "10.251.9.6", "port": 80,
                   "mdns_service_type": "_hue._tcp"}),
        );
        let rest =
            register(&net.a, json!({"name": "rest", "type": "api", "host": "10.251.9.7", "port": 8080}));
        let twin =
            register(&net.a, json!({"name": "broker", "type": "mqtt", "host": "10.251.9.8", "port": 1883}));
        register(&net.a, json!({"name": "far", "type": "mqtt", "host": "10.99.0.5", "port": 1883}));
        let printer = register(
            &net.a,
            json!({"name": "printer", "type": "ipp", "host": "printer.example", "port": 631}),
        );

        let e = wait_for(within, "broker._mqtt._tcp", || seen(&log, "broker._mqtt._tcp.local.", |_| true));
        assert_eq!(e["port"], 1883, "{e}");
        assert_eq!(e["addresses"], json!(["10.251.9.5"]), "the service's own address: {e}");
        assert_eq!(e["txt"]["service_id"], broker.as_str(), "{e}");
        assert_eq!(e["txt"]["name"], "broker", "{e}");
        assert_eq!(e["txt"]["type"], "mqtt", "{e}");
        assert_eq!(e["txt"]["tags"], "x,y", "{e}");
        assert_eq!(e["txt"]["version"], "2.0", "{e}");
        assert_eq!(e["txt"]["status"], "active", "{e}");
        assert_eq!(e["txt"]["room"], "kitchen", "{e}");

        let e = wait_for(within, "lamp._hue._tcp", || seen(&log, "lamp._hue._tcp.local.", |_| true));
        assert_eq!((e["port"].clone(), e["txt"]["service_id"].clone()), (json!(80), json!(lamp)), "{e}");
        let e = wait_for(within, "rest._http._tcp", || seen(&log, "rest._http._tcp.local.", |_| true));
        assert_eq!((e["port"].clone(), e["txt"]["type"].clone()), (json!(8080), json!("api")), "{e}");
        let e = wait_for(within, "printer._ipp._tcp (a host name)", || {
            seen(&log, "printer._ipp._tcp.local.", |_| true)
        });
        assert_eq!(e["addresses"], json!(["10.251.9.9"]), "the name's address: {e}");
        assert_eq!((e["port"].clone(), e["txt"]["service_id"].clone()), (json!(631), json!(printer)), "{e}");
        let twin_name = format!("broker ({})._mqtt._tcp.local.", &twin.replace('-', "")[..8]);
        let e = wait_for(within, &twin_name, || seen(&log, &twin_name, |_| true));
        assert_eq!(e["addresses"], json!(["10.251.9.8"]), "{e}");

        let (code, _) =
            curl(&net.a, "PUT", &format!("/api/v1/services/{broker}"), Some(&json!({"port": 1884})));
        assert_eq!(code, 200);
        wait_for(within, "broker re-announced on port 1884", || {
            seen(&log, "broker._mqtt._tcp.local.", |e| e["port"] == 1884)
        });
        let (code, _) =
            curl(&net.a, "PUT", &format!("/api/v1/services/{rest}"), Some(&json!({"status": "inactive"})));
        assert_eq!(code, 200);
        wait_for(within, "the inactive service withdrawn", || removed(&log, "rest._http._tcp.local."));
        let (code, _) = curl(&net.a, "DELETE", &format!("/api/v1/services/{broker}"), None);
        assert_eq!(code, 200);
        wait_for(within, "the deregistered service withdrawn", || removed(&log, "broker._mqtt._tcp.local."));
        assert!(removed(&log, &twin_name).is_none(), "the twin stays");
        assert!(
            !events(&log).iter().any(|e| e["name"].as_str().is_some_and(|n| n.starts_with("far."))),
            "a service off this node's subnets is not announced"
        );

        wait_for(within, "sensor._mqtt._tcp announced", || seen(&log, "sensor._mqtt._tcp.local.", |_| true));
        wait_for(within, "the expired service withdrawn", || removed(&log, "sensor._mqtt._tcp.local."));

        node.signal("TERM");
        for name in ["m1._muster._tcp.local.", "m1._beacon._tcp.local.", "lamp._hue._tcp.local."] {
            wait_for(within, &format!("{name} withdrawn at shutdown"), || removed(&log, name));
        }
        assert!(node.wait_exit(within).success());
    }));
    if ok.is_err() {
        let (b, m) = (browser.log_text(), node.log_text());
        panic!("mDNS announcements failed\n--- browser ---\n{b}\n--- muster log ---\n{m}");
    }
}
