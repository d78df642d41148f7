//! The RPC server's limits, in process: each refusal is an error answer the client reads
//! (its Seq echoed), and the server keeps serving others afterwards. Test-only.

use super::*;

#[tokio::test]
async fn a_client_over_the_connection_limit_gets_an_error_answer_then_a_close() {
    // Proves a connection over the limit is answered, under its first request's Seq, with
    // an error naming the limit before the close, and that a freed slot serves the next one.
    let n = node_at_most(None, 1).await;
    let first = Raw::ready(n.rpc).await;
    let mut over = Raw::connect(n.rpc).await;
    over.req(p::HANDSHAKE, 4, Some(&p::HandshakeRequest { version: 1 })).await;
    let answer = over.header().await;
    assert_eq!(answer, hdr(4, &too_many_clients(1)));
    assert_eq!(answer.error, "too many RPC clients: 1 connections are open (the limit); retry later");
    over.closed().await;
    drop(first);
    let mut next = tokio::time::timeout(WAIT, async {
        loop {
            let mut c = Raw::connect(n.rpc).await;
            c.req(p::HANDSHAKE, 1, Some(&p::HandshakeRequest { version: 1 })).await;
            if c.header().await == hdr(1, "") {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the freed slot serves a new client");
    next.req(p::MEMBERS, 2, NONE).await;
    assert_eq!(next.header().await, hdr(2, ""));
}

#[tokio::test]
async fn an_oversized_request_body_is_answered_with_the_limit_and_the_node_serves_on() {
    // Proves a body over REQUEST_MAX_BYTES gets an error answer under its header's Seq naming
    // the limit (read before the close, thanks to the linger), and other clients are served.
    let n = node(None).await;
    let mut c = Raw::ready(n.rpc).await;
    let payload = serde_bytes::ByteBuf::from(vec![b'x'; 300 * 1024]);
    let event = p::EventRequest { coalesce: false, name: "big".into(), payload: Some(payload) };
    c.req(p::EVENT, 7, Some(&event)).await;
    let answer = c.header().await;
    assert_eq!(answer.seq, 7);
    assert_eq!(
        answer.error,
        "request body: msgpack value larger than 262144 bytes (the limit for one value); closing the connection"
    );
    c.closed().await;
    let mut other = Raw::ready(n.rpc).await;
    other.req(p::MEMBERS, 2, NONE).await;
    assert_eq!(other.header().await, hdr(2, ""));
}

#[tokio::test]
async fn queries_in_flight_per_connection_are_bounded_naming_the_limit() {
    // Proves the 65th query still streaming on one connection is refused with an error that
    // names the limit, while the connection stays usable.
    let n = node(None).await;
    let mut c = Raw::ready(n.rpc).await;
    let query = |i: u64| p::QueryRequest {
        name: format!("q{i}"),
        timeout: Duration::from_secs(30).as_nanos() as i64,
        ..Default::default()
    };
    for seq in 10..10 + conn::QUERIES_MAX as u64 {
        c.req(p::QUERY, seq, Some(&query(seq))).await;
    }
    let over = 10 + conn::QUERIES_MAX as u64;
    c.req(p::QUERY, over, Some(&query(over))).await;
    // The accepted queries' answers and records (acks, responses) come first; headers are
    // the values with a Seq.
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            let v: serde_json::Value = c.value().await;
            let Some(seq) = v.get("Seq").and_then(|s| s.as_u64()) else { continue };
            let error = v["Error"].as_str().unwrap_or_default().to_string();
            if seq == over {
                return error;
            }
            assert_eq!(error, "", "query {seq} was refused");
        }
    })
    .await
    .expect("the over-limit query is answered");
    assert_eq!(refused, "too many queries in flight on this connection (limit 64); wait for one to finish");
    c.req(p::MEMBERS, 999, NONE).await;
    let served = tokio::time::timeout(WAIT, async {
        loop {
            let v: serde_json::Value = c.value().await;
            if v.get("Seq").and_then(|s| s.as_u64()) == Some(999) {
                return v["Error"].as_str().unwrap_or_default().to_string();
            }
        }
    })
    .await
    .expect("members is answered on the same connection");
    assert_eq!(served, "");
}
