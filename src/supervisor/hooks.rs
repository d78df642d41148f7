//! Transition hooks (`--on-promote`, `--on-demote`, `--on-server-change`): executables run on
//! this host when its role or the server changes, for hosts without Docker or with work of
//! their own. One runner task runs them one at a time in the order of the transitions, each
//! with a deadline; output is logged line by line; a failure is reported, never fatal.
//!
//! Environment of a hook: `MUSTER_HOOK` (`on-promote`, ...), `MUSTER_NODE`, `MUSTER_ROLE`
//! (`server`, `proxy` or `none`: what this host runs after the transition),
//! `MUSTER_PREVIOUS_ROLE`, `MUSTER_SERVER_NODE`, `MUSTER_SERVER_HOST`, `MUSTER_SERVER_ADDR`
//! (empty when no server is known), `MUSTER_EPOCH`, `MUSTER_REASON`. Must not import anything
//! outside `supervisor`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::transition::{Change, Hook, Want};

/// How long one hook may run before it is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(60);
/// Transitions whose hooks wait to run; more are dropped with a warning.
const QUEUE_MAX: usize = 16;
/// Output lines logged per stream of one hook run; the rest is counted, not logged.
const LOG_LINES_MAX: usize = 200;

/// The scripts configured for each hook.
#[derive(Debug, Clone, Default)]
pub struct HookScripts {
    pub on_promote: Option<PathBuf>,
    pub on_demote: Option<PathBuf>,
    pub on_server_change: Option<PathBuf>,
}

impl HookScripts {
    fn script(&self, hook: Hook) -> Option<&PathBuf> {
        match hook {
            Hook::Promote => self.on_promote.as_ref(),
            Hook::Demote => self.on_demote.as_ref(),
            Hook::ServerChange => self.on_server_change.as_ref(),
        }
    }

    pub fn any(&self) -> bool {
        self.on_promote.is_some() || self.on_demote.is_some() || self.on_server_change.is_some()
    }
}

/// How the last run of a hook ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookRun {
    pub hook: Hook,
    pub script: String,
    /// `exit 0`, `exit 3`, `killed after 60 s`, `cannot start: ...`.
    pub outcome: String,
    pub ok: bool,
    pub started_unix_ms: u64,
    pub duration_ms: u64,
}

/// Queues the hooks of transitions for the runner task.
#[derive(Clone)]
pub struct HookQueue {
    tx: mpsc::Sender<Change>,
}

impl HookQueue {
    /// Queues `change`'s hooks; a full queue drops them with a warning.
    pub fn push(&self, change: &Change) {
        if change.hooks.is_empty() {
            return;
        }
        if self.tx.try_send(change.clone()).is_err() {
            tracing::warn!(hooks = ?change.hooks, "supervisor: hook queue full; these hooks are skipped");
        }
    }
}

/// Starts the runner: returns its queue, the runner future (spawn it) and the last runs.
pub fn runner(
    node: String,
    scripts: HookScripts,
    shutdown: CancellationToken,
) -> (HookQueue, impl std::future::Future<Output = ()>, watch::Receiver<Vec<HookRun>>) {
    let (tx, mut rx) = mpsc::channel::<Change>(QUEUE_MAX);
    let (runs_tx, runs_rx) = watch::channel(Vec::<HookRun>::new());
    let task = async move {
        loop {
            let change = tokio::select! {
                _ = shutdown.cancelled() => return,
                c = rx.recv() => match c { Some(c) => c, None => return },
            };
            for hook in &change.hooks {
                let Some(script) = scripts.script(*hook) else { continue };
                let run = run_one(*hook, script, &node, &change).await;
                runs_tx.send_modify(|runs: &mut Vec<HookRun>| {
                    runs.retain(|r| r.hook != run.hook);
                    runs.push(run);
                });
            }
        }
    };
    (HookQueue { tx }, task, runs_rx)
}

fn role_name(w: &Want) -> &'static str {
    w.stack.map_or("none", |s| s.as_str())
}

fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Runs one hook to completion (or its deadline) and logs what it printed.
async fn run_one(hook: Hook, script: &PathBuf, node: &str, change: &Change) -> HookRun {
    let started_unix_ms = unix_ms();
    let began = tokio::time::Instant::now();
    let server = change.to.server.as_ref();
    let mut cmd = tokio::process::Command::new(script);
    cmd.env("MUSTER_HOOK", hook.name())
        .env("MUSTER_NODE", node)
        .env("MUSTER_ROLE", role_name(&change.to))
        .env("MUSTER_PREVIOUS_ROLE", role_name(&change.from))
        .env("MUSTER_SERVER_NODE", server.map_or("", |s| s.node.as_str()))
        .env("MUSTER_SERVER_HOST", server.map_or("", |s| s.host.as_str()))
        .env("MUSTER_SERVER_ADDR", server.map_or("", |s| s.addr.as_str()))
        .env("MUSTER_EPOCH", change.to.epoch.to_string())
        .env("MUSTER_REASON", &change.reason)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let shown = script.display().to_string();
    let finish = |outcome: String, ok: bool| HookRun {
        hook,
        script: shown.clone(),
        outcome,
        ok,
        started_unix_ms,
        duration_ms: began.elapsed().as_millis() as u64,
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(hook = hook.name(), script = %shown, error = %e, "supervisor: hook cannot start");
            return finish(format!("cannot start: {e}"), false);
        }
    };
    let out = child.stdout.take().map(|s| tokio::spawn(log_lines(hook, s, false)));
    let err = child.stderr.take().map(|s| tokio::spawn(log_lines(hook, s, true)));
    let status = tokio::time::timeout(HOOK_TIMEOUT, child.wait()).await;
    let run = match status {
        Ok(Ok(s)) if s.success() => finish("exit 0".into(), true),
        Ok(Ok(s)) => finish(s.code().map_or_else(|| format!("ended by {s}"), |c| format!("exit {c}")), false),
        Ok(Err(e)) => finish(format!("cannot wait for it: {e}"), false),
        Err(_) => {
            let _ = child.kill().await;
            finish(format!("killed after {} s", HOOK_TIMEOUT.as_secs()), false)
        }
    };
    for task in [out, err].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
    }
    if run.ok {
        tracing::info!(hook = hook.name(), script = %shown, duration_ms = run.duration_ms, "supervisor: hook done");
    } else {
        tracing::warn!(hook = hook.name(), script = %shown, outcome = %run.outcome,
            duration_ms = run.duration_ms, "supervisor: hook failed");
    }
    run
}

async fn log_lines(hook: Hook, stream: impl tokio::io::AsyncRead + Unpin, stderr: bool) {
    let mut lines = BufReader::new(stream).lines();
    let mut n = 0usize;
    while let Ok(Some(line)) = lines.next_line().await {
        n += 1;
        if n > LOG_LINES_MAX {
            continue;
        }
        if stderr {
            tracing::warn!(hook = hook.name(), "hook stderr: {line}");
        } else {
            tracing::info!(hook = hook.name(), "hook: {line}");
        }
    }
    if n > LOG_LINES_MAX {
        tracing::info!(hook = hook.name(), lines = n - LOG_LINES_MAX, "hook: more output not logged");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::spec::StackKind;
    use crate::supervisor::transition::ServerRef;

    fn script(dir: &std::path::Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn promote() -> Change {
        Change {
            from: Want::nothing(),
            to: Want {
                stack: Some(StackKind::Server),
                epoch: 7,
                server: Some(ServerRef::new("n1", "10.0.0.1:9999")),
            },
            reason: "test".into(),
            hooks: vec![Hook::Promote, Hook::ServerChange],
        }
    }

    #[tokio::test]
    async fn hooks_run_in_order_with_the_transition_in_their_environment() {
        // Proves a real script gets MUSTER_ROLE, MUSTER_SERVER_HOST and MUSTER_EPOCH, runs in
        // the transition's hook order, and that a failing or missing script is reported
        // (outcome and ok=false) without stopping the runner.
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let scripts = HookScripts {
            on_promote: Some(script(
                dir.path(),
                "promote",
                &format!(
                    "echo \"$MUSTER_HOOK $MUSTER_ROLE $MUSTER_SERVER_HOST $MUSTER_EPOCH $MUSTER_NODE\" >> {}",
                    out.display()
                ),
            )),
            on_server_change: Some(script(
                dir.path(),
                "change",
                &format!("echo change >> {}; exit 3", out.display()),
            )),
            on_demote: Some(dir.path().join("missing")),
        };
        let stop = CancellationToken::new();
        let (queue, task, mut runs) = runner("n1".into(), scripts, stop.clone());
        let task = tokio::spawn(task);
        queue.push(&promote());
        let mut demote = promote();
        demote.hooks = vec![Hook::Demote];
        queue.push(&demote);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while runs.borrow().len() < 3 {
            tokio::time::timeout_at(deadline, runs.changed())
                .await
                .expect("three hook runs within 20 s")
                .unwrap();
        }
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text, "on-promote server 10.0.0.1 7 n1\nchange\n");
        let runs = runs.borrow().clone();
        let by = |h: Hook| runs.iter().find(|r| r.hook == h).unwrap().clone();
        assert!(by(Hook::Promote).ok);
        assert_eq!((by(Hook::ServerChange).ok, by(Hook::ServerChange).outcome.as_str()), (false, "exit 3"));
        assert!(by(Hook::Demote).outcome.starts_with("cannot start"), "{:?}", by(Hook::Demote));
        stop.cancel();
        task.await.unwrap();
    }
}
