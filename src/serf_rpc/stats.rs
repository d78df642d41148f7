//! The `stats` answer (what `serf info` prints): the `agent`, `runtime`, `serf`, `tags` and
//! `event_handlers` sections, with the keys the Go agent uses where muster knows the value.
//!
//! The gossip handle does not expose Serf's Lamport clocks, so [`Clocks`] follows them from
//! the event stream: the highest member/event/query time seen since the RPC server started,
//! plus one (as Serf's clocks stand after witnessing a time). They are lower bounds.
//! Keys whose value muster cannot know from here (`health_score`, the broadcast queue depths,
//! `encrypted`) are left out rather than invented.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::proto::StatsResponse;
use crate::gossip::serf::SerfEvent;
use crate::membership::{MemberInfo, MemberStatus};

/// Serf's three Lamport clocks as seen from the event stream.
#[derive(Debug, Default)]
pub struct Clocks {
    member: AtomicU64,
    event: AtomicU64,
    query: AtomicU64,
}

impl Clocks {
    pub fn observe(&self, e: &SerfEvent) {
        let (clock, t) = match e {
            SerfEvent::MemberJoin(m)
            | SerfEvent::MemberLeave(m)
            | SerfEvent::MemberFailed(m)
            | SerfEvent::MemberUpdate(m)
            | SerfEvent::MemberReap(m) => (&self.member, m.status_ltime),
            SerfEvent::User { ltime, .. } => (&self.event, *ltime),
            SerfEvent::Query(q) => (&self.query, q.key.ltime),
        };
        clock.fetch_max(t.saturating_add(1), Ordering::Relaxed);
    }

    /// Member, event and query time; at least 1, where Serf's clocks start.
    pub fn times(&self) -> (u64, u64, u64) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed).max(1);
        (get(&self.member), get(&self.event), get(&self.query))
    }
}

/// Feeds `clocks` from the gossip events until shutdown.
pub async fn follow(
    clocks: std::sync::Arc<Clocks>,
    mut events: broadcast::Receiver<SerfEvent>,
    stop: CancellationToken,
) {
    loop {
        let e = tokio::select! {
            _ = stop.cancelled() => return,
            e = events.recv() => e,
        };
        match e {
            Ok(e) => clocks.observe(&e),
            // Missing some events only makes the clocks lag; keep following.
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Builds the `stats` answer.
pub fn build(
    node_name: &str,
    members: &[MemberInfo],
    clocks: &Clocks,
    coordinate_resets: u64,
) -> StatsResponse {
    let count = |s: MemberStatus| members.iter().filter(|m| m.status == s).count().to_string();
    let (member_time, event_time, query_time) = clocks.times();
    let serf = BTreeMap::from([
        ("members".to_string(), members.len().to_string()),
        ("failed".to_string(), count(MemberStatus::Failed)),
        ("left".to_string(), count(MemberStatus::Left)),
        ("member_time".to_string(), member_time.to_string()),
        ("event_time".to_string(), event_time.to_string()),
        ("query_time".to_string(), query_time.to_string()),
        ("coordinate_resets".to_string(), coordinate_resets.to_string()),
    ]);
    let tags = members.iter().find(|m| m.name == node_name).map(|m| m.tags.clone()).unwrap_or_default();
    BTreeMap::from([
        ("agent".to_string(), BTreeMap::from([("name".to_string(), node_name.to_string())])),
        ("runtime".to_string(), runtime()),
        ("serf".to_string(), serf),
        ("tags".to_string(), tags),
        ("event_handlers".to_string(), BTreeMap::new()),
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
        // Proves the shape `serf info` reads: agent name, member counts, clocks, local tags.
        let clocks = Clocks::default();
        clocks.observe(&SerfEvent::User { ltime: 41, name: "x".into(), payload: vec![], coalesce: false });
        let members =
            [info("m1", MemberStatus::Alive), info("a", MemberStatus::Failed), info("b", MemberStatus::Left)];
        let s = build("m1", &members, &clocks, 2);
        assert_eq!(s["agent"]["name"], "m1");
        assert_eq!(
            (s["serf"]["members"].as_str(), s["serf"]["failed"].as_str(), s["serf"]["left"].as_str()),
            ("3", "1", "1")
        );
        assert_eq!((s["serf"]["event_time"].as_str(), s["serf"]["member_time"].as_str()), ("42", "1"));
        assert_eq!(s["tags"]["role"], "m1");
        assert_eq!(s["serf"]["coordinate_resets"], "2");
        for k in ["os", "arch", "version", "max_procs", "goroutines", "cpu_count"] {
            assert!(s["runtime"].contains_key(k), "runtime.{k}");
        }
        assert!(s["event_handlers"].is_empty());
    }
}
