//! `muster token create`: a new API token line (`NAME SCOPE SECRET`) for `--tokens-file`,
//! printed, or appended to the file (created with mode 0600). The node reads the file again
//! on SIGHUP.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

use anyhow::{anyhow, Context as _};

use crate::tokens::{generate_secret, Scope, Tokens};

/// `muster token` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum TokenCommand {
    /// Make a token with a fresh random secret.
    Create(CreateArgs),
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct CreateArgs {
    /// The token's name, shown in refusals and logs: A-Z a-z 0-9 _ - . (at most 64).
    #[arg(long)]
    pub name: String,
    /// What it may do: read, write (and read) or operator (everything).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(Scope::CHOICES))]
    pub scope: String,
    /// Append the line to this tokens file (created 0600; checked before and after) instead
    /// of printing it.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

/// Runs `muster token ...`.
pub fn run(args: &TokenArgs) -> anyhow::Result<()> {
    let TokenCommand::Create(c) = &args.command;
    crate::tokens::check_name(&c.name).map_err(|e| anyhow!("--name: {e}"))?;
    let line = format!("{} {} {}", c.name, c.scope, generate_secret());
    // The same checks the node makes, on the new line alone.
    Tokens::parse(&line).map_err(|e| anyhow!("{}", e.reason))?;
    let Some(path) = &c.file else {
        println!("{line}");
        return Ok(());
    };
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read --file {}", path.display())),
    };
    let mut joined = existing.clone();
    if !joined.is_empty() && !joined.ends_with('\n') {
        joined.push('\n');
    }
    joined.push_str(&line);
    joined.push('\n');
    Tokens::parse(&joined).map_err(|e| anyhow!("--file {}: with the new token, {e}", path.display()))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open --file {}", path.display()))?;
    let separator = if !existing.is_empty() && !existing.ends_with('\n') { "\n" } else { "" };
    file.write_all(format!("{separator}{line}\n").as_bytes())
        .with_context(|| format!("cannot write --file {}", path.display()))?;
    println!(
        "==> Added token '{}' ({}) to {}; send SIGHUP to running nodes to load it",
        c.name,
        c.scope,
        path.display()
    );
    Ok(())
}
