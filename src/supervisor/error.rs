//! [`ComposeError`]: every way the user's compose file is refused at start.
//!
//! Each message names what was wrong (the service, the key, the variable) and, where there is
//! one, what to do instead. Must not import anything outside `supervisor`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("cannot read compose file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("compose file is {size_bytes} bytes, more than the {max_bytes} muster accepts")]
    TooLarge { size_bytes: usize, max_bytes: usize },

    #[error("compose file is not valid YAML: {reason}")]
    Yaml { reason: String },

    /// A node that must be a mapping (the file, `services`, one service, ...) is something else.
    #[error("{location} must be a mapping")]
    NotAMapping { location: String },

    #[error("top-level key `{key}` is not supported by muster; supported top-level keys: {supported}")]
    UnsupportedTopLevelKey { key: String, supported: String },

    #[error("service {service}: key `{key}` is not supported by muster; supported keys: {supported}")]
    UnsupportedKey { service: String, key: String, supported: String },

    /// A key inside a supported key (e.g. `healthcheck.start_interval`, `networks.back.ipam`).
    #[error("{location}: key `{key}` is not supported by muster; supported keys there: {supported}")]
    UnsupportedNestedKey { location: String, key: String, supported: String },

    #[error(
        "service {service}: container_name is not allowed: muster names containers itself \
         (muster-<node>-<stack>-<service>) and finds them by label; remove the key"
    )]
    ContainerName { service: String },

    #[error(
        "variable {variable} is not set ({location}); set it, or give a default with \
         ${{{variable}:-default}}"
    )]
    UnsetVariable { variable: String, location: String },

    /// `${VAR:?message}` or `${VAR?message}` with the variable missing (or empty, for `:?`).
    #[error("required variable {variable} is missing a value: {message} ({location})")]
    RequiredVariable { variable: String, message: String, location: String },

    #[error("invalid interpolation ({location}): {reason}")]
    BadInterpolation { location: String, reason: String },

    /// A supported key whose value is wrong: a bad port, duration, restart policy, ...
    #[error("service {service}, key {key}: {reason}")]
    InvalidValue { service: String, key: String, reason: String },

    /// A top-level `networks` or `volumes` entry whose value is wrong.
    #[error("{location}: {reason}")]
    InvalidDeclaration { location: String, reason: String },

    #[error("service {service} has no image; muster does not build images, set `image:`")]
    MissingImage { service: String },

    #[error(
        "services without a muster profile: {}; give each `profiles: [server]`, \
         `profiles: [proxy]` or `profiles: [server, proxy]`",
        .services.join(", ")
    )]
    NoProfile { services: Vec<String> },

    #[error("service {service}: unknown profile `{profile}`; muster knows only `server` and `proxy`")]
    UnknownProfile { service: String, profile: String },

    #[error("service {service} depends on {dependency}, which is not defined in the compose file")]
    UnknownDependency { service: String, dependency: String },

    #[error(
        "service {service} is in the {stack} stack but depends on {dependency}, which is not; \
         add the {stack} profile to {dependency} or drop the dependency"
    )]
    DependencyOutsideStack { service: String, dependency: String, stack: String },

    #[error("dependency cycle in the {stack} stack: {}", .cycle.join(" -> "))]
    DependencyCycle { stack: String, cycle: Vec<String> },

    #[error(
        "service {service} waits for {dependency} to be healthy, but {dependency} has no \
         healthcheck (or it is disabled); add one or use condition service_started"
    )]
    HealthyWithoutHealthcheck { service: String, dependency: String },

    #[error("service {service} uses network {network}, which is not declared under top-level `networks`")]
    UndeclaredNetwork { service: String, network: String },

    #[error("service {service} uses volume {volume}, which is not declared under top-level `volumes`")]
    UndeclaredVolume { service: String, volume: String },

    #[error("service {service}: label {label} uses the reserved prefix `muster.`")]
    ReservedLabel { service: String, label: String },

    #[error("{what}: {count} is more than the {max} muster accepts")]
    TooMany { what: String, count: usize, max: usize },
}
