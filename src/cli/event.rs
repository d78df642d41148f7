//! `muster event NAME [PAYLOAD]`: sends a Serf user event through a node's Serf RPC port, like
//! `serf event`, and prints the same confirmation. Works against a muster node or a Go
//! `serf agent`. Imports `serf_rpc::client` only.

use std::net::SocketAddr;

use anyhow::Context as _;

use crate::serf_rpc::client::{ClientError, RpcClient, TIMEOUT};

/// `muster event` flags and arguments (Serf's `serf event` options).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct EventArgs {
    /// Serf RPC address of a node (muster's --rpc-addr or a serf agent's -rpc-addr).
    #[arg(long, env = "MUSTER_RPC_ADDR", default_value = "127.0.0.1:7373", value_name = "IP:PORT")]
    pub rpc_addr: SocketAddr,
    /// RPC auth token of the node, when it has one.
    #[arg(long, env = "MUSTER_RPC_AUTH", value_name = "TOKEN", hide_env_values = true)]
    pub rpc_auth: Option<String>,
    /// Whether members may coalesce this event with others of the same name.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub coalesce: bool,
    /// Event name.
    pub name: String,
    /// Event payload (empty when left out).
    #[arg(default_value = "")]
    pub payload: String,
}

impl EventArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        run(self.rpc_addr, self.rpc_auth, self.name, self.payload.into_bytes(), self.coalesce).await
    }
}

/// Sends the event and prints `Event 'NAME' dispatched! Coalescing enabled: BOOL`.
pub async fn run(
    rpc_addr: SocketAddr,
    rpc_auth: Option<String>,
    name: String,
    payload: Vec<u8>,
    coalesce: bool,
) -> anyhow::Result<()> {
    let mut client = RpcClient::connect(rpc_addr, rpc_auth.as_deref(), TIMEOUT)
        .await
        .map_err(explain)
        .with_context(|| format!("cannot connect to the Serf RPC port at {rpc_addr}"))?;
    client
        .user_event(&name, &payload, coalesce)
        .await
        .map_err(explain)
        .with_context(|| format!("cannot send event {name:?}"))?;
    println!("Event '{name}' dispatched! Coalescing enabled: {coalesce}");
    Ok(())
}

/// Adds what to do about the errors a user can fix.
fn explain(e: ClientError) -> anyhow::Error {
    match &e {
        ClientError::Agent(msg) if msg == crate::serf_rpc::proto::AUTH_REQUIRED => {
            anyhow::anyhow!("{e}: pass the node's token with --rpc-auth (or MUSTER_RPC_AUTH)")
        }
        ClientError::Agent(msg) if msg == crate::serf_rpc::proto::INVALID_AUTH_TOKEN => {
            anyhow::anyhow!("{e}: --rpc-auth does not match the node's token")
        }
        _ => anyhow::Error::new(e),
    }
}
