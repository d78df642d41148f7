//! The user's compose file into muster's two stacks ([`Stacks`]): services with
//! `profiles: [server]` form the server stack, `profiles: [proxy]` the proxy stack (a service may
//! be in both). Everything is checked at start, and any problem is an error naming it.
//!
//! Pipeline, all pure except [`load`]: YAML text → raw `serde_yaml::Value` (merge keys applied,
//! `x-` extensions dropped) → unsupported keys refused ([`super::keys`]) → `${VAR}` interpolation
//! over string values ([`super::interpolate`]) → the typed `docker-compose-types` model, one key
//! at a time so a type error names its key → [`ServiceSpec`]s → profiles, dependencies, networks
//! and volumes validated → each stack in depends_on order. Must not import anything outside
//! `supervisor` (and the YAML/compose crates).

use std::collections::BTreeMap;
use std::path::Path;

use docker_compose_types as dc;
use serde_yaml::{Mapping, Value};

use super::convert::{service_spec, Context};
use super::error::ComposeError;
use super::interpolate::interpolate_tree;
use super::keys::{
    check_declarations, check_service, check_top_level, key_text, retype_declarations, retype_scalars,
    stringify_scalars, strip_extensions,
};
use super::order::dependency_order;
use super::ports::parse_entries;
use super::spec::{Condition, MountKind, NetworkSpec, ServiceSpec, StackKind, StackSpec, VolumeSpec};

/// The variables `${VAR}` may use: the process environment merged with [`MusterVars`].
pub type Vars = BTreeMap<String, String>;

/// The largest compose file accepted.
pub const COMPOSE_BYTES_MAX: usize = 1024 * 1024;
/// The most services one compose file may define.
pub const SERVICES_MAX: usize = 256;

/// The variables muster itself provides to the compose file; they win over the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MusterVars {
    /// `MUSTER_SERVER_HOST`: the current server's host (address without port).
    pub server_host: String,
    /// `MUSTER_SERVER_ADDR`: the current server's API address (`host:port`).
    pub server_addr: String,
    /// `MUSTER_NODE`: this node's name.
    pub node: String,
    /// `MUSTER_ROLE`: `server` or `proxy`, the stack this node runs.
    pub role: String,
    /// `MUSTER_EPOCH`: the fencing token of the current leadership.
    pub epoch: u64,
}

impl MusterVars {
    pub fn to_vars(&self) -> Vars {
        [
            ("MUSTER_SERVER_HOST", self.server_host.clone()),
            ("MUSTER_SERVER_ADDR", self.server_addr.clone()),
            ("MUSTER_NODE", self.node.clone()),
            ("MUSTER_ROLE", self.role.clone()),
            ("MUSTER_EPOCH", self.epoch.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// `env` (e.g. `std::env::vars()`) with muster's variables on top.
    pub fn merged_with(&self, env: impl IntoIterator<Item = (String, String)>) -> Vars {
        let mut vars: Vars = env.into_iter().collect();
        vars.extend(self.to_vars());
        vars
    }
}

/// Both stacks of one compose file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stacks {
    pub server: StackSpec,
    pub proxy: StackSpec,
}

impl Stacks {
    pub fn get(&self, kind: StackKind) -> &StackSpec {
        match kind {
            StackKind::Server => &self.server,
            StackKind::Proxy => &self.proxy,
        }
    }
}

/// Reads and parses a compose file; relative bind mounts resolve against its directory.
pub fn load(path: &Path, vars: &Vars) -> Result<Stacks, ComposeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ComposeError::Io { path: path.to_path_buf(), source })?;
    let base_dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let base_dir = std::path::absolute(&base_dir).unwrap_or(base_dir);
    parse(&text, vars, &base_dir)
}

/// Parses compose `text` with `vars` for interpolation; `base_dir` (absolute) anchors relative
/// bind-mount sources.
pub fn parse(text: &str, vars: &Vars, base_dir: &Path) -> Result<Stacks, ComposeError> {
    if text.len() > COMPOSE_BYTES_MAX {
        return Err(ComposeError::TooLarge { size_bytes: text.len(), max_bytes: COMPOSE_BYTES_MAX });
    }
    let yaml = |e: serde_yaml::Error| ComposeError::Yaml { reason: e.to_string() };
    let mut root: Value = serde_yaml::from_str(text).map_err(yaml)?;
    root.apply_merge().map_err(yaml)?;
    let Value::Mapping(root) = &mut root else {
        return Err(ComposeError::NotAMapping { location: "the compose file".to_string() });
    };
    strip_extensions(root);
    check_top_level(root)?;
    for section in ["networks", "volumes"] {
        if let Some(value) = root.get_mut(section).filter(|v| !v.is_null()) {
            check_declarations(section, value)?;
            interpolate_tree(value, vars, &mut vec![section.to_string()])?;
            retype_declarations(value);
        }
    }
    let services = match root.get_mut("services") {
        Some(Value::Mapping(services)) => services,
        _ => return Err(ComposeError::NotAMapping { location: "key services".to_string() }),
    };
    if services.len() > SERVICES_MAX {
        let count = services.len();
        return Err(ComposeError::TooMany { what: "services".to_string(), count, max: SERVICES_MAX });
    }
    let cx = Context { vars, base_dir };
    let mut parsed: Vec<(ServiceSpec, Vec<StackKind>)> = Vec::with_capacity(services.len());
    let mut no_profile = Vec::new();
    for (name, body) in services.iter_mut() {
        let name = key_text(name);
        let (spec, stacks) = one_service(&name, body, &cx)?;
        if stacks.is_empty() {
            no_profile.push(name);
        }
        parsed.push((spec, stacks));
    }
    if !no_profile.is_empty() {
        return Err(ComposeError::NoProfile { services: no_profile });
    }
    let networks = networks(root.get("networks"))?;
    let volumes = volumes(root.get("volumes"))?;
    check_references(&parsed, &networks, &volumes)?;
    Ok(Stacks {
        server: stack(StackKind::Server, &parsed, &networks, &volumes)?,
        proxy: stack(StackKind::Proxy, &parsed, &networks, &volumes)?,
    })
}

/// One service's raw body through the whole pipeline, with the stacks its profiles select.
fn one_service(
    name: &str,
    body: &mut Value,
    cx: &Context<'_>,
) -> Result<(ServiceSpec, Vec<StackKind>), ComposeError> {
    let name_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || !name.chars().all(name_ok) {
        return Err(ComposeError::InvalidDeclaration {
            location: format!("service {name:?}"),
            reason: "a service name may use only letters, digits, `.`, `_` and `-`".to_string(),
        });
    }
    let Value::Mapping(body) = body else {
        return Err(ComposeError::NotAMapping { location: format!("service {name}") });
    };
    strip_extensions(body);
    check_service(name, body)?;
    let mut path = vec!["services".to_string(), name.to_string()];
    for (key, value) in body.iter_mut() {
        path.push(key_text(key));
        interpolate_tree(value, cx.vars, &mut path)?;
        path.pop();
    }
    stringify_scalars(body);
    retype_scalars(body);
    let ports = parse_entries(name, body.get("ports"))?;
    let typed = typed_service(name, body)?;
    let stacks = stacks_of(name, &typed.profiles)?;
    Ok((service_spec(name, &typed, ports, cx)?, stacks))
}

/// The typed service (without `ports`, read apart), first one key at a time so that a type
/// error names the key.
fn typed_service(name: &str, body: &Mapping) -> Result<dc::Service, ComposeError> {
    let invalid = |key: String, e: serde_yaml::Error| {
        let reason = e.to_string();
        let reason = match SHAPES.iter().find(|(k, _)| *k == key) {
            Some((_, shape)) if reason.contains("did not match any variant") => format!("expected {shape}"),
            _ => reason,
        };
        ComposeError::InvalidValue { service: name.to_string(), key, reason }
    };
    let mut body = body.clone();
    body.remove("ports");
    for (key, value) in &body {
        let mut one = Mapping::new();
        one.insert(key.clone(), value.clone());
        serde_yaml::from_value::<dc::Service>(Value::Mapping(one)).map_err(|e| invalid(key_text(key), e))?;
    }
    serde_yaml::from_value(Value::Mapping(body)).map_err(|e| invalid("(service)".to_string(), e))
}

/// What each key with several accepted shapes looks like, for type errors.
const SHAPES: &[(&str, &str)] = &[
    ("command", "a string or a list of strings"),
    ("entrypoint", "a string or a list of strings"),
    ("environment", "a mapping of NAME: value or a list of NAME=value strings"),
    ("labels", "a mapping of name: value or a list of name=value strings"),
    ("volumes", "a list of SOURCE:TARGET[:ro] strings or mappings with type, source, target, read_only"),
    ("networks", "a list of network names"),
    ("depends_on", "a list of service names or a mapping of name to {condition: ...}"),
    ("healthcheck", "a mapping whose test is a string or a list of strings"),
];

fn stacks_of(name: &str, profiles: &[String]) -> Result<Vec<StackKind>, ComposeError> {
    let mut stacks = Vec::new();
    for profile in profiles {
        let Some(kind) = StackKind::from_profile(profile.trim()) else {
            return Err(ComposeError::UnknownProfile { service: name.to_string(), profile: profile.clone() });
        };
        if !stacks.contains(&kind) {
            stacks.push(kind);
        }
    }
    Ok(stacks)
}

fn declaration_error(location: String, e: impl std::fmt::Display) -> ComposeError {
    ComposeError::InvalidDeclaration { location, reason: e.to_string() }
}

fn networks(section: Option<&Value>) -> Result<Vec<NetworkSpec>, ComposeError> {
    let Some(value) = section.filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let typed: dc::ComposeNetworks =
        serde_yaml::from_value(value.clone()).map_err(|e| declaration_error("networks".to_string(), e))?;
    let mut out = Vec::with_capacity(typed.0.len());
    for (name, decl) in typed.0 {
        let settings: Option<dc::NetworkSettings> = decl.into();
        let settings = settings.unwrap_or_default();
        let external = match settings.external {
            None => false,
            Some(dc::ComposeNetwork::Bool(b)) => b,
            Some(dc::ComposeNetwork::Detailed(_)) => {
                return Err(declaration_error(
                    format!("networks.{name}.external"),
                    "external: {name: ...} is not supported; use external: true and the network's name as the key",
                ))
            }
        };
        out.push(NetworkSpec { name, driver: settings.driver, external, internal: settings.internal });
    }
    Ok(out)
}

fn volumes(section: Option<&Value>) -> Result<Vec<VolumeSpec>, ComposeError> {
    let Some(value) = section.filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let typed: dc::TopLevelVolumes =
        serde_yaml::from_value(value.clone()).map_err(|e| declaration_error("volumes".to_string(), e))?;
    let mut out = Vec::with_capacity(typed.0.len());
    for (name, decl) in typed.0 {
        let (driver, external) = match Option::<dc::ComposeVolume>::from(decl) {
            None => (None, false),
            Some(v) => match v.external {
                None => (v.driver, false),
                Some(dc::ExternalVolume::Bool(b)) => (v.driver, b),
                Some(dc::ExternalVolume::Name { .. }) => {
                    return Err(declaration_error(
                        format!("volumes.{name}.external"),
                        "external: {name: ...} is not supported; use external: true and the volume's name as the key",
                    ))
                }
            },
        };
        out.push(VolumeSpec { name, driver, external });
    }
    Ok(out)
}

/// Dependencies exist (and healthy ones have a healthcheck); networks and volumes are declared.
fn check_references(
    parsed: &[(ServiceSpec, Vec<StackKind>)],
    networks: &[NetworkSpec],
    volumes: &[VolumeSpec],
) -> Result<(), ComposeError> {
    for (spec, _) in parsed {
        for dep in &spec.depends_on {
            let Some((target, _)) = parsed.iter().find(|(s, _)| s.name == dep.service) else {
                return Err(ComposeError::UnknownDependency {
                    service: spec.name.clone(),
                    dependency: dep.service.clone(),
                });
            };
            let has_check = target.healthcheck.as_ref().is_some_and(|h| !h.is_disabled());
            if dep.condition == Condition::Healthy && !has_check {
                return Err(ComposeError::HealthyWithoutHealthcheck {
                    service: spec.name.clone(),
                    dependency: dep.service.clone(),
                });
            }
        }
        for network in spec.networks.iter().filter(|n| *n != "default") {
            if !networks.iter().any(|n| &n.name == network) {
                return Err(ComposeError::UndeclaredNetwork {
                    service: spec.name.clone(),
                    network: network.clone(),
                });
            }
        }
        for m in spec.mounts.iter().filter(|m| m.kind == MountKind::Volume) {
            if !volumes.iter().any(|v| v.name == m.source) {
                return Err(ComposeError::UndeclaredVolume {
                    service: spec.name.clone(),
                    volume: m.source.clone(),
                });
            }
        }
    }
    Ok(())
}

/// One stack: its members in dependency order, and the networks and volumes they use.
fn stack(
    kind: StackKind,
    parsed: &[(ServiceSpec, Vec<StackKind>)],
    networks: &[NetworkSpec],
    volumes: &[VolumeSpec],
) -> Result<StackSpec, ComposeError> {
    let members: Vec<ServiceSpec> =
        parsed.iter().filter(|(_, stacks)| stacks.contains(&kind)).map(|(s, _)| s.clone()).collect();
    for spec in &members {
        for dep in &spec.depends_on {
            if !members.iter().any(|m| m.name == dep.service) {
                return Err(ComposeError::DependencyOutsideStack {
                    service: spec.name.clone(),
                    dependency: dep.service.clone(),
                    stack: kind.to_string(),
                });
            }
        }
    }
    let uses_network = |name: &str| members.iter().any(|m| m.networks.iter().any(|n| n == name));
    let mut stack_networks: Vec<NetworkSpec> = Vec::new();
    if uses_network("default") && !networks.iter().any(|n| n.name == "default") {
        stack_networks.push(NetworkSpec {
            name: "default".to_string(),
            driver: None,
            external: false,
            internal: false,
        });
    }
    stack_networks.extend(networks.iter().filter(|n| uses_network(&n.name)).cloned());
    let stack_volumes = volumes
        .iter()
        .filter(|v| {
            members.iter().any(|m| m.mounts.iter().any(|x| x.kind == MountKind::Volume && x.source == v.name))
        })
        .cloned()
        .collect();
    Ok(StackSpec {
        name: kind,
        services: dependency_order(kind, members)?,
        networks: stack_networks,
        volumes: stack_volumes,
    })
}
