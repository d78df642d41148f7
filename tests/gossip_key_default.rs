//! Encrypted gossip by default, with the real binary: a lan or wan node without a gossip key
//! refuses to start with one clear message and the configuration exit code (2); a key, a
//! keyring persisted in the data dir, `--keyring-file`, `--insecure-gossip` (flag or env) or
//! `--profile local` let it start. Every process runs on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// A refused node exits right after reading its config; this is generous for a loaded machine.
const REFUSE_WITHIN: Duration = Duration::from_secs(20);

/// Runs `muster agent` on fresh loopback ports with `extra` flags and `env`, expecting it to
/// exit by itself; its exit status and everything it printed.
fn run_until_exit(extra: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let addr = || format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(muster_bin());
    cmd.args(["agent", "--node", "refused", "--bind", &addr(), "--http-addr", &addr()])
        .args(["--rpc-addr", &addr(), "--discovery", "serf", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(extra)
        .env("LOG_FORMAT", "text")
        .env("LOG_NO_COLOR", "1")
        .env_remove("SERF_JOIN")
        .env_remove("MUSTER_PROFILE")
        .env_remove("MUSTER_ENCRYPT")
        .env_remove("SERF_ENCRYPT_KEY")
        .env_remove("MUSTER_KEYRING_FILE")
        .env_remove("MUSTER_INSECURE_GOSSIP");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut proc = Proc::spawn(&mut cmd, dir.path().join("refused.log"));
    let status = proc.wait_exit(REFUSE_WITHIN);
    (status, proc.log_text())
}

#[test]
fn lan_and_wan_without_a_key_refuse_to_start_naming_what_to_do() {
    // Proves the refusal: the default profile (lan) and wan, with no key and no keyring, exit 2
    // with one message naming the profile, both ways to give a key and the opt-out.
    for (extra, profile) in [(&[][..], "lan"), (&["--profile", "wan"][..], "wan")] {
        let (status, out) = run_until_exit(extra, &[]);
        assert_eq!(status.code(), Some(2), "{profile}: {status:?}\n{out}");
        let want = format!(
            "muster: --profile {profile} encrypts gossip, but no key was given: start every node with \
             --encrypt KEY (make one with `muster keygen`) or --keyring-file FILE; to run in clear text \
             anyway, pass --insecure-gossip"
        );
        assert!(out.lines().any(|l| l == want), "{profile}: no line {want:?} in:\n{out}");
        assert!(!out.contains("http: listening"), "{profile}: the refused node opened its API:\n{out}");
    }
}

#[test]
fn the_opt_out_and_the_local_profile_start_in_clear_text() {
    // Proves the ways to run without a key: --insecure-gossip, MUSTER_INSECURE_GOSSIP=1 (both
    // with the default lan profile) and --profile local each start a node that serves /health
    // and gossips unencrypted.
    let flag = Muster::start("flag", &["--insecure-gossip"]);
    assert!(flag.log_text().contains("insecure_gossip=true"), "{}", flag.log_text());
    let local = Muster::start("local", &["--profile", "local"]);
    for m in [&flag, &local] {
        assert!(m.log_text().contains("encrypted=false"), "{}: {}", m.name, m.log_text());
    }
    let dir = tempfile::tempdir().unwrap();
    let addr = || format!("127.0.0.1:{}", free_port());
    let http = addr();
    let mut cmd = Command::new(muster_bin());
    cmd.args(["agent", "--node", "env", "--bind", &addr(), "--http-addr", &http, "--rpc-addr", &addr()])
        .args(["--discovery", "serf", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("MUSTER_INSECURE_GOSSIP", "1")
        .env("LOG_FORMAT", "text")
        .env_remove("SERF_JOIN");
    let proc = Proc::spawn(&mut cmd, dir.path().join("env.log"));
    wait_for(Duration::from_secs(20), "the MUSTER_INSECURE_GOSSIP=1 node to serve /health", || {
        let out =
            Command::new(muster_bin()).args(["members", "--json", "--http-addr", &http]).output().ok()?;
        out.status.success().then_some(())
    });
    assert!(proc.log_text().contains("insecure_gossip=true"), "{}", proc.log_text());
}

#[test]
fn a_keyring_persisted_in_the_data_dir_or_named_by_keyring_file_is_a_key() {
    // Proves the check sees the keyring the node loads: a lan node started once with --encrypt
    // and restarted with no key flag starts from the data dir's keyring, and a fresh node given
    // only --keyring-file (the first node's file) starts encrypted too.
    let key = gossip_key();
    let m = Muster::start("keyed", &["--encrypt", &key]);
    assert!(m.log_text().contains("encrypted=true"), "{}", m.log_text());
    let keyring = m.dir.path().join("data/serf/local.keyring");
    assert!(keyring.exists(), "the node did not persist its keyring");
    let copy = tempfile::tempdir().unwrap();
    let ring_file = copy.path().join("ring.json");
    std::fs::copy(&keyring, &ring_file).unwrap();

    let ports = (m.gossip.port(), m.http.port(), m.rpc.port());
    let Muster { dir, mut proc, .. } = m;
    proc.signal("TERM");
    assert!(proc.wait_exit(Duration::from_secs(30)).success());
    let again = Muster::start_in("keyed", &[], dir, Some(ports));
    let log = again.log_text();
    assert!(log.contains("keyring loaded") && log.contains("encrypted=true"), "{log}");

    let named = Muster::start("named", &["--keyring-file", ring_file.to_str().unwrap()]);
    assert!(named.log_text().contains("encrypted=true"), "{}", named.log_text());
}
