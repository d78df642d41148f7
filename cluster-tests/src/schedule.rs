//! Fault schedules: the named faults a run can use ([`Fault`]), each one applied and healed as
//! one step ([`step`]), and the random schedule of long runs ([`random`]), which draws every
//! choice (fault, victim, hold time, pause) from the seed. Uses `cluster` and `nemesis`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;

use crate::cluster::Cluster;
use crate::nemesis::Nemesis;

/// Re-election and catch-up after a fault is healed (a removed voter waits out the
/// autopilot's 10 s grace before the voters are settled again).
pub const RECOVER_TIMEOUT: Duration = Duration::from_secs(60);

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The leader cut off from every other node.
    IsolateLeader,
    /// A random minority cut off from the majority.
    Split,
    /// Two halves that see each other only through one node.
    Bridge,
    /// One node hears nobody but is heard.
    OneWay,
    /// 20 % packet loss between all members.
    Loss,
    /// kill -9 of a node (with its stack: the host dies), restarted later.
    Kill,
    /// The whole node container frozen (with its stack: the host freezes).
    Pause,
    /// The leader's muster process alone stopped with SIGSTOP (hung; its stack runs on until
    /// its watchdog's fence lapses).
    Freeze,
    /// Every member restarted gracefully, one after the other.
    RollingRestart,
    /// A spare node joins, then a node leaves for good (voters change under load).
    Membership,
}

impl Fault {
    pub const ALL: [Fault; 10] = [
        Fault::IsolateLeader,
        Fault::Split,
        Fault::Bridge,
        Fault::OneWay,
        Fault::Loss,
        Fault::Kill,
        Fault::Pause,
        Fault::Freeze,
        Fault::RollingRestart,
        Fault::Membership,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::IsolateLeader => "isolate",
            Fault::Split => "split",
            Fault::Bridge => "bridge",
            Fault::OneWay => "one-way",
            Fault::Loss => "loss",
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Freeze => "freeze",
            Fault::RollingRestart => "rolling-restart",
            Fault::Membership => "membership",
        }
    }

    /// Parses `NEMESIS=` (comma separated names, or `all`).
    pub fn parse_list(s: &str) -> Result<Vec<Fault>> {
        let s = s.trim();
        if s.is_empty() || s == "all" {
            return Ok(Fault::ALL.to_vec());
        }
        s.split(',')
            .map(|name| {
                let name = name.trim();
                Fault::ALL.into_iter().find(|f| f.name() == name).ok_or_else(|| {
                    let known: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                    anyhow!("unknown nemesis {name:?}; known: {} (or all)", known.join(", "))
                })
            })
            .collect()
    }
}

/// Runs a blocking nemesis action off the async workers.
pub async fn blocking<F>(f: F) -> Result<()>
where
    F: FnOnce() -> Result<()> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.context("nemesis thread panicked")?
}

/// Applies `fault`, holds it for `hold`, heals it and waits until the cluster is settled again.
pub async fn step(
    fault: Fault,
    cluster: &Arc<Cluster>,
    nemesis: &Arc<Nemesis>,
    rng: &mut StdRng,
    hold: Duration,
) -> Result<()> {
    let members = cluster.members();
    if members.is_empty() {
        bail!("no members left to hurt");
    }
    let leader = cluster.wait_settled(RECOVER_TIMEOUT).await.context("before the fault")?.leader;
    let any = *members.choose(rng).ok_or_else(|| anyhow!("no members"))?;
    let n = nemesis.clone();
    match fault {
        Fault::IsolateLeader => blocking(move || n.isolate(leader)).await?,
        Fault::Split => {
            let mut shuffled = members.clone();
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, rng.random_range(0..=i));
            }
            let minority = shuffled.split_off(shuffled.len().div_ceil(2));
            let groups = vec![shuffled, minority];
            blocking(move || n.split(&groups)).await?
        }
        Fault::Bridge => blocking(move || n.bridge(any)).await?,
        Fault::OneWay => blocking(move || n.deafen(any)).await?,
        Fault::Loss => blocking(move || n.lossy(20)).await?,
        Fault::Kill => blocking(move || n.kill(any)).await?,
        Fault::Pause => blocking(move || n.pause(any)).await?,
        Fault::Freeze => blocking(move || n.freeze(leader)).await?,
        Fault::RollingRestart => {
            for &i in &members {
                let n = nemesis.clone();
                blocking(move || n.restart(i)).await?;
                cluster.wait_settled(RECOVER_TIMEOUT).await.context("after restarting one node")?;
            }
            return Ok(());
        }
        Fault::Membership => return membership(cluster, nemesis, rng, hold).await,
    }
    tokio::time::sleep(hold).await;
    let n = nemesis.clone();
    match fault {
        Fault::Kill => blocking(move || n.restart_killed(any)).await?,
        Fault::Pause => blocking(move || n.unpause(any)).await?,
        Fault::Freeze => blocking(move || n.thaw(leader)).await?,
        _ => blocking(move || n.heal()).await?,
    }
    cluster.wait_settled(RECOVER_TIMEOUT).await.context("after the heal")?;
    Ok(())
}

/// A spare (a node never started, else one that left before) joins; once the cluster has
/// settled with it, a random member other than the spare leaves (gracefully). With every node
/// a member, the step fails.
async fn membership(
    cluster: &Arc<Cluster>,
    nemesis: &Arc<Nemesis>,
    rng: &mut StdRng,
    hold: Duration,
) -> Result<()> {
    let members = cluster.members();
    // A node never started yet first, else one that left earlier (it comes back with its data).
    let spare = (0..cluster.nodes.len())
        .filter(|i| !members.contains(i))
        .min_by_key(|i| cluster.removed(*i))
        .ok_or_else(|| anyhow!("membership: every node is a member (start the run with spares)"))?;
    let n = nemesis.clone();
    blocking(move || n.grow(spare)).await?;
    cluster.wait_settled(RECOVER_TIMEOUT).await.context("after a node joined")?;
    tokio::time::sleep(hold).await;
    let leaving = *members.choose(rng).ok_or_else(|| anyhow!("no members"))?;
    let n = nemesis.clone();
    blocking(move || n.shrink(leaving)).await?;
    cluster.wait_settled(RECOVER_TIMEOUT).await.context("after a node left")?;
    Ok(())
}

/// Faults drawn from `faults` until `until` has passed since `started`: each held 3–8 s, with
/// 2–5 s of calm between. Stops at the first step that fails.
pub async fn random(
    faults: &[Fault],
    cluster: &Arc<Cluster>,
    nemesis: &Arc<Nemesis>,
    rng: &mut StdRng,
    started: Instant,
    until: Duration,
) -> Result<usize> {
    let mut steps = 0;
    // Bounded: every step takes at least the calm pause.
    let steps_max = until.as_secs() as usize / 2 + 1;
    while started.elapsed() < until && steps < steps_max {
        let fault = *faults.choose(rng).ok_or_else(|| anyhow!("no faults to choose from"))?;
        let hold = Duration::from_millis(rng.random_range(3000..8000));
        step(fault, cluster, nemesis, rng, hold)
            .await
            .with_context(|| format!("step {steps}: {}", fault.name()))?;
        steps += 1;
        tokio::time::sleep(Duration::from_millis(rng.random_range(2000..5000))).await;
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nemesis_lists_parse_by_name_and_unknown_names_are_refused_with_the_known_ones() {
        // Proves NEMESIS= parsing: names, all, and a clear error for a typo.
        assert_eq!(Fault::parse_list("all").unwrap().len(), Fault::ALL.len());
        assert_eq!(Fault::parse_list("").unwrap().len(), Fault::ALL.len());
        assert_eq!(Fault::parse_list("kill, one-way").unwrap(), vec![Fault::Kill, Fault::OneWay]);
        let e = Fault::parse_list("kill,partiton").unwrap_err().to_string();
        assert!(e.contains("\"partiton\"") && e.contains("bridge"), "{e}");
    }
}
