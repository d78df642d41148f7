//! Follower → leader forwarding of registry work (`muster.internal.v1.Forward`): a write, a
//! heartbeat or a read barrier that reaches a follower is handed to the leader, so any node
//! serves any call. The leader runs it locally and never forwards again (no loops).
//!
//! Payloads are JSON of the registry's own serde types; errors travel as [`RegistrarError`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use super::registrar::{Registrar, RegistrarError};
use crate::registry::{Command, ServiceId};

/// Generated code for `proto/muster/internal/v1/forward.proto`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("muster.internal.v1");
}

use pb::forward_client::ForwardClient;
use pb::forward_server::{Forward, ForwardServer};
use pb::Envelope;

/// A forwarded heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub id: ServiceId,
    pub ttl: Option<u32>,
}

fn to_envelope<T: Serialize>(v: &T) -> Result<Envelope, Status> {
    serde_json::to_vec(v)
        .map(|json| Envelope { json })
        .map_err(|e| Status::internal(format!("cannot encode a forwarded message: {e}")))
}

fn from_envelope<T: DeserializeOwned>(e: &Envelope) -> Result<T, String> {
    serde_json::from_slice(&e.json).map_err(|e| format!("undecodable forwarded message: {e}"))
}

/// The leader's side: runs forwarded work on the local registrar only.
pub struct ForwardService {
    registrar: Weak<Registrar>,
}

impl ForwardService {
    pub fn server(registrar: &Arc<Registrar>) -> ForwardServer<ForwardService> {
        ForwardServer::new(ForwardService { registrar: Arc::downgrade(registrar) })
    }

    fn registrar(&self) -> Result<Arc<Registrar>, Status> {
        self.registrar.upgrade().ok_or_else(|| Status::unavailable("node is stopping"))
    }
}

#[tonic::async_trait]
impl Forward for ForwardService {
    async fn propose(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let cmd: Command = from_envelope(req.get_ref()).map_err(Status::invalid_argument)?;
        let r = self.registrar()?.propose_local(&cmd).await;
        Ok(Response::new(to_envelope(&r)?))
    }

    async fn heartbeat(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let hb: HeartbeatRequest = from_envelope(req.get_ref()).map_err(Status::invalid_argument)?;
        let r = self.registrar()?.heartbeat_local(&hb.id, hb.ttl);
        Ok(Response::new(to_envelope(&r)?))
    }

    async fn read_index(&self, _req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let r = self.registrar()?.read_index_local().await;
        Ok(Response::new(to_envelope(&r)?))
    }
}

/// How deep [`may_have_arrived`] looks into an error's source chain.
const SOURCE_CHAIN_MAX: usize = 16;

/// Whether a failed forwarded call may have reached the leader, so that a forwarded proposal
/// may have been committed. Only two failures prove it did not: a connection that was never
/// established, and a status the leader itself sent (those come before any proposal, and
/// carry no transport error). A deadline, a reset or a dropped connection (a leader killed
/// mid-call) may come after the leader appended the entry and replicated it.
fn may_have_arrived(s: &Status) -> bool {
    if s.code() == tonic::Code::DeadlineExceeded {
        return true;
    }
    let mut source = std::error::Error::source(s);
    if source.is_none() {
        return false;
    }
    for _ in 0..SOURCE_CHAIN_MAX {
        match source {
            Some(e) if e.is::<tonic::ConnectError>() => return false,
            Some(e) => source = e.source(),
            None => break,
        }
    }
    true
}

/// The follower's side: one cached HTTP/2 channel per leader address.
#[derive(Default)]
pub struct Forwarder {
    channels: Mutex<HashMap<String, Channel>>,
    /// TLS to the leader; none: h2c.
    tls: Option<Arc<crate::tls::live::LiveTls>>,
}

/// Which forwarded call.
#[derive(Debug, Clone, Copy)]
pub enum Call {
    Propose,
    Heartbeat,
    ReadIndex,
}

impl Forwarder {
    pub fn new(tls: Option<Arc<crate::tls::live::LiveTls>>) -> Forwarder {
        Forwarder { channels: Mutex::new(HashMap::new()), tls }
    }

    fn channel(&self, addr: &str) -> Result<Channel, RegistrarError> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        if let Some(tls) = &self.tls {
            let c = crate::tls::dial::TlsDial::node(tls.clone(), Duration::from_secs(2))
                .channel(addr)
                .map_err(|e| RegistrarError::Unavailable(format!("bad leader address {addr:?}: {e}")))?;
            map.insert(addr.to_string(), c.clone());
            return Ok(c);
        }
        let c = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| RegistrarError::Unavailable(format!("bad leader address {addr:?}: {e}")))?
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        map.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Sends `body` to the leader at `addr` and decodes its `Result<T, RegistrarError>`.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        addr: &str,
        call: Call,
        body: &B,
        deadline: Duration,
    ) -> Result<T, RegistrarError> {
        let env = to_envelope(body).map_err(|s| RegistrarError::Unavailable(s.message().to_string()))?;
        let mut client = ForwardClient::new(self.channel(addr)?);
        let mut req = Request::new(env);
        req.set_timeout(deadline);
        let reply = match call {
            Call::Propose => client.propose(req).await,
            Call::Heartbeat => client.heartbeat(req).await,
            Call::ReadIndex => client.read_index(req).await,
        };
        let reply = reply.map_err(|s| {
            let what = format!("the leader at {addr} did not answer the forwarded {call:?}: {}", s.message());
            if matches!(call, Call::Propose) && may_have_arrived(&s) {
                RegistrarError::Unknown(format!(
                    "{what}; the write may still be applied, read before retrying"
                ))
            } else {
                RegistrarError::Unavailable(what)
            }
        })?;
        let r: Result<T, RegistrarError> =
            from_envelope(reply.get_ref()).map_err(RegistrarError::Unavailable)?;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Applied, NewService, Service};

    fn register() -> Command {
        let s = NewService::new(ServiceId::new("a1"), "cam", "http", "10.1.0.5", 8080);
        Command::Register { service: s, now_ms: 1_000 }
    }

    #[tokio::test]
    async fn a_forwarded_write_is_unavailable_only_when_it_cannot_have_reached_the_leader() {
        // Proves the outcome a follower reports when the leader fails mid-forward: a refused
        // connection (nothing sent) is Unavailable, so the client may simply retry; a leader
        // that takes the request and then drops the connection (killed mid-call) makes a
        // forwarded write Unknown, because it may have committed (a retry would then register
        // the service twice, or get ALREADY_EXISTS for a write it was told failed). A
        // heartbeat in the same situation stays Unavailable (renewing twice is harmless).
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_addr = closed.local_addr().unwrap().to_string();
        drop(closed);
        let f = Forwarder::default();
        let deadline = Duration::from_secs(5);
        let r = f.call::<_, Applied>(&closed_addr, Call::Propose, &register(), deadline).await;
        assert!(
            matches!(r, Err(RegistrarError::Unavailable(_))),
            "a refused connection is Unavailable: {r:?}"
        );

        // A "leader" that reads the request and then dies.
        let dying = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dying_addr = dying.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let Ok((mut conn, _)) = dying.accept().await else { return };
                let mut buf = vec![0u8; 64 * 1024];
                let read = tokio::time::timeout(Duration::from_millis(300), async {
                    use tokio::io::AsyncReadExt as _;
                    while conn.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                });
                let _ = read.await;
                drop(conn);
            }
        });
        let r = f.call::<_, Applied>(&dying_addr, Call::Propose, &register(), deadline).await;
        match &r {
            Err(RegistrarError::Unknown(m)) => assert!(m.contains("may still be applied"), "{m}"),
            other => panic!("a write whose leader died mid-call has an unknown outcome, got {other:?}"),
        }
        let hb = HeartbeatRequest { id: ServiceId::new("a1"), ttl: None };
        let r = f.call::<_, Service>(&dying_addr, Call::Heartbeat, &hb, deadline).await;
        assert!(matches!(r, Err(RegistrarError::Unavailable(_))), "a heartbeat stays Unavailable: {r:?}");
        server.abort();
    }
}
