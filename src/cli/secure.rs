//! How the CLI reaches a protected node: TLS against the cluster CA (`--ca-cert`), a client
//! certificate when the node checks them (`--client-cert`/`--client-key`), and an API token
//! (`--token`), like consul's `-ca-file`/`-client-cert`/`-client-key`/`-token`. Every command
//! that talks to a node's API port takes these flags (and their `MUSTER_*` environment names).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use rustls::pki_types::ServerName;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Flags of every command that calls a node's API port.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct Secure {
    /// The cluster CA (PEM): speak TLS to the node and check its certificate against it.
    #[arg(long, env = "MUSTER_CACERT", value_name = "PATH", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM) for nodes started with --verify-incoming (needs --ca-cert).
    #[arg(long, env = "MUSTER_CLIENT_CERT", value_name = "PATH", global = true, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The private key of --client-cert (PEM).
    #[arg(long, env = "MUSTER_CLIENT_KEY", value_name = "PATH", global = true, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// The name the node's certificate must carry (default: the host of the address; node
    /// certificates carry localhost, 127.0.0.1, their node name and server.<cluster>.muster).
    #[arg(long, env = "MUSTER_TLS_SERVER_NAME", value_name = "NAME", global = true)]
    pub tls_server_name: Option<String>,
    /// API token, sent as `authorization: Bearer TOKEN`.
    #[arg(long, env = "MUSTER_TOKEN", value_name = "TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
}

/// TLS settings ready to dial with.
#[derive(Clone)]
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl Secure {
    /// The TLS to dial `addr` (`host:port`) with, for ALPN `alpn`; none without `--ca-cert`.
    pub fn tls(&self, addr: &str, alpn: &[&[u8]]) -> anyhow::Result<Option<ClientTls>> {
        let Some(ca) = &self.ca_cert else {
            if self.client_cert.is_some() {
                return Err(anyhow!("--client-cert needs --ca-cert (the cluster CA the node's certificate is checked against)"));
            }
            return Ok(None);
        };
        let identity = self.client_cert.as_deref().zip(self.client_key.as_deref());
        let config = crate::tls::live::client_config(ca, identity, alpn)?;
        let name = match &self.tls_server_name {
            Some(n) => n.clone(),
            None => host_of(addr).to_string(),
        };
        let server_name = ServerName::try_from(name.clone()).with_context(|| {
            format!("'{name}' is not a DNS name or IP address to check the node's certificate for")
        })?;
        Ok(Some(ClientTls { config: Arc::new(config), server_name }))
    }

    /// The `authorization` header value, if a token was given.
    pub fn authorization(&self) -> anyhow::Result<Option<MetadataValue<Ascii>>> {
        let Some(token) = self.token.as_deref().filter(|t| !t.is_empty()) else { return Ok(None) };
        MetadataValue::try_from(format!("Bearer {token}"))
            .map(Some)
            .map_err(|_| anyhow!("--token holds characters that cannot go in a header"))
    }
}

/// `host` of `host:port` (brackets of an IPv6 literal removed).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Adds the token to every gRPC call.
#[derive(Clone)]
pub struct Auth(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            req.metadata_mut().insert("authorization", value.clone());
        }
        Ok(req)
    }
}

/// A channel to a node, with the token added to every call.
pub type Chan = InterceptedService<Channel, Auth>;

/// Wraps `channel` so every call carries the token of `secure`.
pub fn with_auth(channel: Channel, secure: &Secure) -> anyhow::Result<Chan> {
    Ok(InterceptedService::new(channel, Auth(secure.authorization()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_addresses() {
        // Proves the default server name is the address' host.
        assert_eq!(host_of("127.0.0.1:9999"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9999"), "::1");
        assert_eq!(host_of("node1.example:9999"), "node1.example");
    }
}
