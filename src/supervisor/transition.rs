//! Which stack this host wants, from who the server is: a pure state machine fed with the
//! leadership this node sees, returning each transition with its reason and the hooks it runs.
//!
//! Rules (fencing, see DESIGN.md):
//! - **Server** (leader, quorum lease valid, lock delay over): the server stack at epoch = the
//!   raft term, once the node has been server for the *stack delay* (the stack stop timeout
//!   plus a margin): a cut-off previous server began stopping its stack when its lease lapsed,
//!   before this node could be elected, and docker stops a container within the stop timeout,
//!   so the old stack is down before this one starts. One leader per term, so the term alone
//!   is a fencing token that only grows.
//! - **Proxy** (a known leader elsewhere): the proxy stack pointed at that leader. Its epoch is
//!   the term in which this host first saw that server, so a re-election of the same server
//!   does not recreate the proxies; a new server does (new epoch, new `MUSTER_SERVER_HOST`).
//! - **Unknown** (election running, lease lapsed, lock delay running): a server stack stops at
//!   once (its lease may be gone); a proxy stack keeps running, pointed at the last server,
//!   until a new one is known.
//! - An agent-role host never wants the server stack.
//!
//! Hooks: `promote` when this host becomes the server, `demote` when it stops being it,
//! `server_change` whenever the server this host points at changes. Must not import anything
//! outside `supervisor`.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::spec::StackKind;

/// The node's role as the leadership watch reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewRole {
    Server,
    Proxy,
    Unknown,
}

/// What the supervisor needs from one leadership value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderView {
    pub role: ViewRole,
    pub term: u64,
    /// The leader's node name and API address (`host:port`), when known.
    pub leader_name: Option<String>,
    pub leader_addr: Option<String>,
}

/// The server a stack points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerRef {
    pub node: String,
    /// The server's host (the API address without its port): `MUSTER_SERVER_HOST`.
    pub host: String,
    /// The server's API address: `MUSTER_SERVER_ADDR`.
    pub addr: String,
}

impl ServerRef {
    /// From a node name and its `host:port` API address (IPv6 hosts come without brackets).
    pub fn new(node: &str, addr: &str) -> ServerRef {
        let host = match addr.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
            _ => addr,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerRef { node: node.to_string(), host: host.to_string(), addr: addr.to_string() }
    }
}

/// What this host wants to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Want {
    /// `None`: no stack.
    pub stack: Option<StackKind>,
    pub epoch: u64,
    /// The server the stack points at (this host itself for the server stack).
    pub server: Option<ServerRef>,
}

impl Want {
    pub fn nothing() -> Want {
        Want { stack: None, epoch: 0, server: None }
    }
}

/// A transition hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    Promote,
    Demote,
    ServerChange,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Promote => "on-promote",
            Hook::Demote => "on-demote",
            Hook::ServerChange => "on-server-change",
        }
    }
}

/// One change of what this host wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub from: Want,
    pub to: Want,
    pub reason: String,
    pub hooks: Vec<Hook>,
}

/// The state machine: what this host wants now.
#[derive(Debug, Clone)]
pub struct Transitions {
    me: ServerRef,
    agent: bool,
    want: Want,
    /// How long a node is server before it wants the server stack.
    stack_delay: Duration,
    /// Since when this node is server, and in which term.
    server_since: Option<(u64, Instant)>,
}

impl Transitions {
    /// `me`: this host's name and API address; `agent`: never the server stack.
    pub fn new(me: ServerRef, agent: bool, stack_delay: Duration) -> Transitions {
        Transitions { me, agent, want: Want::nothing(), stack_delay, server_since: None }
    }

    /// When to observe again although the leadership did not change: the end of the stack
    /// delay, while one runs.
    pub fn wake_at(&self) -> Option<Instant> {
        let (_, since) = self.server_since?;
        (self.want.stack != Some(StackKind::Server)).then(|| since + self.stack_delay)
    }

    pub fn want(&self) -> &Want {
        &self.want
    }

    /// Feeds one leadership value; returns the change it causes, if any.
    pub fn observe(&mut self, v: &LeaderView, now: Instant) -> Option<Change> {
        let serving = v.role == ViewRole::Server && !self.agent;
        match self.server_since {
            Some((term, _)) if serving && term == v.term => {}
            _ if serving => self.server_since = Some((v.term, now)),
            _ => self.server_since = None,
        }
        let (next, reason) = self.next(v, now);
        if next == self.want {
            return None;
        }
        let from = std::mem::replace(&mut self.want, next.clone());
        let was_server = from.stack == Some(StackKind::Server);
        let is_server = next.stack == Some(StackKind::Server);
        let mut hooks = Vec::new();
        if is_server && !was_server {
            hooks.push(Hook::Promote);
        }
        if was_server && !is_server {
            hooks.push(Hook::Demote);
        }
        let server_of = |w: &Want| w.server.as_ref().map(|s| (s.node.clone(), s.addr.clone()));
        if server_of(&next).is_some() && server_of(&next) != server_of(&from) {
            hooks.push(Hook::ServerChange);
        }
        Some(Change { from, to: next, reason, hooks })
    }

    fn next(&self, v: &LeaderView, now: Instant) -> (Want, String) {
        let current = &self.want;
        let delay_left = self
            .server_since
            .map(|(_, since)| (since + self.stack_delay).saturating_duration_since(now))
            .unwrap_or_default();
        match v.role {
            ViewRole::Server if self.agent => {
                (current.clone(), "this node has the agent role and never runs the server stack".to_string())
            }
            ViewRole::Server if current.stack != Some(StackKind::Server) && !delay_left.is_zero() => (
                current.clone(),
                format!("server; the server stack starts in {delay_left:?}, once a previous server's stack is down"),
            ),
            ViewRole::Server => (
                Want { stack: Some(StackKind::Server), epoch: v.term, server: Some(self.me.clone()) },
                format!("this node is the server (term {}, quorum lease held, lock delay over)", v.term),
            ),
            ViewRole::Proxy => {
                let (Some(name), Some(addr)) = (&v.leader_name, &v.leader_addr) else {
                    return (current.clone(), "the leader's name or address is not known yet".into());
                };
                let server = ServerRef::new(name, addr);
                let same_server = current.stack == Some(StackKind::Proxy)
                    && current
                        .server
                        .as_ref()
                        .is_some_and(|s| s.node == server.node && s.addr == server.addr);
                let epoch = if same_server { current.epoch } else { v.term };
                let reason = format!("the server is {} at {} (term {})", server.node, server.addr, v.term);
                (Want { stack: Some(StackKind::Proxy), epoch, server: Some(server) }, reason)
            }
            ViewRole::Unknown if current.stack == Some(StackKind::Server) => (
                Want { stack: None, epoch: current.epoch, server: None },
                "fenced: this node no longer holds the quorum lease (leadership lost or a quorum is \
                 unreachable)"
                    .to_string(),
            ),
            ViewRole::Unknown => (current.clone(), "no server is known; the proxies stay as they are".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Instant {
        Instant::now()
    }

    fn me() -> ServerRef {
        ServerRef::new("n1", "10.0.0.1:9999")
    }

    fn view(role: ViewRole, term: u64, leader: Option<(&str, &str)>) -> LeaderView {
        LeaderView {
            role,
            term,
            leader_name: leader.map(|l| l.0.to_string()),
            leader_addr: leader.map(|l| l.1.to_string()),
        }
    }

    #[test]
    fn a_server_gets_the_server_stack_at_its_term_and_is_fenced_when_the_lease_lapses() {
        // Proves the server rule: server stack at epoch = term with promote and server-change
        // hooks; on Unknown it wants nothing at once (demote), and a later term is a new epoch.
        let mut t = Transitions::new(me(), false, Duration::ZERO);
        let c = t.observe(&view(ViewRole::Server, 4, Some(("n1", "10.0.0.1:9999"))), now()).unwrap();
        assert_eq!(c.to.stack, Some(StackKind::Server));
        assert_eq!(c.to.epoch, 4);
        assert_eq!(c.to.server.as_ref().unwrap().host, "10.0.0.1");
        assert_eq!(c.hooks, vec![Hook::Promote, Hook::ServerChange]);
        assert_eq!(t.observe(&view(ViewRole::Server, 4, Some(("n1", "10.0.0.1:9999"))), now()), None);

        let c = t.observe(&view(ViewRole::Unknown, 4, None), now()).unwrap();
        assert_eq!(c.to.stack, None, "fenced: {}", c.reason);
        assert!(c.reason.starts_with("fenced"), "{}", c.reason);
        assert_eq!(c.hooks, vec![Hook::Demote]);
        let c = t.observe(&view(ViewRole::Server, 6, Some(("n1", "10.0.0.1:9999"))), now()).unwrap();
        assert_eq!((c.to.stack, c.to.epoch), (Some(StackKind::Server), 6));
    }

    #[test]
    fn proxies_follow_a_new_server_but_not_a_re_election_of_the_same_one() {
        // Proves the proxy rule: epoch = the term the server was first seen in; a new term with
        // the same server changes nothing; a new server is a change with a new epoch and the
        // server-change hook; Unknown keeps the proxies as they are.
        let mut t = Transitions::new(me(), false, Duration::ZERO);
        let c = t.observe(&view(ViewRole::Proxy, 3, Some(("n2", "10.0.0.2:9999"))), now()).unwrap();
        assert_eq!((c.to.stack, c.to.epoch), (Some(StackKind::Proxy), 3));
        assert_eq!(c.to.server.as_ref().unwrap().host, "10.0.0.2");
        assert_eq!(c.hooks, vec![Hook::ServerChange]);
        assert_eq!(t.observe(&view(ViewRole::Proxy, 5, Some(("n2", "10.0.0.2:9999"))), now()), None);
        assert_eq!(
            t.observe(&view(ViewRole::Unknown, 6, None), now()),
            None,
            "proxies stay during an election"
        );
        let c = t.observe(&view(ViewRole::Proxy, 7, Some(("n3", "10.0.0.3:9999"))), now()).unwrap();
        assert_eq!((c.to.epoch, c.to.server.as_ref().unwrap().node.as_str()), (7, "n3"));
        assert_eq!(c.hooks, vec![Hook::ServerChange]);
        // A leader whose address is not known yet changes nothing.
        assert_eq!(t.observe(&view(ViewRole::Proxy, 8, None), now()), None);
    }

    #[test]
    fn switching_roles_runs_the_right_hooks_and_an_agent_never_serves() {
        // Proves proxy→server (promote, server-change), server→proxy (demote, server-change),
        // and that an agent-role node ignores a Server view.
        let mut t = Transitions::new(me(), false, Duration::ZERO);
        t.observe(&view(ViewRole::Proxy, 3, Some(("n2", "10.0.0.2:9999"))), now());
        let c = t.observe(&view(ViewRole::Server, 4, Some(("n1", "10.0.0.1:9999"))), now()).unwrap();
        assert_eq!(c.hooks, vec![Hook::Promote, Hook::ServerChange]);
        let c = t.observe(&view(ViewRole::Proxy, 5, Some(("n2", "10.0.0.2:9999"))), now()).unwrap();
        assert_eq!(c.hooks, vec![Hook::Demote, Hook::ServerChange]);
        assert_eq!(c.to.stack, Some(StackKind::Proxy));

        let mut agent = Transitions::new(me(), true, Duration::ZERO);
        assert_eq!(agent.observe(&view(ViewRole::Server, 4, Some(("n1", "10.0.0.1:9999"))), now()), None);
        assert_eq!(agent.want().stack, None);
    }

    #[test]
    fn server_addresses_split_into_host_and_address() {
        // Proves MUSTER_SERVER_HOST derivation for IPv4, IPv6 and names.
        assert_eq!(ServerRef::new("a", "10.1.2.3:9999").host, "10.1.2.3");
        assert_eq!(ServerRef::new("a", "[fd00::1]:9999").host, "fd00::1");
        assert_eq!(ServerRef::new("a", "server.lan:9999").host, "server.lan");
        assert_eq!(ServerRef::new("a", "server.lan").host, "server.lan");
    }

    #[test]
    fn the_server_stack_waits_the_stack_delay_in_the_same_term() {
        // Proves the stack delay: a new server keeps its old want until it has been server for
        // the delay (wake_at says when), a lease lapse restarts the wait, and a new term too.
        let t0 = Instant::now();
        let delay = Duration::from_secs(11);
        let mut t = Transitions::new(me(), false, delay);
        t.observe(&view(ViewRole::Proxy, 3, Some(("n2", "10.0.0.2:9999"))), t0);
        let server = view(ViewRole::Server, 4, Some(("n1", "10.0.0.1:9999")));
        assert_eq!(t.observe(&server, t0), None, "no server stack yet");
        assert_eq!(t.want().stack, Some(StackKind::Proxy));
        assert_eq!(t.wake_at(), Some(t0 + delay));
        assert_eq!(t.observe(&server, t0 + Duration::from_secs(10)), None);
        let c = t.observe(&server, t0 + delay).unwrap();
        assert_eq!((c.to.stack, c.to.epoch), (Some(StackKind::Server), 4));
        assert_eq!(t.wake_at(), None);

        let t1 = t0 + Duration::from_secs(20);
        assert_eq!(t.observe(&view(ViewRole::Unknown, 4, None), t1).unwrap().to.stack, None);
        assert_eq!(t.observe(&server, t1 + Duration::from_secs(1)), None, "the wait starts again");
        assert_eq!(t.wake_at(), Some(t1 + Duration::from_secs(1) + delay));
    }
}
