//! Beacon's REST API under `/api/v1`, driven by the real `curl` (as a Beacon client or an
//! operator would) against a three-node muster cluster of real processes on 127.0.0.1:
//! Beacon's client flow through followers (register, heartbeat, list, get, update,
//! deregister), Beacon's ISO datetimes next to the `_ms` times, linearizable reads from other
//! nodes, the status and message of every kind of bad input, and what a write and a read
//! answer when two of the three nodes are frozen (SIGSTOP).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const ELECT: Duration = Duration::from_secs(30);
/// The REST layer's bound on a write or read: twice the registrar's 5 s proposal timeout plus
/// a second (`Deadlines::for_registrar`).
const API_DEADLINE: Duration = Duration::from_secs(11);
/// Slack on top of [`API_DEADLINE`] for starting curl on a busy machine.
const SLACK: Duration = Duration::from_secs(3);

/// Unix milliseconds of `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, exactly that form), counted day by
/// day from 1970 so it shares nothing with the node's formatter; None for any other text.
fn iso_ms(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let seps = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (23, b'Z')];
    if b.len() != 24 || seps.iter().any(|(i, c)| b[*i] != *c) {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u64> {
        let t = text.get(from..to)?;
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, m, s, ms) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || day == 0 || h > 23 || m > 59 || s > 59
    {
        return None;
    }
    let leap = |y: u64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [31, if leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let in_month: u64 = month_days[usize::try_from(month - 1).ok()?];
    if day > in_month {
        return None;
    }
    let days: u64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum::<u64>()
        + month_days[..usize::try_from(month - 1).ok()?].iter().sum::<u64>()
        + (day - 1);
    Some(((days * 24 + h) * 60 + m) * 60_000 + s * 1_000 + ms)
}

/// Asserts `svc` carries Beacon's four ISO datetimes, each naming the same instant as its
/// `_ms` twin.
fn assert_iso_times(svc: &Value) {
    for field in ["created_at", "updated_at", "last_heartbeat", "expires_at"] {
        let iso = svc[field].as_str().unwrap_or_default();
        let ms = svc[format!("{field}_ms")].as_u64();
        assert!(ms.is_some(), "want {field}_ms as a number next to {field}: {svc}");
        assert_eq!(iso_ms(iso), ms, "want {field} = ISO-8601 UTC with ms of {field}_ms, got {iso:?}: {svc}");
    }
}

/// `curl -X method http://node/path` with an optional JSON body; the status and the JSON body.
fn curl(m: &Muster, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    curl_json(m.http, method, path, body, None)
}

#[test]
fn iso_parser_reads_known_instants() {
    // Proves the test's own ISO parser (used to check the API's times) against instants
    // computed elsewhere, and that it refuses other forms.
    let known = [
        ("1970-01-01T00:00:00.000Z", 0),
        ("2000-02-29T23:59:59.999Z", 951_868_799_999),
        ("2026-11-24T02:51:00.273Z", 1_795_488_660_273),
    ];
    for (text, ms) in known {
        assert_eq!(iso_ms(text), Some(ms), "want {text} = {ms} ms");
    }
    for bad in ["2026-11-24T02:51:00Z", "2026-11-24 02:51:00.273Z", "2026-02-30T00:00:00.000Z", "x"] {
        assert_eq!(iso_ms(bad), None, "want {bad:?} refused");
    }
}

#[test]
fn beacon_client_flow_and_bad_inputs_over_curl() {
    // Proves Beacon's client flow end to end over HTTP on a real cluster: a registration
    // through a follower gets a UUID and 201, a heartbeat with ?ttl=60 through the other
    // follower renews for 60 s, list filters by type and every tag with paging echoed, a
    // linearizable get/list on another node sees each write at once, update changes fields,
    // deregister removes and a later get is 404; and every bad input answers its status with
    // the registry's (or the decoder's) message naming the field and bound.
    let (all, leader) = three_nodes(["ra", "rb", "rc"], &["--profile", "local"], ELECT);
    let followers: Vec<&Muster> = all.iter().filter(|m| m.name != leader).collect();
    let (f1, f2) = (followers[0], followers[1]);
    let lead = all.iter().find(|m| m.name == leader).unwrap();

    // Register through a follower, without a service_id.
    let web = json!({"name": "web", "type": "http", "host": "10.0.0.9", "port": 8080,
                     "tags": ["prod", "eu"], "ttl": 30, "metadata": {"team": "edge"}});
    let (status, svc) = curl(f1, "POST", "/api/v1/services/register", Some(&web.to_string()));
    assert_eq!(status, 201, "{svc}");
    assert_iso_times(&svc);
    let id = svc["service_id"].as_str().unwrap().to_string();
    assert_eq!((id.len(), &id[14..15]), (36, "4"), "a v4 UUID: {id}");
    assert_eq!((svc["status"].as_str(), svc["ttl"].as_u64()), (Some("active"), Some(30)), "{svc}");
    let db = json!({"service_id": "db-1", "name": "db", "type": "postgres", "host": "10.0.0.10",
                    "port": 5432, "tags": ["prod"]});
    let (status, body) = curl(f2, "POST", "/api/v1/services/register", Some(&db.to_string()));
    assert_eq!((status, body["service_id"].as_str()), (201, Some("db-1")), "{body}");

    // Heartbeat through the other follower, with a TTL override for this lease.
    let (status, hb) = curl(f2, "PUT", &format!("/api/v1/services/{id}/heartbeat?ttl=60"), None);
    assert_eq!(status, 200, "{hb}");
    let lease = hb["expires_at_ms"].as_u64().unwrap() - hb["last_heartbeat_ms"].as_u64().unwrap();
    assert_eq!((hb["service_id"].as_str(), lease), (Some(id.as_str()), 60_000), "{hb}");
    assert_iso_times(&hb);
    let lease_iso = iso_ms(hb["expires_at"].as_str().unwrap()).unwrap()
        - iso_ms(hb["last_heartbeat"].as_str().unwrap()).unwrap();
    assert_eq!(lease_iso, 60_000, "want the ISO times 60 s apart after ?ttl=60: {hb}");

    // List with type and tags (all must match) on the leader; paging is echoed.
    let (status, page) = curl(lead, "GET", "/api/v1/services?type=http&tags=prod,eu", None);
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        (page["total"].as_u64(), page["limit"].as_u64(), page["skip"].as_u64()),
        (Some(1), Some(50), Some(0))
    );
    assert_eq!(page["services"][0]["service_id"], id.as_str(), "{page}");
    assert_iso_times(&page["services"][0]);
    assert!(page["revision"].as_u64().is_some_and(|r| r > 0), "{page}");
    let (_, page) = curl(f1, "GET", "/api/v1/services?tags=prod&limit=1&skip=1", None);
    assert_eq!((page["total"].as_u64(), page["services"].as_array().unwrap().len()), (Some(2), 1), "{page}");
    assert_eq!(page["services"][0]["name"], "web", "sorted by name: db, web: {page}");
    let (_, page) = curl(f1, "GET", "/api/v1/services?tags=eu,missing&stale=true", None);
    assert_eq!(page["total"], 0, "{page}");

    // Get on another node (linearizable: sees the writes at once).
    let (status, got) = curl(f2, "GET", &format!("/api/v1/services/{id}"), None);
    assert_eq!(
        (status, got["name"].as_str(), got["metadata"]["team"].as_str()),
        (200, Some("web"), Some("edge"))
    );
    assert_iso_times(&got);

    // Update through a follower; another node sees it at once.
    let patch = json!({"port": 9090, "description": "edge proxy", "tags": ["prod", "eu", "v2"]});
    let (status, up) = curl(f1, "PUT", &format!("/api/v1/services/{id}"), Some(&patch.to_string()));
    assert_eq!(
        (status, up["port"].as_u64(), up["description"].as_str()),
        (200, Some(9090), Some("edge proxy"))
    );
    let (_, got) = curl(lead, "GET", &format!("/api/v1/services/{id}"), None);
    assert_eq!(got["port"], 9090, "{got}");

    // The read-only routes.
    assert_iso_times(&up);
    assert!(up["updated_at_ms"].as_u64() > svc["updated_at_ms"].as_u64(), "want updated_at to move: {up}");
    let (status, found) = curl(f2, "GET", "/api/v1/services/discover?type=http&tags=v2", None);
    assert_eq!((status, found["services"][0]["service_id"].as_str()), (200, Some(id.as_str())), "{found}");
    assert_iso_times(&found["services"][0]);
    let (_, types) = curl(f1, "GET", "/api/v1/services/types", None);
    assert_eq!(types["types"], json!({"http": 1, "postgres": 1}), "{types}");
    let (_, tags) = curl(f1, "GET", "/api/v1/services/tags", None);
    assert_eq!(tags["tags"], json!({"eu": 1, "prod": 2, "v2": 1}), "{tags}");
    let (status, expired) = curl(f1, "GET", "/api/v1/services/expired", None);
    assert_eq!((status, expired["total"].as_u64()), (200, Some(0)), "{expired}");
    let (status, cleaned) = curl(f2, "DELETE", "/api/v1/services/cleanup", None);
    assert_eq!((status, cleaned["removed"].as_u64()), (200, Some(0)), "{cleaned}");
    let (status, health) = curl(f2, "GET", "/api/v1/health", None);
    assert_eq!(status, 200, "{health}");
    assert_eq!(
        health["services"],
        json!({"active": 2, "inactive": 0, "expired": 0, "unhealthy": 0, "total": 2})
    );
    assert_eq!(
        (health["node"].as_str(), health["cluster"].as_str()),
        (Some(f2.name.as_str()), Some("muster"))
    );
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"), "{health}");
    let (status, doc) = curl(f2, "GET", "/api/v1/openapi.json", None);
    assert_eq!((status, doc["openapi"].as_str()), (200, Some("3.0.3")), "{doc}");
    let iso = &doc["components"]["schemas"]["Service"]["properties"]["expires_at"];
    assert_eq!(iso["format"], "date-time", "want the Service schema to document the ISO times: {iso}");

    // Deregister through a follower; a get on another node is 404 at once.
    let (status, gone) = curl(f1, "DELETE", &format!("/api/v1/services/{id}"), None);
    assert_eq!((status, gone["service"]["service_id"].as_str()), (200, Some(id.as_str())), "{gone}");
    assert_iso_times(&gone["service"]);
    let (status, body) = curl(f2, "GET", &format!("/api/v1/services/{id}"), None);
    assert_eq!((status, body["error"].as_str()), (404, Some("not found")), "{body}");

    // Bad inputs: (method, path, body, status, substring of the detail).
    let base = json!({"name": "x", "type": "http", "host": "h", "port": 80});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b.to_string()
    };
    let big = format!(
        r#"{{"name":"x","type":"t","host":"h","port":80,"description":"{}"}}"#,
        "a".repeat(100 * 1024)
    );
    let reg = "/api/v1/services/register";
    let cases: Vec<(&str, String, Option<String>, u16, &str)> = vec![
        ("POST", reg.into(), Some(with("port", json!(0))), 422, "port must be 1–65535 (got 0)"),
        ("POST", reg.into(), Some(with("name", json!(""))), 422, "name must be 1–100 characters (got 0)"),
        (
            "POST",
            reg.into(),
            Some(with("name", json!("n".repeat(101)))),
            422,
            "name must be 1–100 characters (got 101)",
        ),
        ("POST", reg.into(), Some(with("ttl", json!(5))), 422, "ttl must be 10–86400 seconds (got 5)"),
        (
            "POST",
            reg.into(),
            Some(r#"{"name": "x", "#.into()),
            422,
            "Failed to parse the request body as JSON",
        ),
        ("POST", reg.into(), Some(with("port", json!("80"))), 422, "port: invalid type: string \"80\""),
        ("POST", reg.into(), Some(big), 413, "length limit exceeded"),
        ("POST", reg.into(), Some(db.to_string()), 409, "already registered: db-1"),
        (
            "PUT",
            "/api/v1/services/db-1/heartbeat?ttl=5".into(),
            None,
            422,
            "ttl must be 10–86400 seconds (got 5)",
        ),
        ("PUT", "/api/v1/services/db-1/heartbeat?ttl=x".into(), None, 422, "ttl: invalid digit"),
        (
            "GET",
            "/api/v1/services?status=bogus".into(),
            None,
            422,
            "status must be one of active, inactive, expired, unhealthy (got \"bogus\")",
        ),
        ("GET", "/api/v1/services?limit=0".into(), None, 422, "limit must be 1–100 (got 0)"),
        ("GET", "/api/v1/services?limit=101".into(), None, 422, "limit must be 1–100 (got 101)"),
        ("GET", "/api/v1/services/nope".into(), None, 404, "not found: nope"),
        ("PUT", "/api/v1/services/nope/heartbeat".into(), None, 404, "not found: nope"),
        ("PUT", "/api/v1/services/nope".into(), Some(r#"{"port": 81}"#.into()), 404, "not found: nope"),
        ("DELETE", "/api/v1/services/nope".into(), None, 404, "not found: nope"),
    ];
    for (method, path, body, want_status, want_detail) in cases {
        let (status, err) = curl(f1, method, &path, body.as_deref());
        let detail = err["detail"].as_str().unwrap_or_default();
        assert!(
            status == want_status && detail.contains(want_detail) && err["error"].is_string(),
            "{method} {path}: want {want_status} with {want_detail:?}, got {status} {err}"
        );
    }

    without_a_quorum(&all, &leader);
}

/// curl, timed.
fn timed_curl(m: &Muster, method: &str, path: &str, body: Option<&str>) -> (u16, Value, Duration) {
    let start = Instant::now();
    let (status, body) = curl(m, method, path, body);
    (status, body, start.elapsed())
}

/// With the leader and one follower frozen (SIGSTOP), a write through the other follower
/// answers 503 (known not applied: no leader) or 504 (outcome unknown), and a linearizable
/// read answers 503, each within the API's deadline and with a message that says which; once
/// the two nodes run again (SIGCONT) the cluster answers the write's fate definitely.
fn without_a_quorum(all: &[Muster], leader: &str) {
    let lead = all.iter().find(|m| m.name == leader).unwrap();
    let followers: Vec<&Muster> = all.iter().filter(|m| m.name != leader).collect();
    let (alone, frozen) = (followers[0], [lead, followers[1]]);
    for m in frozen {
        m.proc.signal("STOP");
    }
    let svc = json!({"service_id": "frozen-1", "name": "f", "type": "http", "host": "h", "port": 81});
    let (status, err, took) = timed_curl(alone, "POST", "/api/v1/services/register", Some(&svc.to_string()));
    let detail = err["detail"].as_str().unwrap_or_default().to_string();
    let kind = err["error"].as_str().unwrap_or_default().to_string();
    let (read_status, read_err, read_took) = timed_curl(alone, "GET", "/api/v1/services/frozen-1", None);
    for m in frozen {
        m.proc.signal("CONT");
    }
    println!(
        "without a quorum: write {status} {err} in {took:?}; read {read_status} {read_err} in {read_took:?}"
    );
    assert!(
        (status == 503 && kind == "unavailable") || (status == 504 && kind == "outcome unknown"),
        "want a write without a quorum to answer 503 unavailable or 504 outcome unknown, got {status} {err}"
    );
    if status == 504 {
        assert!(detail.starts_with("outcome unknown: "), "want the 504 detail to say so: {detail}");
    }
    assert!(took <= API_DEADLINE + SLACK, "want the write answered within {API_DEADLINE:?}, took {took:?}");
    assert_eq!(
        (read_status, read_err["error"].as_str()),
        (503, Some("unavailable")),
        "want a read without a quorum to answer 503 unavailable (never 504): {read_err}"
    );
    assert!(
        read_took <= API_DEADLINE + SLACK,
        "want the read answered within {API_DEADLINE:?}, took {read_took:?}"
    );

    // Running again, the cluster says definitely whether the write happened.
    let fate =
        wait_for(ELECT, "a definite answer (200 or 404) for the write's service after SIGCONT", || {
            let (status, _) = curl(alone, "GET", "/api/v1/services/frozen-1", None);
            [200, 404].contains(&status).then_some(status)
        });
    if status == 503 && kind == "unavailable" && detail.contains("no leader is known") {
        assert_eq!(fate, 404, "want a write refused for want of a leader never applied");
    }
}
