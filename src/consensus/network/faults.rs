//! Fault injection for tests: directed links between raft node ids can be cut. A cut link
//! fails on the sending side as "unreachable" and is refused on the receiving side, so a
//! partition is as real as the transport can make it without touching the kernel.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

/// Shared set of cut links `(from, to)`. Cheap to clone; empty in production.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    cut: Arc<RwLock<HashSet<(u64, u64)>>>,
}

impl Faults {
    /// Cuts both directions between `a` and every node in `others`.
    pub fn isolate(&self, a: u64, others: &[u64]) {
        if let Ok(mut cut) = self.cut.write() {
            for o in others {
                cut.insert((a, *o));
                cut.insert((*o, a));
            }
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        if let Ok(mut cut) = self.cut.write() {
            cut.clear();
        }
    }

    /// True when messages from `from` to `to` are dropped.
    pub fn is_cut(&self, from: u64, to: u64) -> bool {
        self.cut.read().map(|c| c.contains(&(from, to))).unwrap_or(false)
    }
}
