//! "Registry operations are linearizable": a Wing–Gong search with Lowe's memoisation over the
//! history, one service id at a time. The registry is a map of independent ids, so the history
//! is linearizable exactly when each id's projection is (P-compositionality).
//!
//! Per id the model state is absent or present with metadata version `v`:
//! - Register: absent → present(v); on a present id it fails `ALREADY_EXISTS`;
//! - Update: present → present(v); on an absent id it fails `NOT_FOUND`;
//! - Deregister: present → absent; on an absent id it fails `NOT_FOUND`;
//! - Get and List read the state.
//!
//! How the history projects onto an id:
//! - an acknowledged call takes effect once between its invoke and its completion;
//! - a refusal that shows the call reached the state machine is a read: `NOT_FOUND` from Update
//!   or Deregister reads "absent", `ALREADY_EXISTS` from Register reads "present, any version";
//!   every other refusal (`UNAVAILABLE`, `INVALID_ARGUMENT`...) and every failed read did nothing;
//! - a write with an unknown outcome takes effect at most once, at any time after its invoke
//!   (its completion is +∞ and the search may leave it out);
//! - a List reads one page of at most [`PAGE`] services sorted by id: an id in the page was
//!   present with that version; an id not in a partial page was absent; an id not in a full page
//!   was absent only if it sorts before the page's last id, otherwise the List says nothing of it.
//!
//! The search for one id stops after a step budget; such an id's verdict is unknown, named in the
//! explanation and not counted as a violation. Pure: no I/O, no clock; imports only the history
//! types, the verdict and the workload's page size.

use std::collections::{BTreeMap, HashSet};

use crate::check::{secs, Verdict};
use crate::history::{Call, Op, Outcome, Value};
use crate::workload::PAGE;

/// Search steps allowed for one id before its verdict is "unknown". An id's projection is tens
/// of operations in a run, which needs a few hundred steps; this is room for heavy concurrency.
pub const STEPS_PER_ID_MAX: u64 = 2_000_000;
/// Ids over the budget named in the explanation; the rest are counted.
const OVER_BUDGET_SHOWN: usize = 10;
/// Possible states listed in one violation; the rest are counted.
const STATES_SHOWN: usize = 4;

/// One id's state: absent, or present with its metadata version.
type State = Option<u64>;

/// What an operation does to one id's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Register(u64),
    Update(u64),
    Deregister,
    /// Reads exactly this state.
    Read(State),
    /// Reads "present", whatever the version (a Register refused with `ALREADY_EXISTS`).
    ReadPresent,
}

impl Effect {
    /// The state after the operation, or None when it cannot happen in `state`.
    fn step(self, state: State) -> Option<State> {
        match (self, state) {
            (Effect::Register(v), None) | (Effect::Update(v), Some(_)) => Some(Some(v)),
            (Effect::Deregister, Some(_)) => Some(None),
            (Effect::Read(read), _) if read == state => Some(state),
            (Effect::ReadPresent, Some(_)) => Some(state),
            _ => None,
        }
    }

    fn is_write(self) -> bool {
        matches!(self, Effect::Register(_) | Effect::Update(_) | Effect::Deregister)
    }
}

/// One operation of the history as seen by one id.
#[derive(Debug, Clone, Copy)]
struct IdOp<'a> {
    op: &'a Op,
    effect: Effect,
    /// None: the outcome is unknown (it may take effect at any time after the invoke, or never).
    complete_ns: Option<u64>,
}

/// Checks that the history is linearizable, id by id, within [`STEPS_PER_ID_MAX`] per id.
pub fn linearizable(ops: &[Op]) -> Verdict {
    linearizable_within(ops, STEPS_PER_ID_MAX)
}

/// [`linearizable`] with a chosen step budget per id.
pub fn linearizable_within(ops: &[Op], steps_per_id_max: u64) -> Verdict {
    let p = project(ops);
    let mut violations = Vec::new();
    let mut over_budget = Vec::new();
    let mut projected = 0usize;
    for (id, id_ops) in &p.by_id {
        projected += id_ops.len();
        match search(id_ops, steps_per_id_max) {
            Found::Linearizable => {}
            Found::Stuck(stuck) => violations.push(explain(id, id_ops, &stuck)),
            Found::OverBudget => over_budget.push(*id),
        }
    }
    let mut checked = format!(
        "{} ids, {projected} per-id operations from {} ops ({} left out as refused or failed, {} reads \
         of absent before any write skipped)",
        p.by_id.len(),
        ops.len(),
        p.left_out,
        p.early_absent
    );
    if !over_budget.is_empty() {
        let mut names = over_budget.iter().take(OVER_BUDGET_SHOWN).copied().collect::<Vec<_>>().join(", ");
        if over_budget.len() > OVER_BUDGET_SHOWN {
            names.push_str(&format!(" and {} more", over_budget.len() - OVER_BUDGET_SHOWN));
        }
        checked.push_str(&format!(
            "; {} id(s) unknown (search budget exceeded: over {steps_per_id_max} steps), not counted as \
             violations: {names}",
            over_budget.len()
        ));
    }
    Verdict::from("linearizable", checked, violations)
}

/// The history as seen by each id.
struct Projection<'a> {
    /// Each id's operations in history order.
    by_id: BTreeMap<&'a str, Vec<IdOp<'a>>>,
    /// Ops that said nothing about any id (refused or failed).
    left_out: usize,
    /// Reads of "absent" that completed before any write of their id was invoked. They fit at
    /// the start of every linearization (after the reads that precede them), so the search skips
    /// them; without this every List would add a read to every id ever named.
    early_absent: usize,
}

fn project(ops: &[Op]) -> Projection<'_> {
    // Every id the history names, in a call or in a listing, so a List speaks for all of them,
    // and when the first write of each was invoked.
    let mut first_write_ns: BTreeMap<&str, Option<u64>> = BTreeMap::new();
    for op in ops {
        if let (Call::List, Outcome::Ok, Some(Value::Services(page))) = (&op.call, op.outcome, &op.value) {
            for (id, _) in page {
                first_write_ns.entry(id.as_str()).or_default();
            }
        } else if let Some(id) = op.call.id() {
            let first = first_write_ns.entry(id).or_default();
            if effect_of(op).is_some_and(|(e, _)| e.is_write()) {
                *first = Some(first.map_or(op.invoke_ns, |f| f.min(op.invoke_ns)));
            }
        }
    }
    let early = |id: &str, read: State, complete_ns: u64| {
        read.is_none() && first_write_ns.get(id).is_some_and(|f| f.is_none_or(|f| complete_ns < f))
    };
    let mut p = Projection { by_id: BTreeMap::new(), left_out: 0, early_absent: 0 };
    for op in ops {
        let complete_ns = op.complete_ns.max(op.invoke_ns);
        if let (Call::List, Outcome::Ok, Some(Value::Services(page))) = (&op.call, op.outcome, &op.value) {
            let listed: BTreeMap<&str, u64> = page.iter().map(|(id, v)| (id.as_str(), *v)).collect();
            let full = page.len() >= PAGE as usize;
            let last = listed.keys().next_back().copied();
            for id in first_write_ns.keys() {
                let read = match listed.get(id) {
                    Some(v) => Some(*v),
                    None if !full || last.is_some_and(|last| *id < last) => None,
                    // Past the end of a full page: the List says nothing of this id.
                    None => continue,
                };
                if early(id, read, complete_ns) {
                    p.early_absent += 1;
                    continue;
                }
                let io = IdOp { op, effect: Effect::Read(read), complete_ns: Some(complete_ns) };
                p.by_id.entry(id).or_default().push(io);
            }
            continue;
        }
        let (Some(id), Some((effect, completes))) = (op.call.id(), effect_of(op)) else {
            p.left_out += 1;
            continue;
        };
        if completes && effect == Effect::Read(None) && early(id, None, complete_ns) {
            p.early_absent += 1;
            continue;
        }
        p.by_id.entry(id).or_default().push(IdOp {
            op,
            effect,
            complete_ns: completes.then_some(complete_ns),
        });
    }
    p
}

/// What a single-id call did and whether it completed (false: unknown outcome); None when it
/// did nothing.
fn effect_of(op: &Op) -> Option<(Effect, bool)> {
    let write = match &op.call {
        Call::Register { version, .. } => Some(Effect::Register(*version)),
        Call::Update { version, .. } => Some(Effect::Update(*version)),
        Call::Deregister { .. } => Some(Effect::Deregister),
        Call::Get { .. } | Call::List => None,
    };
    let code = op.code.as_deref();
    match (&op.call, op.outcome) {
        (Call::Get { .. }, Outcome::Ok) => match op.value {
            Some(Value::Version(read)) => Some((Effect::Read(read), true)),
            _ => None,
        },
        (_, Outcome::Ok) => write.map(|w| (w, true)),
        (_, Outcome::Unknown) => write.map(|w| (w, false)),
        (Call::Register { .. }, Outcome::Fail) if code == Some("ALREADY_EXISTS") => {
            Some((Effect::ReadPresent, true))
        }
        (Call::Update { .. } | Call::Deregister { .. }, Outcome::Fail) if code == Some("NOT_FOUND") => {
            Some((Effect::Read(None), true))
        }
        _ => None,
    }
}

/// Where the search of a non-linearizable id got furthest: the operation whose completion it
/// could not pass, and every state it had there with the last write that made it.
#[derive(Debug)]
struct Stuck {
    op: usize,
    states: BTreeMap<State, Option<usize>>,
}

#[derive(Debug)]
enum Found {
    Linearizable,
    Stuck(Stuck),
    OverBudget,
}

/// A call or a completion in the search's time-ordered list.
#[derive(Debug, Clone, Copy)]
struct Entry {
    time_ns: u64,
    completes: bool,
    op: usize,
}

/// The Wing–Gong search over one id's operations: linearize a pending call that starts before
/// the earliest pending completion, backtrack at a completion whose operation is not yet
/// linearized, and never revisit a (linearized set, state) pair. Unknown-outcome writes have no
/// completion, so they never force a backtrack and may stay out of the linearization.
///
/// Reads go first: when a pending read fits the state it is linearized at once and no other
/// choice is tried from there. That loses nothing: every pending operation completes after the
/// read was invoked (its call is before every pending completion) and the read changes nothing,
/// so any ordering that works can be rewritten with the read first.
fn search(ops: &[IdOp], steps_max: u64) -> Found {
    let mut s = Search::new(ops);
    let mut at = s.list.first();
    // At a configuration just reached, whose reads have not been looked at.
    let mut fresh = true;
    for _ in 0..steps_max {
        if s.remaining == 0 {
            return Found::Linearizable;
        }
        if std::mem::take(&mut fresh) {
            if let Some(k) = s.fitting_read() {
                if s.linearize(k) {
                    (at, fresh) = (s.list.first(), true);
                    continue;
                }
                // Where the read leads was explored already and failed, so this fails too.
                match s.backtrack() {
                    Some(next) => at = Some(next),
                    None => return s.found(),
                }
                continue;
            }
        }
        // A pending operation's completion is always ahead, so the end of the list is never
        // reached; if it were, the id would stay unjudged.
        let Some(k) = at else {
            debug_assert!(false, "the search ran past every pending completion");
            return Found::OverBudget;
        };
        let e = s.entries[k];
        if !e.completes {
            // No read fits here (else it would have gone first): try the writes in call order.
            if ops[e.op].effect.is_write() && s.linearize(k) {
                (at, fresh) = (s.list.first(), true);
            } else {
                at = s.list.next(k);
            }
            continue;
        }
        // A completion of a pending operation: this ordering cannot go on.
        s.note_stuck(k);
        match s.backtrack() {
            Some(next) => at = Some(next),
            None => return s.found(),
        }
    }
    if s.remaining == 0 {
        Found::Linearizable
    } else {
        Found::OverBudget
    }
}

/// The state of the search over one id.
struct Search<'a, 'o> {
    ops: &'a [IdOp<'o>],
    /// Calls and completions by time; calls first at the same instant, so touching intervals
    /// count as concurrent.
    entries: Vec<Entry>,
    /// Each operation's completion entry (None: unknown outcome).
    completion: Vec<Option<usize>>,
    /// The entries of the operations not linearized yet.
    list: Links,
    /// Operations with a completion not linearized yet.
    remaining: usize,
    linearized: Vec<u64>,
    state: State,
    /// (call entry, state before it) of each linearized operation, in order.
    stack: Vec<(usize, State)>,
    seen: HashSet<(Vec<u64>, State)>,
    /// The furthest completion any ordering reached, and what it knew there.
    stuck: Option<(usize, Stuck)>,
}

impl<'a, 'o> Search<'a, 'o> {
    fn new(ops: &'a [IdOp<'o>]) -> Search<'a, 'o> {
        let mut entries: Vec<Entry> = Vec::with_capacity(2 * ops.len());
        for (i, o) in ops.iter().enumerate() {
            entries.push(Entry { time_ns: o.op.invoke_ns, completes: false, op: i });
            if let Some(c) = o.complete_ns {
                entries.push(Entry { time_ns: c, completes: true, op: i });
            }
        }
        entries.sort_by_key(|e| (e.time_ns, e.completes, e.op));
        let mut completion = vec![None; ops.len()];
        for (k, e) in entries.iter().enumerate() {
            if e.completes {
                completion[e.op] = Some(k);
            }
        }
        Search {
            ops,
            list: Links::new(entries.len()),
            entries,
            completion,
            remaining: ops.iter().filter(|o| o.complete_ns.is_some()).count(),
            linearized: vec![0u64; ops.len().div_ceil(64)],
            state: None,
            stack: Vec::new(),
            seen: HashSet::new(),
            stuck: None,
        }
    }

    /// The first pending read that may go next and fits the state.
    fn fitting_read(&self) -> Option<usize> {
        let mut at = self.list.first();
        while let Some(k) = at {
            let e = self.entries[k];
            if e.completes {
                return None;
            }
            let effect = self.ops[e.op].effect;
            if !effect.is_write() && effect.step(self.state).is_some() {
                return Some(k);
            }
            at = self.list.next(k);
        }
        None
    }

    /// Linearizes the call at entry `k` if it fits the state and leads to a configuration not
    /// seen before.
    fn linearize(&mut self, k: usize) -> bool {
        let op = self.entries[k].op;
        let Some(next) = self.ops[op].effect.step(self.state) else { return false };
        flip(&mut self.linearized, op);
        if !self.seen.insert((self.linearized.clone(), next)) {
            flip(&mut self.linearized, op);
            return false;
        }
        self.stack.push((k, self.state));
        self.state = next;
        self.list.remove(k);
        if let Some(c) = self.completion[op] {
            self.list.remove(c);
            self.remaining -= 1;
        }
        true
    }

    /// Undoes linearized operations through the last write (reads went first without a choice)
    /// and returns the entry after that write's call, where the search goes on; None when
    /// nothing is left to undo.
    fn backtrack(&mut self) -> Option<usize> {
        loop {
            let (k, before) = self.stack.pop()?;
            let op = self.entries[k].op;
            if let Some(c) = self.completion[op] {
                self.list.restore(c);
                self.remaining += 1;
            }
            self.list.restore(k);
            flip(&mut self.linearized, op);
            self.state = before;
            if self.ops[op].effect.is_write() {
                return self.list.next(k);
            }
        }
    }

    /// Records that the completion at entry `k` was reached in the current state, keeping only
    /// the furthest completion any ordering reached.
    fn note_stuck(&mut self, k: usize) {
        if self.stuck.as_ref().is_some_and(|(furthest, _)| *furthest > k) {
            return;
        }
        if self.stuck.as_ref().is_none_or(|(furthest, _)| *furthest < k) {
            self.stuck = Some((k, Stuck { op: self.entries[k].op, states: BTreeMap::new() }));
        }
        let writer = self
            .stack
            .iter()
            .rev()
            .map(|(c, _)| self.entries[*c].op)
            .find(|o| self.ops[*o].effect.is_write());
        if let Some((_, s)) = &mut self.stuck {
            s.states.entry(self.state).or_insert(writer);
        }
    }

    /// The verdict once every ordering failed.
    fn found(self) -> Found {
        self.stuck.map_or(Found::OverBudget, |(_, s)| Found::Stuck(s))
    }
}

fn flip(bits: &mut [u64], i: usize) {
    bits[i / 64] ^= 1 << (i % 64);
}

/// A doubly linked list over `0..n` (all present at first) with a sentinel at `n`; removals are
/// undone in reverse order.
struct Links {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Links {
    fn new(n: usize) -> Links {
        Links {
            next: (0..=n).map(|k| (k + 1) % (n + 1)).collect(),
            prev: (0..=n).map(|k| (k + n) % (n + 1)).collect(),
        }
    }

    fn sentinel(&self) -> usize {
        self.next.len() - 1
    }

    fn first(&self) -> Option<usize> {
        self.next(self.sentinel())
    }

    fn next(&self, k: usize) -> Option<usize> {
        Some(self.next[k]).filter(|n| *n != self.sentinel())
    }

    fn remove(&mut self, k: usize) {
        let (p, n) = (self.prev[k], self.next[k]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn restore(&mut self, k: usize) {
        let (p, n) = (self.prev[k], self.next[k]);
        self.next[p] = k;
        self.prev[n] = k;
    }
}

/// One sentence: the operation that could not be linearized, and what every ordering had then.
fn explain(id: &str, ops: &[IdOp], stuck: &Stuck) -> String {
    let mut states: Vec<String> = stuck
        .states
        .iter()
        .take(STATES_SHOWN)
        .map(|(state, writer)| match writer {
            Some(w) => format!("{} ({})", state_text(*state), describe(id, &ops[*w])),
            None => format!("{} (before any write)", state_text(*state)),
        })
        .collect();
    if stuck.states.len() > STATES_SHOWN {
        states.push(format!("{} other states", stuck.states.len() - STATES_SHOWN));
    }
    let blocked = &ops[stuck.op];
    let mut out = format!(
        "{id}: {} (client {} via {}), but every linearization had {}",
        describe(id, blocked),
        blocked.op.client,
        blocked.op.node,
        states.join(" or ")
    );
    if let Effect::Read(Some(v)) = blocked.effect {
        let written =
            ops.iter().any(|o| matches!(o.effect, Effect::Register(w) | Effect::Update(w) if w == v));
        if !written {
            out.push_str(&format!("; no register or update of {id} wrote v={v}"));
        }
    }
    out
}

fn state_text(state: State) -> String {
    match state {
        Some(v) => format!("v={v}"),
        None => "absent".to_string(),
    }
}

/// An operation as one id saw it, e.g. `Update c1-s3 v=3 acknowledged at 2.900s–2.950s`.
fn describe(id: &str, o: &IdOp) -> String {
    let op = o.op;
    let span = format!("{}–{}", secs(op.invoke_ns), secs(op.complete_ns.max(op.invoke_ns)));
    let code = op.code.as_deref().unwrap_or("no code");
    match (&op.call, o.effect, o.complete_ns) {
        (Call::List, Effect::Read(Some(v)), _) => format!("List at {span} listed {id} with v={v}"),
        (Call::List, _, _) => {
            let page = match &op.value {
                Some(Value::Services(p)) if p.len() >= PAGE as usize => {
                    let last = p.iter().map(|(i, _)| i.as_str()).max().unwrap_or_default();
                    format!("a full page of {} ending at {last}", p.len())
                }
                Some(Value::Services(p)) => format!("a partial page of {}", p.len()),
                _ => "no page".to_string(),
            };
            format!("List at {span} did not list {id} ({page}, so absent)")
        }
        (Call::Get { .. }, Effect::Read(read), _) => format!("Get {id} at {span} read {}", state_text(read)),
        (_, Effect::Read(_), _) => format!("{} at {span} failed {code}, so absent", call_text(id, &op.call)),
        (_, Effect::ReadPresent, _) => {
            format!("{} at {span} failed {code}, so present", call_text(id, &op.call))
        }
        (_, _, Some(_)) => format!("{} acknowledged at {span}", call_text(id, &op.call)),
        (_, _, None) => {
            format!("{} invoked at {}, outcome unknown ({code})", call_text(id, &op.call), secs(op.invoke_ns))
        }
    }
}

fn call_text(id: &str, call: &Call) -> String {
    match call {
        Call::Register { version, .. } => format!("Register {id} v={version}"),
        Call::Update { version, .. } => format!("Update {id} v={version}"),
        Call::Deregister { .. } => format!("Deregister {id}"),
        Call::Get { .. } => format!("Get {id}"),
        Call::List => "List".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const MS: u64 = 1_000_000;

    fn op(call: Call, from_ms: u64, to_ms: u64, outcome: Outcome) -> Op {
        Op {
            client: 0,
            node: "n1".into(),
            call,
            invoke_ns: from_ms * MS,
            complete_ns: to_ms * MS,
            outcome,
            code: None,
            error: None,
            value: None,
            revision: None,
        }
    }

    fn ok(call: Call, from_ms: u64, to_ms: u64) -> Op {
        op(call, from_ms, to_ms, Outcome::Ok)
    }

    /// A write whose client gave up 3 s after the invoke.
    fn unknown(call: Call, from_ms: u64) -> Op {
        Op { code: Some("DEADLINE_EXCEEDED".into()), ..op(call, from_ms, from_ms + 3_000, Outcome::Unknown) }
    }

    fn fail(call: Call, from_ms: u64, to_ms: u64, code: &str) -> Op {
        Op { code: Some(code.into()), ..op(call, from_ms, to_ms, Outcome::Fail) }
    }

    fn get(id: &str, from_ms: u64, to_ms: u64, read: Option<u64>) -> Op {
        Op { value: Some(Value::Version(read)), ..ok(Call::Get { id: id.into() }, from_ms, to_ms) }
    }

    fn list(from_ms: u64, to_ms: u64, page: &[(String, u64)]) -> Op {
        Op { value: Some(Value::Services(page.to_vec())), ..ok(Call::List, from_ms, to_ms) }
    }

    fn reg(id: &str, version: u64) -> Call {
        Call::Register { id: id.into(), version }
    }

    fn upd(id: &str, version: u64) -> Call {
        Call::Update { id: id.into(), version }
    }

    fn dereg(id: &str) -> Call {
        Call::Deregister { id: id.into() }
    }

    fn page(ids: &[String]) -> Vec<(String, u64)> {
        ids.iter().map(|id| (id.clone(), 1)).collect()
    }

    #[test]
    fn a_valid_concurrent_history_with_unknown_writes_passes() {
        // Proves overlapping reads may see either side of a write, an unknown write may land
        // late or never, and an ALREADY_EXISTS register reads "present".
        let h = vec![
            ok(reg("a", 1), 0, 10),
            get("a", 5, 8, None),
            get("a", 6, 12, Some(1)),
            ok(upd("a", 2), 20, 30),
            get("a", 24, 28, Some(2)),
            // Invoked after the read of v=2 began, yet reads v=1: the update lands at 27.
            get("a", 26, 29, Some(1)),
            unknown(upd("a", 3), 40),
            fail(reg("a", 9), 50, 52, "ALREADY_EXISTS"),
            get("a", 60, 61, Some(3)),
            unknown(upd("a", 4), 70),
            get("a", 80, 81, Some(3)),
            get("a", 90, 91, Some(3)),
            ok(dereg("a"), 100, 110),
            get("a", 120, 121, None),
            fail(reg("b", 1), 0, 1, "UNAVAILABLE"),
            get("b", 2, 3, None),
        ];
        let v = linearizable(&h);
        assert!(v.ok, "{v:?}");
        assert_eq!(v.checker, "linearizable");
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_update_fails_naming_the_id_and_the_read() {
        // Proves a read invoked after an update was acknowledged must see it, and the violation
        // names the id, the read and the write that made the only possible state.
        let h = vec![
            ok(reg("c1-s3", 1), 0, 10),
            ok(upd("c1-s3", 2), 2_900, 2_950),
            get("c1-s3", 3_120, 3_125, Some(1)),
        ];
        let v = linearizable(&h);
        assert!(!v.ok);
        assert_eq!(v.violations.len(), 1, "{v:?}");
        assert_eq!(
            v.violations[0],
            "c1-s3: Get c1-s3 at 3.120s–3.125s read v=1 (client 0 via n1), but every linearization had v=2 \
             (Update c1-s3 v=2 acknowledged at 2.900s–2.950s)"
        );
    }

    #[test]
    fn a_lost_acknowledged_register_fails() {
        // Proves an acknowledged register followed by a read of "absent", with no deregister,
        // is a violation.
        let h = vec![ok(reg("c0-s1", 1), 0, 1), ok(reg("c0-s2", 1), 0, 1), get("c0-s1", 5, 6, None)];
        let v = linearizable(&h);
        assert!(!v.ok);
        assert_eq!(v.violations.len(), 1, "{v:?}");
        assert!(v.violations[0].starts_with("c0-s1: Get c0-s1 at 0.005s–0.006s read absent"), "{v:?}");
        assert!(v.violations[0].contains("v=1 (Register c0-s1 v=1 acknowledged at 0.000s–0.001s)"), "{v:?}");
    }

    #[test]
    fn a_read_of_a_version_never_written_fails() {
        // Proves a read must return a written version; the explanation lists every state the
        // read could have seen (an unknown write makes two) and says no write wrote it.
        let h = vec![ok(reg("a", 1), 0, 1), unknown(upd("a", 2), 2), get("a", 3, 4, Some(7))];
        let v = linearizable(&h);
        assert!(!v.ok);
        assert_eq!(
            v.violations[0],
            "a: Get a at 0.003s–0.004s read v=7 (client 0 via n1), but every linearization had v=1 (Register a v=1 acknowledged \
             at 0.000s–0.001s) or v=2 (Update a v=2 invoked at 0.002s, outcome unknown (DEADLINE_EXCEEDED)); \
             no register or update of a wrote v=7"
        );
    }

    #[test]
    fn a_read_explained_only_by_a_concurrent_unknown_write_passes() {
        // Proves an unknown write may take effect before a read that ends after its invoke, and
        // that a refused write or one invoked after the read cannot explain the same read.
        let base = || vec![ok(reg("a", 1), 0, 1), get("a", 3, 4, Some(2)), get("a", 5, 6, Some(2))];
        let mut h = base();
        h.push(unknown(upd("a", 2), 2));
        assert!(linearizable(&h).ok, "{:?}", linearizable(&h));

        let mut refused = base();
        refused.push(fail(upd("a", 2), 2, 3, "UNAVAILABLE"));
        let v = linearizable(&refused);
        assert!(!v.ok && v.violations[0].contains("Get a at 0.003s–0.004s read v=2"), "{v:?}");

        let mut too_late = base();
        too_late.push(unknown(upd("a", 2), 7));
        assert!(!linearizable(&too_late).ok);
    }

    #[test]
    fn a_full_list_page_judges_only_ids_before_its_last_entry() {
        // Proves the projection of a full page: listed ids are reads of their version, missing
        // ids before the last entry are reads of "absent", ids after it are not judged.
        let ids: Vec<String> = (0..120).map(|i| format!("k{i:03}")).collect();
        let mut h: Vec<Op> = ids.iter().map(|id| ok(reg(id, 1), 0, 1)).collect();
        h.push(list(10, 11, &page(&ids[0..100])));
        h.push(ok(dereg("k050"), 20, 21));
        let after: Vec<String> = ids[0..101].iter().filter(|id| *id != "k050").cloned().collect();
        h.push(list(30, 31, &page(&after)));
        let v = linearizable(&h);
        assert!(v.ok, "{v:?}");

        // The same page read before the deregister was acknowledged misses k050, which it
        // should list: k050 sorts before the page's last id k100.
        h.push(list(15, 16, &page(&after)));
        let v = linearizable(&h);
        assert!(!v.ok);
        assert_eq!(v.violations.len(), 1, "{v:?}");
        assert!(
            v.violations[0].starts_with(
                "k050: List at 0.015s–0.016s did not list k050 (a full page of 100 ending at k100, so absent)"
            ),
            "{v:?}"
        );
    }

    #[test]
    fn a_partial_list_page_reads_every_missing_id_as_absent() {
        // Proves an id missing from a partial page was absent, and a listed version is checked.
        let ids: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut h: Vec<Op> = ids.iter().map(|id| ok(reg(id, 1), 0, 1)).collect();
        h.push(list(2, 3, &page(&ids)));
        h.push(ok(dereg("c"), 4, 5));
        h.push(list(6, 7, &page(&ids[0..2])));
        assert!(linearizable(&h).ok, "{:?}", linearizable(&h));

        let mut lost = h.clone();
        lost.push(list(8, 9, &page(&ids[0..1])));
        let v = linearizable(&lost);
        assert!(!v.ok);
        assert!(
            v.violations[0].starts_with("b: List at 0.008s–0.009s did not list b (a partial page of 1"),
            "{v:?}"
        );

        let mut wrong = h;
        wrong.push(list(8, 9, &[("a".to_string(), 5), ("b".to_string(), 1)]));
        let v = linearizable(&wrong);
        assert!(!v.ok);
        assert!(v.violations[0].starts_with("a: List at 0.008s–0.009s listed a with v=5"), "{v:?}");
    }

    #[test]
    fn refusals_that_reached_the_state_machine_are_reads() {
        // Proves a NOT_FOUND update or deregister reads "absent" and an ALREADY_EXISTS register
        // reads "present".
        let ok_h = vec![
            ok(reg("a", 1), 0, 1),
            ok(dereg("a"), 2, 3),
            fail(upd("a", 2), 4, 5, "NOT_FOUND"),
            fail(dereg("a"), 6, 7, "NOT_FOUND"),
        ];
        assert!(linearizable(&ok_h).ok, "{:?}", linearizable(&ok_h));

        let h = vec![ok(reg("a", 1), 0, 1), fail(upd("a", 2), 4, 5, "NOT_FOUND")];
        let v = linearizable(&h);
        assert!(!v.ok);
        assert!(
            v.violations[0].starts_with("a: Update a v=2 at 0.004s–0.005s failed NOT_FOUND, so absent"),
            "{v:?}"
        );

        let h = vec![ok(reg("a", 1), 0, 1), ok(dereg("a"), 2, 3), fail(reg("a", 2), 4, 5, "ALREADY_EXISTS")];
        let v = linearizable(&h);
        assert!(!v.ok);
        assert!(
            v.violations[0].contains(
                "failed ALREADY_EXISTS, so present (client 0 via n1), but every linearization had absent \
                 (Deregister a acknowledged at 0.002s–0.003s)"
            ),
            "{v:?}"
        );
    }

    #[test]
    fn an_id_over_the_search_budget_is_unknown_and_not_a_violation() {
        // Proves the budget path: a violating id whose search needs more steps than allowed is
        // reported as unknown and the verdict stays ok; with the full budget it is caught.
        let mut h = vec![ok(reg("a", 1), 0, 1)];
        h.extend((2..8).map(|v| ok(upd("a", v), 10, 20)));
        h.push(get("a", 30, 31, Some(1)));
        let v = linearizable_within(&h, 50);
        assert!(v.ok, "{v:?}");
        assert!(
            v.explanation.contains(
                "1 id(s) unknown (search budget exceeded: over 50 steps), not counted as violations: a"
            ),
            "{}",
            v.explanation
        );
        let v = linearizable(&h);
        assert!(!v.ok && !v.explanation.contains("unknown (search"), "{v:?}");
    }

    /// `ops_n` operations on `ids_n` ids from a sequential run of the model, each op's interval
    /// jittered around its instant; writes are sometimes refused or of unknown outcome.
    fn simulated(seed: u64, ops_n: usize, ids_n: usize) -> Vec<Op> {
        let mut rng = StdRng::seed_from_u64(seed);
        let ids: Vec<String> = (0..ids_n).map(|i| format!("c{}-s{i}", i % 5)).collect();
        let mut state: BTreeMap<String, u64> = BTreeMap::new();
        let mut out = Vec::with_capacity(ops_n);
        for k in 0..ops_n {
            let at_ns = (k as u64 + 100) * MS;
            let id = ids[rng.random_range(0..ids_n)].clone();
            let mut o = ok(Call::List, 0, 0);
            o.client = rng.random_range(0..10);
            o.invoke_ns = at_ns - rng.random_range(0..40 * MS);
            o.complete_ns = at_ns + rng.random_range(0..40 * MS);
            let version = k as u64 + 1;
            let present = state.get(&id).copied();
            o.call = match rng.random_range(0..100) {
                0..25 => reg(&id, version),
                25..50 => upd(&id, version),
                50..60 => dereg(&id),
                60..95 => Call::Get { id: id.clone() },
                _ => Call::List,
            };
            let legal = matches!(
                (&o.call, present),
                (Call::Register { .. }, None) | (Call::Update { .. } | Call::Deregister { .. }, Some(_))
            );
            let apply = |state: &mut BTreeMap<String, u64>| match &o.call {
                Call::Register { version, .. } | Call::Update { version, .. } => {
                    state.insert(id.clone(), *version);
                }
                _ => {
                    state.remove(&id);
                }
            };
            match (&o.call, rng.random_range(0..100)) {
                (Call::Get { .. }, _) => o.value = Some(Value::Version(present)),
                (Call::List, _) => o.value = Some(Value::Services(state.clone().into_iter().collect())),
                (_, 0..5) => {
                    (o.outcome, o.code) = (Outcome::Unknown, Some("DEADLINE_EXCEEDED".into()));
                    if legal && rng.random_bool(0.5) {
                        apply(&mut state);
                    }
                }
                (_, 5..10) => (o.outcome, o.code) = (Outcome::Fail, Some("UNAVAILABLE".into())),
                _ if legal => apply(&mut state),
                (Call::Register { .. }, _) => {
                    (o.outcome, o.code) = (Outcome::Fail, Some("ALREADY_EXISTS".into()))
                }
                _ => (o.outcome, o.code) = (Outcome::Fail, Some("NOT_FOUND".into())),
            }
            out.push(o);
        }
        out
    }

    #[test]
    fn a_long_simulated_history_passes_and_one_corrupted_read_fails() {
        // Proves the search handles a run-sized history (2000 ops, 50 ids, overlapping intervals,
        // unknown and refused writes, Lists) without reaching its budget, and still catches a
        // single wrong read in it.
        let seed = 7;
        let mut h = simulated(seed, 2_000, 50);
        let v = linearizable(&h);
        assert!(v.ok, "seed {seed}: {v:?}");
        assert!(!v.explanation.contains("unknown (search"), "seed {seed}: {}", v.explanation);

        let k = (1_000..h.len())
            .find(|k| matches!(h[*k].value, Some(Value::Version(Some(_)))))
            .expect("a read of a present id");
        h[k].value = Some(Value::Version(Some(999_999)));
        let v = linearizable(&h);
        assert!(!v.ok, "seed {seed}");
        assert_eq!(v.violations.len(), 1, "seed {seed}: {v:?}");
        assert!(v.violations[0].contains("no register or update"), "seed {seed}: {v:?}");
    }

    /// Whether some order of `ops` respects real time and the model, by trying them all.
    fn exhaustive(ops: &[IdOp], done: &mut Vec<bool>, state: State) -> bool {
        if ops.iter().zip(done.iter()).all(|(o, d)| *d || o.complete_ns.is_none()) {
            return true;
        }
        for i in 0..ops.len() {
            let blocked = ops
                .iter()
                .zip(done.iter())
                .any(|(x, d)| !*d && x.complete_ns.is_some_and(|c| c < ops[i].op.invoke_ns));
            let Some(next) = ops[i].effect.step(state).filter(|_| !done[i] && !blocked) else { continue };
            done[i] = true;
            let found = exhaustive(ops, done, next);
            done[i] = false;
            if found {
                return true;
            }
        }
        false
    }

    #[test]
    fn the_search_agrees_with_trying_every_order_on_small_random_histories() {
        // Proves the search's pruning (memo, reads first, early reads of absent skipped, unknown
        // writes left out) neither accepts nor rejects anything an exhaustive search would judge
        // otherwise.
        let seed = 11;
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut good, mut bad) = (0, 0);
        for case in 0..3_000 {
            let h: Vec<Op> = (0..rng.random_range(1..=7))
                .map(|_| {
                    let (from, v) = (rng.random_range(0..10), rng.random_range(1..=3));
                    let to = from + rng.random_range(0..5);
                    let write = match rng.random_range(0..3) {
                        0 => reg("a", v),
                        1 => upd("a", v),
                        _ => dereg("a"),
                    };
                    match rng.random_range(0..10) {
                        0..3 => get("a", from, to, Some(v).filter(|_| rng.random_bool(0.8))),
                        3..6 => ok(write, from, to),
                        6..8 => unknown(write, from),
                        8 => fail(upd("a", v), from, to, "NOT_FOUND"),
                        _ => fail(reg("a", v), from, to, "ALREADY_EXISTS"),
                    }
                })
                .collect();
            // The exhaustive search sees every operation, even the reads the checker skips.
            let all: Vec<IdOp> = h
                .iter()
                .filter_map(|op| {
                    effect_of(op).map(|(effect, c)| IdOp {
                        op,
                        effect,
                        complete_ns: c.then_some(op.complete_ns),
                    })
                })
                .collect();
            let expected = exhaustive(&all, &mut vec![false; all.len()], None);
            let v = linearizable(&h);
            assert_eq!(v.ok, expected, "seed {seed} case {case}: {v:?} for {h:?}");
            assert!(!v.explanation.contains("unknown (search"), "seed {seed} case {case}: {v:?}");
            if expected {
                good += 1;
            } else {
                bad += 1;
            }
        }
        assert!(good > 300 && bad > 300, "seed {seed}: {good} linearizable, {bad} not");
    }
}
