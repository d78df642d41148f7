//! TCP streams for memberlist: push/pull exchanges, the fallback ping, reading one framed
//! message with a deadline. Thin I/O around `gossip::wire`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::GossipError;
use crate::gossip::wire::{decode_stream, encode_stream, Ping, PushNodeState, Security, StreamMessage};

/// Largest stream message we accept (a push/pull of thousands of members fits easily).
const STREAM_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Reads exactly one framed message, or fails at the deadline.
pub async fn read_message(
    conn: &mut TcpStream,
    sec: &Security<'_>,
    deadline: Duration,
) -> Result<StreamMessage, GossipError> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let read = async {
        let mut chunk = [0u8; 8192];
        loop {
            if !buf.is_empty() {
                if let Some((msg, _used)) = decode_stream(&buf, sec).map_err(GossipError::Wire)? {
                    return Ok(msg);
                }
            }
            let n = conn.read(&mut chunk).await.map_err(GossipError::Io)?;
            if n == 0 {
                return Err(GossipError::StreamClosed { bytes: buf.len() });
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > STREAM_BYTES_MAX {
                return Err(GossipError::StreamTooLarge { bytes: buf.len() });
            }
        }
    };
    timeout(deadline, read).await.map_err(|_| GossipError::Timeout { what: "reading a stream message" })?
}

pub async fn write_message(
    conn: &mut TcpStream,
    msg: &StreamMessage,
    sec: &Security<'_>,
    deadline: Duration,
) -> Result<(), GossipError> {
    let bytes = encode_stream(msg, false, sec).map_err(GossipError::Wire)?;
    timeout(deadline, conn.write_all(&bytes))
        .await
        .map_err(|_| GossipError::Timeout { what: "writing a stream message" })?
        .map_err(GossipError::Io)
}

pub async fn connect(to: SocketAddr, deadline: Duration) -> Result<TcpStream, GossipError> {
    let conn = timeout(deadline, TcpStream::connect(to))
        .await
        .map_err(|_| GossipError::Timeout { what: "connecting" })?
        .map_err(GossipError::Io)?;
    let _ = conn.set_nodelay(true);
    Ok(conn)
}

/// The remote side of a push/pull.
pub struct RemoteState {
    pub states: Vec<PushNodeState>,
    pub user_state: Vec<u8>,
}

/// Sends our state to `to` and reads theirs.
pub async fn push_pull(
    to: SocketAddr,
    ours: StreamMessage,
    sec: &Security<'_>,
    deadline: Duration,
) -> Result<RemoteState, GossipError> {
    let mut conn = connect(to, deadline).await?;
    write_message(&mut conn, &ours, sec, deadline).await?;
    match read_message(&mut conn, sec, deadline).await? {
        StreamMessage::PushPull { states, user_state, .. } => Ok(RemoteState { states, user_state }),
        StreamMessage::Err(e) => Err(GossipError::Remote { error: e.error }),
        _ => Err(GossipError::Unexpected { expected: "push/pull" }),
    }
}

/// Pings `to` over TCP; true when it acked with our sequence number.
pub async fn tcp_ping(
    to: SocketAddr,
    ping: Ping,
    sec: &Security<'_>,
    deadline: Duration,
) -> Result<bool, GossipError> {
    let seq = ping.seq_no;
    let mut conn = connect(to, deadline).await?;
    write_message(&mut conn, &StreamMessage::Ping(ping), sec, deadline).await?;
    match read_message(&mut conn, sec, deadline).await? {
        StreamMessage::Ack(a) => Ok(a.seq_no == seq),
        _ => Ok(false),
    }
}
