//! Join candidates: static addresses (`--join`/`SERF_JOIN`, `--retry-join`), mDNS
//! (`_serf_<cluster>._tcp.local`, what `serf agent -discover=<cluster>` uses) and Tailscale
//! peers (`tailscale status --json`). Candidates are handed to gossip to join; nothing here
//! decides membership. Must not import consensus, registry or api.

mod mdns;
pub mod retry;
mod tailscale;

pub use mdns::{mdns_service_type, run_mdns};
pub use retry::{backoff_ms, retry_join};
pub use tailscale::{parse_status, run_tailscale};

use crate::config::DiscoveryBackend;

/// Which dynamic sources run, chosen from `--discovery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sources {
    pub mdns: bool,
    pub tailscale: bool,
}

/// `auto` uses mDNS, plus Tailscale when a `tailscale` command is installed; `serf` uses
/// only the static join lists.
pub fn choose(backend: DiscoveryBackend, tailscale_installed: bool) -> Sources {
    match backend {
        DiscoveryBackend::Auto => Sources { mdns: true, tailscale: tailscale_installed },
        DiscoveryBackend::Mdns => Sources { mdns: true, tailscale: false },
        DiscoveryBackend::Serf => Sources { mdns: false, tailscale: false },
        DiscoveryBackend::Tailscale => Sources { mdns: false, tailscale: true },
    }
}

/// Whether an executable named `name` is on `PATH`.
pub fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_adds_tailscale_only_when_installed() {
        // Proves the auto rule and that `serf` means static joins only.
        assert_eq!(choose(DiscoveryBackend::Auto, false), Sources { mdns: true, tailscale: false });
        assert_eq!(choose(DiscoveryBackend::Auto, true), Sources { mdns: true, tailscale: true });
        assert_eq!(choose(DiscoveryBackend::Serf, true), Sources { mdns: false, tailscale: false });
        assert_eq!(choose(DiscoveryBackend::Tailscale, false), Sources { mdns: false, tailscale: true });
    }
}
