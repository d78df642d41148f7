//! One health check against the world: a TCP connect, or an HTTP(S) `GET` whose status line
//! decides (2xx passes). Only the status line is read; the connection is closed after it.
//! May import `registry::validate` (the target) and `tls` (client configuration); nothing above.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::registry::validate::CheckTarget;

/// The status line may not be longer than this.
const STATUS_LINE_BYTES_MAX: usize = 1_024;

/// How checks reach TLS servers.
#[derive(Clone)]
pub struct Prober {
    tls: tokio_rustls::TlsConnector,
}

impl Prober {
    /// `tls` decides which servers https checks trust (the system's roots and the cluster CA).
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Prober {
        Prober { tls: tokio_rustls::TlsConnector::from(tls) }
    }

    /// Runs one check within `timeout`; `Err` says why it failed, in one line.
    pub async fn check(&self, target: &CheckTarget, timeout: Duration) -> Result<(), String> {
        match tokio::time::timeout(timeout, self.run(target)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms (the check's timeout)", timeout.as_millis())),
        }
    }

    async fn run(&self, target: &CheckTarget) -> Result<(), String> {
        match target {
            CheckTarget::Tcp { host, port } => connect(host, *port).await.map(drop),
            CheckTarget::Http { tls, host, port, path } => {
                let stream = connect(host, *port).await?;
                let request = request(host, *port, *tls, path);
                let (code, reason) = if *tls {
                    let name = ServerName::try_from(host.clone())
                        .map_err(|e| format!("{host} is not a name TLS can verify: {e}"))?;
                    let stream = self
                        .tls
                        .connect(name, stream)
                        .await
                        .map_err(|e| format!("TLS handshake with {host}: {e}"))?;
                    status(stream, &request).await?
                } else {
                    status(stream, &request).await?
                };
                if (200..300).contains(&code) {
                    Ok(())
                } else {
                    Err(format!("HTTP {code} {reason}").trim_end().to_string())
                }
            }
        }
    }
}

async fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    TcpStream::connect((host, port)).await.map_err(|e| format!("connect to {}: {e}", authority(host, port)))
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn request(host: &str, port: u16, tls: bool, path: &str) -> String {
    let default_port = if tls { 443 } else { 80 };
    let host_header = if port == default_port {
        authority(host, port).rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_default()
    } else {
        authority(host, port)
    };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: muster-health-check/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Sends `request` and reads the status line: the code and the reason phrase.
async fn status<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &str,
) -> Result<(u16, String), String> {
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("sending the request: {e}"))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    let line_end = loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            break end;
        }
        if buf.len() >= STATUS_LINE_BYTES_MAX {
            return Err(format!("no HTTP status line in the first {STATUS_LINE_BYTES_MAX} bytes"));
        }
        let n = stream.read(&mut chunk).await.map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection without an HTTP answer".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    parse_status_line(&buf[..line_end])
}

/// `HTTP/1.1 200 OK` → (200, "OK").
fn parse_status_line(line: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(line);
    let mut parts = text.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let code = code.parse::<u16>().ok().filter(|c| (100..1000).contains(c));
    match code {
        Some(code) if version.starts_with("HTTP/") => Ok((code, parts.next().unwrap_or("").to_string())),
        _ => {
            let shown: String = text.chars().take(60).collect();
            Err(format!("not an HTTP answer: {shown:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Serves one answer per connection: `answer` after reading the request, or nothing.
    async fn serve(
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        answer: Option<&'static str>,
    ) {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let tls = tls.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                match tls {
                    Some(acceptor) => {
                        let Ok(mut s) = acceptor.accept(tcp).await else { return };
                        let _ = s.read(&mut buf).await;
                        match answer {
                            Some(a) => drop(s.write_all(a.as_bytes()).await),
                            None => tokio::time::sleep(Duration::from_secs(30)).await,
                        }
                    }
                    None => {
                        let mut s = tcp;
                        let _ = s.read(&mut buf).await;
                        match answer {
                            Some(a) => drop(s.write_all(a.as_bytes()).await),
                            None => tokio::time::sleep(Duration::from_secs(30)).await,
                        }
                    }
                }
            });
        }
    }

    async fn listen(tls: Option<tokio_rustls::TlsAcceptor>, answer: Option<&'static str>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(serve(listener, tls, answer));
        port
    }

    fn http(tls: bool, port: u16) -> CheckTarget {
        let host = if tls { "localhost" } else { "127.0.0.1" };
        CheckTarget::Http { tls, host: host.into(), port, path: "/health".into() }
    }

    /// A CA (PEM, for the client) and a TLS acceptor with a `localhost` certificate it signed.
    fn tls_server() -> (String, tokio_rustls::TlsAcceptor) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&ca.pem(), ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![leaf.der().clone()], key)
                .unwrap();
        (ca.pem(), tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    #[tokio::test]
    async fn http_tcp_and_https_checks_pass_fail_and_time_out_against_real_sockets() {
        // Proves each outcome a check reports: 2xx passes, another status, a refused connect, a
        // silent server (the timeout), https with the cluster CA, and https with an unknown CA.
        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, acceptor) = tls_server();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca_pem).unwrap();
        let (with_ca, _) = crate::tls::live::public_client_config(Some(&ca_path)).unwrap();
        let (without_ca, _) = crate::tls::live::public_client_config(None).unwrap();
        let prober = Prober::new(with_ca);
        let second = Duration::from_secs(1);

        let ok = listen(None, Some("HTTP/1.1 204 No Content\r\n\r\n")).await;
        assert_eq!(prober.check(&http(false, ok), second).await, Ok(()));
        let down = listen(None, Some("HTTP/1.1 500 Internal Server Error\r\n\r\n")).await;
        assert_eq!(
            prober.check(&http(false, down), second).await,
            Err("HTTP 500 Internal Server Error".into())
        );
        let silent = listen(None, None).await;
        let err = prober.check(&http(false, silent), Duration::from_millis(300)).await.unwrap_err();
        assert_eq!(err, "no answer within 300 ms (the check's timeout)");
        assert_eq!(
            prober.check(&CheckTarget::Tcp { host: "127.0.0.1".into(), port: ok }, second).await,
            Ok(())
        );
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = prober
            .check(&CheckTarget::Tcp { host: "127.0.0.1".into(), port: closed }, second)
            .await
            .unwrap_err();
        assert!(
            err.starts_with(&format!("connect to 127.0.0.1:{closed}: ")) && err.contains("refused"),
            "{err}"
        );

        let secure = listen(Some(acceptor), Some("HTTP/1.1 200 OK\r\n\r\n")).await;
        assert_eq!(prober.check(&http(true, secure), second).await, Ok(()));
        let err = Prober::new(without_ca).check(&http(true, secure), second).await.unwrap_err();
        assert!(err.starts_with("TLS handshake with localhost: ") && err.contains("UnknownIssuer"), "{err}");
    }

    #[test]
    fn status_lines_parse_and_garbage_is_named() {
        // Proves the parser takes code and reason and refuses what is not HTTP.
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK").unwrap(), (200, "OK".into()));
        assert_eq!(parse_status_line(b"HTTP/1.0 503 Service Unavailable").unwrap().0, 503);
        assert_eq!(parse_status_line(b"HTTP/1.1 204").unwrap(), (204, String::new()));
        assert!(parse_status_line(b"SSH-2.0-OpenSSH_9.2").unwrap_err().contains("not an HTTP answer"));
    }

    #[test]
    fn the_host_header_has_the_port_only_when_it_is_not_the_default() {
        // Proves the request line and Host header for http, https and IPv6.
        assert!(request("a.example", 80, false, "/h").starts_with("GET /h HTTP/1.1\r\nHost: a.example\r\n"));
        assert!(request("a.example", 8080, false, "/").contains("Host: a.example:8080\r\n"));
        assert!(request("::1", 443, true, "/").contains("Host: [::1]\r\n"));
        assert!(request("::1", 8443, true, "/").contains("Host: [::1]:8443\r\n"));
    }
}
