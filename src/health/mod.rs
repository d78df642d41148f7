//! Active health checks. The leader (only while it holds its quorum lease) checks every
//! `active` or `unhealthy` service that has a `health_check_url` (`http://`, `https://` or
//! `tcp://HOST:PORT`) every `health_check_interval` seconds, and proposes the results in one
//! `HealthChecked` log entry per batch interval. The registry applies them on every node: the
//! anti-flap counting (N failures in a row before `unhealthy`, M passes before `active`) and the
//! last result (`last_health_check`: time, latency, error) are replicated state, so every node
//! shows the same status and a new leader goes on counting where the old one stopped.
//!
//! `schedule` is the pure plan, `probe` runs one check. May import `registry`, `replicated`
//! (the registrar) and `tls`; nothing imports this module but `node`.

pub mod probe;
pub mod schedule;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::registry::{CheckResult, Command, Outcome, ServiceId};
use crate::replicated::registrar::Registrar;

pub use probe::Prober;
pub use schedule::Schedule;

/// How the leader runs checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// One `HealthChecked` entry carries every result of this long.
    pub batch_every: Duration,
    /// Checks running at once; more wait for their turn.
    pub in_flight_max: usize,
    /// Results in one entry; a full batch is proposed at once.
    pub batch_max: usize,
    /// The plan follows the registry at most this often.
    pub sync_every: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            batch_every: Duration::from_secs(1),
            in_flight_max: 64,
            batch_max: 512,
            sync_every: Duration::from_millis(250),
        }
    }
}

/// The TLS client for https checks: the system's trusted roots, plus the cluster CA when the
/// node has one (so services with certificates from `muster tls` can be checked).
pub fn client_tls(
    cluster_ca: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, crate::tls::live::LoadError> {
    let (config, problems) = crate::tls::live::public_client_config(cluster_ca)?;
    for problem in problems {
        tracing::warn!(problem = %problem, "health: a trusted root for https checks was not loaded");
    }
    Ok(config)
}

/// The leader's check loop; idle on followers. Runs until `shutdown`.
pub async fn run(registrar: Arc<Registrar>, prober: Prober, cfg: HealthConfig, shutdown: CancellationToken) {
    let mut leadership = registrar.leadership();
    let mut revisions = registrar.subscribe();
    let mut schedule = Schedule::new();
    let mut tasks: JoinSet<(ServiceId, CheckResult)> = JoinSet::new();
    let mut pending: Vec<CheckResult> = Vec::new();
    let mut leading = false;
    let mut dirty = true;
    let mut last_sync = tokio::time::Instant::now();
    let mut last_batch = tokio::time::Instant::now();
    loop {
        // The plan lives as long as the leadership; new checks start only under the lease (a
        // leader cut off from its quorum may already have a successor checking).
        let now_leading = registrar.leads();
        if now_leading != leading {
            leading = now_leading;
            schedule = Schedule::new();
            tasks.abort_all();
            pending.clear();
            dirty = true;
            if leading {
                tracing::info!("health: leader; checking services with a health_check_url");
            }
        }
        if leading {
            let now_ms = registrar.now_ms();
            if dirty && last_sync.elapsed() >= cfg.sync_every {
                registrar.read_local(|r| schedule.sync(r.services(), now_ms));
                dirty = false;
                last_sync = tokio::time::Instant::now();
            }
            let room =
                if registrar.leads_with_lease() { cfg.in_flight_max.saturating_sub(tasks.len()) } else { 0 };
            for due in schedule.due(now_ms, room) {
                let prober = prober.clone();
                tasks.spawn(async move {
                    let started = tokio::time::Instant::now();
                    let outcome = prober.check(&due.target, Duration::from_millis(due.timeout_ms)).await;
                    let latency_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
                    let error = outcome.err().map(|e| shorten(&e));
                    crate::metrics::REGISTRY.health_checks.inc();
                    if error.is_some() {
                        crate::metrics::REGISTRY.health_checks_failed.inc();
                    }
                    let result = CheckResult {
                        id: due.id.clone(),
                        at_ms: now_ms,
                        ok: error.is_none(),
                        latency_ms,
                        error,
                    };
                    (due.id, result)
                });
            }
            if !pending.is_empty()
                && (last_batch.elapsed() >= cfg.batch_every || pending.len() >= cfg.batch_max)
            {
                let results = std::mem::take(&mut pending);
                propose(&registrar, results).await;
                last_batch = tokio::time::Instant::now();
            }
        }
        let wake = next_wake(&registrar, &schedule, leading, &pending, last_batch, dirty, &cfg);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = leadership.changed() => if r.is_err() { break },
            r = revisions.changed() => {
                if r.is_err() { break }
                dirty = true;
            }
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok((id, result)) = joined {
                    schedule.done(&id, registrar.now_ms());
                    if pending.is_empty() {
                        last_batch = tokio::time::Instant::now();
                    }
                    pending.push(result);
                }
            }
            _ = tokio::time::sleep(wake) => {}
        }
    }
    tasks.abort_all();
}

/// How long the loop may sleep: until the next check, the next batch, or the next sync.
fn next_wake(
    registrar: &Registrar,
    schedule: &Schedule,
    leading: bool,
    pending: &[CheckResult],
    last_batch: tokio::time::Instant,
    dirty: bool,
    cfg: &HealthConfig,
) -> Duration {
    // Nothing here changes with time alone while no check is due: leadership and registry
    // changes wake the loop themselves, so an idle loop (every follower's) sleeps long.
    let idle = Duration::from_secs(60);
    if !leading {
        return idle;
    }
    if !registrar.leads_with_lease() {
        // Checks wait for the lease; look again soon instead of spinning on a due check.
        return Duration::from_millis(100);
    }
    let mut wake = idle;
    if let Some(next_ms) = schedule.next_due_ms() {
        wake = wake.min(Duration::from_millis(next_ms.saturating_sub(registrar.now_ms())));
    }
    if !pending.is_empty() {
        wake = wake.min(cfg.batch_every.saturating_sub(last_batch.elapsed()));
    }
    if dirty {
        wake = wake.min(cfg.sync_every);
    }
    wake
}

/// Proposes one batch; logs each status it changed. A batch that does not commit is dropped:
/// the next checks produce fresh results.
async fn propose(registrar: &Registrar, results: Vec<CheckResult>) {
    let count = results.len();
    let errors: Vec<(ServiceId, Option<String>)> =
        results.iter().map(|r| (r.id.clone(), r.error.clone())).collect();
    match registrar.propose_local(&Command::HealthChecked { results }).await {
        Ok(applied) => {
            if let Outcome::HealthChecked { changed, .. } = &applied.outcome {
                for id in changed {
                    crate::metrics::REGISTRY.health_changes.inc();
                    let status = registrar.read_local(|r| r.get(id).map(|s| s.status));
                    let error = errors.iter().rev().find(|(e, _)| e == id).and_then(|(_, e)| e.clone());
                    tracing::info!(service.id = %id, status = status.map(|s| s.as_str()).unwrap_or("deregistered"), error = error.as_deref().unwrap_or(""),
                        revision = applied.revision.0, "health: status changed");
                }
            }
            tracing::debug!(results = count, revision = applied.revision.0, "health: results committed");
        }
        Err(e) => {
            tracing::warn!(results = count, error = %e, "health: results not committed; the next checks retry")
        }
    }
}

/// A check's error as the log keeps it.
fn shorten(error: &str) -> String {
    let max = crate::registry::validate::CHECK_ERROR_CHARS_MAX;
    if error.chars().count() <= max {
        return error.to_string();
    }
    let mut short: String = error.chars().take(max - 1).collect();
    short.push('…');
    short
}
