//! `muster tls ca create` and `muster tls cert create`: flags in, [`crate::tls`] does the work,
//! a consul-like report out. Imports only `crate::tls`.

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::tls::certs::{CLUSTER_DEFAULT, NAME_CONSTRAINTS_DEFAULT};
use crate::tls::{self, CaSpec, LeafKind, LeafSpec, Overwrite, TlsError, CA_CERT_FILE, CA_KEY_FILE};

/// `muster tls` flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct TlsArgs {
    #[command(subcommand)]
    pub command: TlsCommand,
}

/// The `muster tls` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum TlsCommand {
    /// The cluster's certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Certificates signed by the cluster's CA.
    #[command(subcommand)]
    Cert(CertCommand),
}

/// `muster tls ca` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum CaCommand {
    /// Create a new CA (ECDSA P-256): muster-agent-ca.pem and muster-agent-ca-key.pem.
    Create(CaCreateArgs),
}

/// `muster tls cert` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum CertCommand {
    /// Create a certificate and key signed by the CA: <cluster>-<kind>-muster-<n>.pem.
    Create(CertCreateArgs),
}

/// `muster tls ca create` flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct CaCreateArgs {
    /// Directory to write the files into.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Days the CA is valid.
    #[arg(long, default_value_t = 1825)]
    pub days: u32,
    /// Let the CA sign only names under `muster` and `localhost` (RFC 5280 name constraints;
    /// IP addresses stay unconstrained).
    #[arg(long)]
    pub name_constraint: bool,
    /// One more DNS name the CA may sign for; implies --name-constraint. Repeatable.
    #[arg(long, value_name = "DNS")]
    pub additional_name_constraint: Vec<String>,
    /// The CA's common name (default: "Muster Agent CA <random number>").
    #[arg(long)]
    pub common_name: Option<String>,
    /// Replace existing CA files.
    #[arg(long)]
    pub force: bool,
}

/// `muster tls cert create` flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(group = clap::ArgGroup::new("kind").required(true).args(["server", "client", "cli"]))]
pub struct CertCreateArgs {
    /// A node's certificate (serverAuth and clientAuth): server.<cluster>.muster, localhost,
    /// 127.0.0.1, the node's name and every --san.
    #[arg(long)]
    pub server: bool,
    /// A client's certificate (clientAuth): client.<cluster>.muster.
    #[arg(long)]
    pub client: bool,
    /// A command-line tool's certificate (clientAuth): cli.client.<cluster>.muster.
    #[arg(long)]
    pub cli: bool,
    /// The node's name, added as a DNS name; required with --server.
    #[arg(long, required_if_eq("server", "true"))]
    pub node: Option<String>,
    /// The cluster's name, part of the role name and the file names.
    #[arg(long, default_value = CLUSTER_DEFAULT)]
    pub cluster: String,
    /// One more subject alternative name: an IP address or a DNS name. Repeatable.
    #[arg(long, value_name = "DNS_OR_IP")]
    pub san: Vec<String>,
    /// The CA certificate.
    #[arg(long, default_value = CA_CERT_FILE)]
    pub ca: PathBuf,
    /// The CA key.
    #[arg(long, default_value = CA_KEY_FILE)]
    pub key: PathBuf,
    /// Directory to write the files into.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Days the certificate is valid.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

impl CertCreateArgs {
    fn kind(&self) -> LeafKind {
        if self.server {
            LeafKind::Server
        } else if self.client {
            LeafKind::Client
        } else {
            LeafKind::Cli
        }
    }
}

/// Runs a `muster tls` subcommand.
pub fn run(args: &TlsArgs) -> Result<(), TlsError> {
    let now = OffsetDateTime::now_utc();
    match &args.command {
        TlsCommand::Ca(CaCommand::Create(a)) => {
            let mut permitted_dns = a.additional_name_constraint.clone();
            if a.name_constraint || !permitted_dns.is_empty() {
                permitted_dns.splice(0..0, NAME_CONSTRAINTS_DEFAULT.iter().map(|s| s.to_string()));
            }
            let spec = CaSpec {
                common_name: a
                    .common_name
                    .clone()
                    .unwrap_or_else(|| format!("Muster Agent CA {}", rand::random::<u32>())),
                days: a.days,
                permitted_dns,
            };
            let overwrite = if a.force { Overwrite::Replace } else { Overwrite::Refuse };
            let written = tls::ca_create(&a.dir, &spec, overwrite, now)?;
            println!("==> Saved {}", written.cert.display());
            println!("==> Saved {}", written.key.display());
        }
        TlsCommand::Cert(CertCommand::Create(a)) => {
            let spec = LeafSpec {
                kind: a.kind(),
                node: a.node.clone(),
                cluster: a.cluster.clone(),
                extra_sans: a.san.clone(),
                days: a.days,
            };
            let written = tls::cert_create(&a.dir, &spec, &a.ca, &a.key, now)?;
            println!("==> Using {} and {}", a.ca.display(), a.key.display());
            println!("==> Saved {}", written.cert.display());
            println!("==> Saved {}", written.key.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Wrapper {
        #[command(subcommand)]
        tls: TlsCommand,
    }

    fn parse(argv: &[&str]) -> Result<TlsCommand, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("tls").chain(argv.iter().copied())).map(|w| w.tls)
    }

    #[test]
    fn cert_create_needs_exactly_one_kind_and_a_node_for_servers() {
        // Proves clap enforces one of --server/--client/--cli, --node with --server, and the
        // consul-like defaults (cluster, CA file names, days).
        assert!(parse(&["cert", "create", "--node", "n1"]).is_err());
        assert!(parse(&["cert", "create", "--server", "--cli", "--node", "n1"]).is_err());
        assert!(parse(&["cert", "create", "--server"]).is_err());
        let TlsCommand::Cert(CertCommand::Create(a)) = parse(&["cert", "create", "--client"]).unwrap() else {
            panic!("not cert create")
        };
        assert_eq!((a.kind(), a.cluster.as_str(), a.days), (LeafKind::Client, "muster", 365));
        assert_eq!((a.ca, a.key), (PathBuf::from(CA_CERT_FILE), PathBuf::from(CA_KEY_FILE)));
        let TlsCommand::Ca(CaCommand::Create(a)) = parse(&["ca", "create", "--dir", "/x"]).unwrap() else {
            panic!("not ca create")
        };
        assert_eq!((a.days, a.dir, a.force), (1825, PathBuf::from("/x"), false));
    }
}
