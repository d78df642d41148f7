//! The tee on its own (ring, fan-out, drops, level changes) and inside the real subscriber
//! (`logging::build`), where a monitor must see what stderr's filter hides.

use super::*;
use crate::config::{LogConfig, LogFormat, LogTime};

fn drain(sub: &mut Subscription) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(line) = sub.try_recv() {
        out.push(line.to_string());
    }
    out
}

#[test]
fn a_new_monitor_gets_the_last_lines_at_its_level_then_new_ones() {
    // Proves the ring keeps the last RING_LINES in order, replays only what the monitor's level admits, and live lines follow without a gap.
    let tee = LogTee::new(LevelFilter::INFO);
    for i in 0..RING_LINES + 10 {
        let level = if i % 2 == 0 { Level::INFO } else { Level::WARN };
        tee.publish(level, format!("line {i}"));
    }
    let mut all = tee.subscribe(SerfLevel::Info).unwrap();
    let mut warn = tee.subscribe(SerfLevel::Warn).unwrap();
    tee.publish(Level::WARN, "live".into());
    let got = drain(&mut all);
    assert_eq!(got.len(), RING_LINES + 1);
    assert_eq!(got[0], "line 10", "the oldest 10 lines fell out of the ring");
    assert_eq!(got[RING_LINES - 1], format!("line {}", RING_LINES + 9));
    assert_eq!(got[RING_LINES], "live");
    let got = drain(&mut warn);
    assert_eq!(got.len(), RING_LINES / 2 + 1);
    assert!(got
        .iter()
        .all(|l| l == "live" || l.trim_start_matches("line ").parse::<usize>().unwrap() % 2 == 1));
}

#[test]
fn a_slow_monitor_loses_counted_lines_and_never_holds_up_logging() {
    // Proves publishing to a monitor that never reads does not block, counts every line it could not queue, and leaves a reading monitor whole.
    let tee = LogTee::new(LevelFilter::INFO);
    let mut slow = tee.subscribe(SerfLevel::Info).unwrap();
    let mut fast = tee.subscribe(SerfLevel::Info).unwrap();
    let mut fast_got = 0;
    let extra = 100;
    for i in 0..MONITOR_QUEUE_MAX + extra {
        tee.publish(Level::INFO, format!("line {i}"));
        fast_got += drain(&mut fast).len();
    }
    assert_eq!(fast_got, MONITOR_QUEUE_MAX + extra);
    assert_eq!(slow.take_dropped(), extra as u64);
    assert_eq!(slow.take_dropped(), 0, "the count is taken once");
    let kept = drain(&mut slow);
    assert_eq!(kept.len(), MONITOR_QUEUE_MAX);
    assert_eq!(kept[0], "line 0", "what was queued is kept; the newest lines are the ones lost");
    tee.publish(Level::INFO, "after".into());
    assert_eq!(drain(&mut slow), ["after"]);
    assert_eq!(fast.take_dropped(), 0);
}

#[test]
fn the_recording_level_follows_the_most_verbose_monitor() {
    // Proves the tee records at the node's level, goes down to a monitor's lower level while it lives, and back when it goes.
    let tee = LogTee::new(LevelFilter::INFO);
    assert_eq!(tee.level(), LevelFilter::INFO);
    let warn = tee.subscribe(SerfLevel::Warn).unwrap();
    assert_eq!(tee.level(), LevelFilter::INFO, "a quieter monitor changes nothing");
    let debug = tee.subscribe(SerfLevel::Debug).unwrap();
    assert_eq!(tee.level(), LevelFilter::DEBUG);
    let trace = tee.subscribe(SerfLevel::Trace).unwrap();
    assert_eq!(tee.level(), LevelFilter::TRACE);
    drop(trace);
    assert_eq!(tee.level(), LevelFilter::DEBUG);
    drop(debug);
    drop(warn);
    assert_eq!(tee.level(), LevelFilter::INFO);
}

#[test]
fn monitors_are_bounded() {
    // Proves the tee refuses the monitor after MONITORS_MAX and takes one again once one has gone.
    let tee = LogTee::new(LevelFilter::INFO);
    let mut subs: Vec<_> = (0..MONITORS_MAX).map(|_| tee.subscribe(SerfLevel::Info).unwrap()).collect();
    assert_eq!(tee.subscribe(SerfLevel::Info).err(), Some(TeeError::TooManyMonitors { max: MONITORS_MAX }));
    subs.pop();
    assert!(tee.subscribe(SerfLevel::Info).is_ok());
}

use crate::logging::Capture;

#[test]
fn a_debug_monitor_on_an_info_node_sees_debug_lines_that_stderr_does_not() {
    // Proves, in the real subscriber, the tee's filter is independent of stderr's: DEBUG reaches a DEBUG monitor only while it lives, openraft stays one step quieter, and stderr stays at INFO.
    let cfg =
        LogConfig { format: LogFormat::Text, time: LogTime::Off, no_color: true, ..LogConfig::default() };
    assert_eq!(cfg.level, Level::INFO);
    let stderr = Capture::default();
    let tee = LogTee::new(LevelFilter::INFO);
    let subscriber = super::super::build(&cfg, stderr.clone(), false, &tee);
    tracing::subscriber::with_default(subscriber, || {
        tracing::debug!("probe: before any monitor");
        let mut mon = tee.subscribe(SerfLevel::Debug).unwrap();
        tracing::debug!(n = 1, "probe: debug while watched");
        tracing::info!("probe: info while watched");
        tracing::debug!(target: "openraft::core", "probe: raft debug");
        tracing::info!(target: "openraft::core", "probe: raft info");
        tracing::trace!("probe: trace");
        let got = drain(&mut mon);
        let got: Vec<&str> = got.iter().filter(|l| l.contains("probe:")).map(|l| &l[20..]).collect();
        assert_eq!(
            got,
            [
                "[DEBUG] probe: debug while watched n=1",
                "[INFO] probe: info while watched",
                "[INFO] probe: raft info"
            ]
        );
        drop(mon);
        tracing::debug!("probe: after the monitor left");
        let mut later = tee.subscribe(SerfLevel::Trace).unwrap();
        let replayed = drain(&mut later).join("\n");
        assert!(replayed.contains("probe: debug while watched"), "{replayed}");
        assert!(
            !replayed.contains("before any monitor") && !replayed.contains("after the monitor left"),
            "{replayed}"
        );
    });
    let out = String::from_utf8(stderr.0.lock().unwrap().clone()).unwrap();
    assert!(out.contains("probe: info while watched"), "{out}");
    assert!(!out.contains("probe: debug") && !out.contains("raft debug"), "stderr stays at INFO: {out}");
}

#[test]
fn an_event_whose_field_logs_neither_deadlocks_nor_loops() {
    // Proves an event raised while the tee renders another (a Debug impl that logs) is left to stderr and the outer line still arrives.
    struct Noisy;
    impl std::fmt::Debug for Noisy {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            tracing::info!("probe: from inside Debug");
            f.write_str("noisy")
        }
    }
    let cfg =
        LogConfig { format: LogFormat::Text, time: LogTime::Off, no_color: true, ..LogConfig::default() };
    let tee = LogTee::new(LevelFilter::INFO);
    let subscriber = super::super::build(&cfg, Capture::default(), false, &tee);
    tracing::subscriber::with_default(subscriber, || {
        let mut mon = tee.subscribe(SerfLevel::Info).unwrap();
        tracing::info!(x = ?Noisy, "probe: outer");
        let got: Vec<String> = drain(&mut mon).into_iter().filter(|l| l.contains("probe:")).collect();
        assert!(got.iter().any(|l| l.ends_with("[INFO] probe: outer x=noisy")), "{got:?}");
    });
}
