//! The dashboard at `GET /` in a real browser: headless Chromium (Debian's `chromium`, driven
//! through `chromedriver` over the W3C WebDriver protocol by [`webdriver`]) against muster
//! nodes of real processes on 127.0.0.1. On a three-node cluster the page lists the members,
//! raft and the services; services registered, updated and deregistered over REST change the
//! table and the event feed without a reload; the filters narrow the table; a service name
//! full of markup stays text; when the page's node restarts, the page resumes the event stream
//! from its last revision; on a phone-sized window the tables become cards. On a node with
//! `--tokens-file` the page asks for a token, keeps it, and streams with it.
//!
//! Screenshots go to `CARGO_TARGET_TMPDIR` (paths printed); with
//! `MUSTER_UPDATE_DOCS_SCREENSHOT=1` the desktop one is also copied to `docs/dashboard.png`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "dashboard_browser/webdriver.rs"]
mod webdriver;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use webdriver::{http, Browser};

const ELECT: Duration = Duration::from_secs(30);
/// How long the page may take to show something the cluster already knows.
const SHOWN: Duration = Duration::from_secs(30);
/// The page's node restarts, rejoins and the page's backoff (at most 15 s) reconnects.
const RESUMED: Duration = Duration::from_secs(90);
const DESKTOP: (u32, u32) = (1400, 900);
const PHONE: (u32, u32) = (390, 844);

/// Registers `body` through `node` (with `token`); the service as answered.
fn register(node: &Muster, body: Value, token: Option<&str>) -> Value {
    let (status, answer) = http(node.http, "POST", "/api/v1/services/register", Some(&body), token);
    assert_eq!(status, 201, "register {body}: {answer}");
    answer
}

/// The ids of the service rows the page shows, in order.
fn rows(b: &Browser) -> Vec<String> {
    let ids = b.script(
        "return [...document.querySelectorAll('#services tbody tr')].map(r => r.dataset.serviceId);",
        json!([]),
    );
    serde_json::from_value(ids).unwrap()
}

/// The event feed's lines (newest first) as `type name` pairs.
fn feed(b: &Browser) -> Vec<String> {
    let items = b.script(
        "return [...document.querySelectorAll('#events li')].map(li => li.dataset.type + ' ' + li.querySelector('strong').textContent);",
        json!([]),
    );
    serde_json::from_value(items).unwrap()
}

/// `window.musterDashboard.loadedAt`: set once when the script loads; a reload changes it.
fn marker(b: &Browser) -> Value {
    b.script("return window.musterDashboard && window.musterDashboard.loadedAt;", json!([]))
}

fn screenshot(b: &Browser, name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, b.screenshot()).unwrap();
    println!("screenshot: {}", path.display());
    path
}

/// Selects `value` in the `<select>` `id` the way a user does: a click on its option.
fn choose(b: &Browser, id: &str, value: &str) {
    let option =
        b.find(&format!("#{id} option[value=\"{value}\"]")).unwrap_or_else(|| panic!("{id} has {value}"));
    b.click(&option);
}

#[test]
fn the_dashboard_shows_the_cluster_and_follows_the_registry_live() {
    // Proves in headless Chromium against a 3-node cluster: the page served by a follower
    // lists the 3 members alive, the leader and 3 voters, and the registered services; a
    // markup-laden name is shown as text and runs nothing; the leader's active health checks
    // show (a failing TCP check turns its service unhealthy live, with the check's error; a
    // passing one shows its latency); a registration, an update and a
    // deregistration over REST show in the table and the feed without a reload (the load
    // marker stays); the filters and the search narrow the table; a stream that drops resumes
    // from the page's last revision and brings the change made meanwhile (in the feed, so not
    // a re-list); the page rides out its node's restart; at 390×844 the tables turn into
    // cards and nothing overflows sideways.
    let (mut all, leader) = three_nodes(["dash-a", "dash-b", "dash-c"], &["--profile", "local"], ELECT);
    let li = all.iter().position(|m| m.name == leader).unwrap();
    let fi = (0..3).find(|i| *i != li).unwrap();
    let oi = (0..3).find(|i| *i != li && *i != fi).unwrap();
    // Health check targets: a port this test listens on (passes), one nobody listens on (fails).
    let open_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let passing = format!("tcp://{}", open_port.local_addr().unwrap());
    let failing = format!("tcp://127.0.0.1:{}", free_port());
    let billing = register(
        &all[oi],
        json!({"name": "billing-api", "type": "http", "host": "10.0.0.5", "port": 8080, "protocol": "http",
               "tags": ["prod", "eu"], "description": "Invoices and payments", "ttl": 300,
               "health_check_url": passing, "health_check_interval": 1, "health_check_timeout": 1}),
        None,
    );
    let evil_name = "<img src=x onerror=\"window.__xss=1\">pwn";
    let evil =
        register(&all[li], json!({"name": evil_name, "type": "mqtt", "host": "broker", "port": 1883}), None);
    let (billing_id, evil_id) =
        (billing["service_id"].as_str().unwrap(), evil["service_id"].as_str().unwrap());

    let logs = tempfile::tempdir().unwrap();
    let b = Browser::start(DESKTOP.0, DESKTOP.1, logs.path());
    b.navigate(&format!("http://{}/", all[fi].http));
    let names: Vec<String> = all.iter().map(|m| m.name.clone()).collect();
    wait_for(SHOWN, "the page to list the 3 members alive", || {
        let rows = b.texts("#members tbody tr");
        let all_there =
            names.iter().all(|n| rows.iter().any(|r| r.starts_with(n.as_str()) && r.contains("alive")));
        (rows.len() == 3 && all_there).then_some(())
    });
    let raft_el = b.find("#raft").unwrap();
    wait_for(SHOWN, "the raft card to name the leader and 3 voters", || {
        let raft = b.text(&raft_el);
        (raft.contains(&leader) && raft.contains("voters\n3: ")).then_some(())
    });
    wait_for(SHOWN, "the page to list both services", || {
        let r = rows(&b);
        (r.len() == 2 && [billing_id, evil_id].iter().all(|id| r.iter().any(|i| i == id))).then_some(())
    });
    let evil_row = b.texts(&format!("#services tr[data-service-id=\"{evil_id}\"]")).pop().unwrap();
    assert!(evil_row.contains(evil_name), "the name shows as text: {evil_row}");
    let page = b.script(
        "return {xss: window.__xss || null, imgs: document.querySelectorAll('img').length};",
        json!([]),
    );
    assert_eq!(page, json!({"xss": null, "imgs": 0}), "markup in a service name must not become elements");
    let loaded = marker(&b);
    assert!(loaded.is_u64(), "the page sets its load marker: {loaded}");

    // Health checks: a status change comes as an event (the failing service is registered
    // now, so its change happens while the page watches); a passing check changes no status,
    // so its result shows when the page re-reads the services (every 10 s).
    let ledger = register(
        &all[li],
        json!({"name": "ledger-db", "type": "postgres", "host": "10.0.0.6", "port": 5432, "protocol": "tcp",
               "tags": ["prod"], "health_check_url": failing, "health_check_interval": 1,
               "health_check_timeout": 1, "health_check_unhealthy_threshold": 2}),
        None,
    );
    let ledger_id = ledger["service_id"].as_str().unwrap().to_string();
    let cell =
        |id: &str, label: &str| format!("#services tr[data-service-id=\"{id}\"] td[data-label=\"{label}\"]");
    wait_for(SHOWN, "ledger-db to turn unhealthy live, with its failing check", || {
        let status = b.texts(&cell(&ledger_id, "Status")).pop()?;
        let check = b.texts(&cell(&ledger_id, "Health check")).pop()?;
        let event = feed(&b).contains(&"health_status_changed ledger-db".to_string());
        (status == "unhealthy" && check.contains("failing") && check.contains("failures in a row") && event)
            .then_some(())
    });
    let ledger_check = b.texts(&cell(&ledger_id, "Health check")).pop().unwrap();
    assert!(ledger_check.contains("refused"), "the check's error shows: {ledger_check}");
    let first_check = wait_for(SHOWN, "billing-api's passing check with its latency", || {
        let check = b.texts(&cell(billing_id, "Health check")).pop()?;
        (check.starts_with("passing") && check.contains(" ms at ")).then_some(check)
    });
    wait_for(SHOWN, "a later passing check of billing-api (the page re-reads what makes no event)", || {
        let check = b.texts(&cell(billing_id, "Health check")).pop()?;
        (check.starts_with("passing") && check != first_check).then_some(())
    });

    // Live changes, no reload.
    let orders = register(
        &all[oi],
        json!({"name": "orders-worker", "type": "worker", "host": "10.0.0.7", "port": 9000, "tags": ["batch"]}),
        None,
    );
    let orders_id = orders["service_id"].as_str().unwrap().to_string();
    wait_for(SHOWN, "the new service in the table and the feed without a reload", || {
        let shown = rows(&b).contains(&orders_id);
        (shown && feed(&b).contains(&"service_registered orders-worker".to_string())).then_some(())
    });
    let (status, _) = http(
        all[li].http,
        "PUT",
        &format!("/api/v1/services/{orders_id}"),
        Some(&json!({"status": "inactive"})),
        None,
    );
    assert_eq!(status, 200);
    wait_for(SHOWN, "orders-worker's status to turn inactive live", || {
        (b.texts(&cell(&orders_id, "Status")).first()? == "inactive").then_some(())
    });
    let (status, _) = http(all[fi].http, "DELETE", &format!("/api/v1/services/{evil_id}"), None, None);
    assert_eq!(status, 200);
    wait_for(SHOWN, "the deregistered service to leave the table", || {
        (!rows(&b).contains(&evil_id.to_string())).then_some(())
    });
    let f = feed(&b);
    let at = |line: &str| f.iter().position(|l| l == line).unwrap_or_else(|| panic!("no {line:?} in {f:?}"));
    let newest_first = [
        format!("service_deregistered {evil_name}"),
        "service_updated orders-worker".to_string(),
        "service_registered orders-worker".to_string(),
    ];
    assert!(newest_first.windows(2).all(|w| at(&w[0]) < at(&w[1])), "newest first: {f:?}");
    assert_eq!(marker(&b), loaded, "the page did not reload");

    // Filters and search.
    let search = b.find("#filter-text").unwrap();
    b.type_into(&search, "INVOICES");
    wait_for(SHOWN, "the search to keep only billing-api (by description)", || {
        (rows(&b) == [billing_id.to_string()]).then_some(())
    });
    b.script("const s = document.getElementById('filter-text'); s.value = ''; s.dispatchEvent(new Event('input'));", json!([]));
    choose(&b, "filter-type", "worker");
    wait_for(SHOWN, "the type filter to keep only orders-worker", || {
        (rows(&b) == [orders_id.clone()]).then_some(())
    });
    choose(&b, "filter-type", "");
    choose(&b, "filter-status", "inactive");
    wait_for(SHOWN, "the status filter to keep only orders-worker", || {
        (rows(&b) == [orders_id.clone()]).then_some(())
    });
    choose(&b, "filter-status", "unhealthy");
    wait_for(SHOWN, "the status filter to keep only ledger-db", || {
        (rows(&b) == [ledger_id.clone()]).then_some(())
    });
    choose(&b, "filter-status", "");
    choose(&b, "filter-tag", "batch");
    wait_for(SHOWN, "the tag filter to keep only orders-worker", || {
        (rows(&b) == [orders_id.clone()]).then_some(())
    });
    choose(&b, "filter-tag", "");
    wait_for(SHOWN, "the 3 services back", || (rows(&b).len() == 3).then_some(()));
    // The whole page in one picture: a viewport as tall as the document, focus and the
    // highlight of fresh rows gone.
    b.script("document.activeElement.blur(); document.querySelectorAll('tr.flash').forEach(r => r.classList.remove('flash'));", json!([]));
    let tall = b.script("return document.documentElement.scrollHeight;", json!([])).as_u64().unwrap();
    b.resize(DESKTOP.0, u32::try_from(tall).unwrap().max(DESKTOP.1));
    let desktop = screenshot(&b, "dashboard-desktop.png");
    b.resize(DESKTOP.0, DESKTOP.1);
    if std::env::var_os("MUSTER_UPDATE_DOCS_SCREENSHOT").is_some_and(|v| v == "1") {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
        std::fs::create_dir_all(docs.parent().unwrap()).unwrap();
        std::fs::copy(&desktop, &docs).unwrap();
        println!("screenshot copied to {}", docs.display());
    }

    // The stream drops while a change happens: the page reconnects with the revision it had
    // and gets the change it missed. The client side closes it here, with the page's retry
    // delay set long enough for the change to be applied on this node first; without the
    // resume revision the stream would start after the change and miss it.
    let conn = b.find("#conn").unwrap();
    b.script("const s = window.musterDashboard.state; s.wsRetryMs = 6000; s.ws.close();", json!([]));
    wait_for(SHOWN, "the page to notice the stream ended", || {
        (b.text(&conn) == "reconnecting").then_some(())
    });
    let missed = register(
        &all[li],
        json!({"name": "missed-while-away", "type": "http", "host": "h", "port": 2}),
        None,
    );
    let missed_id = missed["service_id"].as_str().unwrap().to_string();
    let on_page_node = format!("/api/v1/services/{missed_id}?stale=true");
    wait_for(SHOWN, "the page's node to apply the registration", || {
        (http(all[fi].http, "GET", &on_page_node, None, None).0 == 200).then_some(())
    });
    assert_eq!(b.text(&conn), "reconnecting", "the page must still be waiting to reconnect");
    wait_for(SHOWN, "the resumed stream to bring the missed registration", || {
        let there = rows(&b).contains(&missed_id)
            && feed(&b).contains(&"service_registered missed-while-away".to_string());
        (there && b.text(&conn) == "live").then_some(())
    });

    // The page's node goes away and comes back: the page keeps going and catches up.
    let leader_gossip = all[li].gossip.to_string();
    let page_node = all.remove(fi);
    let ports = (page_node.gossip.port(), page_node.http.port(), page_node.rpc.port());
    let Muster { dir, mut proc, name, .. } = page_node;
    proc.kill9();
    wait_for(SHOWN, "the page to notice its node is gone", || {
        (b.text(&conn) == "reconnecting").then_some(())
    });
    let leader_node = all.iter().find(|m| m.name == leader).unwrap();
    let outage =
        register(leader_node, json!({"name": "during-outage", "type": "http", "host": "h", "port": 1}), None);
    let outage_id = outage["service_id"].as_str().unwrap().to_string();
    let back = Muster::start_in(&name, &["--profile", "local", "--join", &leader_gossip], dir, Some(ports));
    wait_for(RESUMED, "the page to reconnect to the restarted node and show during-outage", || {
        let there = rows(&b).contains(&outage_id)
            && feed(&b).contains(&"service_registered during-outage".to_string());
        (there && b.text(&conn) == "live").then_some(())
    });
    assert_eq!(marker(&b), loaded, "the page did not reload");

    // A phone.
    b.resize(PHONE.0, PHONE.1);
    wait_for(SHOWN, "the viewport to be 390×844", || {
        let size = b.script("return [window.innerWidth, window.innerHeight];", json!([]));
        (size == json!([PHONE.0, PHONE.1])).then_some(())
    });
    let layout = b.script(
        "const root = document.documentElement;\
         return {thead: getComputedStyle(document.querySelector('#services thead')).display,\
                 row: getComputedStyle(document.querySelector('#services tbody tr')).display,\
                 overflow: root.scrollWidth - window.innerWidth};",
        json!([]),
    );
    assert_eq!(layout, json!({"thead": "none", "row": "block", "overflow": 0}), "cards, no sideways scroll");
    screenshot(&b, "dashboard-phone.png");
    b.script("document.getElementById('services-section').scrollIntoView();", json!([]));
    screenshot(&b, "dashboard-phone-services.png");

    assert_eq!(b.script_errors(), Vec::<String>::new(), "the page's scripts ran without errors");
    drop(b);
    drop(back);
    drop(open_port);
}

#[test]
fn the_dashboard_asks_for_a_token_keeps_it_and_streams_with_it() {
    // Proves on a node with --tokens-file: the page's assets load without a token, its data
    // calls answer 401 and the page asks for a token; with a read token typed in it lists the
    // services, keeps the token in localStorage, gets a new registration through the
    // WebSocket (?token=), and after a reload needs no new prompt.
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = ("r".repeat(8) + "eadsecret-0123", "w".repeat(8) + "ritesecret-456");
    let file = dir.path().join("tokens");
    std::fs::write(&file, format!("viewer read {reader}\nci write {writer}\n")).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let client = vec!["--token".to_string(), reader.clone()];
    let f = file.display().to_string();
    let m = Muster::start_client("dash-tk", &["--profile", "local", "--tokens-file", &f], client);
    wait_for(ELECT, "the single node to lead", || {
        http(m.http, "GET", "/health", None, None).1["raft"]["leader"].as_str().map(|_| ())
    });
    let (status, _) = http(m.http, "GET", "/v1/members", None, None);
    assert_eq!(status, 401, "data needs a token");
    let (status, page) = http(m.http, "GET", "/", None, None);
    assert!(status == 200 && page.as_str().is_some_and(|p| p.contains("/ui/dashboard.js")), "{status}");
    let first =
        register(&m, json!({"name": "vault", "type": "http", "host": "h", "port": 8200}), Some(&writer));

    let logs = tempfile::tempdir().unwrap();
    let b = Browser::start(DESKTOP.0, DESKTOP.1, logs.path());
    b.navigate(&format!("http://{}/", m.http));
    let panel = b.find("#token-panel").unwrap();
    wait_for(SHOWN, "the page to ask for a token", || {
        let text = b.text(&panel);
        text.contains("This node asks for an API token").then_some(())
    });
    assert!(rows(&b).is_empty(), "nothing listed without a token");
    b.type_into(&b.find("#token-input").unwrap(), &reader);
    b.click(&b.find("#token-save").unwrap());
    wait_for(SHOWN, "the services listed with the token", || {
        (rows(&b) == [first["service_id"].as_str().unwrap().to_string()]).then_some(())
    });
    let kept = b.script("return localStorage.getItem('muster.token');", json!([]));
    assert_eq!(kept, json!(reader), "the token is kept");
    assert_eq!(b.text(&panel), "", "the prompt is gone");
    let second =
        register(&m, json!({"name": "consul", "type": "http", "host": "h", "port": 8500}), Some(&writer));
    let second_id = second["service_id"].as_str().unwrap().to_string();
    wait_for(SHOWN, "the stream (with ?token=) to bring the new service", || {
        (rows(&b).contains(&second_id) && feed(&b).contains(&"service_registered consul".to_string()))
            .then_some(())
    });
    b.navigate(&format!("http://{}/", m.http));
    wait_for(SHOWN, "both services after a reload, with the kept token", || {
        (rows(&b).len() == 2).then_some(())
    });
    assert_eq!(b.text(&b.find("#token-panel").unwrap()), "", "no prompt after a reload");
    assert_eq!(b.script_errors(), Vec::<String>::new(), "the page's scripts ran without errors");
}
