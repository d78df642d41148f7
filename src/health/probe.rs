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
