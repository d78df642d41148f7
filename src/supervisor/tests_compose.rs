//! Tests of compose parsing: a seed-like file end to end, `load`, extensions and the spec hash.
//! Refusals and their messages are in `tests_compose_errors`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::compose::{load, parse, MusterVars, Stacks, Vars};
use super::error::ComposeError;
use super::spec::{
    Condition, Dependency, MountKind, MountSpec, PortSpec, Protocol, RestartPolicy, StackKind,
};

const SEED: &str = r#"
version: "3.8"
x-common: &common
  restart: unless-stopped
  labels:
    app: video
services:
  video-web:
    <<: *common
    image: thatdam/video-web:1.4
    profiles: [server]
    depends_on: [video-api]
    environment:
      API_URL: http://video-api:8000
      WORKERS: 4
  gateway:
    image: nginx:1.27-alpine
    profiles: [server]
    command: nginx -g 'daemon off;'
    ports: ["80:80", 443, {target: 8443, published: "9443", host_ip: 127.0.0.1}]
    volumes:
      - ./nginx.conf:/etc/nginx/nginx.conf:ro
    depends_on:
      video-web:
        condition: service_started
      video-api:
        condition: service_started
  video-api:
    <<: *common
    image: thatdam/video-api:1.4
    profiles: [server]
    environment:
      - EVENT_BROKER_URL=amqp://video:video@rabbitmq:5672/
      - CAPTURE_DAEMON_URL=http://capture-daemon:8080
      - SECRET_TOKEN
    depends_on:
      rabbitmq:
        condition: service_healthy
      capture-daemon:
        condition: service_started
    networks: [backend, default]
  capture-daemon:
    image: thatdam/capture-daemon:latest
    profiles: [server]
    command: ["capture-daemon", "--listen", "0.0.0.0:8080"]
    environment:
      MUSTER_EPOCH: ${MUSTER_EPOCH}
      PRICE: "$$5"
    ports:
      - "8080:8080"
    volumes:
      - /etc/localtime:/etc/localtime:ro
      - recordings:/recordings
    depends_on:
      rabbitmq:
        condition: service_healthy
    networks: [backend]
    init: true
    restart: on-failure:3
  rabbitmq:
    image: rabbitmq:3.13-management
    profiles: [server]
    ports:
      - "5672:5672"
      - "127.0.0.1:15672:15672"
    environment:
      RABBITMQ_DEFAULT_USER: video
      RABBITMQ_DEFAULT_PASS: ${RABBIT_PASS:-video}
    volumes:
      - rabbitmq-data:/var/lib/rabbitmq
    healthcheck:
      test: ["CMD", "rabbitmq-diagnostics", "-q", "ping"]
      interval: 10s
      timeout: 5s
      retries: ${RABBIT_RETRIES:-5}
      start_period: 30s
    networks: [backend]
    restart: always
  camera-proxy:
    image: thatdam/camera-proxy:1.4
    profiles: [proxy]
    environment:
      CAPTURE_DAEMON_URL: "http://${MUSTER_SERVER_HOST}:8080"
      EVENT_BROKER_URL: "amqp://video:video@${MUSTER_SERVER_HOST}:5672/"
    ports:
      - "127.0.0.1:8554:8554/udp"
    healthcheck:
      test: curl -f http://localhost:8554/health || exit 1
      interval: 1m30s
    restart: always
    init: ${PROXY_INIT:-true}
  node-exporter:
    image: prom/node-exporter:v1.8.2
    profiles: [server, proxy]
    entrypoint: /bin/node_exporter --path.rootfs=/host
    labels:
      - "role=metrics"
      - "muster-node=${MUSTER_NODE}"
    volumes:
      - type: bind
        source: /
        target: /host
        read_only: true
networks:
  backend:
    driver: bridge
volumes:
  rabbitmq-data:
  recordings:
    driver: local
"#;

pub(super) fn vars() -> Vars {
    let muster = MusterVars {
        server_host: "10.1.2.3".into(),
        server_addr: "10.1.2.3:9999".into(),
        node: "host-b".into(),
        role: "proxy".into(),
        epoch: 8,
    };
    let env = [("HOME", "/home/video"), ("SECRET_TOKEN", "s3cret"), ("MUSTER_NODE", "not-this-one")];
    muster.merged_with(env.into_iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

pub(super) fn parse_seed(text: &str) -> Result<Stacks, ComposeError> {
    parse(text, &vars(), Path::new("/srv/video"))
}

fn names(stacks: &Stacks, kind: StackKind) -> Vec<&str> {
    stacks.get(kind).services.iter().map(|s| s.name.as_str()).collect()
}

pub(super) fn err(text: &str) -> String {
    parse_seed(text).unwrap_err().to_string()
}

fn port(ip: Option<&str>, host: Option<u16>, container: u16, protocol: Protocol) -> PortSpec {
    PortSpec { host_ip: ip.map(str::to_string), host_port: host, container_port: container, protocol }
}

#[test]
fn seed_file_parses_into_two_stacks_in_dependency_order() {
    // Proves profiles split the stacks, depends_on reorders the file, and shared services join both.
    let stacks = parse_seed(SEED).unwrap();
    assert_eq!(
        names(&stacks, StackKind::Server),
        ["rabbitmq", "capture-daemon", "video-api", "video-web", "gateway", "node-exporter"]
    );
    assert_eq!(names(&stacks, StackKind::Proxy), ["camera-proxy", "node-exporter"]);
    assert_eq!(stacks.server.name, StackKind::Server);
    assert_eq!(stacks.proxy.name, StackKind::Proxy);
    let nets: Vec<&str> = stacks.server.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(nets, ["default", "backend"]);
    let vols: Vec<&str> = stacks.server.volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(vols, ["rabbitmq-data", "recordings"]);
    assert!(stacks.proxy.volumes.is_empty());
}

#[test]
fn seed_proxy_values_are_interpolated_with_muster_variables() {
    // Proves ${MUSTER_SERVER_HOST} reaches the proxy's env, muster's variables win over the
    // environment, and string healthchecks become CMD-SHELL with parsed durations.
    let stacks = parse_seed(SEED).unwrap();
    let proxy = stacks.proxy.service("camera-proxy").unwrap();
    assert_eq!(proxy.env["CAPTURE_DAEMON_URL"], "http://10.1.2.3:8080");
    assert_eq!(proxy.env["EVENT_BROKER_URL"], "amqp://video:video@10.1.2.3:5672/");
    assert_eq!(proxy.ports, [port(Some("127.0.0.1"), Some(8554), 8554, Protocol::Udp)]);
    assert_eq!(proxy.networks, ["default"]);
    assert_eq!(proxy.restart, RestartPolicy::Always);
    assert!(proxy.init, "init: ${{PROXY_INIT:-true}} is retyped to a boolean");
    let hc = proxy.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, ["CMD-SHELL", "curl -f http://localhost:8554/health || exit 1"]);
    assert_eq!(hc.interval, Some(Duration::from_secs(90)));
    let exporter = stacks.proxy.service("node-exporter").unwrap();
    assert_eq!(exporter.labels["muster-node"], "host-b");
    assert_eq!(exporter.entrypoint.as_deref().unwrap(), ["/bin/node_exporter", "--path.rootfs=/host"]);
    let root =
        MountSpec { kind: MountKind::Bind, source: "/".into(), target: "/host".into(), read_only: true };
    assert_eq!(exporter.mounts, [root]);
}

#[test]
fn seed_server_services_carry_every_supported_key() {
    // Proves the typed conversion of each supported key on the server stack.
    let stacks = parse_seed(SEED).unwrap();
    let s = &stacks.server;
    let rabbit = s.service("rabbitmq").unwrap();
    assert_eq!(rabbit.env["RABBITMQ_DEFAULT_PASS"], "video");
    assert_eq!(rabbit.ports[1], port(Some("127.0.0.1"), Some(15672), 15672, Protocol::Tcp));
    assert_eq!(rabbit.mounts[0].kind, MountKind::Volume);
    let hc = rabbit.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, ["CMD", "rabbitmq-diagnostics", "-q", "ping"]);
    assert_eq!(
        (hc.interval, hc.timeout, hc.retries),
        (Some(Duration::from_secs(10)), Some(Duration::from_secs(5)), Some(5))
    );
    assert_eq!(hc.start_period, Some(Duration::from_secs(30)));

    let daemon = s.service("capture-daemon").unwrap();
    assert_eq!(daemon.env["MUSTER_EPOCH"], "8");
    assert_eq!(daemon.env["PRICE"], "$5");
    assert_eq!(daemon.command.as_deref().unwrap(), ["capture-daemon", "--listen", "0.0.0.0:8080"]);
    assert_eq!(daemon.restart, RestartPolicy::OnFailure { retries_max: Some(3) });
    assert!(daemon.init);
    assert!(daemon.mounts[0].read_only && daemon.mounts[0].kind == MountKind::Bind);
    assert_eq!(daemon.depends_on, [Dependency { service: "rabbitmq".into(), condition: Condition::Healthy }]);

    let api = s.service("video-api").unwrap();
    assert_eq!(api.env["SECRET_TOKEN"], "s3cret", "a bare list entry takes the variable's value");
    assert_eq!(api.restart, RestartPolicy::UnlessStopped, "merged from the x-common anchor");
    assert_eq!(api.labels, BTreeMap::from([("app".to_string(), "video".to_string())]));
    assert_eq!(api.networks, ["backend", "default"]);

    let web = s.service("video-web").unwrap();
    assert_eq!(web.env["WORKERS"], "4");
    assert_eq!(web.depends_on, [Dependency { service: "video-api".into(), condition: Condition::Started }]);

    let gateway = s.service("gateway").unwrap();
    assert_eq!(gateway.command.as_deref().unwrap(), ["nginx", "-g", "daemon off;"]);
    let long = port(Some("127.0.0.1"), Some(9443), 8443, Protocol::Tcp);
    assert_eq!(
        gateway.ports,
        [port(None, Some(80), 80, Protocol::Tcp), port(None, None, 443, Protocol::Tcp), long]
    );
    assert_eq!(gateway.mounts[0].source, "/srv/video/nginx.conf", "relative bind resolves against the file");
    assert_eq!(gateway.restart, RestartPolicy::No);
}

#[test]
fn load_reads_the_file_and_anchors_relative_paths_at_its_directory() {
    // Proves the thin load() helper: file IO, base directory, and an unreadable path's error.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("compose.yaml");
    std::fs::write(&path, SEED).unwrap();
    let stacks = load(&path, &vars()).unwrap();
    let gateway = stacks.server.service("gateway").unwrap();
    assert_eq!(Path::new(&gateway.mounts[0].source), dir.path().join("nginx.conf"));
    let missing = load(&dir.path().join("nope.yaml"), &vars()).unwrap_err().to_string();
    assert!(missing.starts_with("cannot read compose file"), "{missing}");
}

#[test]
fn extensions_are_ignored_and_interpolation_never_touches_keys() {
    // Proves x- keys are dropped (even with unset variables inside) and keys stay literal.
    let text = "x-note: ${UNSET}\nservices:\n  web:\n    x-owner: ${UNSET}\n    image: nginx\n    profiles: [proxy]\n    environment:\n      $$KEY: v\n    labels: {weight: 3}\n    ports: [80]\n";
    let stacks = parse_seed(text).unwrap();
    let web = stacks.proxy.service("web").unwrap();
    assert_eq!(web.env["$$KEY"], "v");
    assert_eq!(web.labels["weight"], "3");
    assert_eq!(web.ports, [port(None, None, 80, Protocol::Tcp)]);
}

#[test]
fn spec_hash_is_stable_and_tracks_container_config_only() {
    // Proves the hash is fixed across builds (golden), changes with config, ignores depends_on.
    let stacks = parse_seed(SEED).unwrap();
    let web = stacks.server.service("video-web").unwrap().clone();
    let hash = web.spec_hash();
    assert_eq!(hash.len(), 16);
    assert_eq!(hash, web.clone().spec_hash());
    let mut changed = web.clone();
    changed.env.insert("WORKERS".into(), "5".into());
    assert_ne!(changed.spec_hash(), hash);
    let mut reordered = web.clone();
    reordered.depends_on.clear();
    assert_eq!(reordered.spec_hash(), hash);
    let minimal = parse_seed("services:\n  a:\n    image: busybox\n    profiles: [server]\n").unwrap();
    assert_eq!(minimal.server.services[0].spec_hash(), GOLDEN_MINIMAL_HASH);
}

/// The spec hash of `{name: a, image: busybox}`; if this changes, every container is recreated.
const GOLDEN_MINIMAL_HASH: &str = "7fc3e08d5aafaf2b";
