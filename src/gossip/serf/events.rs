//! The user-event buffer: events remembered by Lamport time, for de-duplication and for the
//! push/pull state that lets a late member catch up.

use crate::gossip::wire::{SerfUserEventEntry, SerfUserEvents};

/// A ring of user events indexed by `ltime % capacity`.
#[derive(Debug)]
pub struct EventBuffer {
    slots: Vec<Option<SerfUserEvents>>,
}

impl EventBuffer {
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "an event buffer needs at least one slot");
        EventBuffer { slots: vec![None; capacity] }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Records an event; false when the same name and payload at this time was seen.
    pub fn add(&mut self, ltime: u64, name: &str, payload: &[u8]) -> bool {
        let idx = (ltime % self.slots.len() as u64) as usize;
        let slot = &mut self.slots[idx];
        match slot {
            Some(seen) if seen.l_time == ltime => {
                if seen.events.iter().any(|e| e.name == name && e.payload == payload) {
                    return false;
                }
            }
            _ => *slot = Some(SerfUserEvents { l_time: ltime, events: Vec::new() }),
        }
        if let Some(seen) = slot {
            seen.events.push(SerfUserEventEntry { name: name.to_string(), payload: payload.to_vec() });
        }
        true
    }

    /// Every remembered batch, newest slot first as Serf sends them.
    pub fn all(&self) -> Vec<SerfUserEvents> {
        self.slots.iter().rev().flatten().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_at_one_time_are_dropped_and_slots_recycle() {
        // Proves de-duplication by (ltime, name, payload) and that a newer time reuses a slot.
        let mut b = EventBuffer::new(4);
        assert!(b.add(5, "deploy", b"v1"));
        assert!(!b.add(5, "deploy", b"v1"));
        assert!(b.add(5, "deploy", b"v2"));
        assert!(b.add(9, "other", b""));
        let all = b.all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].l_time, 9);
    }
}
