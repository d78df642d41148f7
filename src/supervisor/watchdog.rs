//! The server stack's watchdog: a process of its own (`muster watchdog`, in its own process
//! group), started by the node once it has a Docker engine. It watches the node's process and,
//! the moment that process is gone without having stopped its stack (killed with -9, crashed),
//! stops this node's server-stack containers, so that a dead node's server stack does not keep
//! running beside the next server's. The next server waits the stop timeout plus a margin
//! before it starts its stack (see [`super::transition`]); the watchdog notices within
//! [`POLL`] and docker stops a container within the stop timeout.
//!
//! A node that stops gracefully has drained its server stack already; its watchdog then finds
//! nothing to stop. Proxy containers are never touched. Must not import anything outside
//! `supervisor`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::docker::{DockerEngine, DockerError, EngineOptions, ExecuteContext};
use super::plan::{Action, Desired};
use super::spec::StackKind;

/// How often the watchdog looks at the node's process.
pub const POLL: Duration = Duration::from_millis(100);

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

    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start)
    }
}

/// Field 22 (starttime) of `/proc/<pid>/stat`; the fields after the `)` that ends the
/// command name are space-separated.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
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
        .stdin(Stdio::null())
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
/// A SIGTERM while the node still runs ends the watchdog quietly (the node stops its own
/// stack); after the node is gone it does its job first.
pub async fn run(cfg: WatchdogConfig) -> Result<Vec<String>, DockerError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    loop {
        if !cfg.node_process.alive() {
            break;
        }
        let terminated = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = terminated => {
                if cfg.node_process.alive() {
                    return Ok(Vec::new());
                }
                break;
            }
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    let options = EngineOptions { stop_timeout_s: cfg.stop_timeout_s, ..EngineOptions::default() };
    let engine = DockerEngine::connect_with(&cfg.socket, options).await?;
    let observed = engine.observe(&cfg.node).await?;
    let live: Vec<_> =
        observed.iter().filter(|c| c.stack == StackKind::Server && c.state.is_live()).collect();
    let actions: Vec<Action> = live
        .iter()
        .map(|c| Action::Stop {
            id: c.id.clone(),
            reason: format!("the node's muster (pid {}) is gone", cfg.node_process.pid),
        })
        .collect();
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
}
