//! How muster names and labels what it owns in Docker. Containers are named
//! `muster-<node>-<stack>-<service>` for people; muster itself always finds them by the
//! `muster.*` labels (Debian's compose v1 names containers differently, and names can collide),
//! and [`owner_labels`] reads those labels back. Must not import anything outside `supervisor`.

use std::collections::BTreeMap;

use super::spec::{NetworkSpec, StackKind, VolumeSpec};

pub const LABEL_NODE: &str = "muster.node";
pub const LABEL_STACK: &str = "muster.stack";
pub const LABEL_EPOCH: &str = "muster.epoch";
pub const LABEL_SERVICE: &str = "muster.service";
pub const LABEL_SPEC_HASH: &str = "muster.spec-hash";
/// Users may not set labels with this prefix.
pub const LABEL_PREFIX: &str = "muster.";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("label {label} is missing")]
    Missing { label: &'static str },
    #[error("label {label} has an unreadable value {value:?}")]
    Invalid { label: &'static str, value: String },
}

/// Docker names must match `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; anything else becomes `-`.
fn docker_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '-' })
        .collect()
}

/// `muster-<node>-<stack>-<service>`, with characters Docker refuses replaced by `-`.
pub fn container_name(node: &str, stack: StackKind, service: &str) -> String {
    format!("muster-{}-{}-{}", docker_safe(node), stack, docker_safe(service))
}

/// A network's Docker name: `muster-<node>-<stack>-<network>`, or its own name when external.
/// The node keeps two nodes on one engine (tests, a host running two nodes) apart: Docker
/// allows two networks of one name, and then refuses to look either up by it.
pub fn network_name(node: &str, stack: StackKind, network: &NetworkSpec) -> String {
    if network.external {
        network.name.clone()
    } else {
        format!("muster-{}-{}-{}", docker_safe(node), stack, docker_safe(&network.name))
    }
}

/// A volume's Docker name: `muster-<stack>-<volume>` (kept across epochs and restarts, so data
/// survives a failover back to this host), or its own name when external.
pub fn volume_name(stack: StackKind, volume: &VolumeSpec) -> String {
    if volume.external {
        volume.name.clone()
    } else {
        format!("muster-{}-{}", stack, docker_safe(&volume.name))
    }
}

/// Who a container belongs to, as its labels say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerLabels {
    pub node: String,
    pub stack: StackKind,
    pub epoch: u64,
    pub service: String,
    pub spec_hash: String,
}

impl OwnerLabels {
    /// The `muster.*` labels, to merge over the service's own labels at create time.
    pub fn to_labels(&self) -> BTreeMap<String, String> {
        [
            (LABEL_NODE, self.node.clone()),
            (LABEL_STACK, self.stack.to_string()),
            (LABEL_EPOCH, self.epoch.to_string()),
            (LABEL_SERVICE, self.service.clone()),
            (LABEL_SPEC_HASH, self.spec_hash.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// All labels of a container muster creates: the service's own, then muster's on top.
pub fn container_labels(user: &BTreeMap<String, String>, owner: &OwnerLabels) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = user
        .iter()
        .filter(|(k, _)| !k.starts_with(LABEL_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.extend(owner.to_labels());
    labels
}

/// Reads the owner labels back from a container's labels.
pub fn owner_labels(labels: &BTreeMap<String, String>) -> Result<OwnerLabels, LabelError> {
    let get = |label: &'static str| labels.get(label).ok_or(LabelError::Missing { label });
    let stack_text = get(LABEL_STACK)?;
    let stack = StackKind::from_profile(stack_text)
        .ok_or_else(|| LabelError::Invalid { label: LABEL_STACK, value: stack_text.clone() })?;
    let epoch_text = get(LABEL_EPOCH)?;
    let epoch = epoch_text
        .parse()
        .map_err(|_| LabelError::Invalid { label: LABEL_EPOCH, value: epoch_text.clone() })?;
    Ok(OwnerLabels {
        node: get(LABEL_NODE)?.clone(),
        stack,
        epoch,
        service: get(LABEL_SERVICE)?.clone(),
        spec_hash: get(LABEL_SPEC_HASH)?.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> OwnerLabels {
        OwnerLabels {
            node: "host-a".into(),
            stack: StackKind::Server,
            epoch: 8,
            service: "rabbitmq".into(),
            spec_hash: "0123456789abcdef".into(),
        }
    }

    #[test]
    fn names_follow_the_documented_pattern() {
        // Proves the container, network and volume name formats, including unsafe characters.
        assert_eq!(
            container_name("host-a", StackKind::Server, "video-api"),
            "muster-host-a-server-video-api"
        );
        assert_eq!(container_name("my host/1", StackKind::Proxy, "cam"), "muster-my-host-1-proxy-cam");
        let net = NetworkSpec { name: "backend".into(), driver: None, external: false, internal: false };
        assert_eq!(network_name("n1", StackKind::Server, &net), "muster-n1-server-backend");
        let ext = VolumeSpec { name: "shared-data".into(), driver: None, external: true };
        assert_eq!(volume_name(StackKind::Proxy, &ext), "shared-data");
    }

    #[test]
    fn labels_round_trip_and_override_user_labels() {
        // Proves muster's labels are written over the user's and read back unchanged.
        let user =
            BTreeMap::from([("team".to_string(), "video".to_string()), ("muster.epoch".into(), "1".into())]);
        let labels = container_labels(&user, &owner());
        assert_eq!(labels.get("team").map(String::as_str), Some("video"));
        assert_eq!(labels.get(LABEL_EPOCH).map(String::as_str), Some("8"));
        assert_eq!(owner_labels(&labels), Ok(owner()));
    }

    #[test]
    fn unreadable_labels_are_errors() {
        // Proves a container with missing or garbled labels is not mistaken for one of ours.
        let mut labels = owner().to_labels();
        labels.insert(LABEL_EPOCH.into(), "eight".into());
        assert_eq!(
            owner_labels(&labels),
            Err(LabelError::Invalid { label: LABEL_EPOCH, value: "eight".into() })
        );
        labels.remove(LABEL_SERVICE);
        labels.insert(LABEL_EPOCH.into(), "8".into());
        assert_eq!(owner_labels(&labels), Err(LabelError::Missing { label: LABEL_SERVICE }));
    }
}
