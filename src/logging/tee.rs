//! The log tee behind `serf monitor`: a `tracing_subscriber` layer that renders events as Serf
//! lines ([`serf_line`](super::serf_line)), keeps the last [`RING_LINES`] of them (the Go agent
//! keeps 512 and replays them to a new monitor, `log_writer.go`) and fans each line out to the
//! registered monitors over bounded channels.
//!
//! Logging never waits for a monitor: a line offered to a full channel is dropped and counted
//! on that monitor's [`Subscription`], whose reader reports the count.
//!
//! What is recorded: the tee has its own per-layer filter, separate from stderr's. It records
//! what the node's `LOG_LEVEL` shows (so the ring holds what the log holds), and while a
//! monitor asks for more (a DEBUG monitor on an INFO node), down to that monitor's level; then
//! the callsite interest cache is rebuilt so the extra callsites cost nothing once the last such
//! monitor has gone. (Rendering every DEBUG event into the ring at all times would replay
//! recent DEBUG lines as the Go agent does, but costs each debug event a formatted line and a
//! lock whether or not anyone watches; see `benches/log_tee.rs`.) openraft's events follow the
//! same one-step-quieter rule as on stderr ([`super::shows`]).
//!
//! Imports `serf_line` and tracing; never the node or the RPC server.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::serf_line::{render, LineFields, SerfLevel};
use super::{shows, unix_ms_now, Origin};

/// Lines kept for replay to a new monitor (Serf's `NewLogWriter(512)`).
pub const RING_LINES: usize = 512;
/// Lines queued per monitor before new ones are dropped: a whole replay plus 512 (Serf's
/// `logCh` holds 512 in all, so a full replay there leaves no room for the next line).
pub const MONITOR_QUEUE_MAX: usize = RING_LINES + 512;
/// Monitors at once, over all RPC connections (each connection has at most one).
pub const MONITORS_MAX: usize = 256;

/// Why a monitor could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TeeError {
    #[error("too many log monitors (at most {max})")]
    TooManyMonitors { max: usize },
}

/// One rendered line and what decides who sees it.
#[derive(Debug, Clone)]
struct Line {
    level: Level,
    origin: Origin,
    text: Arc<str>,
}

/// The last `cap` lines, oldest first. Pure.
#[derive(Debug)]
struct Ring {
    lines: VecDeque<Line>,
    cap: usize,
}

impl Ring {
    fn new(cap: usize) -> Ring {
        Ring { lines: VecDeque::with_capacity(cap), cap }
    }

    fn push(&mut self, line: Line) {
        if self.lines.len() == self.cap {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
        debug_assert!(self.lines.len() <= self.cap);
    }
}

/// A registered monitor, as the tee sees it.
struct Slot {
    id: u64,
    level: LevelFilter,
    tx: mpsc::Sender<Arc<str>>,
    dropped: Arc<AtomicU64>,
}

impl Slot {
    /// Queues `line` if this monitor wants it; counts it as dropped when the queue is full.
    fn offer(&self, line: &Line) {
        if !shows(self.level, line.level, line.origin) {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(line.text.clone()) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        // Closed: the subscription is being dropped and removes this slot itself.
    }
}

struct State {
    ring: Ring,
    monitors: Vec<Slot>,
    next_id: u64,
}

struct Inner {
    /// The node's own level: always recorded.
    floor: LevelFilter,
    /// What the tee records now: `floor` or the most verbose monitor's level, if more.
    level: AtomicU8,
    /// The level the callsite interest cache was last rebuilt for.
    built_for: AtomicU8,
    /// One rebuild at a time, so the last one reads the last level.
    rebuilding: Mutex<()>,
    state: Mutex<State>,
}

/// The process's log tee; cheap to clone. [`LogTee::layer`] goes into the subscriber,
/// [`LogTee::subscribe`] registers a monitor.
#[derive(Clone)]
pub struct LogTee {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LogTee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogTee").field("level", &self.inner.level()).finish_non_exhaustive()
    }
}

impl LogTee {
    /// A tee that always records what a node logging at `floor` shows. Until its
    /// [`layer`](LogTee::layer) is part of a subscriber it records nothing, and monitors only
    /// ever see what [`LogTee::publish`] hands it.
    pub fn new(floor: LevelFilter) -> LogTee {
        let state = State { ring: Ring::new(RING_LINES), monitors: Vec::new(), next_id: 0 };
        let code = level_code(floor);
        let inner = Inner {
            floor,
            level: AtomicU8::new(code),
            built_for: AtomicU8::new(code),
            rebuilding: Mutex::new(()),
            state: Mutex::new(state),
        };
        LogTee { inner: Arc::new(inner) }
    }

    /// The layer to add to the subscriber, with its own filter.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        TeeLayer(self.inner.clone()).with_filter(TeeFilter(self.inner.clone()))
    }

    /// Registers a monitor that wants lines at `level` and quieter: the ring's lines it wants
    /// are queued first, then every new one, with no gap between the two.
    pub fn subscribe(&self, level: SerfLevel) -> Result<Subscription, TeeError> {
        let (tx, rx) = mpsc::channel(MONITOR_QUEUE_MAX);
        let dropped = Arc::new(AtomicU64::new(0));
        let id = {
            let mut st = self.inner.lock();
            if st.monitors.len() >= MONITORS_MAX {
                return Err(TeeError::TooManyMonitors { max: MONITORS_MAX });
            }
            let id = st.next_id;
            st.next_id += 1;
            let slot = Slot { id, level: level.filter(), tx, dropped: dropped.clone() };
            for line in &st.ring.lines {
                slot.offer(line);
            }
            st.monitors.push(slot);
            self.inner.retune(&st);
            id
        };
        self.inner.rebuild_if_changed();
        Ok(Subscription { lines: rx, dropped, id, inner: self.inner.clone() })
    }

    /// Records one line as if an event had rendered it (for lines muster writes itself and
    /// for tests).
    pub fn publish(&self, level: Level, text: String) {
        self.inner.publish(Line { level, origin: Origin::Other, text: text.into() });
    }

    /// What the tee records now.
    pub fn level(&self) -> LevelFilter {
        self.inner.level()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the ring and the slots consistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn level(&self) -> LevelFilter {
        level_from_code(self.level.load(Ordering::Relaxed))
    }

    fn records(&self, meta: &Metadata<'_>) -> bool {
        meta.is_event() && shows(self.level(), *meta.level(), Origin::of(meta.target()))
    }

    fn publish(&self, line: Line) {
        let mut st = self.lock();
        for m in &st.monitors {
            m.offer(&line);
        }
        st.ring.push(line);
    }

    /// Sets the recording level from the floor and the monitors (under the state lock, so
    /// concurrent changes settle on the last one).
    fn retune(&self, st: &State) {
        let wanted = st.monitors.iter().map(|m| m.level).fold(self.floor, LevelFilter::max);
        self.level.store(level_code(wanted), Ordering::Relaxed);
    }

    /// Tells tracing to ask the filters again, so callsites that became (un)interesting are
    /// (not) called. Costs a walk over the callsites seen so far: once per monitor start and
    /// stop, and only when the level changed. Called after every `retune`, so whichever call
    /// comes last reads the level in force.
    fn rebuild_if_changed(&self) {
        let _one_at_a_time = self.rebuilding.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = self.level.load(Ordering::Relaxed);
        if self.built_for.swap(now, Ordering::Relaxed) != now {
            tracing::callsite::rebuild_interest_cache();
        }
    }

    fn unsubscribe(&self, id: u64) {
        {
            let mut st = self.lock();
            st.monitors.retain(|m| m.id != id);
            self.retune(&st);
        }
        self.rebuild_if_changed();
    }
}

/// The receiving end of one monitor; dropping it deregisters the monitor.
pub struct Subscription {
    lines: mpsc::Receiver<Arc<str>>,
    dropped: Arc<AtomicU64>,
    id: u64,
    inner: Arc<Inner>,
}

impl Subscription {
    /// The next line, oldest first; waits for one.
    pub async fn recv(&mut self) -> Option<Arc<str>> {
        self.lines.recv().await
    }

    /// The next line if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Arc<str>> {
        self.lines.try_recv().ok()
    }

    /// Lines dropped because this monitor's queue was full, since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.inner.unsubscribe(self.id);
    }
}

/// Renders events into the tee.
struct TeeLayer(Arc<Inner>);

thread_local! {
    /// This thread is inside [`TeeLayer::on_event`].
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Marks the thread as inside the tee until dropped (also on unwind).
struct Inside;

impl Inside {
    /// None when the thread is already inside.
    fn enter() -> Option<Inside> {
        (!INSIDE.with(|i| i.replace(true))).then_some(Inside)
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        INSIDE.with(|i| i.set(false));
    }
}

impl<S: Subscriber> Layer<S> for TeeLayer {
    fn on_event(&self, event: &Event<'_>, _cx: Context<'_, S>) {
        // An event raised while this thread renders or publishes (a field's Debug that logs)
        // would take the state lock twice; it is left to stderr.
        let Some(_inside) = Inside::enter() else { return };
        let meta = event.metadata();
        let mut fields = LineFields::default();
        event.record(&mut fields);
        let text = render(unix_ms_now(), SerfLevel::of(meta.level()), meta.target(), &fields);
        self.0.publish(Line { level: *meta.level(), origin: Origin::of(meta.target()), text: text.into() });
    }
}

/// The tee's own filter: what [`Inner::records`] says, cached per callsite until the level
/// changes.
struct TeeFilter(Arc<Inner>);

impl<S> Filter<S> for TeeFilter {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        self.0.records(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.0.records(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.0.level())
    }
}

fn level_code(l: LevelFilter) -> u8 {
    match l.into_level() {
        None => 0,
        Some(Level::ERROR) => 1,
        Some(Level::WARN) => 2,
        Some(Level::INFO) => 3,
        Some(Level::DEBUG) => 4,
        Some(Level::TRACE) => 5,
    }
}

fn level_from_code(c: u8) -> LevelFilter {
    match c {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

#[cfg(test)]
#[path = "tee_tests.rs"]
mod tests;
