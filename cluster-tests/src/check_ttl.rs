//! "Leases end neither early nor late", over a [`TtlRecord`] from [`crate::heartbeat`] and the
//! run's fault intervals. Times from the leader (an event's `expires_at_ms`, `updated_at_ms`)
//! are unix ms and compared with the client's run clock converted through the record's
//! `start_unix_ms`: every node is a container on the test's host, so there is one wall clock,
//! give or take [`TtlParams::clock_tolerance_ms`]. Per service:
//! - **not early**: an observed expiry with lease end E is not before the leader's own decision
//!   time, and every acknowledged Register/Heartbeat that completed before E renewed the lease
//!   to at least its invoke time + ttl (else an acknowledged heartbeat was lost);
//! - **not late**: with L the last time a renewal may have taken effect (an acknowledged call's
//!   completion; an unknown one's completion + [`TtlParams::maybe_effect_ms`]), the leader
//!   decides the expiry by L + ttl + checkpoint + check interval + slack. A fault interval that
//!   overlaps that window may bring an election up to one failover window after the fault ends,
//!   and the new leader extends every live lease by one more window: the bound then becomes
//!   the fault's end + 2 windows + ttl + check interval + slack (repeated while further faults
//!   overlap). Such services are judged with the extended bound, not skipped;
//! - **not forgotten**: no heartbeat is refused NOT_FOUND after a register of the service was
//!   acknowledged (nothing removes TTL services: expiry keeps the record);
//! - **not missing**: a service whose bound (+ slack for the commit) passed before the final
//!   read that the observer caught up with is expired at the end of what the observer saw; an
//!   acknowledged renewal after its last expiry must have revived it.
//!
//! Lateness is judged on the leader's decision time (the expiry event's `updated_at_ms`), not
//! on the receive time, which also holds the observer's own reconnects. Pure; no I/O, no clock.

use std::collections::BTreeMap;

use crate::check::Verdict;
use crate::heartbeat::{TtlCall, TtlEvent, TtlOp, TtlRecord};
use crate::history::Outcome;
use crate::nemesis::{is_partition, Event, Phase};
use crate::watch::{Kind, Record};

/// A nemesis action's effect may begin before its event (recorded when the action finished).
pub const FAULT_LEAD_NS: u64 = 1_000_000_000;
/// A graceful restart is recorded once, after both halves; assumed to have taken at most this.
pub const RESTART_NS: u64 = 15_000_000_000;

/// muster's lease timing and the test's tolerances, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlParams {
    /// How far the client's and the leader's clocks may disagree (one host: scheduling only).
    pub clock_tolerance_ms: u64,
    /// Heartbeats reach the log once per checkpoint (muster: 1 s), stamped with its time.
    pub checkpoint_ms: u64,
    /// The leader looks for lapsed leases this often (muster's `check_every`: 1 s).
    pub check_ms: u64,
    /// Scheduling and commit delays on top of the above.
    pub slack_ms: u64,
    /// What a new leader adds to every live lease (1 s + 2 × election max).
    pub failover_window_ms: u64,
    /// How long after the client gave up a call with an unknown outcome may still take effect
    /// (a follower's forward to the leader may wait for a leader up to the registrar's 5 s).
    pub maybe_effect_ms: u64,
}

impl TtlParams {
    /// muster's `lan` profile: election max 900 ms, so a 2.8 s failover window.
    pub fn lan() -> TtlParams {
        TtlParams {
            clock_tolerance_ms: 100,
            checkpoint_ms: 1_000,
            check_ms: 1_000,
            slack_ms: 1_000,
            failover_window_ms: 2_800,
            maybe_effect_ms: 5_000,
        }
    }
}

/// The run-clock intervals (ns) in which some fault was in force, merged, from the nemesis
/// timeline: a partition from its first `isolate`/`split` to the next partition heal, a kill
/// or pause of a node until that node's heal, a graceful restart [`RESTART_NS`] before its
/// event; each starts `lead_ns` early. A fault never healed lasts until `end_ns`, and so does
/// an unknown fault name.
pub fn fault_intervals(timeline: &[Event], lead_ns: u64, end_ns: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut open: BTreeMap<(String, String), u64> = BTreeMap::new();
    for e in timeline {
        let keys: Vec<(String, String)> = match e.fault.as_str() {
            f if is_partition(f) => vec![("partition".into(), String::new())],
            f => e.nodes.iter().map(|n| (f.to_string(), n.clone())).collect(),
        };
        match (e.phase, e.fault.as_str()) {
            (Phase::Heal, "restart" | "join" | "leave") => {
                out.push((e.t_ns.saturating_sub(RESTART_NS), e.t_ns))
            }
            (Phase::Start, _) => {
                for k in keys {
                    open.entry(k).or_insert(e.t_ns);
                }
            }
            (Phase::Heal, _) => {
                for k in keys {
                    if let Some(s) = open.remove(&k) {
                        out.push((s, e.t_ns));
                    }
                }
            }
        }
    }
    out.extend(open.into_values().map(|s| (s, end_ns.max(s))));
    let mut spans: Vec<(u64, u64)> = out.into_iter().map(|(s, e)| (s.saturating_sub(lead_ns), e)).collect();
    spans.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in spans {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

/// Run-clock milliseconds.
fn run_ms(ns: u64) -> i64 {
    i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX)
}

fn at(ms: i64) -> String {
    format!("{:.3}s", ms as f64 / 1e3)
}

fn call_name(call: TtlCall) -> &'static str {
    match call {
        TtlCall::Register => "register",
        TtlCall::Heartbeat => "heartbeat",
    }
}

/// Whether a call may have renewed the lease. Besides acknowledged and unknown calls, a
/// heartbeat refused with a server-sent UNAVAILABLE: a follower reports a forwarded heartbeat
/// whose answer from the leader was lost as UNAVAILABLE (muster's `forward.rs`: renewing twice
/// is harmless), though the leader may have taken it.
fn may_have_renewed(op: &TtlOp) -> bool {
    match op.outcome {
        Outcome::Ok | Outcome::Unknown => true,
        Outcome::Fail => op.call == TtlCall::Heartbeat && op.code.as_deref() == Some("UNAVAILABLE"),
    }
}

/// What every per-service check needs.
struct Ctx<'a> {
    rec: &'a TtlRecord,
    p: &'a TtlParams,
    faults: &'a [(u64, u64)],
    ttl_ms: i64,
    tol: i64,
    /// Run ms before which the observer saw every commit, if it caught up.
    coverage: Option<i64>,
}

impl Ctx<'_> {
    /// A leader's unix-ms timestamp on the run clock (ms).
    fn leader(&self, unix_ms: u64) -> i64 {
        let (t, s) = (i64::try_from(unix_ms).unwrap_or(i64::MAX), self.rec.start_unix_ms);
        t.saturating_sub(i64::try_from(s).unwrap_or(i64::MAX))
    }

    /// When the leader must have decided the expiry of a lease last renewed at `l`, and how
    /// many fault intervals extended that.
    fn bound(&self, l: i64) -> (i64, usize) {
        let p = self.p;
        let window = p.failover_window_ms as i64;
        let tail = self.ttl_ms + (p.check_ms + p.slack_ms) as i64;
        let base = l + self.ttl_ms + (p.checkpoint_ms + p.check_ms + p.slack_ms) as i64;
        let (mut bound, mut hit) = (base, 0);
        for _ in 0..=self.faults.len() {
            let over: Vec<i64> = self
                .faults
                .iter()
                .map(|&(s, e)| (run_ms(s), run_ms(e)))
                .filter(|&(s, e)| s <= bound && e.saturating_add(window) >= l)
                .map(|(_, e)| e.saturating_add(2 * window + tail))
                .collect();
            let next = over.iter().copied().fold(base, i64::max);
            hit = over.len();
            if next == bound {
                break;
            }
            bound = next;
        }
        (bound, hit)
    }
}

/// Per-service counts for the explanation.
#[derive(Default)]
struct Tally {
    services: usize,
    judged: usize,
    faulted: usize,
    unjudged: usize,
}

/// Checks one TTL run; see the module comment. `faults`: run-clock ns intervals, as from
/// [`fault_intervals`].
pub fn ttl_bounds(rec: &TtlRecord, faults: &[(u64, u64)], p: &TtlParams) -> Verdict {
    let mut violations = Vec::new();
    let coverage = match rec.final_read {
        Some(f) if rec.observed_through >= f.revision => Some(run_ms(f.read_ns)),
        Some(f) => {
            violations.push(format!(
                "the observer saw only through r{} of the final read's r{} (sent at {}), so missing expiries \
                 were not judged",
                rec.observed_through,
                f.revision,
                at(run_ms(f.read_ns))
            ));
            None
        }
        None => {
            violations.push("no final read succeeded, so missing expiries were not judged".to_string());
            None
        }
    };
    for r in &rec.streams {
        if let Record::Compacted { compacted, .. } = r {
            violations.push(format!("the observer lost the events through r{compacted} to compaction"));
        }
    }
    let ctx = Ctx {
        rec,
        p,
        faults,
        ttl_ms: i64::from(rec.ttl_seconds) * 1_000,
        tol: p.clock_tolerance_ms as i64,
        coverage,
    };
    let mut by_id: BTreeMap<&str, (Vec<&TtlOp>, Vec<&TtlEvent>)> = BTreeMap::new();
    for op in &rec.ops {
        by_id.entry(&op.id).or_default().0.push(op);
    }
    for ev in &rec.events {
        match by_id.get_mut(ev.id.as_str()) {
            Some((_, events)) => events.push(ev),
            None => violations.push(format!(
                "the observer saw {:?} of {} at r{}, which no TTL client registered",
                ev.kind, ev.id, ev.revision
            )),
        }
        if ev.ttl_seconds != rec.ttl_seconds {
            violations.push(format!(
                "{} has ttl_seconds {} at r{}, registered with {}",
                ev.id, ev.ttl_seconds, ev.revision, rec.ttl_seconds
            ));
        }
    }
    let mut tally = Tally::default();
    for (id, (ops, events)) in &mut by_id {
        events.sort_by_key(|e| (e.revision, e.at_ns));
        not_forgotten(id, ops, &mut violations);
        not_early(&ctx, id, ops, events, &mut violations);
        not_late(&ctx, id, ops, events, &mut tally, &mut violations);
    }
    let count = |o: Outcome| rec.ops.iter().filter(|op| op.outcome == o).count();
    let expiries = rec.events.iter().filter(|e| e.kind == Kind::Expired).count();
    let resumes = rec.streams.iter().filter(|r| matches!(r, Record::Open { .. })).count().saturating_sub(1);
    let checked = format!(
        "{} services ({} stopped on purpose), {} calls ({} acknowledged, {} unknown), \
         {expiries} expiries observed, {resumes} observer resume(s); lateness judged for {} services \
         ({} with bounds extended past fault intervals), {} not judged (bound after the observer's \
         coverage{})",
        tally.services,
        rec.stopped.len(),
        rec.ops.len(),
        count(Outcome::Ok),
        count(Outcome::Unknown),
        tally.judged,
        tally.faulted,
        tally.unjudged,
        coverage.map(|c| format!(" at {}", at(c))).unwrap_or_default()
    );
    Verdict::from("ttl-bounds", checked, violations)
}

/// No heartbeat of `id` is answered NOT_FOUND after its register was acknowledged.
fn not_forgotten(id: &str, ops: &[&TtlOp], out: &mut Vec<String>) {
    let registered = ops.iter().filter(|o| o.call == TtlCall::Register && o.outcome == Outcome::Ok);
    let Some(r) = registered.min_by_key(|o| o.complete_ns) else { return };
    let refused = ops.iter().find(|o| o.invoke_ns > r.complete_ns && o.code.as_deref() == Some("NOT_FOUND"));
    if let Some(h) = refused {
        out.push(format!(
            "{id}'s {} via {} ({}..{}) was answered NOT_FOUND, but its register was acknowledged via {} \
             at {}",
            call_name(h.call),
            h.node,
            at(run_ms(h.invoke_ns)),
            at(run_ms(h.complete_ns)),
            r.node,
            at(run_ms(r.complete_ns))
        ));
    }
}

/// Every observed expiry of `id` respects the leader's decision time and every acknowledged
/// renewal completed before its lease end.
fn not_early(ctx: &Ctx, id: &str, ops: &[&TtlOp], events: &[&TtlEvent], out: &mut Vec<String>) {
    for ev in events.iter().filter(|e| e.kind == Kind::Expired) {
        let (e, x) = (ctx.leader(ev.expires_at_ms), ctx.leader(ev.updated_at_ms));
        if x + ctx.tol < e {
            out.push(format!(
                "{id} was expired at {} (r{}) before its lease end {}",
                at(x),
                ev.revision,
                at(e)
            ));
        }
        let lost = ops
            .iter()
            .filter(|o| o.outcome == Outcome::Ok && run_ms(o.complete_ns) < e - ctx.tol)
            .filter(|o| run_ms(o.invoke_ns) + ctx.ttl_ms - ctx.tol > e)
            .max_by_key(|o| o.invoke_ns);
        if let Some(h) = lost {
            let answered =
                h.expires_at_ms.map(|a| format!("; the node answered lease end {}", at(ctx.leader(a))));
            out.push(format!(
                "{id} expired at r{} with lease end {}, but its {} acknowledged via {} (invoked {}, \
                 completed {}, before that lease end) renewed it to at least {}{}: an acknowledged \
                 heartbeat was lost",
                ev.revision,
                at(e),
                call_name(h.call),
                h.node,
                at(run_ms(h.invoke_ns)),
                at(run_ms(h.complete_ns)),
                at(run_ms(h.invoke_ns) + ctx.ttl_ms),
                answered.unwrap_or_default()
            ));
        }
    }
}

/// The last renewal of `id` that may have taken effect: when at the latest, and in words.
fn last_renewal(ctx: &Ctx, ops: &[&TtlOp]) -> Option<(i64, String)> {
    let effect = |o: &TtlOp| match o.outcome {
        Outcome::Ok => run_ms(o.complete_ns),
        _ => run_ms(o.complete_ns) + ctx.p.maybe_effect_ms as i64,
    };
    let o = ops.iter().copied().filter(|o| may_have_renewed(o)).max_by_key(|o| effect(o))?;
    let how = match o.outcome {
        Outcome::Ok => "acknowledged".to_string(),
        _ => format!(
            "with outcome unknown ({}), which may take effect until {}",
            o.code.as_deref().unwrap_or("?"),
            at(effect(o))
        ),
    };
    let what = format!(
        "{} {how} via {} ({}..{})",
        call_name(o.call),
        o.node,
        at(run_ms(o.invoke_ns)),
        at(run_ms(o.complete_ns))
    );
    Some((effect(o), what))
}

/// `id` is expired in time after its last renewal, or not judged if the observer's coverage
/// ends before the bound.
fn not_late(
    ctx: &Ctx,
    id: &str,
    ops: &[&TtlOp],
    events: &[&TtlEvent],
    tally: &mut Tally,
    out: &mut Vec<String>,
) {
    let Some((l, what)) = last_renewal(ctx, ops) else { return };
    tally.services += 1;
    let (bound, faults) = ctx.bound(l);
    let extended =
        if faults > 0 { format!(" (extended for {faults} fault interval(s))") } else { String::new() };
    let due = format!("{}{extended}", at(bound));
    let last_ack = ops.iter().filter(|o| o.outcome == Outcome::Ok).max_by_key(|o| o.complete_ns);
    let slack = ctx.p.slack_ms as i64;
    let covered = |t: i64| ctx.coverage.is_some_and(|c| c >= t);
    let judged = match events.last().filter(|e| e.kind == Kind::Expired) {
        Some(ev) => {
            let x = ctx.leader(ev.updated_at_ms);
            match last_ack.filter(|a| x + ctx.tol < run_ms(a.invoke_ns)) {
                // Expired before an acknowledged renewal, and no revival was seen after it.
                Some(a) => {
                    let judged = covered(run_ms(a.complete_ns) + slack);
                    if judged {
                        let (inv, done) = (at(run_ms(a.invoke_ns)), at(run_ms(a.complete_ns)));
                        out.push(format!(
                            "{id} stayed expired (r{}, decided at {}) although its {} acknowledged via {} at \
                             {inv}..{done} came later and should have revived it",
                            ev.revision,
                            at(x),
                            call_name(a.call),
                            a.node
                        ));
                    }
                    judged
                }
                None => {
                    if x > bound + ctx.tol {
                        let (rev, got) = (ev.revision, at(run_ms(ev.at_ns)));
                        out.push(format!(
                            "{id} expired late: decided at {} (r{rev}, received {got}), but its last \
                             renewal was a {what}, so it was due by {due}",
                            at(x)
                        ));
                    }
                    true
                }
            }
        }
        None => {
            let judged = covered(bound + slack);
            if judged {
                let seen = at(ctx.coverage.unwrap_or_default());
                out.push(format!(
                    "{id} was not expired by {due}: its last renewal was a {what}, and the observer \
                     saw every commit through {seen}"
                ));
            }
            judged
        }
    };
    if judged {
        tally.judged += 1;
        tally.faulted += usize::from(faults > 0);
    } else {
        tally.unjudged += 1;
    }
}

#[cfg(test)]
mod tests;
