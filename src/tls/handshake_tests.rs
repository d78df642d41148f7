//! Real TLS handshakes on 127.0.0.1 with certificates from [`super::certs`]: a tokio-rustls
//! server that requires client certificates from the cluster CA accepts `--client` and
//! `--server` holders (mutual TLS between nodes) and refuses a foreign CA's client and a client
//! without a certificate.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::certs::{self, CaSpec, LeafKind, LeafSpec, PemPair};

const DEADLINE: Duration = Duration::from_secs(10);
const GREETING: &[u8] = b"hello from n1";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &PemPair) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap()).unwrap();
    Arc::new(roots)
}

fn chain(pair: &PemPair) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let cert = CertificateDer::from_pem_slice(pair.cert_pem.as_bytes()).unwrap();
    (vec![cert], PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes()).unwrap())
}

struct Cluster {
    ca: PemPair,
    server: PemPair,
    client: PemPair,
}

fn cluster() -> Cluster {
    cluster_with(&[], "n1")
}

fn cluster_with(permitted_dns: &[&str], node: &str) -> Cluster {
    let now = time::OffsetDateTime::now_utc();
    let permitted_dns = permitted_dns.iter().map(|d| d.to_string()).collect();
    let spec = CaSpec { common_name: "Muster Agent CA test".into(), days: 1, permitted_dns };
    let ca = certs::create_ca(&spec, now).unwrap();
    let loaded = certs::load_ca(&ca.cert_pem, &ca.key_pem).unwrap();
    let leaf = |kind, node: Option<&str>| {
        let spec = LeafSpec {
            kind,
            node: node.map(String::from),
            cluster: "muster".into(),
            extra_sans: vec![],
            days: 1,
        };
        certs::create_leaf(&spec, &loaded, now).unwrap()
    };
    let (server, client) = (leaf(LeafKind::Server, Some(node)), leaf(LeafKind::Client, None));
    Cluster { ca, server, client }
}

/// One handshake: the server (n1's certificate, client certificates required from `ca`) and a
/// client that trusts `ca` and presents `client_cert`. Returns whether the server accepted and
/// what the client read.
async fn handshake(c: &Cluster, client_cert: Option<&PemPair>, name: &str) -> (Result<(), String>, Vec<u8>) {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&c.ca), provider()).build().unwrap();
    let (server_chain, server_key) = chain(&c.server);
    let server_config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(server_chain, server_key)
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server_config));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        tls.write_all(GREETING).await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())
    });

    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(&c.ca));
    let client_config = match client_cert {
        Some(pair) => {
            let (chain, key) = chain(pair);
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let connector = TlsConnector::from(Arc::new(client_config));
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    let client = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = connector.connect(server_name, tcp).await.map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        // In TLS 1.3 the client finishes before the server has checked its certificate; a
        // refusal shows up here as an alert.
        tls.read_to_end(&mut got).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(got)
    };
    let got = tokio::time::timeout(DEADLINE, client).await.expect("client handshake within the deadline");
    let accepted =
        tokio::time::timeout(DEADLINE, server).await.expect("server handshake within the deadline").unwrap();
    (accepted, got.unwrap_or_default())
}

#[tokio::test]
async fn server_accepts_client_and_server_certs_of_its_ca() {
    // Proves mutual TLS works with the commands' certificates: a --client holder and a peer
    // node holding a --server certificate are both accepted, and the client verifies the
    // server by its role name and by 127.0.0.1.
    let c = cluster();
    let (accepted, got) = handshake(&c, Some(&c.client), "server.muster.muster").await;
    assert_eq!(accepted, Ok(()));
    assert_eq!(got, GREETING);
    let peer = c.server.clone();
    let (accepted, got) = handshake(&c, Some(&peer), "127.0.0.1").await;
    assert_eq!(accepted, Ok(()));
    assert_eq!(got, GREETING);
}

#[tokio::test]
async fn server_refuses_a_foreign_ca_and_no_certificate() {
    // Proves the server refuses a client whose certificate another CA (of the same name)
    // signed and a client that presents none, and the client then reads nothing.
    let c = cluster();
    let foreign = cluster();
    let (accepted, got) = handshake(&c, Some(&foreign.client), "server.muster.muster").await;
    let err = accepted.unwrap_err();
    // Both CAs have the same name, so the server finds an issuer and its signature check fails.
    assert!(err.contains("invalid peer certificate: BadSignature"), "{err}");
    assert!(got.is_empty());
    let (accepted, got) = handshake(&c, None, "server.muster.muster").await;
    let err = accepted.unwrap_err();
    assert!(err.contains("NoCertificatesPresented") || err.contains("no certificates"), "{err}");
    assert!(got.is_empty());
}

#[tokio::test]
async fn client_refuses_a_server_name_the_certificate_lacks() {
    // Proves the server certificate's SANs are what the client checks: a name it does not carry
    // fails the client's verification.
    let c = cluster();
    let (accepted, got) = handshake(&c, Some(&c.client), "server.other.muster").await;
    assert!(accepted.is_err());
    assert!(got.is_empty());
}

#[tokio::test]
async fn name_constrained_ca_certs_pass_webpki() {
    // Proves certificates of a --name-constraint CA satisfy rustls' name-constraint checks:
    // DNS names under `muster` and the unconstrained 127.0.0.1 both verify, in both directions.
    let c = cluster_with(&certs::NAME_CONSTRAINTS_DEFAULT, "n1.muster");
    for name in ["server.muster.muster", "n1.muster", "127.0.0.1", "localhost"] {
        let (accepted, got) = handshake(&c, Some(&c.client), name).await;
        assert_eq!(accepted, Ok(()), "{name}");
        assert_eq!(got, GREETING, "{name}");
    }
}
