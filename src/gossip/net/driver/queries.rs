//! The driver's side of Serf queries: starting ours and routing their answers, sending answers
//! as direct user messages, Serf's internal queries (`_serf_ping`, `_serf_conflict` and the
//! four key queries that change or list this node's keyring), the key manager that runs a key
//! query across the cluster and adds up the answers, and tags set over Serf RPC on top of the
//! node's own.
//!
//! Upstream: hashicorp/serf `serf/internal_query.go` and `serf/keymanager.go`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use tokio::sync::mpsc;

use super::{Driver, GossipHandle, Sec};
use crate::gossip::net::GossipError;
use crate::gossip::serf::{QueryEvent, QueryKey, QueryParams, QueryReply, INTERNAL_QUERY_PREFIX};
use crate::gossip::swim::{ip_from_bytes, ip_to_bytes};
use crate::gossip::wire::{
    decode_key, decode_raw, encode_packets, encode_tags, serf_type, Keyring, Message, PacketOptions,
    SerfConflictMember, SerfKeyRequest, SerfKeyResponse,
};
use crate::membership::MemberStatus;
use crate::metrics::{Direction, Transport, GOSSIP};

/// Serf's `QueryTimeoutMult`: a query's default timeout is gossip interval × this × ⌈log10(n+1)⌉.
const QUERY_TIMEOUT_MULT: u32 = 16;
/// Answers buffered per running query at most (beyond it they are dropped with a warning).
const QUERY_REPLIES_MAX: usize = 4096;
/// A key query waits at least this long for every member (it ends as soon as all answered):
/// the default of a small cluster on a fast profile (1.6 s) reported a loaded member's late
/// answer as a failed rotation step.
const KEY_QUERY_TIMEOUT_MIN: std::time::Duration = std::time::Duration::from_secs(5);
/// How often a conflict over our name is put to the cluster at most.
const CONFLICT_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);
/// The shortest base64 key (16 bytes), for sizing a truncated key list.
const MIN_ENCODED_KEY_LEN: usize = 25;

/// The answers to one query we sent, until its deadline.
pub struct QueryStream {
    pub key: QueryKey,
    /// Members alive when it was sent (how many answers a key query expects).
    pub expected: usize,
    pub deadline: Instant,
    rx: mpsc::Receiver<QueryReply>,
}

impl QueryStream {
    /// The next ack or response; `None` once the deadline has passed.
    pub async fn next(&mut self) -> Option<QueryReply> {
        self.rx.recv().await
    }
}

/// The four keyring operations Serf runs as internal queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOp {
    Install,
    Use,
    Remove,
    List,
}

impl KeyOp {
    fn query(self) -> &'static str {
        match self {
            KeyOp::Install => "install-key",
            KeyOp::Use => "use-key",
            KeyOp::Remove => "remove-key",
            KeyOp::List => "list-keys",
        }
    }

    fn parse(internal: &str) -> Option<KeyOp> {
        [KeyOp::Install, KeyOp::Use, KeyOp::Remove, KeyOp::List].into_iter().find(|op| op.query() == internal)
    }
}

/// What a key query found across the cluster (Serf's `KeyResponse`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyOpResult {
    /// Member → its message (errors, and warnings such as a truncated key list).
    pub messages: BTreeMap<String, String>,
    /// Key → how many members hold it (list only).
    pub keys: BTreeMap<String, usize>,
    /// Primary key → how many members use it (list only).
    pub primary_keys: BTreeMap<String, usize>,
    pub num_nodes: usize,
    pub num_resp: usize,
    pub num_err: usize,
    /// Set when some member failed or did not answer in time.
    pub error: Option<String>,
}

impl KeyOpResult {
    /// Adds one member's answer (the payload of its query response).
    fn add(&mut self, from: String, payload: &[u8]) {
        self.num_resp += 1;
        let resp = match payload.split_first() {
            Some((&serf_type::KEY_RESPONSE, body)) => decode_raw::<SerfKeyResponse>(body),
            _ => {
                self.messages.insert(from, format!("Invalid key query response type: {payload:?}"));
                self.num_err += 1;
                return;
            }
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                self.messages.insert(from, format!("Failed to decode key query response: {e}"));
                self.num_err += 1;
                return;
            }
        };
        if !resp.result {
            self.num_err += 1;
        }
        if !resp.message.is_empty() {
            self.messages.insert(from, resp.message);
        }
        for k in resp.keys {
            *self.keys.entry(k).or_default() += 1;
        }
        if resp.result {
            *self.primary_keys.entry(resp.primary_key).or_default() += 1;
        }
    }
}

impl GossipHandle {
    /// Runs a key query across the cluster (Serf's key manager): every member alive changes
    /// (or lists) its keyring and answers; the result says who failed or did not answer.
    pub async fn key_op(&self, op: KeyOp, key: &str) -> Result<KeyOpResult, GossipError> {
        let raw = match op {
            KeyOp::List => Vec::new(),
            _ => decode_key(key).map_err(GossipError::Wire)?,
        };
        let mut payload = vec![serf_type::KEY_REQUEST];
        payload.extend(rmp_serde::to_vec_named(&SerfKeyRequest { key: raw }).map_err(|e| {
            GossipError::Wire(crate::gossip::wire::WireError::Encode {
                context: "key request",
                reason: e.to_string(),
            })
        })?);
        let name = format!("{INTERNAL_QUERY_PREFIX}{}", op.query());
        let mut stream = self.query(&name, &payload, QueryParams::default()).await?;
        let mut result = KeyOpResult { num_nodes: stream.expected, ..KeyOpResult::default() };
        while result.num_resp < result.num_nodes {
            match stream.next().await {
                Some(QueryReply::Response { from, payload }) => result.add(from, &payload),
                Some(QueryReply::Ack { .. }) => {}
                None => break,
            }
        }
        result.error = if result.num_err != 0 {
            Some(format!("{}/{} nodes reported failure", result.num_err, result.num_nodes))
        } else if result.num_resp != result.num_nodes {
            Some(format!("{}/{} nodes reported success", result.num_resp, result.num_nodes))
        } else {
            None
        };
        Ok(result)
    }
}

impl Driver {
    /// Starts a query of ours; a zero timeout becomes Serf's default for the cluster size.
    pub(super) fn start_query(
        &mut self,
        name: &str,
        payload: &[u8],
        mut params: QueryParams,
        now: Instant,
    ) -> Result<QueryStream, GossipError> {
        let expected = self.swim.num_live();
        if params.timeout.is_zero() {
            let log = ((expected + 1) as f64).log10().ceil().max(1.0) as u32;
            params.timeout = self.timing.gossip_interval * QUERY_TIMEOUT_MULT * log;
            let key_query = name.strip_prefix(INTERNAL_QUERY_PREFIX).and_then(KeyOp::parse).is_some();
            if key_query {
                params.timeout = params.timeout.max(KEY_QUERY_TIMEOUT_MIN);
            }
        }
        let deadline = now + params.timeout;
        let (tx, rx) = mpsc::channel((expected * 2).clamp(16, QUERY_REPLIES_MAX));
        let key = self.serf.query(name, payload, &params, now)?;
        self.queries.insert(key.ltime, tx);
        Ok(QueryStream { key, expected, deadline, rx })
    }

    pub(super) fn route_reply(&mut self, ltime: u64, reply: QueryReply) {
        let Some(tx) = self.queries.get(&ltime) else { return };
        if tx.try_send(reply).is_err() {
            tracing::warn!(ltime, "serf: a query's asker is not taking answers; dropping one");
        }
    }

    /// Sends a Serf message straight to `to` as a memberlist user message.
    pub(super) fn send_user(&mut self, to: SocketAddr, payload: Vec<u8>) {
        let msg = Message::User(payload).encode();
        let opts = PacketOptions { crc: false, compress: false };
        match encode_packets(&[msg], self.timing.udp_buffer_bytes, opts, &self.sec.get().view()) {
            Ok(packets) => {
                let mut sent_bytes = 0;
                for p in packets {
                    match self.udp.try_send_to(&p, to) {
                        Ok(n) => sent_bytes += n,
                        Err(e) => tracing::debug!(peer.addr = %to, error = %e, "gossip: udp send failed"),
                    }
                }
                GOSSIP.traffic(Transport::Udp, Direction::Sent, 1, sent_bytes as u64);
            }
            Err(e) => tracing::warn!(peer.addr = %to, error = %e, "gossip: cannot encode a direct message"),
        }
    }

    /// Serf's own queries: answered here, never shown to event handlers or streams.
    pub(super) fn internal_query(&mut self, q: &QueryEvent) {
        let name = &q.name[INTERNAL_QUERY_PREFIX.len()..];
        let answer = match name {
            "ping" => return,
            "conflict" => match self.conflict_answer(&q.payload) {
                Some(a) => a,
                None => return,
            },
            other => match KeyOp::parse(other) {
                Some(op) => self.key_answer(op, &q.payload),
                None => {
                    tracing::warn!(query = %q.name, "serf: unhandled internal query");
                    return;
                }
            },
        };
        if let Err(e) = self.serf.respond(q.key, &answer, Instant::now()) {
            tracing::warn!(query = %q.name, error = %e, "serf: cannot answer an internal query");
        }
    }

    /// Our view of a member whose name is in conflict (Serf's `conflictResponse`).
    fn conflict_answer(&self, payload: &[u8]) -> Option<Vec<u8>> {
        let node = String::from_utf8_lossy(payload);
        if node == self.node {
            return None;
        }
        tracing::debug!(member = %node, "serf: conflict resolution query");
        let member = self.serf.member(&node).map(|m| SerfConflictMember {
            name: m.name.clone(),
            addr: ip_to_bytes(m.addr),
            port: m.port,
            tags: m.tags.clone().into_iter().collect(),
            status: match m.status {
                MemberStatus::None => 0,
                MemberStatus::Alive => 1,
                MemberStatus::Leaving => 2,
                MemberStatus::Left => 3,
                MemberStatus::Failed => 4,
            },
            protocol_min: m.vsn[0],
            protocol_max: m.vsn[1],
            protocol_cur: m.vsn[2],
            delegate_min: m.vsn[3],
            delegate_max: m.vsn[4],
            delegate_cur: m.vsn[5],
        });
        let mut out = vec![serf_type::CONFLICT_RESPONSE];
        match rmp_serde::to_vec_named(&member) {
            Ok(b) => out.extend(b),
            Err(e) => {
                tracing::warn!(error = %e, "serf: cannot encode a conflict answer");
                return None;
            }
        }
        Some(out)
    }

    /// Changes or lists our keyring for a key query and says how it went.
    fn key_answer(&mut self, op: KeyOp, payload: &[u8]) -> Vec<u8> {
        let mut resp = SerfKeyResponse::default();
        let sec = self.sec.get();
        match (&sec.keyring, op) {
            (None, KeyOp::List) => resp.message = "Keyring is empty (encryption not enabled)".into(),
            (None, _) => resp.message = "No keyring to modify (encryption not enabled)".into(),
            (Some(ring), KeyOp::List) => {
                tracing::info!("serf: received list-keys query");
                resp.keys = ring.to_base64_list();
                resp.primary_key = resp.keys.first().cloned().unwrap_or_default();
                resp.result = true;
            }
            (Some(ring), _) => {
                tracing::info!(query = op.query(), "serf: received key query");
                match self.change_keyring(ring, op, payload) {
                    Ok(()) => resp.result = true,
                    Err(e) => {
                        tracing::warn!(query = op.query(), error = %e, "serf: key query failed");
                        resp.message = e;
                    }
                }
            }
        }
        encode_key_answer(op, resp)
    }

    fn change_keyring(&mut self, ring: &Keyring, op: KeyOp, payload: &[u8]) -> Result<(), String> {
        let req = match payload.split_first() {
            Some((&serf_type::KEY_REQUEST, body)) => {
                decode_raw::<SerfKeyRequest>(body).map_err(|e| format!("cannot decode key request: {e}"))?
            }
            _ => return Err("key request has the wrong message type".into()),
        };
        let mut ring = ring.clone();
        let changed = match op {
            KeyOp::Install => ring.install(req.key),
            KeyOp::Use => ring.use_key(&req.key),
            KeyOp::Remove => ring.remove(&req.key),
            KeyOp::List => Ok(()),
        };
        changed.map_err(|e| e.to_string())?;
        if let Some(path) = &self.keyring_path {
            write_keyring(path, &ring)
                .map_err(|e| format!("cannot write keyring file {}: {e}", path.display()))?;
        }
        let label = self.sec.get().label.clone();
        self.sec.set(Sec { label, keyring: Some(ring) });
        Ok(())
    }

    /// Someone else claims our name: ask the cluster whom it knows by that name (Serf's
    /// `resolveNodeConflict`), at most once per [`CONFLICT_RECHECK`].
    pub(super) fn name_conflict(&mut self, other: SocketAddr, now: Instant) {
        if self.conflict_checked.is_some_and(|t| now.duration_since(t) < CONFLICT_RECHECK) {
            return;
        }
        self.conflict_checked = Some(now);
        tracing::error!(peer.addr = %other, node.id = %self.node,
            "gossip: another member claims this node's name; asking the cluster which one it knows (names must be unique)");
        let name = format!("{INTERNAL_QUERY_PREFIX}conflict");
        let mut answers =
            match self.start_query(&name, &self.node.clone().into_bytes(), QueryParams::default(), now) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "gossip: cannot start the name-conflict query");
                    return;
                }
            };
        let Some(me) = self.swim.node(&self.node).map(|n| (n.addr, n.port)) else { return };
        let tx = self.int_tx.clone();
        tokio::spawn(async move {
            let (mut responses, mut matching) = (0, 0);
            while let Some(reply) = answers.next().await {
                let QueryReply::Response { from, payload } = reply else { continue };
                let member = match payload.split_first() {
                    Some((&serf_type::CONFLICT_RESPONSE, body)) => {
                        decode_raw::<Option<SerfConflictMember>>(body)
                    }
                    _ => {
                        tracing::warn!(member = %from, "gossip: a name-conflict answer of the wrong type");
                        continue;
                    }
                };
                let Ok(Some(m)) = member else { continue };
                responses += 1;
                if ip_from_bytes(&m.addr) == Some(me.0) && m.port == me.1 {
                    matching += 1;
                }
            }
            let _ = tx.send(super::Internal::ConflictVerdict { responses, matching }).await;
        });
    }

    /// The cluster's answer: a majority knowing our address keeps us; otherwise we must stop.
    pub(super) fn conflict_verdict(&mut self, responses: usize, matching: usize) {
        let majority = responses / 2 + 1;
        if matching >= majority {
            tracing::info!(
                matching,
                responses,
                "gossip: the cluster knows this node by its name (majority in the name conflict)"
            );
            return;
        }
        tracing::error!(matching, responses, node.id = %self.node,
            "gossip: the cluster knows another member by this node's name (minority in the name conflict); \
             this node stops: give it a unique --node name");
        if let Some(t) = &self.name_lost {
            t.cancel();
        }
    }

    /// Replaces the node's own tags (the Serf RPC overlay stays on top).
    pub(super) fn apply_tags(
        &mut self,
        base: &BTreeMap<String, String>,
        overlay: &BTreeMap<String, Option<String>>,
        now: Instant,
    ) -> Result<(), GossipError> {
        let meta = encode_tags(&apply_overlay(base, overlay)).map_err(GossipError::Wire)?;
        self.swim.set_meta(meta);
        if let Some(me) = self.swim.node(&self.node).cloned() {
            self.serf.handle_member_event(crate::gossip::swim::MemberEvent::Update(me), now);
        }
        Ok(())
    }

    /// Serf RPC `tags`: deletes, then sets, on the overlay; persisted before it is gossiped.
    pub(super) fn update_tags(
        &mut self,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
        now: Instant,
    ) -> Result<(), GossipError> {
        let mut overlay = self.tag_overlay.clone();
        for k in delete {
            overlay.insert(k, None);
        }
        for (k, v) in set {
            overlay.insert(k, Some(v));
        }
        // Fails (and changes nothing) when the tags would not fit in the member's meta.
        encode_tags(&apply_overlay(&self.base_tags, &overlay)).map_err(GossipError::Wire)?;
        if let Some(path) = &self.tags_path {
            let text = serde_json::to_string_pretty(&overlay).unwrap_or_default();
            write_private(path, &text).map_err(GossipError::Io)?;
        }
        self.apply_tags(&self.base_tags.clone(), &overlay, now)?;
        self.tag_overlay = overlay;
        Ok(())
    }
}

/// The tags a member gossips: the node's own, with the RPC overlay applied.
pub(super) fn apply_overlay(
    base: &BTreeMap<String, String>,
    overlay: &BTreeMap<String, Option<String>>,
) -> BTreeMap<String, String> {
    let mut tags = base.clone();
    for (k, v) in overlay {
        match v {
            Some(v) => tags.insert(k.clone(), v.clone()),
            None => tags.remove(k),
        };
    }
    tags
}

/// The tag overlay kept by an earlier run, if any (a damaged file is reported and ignored).
pub(super) fn load_tag_overlay(path: Option<&Path>) -> BTreeMap<String, Option<String>> {
    let Some(path) = path else { return BTreeMap::new() };
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "gossip: ignoring an unreadable tags file");
            BTreeMap::new()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "gossip: cannot read the tags file");
            BTreeMap::new()
        }
    }
}

/// Serf's keyring file: a JSON list of base64 keys, primary first, readable by us only.
pub fn write_keyring(path: &Path, ring: &Keyring) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(&ring.to_base64_list()).map_err(std::io::Error::other)?;
    write_private(path, &text)
}

/// Writes `text` to `path` through a temporary file, mode 0600.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        use std::io::Write;
        let mut f = opts.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// `[keyResponse type]` + msgpack; a key list that would not fit in a query response is
/// truncated with a message saying so, as Serf does.
fn encode_key_answer(op: KeyOp, mut resp: SerfKeyResponse) -> Vec<u8> {
    let encode = |r: &SerfKeyResponse| {
        let mut out = vec![serf_type::KEY_RESPONSE];
        out.extend(rmp_serde::to_vec_named(r).unwrap_or_default());
        out
    };
    if op != KeyOp::List {
        return encode(&resp);
    }
    let total = resp.keys.len();
    let mut keep = total.min(crate::gossip::serf::QUERY_RESPONSE_SIZE_LIMIT / MIN_ENCODED_KEY_LEN);
    loop {
        resp.keys.truncate(keep);
        if keep < total {
            resp.message = format!("truncated key list response, showing first {keep} of {total} keys");
        }
        let out = encode(&resp);
        // Room for the query-response envelope around the payload.
        if out.len() + 64 <= crate::gossip::serf::QUERY_RESPONSE_SIZE_LIMIT || keep == 0 {
            return out;
        }
        keep -= 1;
    }
}
