//! `--retry-join`: keep trying the given addresses with capped exponential backoff, one log
//! line per attempt, until one answers or the attempt limit is reached.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::gossip::net::{resolve, GossipError, GossipHandle};

/// The wait before attempt `attempt + 1`: `first · 2^attempt`, capped at `max`.
pub fn backoff_ms(first_ms: u64, max_ms: u64, attempt: u32) -> u64 {
    first_ms.saturating_mul(1u64 << attempt.min(32)).min(max_ms)
}

/// Resolves every address and joins through whatever answers.
pub async fn join_all(
    gossip: &GossipHandle,
    addrs: &[String],
    default_port: u16,
) -> Result<usize, GossipError> {
    let mut resolved = Vec::new();
    let mut errors = Vec::new();
    for a in addrs {
        match resolve(a, default_port).await {
            Ok(mut r) => resolved.append(&mut r),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if resolved.is_empty() {
        return Err(GossipError::JoinFailed { tried: addrs.len(), errors: errors.join("; ") });
    }
    gossip.join(resolved).await
}

/// Retries until joined; Err when `max_attempts` (0 = unlimited) ran out.
pub async fn retry_join(
    gossip: GossipHandle,
    addrs: Vec<String>,
    first_ms: u64,
    max_ms: u64,
    max_attempts: u32,
    default_port: u16,
    shutdown: CancellationToken,
) -> Result<usize, GossipError> {
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        match join_all(&gossip, &addrs, default_port).await {
            Ok(n) => {
                tracing::info!(attempt, joined = n, addrs = ?addrs, "retry-join: joined the cluster");
                return Ok(n);
            }
            Err(e) => {
                if max_attempts != 0 && attempt >= max_attempts {
                    tracing::error!(attempt, max = max_attempts, error = %e, "retry-join: giving up");
                    return Err(e);
                }
                let wait = backoff_ms(first_ms, max_ms, attempt - 1);
                tracing::warn!(attempt, error = %e, next_in_ms = wait, "retry-join: attempt failed, retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(GossipError::Closed),
                    _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        // Proves capped exponential backoff: 1s, 2s, 4s, … up to the cap, no overflow.
        assert_eq!(backoff_ms(1000, 30_000, 0), 1000);
        assert_eq!(backoff_ms(1000, 30_000, 1), 2000);
        assert_eq!(backoff_ms(1000, 30_000, 4), 16_000);
        assert_eq!(backoff_ms(1000, 30_000, 5), 30_000);
        assert_eq!(backoff_ms(1000, 30_000, 200), 30_000);
    }
}
