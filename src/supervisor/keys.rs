//! Which compose keys muster honours, checked on the raw YAML tree before anything is typed,
//! and the small normalisations the typed crate needs (scalars to strings, interpolated
//! numbers and booleans back to their types).
//!
//! Any key not listed here, at the top level, in a service or inside a supported key, is an
//! error naming it and listing what is supported: a key that muster would silently skip is a
//! stack that silently runs differently from what the user wrote. Extension keys (`x-...`) are
//! removed first, as compose ignores them too (they exist for YAML anchors). Must not import
//! anything outside `supervisor`.

use serde_yaml::{Mapping, Value};

use super::error::ComposeError;

/// Top-level keys. `version` is accepted and ignored (compose itself treats it as obsolete).
pub const TOP_LEVEL_KEYS: &[&str] = &["services", "networks", "volumes", "version"];

/// Service keys. `container_name` is refused with its own message (muster names containers).
pub const SERVICE_KEYS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "ports",
    "volumes",
    "networks",
    "labels",
    "restart",
    "healthcheck",
    "depends_on",
    "init",
    "profiles",
];

pub const HEALTHCHECK_KEYS: &[&str] = &["test", "interval", "timeout", "retries", "start_period", "disable"];
pub const DEPENDS_ON_KEYS: &[&str] = &["condition"];
pub const PORT_LONG_KEYS: &[&str] = &["target", "published", "host_ip", "protocol"];
pub const VOLUME_LONG_KEYS: &[&str] = &["type", "source", "target", "read_only"];
pub const NETWORK_DECLARATION_KEYS: &[&str] = &["driver", "external", "internal"];
pub const VOLUME_DECLARATION_KEYS: &[&str] = &["driver", "external"];

/// A YAML key as text (keys are nearly always strings; numbers and booleans are printed).
pub fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// Where a path points, for messages: `service web, key ports.0` or `key networks.back`.
pub fn describe(path: &[String]) -> String {
    match path {
        [top, service, rest @ ..] if top == "services" && !rest.is_empty() => {
            format!("service {service}, key {}", rest.join("."))
        }
        [top, service] if top == "services" => format!("service {service}"),
        _ => format!("key {}", path.join(".")),
    }
}

/// Removes `x-...` extension keys from a mapping.
pub fn strip_extensions(map: &mut Mapping) {
    map.retain(|k, _| !k.as_str().is_some_and(|k| k.starts_with("x-")));
}

fn supported(list: &[&str]) -> String {
    list.join(", ")
}

fn as_mapping<'a>(value: &'a Value, path: &[String]) -> Result<&'a Mapping, ComposeError> {
    value.as_mapping().ok_or_else(|| ComposeError::NotAMapping { location: describe(path) })
}

/// Every key of `map` must be in `allowed`.
fn check_nested(map: &Mapping, allowed: &[&str], path: &[String]) -> Result<(), ComposeError> {
    for key in map.keys().map(key_text) {
        if !allowed.contains(&key.as_str()) {
            return Err(ComposeError::UnsupportedNestedKey {
                location: describe(path),
                key,
                supported: supported(allowed),
            });
        }
    }
    Ok(())
}

pub fn check_top_level(root: &Mapping) -> Result<(), ComposeError> {
    for key in root.keys().map(key_text) {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            return Err(ComposeError::UnsupportedTopLevelKey { key, supported: supported(TOP_LEVEL_KEYS) });
        }
    }
    Ok(())
}

/// Checks one service's keys and the keys inside its supported keys.
pub fn check_service(name: &str, service: &Mapping) -> Result<(), ComposeError> {
    for (k, v) in service {
        let key = key_text(k);
        let path = |rest: &[&str]| -> Vec<String> {
            ["services", name, key.as_str()].iter().chain(rest).map(|s| s.to_string()).collect()
        };
        match key.as_str() {
            "container_name" => return Err(ComposeError::ContainerName { service: name.to_string() }),
            "healthcheck" => check_nested(as_mapping(v, &path(&[]))?, HEALTHCHECK_KEYS, &path(&[]))?,
            "depends_on" => {
                for (dep, cond) in v.as_mapping().into_iter().flatten() {
                    let p = path(&[&key_text(dep)]);
                    check_nested(as_mapping(cond, &p)?, DEPENDS_ON_KEYS, &p)?;
                }
            }
            "ports" | "volumes" => {
                let allowed = if key == "ports" { PORT_LONG_KEYS } else { VOLUME_LONG_KEYS };
                for (i, item) in v.as_sequence().into_iter().flatten().enumerate() {
                    if let Some(long) = item.as_mapping() {
                        check_nested(long, allowed, &path(&[&i.to_string()]))?;
                    }
                }
            }
            "networks" => {
                for (net, settings) in v.as_mapping().into_iter().flatten() {
                    let empty = settings.is_null() || settings.as_mapping().is_some_and(Mapping::is_empty);
                    if !empty {
                        return Err(ComposeError::InvalidValue {
                            service: name.to_string(),
                            key: format!("networks.{}", key_text(net)),
                            reason: "only network names are supported (no aliases, addresses or priority)"
                                .to_string(),
                        });
                    }
                }
            }
            k if SERVICE_KEYS.contains(&k) => {}
            _ => {
                return Err(ComposeError::UnsupportedKey {
                    service: name.to_string(),
                    key,
                    supported: supported(SERVICE_KEYS),
                })
            }
        }
    }
    Ok(())
}

/// Checks the entries of top-level `networks` or `volumes` (each null or a mapping).
pub fn check_declarations(section: &str, value: &Value) -> Result<(), ComposeError> {
    let allowed = if section == "networks" { NETWORK_DECLARATION_KEYS } else { VOLUME_DECLARATION_KEYS };
    let top = vec![section.to_string()];
    for (name, decl) in as_mapping(value, &top)? {
        let path = vec![section.to_string(), key_text(name)];
        if !decl.is_null() {
            check_nested(as_mapping(decl, &path)?, allowed, &path)?;
        }
    }
    Ok(())
}

/// Turns numbers and booleans into strings where the typed crate wants strings: list items of
/// `ports`, `command`, `entrypoint`, `profiles`, `networks`, `depends_on`, `environment`,
/// `labels`, `healthcheck.test`, the values of a `labels` mapping, and the healthcheck's
/// durations (so `timeout: 5` gets the duration parser's message). `- 80` is a valid port.
pub fn stringify_scalars(service: &mut Mapping) {
    for key in
        ["ports", "command", "entrypoint", "profiles", "networks", "depends_on", "environment", "labels"]
    {
        if let Some(v) = service.get_mut(key) {
            stringify_items(v);
        }
    }
    if let Some(Value::Mapping(labels)) = service.get_mut("labels") {
        labels.values_mut().for_each(stringify);
    }
    if let Some(Value::Mapping(hc)) = service.get_mut("healthcheck") {
        if let Some(test) = hc.get_mut("test") {
            stringify_items(test);
        }
        for key in ["interval", "timeout", "start_period"] {
            if let Some(v) = hc.get_mut(key) {
                stringify(v);
            }
        }
    }
}

fn stringify_items(value: &mut Value) {
    if let Value::Sequence(items) = value {
        items.iter_mut().for_each(stringify);
    }
}

fn stringify(value: &mut Value) {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return,
    };
    *value = Value::String(text);
}

/// After interpolation `retries: ${N}` is the string `"3"`; give the typed crate its number
/// (or boolean) back for the keys that are not strings.
pub fn retype_scalars(service: &mut Mapping) {
    retype(service.get_mut("init"));
    if let Some(Value::Mapping(hc)) = service.get_mut("healthcheck") {
        retype(hc.get_mut("retries"));
        retype(hc.get_mut("disable"));
    }
    for key in ["ports", "volumes"] {
        if let Some(Value::Sequence(items)) = service.get_mut(key) {
            for long in items.iter_mut().filter_map(Value::as_mapping_mut) {
                ["target", "published", "read_only"].into_iter().for_each(|k| retype(long.get_mut(k)));
            }
        }
    }
}

/// Same for top-level declarations (`external`, `internal`).
pub fn retype_declarations(section: &mut Value) {
    for decl in section.as_mapping_mut().into_iter().flat_map(|m| m.values_mut()) {
        if let Some(decl) = decl.as_mapping_mut() {
            retype(decl.get_mut("external"));
            retype(decl.get_mut("internal"));
        }
    }
}

fn retype(value: Option<&mut Value>) {
    let Some(value) = value else { return };
    let Some(text) = value.as_str() else { return };
    let typed = match text.trim() {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        t => match t.parse::<u64>() {
            Ok(n) => Value::Number(n.into()),
            Err(_) => return,
        },
    };
    *value = typed;
}
