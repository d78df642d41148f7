//! The gossip layer: HashiCorp memberlist + Serf, spoken on the wire so real `serf agent`s join.
//!
//! `wire` (codecs), `swim` (failure detection) and `serf` (Serf's layer) are pure cores;
//! `net` is the thin tokio driver that feeds them from UDP/TCP sockets.

pub mod net;
pub mod serf;
pub mod swim;
pub mod wire;
