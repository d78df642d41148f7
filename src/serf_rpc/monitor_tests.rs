//! `monitor` over a real connection, with lines published straight into the node's tee.

use tracing::Level;

use super::*;

async fn log_line(c: &mut Raw, seq: u64) -> String {
    assert_eq!(c.header().await, hdr(seq, ""));
    let rec: p::LogRecord = c.value().await;
    rec.log
}

fn monitor(level: &str) -> Option<p::MonitorRequest> {
    Some(p::MonitorRequest { log_level: level.into() })
}

#[tokio::test]
async fn a_monitor_checks_its_level_replays_streams_and_stops() {
    // Proves Go's level errors, the replay of the ring at the monitor's level, live {Log} records under the request's Seq, "Monitor already exists", and stop by Seq.
    let n = node(None).await;
    n.logs.publish(Level::INFO, "old info".into());
    n.logs.publish(Level::DEBUG, "old debug".into());
    let mut c = Raw::ready(n.rpc).await;
    c.req(p::MONITOR, 2, monitor("bogus").as_ref()).await;
    assert_eq!(c.header().await, hdr(2, "Unknown log level: BOGUS"));
    c.req(p::MONITOR, 3, monitor("").as_ref()).await;
    assert_eq!(c.header().await, hdr(3, "Unknown log level: "), "as in Go: only the CLI defaults to INFO");

    c.req(p::MONITOR, 4, monitor("info").as_ref()).await;
    assert_eq!(c.header().await, hdr(4, ""));
    assert_eq!(log_line(&mut c, 4).await, "old info", "the DEBUG line is below the monitor's level");
    c.req(p::MONITOR, 5, monitor("debug").as_ref()).await;
    assert_eq!(c.header().await, hdr(5, p::MONITOR_EXISTS));
    n.logs.publish(Level::WARN, "live".into());
    n.logs.publish(Level::DEBUG, "live debug".into());
    assert_eq!(log_line(&mut c, 4).await, "live");

    c.req(p::STOP, 6, Some(&p::StopRequest { stop: 99 })).await;
    assert_eq!(c.header().await, hdr(6, ""), "stopping nothing succeeds, as in Go");
    n.logs.publish(Level::ERROR, "still on".into());
    assert_eq!(log_line(&mut c, 4).await, "still on");
    c.req(p::STOP, 7, Some(&p::StopRequest { stop: 4 })).await;
    assert_eq!(c.header().await, hdr(7, ""));
    n.logs.publish(Level::ERROR, "after".into());
    c.silent(Duration::from_millis(300)).await;

    c.req(p::MONITOR, 8, monitor("DEBUG").as_ref()).await;
    assert_eq!(c.header().await, hdr(8, ""));
    let mut replay = Vec::new();
    for _ in 0..6 {
        replay.push(log_line(&mut c, 8).await);
    }
    assert_eq!(replay, ["old info", "old debug", "live", "live debug", "still on", "after"]);
}

#[tokio::test]
async fn a_monitor_is_gone_with_its_connection_and_needs_auth() {
    // Proves a closed connection deregisters its monitor (the tee's level falls back) and, with a key, monitor is refused before auth.
    let n = node(None).await;
    let mut c = Raw::ready(n.rpc).await;
    c.req(p::MONITOR, 2, monitor("trace").as_ref()).await;
    assert_eq!(c.header().await, hdr(2, ""));
    assert_eq!(n.logs.level(), tracing_subscriber::filter::LevelFilter::TRACE);
    drop(c);
    tokio::time::timeout(WAIT, async {
        while n.logs.level() != tracing_subscriber::filter::LevelFilter::INFO {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the monitor was not deregistered after its client left");

    let n = node(Some("sekrit")).await;
    let mut c = Raw::ready(n.rpc).await;
    c.req(p::MONITOR, 2, monitor("debug").as_ref()).await;
    assert_eq!(c.header().await, hdr(2, p::AUTH_REQUIRED));
    n.logs.publish(Level::ERROR, "secret-ish".into());
    c.silent(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_monitor_that_cannot_keep_up_loses_lines_and_says_so() {
    // Proves a client that does not read makes the tee drop (publishing never waits), and once it reads it is told how many lines were lost.
    let n = node(None).await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let (r, w) = sock.connect(n.rpc).await.unwrap().into_split();
    let mut slow = Raw { r: FrameReader::new(r, 1 << 20, WAIT), w };
    slow.req(p::HANDSHAKE, 1, Some(&p::HandshakeRequest { version: 1 })).await;
    assert_eq!(slow.header().await, hdr(1, ""));
    slow.req(p::MONITOR, 2, monitor("info").as_ref()).await;
    assert_eq!(slow.header().await, hdr(2, ""));
    // ~6 MB: more than the socket buffers, the write queue and the monitor's queue hold.
    let filler = "x".repeat(440);
    for i in 0..12_000 {
        n.logs.publish(Level::INFO, format!("line {i} {filler}"));
        if i % 1_000 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let note = tokio::time::timeout(WAIT, async {
        loop {
            let line = log_line(&mut slow, 2).await;
            if line.contains("monitor dropped") {
                return line;
            }
        }
    })
    .await
    .expect("no note about dropped lines");
    assert!(note.contains("[WARN] serf-rpc: monitor dropped "), "{note}");
    let dropped: u64 = note.split("dropped ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(dropped > 0 && dropped < 12_000, "{note}");
}

#[tokio::test]
async fn monitor_answers_and_records_have_the_go_agents_bytes() {
    // Proves, byte for byte against Serf 0.8.2 (captured): the CLI's monitor request is understood, and the answer, a {Log} record, "Unknown log level" and "Monitor already exists" are what the Go agent sends.
    let n = node(None).await;
    let line = "2026/11/30 22:46:41 [INFO] agent: Serf agent starting";
    n.logs.publish(Level::INFO, line.into());
    let mut c = Raw::connect(n.rpc).await;
    // The Go CLI's handshake, then its `monitor -log-level=debug` (Seq 3; its stream was Seq 2).
    c.send(&hex("82a7436f6d6d616e64a968616e647368616b65a35365710181a756657273696f6e01")).await;
    assert_eq!(c.raw_value().await, hex("82a54572726f72a0a353657101"));
    c.send(&hex("82a7436f6d6d616e64a76d6f6e69746f72a35365710381a84c6f674c6576656ca56465627567")).await;
    assert_eq!(c.raw_value().await, hex("82a54572726f72a0a353657103"), "the answer");
    assert_eq!(c.raw_value().await, hex("82a54572726f72a0a353657103"), "a record's header");
    let record = "81a34c6f67d935323032362f31312f33302032323a34363a3431205b494e464f5d206167656e743a2053657266206167656e74207374617274696e67";
    assert_eq!(c.raw_value().await, hex(record), "a record: the Go agent's first line");
    // `monitor` with LogLevel "bog" (Seq 4), then "info" again (Seq 5).
    c.send(&hex("82a7436f6d6d616e64a76d6f6e69746f72a35365710481a84c6f674c6576656ca3626f67")).await;
    assert_eq!(
        c.raw_value().await,
        hex("82a54572726f72b6556e6b6e6f776e206c6f67206c6576656c3a20424f47a353657104")
    );
    c.send(&hex("82a7436f6d6d616e64a76d6f6e69746f72a35365710581a84c6f674c6576656ca4696e666f")).await;
    assert_eq!(
        c.raw_value().await,
        hex("82a54572726f72b64d6f6e69746f7220616c726561647920657869737473a353657105")
    );
}
