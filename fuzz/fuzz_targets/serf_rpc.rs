//! What a Serf RPC client sends on :7373: msgpack values back to back, read with the server's
//! own `FrameReader` (same size bound), each `{Command, Seq}` header decoded as `RequestHeader`
//! and followed, for commands that take one, by the body `conn.rs` decodes for that command.
//! Each body then goes through the pure checks its handler runs before touching the cluster:
//! regexps of `members-filtered` (anchored) and of query tag filters (the Serf core's
//! `query`), stream filters, monitor log levels, keys of the key commands, user events and
//! force-leave in a fresh Serf core, tags as gossip meta. Like the server, the first header or
//! body that does not decode ends the connection.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use muster::go_regexp::Regex;
use muster::gossip::serf::{QueryParams, Serf, SerfConfig};
use muster::gossip::wire::{decode_key, encode_tags};
use muster::logging::serf_line::SerfLevel;
use muster::serf_rpc::frame::FrameReader;
use muster::serf_rpc::parse_filters;
use muster::serf_rpc::proto::{self as p, Command, RequestHeader};
use serde::de::DeserializeOwned;

/// `conn.rs`'s `REQUEST_MAX_BYTES` and `REQUEST_TIMEOUT`.
const REQUEST_MAX_BYTES: usize = 256 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests handled per input.
const REQUESTS_MAX: usize = 64;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| match tokio::runtime::Builder::new_current_thread().enable_time().build() {
        Ok(rt) => rt,
        Err(e) => panic!("cannot build a tokio runtime: {e}"),
    })
}

/// The server's `body`: the next whole value, decoded as `T`.
async fn body<T: DeserializeOwned>(reader: &mut FrameReader<&[u8]>) -> Option<T> {
    let bytes = reader.next_value().await.ok()??;
    rmp_serde::from_slice(&bytes).ok()
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(serve(data));
});

async fn serve(data: &[u8]) {
    let mut reader = FrameReader::new(data, REQUEST_MAX_BYTES, REQUEST_TIMEOUT);
    let now = Instant::now();
    let mut serf = Serf::new("fuzz-node".into(), SerfConfig::default(), 1, now);
    for _ in 0..REQUESTS_MAX {
        let Ok(Some(bytes)) = reader.next_value().await else { return };
        let Ok(header) = rmp_serde::from_slice::<RequestHeader>(&bytes) else { return };
        let handled = match Command::parse(&header.command) {
            Command::Handshake => body::<p::HandshakeRequest>(&mut reader).await.map(drop),
            Command::Auth => body::<p::AuthRequest>(&mut reader).await.map(drop),
            Command::Event => body::<p::EventRequest>(&mut reader).await.map(|req| {
                let payload = req.payload.map(|b| b.into_vec()).unwrap_or_default();
                let _ = serf.user_event(&req.name, &payload, req.coalesce);
            }),
            Command::Join => body::<p::JoinRequest>(&mut reader).await.map(drop),
            Command::MembersFiltered => body::<p::MembersFilteredRequest>(&mut reader).await.map(|req| {
                // `members::MemberFilter::new`: every pattern anchored, empty status/name skipped.
                let tags = req.tags.unwrap_or_default();
                let patterns =
                    tags.values().map(String::as_str).chain([req.status.as_str(), req.name.as_str()]);
                for pattern in patterns.filter(|s| !s.is_empty()) {
                    if let Ok(re) = Regex::anchored(pattern) {
                        re.is_match("fuzz-node");
                    }
                }
            }),
            Command::Stream => body::<p::StreamRequest>(&mut reader).await.map(|req| {
                let _ = parse_filters(&req.kind);
            }),
            Command::Monitor => body::<p::MonitorRequest>(&mut reader).await.map(|req| {
                let _ = SerfLevel::parse(&req.log_level);
            }),
            Command::Stop => body::<p::StopRequest>(&mut reader).await.map(drop),
            Command::ForceLeave => body::<p::ForceLeaveRequest>(&mut reader).await.map(|req| {
                let _ = serf.force_leave(&req.node, req.prune, now);
            }),
            Command::Tags => body::<p::TagsRequest>(&mut reader).await.map(|req| {
                let mut tags: BTreeMap<String, String> = req.tags.unwrap_or_default();
                for k in req.delete_tags.unwrap_or_default() {
                    tags.remove(&k);
                }
                let _ = encode_tags(&tags);
            }),
            Command::Query => body::<p::QueryRequest>(&mut reader).await.map(|req| {
                if req.timeout >= 0 {
                    let params = QueryParams {
                        filter_nodes: req.filter_nodes.unwrap_or_default(),
                        filter_tags: req.filter_tags.unwrap_or_default(),
                        request_ack: req.request_ack,
                        relay_factor: req.relay_factor,
                        timeout: Duration::from_nanos(req.timeout.unsigned_abs()),
                    };
                    let payload = req.payload.map(|b| b.into_vec()).unwrap_or_default();
                    let _ = serf.query(&req.name, &payload, &params, now);
                }
            }),
            Command::Respond => body::<p::RespondRequest>(&mut reader).await.map(drop),
            Command::InstallKey | Command::UseKey | Command::RemoveKey => {
                body::<p::KeyRequest>(&mut reader).await.map(|req| {
                    let _ = decode_key(&req.key);
                })
            }
            Command::GetCoordinate => body::<p::CoordinateRequest>(&mut reader).await.map(drop),
            Command::Members | Command::Leave | Command::Stats | Command::ListKeys => Some(()),
            Command::Unknown => None,
        };
        if handled.is_none() {
            return;
        }
    }
}
