//! Muster's specs as Docker Engine API bodies, and Docker's answers back as the planner's
//! types: the container a [`DesiredService`] becomes (name, labels, ports, mounts, networks,
//! healthcheck, restart policy), the networks and volumes of its stack, and a container's
//! state and health. Pure: bollard's model types only, no calls, no clock, no tokio. Must not
//! import anything outside `supervisor` (and `bollard::models`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, EndpointSettings, HealthConfig, HealthStatusEnum,
    HostConfig, Mount, MountType, NetworkCreateRequest, NetworkingConfig, PortBinding,
    RestartPolicy as DockerRestart, RestartPolicyNameEnum, VolumeCreateRequest,
};

use super::docker_error::DockerError;
use super::naming::{
    container_labels, container_name, network_name, volume_name, OwnerLabels, LABEL_NODE, LABEL_STACK,
};
use super::plan::{ContainerState, Desired, DesiredService, Health};
use super::spec::{MountKind, NetworkSpec, RestartPolicy, StackKind, VolumeSpec};

/// The compose name of a network or volume muster created, on the Docker object.
pub const LABEL_DECLARED_NAME: &str = "muster.declared-name";

/// Everything needed to create one container: its body, and the networks it joins after
/// create (API versions before 1.44 accept only one network in the create call).
#[derive(Debug, Clone)]
pub struct ContainerPlan {
    pub name: String,
    pub body: ContainerCreateBody,
    /// The networks it uses, each as (Docker name, declaration), in the service's order; the
    /// first one is in `body`, the rest are joined with `connect_network` before start.
    pub networks: Vec<(String, NetworkSpec)>,
    pub volumes: Vec<(String, VolumeSpec)>,
    /// The endpoint settings (the service name as DNS alias) for every network.
    pub endpoint: EndpointSettings,
}

/// The container for `service` of `desired` on `node`.
pub fn container_plan(
    node: &str,
    desired: &Desired,
    service: &DesiredService,
) -> Result<ContainerPlan, DockerError> {
    let spec = &service.spec;
    let invalid = |reason: String| DockerError::Invalid { action: format!("create {}", spec.name), reason };
    let stack = desired.stack.ok_or_else(|| invalid("no stack is desired".to_string()))?;
    let owner = OwnerLabels {
        node: node.to_string(),
        stack,
        epoch: desired.epoch,
        service: spec.name.clone(),
        spec_hash: service.spec_hash.clone(),
    };
    let mut networks = Vec::with_capacity(spec.networks.len());
    for name in &spec.networks {
        let decl = desired
            .networks
            .iter()
            .find(|n| &n.name == name)
            .ok_or_else(|| invalid(format!("network {name} is not declared in the {stack} stack")))?;
        networks.push((network_name(node, stack, decl), decl.clone()));
    }
    let mut volumes: Vec<(String, VolumeSpec)> = Vec::new();
    let mut mounts = Vec::with_capacity(spec.mounts.len());
    for m in &spec.mounts {
        let (typ, source) = match m.kind {
            MountKind::Bind => (MountType::BIND, m.source.clone()),
            MountKind::Volume => {
                let decl = desired.volumes.iter().find(|v| v.name == m.source).ok_or_else(|| {
                    invalid(format!("volume {} is not declared in the {stack} stack", m.source))
                })?;
                let docker_name = volume_name(stack, decl);
                if !volumes.iter().any(|(n, _)| n == &docker_name) {
                    volumes.push((docker_name.clone(), decl.clone()));
                }
                (MountType::VOLUME, docker_name)
            }
        };
        mounts.push(Mount {
            target: Some(m.target.clone()),
            source: Some(source),
            typ: Some(typ),
            read_only: Some(m.read_only),
            ..Mount::default()
        });
    }
    let endpoint = EndpointSettings { aliases: Some(vec![spec.name.clone()]), ..EndpointSettings::default() };
    let first_network = networks.first().map(|(name, _)| name.clone());
    let networking_config = first_network.as_ref().map(|name| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(name.clone(), endpoint.clone())])),
    });
    let (exposed_ports, port_bindings) = ports(service);
    let host_config = HostConfig {
        network_mode: first_network,
        port_bindings: Some(port_bindings),
        mounts: Some(mounts),
        restart_policy: Some(restart_policy(spec.restart)),
        init: spec.init.then_some(true),
        ..HostConfig::default()
    };
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        exposed_ports: Some(exposed_ports),
        labels: Some(container_labels(&spec.labels, &owner).into_iter().collect()),
        healthcheck: spec.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: h.interval.map(nanos),
            timeout: h.timeout.map(nanos),
            retries: h.retries.map(i64::from),
            start_period: h.start_period.map(nanos),
            ..HealthConfig::default()
        }),
        host_config: Some(host_config),
        networking_config,
        ..ContainerCreateBody::default()
    };
    Ok(ContainerPlan { name: container_name(node, stack, &spec.name), body, networks, volumes, endpoint })
}

/// `ExposedPorts` (`"80/tcp"`) and `PortBindings` for the service's published ports.
fn ports(service: &DesiredService) -> (Vec<String>, HashMap<String, Option<Vec<PortBinding>>>) {
    let mut exposed = Vec::new();
    let mut bindings: BTreeMap<String, Vec<PortBinding>> = BTreeMap::new();
    for p in &service.spec.ports {
        let key = format!("{}/{}", p.container_port, p.protocol.as_str());
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        bindings.entry(key).or_default().push(PortBinding {
            host_ip: p.host_ip.clone(),
            host_port: p.host_port.map(|port| port.to_string()),
        });
    }
    (exposed, bindings.into_iter().map(|(k, v)| (k, Some(v))).collect())
}

fn restart_policy(policy: RestartPolicy) -> DockerRestart {
    let (name, retries) = match policy {
        RestartPolicy::No => (RestartPolicyNameEnum::NO, None),
        RestartPolicy::Always => (RestartPolicyNameEnum::ALWAYS, None),
        RestartPolicy::UnlessStopped => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
        RestartPolicy::OnFailure { retries_max } => {
            (RestartPolicyNameEnum::ON_FAILURE, retries_max.map(i64::from))
        }
    };
    DockerRestart { name: Some(name), maximum_retry_count: retries }
}

/// Docker's healthcheck durations are nanoseconds.
fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The labels on a network or volume muster creates for `stack` on `node`.
fn owned_labels(node: &str, stack: StackKind, declared: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_NODE.to_string(), node.to_string()),
        (LABEL_STACK.to_string(), stack.to_string()),
        (LABEL_DECLARED_NAME.to_string(), declared.to_string()),
    ])
}

pub fn network_request(
    node: &str,
    stack: StackKind,
    docker_name: &str,
    decl: &NetworkSpec,
) -> NetworkCreateRequest {
    NetworkCreateRequest {
        name: docker_name.to_string(),
        driver: decl.driver.clone(),
        internal: Some(decl.internal),
        labels: Some(owned_labels(node, stack, &decl.name)),
        ..NetworkCreateRequest::default()
    }
}

pub fn volume_request(
    node: &str,
    stack: StackKind,
    docker_name: &str,
    decl: &VolumeSpec,
) -> VolumeCreateRequest {
    VolumeCreateRequest {
        name: Some(docker_name.to_string()),
        driver: decl.driver.clone(),
        labels: Some(owned_labels(node, stack, &decl.name)),
        ..VolumeCreateRequest::default()
    }
}

/// The planner's state for Docker's status. `removing` counts as dead (it is going away and
/// must not be mistaken for a live one); `stopping` is still live.
pub fn container_state(status: Option<ContainerStateStatusEnum>, exit_code: Option<i64>) -> ContainerState {
    match status {
        Some(ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::STOPPING) => {
            ContainerState::Running
        }
        Some(ContainerStateStatusEnum::RESTARTING) => ContainerState::Restarting,
        Some(ContainerStateStatusEnum::PAUSED) => ContainerState::Paused,
        Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
        Some(ContainerStateStatusEnum::EXITED) => ContainerState::Exited { code: exit_code.unwrap_or(0) },
        Some(
            ContainerStateStatusEnum::DEAD
            | ContainerStateStatusEnum::REMOVING
            | ContainerStateStatusEnum::EMPTY,
        )
        | None => ContainerState::Dead,
    }
}

pub fn health(status: Option<HealthStatusEnum>) -> Health {
    match status {
        Some(HealthStatusEnum::STARTING) => Health::Starting,
        Some(HealthStatusEnum::HEALTHY) => Health::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => Health::Unhealthy,
        Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY) | None => Health::NoCheck,
    }
}

#[cfg(test)]
#[path = "tests_docker_config.rs"]
mod tests;
