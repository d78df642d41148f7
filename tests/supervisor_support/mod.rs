//! Helpers for the tests that drive the supervisor against the real local Docker engine: the
//! image built from our own binary, a per-run node name and the clean-up of everything
//! labelled with it, parsing a compose text for a role, and waiting on the loop's status.
// Each test binary uses a part of these helpers.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use muster::supervisor::{parse, MusterVars, StackStatus, Stacks};
use tokio::sync::watch;

pub const SOCKET: &str = "/var/run/docker.sock";

/// A stack file for whole-node tests: a server stack of two idle containers (`api` after
/// `db`) and a proxy stack of one whose environment names the server, all from `muster:dev`.
pub const IDLE_STACK: &str = r#"
services:
  db:
    image: muster:dev
    command: ["idle"]
    init: true
    profiles: [server]
  api:
    image: muster:dev
    command: ["idle"]
    init: true
    depends_on: [db]
    profiles: [server]
  camera-proxy:
    image: muster:dev
    command: ["idle"]
    init: true
    profiles: [proxy]
    environment:
      CAPTURE_DAEMON_URL: "http://${MUSTER_SERVER_HOST}:8080"
"#;
/// The longest any one step may take (a stack of a few idle containers converges in seconds).
pub const WAIT: Duration = Duration::from_secs(60);

pub fn unix_now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A node name no other run uses, so leftovers and parallel runs never clash.
pub fn unique_node(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{nanos:09}", std::process::id())
}

/// Removes every container and network labelled with the test's node, now and on drop.
pub struct Cleanup {
    pub node: String,
}

impl Cleanup {
    pub fn new(node: &str) -> Cleanup {
        let cleanup = Cleanup { node: node.to_string() };
        cleanup.run();
        cleanup
    }

    pub fn run(&self) {
        let filter = format!("label=muster.node={}", self.node);
        let list = |args: &[&str]| -> Vec<String> {
            let out = Command::new("docker").args(args).arg("--filter").arg(&filter).output();
            out.map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(String::from).collect())
                .unwrap_or_default()
        };
        let containers = list(&["ps", "-aq"]);
        if !containers.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f", "-v"]).args(&containers).output();
        }
        let networks = list(&["network", "ls", "-q"]);
        if !networks.is_empty() {
            let _ = Command::new("docker").args(["network", "rm"]).args(&networks).output();
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.run();
    }
}

/// Both stacks of `compose` as a node of `role` sees them under the server `server_host`.
pub fn stacks(compose: &str, node: &str, role: &str, server_host: &str, epoch: u64) -> Stacks {
    let vars = MusterVars {
        server_host: server_host.to_string(),
        server_addr: format!("{server_host}:9999"),
        node: node.to_string(),
        role: role.to_string(),
        epoch,
    };
    parse(compose, &vars.merged_with([]), Path::new("/")).expect("the test compose file parses")
}

/// Builds `muster:dev` from the muster binary cargo built for this test.
pub fn build_image() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mkimage.sh");
    let out = Command::new(&script).arg(env!("CARGO_BIN_EXE_muster")).output().expect("run mkimage.sh");
    assert!(out.status.success(), "mkimage.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "muster:dev");
}

pub async fn wait_status(
    rx: &mut watch::Receiver<StackStatus>,
    what: &str,
    done: impl FnMut(&StackStatus) -> bool,
) -> StackStatus {
    let waited = tokio::time::timeout(WAIT, rx.wait_for(done)).await.map(|r| r.map(|s| s.clone()));
    match waited {
        Ok(Ok(status)) => status,
        Ok(Err(_)) => panic!("the reconcile loop stopped while waiting for {what}"),
        Err(_) => panic!("waited {WAIT:?} for {what}; last status: {:#?}", *rx.borrow()),
    }
}

/// Waits until the loop reports `to` converged by a transition that began at or after
/// `after_ms`, and prints that transition with its measured time.
pub async fn converged(rx: &mut watch::Receiver<StackStatus>, to: &str, after_ms: u64) -> StackStatus {
    let status = wait_status(rx, &format!("{to} converged"), |s| {
        s.converged
            && s.last_transition
                .as_ref()
                .is_some_and(|t| t.to == to && t.started_unix_ms >= after_ms && t.finished_unix_ms.is_some())
    })
    .await;
    let t = status.last_transition.clone().unwrap();
    println!(
        "transition {} -> {}: {} ms, {} actions (first reason: {})",
        t.from,
        t.to,
        t.duration_ms.unwrap(),
        t.actions,
        t.reason
    );
    status
}

/// Wall-clock nanoseconds, as Docker's events carry them.
pub fn unix_now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

/// Docker's events for server-stack containers between two instants: `(time_ns, action, node)`.
pub fn server_events(since_ns: u128, until_ns: u128) -> Vec<(u128, String, String)> {
    let at = |ns: u128| format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000);
    let out = Command::new("docker")
        .args(["events", "--since", &at(since_ns), "--until", &at(until_ns)])
        .args(["--filter", "type=container", "--filter", "label=muster.stack=server", "--format"])
        .arg("{{.TimeNano}} {{.Action}} {{index .Actor.Attributes \"muster.node\"}}")
        .output()
        .expect("docker events");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let [t, action, node] = f[..] else { return None };
            Some((t.parse().ok()?, action.to_string(), node.to_string()))
        })
        .collect()
}
