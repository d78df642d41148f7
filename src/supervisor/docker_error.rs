//! [`DockerError`]: every way the Docker driver fails, each naming the Docker call, the action
//! it served and the container (or network, volume) it was about. Must not import anything
//! outside `supervisor` (and bollard's error type).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// No socket, or nothing answers on it: the node logs this once and works on without
    /// containers.
    #[error("disabled: no Docker engine at {path}", path = path.display())]
    Disabled { path: PathBuf, source: bollard::errors::Error },

    /// The engine answered with an error, or the connection broke mid-call.
    #[error("docker {call} of {target} failed during `{action}`: {source}")]
    Call { call: &'static str, action: String, target: String, source: bollard::errors::Error },

    /// The call did not finish within its deadline.
    #[error("docker {call} of {target} did not finish within {timeout_ms} ms during `{action}`")]
    Timeout { call: &'static str, action: String, target: String, timeout_ms: u64 },

    /// The action cannot be carried out as asked (an unknown service, an undeclared network, a
    /// missing external network or volume).
    #[error("cannot {action}: {reason}")]
    Invalid { action: String, reason: String },

    /// More containers carry this node's label than one observation reads.
    #[error("{count} containers carry {label}, more than the {max} muster observes; remove the strays")]
    TooManyContainers { label: String, count: usize, max: usize },
}

impl DockerError {
    /// The engine itself is unreachable or broke the connection (as opposed to refusing one
    /// request): the caller should connect again and negotiate the API version anew.
    pub fn is_unreachable(&self) -> bool {
        use bollard::errors::Error as B;
        match self {
            DockerError::Disabled { .. } | DockerError::Timeout { .. } => true,
            DockerError::Call { source, .. } => matches!(
                source,
                B::IOError { .. }
                    | B::HyperResponseError { .. }
                    | B::SocketNotFoundError(_)
                    | B::RequestTimeoutError
                    | B::HyperLegacyError { .. }
            ),
            DockerError::Invalid { .. } | DockerError::TooManyContainers { .. } => false,
        }
    }

    /// The message with the cause of a [`DockerError::Disabled`] appended (the other variants
    /// already carry theirs), for logs and the status report.
    pub fn detailed(&self) -> String {
        match self {
            DockerError::Disabled { source, .. } => format!("{self} ({source})"),
            _ => self.to_string(),
        }
    }

    /// Docker's HTTP status, when the engine answered with an error.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            DockerError::Call {
                source: bollard::errors::Error::DockerResponseServerError { status_code, .. },
                ..
            } => Some(*status_code),
            _ => None,
        }
    }
}
