//! Tests of compose refusals: every unsupported key, dependency, variable, value and profile
//! problem gives an error naming what was wrong.

use super::tests_compose::err;

fn service(body: &str) -> String {
    format!("services:\n  web:\n    image: nginx\n    profiles: [server]\n{body}")
}

#[test]
fn every_unsupported_service_key_is_named_with_the_supported_list() {
    // Proves no key is silently skipped: each unsupported one fails, naming service and key.
    for key in [
        "build: .",
        "privileged: true",
        "env_file: .env",
        "user: root",
        "network_mode: host",
        "cap_add: [NET_ADMIN]",
        "deploy: {replicas: 2}",
        "hostname: web",
        "extends: base",
        "expose: [80]",
        "stop_grace_period: 5s",
    ] {
        let name = key.split(':').next().unwrap();
        let msg = err(&service(&format!("    {key}\n")));
        assert!(msg.starts_with(&format!("service web: key `{name}` is not supported by muster")), "{msg}");
        assert!(msg.contains("supported keys: image, command, entrypoint, environment, ports"), "{msg}");
    }
}

#[test]
fn unsupported_nested_and_top_level_keys_are_named() {
    // Proves the check reaches inside supported keys and covers the top level.
    let cases = [
        (service("    healthcheck:\n      test: [CMD, true]\n      start_interval: 1s\n"), "service web, key healthcheck: key `start_interval`"),
        (service("    ports:\n      - target: 80\n        mode: ingress\n"), "service web, key ports.0: key `mode`"),
        (service("    depends_on:\n      db:\n        condition: service_started\n        restart: true\n"), "service web, key depends_on.db: key `restart`"),
        (service("    networks:\n      default:\n        aliases: [w]\n"), "service web, key networks.default: only network names"),
        (format!("{}secrets:\n  token:\n    file: ./t\n", service("")), "top-level key `secrets` is not supported"),
        (format!("name: video\n{}", service("")), "top-level key `name` is not supported by muster; supported top-level keys: services, networks, volumes, version"),
        (format!("{}networks:\n  back:\n    ipam: {{}}\n", service("")), "key networks.back: key `ipam` is not supported"),
    ];
    for (text, want) in cases {
        let msg = err(&text);
        assert!(msg.contains(want), "want {want:?} in {msg:?}");
    }
}

#[test]
fn container_name_is_refused() {
    // Proves container_name is not honoured: muster names containers itself.
    let msg = err(&service("    container_name: my-web\n"));
    assert!(
        msg.starts_with("service web: container_name is not allowed: muster names containers itself"),
        "{msg}"
    );
}

#[test]
fn dependency_errors_name_the_services() {
    // Proves cycles, unknown dependencies and cross-stack dependencies are refused by name.
    let cycle = "services:\n  a:\n    image: x\n    profiles: [server]\n    depends_on: [b]\n  b:\n    image: x\n    profiles: [server]\n    depends_on: [c]\n  c:\n    image: x\n    profiles: [server]\n    depends_on: [a]\n";
    assert_eq!(err(cycle), "dependency cycle in the server stack: a -> b -> c -> a");
    let selfdep = "services:\n  a:\n    image: x\n    profiles: [proxy]\n    depends_on: [a]\n";
    assert_eq!(err(selfdep), "dependency cycle in the proxy stack: a -> a");
    assert_eq!(
        err(&service("    depends_on: [db]\n")),
        "service web depends on db, which is not defined in the compose file"
    );
    let cross = "services:\n  db:\n    image: x\n    profiles: [server]\n  web:\n    image: x\n    profiles: [server, proxy]\n    depends_on: [db]\n";
    assert!(err(cross).starts_with("service web is in the proxy stack but depends on db, which is not"));
    let healthy = "services:\n  db:\n    image: x\n    profiles: [server]\n  web:\n    image: x\n    profiles: [server]\n    depends_on:\n      db:\n        condition: service_healthy\n";
    assert!(err(healthy).starts_with("service web waits for db to be healthy, but db has no healthcheck"));
    let done = service("    depends_on:\n      web:\n        condition: service_completed_successfully\n");
    assert!(err(&done).contains("condition \"service_completed_successfully\" is not supported"));
}

#[test]
fn variable_errors_name_the_variable_service_and_key() {
    // Proves strict interpolation: unset variables and ${X:?msg} fail with their context.
    let unset = err(&service("    environment:\n      URL: http://${NOT_SET}:80\n"));
    assert!(unset.starts_with("variable NOT_SET is not set (service web, key environment.URL)"), "{unset}");
    let required =
        err(&service("    environment:\n      - TOKEN=${TOKEN:?set TOKEN to the capture token}\n"));
    assert_eq!(
        required,
        "required variable TOKEN is missing a value: set TOKEN to the capture token (service web, key environment.0)"
    );
    let lone = err(&service("    command: echo $ 5\n"));
    assert!(lone.contains("write `$$` for a literal `$`"), "{lone}");
}

#[test]
fn value_errors_name_the_key() {
    // Proves bad durations, ports, restart policies, mounts and types are refused with the key.
    let cases = [
        (
            service("    healthcheck:\n      test: [CMD, true]\n      interval: 10x\n"),
            "service web, key healthcheck.interval: invalid duration \"10x\": unknown unit \"x\"",
        ),
        (service("    healthcheck:\n      test: [CMD, true]\n      timeout: 5\n"), "key healthcheck.timeout"),
        (service("    ports: [\"99999:80\"]\n"), "service web, key ports.0: \"99999\" is not a port number"),
        (
            service("    restart: sometimes\n"),
            "service web, key restart: unknown restart policy \"sometimes\"",
        ),
        (
            service("    volumes: [/data]\n"),
            "service web, key volumes.0: anonymous volume \"/data\" is not supported",
        ),
        (service("    volumes: [\"./d:/d:z\"]\n"), "volume option \"z\" is not supported"),
        (
            "services:\n  web:\n    image: nginx\n    profiles: server\n".to_string(),
            "service web, key profiles: invalid type",
        ),
        (service("    command: \"echo 'oops\"\n"), "service web, key command: unterminated single quote"),
        (service("    healthcheck:\n      test: [curl, x]\n"), "a list test must start with"),
        (
            service("    environment: 5\n"),
            "service web, key environment: expected a mapping of NAME: value or a list",
        ),
        (
            service("    ports: [[80]]\n"),
            "service web, key ports.0: expected \"[HOST:]CONTAINER[/PROTOCOL]\"",
        ),
        (
            service("    ports:\n      - target: 80\n        protocol: icmp\n"),
            "key ports.0: unknown protocol \"icmp\"",
        ),
        (
            service("    labels:\n      muster.epoch: \"1\"\n"),
            "service web: label muster.epoch uses the reserved prefix",
        ),
        (service("    networks: [front]\n"), "service web uses network front, which is not declared"),
        (service("    volumes: [\"data:/data\"]\n"), "service web uses volume data, which is not declared"),
    ];
    for (text, want) in cases {
        let msg = err(&text);
        assert!(msg.contains(want), "want {want:?} in {msg:?}");
    }
}

#[test]
fn profile_and_shape_errors() {
    // Proves services without (or with an unknown) profile, images and file shape are checked.
    let none =
        "services:\n  a:\n    image: x\n  b:\n    image: x\n    profiles: [server]\n  c:\n    image: x\n";
    assert_eq!(
        err(none),
        "services without a muster profile: a, c; give each `profiles: [server]`, `profiles: [proxy]` or `profiles: [server, proxy]`"
    );
    assert!(err("services:\n  a:\n    image: x\n    profiles: [debug]\n").contains("unknown profile `debug`"));
    assert!(err("services:\n  a:\n    profiles: [server]\n").starts_with("service a has no image"));
    assert!(err("services: [a]\n").starts_with("key services must be a mapping"));
    assert!(err("services:\n  a: nginx\n").starts_with("service a must be a mapping"));
    assert!(err("services:\n  a: {image: [\n").starts_with("compose file is not valid YAML"));
    assert!(err("- just a list\n").starts_with("the compose file must be a mapping"));
    assert!(err("services:\n  web app:\n    image: x\n    profiles: [server]\n")
        .contains("a service name may use only"));
}
