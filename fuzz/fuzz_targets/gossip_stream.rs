//! One inbound gossip TCP stream: the first byte picks the receiver's
//! [`Security`](muster::gossip::wire::Security) as in `gossip_packet`, the rest is what the
//! peer wrote. `decode_stream` is what `gossip::net::stream::read_message` calls on its
//! growing buffer, so every strict prefix of a message that decodes must ask for more bytes
//! (never fail, never decode to something else). The message then goes to a fresh node as the
//! driver handles it: push/pull states and Serf's push/pull user state merged (join or not),
//! a user message handed to the Serf core.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use muster::gossip::wire::{decode_stream, Message, StreamMessage};
use muster_fuzz::{GossipNode, Mode};

/// Inputs up to this long have every prefix checked; longer ones a spread of prefixes.
const ALL_PREFIXES_MAX: usize = 512;
const PREFIX_SAMPLES: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else { return };
    let sec = Mode::of(selector).security();
    let Ok(Some((msg, used))) = decode_stream(stream, &sec) else { return };
    assert!(used <= stream.len(), "decode_stream consumed {used} of {} bytes", stream.len());
    let step = if used <= ALL_PREFIXES_MAX { 1 } else { used / PREFIX_SAMPLES };
    for cut in (0..used).step_by(step.max(1)) {
        match decode_stream(&stream[..cut], &sec) {
            Ok(None) => {}
            other => panic!("a {cut}-byte prefix of a {used}-byte stream message gave {other:?}"),
        }
    }
    let from = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), 7946));
    let mut node = GossipNode::new();
    match msg {
        StreamMessage::PushPull { header, states, user_state } => {
            node.on_push_pull(states, &user_state, header.join)
        }
        StreamMessage::User(payload) => node.on_message(from, Message::User(payload)),
        StreamMessage::Ping(_) | StreamMessage::Ack(_) | StreamMessage::Err(_) => {}
    }
});
