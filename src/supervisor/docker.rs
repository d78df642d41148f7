//! [`DockerEngine`]: the thin async driver between the planner and the Docker Engine API
//! (bollard over the unix socket). It observes the containers muster owns on this node (found
//! by the `muster.node` label, never by name) and executes planned [`Action`]s in order until
//! the first failure. Every call has a deadline and every failure names the call, the action
//! and the container. Its event stream is in [`super::docker_events`].
//!
//! What goes into a container is decided by the pure [`super::docker_config`]; this file only
//! calls Docker. Must not import `node`, `config`, `consensus` or `api`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::NetworkConnectRequest;
use bollard::query_parameters::{
    CreateContainerOptions, InspectNetworkOptions, ListContainersOptions, ListNetworksOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use bollard::Docker;

use super::docker_config::{container_plan, container_state, health, network_request, volume_request};
pub use super::docker_error::DockerError;
pub use super::docker_events::{ContainerEvent, ContainerEventKind, EventStream};
use super::naming::{owner_labels, LABEL_NODE};
use super::plan::{Action, ContainerState, Desired, ObservedContainer};
use super::spec::{NetworkSpec, StackKind, VolumeSpec};
use super::timestamp::unix_ms;

/// The deadline of one Docker call (a stop gets its grace period on top). Docker answers a
/// healthy call in milliseconds; 30 s only trips on an engine that is wedged or swapping.
pub const CALL_TIMEOUT_MS: u64 = 30_000;
/// How long a stopped container gets between SIGTERM and SIGKILL (compose's default).
pub const STOP_TIMEOUT_S: u32 = 10;
/// The most containers one observation reads (a node runs one stack of at most 256 services;
/// more means strays, refused rather than half-read).
pub const OBSERVED_CONTAINERS_MAX: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    pub call_timeout_ms: u64,
    pub stop_timeout_s: u32,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { call_timeout_ms: CALL_TIMEOUT_MS, stop_timeout_s: STOP_TIMEOUT_S }
    }
}

/// What [`DockerEngine::execute`] needs beyond the actions: who we are, what is desired (the
/// specs and the networks/volumes a `Create` uses) and what was observed (to name containers).
#[derive(Debug, Clone, Copy)]
pub struct ExecuteContext<'a> {
    pub node: &'a str,
    pub desired: &'a Desired,
    pub observed: &'a [ObservedContainer],
}

/// A connection to one Docker engine, with its API version negotiated.
#[derive(Debug, Clone)]
pub struct DockerEngine {
    pub(super) docker: Docker,
    socket: PathBuf,
    options: EngineOptions,
    /// Containers already warned about for unreadable labels (warned once, not every tick).
    warned: Arc<Mutex<BTreeSet<String>>>,
}

impl DockerEngine {
    /// Connects to the engine at `socket`, negotiates the API version and pings it. A missing
    /// socket or an engine that does not answer is [`DockerError::Disabled`].
    pub async fn connect(socket: &Path) -> Result<DockerEngine, DockerError> {
        Self::connect_with(socket, EngineOptions::default()).await
    }

    pub async fn connect_with(socket: &Path, options: EngineOptions) -> Result<DockerEngine, DockerError> {
        let disabled = |source| DockerError::Disabled { path: socket.to_path_buf(), source };
        let timeout = Duration::from_millis(options.call_timeout_ms);
        let docker = Docker::connect_with_unix(
            &socket.to_string_lossy(),
            client_timeout_s(options),
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(disabled)?;
        let answered = tokio::time::timeout(timeout, async {
            let docker = docker.negotiate_version().await?;
            docker.ping().await?;
            Ok::<Docker, bollard::errors::Error>(docker)
        })
        .await;
        let docker = match answered {
            Ok(result) => result.map_err(disabled)?,
            Err(_) => return Err(disabled(bollard::errors::Error::RequestTimeoutError)),
        };
        Ok(DockerEngine { docker, socket: socket.to_path_buf(), options, warned: Arc::default() })
    }

    /// Connects again (after the engine restarted): a fresh client and a fresh negotiation.
    pub async fn reconnect(&mut self) -> Result<(), DockerError> {
        let fresh = Self::connect_with(&self.socket, self.options).await?;
        self.docker = fresh.docker;
        Ok(())
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn options(&self) -> EngineOptions {
        self.options
    }

    /// The API version in use after negotiation, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }

    /// Runs one Docker call under the call deadline, mapping its failure.
    async fn call<T>(
        &self,
        call: &'static str,
        action: &str,
        target: &str,
        fut: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, DockerError> {
        self.call_within(Duration::from_millis(self.options.call_timeout_ms), call, action, target, fut).await
    }

    async fn call_within<T>(
        &self,
        timeout: Duration,
        call: &'static str,
        action: &str,
        target: &str,
        fut: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, DockerError> {
        let (action, target) = (action.to_string(), target.to_string());
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(DockerError::Call { call, action, target, source }),
            Err(_) => {
                let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                Err(DockerError::Timeout { call, action, target, timeout_ms })
            }
        }
    }

    /// Removes the networks muster created for `node` whose names `keep` does not list. One
    /// still in use (Docker refuses: 403/409) or already gone stays for a later call. The
    /// removed names.
    pub async fn prune_networks(&self, node: &str, keep: &[String]) -> Result<Vec<String>, DockerError> {
        let label = format!("{LABEL_NODE}={node}");
        let filters = HashMap::from([("label".to_string(), vec![label.clone()])]);
        let list = self.docker.list_networks(Some(ListNetworksOptions { filters: Some(filters) }));
        let action = "prune networks";
        let names: Vec<String> = self
            .call("network list", action, &label, list)
            .await?
            .into_iter()
            .filter_map(|n| n.name)
            .collect();
        let mut removed = Vec::new();
        for name in names.into_iter().filter(|n| !keep.contains(n)).take(OBSERVED_CONTAINERS_MAX) {
            match self.call("network remove", action, &name, self.docker.remove_network(&name)).await {
                Ok(()) => removed.push(name),
                Err(e) if matches!(e.status_code(), Some(403 | 404 | 409)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// Every container (any state) labelled `muster.node=<node>`. Containers whose owner
    /// labels cannot be read are skipped with a warning; ones removed while we look are left out.
    pub async fn observe(&self, node: &str) -> Result<Vec<ObservedContainer>, DockerError> {
        let label = format!("{LABEL_NODE}={node}");
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_string(), vec![label.clone()])])),
            ..ListContainersOptions::default()
        };
        let action = "observe";
        let list = self.call("list", action, &label, self.docker.list_containers(Some(options))).await?;
        if list.len() > OBSERVED_CONTAINERS_MAX {
            return Err(DockerError::TooManyContainers {
                label,
                count: list.len(),
                max: OBSERVED_CONTAINERS_MAX,
            });
        }
        let mut observed = Vec::with_capacity(list.len());
        for summary in list {
            let Some(id) = summary.id else { continue };
            let labels: BTreeMap<String, String> = summary.labels.unwrap_or_default().into_iter().collect();
            let owner = match owner_labels(&labels) {
                Ok(owner) => owner,
                Err(error) => {
                    self.warn_once(&id, &error);
                    continue;
                }
            };
            let inspected = self.call("inspect", action, &id, self.docker.inspect_container(&id, None)).await;
            let inspected = match inspected {
                Ok(inspected) => inspected,
                Err(e) if e.status_code() == Some(404) => continue,
                Err(e) => return Err(e),
            };
            let state = inspected.state.unwrap_or_default();
            let planner_state = container_state(state.status, state.exit_code);
            let since_text = if planner_state.is_live() {
                state.started_at.as_deref()
            } else if planner_state == ContainerState::Created {
                inspected.created.as_deref()
            } else {
                state.finished_at.as_deref()
            };
            observed.push(ObservedContainer {
                name: inspected.name.unwrap_or_default().trim_start_matches('/').to_string(),
                id,
                service: owner.service,
                stack: owner.stack,
                epoch: owner.epoch,
                spec_hash: owner.spec_hash,
                state: planner_state,
                health: health(state.health.and_then(|h| h.status)),
                since_ms: since_text.and_then(unix_ms).unwrap_or(0),
            });
        }
        observed.sort_by(|a, b| (a.stack, &a.service, &a.id).cmp(&(b.stack, &b.service, &b.id)));
        Ok(observed)
    }

    fn warn_once(&self, id: &str, error: &super::naming::LabelError) {
        let first = match self.warned.lock() {
            Ok(mut warned) if warned.len() < OBSERVED_CONTAINERS_MAX => warned.insert(id.to_string()),
            Ok(warned) => !warned.contains(id),
            Err(_) => true,
        };
        if first {
            tracing::warn!(container.id = %id, %error, "supervisor: skipping a container with unreadable muster labels");
        } else {
            tracing::debug!(container.id = %id, %error, "supervisor: skipping a container with unreadable muster labels");
        }
    }

    /// Executes `actions` in order and stops at the first failure. `Create` creates and starts.
    pub async fn execute(&self, actions: &[Action], ctx: &ExecuteContext<'_>) -> Result<(), DockerError> {
        for action in actions {
            let target = name_of(action, ctx);
            let label = action_text(action);
            match action {
                Action::Stop { id, .. } => self.stop(id, &target, &label).await?,
                Action::Remove { id, .. } => self.remove(id, &target, &label).await?,
                Action::Start { id, .. } => {
                    self.call("start", &label, &target, self.docker.start_container(id, None)).await?
                }
                Action::Create { service, .. } => self.create(service, &label, ctx).await?,
            }
            tracing::info!(node = ctx.node, container = %target, action = %label, "supervisor: done");
        }
        Ok(())
    }

    async fn stop(&self, id: &str, target: &str, label: &str) -> Result<(), DockerError> {
        let t = i32::try_from(self.options.stop_timeout_s).unwrap_or(i32::MAX);
        let options = StopContainerOptions { t: Some(t), signal: None };
        let timeout = Duration::from_millis(self.options.call_timeout_ms)
            + Duration::from_secs(u64::from(self.options.stop_timeout_s));
        let stopped = self.docker.stop_container(id, Some(options));
        match self.call_within(timeout, "stop", label, target, stopped).await {
            // 304: already stopped.
            Err(e) if e.status_code() == Some(304) => Ok(()),
            other => other,
        }
    }

    /// Force-removes the container and its anonymous volumes; gone already counts as done.
    async fn remove(&self, id: &str, target: &str, label: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptions { force: true, v: true, link: false };
        match self.call("remove", label, target, self.docker.remove_container(id, Some(options))).await {
            Err(e) if e.status_code() == Some(404) => Ok(()),
            Err(e) if e.status_code() == Some(409) && e.to_string().contains("already in progress") => Ok(()),
            other => other,
        }
    }

    async fn create(&self, service: &str, label: &str, ctx: &ExecuteContext<'_>) -> Result<(), DockerError> {
        let desired = ctx.desired;
        let subject = format!("create {service}");
        let invalid =
            |reason: &str| DockerError::Invalid { action: subject.clone(), reason: reason.to_string() };
        let ds = desired
            .services
            .iter()
            .find(|d| d.spec.name == service)
            .ok_or_else(|| invalid("the service is not in the desired stack"))?;
        let stack = desired.stack.ok_or_else(|| invalid("no stack is desired"))?;
        let plan = container_plan(ctx.node, desired, ds)?;
        for (name, decl) in &plan.networks {
            self.ensure_network(ctx.node, stack, name, decl, &subject).await?;
        }
        for (name, decl) in &plan.volumes {
            self.ensure_volume(ctx.node, stack, name, decl, &subject).await?;
        }
        let options =
            CreateContainerOptions { name: Some(plan.name.clone()), ..CreateContainerOptions::default() };
        let created = self
            .call("create", label, &plan.name, self.docker.create_container(Some(options), plan.body))
            .await?;
        let id = created.id;
        let started = async {
            for (network, _) in plan.networks.iter().skip(1) {
                let request = NetworkConnectRequest {
                    container: id.clone(),
                    endpoint_config: Some(plan.endpoint.clone()),
                };
                self.call(
                    "network connect",
                    label,
                    &plan.name,
                    self.docker.connect_network(network, request),
                )
                .await?;
            }
            self.call("start", label, &plan.name, self.docker.start_container(&id, None)).await
        }
        .await;
        if let Err(error) = started {
            // Never leave a half-wired container behind: the next tick would start it as is.
            if let Err(cleanup) = self.remove(&id, &plan.name, label).await {
                tracing::warn!(container = %plan.name, error = %cleanup, "supervisor: cannot remove a container that failed to start");
            }
            return Err(error);
        }
        Ok(())
    }

    /// Creates the stack network unless it exists; an external one must exist already.
    async fn ensure_network(
        &self,
        node: &str,
        stack: StackKind,
        name: &str,
        decl: &NetworkSpec,
        label: &str,
    ) -> Result<(), DockerError> {
        let inspect = self.docker.inspect_network(name, None::<InspectNetworkOptions>);
        match self.call("network inspect", label, name, inspect).await {
            Ok(_) => return Ok(()),
            Err(e) if e.status_code() == Some(404) && decl.external => {
                return Err(DockerError::Invalid {
                    action: label.to_string(),
                    reason: format!(
                    "external network {name} does not exist; create it with `docker network create {name}`"
                ),
                })
            }
            Err(e) if e.status_code() == Some(404) => {}
            Err(e) => return Err(e),
        }
        let request = network_request(node, stack, name, decl);
        match self.call("network create", label, name, self.docker.create_network(request)).await {
            Err(e) if e.status_code() == Some(409) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Creates the stack volume (idempotent in Docker); an external one must exist already.
    async fn ensure_volume(
        &self,
        node: &str,
        stack: StackKind,
        name: &str,
        decl: &VolumeSpec,
        label: &str,
    ) -> Result<(), DockerError> {
        if decl.external {
            return match self.call("volume inspect", label, name, self.docker.inspect_volume(name)).await {
                Err(e) if e.status_code() == Some(404) => Err(DockerError::Invalid {
                    action: label.to_string(),
                    reason: format!(
                        "external volume {name} does not exist; create it with `docker volume create {name}`"
                    ),
                }),
                other => other.map(|_| ()),
            };
        }
        let request = volume_request(node, stack, name, decl);
        self.call("volume create", label, name, self.docker.create_volume(request)).await.map(|_| ())
    }
}

/// Bollard's own per-request timeout (whole seconds), above ours so ours is the one that trips.
fn client_timeout_s(options: EngineOptions) -> u64 {
    options.call_timeout_ms.div_ceil(1_000) + u64::from(options.stop_timeout_s) + 1
}

/// `stop: epoch 1 is stale (desired 2)`: what the action does and why (the container is named
/// apart, by [`name_of`]).
fn action_text(action: &Action) -> String {
    let verb = match action {
        Action::Stop { .. } => "stop",
        Action::Remove { .. } => "remove",
        Action::Create { .. } => "create",
        Action::Start { .. } => "start",
    };
    format!("{verb}: {}", action.reason())
}

/// The container an action is about, by name where it is known.
fn name_of(action: &Action, ctx: &ExecuteContext<'_>) -> String {
    match action {
        Action::Stop { id, .. } | Action::Remove { id, .. } | Action::Start { id, .. } => {
            ctx.observed.iter().find(|c| &c.id == id).map_or_else(|| id.clone(), |c| c.name.clone())
        }
        Action::Create { service, .. } => match ctx.desired.stack {
            Some(stack) => super::naming::container_name(ctx.node, stack, service),
            None => service.clone(),
        },
    }
}
