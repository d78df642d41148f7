//! Tests of the reconcile planner: fencing first, then clean-up, then convergence in
//! dependency order, always within the per-tick bound.

use std::collections::BTreeMap;

use super::plan::{
    plan, Action, ContainerState, Desired, DesiredService, Health, ObservedContainer, PlanLimits,
};
use super::spec::{Condition, Dependency, RestartPolicy, ServiceSpec, StackKind};

const NOW_MS: u64 = 1_000_000;

fn spec(name: &str, deps: &[(&str, Condition)]) -> ServiceSpec {
    ServiceSpec {
        name: name.to_string(),
        image: format!("example/{name}:1"),
        command: None,
        entrypoint: None,
        env: BTreeMap::new(),
        ports: Vec::new(),
        mounts: Vec::new(),
        networks: vec!["default".to_string()],
        labels: BTreeMap::new(),
        restart: RestartPolicy::UnlessStopped,
        healthcheck: None,
        depends_on: deps.iter().map(|(s, c)| Dependency { service: s.to_string(), condition: *c }).collect(),
        init: true,
    }
}

/// db ← api (started) ← web (started): a stack of three in dependency order.
fn desired(stack: StackKind, epoch: u64) -> Desired {
    let services = vec![
        spec("db", &[]),
        spec("api", &[("db", Condition::Started)]),
        spec("web", &[("api", Condition::Started)]),
    ];
    Desired {
        stack: Some(stack),
        epoch,
        services: services.into_iter().map(DesiredService::new).collect(),
        ..Desired::default()
    }
}

fn hash_of(d: &Desired, service: &str) -> String {
    d.services.iter().find(|s| s.spec.name == service).map(|s| s.spec_hash.clone()).unwrap_or_default()
}

fn container(
    id: &str,
    service: &str,
    stack: StackKind,
    epoch: u64,
    hash: &str,
    state: ContainerState,
) -> ObservedContainer {
    ObservedContainer {
        id: id.to_string(),
        name: format!("muster-n1-{stack}-{service}"),
        service: service.to_string(),
        stack,
        epoch,
        spec_hash: hash.to_string(),
        state,
        health: Health::NoCheck,
        since_ms: NOW_MS - 60_000,
    }
}

/// Every desired service running, up to date.
fn converged(d: &Desired) -> Vec<ObservedContainer> {
    let stack = d.stack.unwrap_or(StackKind::Server);
    d.services
        .iter()
        .map(|s| {
            container(
                &format!("id-{}", s.spec.name),
                &s.spec.name,
                stack,
                d.epoch,
                &s.spec_hash,
                ContainerState::Running,
            )
        })
        .collect()
}

fn short(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Stop { id, .. } => format!("stop {id}"),
            Action::Remove { id, .. } => format!("remove {id}"),
            Action::Create { service, .. } => format!("create {service}"),
            Action::Start { id, .. } => format!("start {id}"),
        })
        .collect()
}

fn run(d: &Desired, observed: &[ObservedContainer]) -> Vec<Action> {
    plan(d, observed, NOW_MS, &PlanLimits::DEFAULT)
}

#[test]
fn fresh_start_creates_every_service_in_dependency_order() {
    // Proves an empty host gets one create per service, dependencies first.
    let d = desired(StackKind::Server, 8);
    let actions = run(&d, &[]);
    assert_eq!(short(&actions), ["create db", "create api", "create web"]);
    assert_eq!(actions[0].reason(), "no container yet");
}

#[test]
fn converged_host_plans_nothing() {
    // Proves the planner is quiet when everything runs with the right stack, epoch and hash.
    let d = desired(StackKind::Proxy, 3);
    assert!(run(&d, &converged(&d)).is_empty());
    assert!(run(&Desired::nothing(3), &[]).is_empty());
}

#[test]
fn wrong_epoch_is_stopped_first_and_nothing_is_created_that_tick() {
    // Proves fencing: while a stale-epoch container is live, the tick holds only its stop.
    let old = desired(StackKind::Server, 7);
    let d = desired(StackKind::Server, 8);
    let mut observed = converged(&old);
    observed.truncate(2); // web is missing too, but must wait.
    let actions = run(&d, &observed);
    assert_eq!(short(&actions), ["stop id-db", "stop id-api"]);
    assert_eq!(actions[0].reason(), "epoch 7 is stale (desired 8)");

    // Next tick: both exited; they are removed before the new epoch's containers are created.
    observed.iter_mut().for_each(|c| c.state = ContainerState::Exited { code: 0 });
    let actions = run(&d, &observed);
    assert_eq!(short(&actions), ["remove id-db", "remove id-api", "create db", "create api", "create web"]);
    assert_eq!(actions[1].reason(), "epoch 7 is stale (desired 8)");
}

#[test]
fn paused_or_restarting_stale_containers_also_block_creation() {
    // Proves every live state counts for fencing, not just running.
    let d = desired(StackKind::Server, 8);
    let observed = [
        container("p", "db", StackKind::Server, 7, &hash_of(&d, "db"), ContainerState::Paused),
        container("r", "api", StackKind::Server, 9, &hash_of(&d, "api"), ContainerState::Restarting),
        container("x", "web", StackKind::Server, 7, &hash_of(&d, "web"), ContainerState::Dead),
    ];
    let actions = run(&d, &observed);
    assert_eq!(short(&actions), ["stop p", "stop r"]);
    assert_eq!(actions[1].reason(), "epoch 9 is not the desired epoch 8");
}

#[test]
fn stack_switch_stops_everything_old_before_creating_anything_new() {
    // Proves server -> proxy: all server containers stop first, then go, then proxy starts.
    let server = desired(StackKind::Server, 8);
    let proxy = Desired {
        stack: Some(StackKind::Proxy),
        epoch: 8,
        services: vec![DesiredService::new(spec("cam", &[]))],
        ..Desired::default()
    };
    let mut observed = converged(&server);
    let actions = run(&proxy, &observed);
    assert_eq!(short(&actions), ["stop id-db", "stop id-api", "stop id-web"]);
    assert_eq!(actions[0].reason(), "the server stack is not wanted here (desired proxy)");

    observed.iter_mut().for_each(|c| c.state = ContainerState::Exited { code: 143 });
    let actions = run(&proxy, &observed);
    assert_eq!(short(&actions), ["remove id-db", "remove id-api", "remove id-web", "create cam"]);
}

#[test]
fn no_stack_wanted_stops_then_removes_everything() {
    // Proves Desired::nothing drains the host: stops first, removes on the next tick.
    let d = desired(StackKind::Server, 8);
    let mut observed = converged(&d);
    let actions = run(&Desired::nothing(8), &observed);
    assert_eq!(short(&actions), ["stop id-db", "stop id-api", "stop id-web"]);
    observed.iter_mut().for_each(|c| c.state = ContainerState::Exited { code: 0 });
    assert_eq!(
        short(&run(&Desired::nothing(8), &observed)),
        ["remove id-db", "remove id-api", "remove id-web"]
    );
}

#[test]
fn stale_spec_hash_is_recreated() {
    // Proves a changed spec stops, removes and recreates that one service, and says why.
    let d = desired(StackKind::Server, 8);
    let mut observed = converged(&d);
    observed[1].spec_hash = "00000000deadbeef".to_string();
    let actions = run(&d, &observed);
    assert_eq!(short(&actions), ["stop id-api", "remove id-api", "create api"]);
    assert!(actions[0].reason().starts_with("spec changed (00000000deadbeef -> "), "{}", actions[0]);

    observed[1].state = ContainerState::Exited { code: 0 };
    assert_eq!(short(&run(&d, &observed)), ["remove id-api", "create api"]);
}

#[test]
fn exited_container_is_repaired_after_the_delay() {
    // Proves repair (remove + create) waits repair_delay_ms after the exit, then happens.
    let d = desired(StackKind::Server, 8);
    let mut observed = converged(&d);
    observed[0].state = ContainerState::Exited { code: 137 };
    observed[0].since_ms = NOW_MS - 1_000;
    assert!(run(&d, &observed).is_empty(), "too soon after the exit");
    observed[0].since_ms = NOW_MS - PlanLimits::DEFAULT.repair_delay_ms;
    let actions = run(&d, &observed);
    assert_eq!(short(&actions), ["remove id-db", "create db"]);
    assert_eq!(actions[0].reason(), "container exited with code 137");

    observed[0].state = ContainerState::Dead;
    assert_eq!(run(&d, &observed)[1].reason(), "container is dead");
}

#[test]
fn one_shot_success_is_left_alone_and_created_is_started() {
    // Proves exit 0 under restart "no" counts as done, and a created container is started.
    let mut d = desired(StackKind::Server, 8);
    d.services[0] = DesiredService::new(ServiceSpec { restart: RestartPolicy::No, ..spec("db", &[]) });
    let mut observed = converged(&d);
    observed[0].state = ContainerState::Exited { code: 0 };
    assert!(run(&d, &observed).is_empty());
    observed[2].state = ContainerState::Created;
    let actions = run(&d, &observed);
    assert_eq!(short(&actions), ["start id-web"]);
    assert_eq!(actions[0].reason(), "container was created but never started");
}

#[test]
fn healthy_dependencies_hold_dependents_until_observed_healthy() {
    // Proves service_healthy waits for an observed healthy container; started does not.
    let services = vec![
        spec("db", &[]),
        spec("api", &[("db", Condition::Healthy)]),
        spec("log", &[("db", Condition::Started)]),
    ];
    let d = Desired {
        stack: Some(StackKind::Server),
        epoch: 1,
        services: services.into_iter().map(DesiredService::new).collect(),
        ..Desired::default()
    };
    assert_eq!(short(&run(&d, &[])), ["create db", "create log"]);
    let mut db = container("id-db", "db", StackKind::Server, 1, &hash_of(&d, "db"), ContainerState::Running);
    db.health = Health::Starting;
    assert_eq!(short(&run(&d, &[db.clone()])), ["create log"]);
    db.health = Health::Healthy;
    assert_eq!(short(&run(&d, &[db])), ["create api", "create log"]);
}

#[test]
fn max_actions_bounds_every_tick() {
    // Proves the per-tick bound truncates fencing and convergence, keeping their order.
    let limits = PlanLimits { actions_per_tick_max: 2, ..PlanLimits::DEFAULT };
    let d = desired(StackKind::Server, 8);
    assert_eq!(short(&plan(&d, &[], NOW_MS, &limits)), ["create db", "create api"]);
    let old = converged(&desired(StackKind::Server, 7));
    assert_eq!(short(&plan(&d, &old, NOW_MS, &limits)), ["stop id-db", "stop id-api"]);
    let zero = PlanLimits { actions_per_tick_max: 0, ..PlanLimits::DEFAULT };
    assert!(plan(&d, &[], NOW_MS, &zero).is_empty());
}

#[test]
fn orphans_and_duplicates_are_cleaned_up() {
    // Proves a service dropped from the stack and a second container of a service are removed.
    let d = desired(StackKind::Server, 8);
    let mut observed = converged(&d);
    observed.push(container(
        "old",
        "legacy",
        StackKind::Server,
        8,
        "1111111111111111",
        ContainerState::Running,
    ));
    observed.push(container(
        "dup",
        "db",
        StackKind::Server,
        8,
        &hash_of(&d, "db"),
        ContainerState::Exited { code: 1 },
    ));
    let actions = run(&d, &observed);
    assert_eq!(short(&actions), ["remove dup", "stop old", "remove old"]);
    assert_eq!(actions[0].reason(), "duplicate container for service db (keeping id-db)");
    assert_eq!(actions[1].reason(), "service legacy is no longer in the server stack");
}

#[test]
fn dependents_wait_while_a_dependency_cannot_be_repaired_yet() {
    // Proves a missing dependent is not created while its dependency is down and not yet due.
    let d = desired(StackKind::Server, 8);
    let mut observed = converged(&d);
    observed.truncate(1);
    observed[0].state = ContainerState::Exited { code: 2 };
    observed[0].since_ms = NOW_MS;
    assert!(run(&d, &observed).is_empty());
    observed[0].state = ContainerState::Restarting;
    assert!(run(&d, &observed).is_empty(), "docker is restarting it; dependents wait");
    observed[0].state = ContainerState::Running;
    assert_eq!(short(&run(&d, &observed)), ["create api", "create web"]);
}
