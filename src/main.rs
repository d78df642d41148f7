//! The `muster` binary: parses the command line and hands each subcommand to the library
//! (`agent` → `node::run`, `members` → `cli::members`, `keygen`, `tls` → `cli::tls`, `version`,
//! the hidden `idle`).
//! Owns exit codes and the printing of error chains; nothing else.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use muster::cli::drill::{self, DrillArgs};
use muster::cli::event::EventArgs;
use muster::cli::members::{self, MembersArgs};
use muster::cli::services::{self, ServicesArgs};
use muster::cli::stack::{self, StackArgs};
use muster::cli::status::{self, LeaderArgs, StatusArgs};
use muster::cli::tls::{self as tls_cli, TlsArgs};
use muster::config::{self, AgentArgs, Config, ConfigError};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One binary per host: Serf-compatible gossip, one elected server, a replicated registry.
#[derive(Debug, Parser)]
#[command(name = "muster", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node on this host (gossip, discovery, HTTP API).
    Agent(Box<AgentArgs>),
    /// List the members a running node knows, like `serf members`.
    Members(MembersArgs),
    /// Send a Serf user event through a node's Serf RPC port, like `serf event`.
    Event(EventArgs),
    /// Register, list, inspect and watch services over a node's gRPC API.
    Services(ServicesArgs),
    /// Show a node's raft view: leader, term, voters, learners and this node's mode.
    Status(StatusArgs),
    /// Steer raft leadership over a node's gRPC API.
    Leader(LeaderArgs),
    /// Show the Docker stack a node wants and runs, and its last transition.
    Stack(StackArgs),
    /// Drills on a live cluster: `failover` moves leadership and times the stack transition.
    Drill(DrillArgs),
    /// Print a new random gossip encryption key for --encrypt.
    Keygen,
    /// Create the cluster's CA and the certificates it signs, like `consul tls`.
    Tls(TlsArgs),
    /// Make API tokens for --tokens-file.
    Token(muster::cli::token::TokenArgs),
    /// Print the version.
    Version,
    /// Print a line, then wait for SIGTERM or SIGINT and exit 0: a long-lived process built
    /// from our own binary for test and demo stacks.
    #[command(hide = true)]
    Idle,
    /// Started by the node: stops the node's server stack once the node's process is gone.
    #[command(hide = true)]
    Watchdog(WatchdogArgs),
}

/// `muster watchdog` flags (the node passes them).
#[derive(Debug, clap::Args)]
struct WatchdogArgs {
    /// The node's pid and its start time (field 22 of /proc/PID/stat).
    #[arg(long)]
    pid: u32,
    #[arg(long)]
    pid_start: u64,
    /// The node's name (its containers' `muster.node` label).
    #[arg(long)]
    node: String,
    #[arg(long)]
    docker_socket: std::path::PathBuf,
    /// Seconds docker gives a container to stop.
    #[arg(long)]
    stop_timeout: u32,
}

/// Exit code for a configuration the user must fix (like clap's usage errors).
const EXIT_CONFIG: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    let command = Cli::command().mut_subcommand("agent", config::annotate_help);
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Agent(args) => report(agent(&args).await),
        Command::Members(args) => report(members::run(&args).await.map_err(Into::into)),
        Command::Event(args) => report(args.run().await),
        Command::Services(args) => report(services::run(&args).await),
        Command::Status(args) => report(status::run_status(&args).await),
        Command::Leader(args) => report(status::run_leader(&args).await),
        Command::Stack(args) => report(stack::run(&args).await),
        Command::Drill(args) => report(drill::run(&args).await),
        Command::Keygen => {
            println!("{}", muster::gossip::wire::generate_key());
            ExitCode::SUCCESS
        }
        Command::Tls(args) => report(tls_cli::run(&args).map_err(Into::into)),
        Command::Token(args) => report(muster::cli::token::run(&args)),
        Command::Version => {
            println!("muster {VERSION}");
            ExitCode::SUCCESS
        }
        Command::Idle => report(idle().await),
        Command::Watchdog(args) => report(watchdog(args).await),
    }
}

/// The server stack's watchdog (see `muster::supervisor::watchdog`).
async fn watchdog(args: WatchdogArgs) -> anyhow::Result<()> {
    use muster::supervisor::watchdog::{run, ProcessId, WatchdogConfig};
    let cfg = WatchdogConfig {
        node_process: ProcessId { pid: args.pid, start: args.pid_start },
        node: args.node,
        socket: args.docker_socket,
        stop_timeout_s: args.stop_timeout,
    };
    let stopped = run(cfg).await?;
    if !stopped.is_empty() {
        eprintln!("muster watchdog: the node is gone; stopped its server containers {stopped:?}");
    }
    Ok(())
}

/// Waits for SIGTERM (what `docker stop` sends) or SIGINT; the handlers are in place before
/// the line is printed, so whoever waits for the line may signal at once.
async fn idle() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    println!("muster idle: waiting for SIGTERM or SIGINT");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

async fn agent(args: &AgentArgs) -> anyhow::Result<()> {
    let config = Config::load(args, |name| std::env::var(name).ok())?;
    let logs = muster::logging::init(&config.log).context("cannot start logging")?;
    tracing::info!(version = VERSION, config = %config.redacted(), "muster: starting");
    muster::node::run(config, logs).await
}

/// Prints the error chain on stderr; configuration errors exit 2, others 1.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("muster: {err:#}");
            if err.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Cli, clap::Error> {
        let command = Cli::command().mut_subcommand("agent", config::annotate_help);
        let matches = command.try_get_matches_from(argv)?;
        Cli::from_arg_matches(&matches)
    }

    #[test]
    fn command_line_is_well_formed() {
        // Proves clap's own consistency checks pass for every subcommand.
        Cli::command().mut_subcommand("agent", config::annotate_help).debug_assert();
    }

    #[test]
    fn subcommands_parse() {
        // Proves the four subcommands and their flags reach the right variants.
        let cli = parse(&["muster", "agent", "--node", "n1", "--join", "a", "--join", "b"]).unwrap();
        let Command::Agent(args) = cli.command else { panic!("not agent") };
        assert_eq!(args.node.as_deref(), Some("n1"));
        assert_eq!(args.join, ["a", "b"]);
        let cli = parse(&["muster", "members", "--status", "alive", "--tag", "k=v", "--json"]).unwrap();
        let Command::Members(args) = cli.command else { panic!("not members") };
        assert_eq!((args.status.as_deref(), args.json, args.detailed), (Some("alive"), true, false));
        assert!(matches!(parse(&["muster", "keygen"]).unwrap().command, Command::Keygen));
        assert!(matches!(parse(&["muster", "version"]).unwrap().command, Command::Version));
        assert!(matches!(parse(&["muster", "idle"]).unwrap().command, Command::Idle));
        assert!(parse(&["muster", "agent", "--no-such-flag"]).is_err());
    }

    #[test]
    fn config_errors_exit_2() {
        // Proves a bad configuration exits with the usage code and others with 1.
        let bad = Config::load(&AgentArgs { role: Some("x".into()), ..AgentArgs::default() }, |_| None);
        let code = report(Err(bad.unwrap_err().into()));
        assert_eq!(format!("{code:?}"), format!("{:?}", ExitCode::from(EXIT_CONFIG)));
        let code = report(Err(anyhow::anyhow!("boom")));
        assert_eq!(format!("{code:?}"), format!("{:?}", ExitCode::FAILURE));
    }
}
