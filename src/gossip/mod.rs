//! The gossip layer: HashiCorp memberlist + Serf, spoken on the wire so real `serf agent`s join.
//!
//! `wire` (codecs), `swim` (failure detection), `serf` (Serf's layer) and `coordinate`
//! (Vivaldi network coordinates) are pure cores;
//! `net` is the thin tokio driver that feeds them from UDP/TCP sockets.

pub mod coordinate;
pub mod net;
pub mod serf;
pub mod swim;
pub mod wire;
