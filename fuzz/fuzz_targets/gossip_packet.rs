//! One inbound gossip UDP packet, through the whole path the node runs on it: the first byte
//! picks the receiver's [`Security`](muster::gossip::wire::Security) (plain, label + keyring,
//! label + keyring refusing plaintext, label only), the rest is the packet.
//! `decode_packet` (label, AES-GCM vsn 0/1, CRC, compound, LZW) yields memberlist messages;
//! each goes to a fresh node's memberlist and Serf cores as the driver hands it over, and
//! every Serf payload through the decoders the node runs on it (relay headers, filters, key
//! and conflict bodies, ping-payload coordinates, tags).
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use muster::gossip::wire::decode_packet;
use muster_fuzz::{GossipNode, Mode};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, packet)) = data.split_first() else { return };
    let sec = Mode::of(selector).security();
    let Ok(messages) = decode_packet(packet, &sec) else { return };
    let from = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), 7946));
    let mut node = GossipNode::new();
    for msg in messages {
        node.on_message(from, msg);
    }
});
