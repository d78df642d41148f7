//! TCP streams for memberlist: push/pull exchanges, the fallback ping, reading one framed
//! message with a deadline. Thin I/O around `gossip::wire`.
//!
//! Reading is bounded in bytes ([`STREAM_BYTES_MAX`]), in time (the caller's deadline) and in
//! work: the wire decoder parses a message from its start every time it is asked, so asking
//! after every read of a large message trickled in small pieces is quadratic. A decode is
//! tried when the buffer has grown by half since the last try, or when the peer pauses
//! ([`DECODE_PAUSE`], doubling after each pause that did not complete a message): a peer that
//! sent its whole message and waits for the answer is served after one short pause, and one
//! stream costs a few dozen decodes at most.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::GossipError;
use crate::gossip::wire::{decode_stream, encode_stream, Ping, PushNodeState, Security, StreamMessage};
use crate::metrics::{Direction, Transport, GOSSIP};

/// Largest stream message we accept (a push/pull of thousands of members fits easily).
const STREAM_BYTES_MAX: usize = 16 * 1024 * 1024;
/// How long the peer must pause before a buffer that has not grown by half is decoded.
const DECODE_PAUSE: Duration = Duration::from_millis(10);

/// When [`read_message`] decodes: the pure part of the schedule described in the module doc.
#[derive(Debug)]
struct DecodeSchedule {
    /// Buffer length at the last decode that found the message incomplete (0: none yet).
    tried_len: usize,
    /// The pause that makes the next decode due.
    pause: Duration,
}

impl DecodeSchedule {
    fn new() -> DecodeSchedule {
        DecodeSchedule { tried_len: 0, pause: DECODE_PAUSE }
    }

    /// Whether `len` buffered bytes are worth a decode without waiting for a pause.
    fn due(&self, len: usize) -> bool {
        len > 0 && (self.tried_len == 0 || len >= self.tried_len + self.tried_len / 2)
    }

    /// Whether bytes arrived since the last decode (so a pause makes one due).
    fn untried(&self, len: usize) -> bool {
        len > self.tried_len
    }

    /// A decode at `len` found the message incomplete; `paused` when a pause triggered it.
    fn incomplete(&mut self, len: usize, paused: bool) {
        self.tried_len = len;
        if paused {
            self.pause = self.pause.saturating_mul(2);
        }
    }
}

/// Reads exactly one framed message, or fails at the deadline.
pub async fn read_message(
    conn: &mut TcpStream,
    sec: &Security<'_>,
    deadline: Duration,
) -> Result<StreamMessage, GossipError> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let read = async {
        let mut chunk = [0u8; 8192];
        let mut schedule = DecodeSchedule::new();
        let mut paused = false;
        loop {
            if schedule.due(buf.len()) || (paused && schedule.untried(buf.len())) {
                if let Some((msg, _used)) = decode_stream(&buf, sec).map_err(GossipError::Wire)? {
                    return Ok(msg);
                }
                schedule.incomplete(buf.len(), paused);
            }
            let n = if schedule.untried(buf.len()) {
                match timeout(schedule.pause, conn.read(&mut chunk)).await {
                    Ok(r) => r.map_err(GossipError::Io)?,
                    Err(_) => {
                        paused = true;
                        continue;
                    }
                }
            } else {
                conn.read(&mut chunk).await.map_err(GossipError::Io)?
            };
            paused = false;
            if n == 0 {
                if schedule.untried(buf.len()) {
                    if let Some((msg, _used)) = decode_stream(&buf, sec).map_err(GossipError::Wire)? {
                        return Ok(msg);
                    }
                }
                return Err(GossipError::StreamClosed { bytes: buf.len() });
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > STREAM_BYTES_MAX {
                return Err(GossipError::StreamTooLarge { bytes: buf.len() });
            }
        }
    };
    let read = timeout(deadline, read).await;
    let messages = u64::from(matches!(read, Ok(Ok(_))));
    GOSSIP.traffic(Transport::Tcp, Direction::Received, messages, buf.len() as u64);
    read.map_err(|_| GossipError::Timeout { what: "reading a stream message" })?
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
        .map_err(GossipError::Io)?;
    GOSSIP.traffic(Transport::Tcp, Direction::Sent, 1, bytes.len() as u64);
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_are_geometric_in_size_and_pauses_double() {
        // Proves the schedule: the first bytes are decoded at once; after an incomplete
        // decode the next is due only at 1.5× the size or after a pause, and each pause that
        // did not complete the message doubles the next one; without new bytes a pause
        // triggers nothing. A 16 MiB message read 8 KiB at a time is decoded about 20 times,
        // not 2048.
        let mut s = DecodeSchedule::new();
        assert!(!s.due(0) && s.due(10));
        s.incomplete(1000, false);
        assert!(!s.due(1499) && s.due(1500));
        assert!(!s.untried(1000) && s.untried(1001));
        s.incomplete(1200, true);
        assert_eq!(s.pause, DECODE_PAUSE * 2);
        let mut s = DecodeSchedule::new();
        let (mut len, mut decodes) = (0usize, 0);
        while len < STREAM_BYTES_MAX {
            len += 8192;
            if s.due(len) {
                decodes += 1;
                s.incomplete(len, false);
            }
        }
        assert!(decodes < 30, "{decodes} decodes");
    }

    #[tokio::test]
    async fn a_message_split_across_reads_is_read_after_one_pause() {
        // Proves a peer that sends its message in pieces and then waits for the answer is
        // served (the last piece is decoded after a pause), and a peer that closes mid-message
        // gets the closed-stream error.
        use crate::gossip::wire::Ack;
        let sec = Security::default();
        let msg = StreamMessage::Ack(Ack { seq_no: 7, payload: vec![1; 3000] });
        let bytes = encode_stream(&msg, false, &sec).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (first, rest) = bytes.split_at(100);
        let (first, rest, head) = (first.to_vec(), rest.to_vec(), bytes[..2].to_vec());
        let writer = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(&first).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            c.write_all(&rest).await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await; // waits for an answer
            drop(c);
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(&head).await.unwrap();
        });
        let (mut conn, _) = listener.accept().await.unwrap();
        let got = read_message(&mut conn, &sec, Duration::from_secs(1)).await.unwrap();
        assert_eq!(got, msg);
        let (mut conn, _) = listener.accept().await.unwrap();
        let err = read_message(&mut conn, &sec, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, GossipError::StreamClosed { bytes: 2 }), "{err}");
        writer.await.unwrap();
    }
}
