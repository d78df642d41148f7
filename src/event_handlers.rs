//! Serf event handlers (`--event-handler [filter=]script`): scripts written for Go `serf agent`s
//! run unchanged. One runner task takes gossip events in order and runs every matching script
//! under `/bin/sh -c`, one at a time as the Go agent does, each with a deadline.
//!
//! What a script sees, as with Serf (`cmd/serf/command/agent/invoke.go`): `SERF_EVENT`
//! (`member-join`, …, `user`, `query`), `SERF_SELF_NAME`, `SERF_SELF_ROLE` (this member's
//! `role` tag), `SERF_TAG_<TAG>` for each of this member's tags (upper-cased, other characters
//! than `A-Z0-9_` as `_`), for user events `SERF_USER_EVENT` and `SERF_USER_LTIME`, for queries
//! `SERF_QUERY_NAME` and `SERF_QUERY_LTIME`. On stdin: for member events one line per member,
//! `name\taddr\trole\ttags` (tags as `k=v,k=v`; tabs and newlines escaped), for user events and
//! queries the payload with a newline added. A query handler's stdout (when not empty) is the
//! node's response. As in the Go agent, member events are coalesced (one run per event type
//! with every member that changed, after 1 s of quiet or 3 s at most), and so are user events
//! sent with coalescing (the latest per name). Imports the gossip handle and Serf's event
//! filter; nothing else.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::gossip::net::GossipHandle;
use crate::gossip::serf::{Member, SerfEvent, QUERY_RESPONSE_SIZE_LIMIT};
use crate::serf_rpc::{parse_filters, EventFilter};

/// How long one script may run before it is killed.
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(30);
/// A script still running after this gets a warning (Serf warns after one second).
const SLOW_WARNING: Duration = Duration::from_secs(1);
/// Output kept per stream of one run (Serf keeps 8 KiB); the rest is counted, not kept.
const OUTPUT_MAX_BYTES: usize = 8 * 1024;
/// Coalescing: a batch goes out after this long without a new event...
const QUIESCENT_PERIOD: Duration = Duration::from_secs(1);
/// ...or this long after its first event (the Go agent's settings).
const COALESCE_PERIOD: Duration = Duration::from_secs(3);
/// Members or event names held in one batch at most; beyond it the batch goes out at once.
const BATCH_MAX: usize = 4096;

/// What one run of the scripts is for: a (coalesced) member event, or one user event or query.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    Members { kind: &'static str, members: Vec<Member> },
    Event(SerfEvent),
}

impl Invocation {
    fn kind(&self) -> &'static str {
        match self {
            Invocation::Members { kind, .. } => kind,
            Invocation::Event(e) => crate::serf_rpc::proto::event_type(e),
        }
    }
}

/// When a batch is due: 1 s after its last event, 3 s after its first at the latest.
#[derive(Debug, Default)]
struct Window {
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Window {
    fn touch(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    fn due(&self) -> Option<Instant> {
        Some((self.first? + COALESCE_PERIOD).min(self.last? + QUIESCENT_PERIOD))
    }
}

/// Serf's coalescers (`serf/coalesce_member.go`, `coalesce_user.go`), pure: events in with
/// `now`, batches out when due.
#[derive(Debug, Default)]
pub struct Coalescer {
    members: BTreeMap<String, (&'static str, Member)>,
    /// The type last sent per member: the same type again is not sent twice (but updates are).
    last_sent: HashMap<String, &'static str>,
    member_window: Window,
    users: BTreeMap<String, (u64, Vec<SerfEvent>)>,
    user_window: Window,
}

impl Coalescer {
    /// Takes a member event or a coalescable user event (true), or leaves it to run now.
    pub fn push(&mut self, e: &SerfEvent, now: Instant) -> bool {
        if let Some(m) = e.member() {
            self.members.insert(m.name.clone(), (crate::serf_rpc::proto::event_type(e), m.clone()));
            self.member_window.touch(now);
            return true;
        }
        match e {
            SerfEvent::User { ltime, name, coalesce: true, .. } => {
                let latest = self.users.entry(name.clone()).or_insert((*ltime, Vec::new()));
                if *ltime > latest.0 {
                    *latest = (*ltime, Vec::new());
                }
                if *ltime == latest.0 {
                    latest.1.push(e.clone());
                }
                self.user_window.touch(now);
                true
            }
            _ => false,
        }
    }

    /// When the next batch is due.
    pub fn due(&self) -> Option<Instant> {
        let full = self.members.len() >= BATCH_MAX || self.users.len() >= BATCH_MAX;
        let due = [self.member_window.due(), self.user_window.due()].into_iter().flatten().min();
        if full {
            return due.map(|_| Instant::now());
        }
        due
    }

    /// The batches due at `now`, member events first (grouped by type), then user events.
    pub fn take_due(&mut self, now: Instant) -> Vec<Invocation> {
        let mut out = Vec::new();
        let full = self.members.len() >= BATCH_MAX;
        if full || self.member_window.due().is_some_and(|t| t <= now) {
            self.member_window = Window::default();
            let mut by_kind: BTreeMap<&'static str, Vec<Member>> = BTreeMap::new();
            for (name, (kind, m)) in std::mem::take(&mut self.members) {
                if self.last_sent.get(&name) == Some(&kind) && kind != "member-update" {
                    continue;
                }
                self.last_sent.insert(name, kind);
                by_kind.entry(kind).or_default().push(m);
            }
            if self.last_sent.len() > BATCH_MAX * 4 {
                self.last_sent.clear();
            }
            out.extend(by_kind.into_iter().map(|(kind, members)| Invocation::Members { kind, members }));
        }
        let full = self.users.len() >= BATCH_MAX;
        if full || self.user_window.due().is_some_and(|t| t <= now) {
            self.user_window = Window::default();
            for (_, (_, events)) in std::mem::take(&mut self.users) {
                out.extend(events.into_iter().map(Invocation::Event));
            }
        }
        out
    }
}

/// One `--event-handler`: which events, and the shell command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerSpec {
    filters: Vec<EventFilter>,
    script: String,
}

impl HandlerSpec {
    /// Parses Serf's `[filter=]script`; the filter defaults to `*`.
    pub fn parse(spec: &str) -> Result<HandlerSpec, String> {
        // Serf splits at the first `=`: a script with an `=` in it needs a filter before it.
        let (filter, script) = spec.split_once('=').unwrap_or(("", spec));
        let script = script.trim();
        if script.is_empty() {
            return Err("an event handler needs a script after the filter (FILTER=SCRIPT)".into());
        }
        let filters = parse_filters(filter.trim()).map_err(|bad| {
            format!(
                "unknown event {bad:?} in the filter; use member-join, member-leave, member-failed, \
                 member-update, member-reap, user[:NAME], query[:NAME] or *"
            )
        })?;
        Ok(HandlerSpec { filters, script: script.to_string() })
    }

    /// `event:name` → script for each filter, as `serf info` lists handlers.
    pub fn labels(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.filters.iter().map(|f| (f.label(), self.script.clone()))
    }

    fn wants(&self, inv: &Invocation) -> bool {
        match inv {
            Invocation::Event(e) => self.filters.iter().any(|f| f.matches(e)),
            Invocation::Members { kind, .. } => self.filters.iter().any(|f| f.matches_type(kind)),
        }
    }
}

/// Runs the handlers for every gossip event until `shutdown`.
pub async fn run(specs: Vec<HandlerSpec>, gossip: GossipHandle, node: String, shutdown: CancellationToken) {
    if specs.is_empty() {
        return;
    }
    tracing::info!(handlers = specs.len(), "event-handlers: running");
    let mut events = gossip.subscribe();
    let mut batches = Coalescer::default();
    loop {
        let due = batches.due();
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sleep_until(due) => None,
            e = events.recv() => Some(e),
        };
        let now = Instant::now();
        let mut runs = Vec::new();
        match event {
            None => {}
            Some(Ok(e)) if !batches.push(&e, now) => runs.push(Invocation::Event(e)),
            Some(Ok(_)) => {}
            Some(Err(broadcast::error::RecvError::Lagged(missed))) => {
                tracing::warn!(missed, "event-handlers: scripts are too slow; events were skipped");
            }
            Some(Err(broadcast::error::RecvError::Closed)) => return,
        }
        runs.extend(batches.take_due(now));
        for inv in runs {
            let me = gossip.members().borrow().iter().find(|m| m.name == node).map(|m| m.tags.clone());
            let tags = me.unwrap_or_default();
            for spec in specs.iter().filter(|s| s.wants(&inv)) {
                let out = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    o = invoke(&spec.script, &node, &tags, &inv) => o,
                };
                respond_with(&gossip, &inv, out).await;
            }
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// A query handler's stdout is the node's answer.
async fn respond_with(gossip: &GossipHandle, inv: &Invocation, stdout: Option<Vec<u8>>) {
    let (Invocation::Event(SerfEvent::Query(q)), Some(stdout)) = (inv, stdout) else { return };
    if stdout.is_empty() {
        return;
    }
    if stdout.len() > QUERY_RESPONSE_SIZE_LIMIT {
        tracing::warn!(query = %q.name, bytes = stdout.len(), "event-handlers: a query handler's output is too large to send");
        return;
    }
    if let Err(e) = gossip.respond(q.key, &stdout).await {
        tracing::warn!(query = %q.name, error = %e, "event-handlers: failed to respond to the query");
    }
}

/// The environment Serf gives a script for `inv`.
pub fn environment(node: &str, tags: &BTreeMap<String, String>, inv: &Invocation) -> Vec<(String, String)> {
    let mut env = vec![
        ("SERF_EVENT".to_string(), inv.kind().to_string()),
        ("SERF_SELF_NAME".to_string(), node.to_string()),
        ("SERF_SELF_ROLE".to_string(), tags.get("role").cloned().unwrap_or_default()),
    ];
    for (k, v) in tags {
        let name: String = k
            .to_uppercase()
            .chars()
            .map(|c| if c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' { c } else { '_' })
            .collect();
        env.push((format!("SERF_TAG_{name}"), v.clone()));
    }
    match inv {
        Invocation::Event(SerfEvent::User { ltime, name, .. }) => {
            env.push(("SERF_USER_EVENT".into(), name.clone()));
            env.push(("SERF_USER_LTIME".into(), ltime.to_string()));
        }
        Invocation::Event(SerfEvent::Query(q)) => {
            env.push(("SERF_QUERY_NAME".into(), q.name.clone()));
            env.push(("SERF_QUERY_LTIME".into(), q.key.ltime.to_string()));
        }
        _ => {}
    }
    env
}

/// What a script reads on stdin for `inv`.
pub fn stdin_for(inv: &Invocation) -> Vec<u8> {
    let member_line = |m: &Member| {
        let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let role = m.tags.get("role").map(String::as_str).unwrap_or("");
        format!("{}\t{}\t{}\t{}\n", clean(&m.name), m.addr, clean(role), clean(&tags.join(",")))
    };
    let payload = |p: &[u8]| {
        let mut p = p.to_vec();
        if p.last().is_some_and(|&b| b != b'\n') {
            p.push(b'\n');
        }
        p
    };
    match inv {
        Invocation::Members { members, .. } => {
            members.iter().map(member_line).collect::<String>().into_bytes()
        }
        Invocation::Event(SerfEvent::User { payload: p, .. }) => payload(p),
        Invocation::Event(SerfEvent::Query(q)) => payload(&q.payload),
        Invocation::Event(e) => e.member().map(|m| member_line(m).into_bytes()).unwrap_or_default(),
    }
}

fn clean(v: &str) -> String {
    v.replace('\t', "\\t").replace('\n', "\\n")
}

/// Runs one script for one event; returns its stdout when it exited 0.
async fn invoke(
    script: &str,
    node: &str,
    tags: &BTreeMap<String, String>,
    inv: &Invocation,
) -> Option<Vec<u8>> {
    let kind = inv.kind();
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(script)
        .envs(environment(node, tags, inv))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(script, error = %e, "event-handlers: cannot start the script");
            return None;
        }
    };
    let input = stdin_for(inv);
    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            // A script that does not read its stdin is fine.
            let _ = stdin.write_all(&input).await;
        });
    }
    let stdout = child.stdout.take().map(|s| tokio::spawn(read_capped(s)));
    let stderr = child.stderr.take().map(|s| tokio::spawn(read_capped(s)));
    let began = tokio::time::Instant::now();
    let mut warned = false;
    let status = loop {
        let wait = if warned { HANDLER_TIMEOUT.saturating_sub(began.elapsed()) } else { SLOW_WARNING };
        match tokio::time::timeout(wait, child.wait()).await {
            Ok(s) => break Some(s),
            Err(_) if !warned => {
                warned = true;
                tracing::warn!(script, event = kind, "event-handlers: script slow, still running after 1 s");
            }
            Err(_) => break None,
        }
    };
    let Some(status) = status else {
        if let Some(pid) = child.id() {
            // The whole process group: the shell and whatever it started.
            let _ = std::process::Command::new("kill").args(["-KILL", &format!("-{pid}")]).status();
        }
        let _ = child.kill().await;
        tracing::error!(
            script,
            event = kind,
            timeout_s = HANDLER_TIMEOUT.as_secs(),
            "event-handlers: script killed at its deadline"
        );
        return None;
    };
    let (out, out_total) = match stdout {
        Some(t) => t.await.unwrap_or_default(),
        None => (Vec::new(), 0),
    };
    let (err, _) = match stderr {
        Some(t) => t.await.unwrap_or_default(),
        None => (Vec::new(), 0),
    };
    if out_total > OUTPUT_MAX_BYTES {
        tracing::warn!(
            script,
            bytes = out_total,
            kept = OUTPUT_MAX_BYTES,
            "event-handlers: script output truncated"
        );
    }
    match status {
        Ok(s) if s.success() => {
            tracing::debug!(script, event = kind, output = %String::from_utf8_lossy(&out), "event-handlers: script done");
            if !err.is_empty() {
                tracing::info!(script, event = kind, stderr = %String::from_utf8_lossy(&err), "event-handlers: script wrote to stderr");
            }
            Some(out)
        }
        Ok(s) => {
            tracing::error!(script, event = kind, status = %s, stdout = %String::from_utf8_lossy(&out),
                stderr = %String::from_utf8_lossy(&err), "event-handlers: script failed");
            None
        }
        Err(e) => {
            tracing::error!(script, error = %e, "event-handlers: cannot wait for the script");
            None
        }
    }
}

/// Reads a stream to its end, keeping the first [`OUTPUT_MAX_BYTES`]; returns them and the total.
async fn read_capped(mut r: impl tokio::io::AsyncRead + Unpin) -> (Vec<u8>, usize) {
    let (mut kept, mut total, mut buf) = (Vec::new(), 0usize, [0u8; 4096]);
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return (kept, total),
            Ok(n) => {
                total += n;
                let room = OUTPUT_MAX_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::serf::{QueryEvent, QueryKey};
    use crate::membership::MemberStatus;

    fn member(name: &str, tags: &[(&str, &str)]) -> Member {
        Member {
            name: name.into(),
            addr: "10.0.0.7".parse().unwrap(),
            port: 7946,
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            status: MemberStatus::Alive,
            vsn: [1, 5, 2, 2, 5, 4],
            incarnation: 1,
            status_ltime: 1,
            leave_time: None,
        }
    }

    fn ev(e: SerfEvent) -> Invocation {
        Invocation::Event(e)
    }

    fn joined(ms: &[Member]) -> Invocation {
        Invocation::Members { kind: "member-join", members: ms.to_vec() }
    }

    #[test]
    fn member_and_coalescable_user_events_are_batched_like_the_go_agent() {
        // Proves Serf's coalescing: member changes go out after 1 s of quiet (3 s at most), one
        // run per type with the latest state per member, a repeat of the last type is dropped;
        // coalescable user events keep the latest per name; others are not held at all.
        let t = Instant::now();
        let mut c = Coalescer::default();
        assert!(c.push(&SerfEvent::MemberJoin(member("a", &[])), t));
        assert!(c.push(&SerfEvent::MemberJoin(member("b", &[])), t + Duration::from_millis(500)));
        assert!(c.push(&SerfEvent::MemberFailed(member("b", &[])), t + Duration::from_millis(900)));
        assert!(c.take_due(t + Duration::from_millis(1800)).is_empty(), "not quiet for 1 s yet");
        assert_eq!(c.due(), Some(t + Duration::from_millis(1900)));
        let out = c.take_due(t + Duration::from_millis(1900));
        assert_eq!(
            out,
            vec![
                Invocation::Members { kind: "member-failed", members: vec![member("b", &[])] },
                joined(&[member("a", &[])]),
            ]
        );
        // A stream of changes still goes out 3 s after the first.
        for i in 0..10 {
            c.push(
                &SerfEvent::MemberJoin(member("a", &[])),
                t + Duration::from_secs(10) + Duration::from_millis(500 * i),
            );
        }
        assert_eq!(c.due(), Some(t + Duration::from_secs(13)));
        assert!(c.take_due(t + Duration::from_secs(13)).is_empty(), "a joined again: already sent as joined");
        let user =
            |ltime, cc| SerfEvent::User { ltime, name: "deploy".into(), payload: vec![], coalesce: cc };
        assert!(!c.push(&user(1, false), t));
        assert!(c.push(&user(5, true), t) && c.push(&user(4, true), t) && c.push(&user(6, true), t));
        assert_eq!(c.take_due(t + Duration::from_secs(1)), vec![ev(user(6, true))]);
        assert_eq!(c.due(), None);
    }

    #[test]
    fn handler_specs_parse_like_serf_and_bad_ones_say_why() {
        // Proves `[filter=]script` parsing: default `*`, comma lists, user:/query: names, and a
        // clear error for an unknown event or a missing script.
        let all = HandlerSpec::parse("/bin/handle.sh").unwrap();
        assert!(all.wants(&ev(SerfEvent::MemberJoin(member("a", &[])))));
        let some = HandlerSpec::parse("member-join,user:deploy=echo hi").unwrap();
        assert_eq!(some.script, "echo hi");
        assert!(some.wants(&joined(&[member("a", &[])])));
        assert!(!some.wants(&Invocation::Members { kind: "member-leave", members: vec![member("a", &[])] }));
        let deploy =
            ev(SerfEvent::User { ltime: 3, name: "deploy".into(), payload: vec![], coalesce: false });
        let other = ev(SerfEvent::User { ltime: 3, name: "other".into(), payload: vec![], coalesce: false });
        assert!(some.wants(&deploy) && !some.wants(&other));
        let e = HandlerSpec::parse("member-joined=x").unwrap_err();
        assert!(e.contains("member-joined") && e.contains("member-join,"), "{e}");
        assert!(HandlerSpec::parse("user=").unwrap_err().contains("needs a script"));
    }

    #[test]
    fn scripts_get_serfs_environment_and_stdin() {
        // Proves the environment and stdin a Go agent's script expects, for a member event, a
        // user event and a query.
        let tags: BTreeMap<String, String> = [("role", "web"), ("dc-name", "east 1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let join = joined(&[member("n\t1", &[("role", "db"), ("x", "y")]), member("b", &[])]);
        let env: BTreeMap<_, _> = environment("me", &tags, &join).into_iter().collect();
        assert_eq!(env["SERF_EVENT"], "member-join");
        assert_eq!(env["SERF_SELF_NAME"], "me");
        assert_eq!(env["SERF_SELF_ROLE"], "web");
        assert_eq!(env["SERF_TAG_DC_NAME"], "east 1");
        assert!(!env.contains_key("SERF_USER_EVENT"));
        assert_eq!(stdin_for(&join), b"n\\t1\t10.0.0.7\tdb\trole=db,x=y\nb\t10.0.0.7\t\t\n");

        let user =
            ev(SerfEvent::User { ltime: 9, name: "deploy".into(), payload: b"v2".to_vec(), coalesce: true });
        let env: BTreeMap<_, _> = environment("me", &tags, &user).into_iter().collect();
        assert_eq!(
            (env["SERF_EVENT"].as_str(), env["SERF_USER_EVENT"].as_str(), env["SERF_USER_LTIME"].as_str()),
            ("user", "deploy", "9")
        );
        assert_eq!(stdin_for(&user), b"v2\n");

        let q = ev(SerfEvent::Query(QueryEvent {
            key: QueryKey { ltime: 4, id: 1 },
            name: "uptime".into(),
            payload: b"x\n".to_vec(),
            source: "go1".into(),
            deadline: std::time::Instant::now(),
        }));
        let env: BTreeMap<_, _> = environment("me", &tags, &q).into_iter().collect();
        assert_eq!(
            (env["SERF_EVENT"].as_str(), env["SERF_QUERY_NAME"].as_str(), env["SERF_QUERY_LTIME"].as_str()),
            ("query", "uptime", "4")
        );
        assert_eq!(stdin_for(&q), b"x\n");
        let empty = ev(SerfEvent::User { ltime: 1, name: "e".into(), payload: vec![], coalesce: false });
        assert!(stdin_for(&empty).is_empty());
    }
}
