//! Tests of [`super`]: specs into Docker bodies and Docker's states back.

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::models::{ContainerStateStatusEnum, HealthStatusEnum, MountType, RestartPolicyNameEnum};

use super::*;
use crate::supervisor::spec::{HealthcheckSpec, MountSpec, PortSpec, Protocol, ServiceSpec};

fn service() -> ServiceSpec {
    ServiceSpec {
        name: "api".into(),
        image: "muster:dev".into(),
        command: Some(vec!["idle".into()]),
        entrypoint: None,
        env: BTreeMap::from([("MUSTER_EPOCH".into(), "7".into())]),
        ports: vec![
            PortSpec { host_ip: None, host_port: Some(8080), container_port: 80, protocol: Protocol::Tcp },
            PortSpec {
                host_ip: Some("127.0.0.1".into()),
                host_port: None,
                container_port: 80,
                protocol: Protocol::Tcp,
            },
        ],
        mounts: vec![
            MountSpec {
                kind: MountKind::Volume,
                source: "data".into(),
                target: "/data".into(),
                read_only: false,
            },
            MountSpec {
                kind: MountKind::Bind,
                source: "/etc/x".into(),
                target: "/x".into(),
                read_only: true,
            },
        ],
        networks: vec!["default".into(), "back".into()],
        labels: BTreeMap::from([("team".into(), "video".into())]),
        restart: RestartPolicy::OnFailure { retries_max: Some(3) },
        healthcheck: Some(HealthcheckSpec {
            test: vec!["CMD".into(), "true".into()],
            interval: Some(Duration::from_millis(1500)),
            timeout: None,
            retries: Some(2),
            start_period: None,
        }),
        depends_on: Vec::new(),
        init: true,
    }
}

fn desired() -> Desired {
    let net =
        |name: &str, external| NetworkSpec { name: name.into(), driver: None, external, internal: false };
    Desired {
        stack: Some(StackKind::Server),
        epoch: 7,
        services: vec![DesiredService::new(service())],
        networks: vec![net("default", false), net("back", true)],
        volumes: vec![VolumeSpec { name: "data".into(), driver: None, external: false }],
    }
}

#[test]
fn a_service_becomes_a_labelled_container_on_its_networks() {
    // Proves name, owner labels, env, the first network in the body and the alias on each.
    let d = desired();
    let plan = container_plan("host-a", &d, &d.services[0]).unwrap();
    assert_eq!(plan.name, "muster-host-a-server-api");
    let labels = plan.body.labels.clone().unwrap();
    assert_eq!(labels["muster.node"], "host-a");
    assert_eq!(labels["muster.epoch"], "7");
    assert_eq!(labels["muster.spec-hash"], d.services[0].spec_hash);
    assert_eq!(labels["team"], "video");
    assert_eq!(plan.body.env, Some(vec!["MUSTER_EPOCH=7".to_string()]));
    let names: Vec<&str> = plan.networks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["muster-host-a-server-default", "back"]);
    let host = plan.body.host_config.clone().unwrap();
    assert_eq!(host.network_mode.as_deref(), Some("muster-host-a-server-default"));
    let endpoints = plan.body.networking_config.clone().unwrap().endpoints_config.unwrap();
    assert_eq!(endpoints.keys().collect::<Vec<_>>(), ["muster-host-a-server-default"]);
    assert_eq!(plan.endpoint.aliases, Some(vec!["api".to_string()]));
    assert_eq!(host.init, Some(true));
}

#[test]
fn ports_mounts_restart_and_healthcheck_map_to_docker_forms() {
    // Proves two bindings of one port, volume names, read-only binds, on-failure:3, nanoseconds.
    let d = desired();
    let plan = container_plan("host-a", &d, &d.services[0]).unwrap();
    assert_eq!(plan.body.exposed_ports, Some(vec!["80/tcp".to_string()]));
    let host = plan.body.host_config.clone().unwrap();
    let bindings = host.port_bindings.unwrap()["80/tcp"].clone().unwrap();
    assert_eq!(bindings.len(), 2);
    assert_eq!(bindings[0].host_port.as_deref(), Some("8080"));
    assert_eq!((bindings[1].host_ip.as_deref(), bindings[1].host_port.as_deref()), (Some("127.0.0.1"), None));
    let mounts = host.mounts.unwrap();
    assert_eq!(
        (mounts[0].typ, mounts[0].source.as_deref()),
        (Some(MountType::VOLUME), Some("muster-server-data"))
    );
    assert_eq!((mounts[1].typ, mounts[1].read_only), (Some(MountType::BIND), Some(true)));
    assert_eq!(plan.volumes.len(), 1);
    let restart = host.restart_policy.unwrap();
    assert_eq!(
        (restart.name, restart.maximum_retry_count),
        (Some(RestartPolicyNameEnum::ON_FAILURE), Some(3))
    );
    let hc = plan.body.healthcheck.unwrap();
    assert_eq!((hc.interval, hc.timeout, hc.retries), (Some(1_500_000_000), None, Some(2)));
}

#[test]
fn undeclared_networks_and_missing_stacks_are_errors() {
    // Proves a service naming a network its stack lacks, or a desired without stack, is refused.
    let mut d = desired();
    d.networks.retain(|n| n.name != "back");
    let err = container_plan("host-a", &d, &d.services[0]).unwrap_err();
    assert_eq!(err.to_string(), "cannot create api: network back is not declared in the server stack");
    let mut d = desired();
    d.stack = None;
    assert!(container_plan("host-a", &d, &d.services[0]).is_err());
}

#[test]
fn docker_states_map_to_planner_states() {
    // Proves exit codes survive, removing counts as dead, and no healthcheck is NoCheck.
    use ContainerStateStatusEnum as S;
    assert_eq!(container_state(Some(S::RUNNING), Some(0)), ContainerState::Running);
    assert_eq!(container_state(Some(S::EXITED), Some(143)), ContainerState::Exited { code: 143 });
    assert_eq!(container_state(Some(S::REMOVING), None), ContainerState::Dead);
    assert_eq!(container_state(Some(S::CREATED), None), ContainerState::Created);
    assert_eq!(health(Some(HealthStatusEnum::HEALTHY)), Health::Healthy);
    assert_eq!(health(None), Health::NoCheck);
}
