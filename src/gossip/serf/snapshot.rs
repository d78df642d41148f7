//! The member snapshot kept in the data dir, in Serf's line format, so a restarted node
//! rejoins the members it knew and never reuses a Lamport time.
//!
//! Lines: `alive: NAME ADDR:PORT`, `clock: N`, `event-clock: N`, `query-clock: N`, and `leave`
//! once the node left gracefully (then it does not rejoin on restart). Pure: text in, text out.

use std::net::SocketAddr;

/// What a snapshot holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub alive: Vec<(String, SocketAddr)>,
    pub clock: u64,
    pub event_clock: u64,
    pub query_clock: u64,
    pub left: bool,
}

impl Snapshot {
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, addr) in &self.alive {
            out.push_str(&format!("alive: {name} {addr}\n"));
        }
        out.push_str(&format!("clock: {}\n", self.clock));
        out.push_str(&format!("event-clock: {}\n", self.event_clock));
        out.push_str(&format!("query-clock: {}\n", self.query_clock));
        if self.left {
            out.push_str("leave\n");
        }
        out
    }

    /// Parses a snapshot; lines it does not understand are skipped (and counted).
    pub fn parse(text: &str) -> (Snapshot, usize) {
        let mut s = Snapshot::default();
        let mut skipped = 0;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if line == "leave" {
                s.left = true;
                continue;
            }
            let Some((key, val)) = line.split_once(": ") else {
                skipped += 1;
                continue;
            };
            let ok = match key {
                "alive" => match val.rsplit_once(' ') {
                    Some((name, addr)) => match addr.parse() {
                        Ok(a) => {
                            s.alive.retain(|(n, _)| n != name);
                            s.alive.push((name.to_string(), a));
                            true
                        }
                        Err(_) => false,
                    },
                    None => false,
                },
                "not-alive" => {
                    s.alive.retain(|(n, _)| n != val);
                    true
                }
                "clock" => val.parse().map(|v| s.clock = v).is_ok(),
                "event-clock" => val.parse().map(|v| s.event_clock = v).is_ok(),
                "query-clock" => val.parse().map(|v| s.query_clock = v).is_ok(),
                _ => false,
            };
            if !ok {
                skipped += 1;
            }
        }
        (s, skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_serf_lines() {
        // Proves render/parse agree and that Serf's own `not-alive` and unknown lines are handled.
        let s = Snapshot {
            alive: vec![("a".into(), "127.0.0.1:7946".parse().unwrap())],
            clock: 7,
            event_clock: 3,
            query_clock: 1,
            left: false,
        };
        assert_eq!(Snapshot::parse(&s.render()), (s.clone(), 0));
        let text = "alive: b 127.0.0.2:7946\nnot-alive: b\ncoordinate: {}\nclock: 9\nleave\n";
        let (p, skipped) = Snapshot::parse(text);
        assert!(p.alive.is_empty());
        assert_eq!(p.clock, 9);
        assert!(p.left);
        assert_eq!(skipped, 1);
    }
}
