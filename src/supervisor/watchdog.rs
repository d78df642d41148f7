//! The server stack's watchdog: a process of its own (`muster watchdog`, in its own process
//! group), started by the node once it has a Docker engine. It watches the node's process and,
//! the moment that process is gone without having stopped its stack (killed with -9, crashed),
//! stops this node's server-stack containers, so that a dead node's server stack does not keep
//! running beside the next server's. The next server waits the stop timeout plus a margin
//! before it starts its stack (see [`super::transition`]); the watchdog notices within
//! [`POLL`] and docker stops a container within the stop timeout.
//!
//! It also fences a node that is alive but hung (stopped with SIGSTOP, frozen, stuck): while
//! the node is the server it renews a fence over the watchdog's stdin ([`FENCE_RENEW`], a
//! `serve <ms>` line, [`FENCE_WINDOW`]); when the fence lapses without renewal the watchdog
//! stops and removes the server containers itself (a resumed server recreates them). A hung server cannot stop its own stack, and the next
//! server starts its stack only after its election plus the stop timeout plus a margin of 2 s,
//! later than the fence (1.5 s) plus the poll plus the stop timeout. `rest` clears the fence
//! (the node is not the server and stops its own stack).
//!
//! A node that stops gracefully has drained its server stack already; its watchdog then finds
//! nothing to stop. Proxy containers are never touched. Must not import anything outside
//! `supervisor`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::docker::{DockerEngine, DockerError, EngineOptions, ExecuteContext};
use super::plan::{Action, Desired};
use super::spec::StackKind;

/// How often the watchdog looks at the node's process.
pub const POLL: Duration = Duration::from_millis(100);
/// How long the server stack may run after the node's last renewal.
pub const FENCE_WINDOW: Duration = Duration::from_millis(1500);
/// How often a serving node renews its fence.
pub const FENCE_RENEW: Duration = Duration::from_millis(200);
/// A fence found lapsed longer ago than this was not seen in time: the watchdog itself was
/// frozen (the whole host was), the next server may run already, and the containers are
/// killed at once instead of stopped gracefully.
pub const FENCE_LATE: Duration = Duration::from_millis(500);
/// The longest fence line the watchdog reads (a longer line is a protocol error, ignored).
const FENCE_LINE_MAX: usize = 64;

/// The fence a serving node renews: pure, time is an argument.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fence {
    /// Until when the server stack may run; None: the node is not serving.
    until: Option<Instant>,
}

impl Fence {
    /// The renewal line a node sends: serving for `window`, or resting.
    pub fn line(serving: bool, window: Duration) -> String {
        if serving {
            format!("serve {}\n", window.as_millis())
        } else {
            "rest\n".to_string()
        }
    }

    /// Takes one line from the node; false (and no change) for a line that is neither
    /// `serve <ms>` (at most one minute) nor `rest`.
    pub fn on_line(&mut self, line: &str, now: Instant) -> bool {
        let line = line.trim();
        if line == "rest" {
            self.until = None;
            return true;
        }
        let ms = line.strip_prefix("serve ").and_then(|ms| ms.parse::<u64>().ok()).filter(|ms| *ms <= 60_000);
        match ms {
            Some(ms) => {
                self.until = Some(now + Duration::from_millis(ms));
                true
            }
            None => false,
        }
    }

    /// Whether the fence has lapsed at `now`, and how long ago; a lapsed fence is cleared, so
    /// it fires once per lapse (the next `serve` arms it again).
    pub fn lapsed(&mut self, now: Instant) -> Option<Duration> {
        match self.until {
            Some(until) if now >= until => {
                self.until = None;
                Some(now - until)
            }
            _ => None,
        }
    }
}

/// A process as the kernel knows it: its pid and its start time (field 22 of
/// `/proc/<pid>/stat`), so a reused pid is not taken for the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: u32,
    pub start: u64,
}

impl ProcessId {
    /// This process.
    pub fn current() -> Option<ProcessId> {
        let pid = std::process::id();
        Some(ProcessId { pid, start: start_time(pid)? })
    }

    /// The process exists under its start time and has not ended (a zombie, dead but not yet
    /// reaped by its parent, is gone).
    pub fn alive(&self) -> bool {
        stat(self.pid).is_some_and(|(state, start)| start == self.start && !matches!(state, 'Z' | 'X'))
    }
}

/// Field 22 (starttime) of `/proc/<pid>/stat`.
fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, start)| start)
}

/// Fields 3 (state) and 22 (starttime) of `/proc/<pid>/stat`; the fields after the `)` that
/// ends the command name are space-separated.
fn stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(18)?.parse().ok()?))
}

/// Starts `muster watchdog` for this node from this very binary, in a process group of its
/// own so that a signal to the node's group does not reach it.
pub fn spawn(node: &str, socket: &Path, stop_timeout_s: u32) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt as _;
    let me =
        ProcessId::current().ok_or_else(|| std::io::Error::other("cannot read this process' start time"))?;
    std::process::Command::new(std::env::current_exe()?)
        .arg("watchdog")
        .args(["--pid", &me.pid.to_string(), "--pid-start", &me.start.to_string(), "--node", node])
        .arg("--docker-socket")
        .arg(socket)
        .args(["--stop-timeout", &stop_timeout_s.to_string()])
        .stdin(Stdio::piped())
        .process_group(0)
        .spawn()
}

/// What `muster watchdog` is told.
#[derive(Debug, Clone)]
pub struct WatchdogConfig {
    pub node_process: ProcessId,
    pub node: String,
    pub socket: PathBuf,
    pub stop_timeout_s: u32,
}

/// Waits until the node's process is gone, then stops the node's live server containers.
/// Meanwhile reads fence lines from stdin ([`Fence`]) and, when a serving node's fence lapses,
/// stops the server containers at once (the node is hung). A SIGTERM while the node still runs
/// ends the watchdog quietly (the node stops its own stack); after the node is gone it does
/// its job first.
pub async fn run(cfg: WatchdogConfig) -> Result<Vec<String>, DockerError> {
    use tokio::io::AsyncBufReadExt as _;
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut lines = Some(tokio::io::BufReader::new(tokio::io::stdin()).lines());
    let mut fence = Fence::default();
    loop {
        if !cfg.node_process.alive() {
            break;
        }
        if let Some(late) = fence.lapsed(Instant::now()) {
            let reason = format!(
                "the node's muster (pid {}) did not renew its server fence for {} ms (hung or frozen)",
                cfg.node_process.pid,
                (FENCE_WINDOW + late).as_millis()
            );
            let teardown = if late > FENCE_LATE { Teardown::Kill } else { Teardown::StopAndRemove };
            match stop_server_containers(&cfg, &reason, teardown).await {
                Ok(stopped) if !stopped.is_empty() => {
                    eprintln!("muster watchdog: {reason}; stopped its server containers {stopped:?}")
                }
                Ok(_) => {}
                Err(e) => eprintln!("muster watchdog: {reason}; stopping its server containers failed: {e}"),
            }
        }
        let terminated = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let line = async {
            match lines.as_mut() {
                Some(l) => l.next_line().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = terminated => {
                if cfg.node_process.alive() {
                    return Ok(Vec::new());
                }
                break;
            }
            l = line => match l {
                Ok(Some(l)) if l.len() <= FENCE_LINE_MAX => {
                    fence.on_line(&l, Instant::now());
                }
                Ok(Some(_)) => {}
                // The node closed its end (it is stopping or gone): liveness decides from now on.
                Ok(None) | Err(_) => lines = None,
            },
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    let reason = format!("the node's muster (pid {}) is gone", cfg.node_process.pid);
    stop_server_containers(&cfg, &reason, Teardown::Stop).await
}

/// What the watchdog does to a server container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Teardown {
    /// The node is gone: stopped containers stay for a post-mortem (`docker logs`); the node
    /// replaces them if it comes back as the server (a new epoch).
    Stop,
    /// The node is hung: it may resume as the server in the same epoch, and the supervisor
    /// takes a stopped container that exited 0 for a finished one-shot, so the containers go.
    StopAndRemove,
    /// The fence lapsed long before the watchdog saw it (the host was frozen and just thawed):
    /// the next server may run already, so the containers are killed and removed at once.
    Kill,
}

/// Stops (and with [`Teardown::StopAndRemove`] removes) the node's live server containers;
/// returns their names.
async fn stop_server_containers(
    cfg: &WatchdogConfig,
    reason: &str,
    teardown: Teardown,
) -> Result<Vec<String>, DockerError> {
    let options = EngineOptions { stop_timeout_s: cfg.stop_timeout_s, ..EngineOptions::default() };
    let engine = DockerEngine::connect_with(&cfg.socket, options).await?;
    let observed = engine.observe(&cfg.node).await?;
    let live: Vec<_> =
        observed.iter().filter(|c| c.stack == StackKind::Server && c.state.is_live()).collect();
    let stop = live.iter().map(|c| Action::Stop { id: c.id.clone(), reason: reason.to_string() });
    // Removal is forced: it kills a container that still runs.
    let remove = live.iter().map(|c| Action::Remove { id: c.id.clone(), reason: reason.to_string() });
    let actions: Vec<Action> = match teardown {
        Teardown::Stop => stop.collect(),
        Teardown::StopAndRemove => stop.chain(remove).collect(),
        Teardown::Kill => remove.collect(),
    };
    if actions.is_empty() {
        return Ok(Vec::new());
    }
    let desired = Desired::nothing(0);
    let ctx = ExecuteContext { node: &cfg.node, desired: &desired, observed: &observed };
    engine.execute(&actions, &ctx).await?;
    Ok(live.iter().map(|c| c.name.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_known_by_pid_and_start_time() {
        // Proves the liveness check: this process is alive under its own start time, not under
        // another one (a reused pid), and a pid that does not exist is not alive.
        let me = ProcessId::current().unwrap();
        assert!(me.alive());
        assert!(!ProcessId { start: me.start + 1, ..me }.alive());
        assert!(!ProcessId { pid: u32::MAX - 1, start: me.start }.alive());
    }

    #[test]
    fn a_zombie_is_not_alive() {
        // Proves a process that ended but is not reaped yet counts as gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let id = ProcessId { pid: child.id(), start: start_time(child.id()).unwrap() };
        let deadline = Instant::now() + Duration::from_secs(10);
        while id.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!id.alive(), "the ended, unreaped child still counts as alive");
        assert_eq!(stat(id.pid).map(|(state, _)| state), Some('Z'), "it is a zombie until reaped");
        child.wait().unwrap();
    }

    #[test]
    fn a_fence_lapses_once_without_renewal_and_never_while_renewed_or_resting() {
        // Proves the fence rule: renewed in time it never lapses; unrenewed it lapses once at
        // its deadline; `rest` disarms it; bad lines change nothing.
        let t = Instant::now();
        let mut f = Fence::default();
        assert_eq!(f.lapsed(t + Duration::from_secs(100)), None, "an unarmed fence never lapses");
        assert!(f.on_line(&Fence::line(true, FENCE_WINDOW), t));
        for k in 1..10 {
            let now = t + FENCE_RENEW * k;
            assert_eq!(f.lapsed(now), None);
            assert!(f.on_line("serve 1500", now));
        }
        let last = t + FENCE_RENEW * 9;
        assert_eq!(f.lapsed(last + Duration::from_millis(1499)), None);
        assert_eq!(
            f.lapsed(last + Duration::from_millis(1700)),
            Some(Duration::from_millis(200)),
            "how late"
        );
        assert_eq!(f.lapsed(last + Duration::from_millis(1800)), None, "it fires once per lapse");
        assert!(f.on_line("serve 1500", last));
        assert!(f.on_line(&Fence::line(false, FENCE_WINDOW), last));
        assert_eq!(f.lapsed(last + Duration::from_secs(10)), None, "rest disarms it");
        for bad in ["serve", "serve x", "serve 60001", "stop", ""] {
            assert!(!f.on_line(bad, last), "{bad:?}");
        }
        assert_eq!(f, Fence::default());
    }
}
