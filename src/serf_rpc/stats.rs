//! The `stats` answer (what `serf info` prints): the `agent`, `runtime`, `serf`, `tags` and
//! `event_handlers` sections, with the keys the Go agent uses. The `serf` section comes from
//! the gossip driver ([`GossipStats`]): the three Lamport clocks, Lifeguard's health score, the
//! broadcast queues by kind, whether gossip is encrypted, and coordinate resets.

use std::collections::BTreeMap;

use super::proto::StatsResponse;
use crate::gossip::net::GossipStats;
use crate::membership::{MemberInfo, MemberStatus};

/// Builds the `stats` answer; `handlers` is `event[:name]` → script, as Serf lists them.
pub fn build(
    node_name: &str,
    members: &[MemberInfo],
    g: &GossipStats,
    handlers: &BTreeMap<String, String>,
) -> StatsResponse {
    let count = |s: MemberStatus| members.iter().filter(|m| m.status == s).count().to_string();
    let serf = BTreeMap::from([
        ("members".to_string(), members.len().to_string()),
        ("failed".to_string(), count(MemberStatus::Failed)),
        ("left".to_string(), count(MemberStatus::Left)),
        ("health_score".to_string(), g.health_score.to_string()),
        ("member_time".to_string(), g.member_time.to_string()),
        ("event_time".to_string(), g.event_time.to_string()),
        ("query_time".to_string(), g.query_time.to_string()),
        ("intent_queue".to_string(), g.intent_queue.to_string()),
        ("event_queue".to_string(), g.event_queue.to_string()),
        ("query_queue".to_string(), g.query_queue.to_string()),
        ("encrypted".to_string(), g.encrypted.to_string()),
        ("coordinate_resets".to_string(), g.coordinate_resets.to_string()),
    ]);
    let tags = members.iter().find(|m| m.name == node_name).map(|m| m.tags.clone()).unwrap_or_default();
    BTreeMap::from([
        ("agent".to_string(), BTreeMap::from([("name".to_string(), node_name.to_string())])),
        ("runtime".to_string(), runtime()),
        ("serf".to_string(), serf),
        ("tags".to_string(), tags),
        ("event_handlers".to_string(), handlers.clone()),
    ])
}

/// The `runtime` section, with Go's names for the OS and architecture so tools that parse
/// `serf info` see familiar values; `version` names muster instead of a Go release.
fn runtime() -> BTreeMap<String, String> {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64",
        other => other,
    };
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let (workers, tasks) = match tokio::runtime::Handle::try_current() {
        Ok(h) => {
            let m = h.metrics();
            (m.num_workers(), m.num_alive_tasks())
        }
        Err(_) => (cpus, 0),
    };
    BTreeMap::from([
        ("os".to_string(), os.to_string()),
        ("arch".to_string(), arch.to_string()),
        ("version".to_string(), format!("muster {}", env!("CARGO_PKG_VERSION"))),
        ("max_procs".to_string(), workers.to_string()),
        ("goroutines".to_string(), tasks.to_string()),
        ("cpu_count".to_string(), cpus.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Mode;

    fn info(name: &str, status: MemberStatus) -> MemberInfo {
        MemberInfo {
            name: name.into(),
            addr: "127.0.0.1".parse().unwrap(),
            port: 7946,
            tags: BTreeMap::from([("role".into(), name.into())]),
            status,
            protocol: [1, 5, 2, 2, 5, 4],
            incarnation: 1,
            last_seen_ms_ago: 0,
            mode: Mode::Unknown,
        }
    }

    #[test]
    fn stats_carry_the_sections_and_keys_serf_info_prints() {
        // Proves the shape `serf info` reads: agent name, member counts, Serf's numbers from
        // the gossip driver, local tags, the event handlers.
        let g = GossipStats {
            event_time: 42,
            member_time: 1,
            health_score: 2,
            encrypted: true,
            coordinate_resets: 2,
            event_queue: 3,
            ..Default::default()
        };
        let members =
            [info("m1", MemberStatus::Alive), info("a", MemberStatus::Failed), info("b", MemberStatus::Left)];
        let handlers = BTreeMap::from([("query:uptime".to_string(), "/bin/up.sh".to_string())]);
        let s = build("m1", &members, &g, &handlers);
        assert_eq!(s["agent"]["name"], "m1");
        assert_eq!(
            (s["serf"]["members"].as_str(), s["serf"]["failed"].as_str(), s["serf"]["left"].as_str()),
            ("3", "1", "1")
        );
        assert_eq!((s["serf"]["event_time"].as_str(), s["serf"]["member_time"].as_str()), ("42", "1"));
        assert_eq!((s["serf"]["health_score"].as_str(), s["serf"]["encrypted"].as_str()), ("2", "true"));
        assert_eq!((s["serf"]["event_queue"].as_str(), s["serf"]["query_queue"].as_str()), ("3", "0"));
        assert_eq!(s["tags"]["role"], "m1");
        assert_eq!(s["serf"]["coordinate_resets"], "2");
        for k in ["os", "arch", "version", "max_procs", "goroutines", "cpu_count"] {
            assert!(s["runtime"].contains_key(k), "runtime.{k}");
        }
        assert_eq!(s["event_handlers"]["query:uptime"], "/bin/up.sh");
    }
}
