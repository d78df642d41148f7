//! The one table from registry and registrar errors to gRPC status codes (etcd's habit: the
//! gRPC layer translates, it never decides). Messages are the registry's own wording, which
//! names the field and the bound.

use tonic::{Code, Status};

use crate::api::limits::TooManyStreams;
use crate::api::ratelimit::Limited;
use crate::registry::RegistryError;
use crate::replicated::registrar::RegistrarError;

/// The gRPC code for a registrar error.
pub fn code(e: &RegistrarError) -> Code {
    match e {
        RegistrarError::Registry(r) => registry_code(r),
        // The registrar forwards to the leader, so this only escapes when the leader's address
        // is unknown: the client should retry (elsewhere).
        RegistrarError::NotLeader { .. } => Code::Unavailable,
        RegistrarError::Unavailable(_) => Code::Unavailable,
        RegistrarError::Unknown(_) => Code::Unknown,
        RegistrarError::Busy { .. } => Code::ResourceExhausted,
    }
}

/// The gRPC code for a registry error.
pub fn registry_code(e: &RegistryError) -> Code {
    match e {
        RegistryError::InvalidService { .. }
        | RegistryError::InvalidCommand { .. }
        | RegistryError::InvalidFilter { .. } => Code::InvalidArgument,
        RegistryError::NotFound { .. } => Code::NotFound,
        RegistryError::AlreadyRegistered { .. } => Code::AlreadyExists,
        RegistryError::Compacted { .. } => Code::OutOfRange,
        // Internal to the state machine; never a client's fault.
        RegistryError::StaleRevision { .. } | RegistryError::InvalidSnapshot { .. } => Code::Internal,
    }
}

/// The canonical upper-case name of a gRPC code (`NOT_FOUND`), as grpcurl prints it; used in
/// stream error messages and by the CLI.
pub fn code_name(code: Code) -> &'static str {
    use Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A registrar error as a gRPC status, with its message (`outcome unknown: ...`, `invalid
/// service: port must be 1–65535 (got 0)`, ...).
pub fn status(e: RegistrarError) -> Status {
    Status::new(code(&e), e.to_string())
}

/// A registry error as a gRPC status.
pub fn registry_status(e: RegistryError) -> Status {
    Status::new(registry_code(&e), e.to_string())
}

/// A stream over the node-wide or per-client limit: `RESOURCE_EXHAUSTED` naming the limit.
pub fn too_many_streams(e: TooManyStreams) -> Status {
    Status::resource_exhausted(e.to_string())
}

/// A write over the client's rate: `RESOURCE_EXHAUSTED`, "write rate limit: N/s per client
/// (burst B); retry in X ms", with the wait also in the `retry-after-ms` metadata.
pub fn rate_limited(e: &Limited) -> Status {
    let mut s = Status::resource_exhausted(e.to_string());
    if let Ok(v) = e.retry_after_ms().to_string().parse() {
        s.metadata_mut().insert("retry-after-ms", v);
    }
    s
}

/// A request field the gRPC layer itself refuses (an enum value out of range, ...).
pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("invalid argument: {field} {reason}"))
}

/// Whether a call only reads or may change the registry: decides what a passed deadline
/// means. Shared with the REST layer, so both say the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing changed: retry.
    Read,
    /// A register, update, deregister or cleanup (and, over REST, a heartbeat): it may have
    /// been applied.
    Write,
}

/// What a call that passed the API's own deadline answers, by [`Access`].
pub fn deadline_message(access: Access, what: &str, after: std::time::Duration) -> String {
    match access {
        Access::Read => format!("unavailable: {what} did not finish within {after:?}; retry"),
        Access::Write => format!(
            "outcome unknown: {what} did not finish within {after:?}; it may or may not have been \
             applied, so read before retrying"
        ),
    }
}

/// A call that did not finish within the gRPC layer's own deadline: `UNAVAILABLE` for a read
/// (retry), `UNKNOWN` for a write (it may still be applied; REST answers 504).
pub fn deadline(access: Access, what: &str, after: std::time::Duration) -> Status {
    let code = match access {
        Access::Read => Code::Unavailable,
        Access::Write => Code::Unknown,
    };
    Status::new(code, deadline_message(access, what, after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Revision, ServiceId};

    #[test]
    fn every_error_maps_to_its_code() {
        // Proves the table: each registrar/registry error gets the documented gRPC code and
        // keeps the registry's message.
        let id = || ServiceId::new("x");
        let cases = [
            (
                RegistryError::InvalidService { violations: vec!["port must be 1–65535 (got 0)".into()] }
                    .into(),
                Code::InvalidArgument,
            ),
            (RegistryError::InvalidCommand { reason: "ttl".into() }.into(), Code::InvalidArgument),
            (RegistryError::InvalidFilter { reason: "limit".into() }.into(), Code::InvalidArgument),
            (RegistryError::NotFound { id: id() }.into(), Code::NotFound),
            (RegistryError::AlreadyRegistered { id: id() }.into(), Code::AlreadyExists),
            (
                RegistryError::Compacted { requested: Revision(1), oldest_available: Revision(5) }.into(),
                Code::OutOfRange,
            ),
            (RegistrarError::NotLeader { leader_id: None, leader_addr: None }, Code::Unavailable),
            (RegistrarError::Unavailable("no leader".into()), Code::Unavailable),
            (RegistrarError::Unknown("leader changed".into()), Code::Unknown),
            (RegistrarError::Busy { pending: 9 }, Code::ResourceExhausted),
        ];
        for (err, want) in cases {
            let msg = err.to_string();
            let s = status(err);
            assert_eq!(s.code(), want, "{msg}");
            assert_eq!(s.message(), msg);
        }
        let s = status(
            RegistryError::InvalidService { violations: vec!["port must be 1–65535 (got 0)".into()] }.into(),
        );
        assert!(s.message().contains("port must be 1–65535 (got 0)"), "{}", s.message());
        assert!(status(RegistrarError::Unknown("x".into())).message().starts_with("outcome unknown: "));
        let after = std::time::Duration::from_secs(11);
        let read = deadline(Access::Read, "the read", after);
        assert_eq!(
            (read.code(), read.message()),
            (Code::Unavailable, "unavailable: the read did not finish within 11s; retry")
        );
        let write = deadline(Access::Write, "the registration", after);
        assert_eq!(write.code(), Code::Unknown, "a write past its deadline may be applied");
        assert!(write.message().starts_with("outcome unknown: the registration did not finish within 11s"));
    }

    #[test]
    fn limits_map_to_resource_exhausted_naming_the_limit() {
        // Proves stream and write-rate refusals answer RESOURCE_EXHAUSTED with a message that
        // names the limit (and, for the rate, when to retry).
        use crate::api::limits::ClientKey;
        use crate::api::ratelimit::WriteRate;
        let client = ClientKey::of_ip("127.0.0.1".parse().unwrap());
        let s = too_many_streams(TooManyStreams::Client { client, limit: 256 });
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(
            s.message().starts_with("too many streams from 127.0.0.1 (limit 256 per client;"),
            "{}",
            s.message()
        );
        let limited = Limited {
            retry_after: std::time::Duration::from_millis(42),
            limit: WriteRate { per_s: 5, burst: 10 },
        };
        let s = rate_limited(&limited);
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.message(), "write rate limit: 5/s per client (burst 10); retry in 42 ms");
        assert_eq!(s.metadata().get("retry-after-ms").and_then(|v| v.to_str().ok()), Some("42"));
    }
}
