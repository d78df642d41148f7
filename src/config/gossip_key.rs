//! Encrypted gossip by default: the production profiles (`lan`, `wan`) refuse to start a node
//! that has no gossip key, unless `--insecure-gossip` allows clear text; `local` (loopback tests
//! and demos) may always gossip in clear text and only gets the start-up SECURITY warning.
//!
//! Pure: whether a keyring is in use is the caller's input, because only the node knows
//! whether the data dir (or `--keyring-file`) already holds one, and a persisted keyring counts
//! as a key even when `--encrypt` is not given.

use super::{Config, ConfigError, Profile};

/// Whether a node of `profile` may start: `Ok` when a keyring is in use, when the profile is
/// `local`, or when `insecure_gossip` allows clear text; otherwise the error says how to give
/// a key or how to opt out.
pub fn check_gossip_key(
    profile: Profile,
    insecure_gossip: bool,
    keyring_in_use: bool,
) -> Result<(), ConfigError> {
    match profile {
        _ if keyring_in_use || insecure_gossip => Ok(()),
        Profile::Local => Ok(()),
        Profile::Lan | Profile::Wan => Err(ConfigError::GossipKeyMissing { profile }),
    }
}

impl Config {
    /// [`check_gossip_key`] for this config; `keyring_in_use` says whether the node loaded or
    /// created a keyring (from `--encrypt`, `--keyring-file` or the data dir).
    pub fn check_gossip_key(&self, keyring_in_use: bool) -> Result<(), ConfigError> {
        check_gossip_key(self.profile, self.insecure_gossip, keyring_in_use)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_and_wan_need_a_key_or_the_opt_out_and_local_never_does() {
        // Proves the whole decision table: every profile × insecure flag × keyring, and that the
        // refusal names the profile, both ways to give a key and the opt-out.
        for profile in [Profile::Lan, Profile::Wan, Profile::Local] {
            for insecure in [false, true] {
                for keyring in [false, true] {
                    let got = check_gossip_key(profile, insecure, keyring);
                    let refused = profile != Profile::Local && !insecure && !keyring;
                    assert_eq!(
                        got.is_err(),
                        refused,
                        "{profile} insecure={insecure} keyring={keyring}: {got:?}"
                    );
                }
            }
        }
        let err = check_gossip_key(Profile::Wan, false, false).unwrap_err().to_string();
        assert!(err.starts_with("--profile wan encrypts gossip, but no key was given"), "{err}");
        for what in ["--encrypt KEY", "muster keygen", "--keyring-file FILE", "--insecure-gossip"] {
            assert!(err.contains(what), "{what} missing: {err}");
        }
    }

    #[test]
    fn the_config_method_reads_profile_and_flag() {
        // Proves Config::check_gossip_key passes the config's own profile and flag: the default
        // (lan) refuses without a keyring, and either --insecure-gossip or --profile local lets
        // it start.
        let c = Config::default();
        assert!(matches!(
            c.check_gossip_key(false),
            Err(ConfigError::GossipKeyMissing { profile: Profile::Lan })
        ));
        assert!(c.check_gossip_key(true).is_ok());
        assert!(Config { insecure_gossip: true, ..Config::default() }.check_gossip_key(false).is_ok());
        assert!(Config { profile: Profile::Local, ..Config::default() }.check_gossip_key(false).is_ok());
    }

    #[test]
    fn the_opt_out_keeps_the_security_warning() {
        // Proves --insecure-gossip only lets the node start: gossip off loopback without a key
        // is still reported as unencrypted at start.
        let c = Config { insecure_gossip: true, ..Config::default() };
        let w = c.exposure_warnings(false);
        assert!(w.iter().any(|w| w.starts_with("gossip on 0.0.0.0:7946 is not encrypted")), "{w:?}");
    }
}
