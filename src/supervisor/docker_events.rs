//! The Docker event stream of the containers muster owns on one node: start, stop, die,
//! destroy and health events, read back through their owner labels. The reconcile loop wakes on
//! them; tests use them as the witness of ordering. Must not import `node`, `config`,
//! `consensus` or `api`.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;

use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptions;
use futures_util::{Stream, StreamExt as _};

use super::docker::DockerEngine;
use super::docker_error::DockerError;
use super::naming::{owner_labels, LABEL_NODE};
use super::plan::Health;
use super::spec::StackKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerEventKind {
    Start,
    Stop,
    Die,
    Destroy,
    /// `health_status: <status>`: the healthcheck's verdict changed (this wakes the loop for
    /// dependents that wait for `service_healthy`).
    Health(Health),
}

/// A lifecycle event of a container labelled for this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub kind: ContainerEventKind,
    pub id: String,
    /// From the container's owner labels; `None` when they are unreadable.
    pub service: Option<String>,
    pub stack: Option<StackKind>,
    pub epoch: Option<u64>,
    /// Docker's own timestamp of the event.
    pub time_unix_ns: u64,
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<ContainerEvent, DockerError>> + Send>>;

impl DockerEngine {
    /// Start, stop, die, destroy and health events of containers labelled `muster.node=<node>`,
    /// from now on. The stream ends (or yields an error) when the engine goes away.
    pub fn events(&self, node: &str) -> EventStream {
        self.events_since(node, None)
    }

    /// As [`DockerEngine::events`], but first replays the events since `since_unix_ms` (so a
    /// watcher opened just before acting misses nothing while its request is on its way).
    pub fn events_since(&self, node: &str, since_unix_ms: Option<u64>) -> EventStream {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("label".to_string(), vec![format!("{LABEL_NODE}={node}")]),
            // Docker matches `health_status` against `health_status: <status>` by prefix.
            (
                "event".to_string(),
                ["start", "stop", "die", "destroy", "health_status"].map(String::from).to_vec(),
            ),
        ]);
        let since = since_unix_ms.map(|ms| format!("{}.{:03}000000", ms / 1_000, ms % 1_000));
        let options = EventsOptions { filters: Some(filters), since, ..EventsOptions::default() };
        let stream = self.docker.events(Some(options)).filter_map(|item| async move {
            match item {
                Ok(message) => container_event(message).map(Ok),
                Err(source) => Some(Err(DockerError::Call {
                    call: "events",
                    action: "watch events".to_string(),
                    target: "the event stream".to_string(),
                    source,
                })),
            }
        });
        Box::pin(stream)
    }
}

fn container_event(message: EventMessage) -> Option<ContainerEvent> {
    let kind = match message.action.as_deref()? {
        "start" => ContainerEventKind::Start,
        "stop" => ContainerEventKind::Stop,
        "die" => ContainerEventKind::Die,
        "destroy" => ContainerEventKind::Destroy,
        action if action.starts_with("health_status") => {
            ContainerEventKind::Health(match action.rsplit(':').next().map(str::trim) {
                Some("healthy") => Health::Healthy,
                Some("unhealthy") => Health::Unhealthy,
                Some("starting") => Health::Starting,
                _ => Health::NoCheck,
            })
        }
        _ => return None,
    };
    let actor = message.actor?;
    let labels: BTreeMap<String, String> = actor.attributes.unwrap_or_default().into_iter().collect();
    let owner = owner_labels(&labels).ok();
    let time_unix_ns = message
        .time_nano
        .or(message.time.map(|s| s.saturating_mul(1_000_000_000)))
        .and_then(|t| u64::try_from(t).ok())
        .unwrap_or(0);
    Some(ContainerEvent {
        kind,
        id: actor.id?,
        service: owner.as_ref().map(|o| o.service.clone()),
        stack: owner.as_ref().map(|o| o.stack),
        epoch: owner.map(|o| o.epoch),
        time_unix_ns,
    })
}
