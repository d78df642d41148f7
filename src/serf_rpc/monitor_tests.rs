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
