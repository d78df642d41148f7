//! The log tee's cost per event (`src/logging/tee.rs`), to decide when it should record
//! DEBUG lines: always (the Go agent's behaviour: its ring holds them for the next monitor) or
//! only while a monitor asks for them (what muster does).
//!
//! ```sh
//! cargo bench --bench log_tee          # LOG_TEE_BENCH_EVENTS=200000 per run, median of 3
//! ```
//!
//! Every row builds the subscriber muster builds (`logging::build`): the text formatter, with
//! its own INFO filter, writing to `io::sink()` (the formatting is paid, the write is not),
//! plus the tee's layer. The event is a typical per-request DEBUG line,
//! `debug!(peer.addr = %addr, command = "members", seq = i, "serf-rpc: request")`, or the
//! same at INFO. A monitor is drained by the logging thread every 256 events, so it never
//! drops. "2 threads" rows log from two threads at once into one subscriber (the ring's lock is
//! shared) and report the time per event of one thread.
//!
//! Output: a markdown table on stdout after the machine description.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use muster::logging::serf_line::SerfLevel;
use muster::logging::tee::{LogTee, Subscription};
use support::{load_average, machine, median, number, revision};
use tracing::Dispatch;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

#[derive(Clone, Copy)]
enum Event {
    Debug,
    Info,
}

struct Row {
    what: &'static str,
    /// None: no tee layer at all (stderr's formatter alone).
    tee_floor: Option<LevelFilter>,
    monitor: Option<SerfLevel>,
    event: Event,
    threads: usize,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("log_tee bench: skipped (run it with `cargo bench --bench log_tee`)");
        return;
    }
    let events = number("LOG_TEE_BENCH_EVENTS", 200_000.0) as usize;
    let rows = [
        Row {
            what: "DEBUG event, no monitor (muster: the tee records INFO)",
            tee_floor: Some(LevelFilter::INFO),
            monitor: None,
            event: Event::Debug,
            threads: 1,
        },
        Row {
            what: "DEBUG event, no monitor, the tee always records DEBUG",
            tee_floor: Some(LevelFilter::DEBUG),
            monitor: None,
            event: Event::Debug,
            threads: 1,
        },
        Row {
            what: "DEBUG event, one DEBUG monitor",
            tee_floor: Some(LevelFilter::INFO),
            monitor: Some(SerfLevel::Debug),
            event: Event::Debug,
            threads: 1,
        },
        Row {
            what: "INFO event (formatted for stderr), no tee layer at all",
            tee_floor: None,
            monitor: None,
            event: Event::Info,
            threads: 1,
        },
        Row {
            what: "INFO event (formatted for stderr), no monitor",
            tee_floor: Some(LevelFilter::INFO),
            monitor: None,
            event: Event::Info,
            threads: 1,
        },
        Row {
            what: "INFO event (formatted for stderr), one INFO monitor",
            tee_floor: Some(LevelFilter::INFO),
            monitor: Some(SerfLevel::Info),
            event: Event::Info,
            threads: 1,
        },
        Row {
            what: "DEBUG event, no monitor (muster), 2 threads",
            tee_floor: Some(LevelFilter::INFO),
            monitor: None,
            event: Event::Debug,
            threads: 2,
        },
        Row {
            what: "DEBUG event, the tee always records DEBUG, 2 threads",
            tee_floor: Some(LevelFilter::DEBUG),
            monitor: None,
            event: Event::Debug,
            threads: 2,
        },
    ];
    let load_before = load_average();
    let mut out = String::from("| case | ns per event |\n|---|---:|\n");
    for row in &rows {
        let mut runs: Vec<f64> = (0..3).map(|_| ns_per_event(row, events)).collect();
        out.push_str(&format!("| {} | {:.0} |\n", row.what, median(&mut runs)));
        eprintln!("log_tee bench: {} done", row.what);
    }
    println!("{}", machine());
    println!("{}, load average before {load_before}, after {}", revision(), load_average());
    println!("{events} events per run, median of 3 runs\n");
    print!("{out}");
}

/// Builds a fresh subscriber for `row` and times `events` events on each of its threads.
fn ns_per_event(row: &Row, events: usize) -> f64 {
    let tee = LogTee::new(row.tee_floor.unwrap_or(LevelFilter::OFF));
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::sink).with_ansi(false);
    let stderr_only = tracing_subscriber::registry().with(output.with_filter(LevelFilter::INFO));
    let dispatch = match row.tee_floor {
        Some(_) => Dispatch::new(stderr_only.with(tee.layer())),
        None => Dispatch::new(stderr_only),
    };
    let addr: SocketAddr = "127.0.0.1:7373".parse().unwrap();
    let per_thread: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..row.threads)
            .map(|_| {
                let (dispatch, tee) = (dispatch.clone(), tee.clone());
                s.spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        let mut monitor = row.monitor.map(|l| tee.subscribe(l).unwrap());
                        let start = Instant::now();
                        for i in 0..events {
                            match row.event {
                                Event::Debug => tracing::debug!(peer.addr = %addr, command = "members", seq = i, "serf-rpc: request"),
                                Event::Info => tracing::info!(peer.addr = %addr, command = "members", seq = i, "serf-rpc: request"),
                            }
                            if i % 256 == 0 {
                                drain(&mut monitor);
                            }
                        }
                        start.elapsed()
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total: Duration = per_thread.iter().sum();
    total.as_nanos() as f64 / (events * row.threads) as f64
}

fn drain(monitor: &mut Option<Subscription>) {
    if let Some(m) = monitor {
        while m.try_recv().is_some() {}
        assert_eq!(m.take_dropped(), 0, "the bench's monitor must keep up");
    }
}
