//! Client subcommands that talk to a running node over its HTTP API (`muster members`), and the
//! small HTTP client they share. Imports `api` (the filter grammar) and `membership` (the member
//! shape); never the node's internals.

pub mod drill;
pub mod event;
pub mod http;
pub mod members;
pub mod secure;
pub mod services;
pub mod stack;
pub mod status;
pub mod tls;
pub mod token;

use crate::api::FilterError;

/// Why a client subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("invalid value for --{flag}: {reason}")]
    BadFilter { flag: String, reason: String },
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error("muster node at {addr} answered {status}: {message}")]
    Refused { addr: String, status: u16, message: String },
    #[error("muster node at {addr} sent members this client cannot read")]
    BadAnswer {
        addr: String,
        #[source]
        cause: serde_json::Error,
    },
    #[error("cannot write to stdout")]
    Stdout {
        #[source]
        cause: std::io::Error,
    },
}

impl From<FilterError> for CliError {
    fn from(err: FilterError) -> Self {
        CliError::BadFilter { flag: err.param().to_string(), reason: err.to_string() }
    }
}
