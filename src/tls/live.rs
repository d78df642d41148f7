//! TLS for a running node and its clients: the API port's server side and the client side of
//! node-to-node calls, both built from `--tls-cert`, `--tls-key` and `--tls-ca`, and swapped
//! whole on [`LiveTls::reload`] (SIGHUP): new connections use the current pair, open ones keep
//! theirs. Also what a verified peer certificate says ([`PeerCert`]) and the CLI's client side
//! ([`client_config`]).
//!
//! A node's own certificate must be a server certificate of its cluster (it carries
//! `server.<cluster>.muster`, like consul's `server.<dc>.consul`) signed by the CA: nodes dial
//! each other by that name, so a client certificate of the same CA cannot pose as a node.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::certs::LeafKind;

/// The largest PEM file read.
const PEM_BYTES_MAX: u64 = 256 * 1024;
/// ALPN of the API port: gRPC and raft need HTTP/2, curl and browsers may use HTTP/1.1.
const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why certificates could not be loaded. Names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {what} {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
    #[error("{what} {path} is larger than {PEM_BYTES_MAX} bytes; it is not a PEM file")]
    TooLarge { what: &'static str, path: PathBuf },
    #[error("{what} {path} holds no PEM certificate")]
    NoCert { what: &'static str, path: PathBuf },
    #[error("{path} holds no PEM private key: {reason}")]
    NoKey { path: PathBuf, reason: String },
    #[error(
        "--tls-cert {path} is not a server certificate of cluster '{cluster}' (its names: {names}); make one \
         with `muster tls cert create --server --cluster {cluster}`"
    )]
    NotServer { path: PathBuf, cluster: String, names: String },
    #[error("--tls-cert {cert} is not valid under --tls-ca {ca}: {reason}")]
    NotSigned { cert: PathBuf, ca: PathBuf, reason: String },
    #[error("--tls-key {key} does not fit --tls-cert {cert}: {reason}")]
    Mismatch { cert: PathBuf, key: PathBuf, reason: String },
    #[error("{0}")]
    Rustls(String),
}

/// The three files of a node's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// One loaded generation of the node's TLS.
struct Material {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

/// The node's TLS, swappable while it runs.
pub struct LiveTls {
    paths: Paths,
    cluster: String,
    verify_incoming: bool,
    current: RwLock<Arc<Material>>,
    /// `server.<cluster>.muster`: what node-to-node calls verify.
    node_name: ServerName<'static>,
}

impl std::fmt::Debug for LiveTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTls").field("paths", &self.paths).field("cluster", &self.cluster).finish()
    }
}

impl LiveTls {
    /// Reads and checks the files. `verify_incoming`: every client must show a CA-signed
    /// certificate (else a certificate is optional, and only node-to-node routes need one).
    /// Returns the node's TLS and a one-line summary of its certificate for the log.
    pub fn load(paths: Paths, cluster: &str, verify_incoming: bool) -> Result<(LiveTls, String), LoadError> {
        let node_name = ServerName::try_from(LeafKind::Server.role_name(cluster))
            .map_err(|e| LoadError::Rustls(format!("cluster name '{cluster}' makes no DNS name: {e}")))?;
        let (material, summary) = build(&paths, cluster, verify_incoming, &node_name)?;
        let live = LiveTls {
            paths,
            cluster: cluster.to_string(),
            verify_incoming,
            current: RwLock::new(Arc::new(material)),
            node_name,
        };
        Ok((live, summary))
    }

    /// Reads the files again and, when they are good, uses them for every new connection.
    /// When they are not, nothing changes and the error says why.
    pub fn reload(&self) -> Result<String, LoadError> {
        let (material, summary) = build(&self.paths, &self.cluster, self.verify_incoming, &self.node_name)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(material);
        Ok(summary)
    }

    fn now(&self) -> Arc<Material> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The acceptor for one new API connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::clone(&self.now().server))
    }

    /// The connector for one new node-to-node connection (ALPN h2, this node's certificate).
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(Arc::clone(&self.now().client))
    }

    /// The name every node's certificate carries, which node-to-node calls verify.
    pub fn node_name(&self) -> ServerName<'static> {
        self.node_name.clone()
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    pub fn verify_incoming(&self) -> bool {
        self.verify_incoming
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn rustls_err(e: impl std::fmt::Display) -> LoadError {
    LoadError::Rustls(e.to_string())
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, LoadError> {
    use std::io::Read as _;
    let file =
        std::fs::File::open(path).map_err(|cause| LoadError::Read { what, path: path.into(), cause })?;
    let mut buf = Vec::new();
    file.take(PEM_BYTES_MAX + 1).read_to_end(&mut buf).map_err(|cause| LoadError::Read {
        what,
        path: path.into(),
        cause,
    })?;
    if buf.len() as u64 > PEM_BYTES_MAX {
        return Err(LoadError::TooLarge { what, path: path.into() });
    }
    Ok(buf)
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let pem = read_pem(what, path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(LoadError::NoCert { what, path: path.into() });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, LoadError> {
    let pem = read_pem("--tls-key", path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| LoadError::NoKey { path: path.into(), reason: e.to_string() })
}

/// The trust roots of a CA file (every certificate in it).
fn read_roots(what: &'static str, path: &Path) -> Result<Arc<RootCertStore>, LoadError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(what, path)? {
        roots.add(cert).map_err(|e| LoadError::NotSigned {
            cert: path.into(),
            ca: path.into(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(roots))
}

fn build(
    paths: &Paths,
    cluster: &str,
    verify_incoming: bool,
    node_name: &ServerName<'static>,
) -> Result<(Material, String), LoadError> {
    let chain = read_certs("--tls-cert", &paths.cert)?;
    let key = read_key(&paths.key)?;
    let roots = read_roots("--tls-ca", &paths.ca)?;
    let leaf = PeerCert::from_der(&chain[0]);
    if !leaf.is_node_of(cluster) {
        return Err(LoadError::NotServer {
            path: paths.cert.clone(),
            cluster: cluster.to_string(),
            names: leaf.names.join(", "),
        });
    }
    // The certificate must verify as a node would verify it: under the CA, for the node name,
    // now. A wrong CA file or an expired certificate stops the start (or the reload) here.
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(rustls_err)?;
    verifier.verify_server_cert(&chain[0], &chain[1..], node_name, &[], UnixTime::now()).map_err(|e| {
        LoadError::NotSigned { cert: paths.cert.clone(), ca: paths.ca.clone(), reason: e.to_string() }
    })?;

    let clients = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
    let clients = if verify_incoming { clients } else { clients.allow_unauthenticated() };
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_err)?
        .with_client_cert_verifier(clients.build().map_err(rustls_err)?)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| LoadError::Mismatch {
            cert: paths.cert.clone(),
            key: paths.key.clone(),
            reason: e.to_string(),
        })?;
    server.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();

    let mut client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_err)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(rustls_err)?;
    client.alpn_protocols = vec![b"h2".to_vec()];
    let summary = format!("{} (valid until {})", leaf.subject, leaf.not_after);
    Ok((Material { server: Arc::new(server), client: Arc::new(client) }, summary))
}

/// The client side for the CLI: trust `ca`, show `cert`/`key` when given. ALPN `alpn`.
/// A client for servers outside the cluster (https health checks): the system's trusted roots
/// plus, when given, the cluster CA. Roots that cannot be read are skipped and named in the
/// second value.
pub fn public_client_config(
    cluster_ca: Option<&Path>,
) -> Result<(Arc<ClientConfig>, Vec<String>), LoadError> {
    let mut problems = Vec::new();
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in native.errors {
        problems.push(format!("system roots: {e}"));
    }
    let (_added, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        problems.push(format!("system roots: {ignored} certificates could not be parsed"));
    }
    if let Some(ca) = cluster_ca {
        roots.add_parsable_certificates(read_certs("cluster CA", ca)?);
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_err)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((Arc::new(config), problems))
}

pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    alpn: &[&[u8]],
) -> Result<ClientConfig, LoadError> {
    let roots = read_roots("--ca-cert", ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_err)?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => {
            let chain = read_certs("--client-cert", cert)?;
            builder.with_client_auth_cert(chain, read_key(key)?).map_err(|e| LoadError::Mismatch {
                cert: cert.into(),
                key: key.into(),
                reason: e.to_string(),
            })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// What a certificate says about its holder; read from a certificate rustls has already
/// verified against the CA, so its names can be trusted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerCert {
    /// The DNS names of its subject alternative names.
    pub names: Vec<String>,
    /// Its subject, e.g. `CN=server.muster.muster`.
    pub subject: String,
    /// The end of its validity, RFC 3339.
    pub not_after: String,
}

impl PeerCert {
    /// Reads a DER certificate; an unreadable one has no names.
    pub fn from_der(der: &[u8]) -> PeerCert {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { return PeerCert::default() };
        let names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let not_after = cert
            .validity()
            .not_after
            .to_datetime()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        PeerCert { names, subject: cert.subject().to_string(), not_after }
    }

    /// Whether it names a node (a server certificate) of `cluster`.
    pub fn is_node_of(&self, cluster: &str) -> bool {
        let want = LeafKind::Server.role_name(cluster);
        self.names.iter().any(|n| n.eq_ignore_ascii_case(&want))
    }
}
