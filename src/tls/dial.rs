//! gRPC channels over TLS: a connector for tonic's `Endpoint` that dials TCP, then does the
//! TLS handshake with ALPN h2. Node-to-node channels take the node's current certificates at
//! every new connection (so a reload reaches them) and verify the peer as a node of the
//! cluster; the CLI's take a fixed client config and the name of the host it dials.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::live::LiveTls;

/// Where a connection's TLS settings come from.
#[derive(Clone)]
enum Source {
    /// The node's own, current at each dial; peers are verified as `server.<cluster>.muster`.
    Node(Arc<LiveTls>),
    /// Fixed settings and the name the server's certificate must carry.
    Fixed(tokio_rustls::TlsConnector, ServerName<'static>),
}

/// A tonic connector: TCP, then TLS.
#[derive(Clone)]
pub struct TlsDial {
    source: Source,
    connect_timeout: Duration,
}

impl TlsDial {
    /// Node-to-node: the node's certificates; the peer must be a node of the same cluster.
    pub fn node(tls: Arc<LiveTls>, connect_timeout: Duration) -> TlsDial {
        TlsDial { source: Source::Node(tls), connect_timeout }
    }

    /// A client: `config` (with ALPN h2) and the name to verify.
    pub fn fixed(
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
        connect_timeout: Duration,
    ) -> TlsDial {
        TlsDial { source: Source::Fixed(tokio_rustls::TlsConnector::from(config), name), connect_timeout }
    }

    /// A lazily connecting channel to `addr` (`host:port`) through this connector.
    pub fn channel(self, addr: &str) -> Result<Channel, String> {
        let endpoint = Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|e| format!("bad address {addr:?}: {e}"))?
            .connect_timeout(self.connect_timeout);
        Ok(endpoint.connect_with_connector_lazy(self))
    }

    /// A channel to `addr`, connected now.
    pub async fn connect(self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let endpoint =
            Endpoint::from_shared(format!("https://{addr}"))?.connect_timeout(self.connect_timeout);
        endpoint.connect_with_connector(self).await
    }
}

impl tonic::codegen::Service<Uri> for TlsDial {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (source, timeout) = (self.source.clone(), self.connect_timeout);
        Box::pin(async move {
            let bad = |what: &str| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what} in {uri}"))
            };
            let host = uri.host().ok_or_else(|| bad("no host"))?.trim_matches(['[', ']']).to_string();
            let port = uri.port_u16().ok_or_else(|| bad("no port"))?;
            let tcp = tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port)))
                .await
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("connect to {host}:{port} timed out"),
                    )
                })??;
            tcp.set_nodelay(true)?;
            let (connector, name) = match source {
                Source::Node(tls) => (tls.connector(), tls.node_name()),
                Source::Fixed(connector, name) => (connector, name),
            };
            let stream =
                tokio::time::timeout(timeout, connector.connect(name, tcp)).await.map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
            Ok(TokioIo::new(stream))
        })
    }
}
