//! The API listener's accept loop: one TCP port for gRPC (HTTP/2), REST and WebSocket
//! (HTTP/1.1), served by hyper's auto builder with the router. It adds what `axum::serve`
//! cannot:
//! - TLS (rustls, from [`LiveTls`], current at each accept) when the node has certificates; a
//!   client that speaks plain HTTP or h2c to the TLS port gets a readable refusal (a JSON 400,
//!   or a gRPC UNAVAILABLE status for gRPC clients) instead of a broken handshake;
//! - a limit on open connections; over it a connection gets one RESOURCE_EXHAUSTED/503 answer
//!   and is closed (at most [`REFUSALS_MAX`] such answers at a time; beyond that, a plain close);
//! - per-connection bounds: header read time, HTTP/2 streams and header sizes;
//! - the [`Peer`] of each request (address, TLS, verified certificate) in its extensions, with
//!   `ConnectInfo<SocketAddr>`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::codegen::Service as _;

use crate::logging::throttle::Throttle;
use crate::tls::live::{LiveTls, PeerCert};

/// At most one warning per this long about refused connections (with how many were held back).
const REFUSED_WARN_EVERY: Duration = Duration::from_secs(10);

/// Open API connections allowed by default.
pub const CONNECTIONS_MAX: usize = 4096;
/// Connections answered with a refusal at the same time; more are closed without a word.
pub const REFUSALS_MAX: usize = 64;
/// Time for a TLS client to send its first byte and finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for an HTTP/1.1 client to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A refused connection is closed after this at the latest.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Concurrent HTTP/2 streams per connection (gRPC calls, watches).
pub const STREAMS_PER_CONNECTION_MAX: u32 = 1024;
/// Request headers per request, in bytes (HTTP/2 header list; HTTP/1.1 read buffer).
pub const HEADER_BYTES_MAX: u32 = 64 * 1024;

/// Who is at the other end of a request's connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The client's certificate, verified against the cluster CA, if it showed one.
    pub cert: Option<Arc<PeerCert>>,
}

/// How the listener serves.
#[derive(Clone)]
pub struct ListenOptions {
    /// TLS on every connection; none: plain HTTP and h2c.
    pub tls: Option<Arc<LiveTls>>,
    pub connections_max: usize,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions { tls: None, connections_max: CONNECTIONS_MAX }
    }
}

/// Why a connection is answered with a refusal.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    PlainOnTls,
    TooManyConnections { max: usize },
}

impl Refusal {
    fn answer(self) -> (tonic::Code, StatusCode, String) {
        match self {
            Refusal::PlainOnTls => (
                tonic::Code::Unavailable,
                StatusCode::BAD_REQUEST,
                "this port speaks TLS only: use https:// (curl --cacert CA), grpcurl -cacert CA instead of -plaintext, \
                 or the CLI's --ca-cert"
                    .to_string(),
            ),
            Refusal::TooManyConnections { max } => (
                tonic::Code::ResourceExhausted,
                StatusCode::SERVICE_UNAVAILABLE,
                format!("too many connections to this node (limit {max}); retry later"),
            ),
        }
    }
}

/// A gRPC request (its answer must be a gRPC status, not an HTTP error page).
pub fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The answer to a refused or denied request: a gRPC status for gRPC clients, else JSON
/// `{"error": message}` with `http`.
pub fn error_response(grpc: bool, code: tonic::Code, http: StatusCode, message: String) -> Response {
    if grpc {
        tonic::Status::new(code, message).into_http()
    } else {
        (http, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled; then stops accepting, asks every
/// connection to finish its requests, and waits for them (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    opts: ListenOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(opts.connections_max));
    let refusals = Arc::new(Semaphore::new(REFUSALS_MAX));
    let mut over_limit = Throttle::new(REFUSED_WARN_EVERY);
    let conns = TaskTracker::new();
    loop {
        let (tcp, addr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "api: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "api: cannot set TCP_NODELAY on a connection");
        }
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            if let Some(held_back) = over_limit.hit(std::time::Instant::now()) {
                tracing::warn!(peer.addr = %addr, max = opts.connections_max, held_back,
                    "api: too many connections; refusing");
            }
            if let Ok(r) = Arc::clone(&refusals).try_acquire_owned() {
                let (tls, refusal) =
                    (opts.tls.clone(), Refusal::TooManyConnections { max: opts.connections_max });
                conns.spawn(async move {
                    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, refuse_tcp(tcp, addr, tls, refusal)).await;
                    drop(r);
                });
            }
            continue;
        };
        let (app, tls, shutdown) = (app.clone(), opts.tls.clone(), shutdown.clone());
        let refusals = Arc::clone(&refusals);
        conns.spawn(async move {
            connection(tcp, addr, app, tls, refusals, shutdown).await;
            drop(permit);
        });
    }
    conns.close();
    conns.wait().await;
    Ok(())
}

/// Whether the client's first byte starts a TLS handshake record (0x16); `None` when it sent
/// nothing in time.
async fn starts_tls(tcp: &TcpStream) -> Option<bool> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => Some(first[0] == 0x16),
        _ => None,
    }
}

async fn connection(
    tcp: TcpStream,
    addr: SocketAddr,
    app: Router,
    tls: Option<Arc<LiveTls>>,
    refusals: Arc<Semaphore>,
    shutdown: CancellationToken,
) {
    let Some(tls) = tls else {
        let peer = Peer { addr, tls: false, cert: None };
        return serve_connection(TokioIo::new(tcp), peer, app, shutdown).await;
    };
    match starts_tls(&tcp).await {
        None => return,
        Some(false) => {
            if let Ok(r) = refusals.try_acquire_owned() {
                let answer = refuse(TokioIo::new(tcp), addr, Refusal::PlainOnTls);
                let _ = tokio::time::timeout(REFUSAL_TIMEOUT, answer).await;
                drop(r);
            }
            return;
        }
        Some(true) => {}
    }
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(peer.addr = %addr, error = %e, "api: TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(peer.addr = %addr, "api: TLS handshake timed out");
            return;
        }
    };
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| Arc::new(PeerCert::from_der(c)));
    serve_connection(TokioIo::new(stream), Peer { addr, tls: true, cert }, app, shutdown).await;
}

fn builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(HEADER_BYTES_MAX as usize * 2);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(STREAMS_PER_CONNECTION_MAX)
        .max_header_list_size(HEADER_BYTES_MAX);
    b
}

async fn serve_connection<I>(io: TokioIo<I>, peer: Peer, app: Router, shutdown: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let addr = peer.addr;
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer.addr));
        req.extensions_mut().insert(peer.clone());
        app.clone().call(req.map(axum::body::Body::new))
    });
    let builder = builder();
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(peer.addr = %addr, error = %e, "api: connection ended with an error");
            }
            return;
        }
        _ = shutdown.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Answers the connection's requests with `refusal` (TLS first when the listener has it).
async fn refuse_tcp(tcp: TcpStream, addr: SocketAddr, tls: Option<Arc<LiveTls>>, refusal: Refusal) {
    let Some(tls) = tls else { return refuse(TokioIo::new(tcp), addr, refusal).await };
    match starts_tls(&tcp).await {
        Some(true) => {
            if let Ok(Ok(s)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(tcp)).await {
                refuse(TokioIo::new(s), addr, refusal).await;
            }
        }
        Some(false) => refuse(TokioIo::new(tcp), addr, Refusal::PlainOnTls).await,
        None => {}
    }
}

/// Serves one connection whose every request gets `refusal`; closes it after the first answer.
async fn refuse<I>(io: TokioIo<I>, addr: SocketAddr, refusal: Refusal)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let answered = Arc::new(tokio::sync::Notify::new());
    let done = Arc::clone(&answered);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (code, http, message) = refusal.answer();
        let mut response = error_response(is_grpc(&req), code, http, message);
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        done.notify_one();
        std::future::ready(Ok::<_, std::convert::Infallible>(response))
    });
    let mut b = builder();
    b.http1().keep_alive(false);
    let conn = b.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = answered.notified() => {}
    }
    // Let the answer go out, then close.
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        tracing::debug!(peer.addr = %addr, error = %e, "api: refused connection ended with an error");
    }
}
