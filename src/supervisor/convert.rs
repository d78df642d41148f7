//! One typed compose service (`docker_compose_types::Service`, already interpolated and checked
//! for unsupported keys) into muster's [`ServiceSpec`]: command words, environment, labels,
//! mounts, restart policy, healthcheck durations, dependencies. Pure: the compose file's
//! directory and the variables arrive as arguments. Must not import anything outside
//! `supervisor` (and the compose crate's types).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use docker_compose_types as dc;

use super::duration::parse_duration;
use super::error::ComposeError;
use super::spec::{
    Condition, Dependency, HealthcheckSpec, MountKind, MountSpec, PortSpec, RestartPolicy, ServiceSpec,
};
use super::words::split_words;

/// What a conversion needs besides the service itself.
pub struct Context<'a> {
    pub vars: &'a BTreeMap<String, String>,
    pub base_dir: &'a Path,
}

/// `ports` arrive already parsed (see `ports::parse_entries`); `svc.ports` is ignored.
pub fn service_spec(
    name: &str,
    svc: &dc::Service,
    ports: Vec<PortSpec>,
    cx: &Context<'_>,
) -> Result<ServiceSpec, ComposeError> {
    let invalid = |key: &str, reason: String| ComposeError::InvalidValue {
        service: name.to_string(),
        key: key.to_string(),
        reason,
    };
    let image = svc.image.as_deref().map(str::trim).filter(|i| !i.is_empty());
    let Some(image) = image else {
        return Err(ComposeError::MissingImage { service: name.to_string() });
    };
    let command = svc
        .command
        .as_ref()
        .map(|c| match c {
            dc::Command::Simple(s) => split_words(s),
            dc::Command::Args(v) => Ok(v.clone()),
        })
        .transpose()
        .map_err(|r| invalid("command", r))?;
    let entrypoint = svc
        .entrypoint
        .as_ref()
        .map(|e| match e {
            dc::Entrypoint::Simple(s) => split_words(s),
            dc::Entrypoint::List(v) => Ok(v.clone()),
        })
        .transpose()
        .map_err(|r| invalid("entrypoint", r))?;
    let mounts = svc
        .volumes
        .iter()
        .enumerate()
        .map(|(i, v)| mount(v, cx).map_err(|r| invalid(&format!("volumes.{i}"), r)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut networks: Vec<String> = match &svc.networks {
        dc::Networks::Simple(list) => list.clone(),
        dc::Networks::Advanced(map) => map.0.keys().cloned().collect(),
    };
    if networks.is_empty() {
        networks.push("default".to_string());
    }
    let labels = labels(&svc.labels);
    if let Some(label) = labels.keys().find(|k| k.starts_with("muster.")) {
        return Err(ComposeError::ReservedLabel { service: name.to_string(), label: label.clone() });
    }
    Ok(ServiceSpec {
        name: name.to_string(),
        image: image.to_string(),
        command,
        entrypoint,
        env: environment(&svc.environment, cx.vars),
        ports,
        mounts,
        networks,
        labels,
        restart: restart(svc.restart.as_deref()).map_err(|r| invalid("restart", r))?,
        healthcheck: svc.healthcheck.as_ref().map(|h| healthcheck(h, &invalid)).transpose()?,
        depends_on: depends_on(&svc.depends_on).map_err(|r| invalid("depends_on", r))?,
        init: svc.init,
    })
}

/// `KEY=value` / `KEY: value`; a bare `KEY` (or `KEY:` with no value) takes the variable of
/// that name, and is left out when there is none (compose's behaviour).
fn environment(env: &dc::Environment, vars: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let from_vars = |k: &str| vars.get(k).map(|v| (k.to_string(), v.clone()));
    match env {
        dc::Environment::List(items) => items
            .iter()
            .filter_map(|item| match item.split_once('=') {
                Some((k, v)) => Some((k.to_string(), v.to_string())),
                None => from_vars(item),
            })
            .collect(),
        dc::Environment::KvPair(map) => map
            .iter()
            .filter_map(|(k, v)| match v {
                Some(v) => Some((k.clone(), v.to_string())),
                None => from_vars(k),
            })
            .collect(),
    }
}

fn labels(labels: &dc::Labels) -> BTreeMap<String, String> {
    match labels {
        dc::Labels::List(items) => items
            .iter()
            .map(|item| match item.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (item.clone(), String::new()),
            })
            .collect(),
        dc::Labels::Map(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

fn restart(text: Option<&str>) -> Result<RestartPolicy, String> {
    let text = text.map(str::trim).unwrap_or("no");
    match text {
        "no" | "" => Ok(RestartPolicy::No),
        "always" => Ok(RestartPolicy::Always),
        "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
        "on-failure" => Ok(RestartPolicy::OnFailure { retries_max: None }),
        other => match other.strip_prefix("on-failure:").map(|n| n.trim().parse::<u32>()) {
            Some(Ok(n)) => Ok(RestartPolicy::OnFailure { retries_max: Some(n) }),
            _ => Err(format!(
                "unknown restart policy {other:?} (use no, always, on-failure[:N] or unless-stopped)"
            )),
        },
    }
}

fn healthcheck(
    hc: &dc::Healthcheck,
    invalid: &dyn Fn(&str, String) -> ComposeError,
) -> Result<HealthcheckSpec, ComposeError> {
    let duration = |key: &str, text: &Option<String>| {
        text.as_deref().map(parse_duration).transpose().map_err(|r| invalid(&format!("healthcheck.{key}"), r))
    };
    let test = match &hc.test {
        None => Vec::new(),
        Some(dc::HealthcheckTest::Single(s)) => vec!["CMD-SHELL".to_string(), s.clone()],
        Some(dc::HealthcheckTest::Multiple(v)) => {
            if !v.first().is_some_and(|f| ["NONE", "CMD", "CMD-SHELL"].contains(&f.as_str())) {
                let reason = "a list test must start with \"CMD\", \"CMD-SHELL\" or \"NONE\"".to_string();
                return Err(invalid("healthcheck.test", reason));
            }
            v.clone()
        }
    };
    if hc.disable {
        if test.first().is_some_and(|t| t != "NONE") {
            return Err(invalid(
                "healthcheck.disable",
                "disable: true cannot be combined with a test".to_string(),
            ));
        }
        let test = vec!["NONE".to_string()];
        return Ok(HealthcheckSpec {
            test,
            interval: None,
            timeout: None,
            retries: None,
            start_period: None,
        });
    }
    let retries = match hc.retries {
        0 => None,
        n => Some(
            u32::try_from(n).map_err(|_| invalid("healthcheck.retries", format!("{n} is not a count")))?,
        ),
    };
    Ok(HealthcheckSpec {
        test,
        interval: duration("interval", &hc.interval)?,
        timeout: duration("timeout", &hc.timeout)?,
        retries,
        start_period: duration("start_period", &hc.start_period)?,
    })
}

fn depends_on(deps: &dc::DependsOnOptions) -> Result<Vec<Dependency>, String> {
    let list: Vec<(String, Condition)> = match deps {
        dc::DependsOnOptions::Simple(names) => {
            names.iter().map(|n| (n.clone(), Condition::Started)).collect()
        }
        dc::DependsOnOptions::Conditional(map) => map
            .iter()
            .map(|(n, c)| match c.condition.as_str() {
                "service_started" => Ok((n.clone(), Condition::Started)),
                "service_healthy" => Ok((n.clone(), Condition::Healthy)),
                other => Err(format!(
                    "{n}: condition {other:?} is not supported (use service_started or service_healthy)"
                )),
            })
            .collect::<Result<_, _>>()?,
    };
    let mut out: Vec<Dependency> = Vec::with_capacity(list.len());
    for (service, condition) in list {
        if !out.iter().any(|d| d.service == service) {
            out.push(Dependency { service, condition });
        }
    }
    Ok(out)
}

fn mount(volume: &dc::Volumes, cx: &Context<'_>) -> Result<MountSpec, String> {
    let (source, target, read_only, kind) = match volume {
        dc::Volumes::Simple(entry) => {
            let parts: Vec<&str> = entry.split(':').collect();
            let (source, target, mode) = match parts.as_slice() {
                [s, t] => (*s, *t, ""),
                [s, t, m] => (*s, *t, *m),
                [_] => {
                    return Err(format!(
                        "anonymous volume {entry:?} is not supported; name it (NAME:{entry}) and declare it \
                         under top-level volumes"
                    ))
                }
                _ => return Err(format!("cannot read volume {entry:?}; use SOURCE:TARGET[:ro|rw]")),
            };
            let mut read_only = false;
            for opt in mode.split(',').filter(|o| !o.is_empty()) {
                match opt {
                    "ro" => read_only = true,
                    "rw" => read_only = false,
                    other => return Err(format!("volume option {other:?} is not supported (use ro or rw)")),
                }
            }
            let kind = if source.starts_with(['/', '.', '~']) { MountKind::Bind } else { MountKind::Volume };
            (source.to_string(), target.to_string(), read_only, kind)
        }
        dc::Volumes::Advanced(long) => {
            let kind = match long._type.as_str() {
                "bind" => MountKind::Bind,
                "volume" => MountKind::Volume,
                other => return Err(format!("volume type {other:?} is not supported (use bind or volume)")),
            };
            let Some(source) = long.source.clone().filter(|s| !s.is_empty()) else {
                return Err("a long-syntax volume needs a source".to_string());
            };
            (source, long.target.clone(), long.read_only, kind)
        }
    };
    if !target.starts_with('/') {
        return Err(format!("target {target:?} must be an absolute path"));
    }
    let source = match kind {
        MountKind::Bind => host_path(&source, cx)?,
        MountKind::Volume if source.contains('/') => {
            return Err(format!("{source:?} is neither a volume name nor a path starting with /, . or ~"))
        }
        MountKind::Volume => source,
    };
    Ok(MountSpec { kind, source, target, read_only })
}

/// A bind source as an absolute, lexically normalised host path.
fn host_path(source: &str, cx: &Context<'_>) -> Result<String, String> {
    let path = if let Some(rest) = source.strip_prefix('~') {
        if !(rest.is_empty() || rest.starts_with('/')) {
            return Err(format!("{source:?}: only ~ and ~/... are supported, not ~user"));
        }
        let Some(home) = cx.vars.get("HOME") else {
            return Err(format!("{source:?} starts with ~ but HOME is not set"));
        };
        PathBuf::from(home).join(rest.trim_start_matches('/'))
    } else {
        cx.base_dir.join(source)
    };
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if !out.is_absolute() {
        return Err(format!(
            "{source:?} does not resolve to an absolute path (the compose file's directory is relative)"
        ));
    }
    Ok(out.to_string_lossy().into_owned())
}
