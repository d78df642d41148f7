//! A tiny HTTP/1.1 GET client over a tokio `TcpStream`, enough to talk to a local muster node:
//! `Connection: close`, status line and headers, bodies framed by `Content-Length`, chunked
//! encoding or the end of the connection, one deadline over the whole exchange, bounded sizes.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::secure::Secure;
use tokio::net::TcpStream;

/// The whole request (connect, send, receive) must finish within this.
pub const DEADLINE_MS: u64 = 5_000;
/// Status line and headers.
const HEAD_MAX_BYTES: usize = 64 * 1024;
/// Decoded body.
const BODY_MAX_BYTES: usize = 16 * 1024 * 1024;

/// A response as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name`, ignoring case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("no muster node answers at {addr}: is `muster agent` running? (--http-addr)")]
    NoNode {
        addr: String,
        #[source]
        cause: std::io::Error,
    },
    #[error("muster node at {addr} did not answer within {deadline_ms}ms")]
    Timeout { addr: String, deadline_ms: u128 },
    #[error("connection to muster node at {addr} failed")]
    Io {
        addr: String,
        #[source]
        cause: std::io::Error,
    },
    #[error("TLS to muster node at {addr} failed: {reason}")]
    Tls { addr: String, reason: String },
    #[error("muster node at {addr} sent a malformed HTTP response: {reason}")]
    Malformed { addr: String, reason: String },
}

/// GETs `path_and_query` from `addr` (`host:port`) within `deadline`, in plain HTTP.
pub async fn get(addr: &str, path_and_query: &str, deadline: Duration) -> Result<Response, HttpError> {
    get_with(addr, path_and_query, deadline, &Secure::default()).await
}

/// Like [`get`], over TLS with `--ca-cert` and with `--token`.
pub async fn get_with(
    addr: &str,
    path_and_query: &str,
    deadline: Duration,
    secure: &Secure,
) -> Result<Response, HttpError> {
    let tls = secure
        .tls(addr, &[b"http/1.1"])
        .map_err(|e| HttpError::Tls { addr: addr.to_string(), reason: format!("{e:#}") })?;
    let auth = match secure.authorization() {
        Ok(Some(value)) => format!("Authorization: {}\r\n", value.to_str().unwrap_or_default()),
        Ok(None) => String::new(),
        Err(e) => return Err(HttpError::Tls { addr: addr.to_string(), reason: e.to_string() }),
    };
    let run = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|cause| HttpError::NoNode { addr: addr.to_string(), cause })?;
        match tls {
            None => exchange(tcp, addr, path_and_query, &auth).await,
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(tls.config);
                let stream = connector
                    .connect(tls.server_name, tcp)
                    .await
                    .map_err(|e| HttpError::Tls { addr: addr.to_string(), reason: e.to_string() })?;
                exchange(stream, addr, path_and_query, &auth).await
            }
        }
    };
    tokio::time::timeout(deadline, run)
        .await
        .map_err(|_| HttpError::Timeout { addr: addr.to_string(), deadline_ms: deadline.as_millis() })?
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    addr: &str,
    path_and_query: &str,
    auth: &str,
) -> Result<Response, HttpError> {
    let io = |cause| HttpError::Io { addr: addr.to_string(), cause };
    let malformed = |reason: String| HttpError::Malformed { addr: addr.to_string(), reason };
    let request = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: muster/{}\r\n\
         Accept: application/json\r\n{auth}Connection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream.write_all(request.as_bytes()).await.map_err(io)?;

    let mut buf = Vec::new();
    let head_len = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > HEAD_MAX_BYTES {
            return Err(malformed(format!("headers exceed {HEAD_MAX_BYTES} bytes")));
        }
        if read_more(&mut stream, &mut buf).await.map_err(io)? == 0 {
            return Err(malformed("the connection closed before the headers ended".into()));
        }
    };
    let (status, reason, headers) = parse_head(&buf[..head_len]).map_err(malformed)?;
    let mut body = buf.split_off(head_len);
    let framing = framing(&headers).map_err(malformed)?;
    let body = loop {
        let done = match framing {
            Framing::Length(n) if body.len() >= n => Some(body[..n].to_vec()),
            Framing::Chunked => decode_chunked(&body).map_err(malformed)?,
            _ => None,
        };
        if let Some(done) = done {
            break done;
        }
        if body.len() > BODY_MAX_BYTES + HEAD_MAX_BYTES {
            return Err(malformed(format!("the body exceeds {BODY_MAX_BYTES} bytes")));
        }
        if read_more(&mut stream, &mut body).await.map_err(io)? == 0 {
            match framing {
                Framing::UntilClose => break body,
                _ => return Err(malformed("the connection closed inside the body".into())),
            }
        }
    };
    Ok(Response { status, reason, headers, body })
}

async fn read_more<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 8 * 1024];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

type Head = (u16, String, Vec<(String, String)>);

/// Parses the status line and headers (`head` ends with the blank line).
fn parse_head(head: &[u8]) -> Result<Head, String> {
    let text = std::str::from_utf8(head).map_err(|_| "the headers are not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!("bad status line '{status_line}'"));
    }
    let status = code.parse::<u16>().map_err(|_| format!("bad status line '{status_line}'"))?;
    let reason = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or_else(|| format!("bad header line '{line}'"))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok((status, reason, headers))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

fn framing(headers: &[(String, String)]) -> Result<Framing, String> {
    fn values<'a>(headers: &'a [(String, String)], name: &'static str) -> impl Iterator<Item = &'a str> {
        headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    if values(headers, "transfer-encoding").any(|v| v.to_ascii_lowercase().contains("chunked")) {
        return Ok(Framing::Chunked);
    }
    let mut length = None;
    for v in values(headers, "content-length") {
        let n: usize = v.parse().map_err(|_| format!("bad Content-Length '{v}'"))?;
        if length.is_some_and(|l| l != n) {
            return Err("conflicting Content-Length headers".into());
        }
        if n > BODY_MAX_BYTES {
            return Err(format!("the body ({n} bytes) exceeds {BODY_MAX_BYTES} bytes"));
        }
        length = Some(n);
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

/// Decodes a chunked body: `Ok(None)` while more bytes are needed.
fn decode_chunked(buf: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let Some(eol) = find(&buf[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[pos..pos + eol]).map_err(|_| "bad chunk size")?;
        let digits = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(digits, 16)
            .ok()
            .filter(|_| digits.len() <= 8)
            .ok_or_else(|| format!("bad chunk size '{line}'"))?;
        pos += eol + 2;
        if size == 0 {
            // Trailers, then the blank line that ends the body.
            loop {
                let Some(eol) = find(&buf[pos..], b"\r\n") else {
                    return Ok(None);
                };
                if eol == 0 {
                    return Ok(Some(out));
                }
                pos += eol + 2;
            }
        }
        if out.len() + size > BODY_MAX_BYTES {
            return Err(format!("the body exceeds {BODY_MAX_BYTES} bytes"));
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err("a chunk does not end with CRLF".into());
        }
        pos += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn chunked_bodies_decode_only_when_complete() {
        // Proves chunk decoding with extensions and trailers, and "need more" on every prefix.
        let wire = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(decode_chunked(wire), Ok(Some(b"Wikipedia".to_vec())));
        for cut in 0..wire.len() {
            assert_eq!(decode_chunked(&wire[..cut]), Ok(None), "prefix {cut}");
        }
        assert!(decode_chunked(b"zz\r\n").is_err());
        assert!(decode_chunked(b"2\r\nabXY").is_err());
    }

    #[test]
    fn heads_and_framing_parse() {
        // Proves status line and header parsing and the framing rules.
        let (status, reason, headers) =
            parse_head(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nX: a:b\r\n\r\n").unwrap();
        assert_eq!((status, reason.as_str()), (404, "Not Found"));
        assert_eq!(headers[1], ("X".into(), "a:b".into()));
        assert_eq!(framing(&headers), Ok(Framing::Length(3)));
        let chunked = vec![("Transfer-Encoding".into(), "chunked".into())];
        assert_eq!(framing(&chunked), Ok(Framing::Chunked));
        assert_eq!(framing(&[]), Ok(Framing::UntilClose));
        assert!(parse_head(b"SMTP 220 hi\r\n\r\n").is_err());
        let two = vec![("content-length".into(), "1".into()), ("Content-Length".into(), "2".into())];
        assert!(framing(&two).is_err());
    }

    /// Serves one connection with `reply` (written in `pieces` to exercise partial reads).
    async fn one_shot(pieces: Vec<&'static [u8]>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).await.unwrap();
            for p in pieces {
                s.write_all(p).await.unwrap();
                s.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn reads_length_chunked_and_close_framed_bodies() {
        // Proves the client against a server that splits responses across writes.
        let deadline = Duration::from_secs(5);
        let addr = one_shot(vec![b"HTTP/1.1 200 OK\r\nContent-", b"Length: 2\r\n\r\n[", b"]"]).await;
        assert_eq!(get(&addr, "/", deadline).await.unwrap().body, b"[]");
        let addr = one_shot(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n[\r\n",
            b"1\r\n]\r\n0\r\n\r\n",
        ])
        .await;
        let r = get(&addr, "/", deadline).await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, b"[]".as_slice()));
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        let addr = one_shot(vec![b"HTTP/1.0 500 Oops\r\n\r\nbroken"]).await;
        let r = get(&addr, "/", deadline).await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (500, b"broken".as_slice()));
        let addr = one_shot(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"]).await;
        let err = get(&addr, "/", deadline).await.unwrap_err();
        assert!(err.to_string().contains("closed inside the body"), "{err}");
    }

    #[tokio::test]
    async fn nothing_listening_says_what_to_do() {
        // Proves the message users see when no node runs at the address.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = get(&addr, "/", Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("no muster node answers at {addr}: is `muster agent` running? (--http-addr)")
        );
    }

    #[tokio::test]
    async fn a_silent_server_hits_the_deadline() {
        // Proves the deadline covers the whole exchange, not just the connect.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let err = get(&addr, "/", Duration::from_millis(200)).await.unwrap_err();
        assert!(matches!(err, HttpError::Timeout { .. }), "{err}");
        drop(listener);
    }
}
