//! The supervisor's front half: turns the leadership this node sees into the [`Desired`]
//! stack the reconcile loop converges Docker to, runs the transition hooks, and publishes a
//! [`SupervisorStatus`] for `/discovery` and `muster stack status`.
//!
//! The compose file is read at start (so an unsupported key or an unset variable stops the
//! node with a clear error) and again on every transition, interpolated with the transition's
//! own `MUSTER_*` values. Every container also gets `MUSTER_NODE`, `MUSTER_ROLE`,
//! `MUSTER_EPOCH` (the fencing token), `MUSTER_SERVER_HOST` and `MUSTER_SERVER_ADDR` in its
//! environment unless the file sets them. Must not import `node`, `config`, `consensus` or `api`.

use std::path::PathBuf;

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::compose::{load, MusterVars, Stacks, Vars};
use super::error::ComposeError;
use super::hooks::{HookQueue, HookRun};
use super::plan::Desired;
use super::spec::StackKind;
use super::status::StackStatus;
use super::transition::{Change, LeaderView, ServerRef, Transitions, Want};

/// What the supervisor is given at start.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    pub node: String,
    /// This node as a server: its name and API address.
    pub me: ServerRef,
    /// `--role agent`: never the server stack.
    pub agent: bool,
    pub stack_file: Option<PathBuf>,
    /// The process environment, for `${VAR}` in the compose file.
    pub env: Vars,
    /// How long this node must be server before the server stack starts: longer than a
    /// previous server needs to stop its stack (see [`super::transition`]).
    pub stack_delay: std::time::Duration,
}

/// The reconcile loop's next status; never, once it is gone or without one.
async fn observed_changed(rx: &mut Option<watch::Receiver<StackStatus>>) -> Option<StackStatus> {
    let Some(r) = rx else { return std::future::pending().await };
    if r.changed().await.is_err() {
        *rx = None;
        return None;
    }
    Some(r.borrow_and_update().clone())
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The last change of what this host wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransitionRecord {
    pub from: Want,
    pub to: Want,
    pub reason: String,
    pub at_unix_ms: u64,
}

/// What `/discovery` and `muster stack status` show of the supervisor's front half.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SupervisorStatus {
    pub want: Want,
    /// The stack file, if any.
    pub stack_file: Option<String>,
    pub last_transition: Option<TransitionRecord>,
    /// A compose file that failed to load at the last transition (the previous stack stays).
    pub last_error: Option<String>,
    pub hooks: Vec<HookRun>,
    /// The Docker engine: `connected to …`, `disabled: no Docker engine at …`, or `not used`.
    pub docker: String,
    /// What the reconcile loop sees and did (absent without Docker).
    pub observed: Option<StackStatus>,
}

impl SupervisorConfig {
    fn vars(&self, want: &Want) -> Vars {
        let server = want.server.as_ref();
        MusterVars {
            server_host: server.map(|s| s.host.clone()).unwrap_or_default(),
            server_addr: server.map(|s| s.addr.clone()).unwrap_or_default(),
            node: self.node.clone(),
            role: want.stack.map_or("none", |s| s.as_str()).to_string(),
            epoch: want.epoch,
        }
        .merged_with(self.env.clone())
    }

    /// Reads the stack file as a server would see it, so that every error in it shows at start.
    pub fn check(&self) -> Result<Option<Stacks>, ComposeError> {
        let Some(path) = &self.stack_file else { return Ok(None) };
        let want = Want { stack: Some(StackKind::Server), epoch: 0, server: Some(self.me.clone()) };
        load(path, &self.vars(&want)).map(Some)
    }

    /// The desired stack for `want`, with muster's variables in every container's environment.
    fn desired(&self, want: &Want) -> Result<Desired, ComposeError> {
        let (Some(kind), Some(path)) = (want.stack, &self.stack_file) else {
            return Ok(Desired::nothing(want.epoch));
        };
        let vars = self.vars(want);
        let stacks = load(path, &vars)?;
        let mut stack = stacks.get(kind).clone();
        for service in &mut stack.services {
            for key in
                ["MUSTER_NODE", "MUSTER_ROLE", "MUSTER_EPOCH", "MUSTER_SERVER_HOST", "MUSTER_SERVER_ADDR"]
            {
                if let Some(v) = vars.get(key) {
                    service.env.entry(key.to_string()).or_insert_with(|| v.clone());
                }
            }
        }
        Ok(Desired::from_stack(&stack, want.epoch))
    }
}

fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// What [`run`] reads and writes.
pub struct Channels {
    /// The leadership this node sees.
    pub leader: watch::Receiver<LeaderView>,
    /// Out: the stack the reconcile loop converges to.
    pub desired: watch::Sender<Desired>,
    /// Out: the status for `/discovery` and `muster stack status`.
    pub status: watch::Sender<SupervisorStatus>,
    /// Out: the transitions whose hooks run.
    pub hooks: HookQueue,
    /// In: the hook runner's last runs, and the reconcile loop's status (without Docker: none).
    pub hook_runs: watch::Receiver<Vec<HookRun>>,
    pub observed: Option<watch::Receiver<StackStatus>>,
}

/// Follows the leadership until `shutdown`: each transition is logged, its hooks queued, the
/// new [`Desired`] published and the status updated.
pub async fn run(cfg: SupervisorConfig, ch: Channels, shutdown: CancellationToken) {
    let Channels { mut leader, desired, status, hooks, mut hook_runs, mut observed } = ch;
    let mut t = Transitions::new(cfg.me.clone(), cfg.agent, cfg.stack_delay);
    loop {
        let view = leader.borrow_and_update().clone();
        if let Some(change) = t.observe(&view, std::time::Instant::now()) {
            apply(&cfg, &change, &desired, &status, &hooks);
        }
        let wake = t.wake_at().map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = leader.changed() => if r.is_err() { return },
            _ = sleep_until(wake) => {}
            r = hook_runs.changed() => {
                if r.is_ok() {
                    let runs = hook_runs.borrow_and_update().clone();
                    status.send_modify(|s| s.hooks = runs);
                }
            }
            Some(o) = observed_changed(&mut observed) => status.send_modify(|s| s.observed = Some(o)),
        }
    }
}

fn apply(
    cfg: &SupervisorConfig,
    change: &Change,
    desired: &watch::Sender<Desired>,
    status: &watch::Sender<SupervisorStatus>,
    hooks: &HookQueue,
) {
    let name = |w: &Want| w.stack.map_or("none", |s| s.as_str());
    tracing::info!(
        from = name(&change.from),
        to = name(&change.to),
        epoch = change.to.epoch,
        server = change.to.server.as_ref().map_or("", |s| s.node.as_str()),
        reason = %change.reason,
        "supervisor: transition"
    );
    crate::metrics::SUPERVISOR.transition(name(&change.to));
    let record = TransitionRecord {
        from: change.from.clone(),
        to: change.to.clone(),
        reason: change.reason.clone(),
        at_unix_ms: unix_ms(),
    };
    let error = match cfg.desired(&change.to) {
        Ok(d) => {
            desired.send_replace(d);
            None
        }
        Err(e) => {
            // Fencing never needs the file (`to.stack == None` loads nothing), so a file that
            // broke since the start only keeps the previous stack running.
            tracing::error!(error = %e, "supervisor: the stack file cannot be used; the previous stack stays");
            Some(e.to_string())
        }
    };
    status.send_modify(|s| {
        s.want = change.to.clone();
        s.last_transition = Some(record);
        s.last_error = error;
    });
    hooks.push(change);
}

/// The status before the first transition.
pub fn initial_status(cfg: &SupervisorConfig) -> SupervisorStatus {
    SupervisorStatus {
        want: Want::nothing(),
        stack_file: cfg.stack_file.as_ref().map(|p| p.display().to_string()),
        last_transition: None,
        last_error: None,
        hooks: Vec::new(),
        docker: "not used: no --stack-file".to_string(),
        observed: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::transition::ViewRole;

    const FILE: &str = r#"
services:
  api:
    image: muster:dev
    profiles: [server]
  camera-proxy:
    image: muster:dev
    profiles: [proxy]
    environment:
      CAPTURE_DAEMON_URL: "http://${MUSTER_SERVER_HOST}:8080"
      MUSTER_EPOCH: "mine"
"#;

    fn cfg(dir: &std::path::Path) -> SupervisorConfig {
        let path = dir.join("stack.yml");
        std::fs::write(&path, FILE).unwrap();
        SupervisorConfig {
            node: "n1".into(),
            me: ServerRef::new("n1", "10.0.0.1:9999"),
            agent: false,
            stack_file: Some(path),
            env: Vars::new(),
            stack_delay: std::time::Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn leadership_changes_become_desired_stacks_with_muster_variables() {
        // Proves the front half end to end on a real file: a proxy view gives the proxy stack
        // interpolated with the server's host and muster's variables added (a value the file
        // sets stays), a server view the server stack at the term, and a fenced view nothing.
        let dir = tempfile::tempdir().unwrap();
        let cfg = cfg(dir.path());
        assert!(cfg.check().unwrap().is_some());
        let view = |role, term, leader: Option<(&str, &str)>| LeaderView {
            role,
            term,
            leader_name: leader.map(|l| l.0.to_string()),
            leader_addr: leader.map(|l| l.1.to_string()),
        };
        let (leader_tx, leader_rx) = watch::channel(view(ViewRole::Unknown, 0, None));
        let (desired_tx, mut desired_rx) = watch::channel(Desired::nothing(0));
        let (status_tx, status_rx) = watch::channel(initial_status(&cfg));
        let stop = CancellationToken::new();
        let (queue, hook_task, runs) =
            super::super::hooks::runner("n1".into(), Default::default(), stop.clone());
        tokio::spawn(hook_task);
        let ch = Channels {
            leader: leader_rx,
            desired: desired_tx,
            status: status_tx,
            hooks: queue,
            hook_runs: runs,
            observed: None,
        };
        let task = tokio::spawn(run(cfg, ch, stop.clone()));

        async fn until(rx: &mut watch::Receiver<Desired>, stack: Option<StackKind>) -> Desired {
            let wait = rx.wait_for(|d| d.stack == stack);
            let d = tokio::time::timeout(std::time::Duration::from_secs(5), wait).await;
            d.expect("the desired stack within 5 s").expect("the supervisor runs").clone()
        }
        leader_tx.send_replace(view(ViewRole::Proxy, 3, Some(("n2", "10.0.0.2:9999"))));
        let d = until(&mut desired_rx, Some(StackKind::Proxy)).await;
        assert_eq!(d.epoch, 3);
        let env = &d.services[0].spec.env;
        assert_eq!(env["CAPTURE_DAEMON_URL"], "http://10.0.0.2:8080");
        assert_eq!(env["MUSTER_SERVER_ADDR"], "10.0.0.2:9999");
        assert_eq!(env["MUSTER_ROLE"], "proxy");
        assert_eq!(env["MUSTER_EPOCH"], "mine", "a value the file sets is kept");

        leader_tx.send_replace(view(ViewRole::Server, 4, Some(("n1", "10.0.0.1:9999"))));
        let d = until(&mut desired_rx, Some(StackKind::Server)).await;
        assert_eq!((d.epoch, d.services[0].spec.name.as_str()), (4, "api"));
        assert_eq!(d.services[0].spec.env["MUSTER_EPOCH"], "4");

        leader_tx.send_replace(view(ViewRole::Unknown, 4, None));
        until(&mut desired_rx, None).await;
        let s = status_rx.borrow().clone();
        assert!(s.last_transition.unwrap().reason.starts_with("fenced"));
        stop.cancel();
        task.await.unwrap();
    }
}
