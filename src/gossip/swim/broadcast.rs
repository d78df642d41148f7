//! The piggybacked broadcast queue (memberlist's transmit-limited queue).
//!
//! Each queued message is sent at most `retransmit_mult · ⌈log10(n + 1)⌉` times, least-sent first
//! and newest first among equals. A message with a key replaces any queued message with the
//! same key (a newer alive/suspect/dead about one node makes the older one moot). The queue is
//! bounded: past `max_len` the most-transmitted, oldest entries are dropped.

/// One queued broadcast.
#[derive(Debug, Clone)]
struct Item {
    key: Option<String>,
    msg: Vec<u8>,
    transmits: u32,
    /// Insertion order; larger is newer.
    id: u64,
}

/// A transmit-limited broadcast queue.
#[derive(Debug)]
pub struct BroadcastQueue {
    items: Vec<Item>,
    next_id: u64,
    retransmit_mult: u32,
    max_len: usize,
}

/// How many times each broadcast is sent in a cluster of `nodes` members.
pub fn retransmit_limit(retransmit_mult: u32, nodes: usize) -> u32 {
    let scale = ((nodes as f64) + 1.0).log10().ceil() as u32;
    retransmit_mult * scale.max(1)
}

impl BroadcastQueue {
    pub fn new(retransmit_mult: u32, max_len: usize) -> Self {
        assert!(max_len > 0, "a broadcast queue needs room for one message");
        BroadcastQueue { items: Vec::new(), next_id: 0, retransmit_mult, max_len }
    }

    /// Queues `msg`, replacing a queued message with the same `key`.
    pub fn queue(&mut self, key: Option<String>, msg: Vec<u8>) {
        if let Some(k) = &key {
            self.items.retain(|it| it.key.as_ref() != Some(k));
        }
        self.next_id += 1;
        self.items.push(Item { key, msg, transmits: 0, id: self.next_id });
        if self.items.len() > self.max_len {
            // Drop the entry that has been sent most, oldest first among equals.
            if let Some(pos) = self
                .items
                .iter()
                .enumerate()
                .max_by_key(|(_, it)| (it.transmits, std::cmp::Reverse(it.id)))
                .map(|(i, _)| i)
            {
                self.items.swap_remove(pos);
            }
        }
    }

    /// Takes broadcasts that fit in `limit_bytes`, each costing its length plus `overhead`.
    /// Every returned message counts one transmit; those that reach the limit leave the queue.
    pub fn take(&mut self, overhead: usize, limit_bytes: usize, nodes: usize) -> Vec<Vec<u8>> {
        let limit = retransmit_limit(self.retransmit_mult, nodes);
        self.items.sort_by_key(|it| (it.transmits, std::cmp::Reverse(it.id)));
        let mut used = 0usize;
        let mut out = Vec::new();
        for it in self.items.iter_mut() {
            let cost = it.msg.len() + overhead;
            if used + cost > limit_bytes {
                continue;
            }
            used += cost;
            it.transmits += 1;
            out.push(it.msg.clone());
        }
        self.items.retain(|it| it.transmits < limit);
        out
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The queued messages, in no particular order.
    pub fn messages(&self) -> impl Iterator<Item = &[u8]> {
        self.items.iter().map(|it| it.msg.as_slice())
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether a message with this key is still waiting to be sent its full count.
    pub fn contains_key(&self, key: &str) -> bool {
        self.items.iter().any(|it| it.key.as_deref() == Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_is_sent_exactly_the_retransmit_limit() {
        // Proves the retransmit limit: mult 4, 10 nodes → ⌈log10 11⌉ = 2 → 8 sends, then gone.
        let mut q = BroadcastQueue::new(4, 100);
        q.queue(None, vec![1, 2, 3]);
        let mut sends = 0;
        for _ in 0..20 {
            sends += q.take(2, 1400, 10).len();
        }
        assert_eq!(sends, 8);
        assert!(q.is_empty());
        assert_eq!(retransmit_limit(4, 1), 4);
        assert_eq!(retransmit_limit(4, 100), 12);
    }

    #[test]
    fn same_key_replaces_and_newest_goes_first() {
        // Proves invalidation by key and newest-first ordering within one transmit count.
        let mut q = BroadcastQueue::new(4, 100);
        q.queue(Some("a".into()), vec![1]);
        q.queue(Some("b".into()), vec![2]);
        q.queue(Some("a".into()), vec![3]);
        assert_eq!(q.len(), 2);
        let got = q.take(0, 1400, 3);
        assert_eq!(got, vec![vec![3], vec![2]]);
    }

    #[test]
    fn byte_limit_is_respected_and_bounded_length_drops_oldest_sent() {
        // Proves the byte budget and the queue bound.
        let mut q = BroadcastQueue::new(4, 2);
        q.queue(None, vec![0; 10]);
        q.queue(None, vec![1; 10]);
        let got = q.take(2, 12, 3);
        assert_eq!(got.len(), 1);
        q.queue(None, vec![2; 10]);
        assert_eq!(q.len(), 2);
        let all: Vec<Vec<u8>> = q.take(0, 1400, 3);
        assert!(all.contains(&vec![2; 10]));
    }
}
