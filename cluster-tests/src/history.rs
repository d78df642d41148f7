//! The history of client operations: one [`Op`] per call with its invoke and complete times on
//! the run's monotonic clock, the node it went to, its arguments and its [`Outcome`]. Also the
//! gRPC status → outcome table. Pure data and serde; no I/O except writing JSONL.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tonic::{Code, Status};

/// Monotonic nanoseconds since the run started, shared by the workload and the nemesis. Also
/// the wall-clock time of the start, to compare run times with the unix-ms timestamps the
/// nodes put in service records (the nodes are containers on this host: one wall clock).
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    start: Instant,
    /// Unix nanoseconds at `start` (0 if the wall clock is before 1970).
    start_unix_ns: u64,
}

impl RunClock {
    pub fn start() -> RunClock {
        let start = Instant::now();
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        RunClock { start, start_unix_ns: u64::try_from(since.as_nanos()).unwrap_or(u64::MAX) }
    }

    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Run-clock nanoseconds `t_ns` as unix milliseconds (the run's start read once from the
    /// wall clock, then the monotonic clock: a wall-clock step during the run is not seen).
    pub fn unix_ms(&self, t_ns: u64) -> u64 {
        self.start_unix_ns.saturating_add(t_ns) / 1_000_000
    }
}

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Call {
    /// Register `id` with metadata version `version`.
    Register {
        id: String,
        version: u64,
    },
    /// Set `id`'s metadata version to `version`.
    Update {
        id: String,
        version: u64,
    },
    Deregister {
        id: String,
    },
    Get {
        id: String,
    },
    List,
}

impl Call {
    /// The service id a single-service call names.
    pub fn id(&self) -> Option<&str> {
        match self {
            Call::Register { id, .. }
            | Call::Update { id, .. }
            | Call::Deregister { id }
            | Call::Get { id } => Some(id),
            Call::List => None,
        }
    }

    /// Whether the call changes the registry.
    pub fn is_write(&self) -> bool {
        matches!(self, Call::Register { .. } | Call::Update { .. } | Call::Deregister { .. })
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Acknowledged: it happened.
    Ok,
    /// Refused: it did not happen.
    Fail,
    /// It may or may not have happened (timeout, lost connection, UNKNOWN).
    Unknown,
}

/// What a read returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// Get: the service's metadata version (None: not found).
    Version(Option<u64>),
    /// List: every id with its version.
    Services(Vec<(String, u64)>),
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// The client (one sequential process) that made the call.
    pub client: usize,
    /// Gossip name of the node it went to.
    pub node: String,
    #[serde(flatten)]
    pub call: Call,
    pub invoke_ns: u64,
    pub complete_ns: u64,
    pub outcome: Outcome,
    /// The gRPC code name for a failed or unknown call (`DEADLINE_EXCEEDED`, `UNAVAILABLE`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The error message, shortened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What a successful read returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// The registry revision an acknowledged write was applied at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
}

/// The outcome and code name of a gRPC error for a call that `is_write`. DEADLINE_EXCEEDED,
/// CANCELLED, UNKNOWN, and errors raised by the client's transport (a connection lost after
/// the request may have been sent) are unknown for writes; every other code is the server's
/// refusal, and so is a transport error that failed to connect. For reads the difference does not matter, so they are failures.
pub fn classify(status: &Status, is_write: bool) -> (Outcome, String) {
    let code = code_name(status.code());
    // tonic attaches the source error only to statuses it makes itself from transport errors;
    // a status the server sent has none.
    let from_transport = std::error::Error::source(status).is_some();
    // A connection that was never established carried no request.
    let never_sent = from_transport && status.message().contains("connect error");
    let maybe_applied = match status.code() {
        Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => true,
        _ => from_transport && !never_sent,
    };
    let outcome = if maybe_applied && is_write { Outcome::Unknown } else { Outcome::Fail };
    let code = if from_transport { format!("{code}(transport)") } else { code.to_string() };
    (outcome, code)
}

/// The canonical gRPC name of a code.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The operations of a run, appended to by every client.
#[derive(Debug, Clone, Default)]
pub struct History {
    ops: Arc<Mutex<Vec<Op>>>,
}

impl History {
    pub fn push(&self, op: Op) {
        if let Ok(mut ops) = self.ops.lock() {
            ops.push(op);
        }
    }

    /// Every operation so far, by invoke time.
    pub fn snapshot(&self) -> Vec<Op> {
        let mut ops = self.ops.lock().map(|o| o.clone()).unwrap_or_default();
        ops.sort_by_key(|o| (o.invoke_ns, o.client));
        ops
    }
}

/// Writes `items` to `path`, one JSON object a line.
pub fn write_jsonl<T: Serialize>(path: &Path, items: &[T]) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for item in items {
        serde_json::to_writer(&mut out, item)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_unknown_are_unknown_for_writes_and_refusals_are_failures() {
        // Proves the outcome table: only codes that may follow an applied write are unknown.
        for code in [Code::DeadlineExceeded, Code::Cancelled, Code::Unknown] {
            assert_eq!(classify(&Status::new(code, "x"), true).0, Outcome::Unknown, "{code:?}");
            assert_eq!(classify(&Status::new(code, "x"), false).0, Outcome::Fail, "{code:?}");
        }
        for code in [Code::Unavailable, Code::InvalidArgument, Code::NotFound, Code::AlreadyExists] {
            assert_eq!(classify(&Status::new(code, "x"), true).0, Outcome::Fail, "{code:?}");
        }
        assert_eq!(classify(&Status::unavailable("no leader"), true).1, "UNAVAILABLE");
    }

    #[test]
    fn run_clock_times_convert_to_the_wall_clock() {
        // Proves unix_ms is the wall clock at the start plus the run time, in milliseconds.
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let clock = RunClock::start();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let start = clock.unix_ms(0);
        assert!(before <= start && start <= after, "{before} <= {start} <= {after}");
        assert_eq!(clock.unix_ms(2_500_000_000), clock.unix_ms(0) + 2_500);
    }

    #[test]
    fn an_op_round_trips_through_one_json_line() {
        // Proves the JSONL shape is readable back (the report is the input of later tools).
        let op = Op {
            client: 2,
            node: "n1".into(),
            call: Call::Update { id: "c2-s1".into(), version: 7 },
            invoke_ns: 10,
            complete_ns: 20,
            outcome: Outcome::Unknown,
            code: Some("DEADLINE_EXCEEDED".into()),
            error: None,
            value: None,
            revision: None,
        };
        let line = serde_json::to_string(&op).unwrap();
        assert!(line.contains(r#""op":"update""#), "{line}");
        assert_eq!(serde_json::from_str::<Op>(&line).unwrap(), op);
    }
}
