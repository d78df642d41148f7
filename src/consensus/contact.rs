//! When a member lets openraft's tick run.
//!
//! openraft wakes every member on a tick (13/64 of its heartbeat interval: 91 ms on `lan`) and
//! the tick serves two timers only: a voter's election timeout and the leader's own
//! heartbeats. The leader's heartbeats come from our pacer instead (see `raft.rs`), a leader
//! never stands for election, and a follower that hears its leader has no election to start.
//! So the tick runs only where it can matter: on a member not yet in a membership, on a
//! candidate, and on a voter that has not heard a leader for [`RaftTiming::quiet_ms`]. That is
//! early enough that the tick, which resumes at its next period, still sees the shortest
//! election timeout pass at the same moment as if it had never stopped.
//!
//! A resting follower waits on a timer that every leader message replaces (see
//! [`LeaderContact::heard`]), so while the leader's heartbeats come nothing wakes for it at
//! all: not the watcher, not tokio's timer driver.
//!
//! [`RaftTiming::quiet_ms`]: super::raft::RaftTiming::quiet_ms

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::time::Sleep;

/// When this member last accepted a leader's message (AppendEntries or a snapshot), written by
/// the raft RPC service and read by the member's leadership watcher.
pub struct LeaderContact {
    base: Instant,
    /// Nanoseconds after `base` plus one; 0: never.
    at_ns: AtomicU64,
    /// Set by a watcher that waits for the next contact; the next [`LeaderContact::heard`]
    /// clears it and wakes the watcher, so that a contact nobody waits for costs no wake-up.
    armed: AtomicBool,
    wake: Notify,
    alarm: Mutex<Alarm>,
    /// Numbers the [`Quiet`] waits.
    waits: AtomicU64,
    /// How long without a leader message counts as quiet.
    quiet: Duration,
}

/// The timer of a watcher waiting for the leader to go quiet ([`LeaderContact::quiet`]).
#[derive(Default)]
struct Alarm {
    /// Which [`Quiet`] set it (0: none), so that a wait dropped late (a member's old watcher
    /// after a reset) cannot clear the alarm of the one that replaced it.
    owner: u64,
    /// The waiting watcher; none: nobody waits, and contacts leave the timer alone.
    waker: Option<Waker>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for LeaderContact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderContact").field("last", &self.last()).finish_non_exhaustive()
    }
}

impl LeaderContact {
    /// Contacts of a member whose leader counts as gone after `quiet` without a message.
    pub fn new(quiet: Duration) -> Self {
        LeaderContact {
            base: Instant::now(),
            at_ns: AtomicU64::new(0),
            armed: AtomicBool::new(false),
            wake: Notify::new(),
            alarm: Mutex::new(Alarm::default()),
            waits: AtomicU64::new(0),
            quiet,
        }
    }

    /// A leader's message was accepted at `now`.
    pub fn heard(&self, now: Instant) {
        let ns = u64::try_from(now.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX - 1);
        self.at_ns.fetch_max(ns + 1, Ordering::AcqRel);
        if self.armed.swap(false, Ordering::AcqRel) {
            self.wake.notify_one();
        }
        let mut alarm = self.alarm();
        if let Some(waker) = alarm.waker.clone() {
            // A new timer in place of the old one, registered with the waiter's waker. tokio
            // would move an existing timer later only lazily: its driver would still wake at
            // the first deadline. Dropping the old one takes it out of the driver's wheel.
            let mut sleep = Box::pin(tokio::time::sleep_until((now + self.quiet).into()));
            if sleep.as_mut().poll(&mut Context::from_waker(&waker)).is_ready() {
                waker.wake_by_ref();
            }
            alarm.sleep = Some(sleep);
        }
    }

    fn alarm(&self) -> MutexGuard<'_, Alarm> {
        self.alarm.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long without a leader message counts as quiet.
    pub fn quiet_span(&self) -> Duration {
        self.quiet
    }

    /// Returns once no leader message came for the quiet span: at `until` at the earliest (the
    /// end of the span after the last contact), and a span after every later contact.
    pub fn quiet(&self, until: Instant) -> Quiet<'_> {
        Quiet { contact: self, until, id: self.waits.fetch_add(1, Ordering::Relaxed) + 1 }
    }

    /// The last accepted leader message, if any.
    pub fn last(&self) -> Option<Instant> {
        match self.at_ns.load(Ordering::Acquire) {
            0 => None,
            ns => Some(self.base + Duration::from_nanos(ns - 1)),
        }
    }

    /// Returns once a leader's message is accepted after this call began (or, rarely, at
    /// once for one that came while nobody waited: the caller re-checks either way).
    pub async fn next(&self) {
        let notified = self.wake.notified();
        self.armed.store(true, Ordering::Release);
        notified.await;
    }
}

/// The future of [`LeaderContact::quiet`].
pub struct Quiet<'a> {
    contact: &'a LeaderContact,
    until: Instant,
    id: u64,
}

impl Future for Quiet<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut alarm = self.contact.alarm();
        if alarm.owner != self.id {
            *alarm = Alarm { owner: self.id, ..Alarm::default() };
        }
        if !alarm.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            alarm.waker = Some(cx.waker().clone());
        }
        let until = self.until;
        let sleep = alarm.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until.into())));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                *alarm = Alarm::default();
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Quiet<'_> {
    fn drop(&mut self) {
        let mut alarm = self.contact.alarm();
        if alarm.owner == self.id {
            *alarm = Alarm::default();
        }
    }
}

/// Where a member stands, as far as the tick is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Not in any membership yet (joining or bootstrapping): may have to elect itself.
    Unknown,
    /// A learner: never elects.
    Learner,
    Leader,
    Candidate,
    /// A voter that follows (or looks for) a leader.
    Follower,
}

/// What the watcher does with the tick until it looks again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickPlan {
    /// The tick runs; look again only when the standing changes.
    Run,
    /// The tick rests; look again only when the standing changes.
    Rest,
    /// The tick rests while the leader is heard; look again at this instant (the quiet span
    /// after the last contact).
    RestUntil(Instant),
    /// The tick runs because the leader has gone quiet; look again at the next contact.
    RunUntilHeard,
}

impl TickPlan {
    pub fn ticks(self) -> bool {
        matches!(self, TickPlan::Run | TickPlan::RunUntilHeard)
    }
}

/// The tick plan of a member with `standing` whose leader was last heard at `last`.
pub fn plan(standing: Standing, last: Option<Instant>, now: Instant, quiet: Duration) -> TickPlan {
    match standing {
        Standing::Unknown | Standing::Candidate => TickPlan::Run,
        Standing::Learner | Standing::Leader => TickPlan::Rest,
        Standing::Follower => match last.map(|t| t + quiet) {
            Some(until) if now < until => TickPlan::RestUntil(until),
            _ => TickPlan::RunUntilHeard,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: Duration = Duration::from_millis(364);

    #[test]
    fn only_a_voter_that_may_have_to_elect_ticks() {
        let t0 = Instant::now();
        assert_eq!(plan(Standing::Unknown, None, t0, QUIET), TickPlan::Run);
        assert_eq!(plan(Standing::Candidate, Some(t0), t0, QUIET), TickPlan::Run);
        assert_eq!(plan(Standing::Learner, None, t0, QUIET), TickPlan::Rest);
        assert_eq!(plan(Standing::Leader, None, t0, QUIET), TickPlan::Rest);
    }

    #[test]
    fn a_follower_rests_while_its_leader_is_heard_and_ticks_once_it_goes_quiet() {
        let t0 = Instant::now();
        let heard = t0 + Duration::from_millis(100);
        assert_eq!(plan(Standing::Follower, None, t0, QUIET), TickPlan::RunUntilHeard);
        assert_eq!(plan(Standing::Follower, Some(heard), heard, QUIET), TickPlan::RestUntil(heard + QUIET));
        let just_before = heard + QUIET - Duration::from_millis(1);
        assert_eq!(
            plan(Standing::Follower, Some(heard), just_before, QUIET),
            TickPlan::RestUntil(heard + QUIET)
        );
        assert_eq!(plan(Standing::Follower, Some(heard), heard + QUIET, QUIET), TickPlan::RunUntilHeard);
        assert!(!TickPlan::RestUntil(heard).ticks() && TickPlan::RunUntilHeard.ticks());
    }

    #[test]
    fn contact_keeps_the_latest_time_and_wakes_only_an_armed_waiter() {
        let c = LeaderContact::new(QUIET);
        assert_eq!(c.last(), None);
        let t1 = Instant::now() + Duration::from_millis(5);
        c.heard(t1);
        c.heard(t1 - Duration::from_millis(3)); // a late reply never moves it back
        assert_eq!(c.last(), Some(t1));
        assert!(!c.armed.load(Ordering::Acquire), "nobody waited, so nothing was armed");
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_returns_only_after_a_quiet_span_without_contact() {
        let quiet = Duration::from_millis(300);
        let c = std::sync::Arc::new(LeaderContact::new(quiet));
        let t0 = tokio::time::Instant::now().into_std();
        c.heard(t0);
        let waiter = tokio::spawn({
            let c = c.clone();
            async move {
                c.quiet(t0 + quiet).await;
                tokio::time::Instant::now().into_std()
            }
        });
        // Contacts every 100 ms for a second keep it waiting.
        let mut last = t0;
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            last = tokio::time::Instant::now().into_std();
            c.heard(last);
            assert!(!waiter.is_finished(), "woke while the leader was heard");
        }
        let woke =
            tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken").expect("joined");
        assert_eq!(woke, last + quiet, "it returns one quiet span after the last contact");
        // The finished wait left no timer behind for contacts to replace.
        assert!(c.alarm().waker.is_none() && c.alarm().sleep.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_quiet_wait_leaves_nothing_for_contacts_to_rearm() {
        let c = LeaderContact::new(QUIET);
        let t0 = tokio::time::Instant::now().into_std();
        let r = tokio::time::timeout(Duration::from_millis(50), c.quiet(t0 + Duration::from_secs(1))).await;
        assert!(r.is_err(), "still waiting when dropped");
        assert!(c.alarm().waker.is_none() && c.alarm().sleep.is_none());
        c.heard(t0 + Duration::from_millis(60));
        assert!(c.alarm().sleep.is_none(), "a contact with nobody waiting sets no timer");
    }

    #[tokio::test(start_paused = true)]
    async fn an_older_wait_dropped_late_leaves_the_newer_one_armed() {
        let quiet = Duration::from_millis(300);
        let c = std::sync::Arc::new(LeaderContact::new(quiet));
        let t0 = tokio::time::Instant::now().into_std();
        let old = tokio::spawn({
            let c = c.clone();
            async move { c.quiet(t0 + Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        let new = tokio::spawn({
            let c = c.clone();
            async move { c.quiet(t0 + quiet).await }
        });
        tokio::task::yield_now().await;
        old.abort(); // dropped after the new wait took the alarm over
        assert!(old.await.is_err());
        c.heard(t0 + Duration::from_millis(100));
        tokio::time::timeout(Duration::from_secs(5), new)
            .await
            .expect("the newer wait still wakes")
            .expect("joined");
        assert_eq!(tokio::time::Instant::now().into_std(), t0 + Duration::from_millis(400));
    }

    #[tokio::test]
    async fn a_waiter_wakes_at_the_next_contact() {
        let c = std::sync::Arc::new(LeaderContact::new(QUIET));
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.next().await }
        });
        // Until the waiter is armed, a contact could be missed by it; give it the time to arm.
        tokio::time::timeout(Duration::from_secs(5), async {
            while !c.armed.load(Ordering::Acquire) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the waiter arms itself");
        c.heard(Instant::now());
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken").expect("joined");
    }
}
