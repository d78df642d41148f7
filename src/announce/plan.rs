//! The pure core of announcements: which DNS-SD records this node should publish
//! ([`desired`], from the registry's services, this node's subnets and resolved host names,
//! plus the node's own records from [`node_announcements`]) and the steps from what is
//! published to that ([`plan`]).
//!
//! Who announces: a node publishes a service whose `host` is an address on one of its subnets
//! (or a name that resolved to one). Several nodes on one link then publish identical records,
//! which mDNS allows (RFC 6762 §8.1: identical data is no conflict). Status: `active` and
//! `unhealthy` services are published (`status` in TXT says which), `inactive` and `expired`
//! ones are not, so they are withdrawn. Pure: no tokio, no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::names::{self, instance_label, instance_label_with, service_host_name, short_id};
use super::subnet::{host_ip, on_my_subnets, unannounceable, Subnet};
use super::txt::{service_txt, TxtBuilder};
use crate::registry::{Service, ServiceId, Status};

/// The default cap on registry services one node announces.
pub const ANNOUNCED_SERVICES_MAX: usize = 1024;

/// One DNS-SD service instance as mdns-sd publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// `_mqtt._tcp.local.`
    pub service_type: String,
    /// The instance label (`broker`), unique within its type.
    pub instance: String,
    /// The SRV target, carrying `addrs` in its A/AAAA records.
    pub host_name: String,
    /// Sorted, without duplicates.
    pub addrs: Vec<IpAddr>,
    pub port: u16,
    pub txt: Vec<(String, String)>,
    /// The registry service announced, or `None` for the node's own records.
    pub service: Option<ServiceId>,
}

impl Announcement {
    /// `broker._mqtt._tcp.local.`
    pub fn fullname(&self) -> String {
        format!("{}.{}", self.instance, self.service_type)
    }

    /// DNS names ignore case; mdns-sd keys its registrations by the lowercase full name.
    pub fn key(&self) -> String {
        self.fullname().to_lowercase()
    }
}

/// Something worth a log line about one service (or the node when `service` is `None`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Note {
    pub service: Option<ServiceId>,
    pub text: String,
}

/// What this node should publish, keyed by [`Announcement::key`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub announcements: BTreeMap<String, Announcement>,
    pub notes: Vec<Note>,
    /// Services that qualified but were left out because of the cap.
    pub over_cap: usize,
}

/// The node's own records, for [`node_announcements`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node: String,
    pub cluster: String,
    pub version: String,
    pub api_port: u16,
    /// The API's addresses on this node's subnets (none: nothing to announce).
    pub addrs: Vec<IpAddr>,
    pub tls: bool,
    /// `server` or `proxy`, when known.
    pub mode: Option<String>,
}

/// The DNS-SD types the node itself is published under: `_muster._tcp`, and `_beacon._tcp`
/// for Beacon's clients (its ESP32 example browses that type to find the API).
pub const NODE_TYPES: [&str; 2] = ["_muster._tcp.local.", "_beacon._tcp.local."];

/// The node's own records: one per [`NODE_TYPES`] entry, the instance named after the node,
/// TXT `node`, `cluster`, `version`, `api`, `tls` and `mode` (when known).
pub fn node_announcements(info: &NodeInfo, notes: &mut Vec<String>) -> Vec<Announcement> {
    let addrs = sorted(info.addrs.iter().copied().filter(|ip| unannounceable(*ip).is_none()));
    if addrs.is_empty() {
        return Vec::new();
    }
    let mut b = TxtBuilder::default();
    b.push("node", &info.node, notes);
    b.push("cluster", &info.cluster, notes);
    b.push("version", &info.version, notes);
    b.push("api", "grpc,rest,ws", notes);
    b.push("tls", if info.tls { "on" } else { "off" }, notes);
    if let Some(mode) = &info.mode {
        b.push("mode", mode, notes);
    }
    let txt = b.finish();
    let label = names::host_label(&info.node, names::LABEL_BYTES_MAX - "muster-".len());
    let host_name = format!("muster-{}.local.", if label.is_empty() { "node" } else { &label });
    NODE_TYPES
        .iter()
        .map(|ty| Announcement {
            service_type: ty.to_string(),
            instance: instance_label(&info.node),
            host_name: host_name.clone(),
            addrs: addrs.clone(),
            port: info.api_port,
            txt: txt.clone(),
            service: None,
        })
        .collect()
}

/// What to publish: the node's own records (`node`) first, then each announceable service,
/// oldest first, at most `cap` of them. `resolved` maps a host name to its addresses (names
/// missing from it are not resolved yet and wait).
///
/// Instance names are unique within a type: the oldest service of a name gets the plain name,
/// later ones `name (short id)`. A service keeps the name it is published under in `announced`
/// while that name is still one of its own, so removing one service of a shared name withdraws
/// that name instead of handing it to the next service.
pub fn desired(
    services: &[Service],
    subnets: &[Subnet],
    resolved: &BTreeMap<String, Vec<IpAddr>>,
    node: Vec<Announcement>,
    announced: &BTreeMap<String, Announcement>,
    cap: usize,
) -> Desired {
    let mut out = Desired::default();
    let mut taken: BTreeSet<String> = BTreeSet::new();
    for a in node {
        taken.insert(a.key());
        out.announcements.insert(a.key(), a);
    }
    let mut order: Vec<&Service> = services.iter().collect();
    order.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
    let mut chosen: Vec<(&Service, Announcement)> = Vec::new();
    for s in order {
        let mut notes = Vec::new();
        let a = announcement(s, subnets, resolved, &mut notes);
        out.notes.extend(notes.into_iter().map(|text| Note { service: Some(s.id.clone()), text }));
        let Some(a) = a else { continue };
        if chosen.len() >= cap {
            out.over_cap += 1;
            continue;
        }
        chosen.push((s, a));
    }
    let current: BTreeMap<&ServiceId, &str> =
        announced.values().filter_map(|a| Some((a.service.as_ref()?, a.instance.as_str()))).collect();
    let mut rest = Vec::new();
    for (s, mut a) in chosen {
        let own = own_names(s);
        match current.get(&s.id) {
            Some(name) if own.iter().any(|n| n == name) => {
                a.instance = name.to_string();
                if taken.insert(a.key()) {
                    out.announcements.insert(a.key(), a);
                    continue;
                }
            }
            _ => {}
        }
        rest.push((s, a, own));
    }
    for (s, mut a, own) in rest {
        match own.into_iter().find(|n| !taken.contains(&format!("{n}.{}", a.service_type).to_lowercase())) {
            Some(name) => {
                a.instance = name;
                taken.insert(a.key());
                out.announcements.insert(a.key(), a);
            }
            None => {
                let text = format!(
                    "instance name {} is taken even with the service id; not announced",
                    a.fullname()
                );
                out.notes.push(Note { service: Some(s.id.clone()), text });
            }
        }
    }
    out
}

/// The instance names a service may have, in order of preference: its name, its name with
/// the short id, its name with the whole id.
fn own_names(s: &Service) -> [String; 3] {
    [
        instance_label(&s.name),
        instance_label_with(&s.name, &short_id(s.id.as_str())),
        instance_label_with(&s.name, s.id.as_str()),
    ]
}

/// The announcement of one service, or `None` when this node does not publish it (with a note
/// when the reason is worth telling: an unusable type, a loopback host).
fn announcement(
    s: &Service,
    subnets: &[Subnet],
    resolved: &BTreeMap<String, Vec<IpAddr>>,
    notes: &mut Vec<String>,
) -> Option<Announcement> {
    if matches!(s.status, Status::Inactive | Status::Expired) {
        return None;
    }
    let candidates: Vec<IpAddr> = match host_ip(&s.host) {
        Some(ip) => vec![ip],
        None => resolved.get(&s.host)?.clone(),
    };
    let mut addrs = Vec::new();
    for ip in candidates {
        match unannounceable(ip) {
            Some(why) => notes.push(format!("host {} ({ip}) is {why}; not announced", s.host)),
            None if on_my_subnets(ip, subnets) => addrs.push(ip),
            None => {}
        }
    }
    if addrs.is_empty() {
        return None;
    }
    let ty = match names::service_type(&s.service_type, s.mdns_service_type.as_deref(), notes) {
        Ok(ty) => ty,
        Err(why) => {
            notes.push(why);
            return None;
        }
    };
    Some(Announcement {
        service_type: ty.domain(),
        instance: instance_label(&s.name),
        host_name: service_host_name(&s.host, s.id.as_str()),
        addrs: sorted(addrs.into_iter()),
        port: s.port,
        txt: service_txt(s, notes),
        service: Some(s.id.clone()),
    })
}

fn sorted(addrs: impl Iterator<Item = IpAddr>) -> Vec<IpAddr> {
    let set: BTreeSet<IpAddr> = addrs.collect();
    set.into_iter().collect()
}

/// One step towards the desired records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Publish (or publish again, changed) this record.
    Announce(Announcement),
    /// Send the goodbye for this full name and stop answering for it.
    Withdraw { fullname: String, service: Option<ServiceId> },
}

/// The steps from `announced` to `desired` (both keyed by [`Announcement::key`]): withdrawals
/// first, so a record that moved to a new name never shows twice, then every new or changed
/// record. Unchanged records need no step.
pub fn plan(
    announced: &BTreeMap<String, Announcement>,
    desired: &BTreeMap<String, Announcement>,
) -> Vec<Effect> {
    let mut out: Vec<Effect> = announced
        .iter()
        .filter(|(k, _)| !desired.contains_key(*k))
        .map(|(_, a)| Effect::Withdraw { fullname: a.fullname(), service: a.service.clone() })
        .collect();
    // A name that now belongs to another service is withdrawn first, so browsers see the old
    // service go before the new one comes.
    out.extend(
        desired
            .iter()
            .filter_map(|(k, a)| announced.get(k).filter(|old| old.service != a.service))
            .map(|old| Effect::Withdraw { fullname: old.fullname(), service: old.service.clone() }),
    );
    out.extend(
        desired
            .iter()
            .filter(|(k, a)| announced.get(*k) != Some(*a))
            .map(|(_, a)| Effect::Announce(a.clone())),
    );
    out
}
