//! The `monitor` command (what `serf monitor` sends): checks the requested level as the Go
//! agent does (`handleMonitor` in `cmd/serf/command/agent/ipc.go`), keeps at most one monitor
//! per connection, and runs the task that forwards the log tee's lines to the client as
//! `{Seq, Error}` + `{Log}` records until `stop` names its Seq or the connection ends.
//!
//! A monitor never slows logging: the tee drops what its queue cannot hold. The forwarding
//! task then writes a `[WARN]` line saying how many were lost into the monitor itself and, at
//! most every [`DROP_WARN_INTERVAL`], logs a warning. Unlike `stream`, a slow monitor is not
//! ended: it waits for room in the connection's write queue, whose writer disconnects a
//! client that stops reading altogether.
//!
//! Imports `proto` and `logging`; nothing of the gossip or the node.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::proto::{self as p, LogRecord};
use crate::logging::serf_line::{render_note, SerfLevel};
use crate::logging::tee::{LogTee, Subscription};
use crate::logging::unix_ms_now;

/// The shortest time between two "dropped log lines" warnings of one monitor.
const DROP_WARN_INTERVAL: Duration = Duration::from_secs(30);

/// A connection's monitor, if it has one: the Seq of its `monitor` request and its stop token.
#[derive(Debug, Default)]
pub struct MonitorSlot {
    current: Option<(u64, CancellationToken)>,
}

impl MonitorSlot {
    /// Go's checks in Go's order (the level, then an existing monitor); on success the tee
    /// subscription, already holding the replayed lines. Err: the answer's error text.
    pub fn open(&mut self, log_level: &str, tee: &LogTee) -> Result<Subscription, String> {
        let level = SerfLevel::parse(log_level).map_err(|e| e.to_string())?;
        if self.current.as_ref().is_some_and(|(_, stop)| !stop.is_cancelled()) {
            return Err(p::MONITOR_EXISTS.to_string());
        }
        tee.subscribe(level).map_err(|e| e.to_string())
    }

    /// Starts forwarding `sub` as the records of request `seq`. Call after the answer is
    /// queued on `out`, so it goes first.
    pub fn start(
        &mut self,
        peer: SocketAddr,
        seq: u64,
        sub: Subscription,
        out: mpsc::Sender<Vec<u8>>,
        stop: CancellationToken,
    ) {
        self.close();
        self.current = Some((seq, stop.clone()));
        tokio::spawn(run(peer, seq, sub, out, stop));
    }

    /// `stop {Stop: seq}`: ends the monitor if `seq` is its request's.
    pub fn stop(&mut self, seq: u64) {
        if self.current.as_ref().is_some_and(|(s, _)| *s == seq) {
            self.close();
        }
    }

    /// Ends the monitor, if any (the connection is closing).
    pub fn close(&mut self) {
        if let Some((_, stop)) = self.current.take() {
            stop.cancel();
        }
    }
}

/// Why a monitor ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorEnd {
    /// `stop`, the connection closed, or the node is shutting down.
    Stopped,
    /// The connection's writer is gone.
    WriterGone,
}

/// Forwards lines until stopped; returns why it ended (already logged).
pub async fn run(
    peer: SocketAddr,
    seq: u64,
    mut sub: Subscription,
    out: mpsc::Sender<Vec<u8>>,
    stop: CancellationToken,
) -> MonitorEnd {
    let mut dropped_total = 0u64;
    let mut unreported = 0u64;
    let mut last_warn: Option<Instant> = None;
    let end = 'forward: loop {
        let line = tokio::select! {
            _ = stop.cancelled() => break MonitorEnd::Stopped,
            l = sub.recv() => l,
        };
        // The tee never closes a live subscription's channel.
        let Some(line) = line else { break MonitorEnd::Stopped };
        let dropped = sub.take_dropped();
        let mut lines = Vec::with_capacity(2);
        if dropped > 0 {
            dropped_total += dropped;
            unreported += dropped;
            let note = format!(
                "serf-rpc: monitor dropped {dropped} log lines; the client is not reading fast enough"
            );
            lines.push(render_note(unix_ms_now(), SerfLevel::Warn, &note));
            if last_warn.is_none_or(|at| at.elapsed() >= DROP_WARN_INTERVAL) {
                tracing::warn!(peer.addr = %peer, seq, dropped = unreported, "serf-rpc: monitor client is not reading fast enough; dropped log lines");
                last_warn = Some(Instant::now());
                unreported = 0;
            }
        }
        lines.push(line.to_string());
        for log in lines {
            let frame = match p::encode_response(seq, "", Some(&LogRecord { log })) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(peer.addr = %peer, seq, error = %e, "serf-rpc: cannot encode a log record; skipping it");
                    continue;
                }
            };
            let sent = tokio::select! {
                _ = stop.cancelled() => break 'forward MonitorEnd::Stopped,
                s = out.send(frame) => s,
            };
            if sent.is_err() {
                break 'forward MonitorEnd::WriterGone;
            }
        }
    };
    stop.cancel();
    drop(sub);
    tracing::debug!(peer.addr = %peer, seq, end = ?end, dropped = dropped_total, "serf-rpc: monitor ended");
    end
}
